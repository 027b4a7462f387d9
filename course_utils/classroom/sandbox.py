"""Run one submitted notebook where it can harm nothing: a bubblewrap sandbox.

`course grade` runs every submission through `run_submission`. Inside the
sandbox the learner's code sees:

- the system's programs and libraries (/usr), Python and the course's virtual
  environment, all read-only;
- the sealed student release at /course, read-only: no authoring quizzes, no
  tests, no gradebook, no feedback, no other submission, nothing of the
  instructor's own course folder;
- the grader's finished training runs (its cache's runs/ folder) at
  /course-runs, read-only, where it has them: lesson 14 loads its base model
  from there instead of training it again in every submission;
- a private /tmp (a size-limited tmpfs, its working folder) and /dev/shm,
  the only places it can write, and its own /proc, in which only its own
  processes exist;
- no network at all (a network namespace with nothing but loopback);
- no privilege, even when the grader runs as root (as in most containers):
  it runs as the unprivileged uid/gid SANDBOX_ID with every capability
  dropped, so it cannot remount its read-only binds writable, and it cannot
  make user namespaces of its own, where it would get capabilities back;
- none of the grader's environment: bubblewrap itself starts with a minimal
  one (the sandbox's pid 1 is bubblewrap, whose /proc/1/environ it can read).

It runs `harness.py` under `python -I` (no current-folder or PYTHONPATH
imports), with limits on memory, file size, processes and output, in a
session of its own, and in a pids and a memory cgroup of its own where the
grader may make them (`_Cgroups`). At the time limit the harness interrupts the running cell
(as JupyterLab's stop button does) and runs no more cells; a sandbox still
busy INTERRUPT_GRACE_SECONDS later is killed whole, at once.
The harness reports, one JSON line per cell, how the cell ran and the quiz
answers so far, as values. Then it waits while the grader's checkers call the
learner's code through a `Session` (see remote.py). Nothing that comes out
of the sandbox is trusted: `grading` judges it. The learner's code runs in the
harness's process and can write any line the harness could, so a line is only
ever a claim about its own notebook: a reply counts only if it answers the id
of a request already sent, every read and write has a deadline, and replies
are decoded within bounds (remote.decode_value).

Where bubblewrap is missing (macOS, or Linux without the package) the grader
refuses to grade unless told `--unsafe-no-sandbox`: then the harness runs as an
ordinary process of the instructor, with the same limits on memory and file
size and the same time limit, but it can read and write what the instructor can.
"""

import json
import os
import resource
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from course_utils import data, env

from . import progress, quiz, remote, train
from .harness import OUTPUT_KEPT, SANDBOXED_VARIABLE

RELEASE_MOUNT = "/course"  # where the student release appears inside the sandbox
RUNS_MOUNT = "/course-runs"  # where the grader's finished training runs appear, read-only
SANDBOX_ID = 65534  # the uid and gid of the learner's code inside: "nobody", never root
BUBBLEWRAP_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # all bwrap itself sees of the grader's
WORKDIR = "/tmp/work"
INTERRUPT_GRACE_SECONDS = 10  # after the time limit, for the interrupted harness to start answering the checkers
SHM_BYTES = 64 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The defaults leave room for the heaviest
    lesson: lesson 11 peaks at 4.6 GB of address space in the sandbox."""

    seconds: float = 600  # the whole notebook
    memory_bytes: int = 6 << 30  # address space of each process
    sandbox_memory_bytes: int = 8 << 30  # all its processes and its /tmp together, where a memory cgroup can be made
    processes: int = 128  # at once, in the sandbox
    file_bytes: int = 256 << 20  # one file
    tmp_bytes: int = 1 << 30  # all of /tmp together
    report_bytes: int = 8 << 20  # what the harness may send back while the cells run
    check_seconds: float = 120  # the grader's checkers calling the learner's code, after the cells
    reply_bytes: int = 64 << 20  # what the harness may send back to them

    def rlimits(self, count_processes: bool) -> dict[str, int]:
        limits = {"RLIMIT_AS": self.memory_bytes, "RLIMIT_FSIZE": self.file_bytes, "RLIMIT_CORE": 0}
        if count_processes:
            limits["RLIMIT_NPROC"] = self.processes
        return limits


@dataclass
class Run:
    """What the harness reported; `status` says it in words."""

    cells: list[dict] = field(default_factory=list)  # {"cell": n, "error": ..., "output": ...} per cell that ran
    evidence: dict = field(default_factory=lambda: {"answers": {}})  # as of the last cell that ran
    running: int | None = None  # the cell that had started when the run ended
    finished: bool = False  # every cell ran
    answering: bool = False  # the harness serves the checkers (it may have been stopped at the time limit)
    stopped: str = ""  # why the run ended early
    notes: list[str] = field(default_factory=list)
    judged: object = None  # what run_submission's `judge` returned

    def errors(self) -> list[tuple[int, str]]:
        return [(cell["cell"], cell["error"]) for cell in self.cells if cell.get("error")]

    @property
    def status(self) -> str:
        ran = [cell["cell"] for cell in self.cells]
        span = f"cells [{ran[0]}]-[{ran[-1]}] ran" if len(ran) > 1 else f"cell [{ran[0]}] ran" if ran else "no cell finished"
        if self.finished:
            words = "finished"
        elif self.stopped.startswith("timed out"):
            words = f"{self.stopped} ({span})"
        elif self.running is not None:
            words = f"crashed in cell [{self.running}]: {self.stopped} ({span})"
        else:
            words = f"could not start: {self.stopped}"
        errors = [f"cell [{number}] raised {error}" for number, error in self.errors()]
        return "; ".join([words, *errors, *self.notes])


def bubblewrap() -> str | None:
    """The bwrap program, if this machine has one (0.8 or newer) that works."""
    program = shutil.which("bwrap")
    if program is None:
        return None
    try:
        # With the options that drop privilege: bubblewrap before 0.8 lacks
        # --disable-userns, and a sandbox without it is not one to grade in.
        probe = subprocess.run([program, "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID),
                                "--cap-drop", "ALL", "--disable-userns", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=20, env=BUBBLEWRAP_ENVIRONMENT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return program if probe.returncode == 0 else None


def process_counter() -> str:
    """How a fork bomb is bounded here, in words (for `course doctor`)."""
    if any("pids.max" in settings for _, settings in _cgroup_roots(Limits())):
        return f"a pids cgroup per sandbox (under {CGROUP_ROOT})"
    if os.geteuid() != 0:
        return "RLIMIT_NPROC in the sandbox's user namespace"
    return "none: root is exempt from RLIMIT_NPROC and no pids cgroup is writable"


def memory_bound() -> str:
    """How the memory of one sandbox is bounded here, in words (for `course doctor`)."""
    limits = Limits()
    if any("memory.max" in settings or "memory.limit_in_bytes" in settings for _, settings in _cgroup_roots(limits)):
        return f"a memory cgroup per sandbox ({limits.sandbox_memory_bytes >> 30} GiB, its /tmp included)"
    return (f"none for the sandbox as a whole: {limits.memory_bytes >> 30} GiB of address space per process, "
            f"up to {limits.processes} processes, and a {limits.tmp_bytes >> 30} GiB /tmp (no writable memory cgroup)")


def sandbox_environment(release: Path, tmp: str) -> dict[str, str]:
    """The harness's whole environment: nothing of the instructor's is passed on
    except the thread counts, which keep timings comparable."""
    environment = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": f"{tmp}/home", "USER": "learner",
        "LANG": "C.UTF-8", "TMPDIR": tmp, "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{tmp}/matplotlib",
        "HF_HOME": f"{tmp}/huggingface", "XDG_CACHE_HOME": f"{tmp}/cache", "IPYTHONDIR": f"{tmp}/ipython",
        "COURSE_ROOT": str(release), quiz.HEADLESS_VARIABLE: "1", env.BLOCK_NETWORK_VARIABLE: "1",
        progress.PROGRESS_VARIABLE: f"{tmp}/progress.jsonl", **env.OFFLINE_VARIABLES,
    }
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def _harness_command(release: str) -> list[str]:
    # -I: no PYTHONPATH, no user site, no current folder on sys.path; the
    # release's course_utils is put first by hand.
    bootstrap = (f"import sys; sys.path.insert(0, {release!r}); "
                 "from course_utils.classroom.harness import main; main()")
    return [sys.executable, "-I", "-c", bootstrap]


def _bwrap_command(program: str, release: Path, limits: Limits) -> list[str]:
    # Every writable place is a size-limited tmpfs: /tmp, and /dev/shm (which
    # multiprocessing needs); everything else, the root included, is read-only.
    command = [program, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session",
               "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID), "--cap-drop", "ALL", "--disable-userns",
               "--ro-bind", "/usr", "/usr", "--proc", "/proc",
               "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm", "--remount-ro", "/dev",
               "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--dir", WORKDIR, "--chdir", WORKDIR]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):  # merged-/usr systems link them into /usr
        if os.path.islink(top):
            command += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            command += ["--ro-bind", top, top]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for prefix in sorted({sys.base_prefix, sys.prefix}):  # Python itself and the course's virtual environment
        if not prefix.startswith("/usr/"):
            command += ["--ro-bind", prefix, prefix]
    command += ["--ro-bind", str(release), RELEASE_MOUNT]
    runs = data.cache_dir() / "runs"  # the grader's finished training runs: lesson 14's base model, made once
    command += ["--ro-bind", str(runs), RUNS_MOUNT] if runs.is_dir() else []
    command += ["--remount-ro", "/", "--clearenv"]
    for name, value in sandbox_environment(Path(RELEASE_MOUNT), "/tmp").items():
        command += ["--setenv", name, value]
    command += ["--setenv", train.SHARED_RUNS_VARIABLE, RUNS_MOUNT] if runs.is_dir() else []
    limits_json = json.dumps(limits.rlimits(count_processes=True))
    return [*command, "--setenv", "COURSE_GRADING_LIMITS", limits_json, "--setenv", SANDBOXED_VARIABLE, "1",
            "--", *_harness_command(RELEASE_MOUNT)]


class _Cgroups:
    """Cgroups of its own for one sandbox, where the grader may make them:
    `pids` bounds the processes (the only bound on a fork bomb when the grader
    runs as root: RLIMIT_NPROC does not apply to root), `memory` bounds the
    memory of all its processes together, its tmpfs pages included (RLIMIT_AS
    bounds one process). Cgroup v1 hierarchies, or the v2 one; where neither is
    writable, nothing (see `sandbox_bounds`)."""

    def __init__(self, limits: Limits):
        name = f"course-grade-{os.getpid()}-{time.monotonic_ns()}"
        self.paths: list[Path] = []
        for root, settings in _cgroup_roots(limits):
            try:
                (root / name).mkdir()
                self.paths.append(root / name)
                for setting, value in settings.items():
                    (root / name / setting).write_text(str(value))
            except OSError:
                pass  # a setting this kernel lacks (memsw without swap accounting): the others still hold

    def enter(self) -> None:
        """In the child, before exec: join the cgroups (children inherit them)."""
        for path in self.paths:
            (path / "cgroup.procs").write_text(str(os.getpid()))

    def limits_reached(self, limits: Limits) -> list[str]:
        notes = []
        for path in self.paths:
            try:
                events = {f.name: f.read_text() for f in path.iterdir() if f.name in
                          ("pids.events", "memory.events", "memory.oom_control", "memory.failcnt")}
            except OSError:
                continue
            if " 0" not in events.get("pids.events", " 0"):
                notes.append(f"reached the limit of {limits.processes} processes")
            killed = [line for text in (events.get("memory.events", ""), events.get("memory.oom_control", ""))
                      for line in text.splitlines() if line.startswith("oom_kill ") and line != "oom_kill 0"]
            if killed:
                notes.append(f"reached the memory limit of {limits.sandbox_memory_bytes / (1 << 30):g} GiB")
        return notes

    def remove(self) -> None:
        for path in self.paths:
            for _ in range(50):  # the last processes may take a moment to be reaped
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def _cgroup_roots(limits: Limits) -> list[tuple[Path, dict]]:
    """(a folder to make a sandbox's cgroup in, its settings) for each writable
    hierarchy: v1's pids and memory controllers, or v2 with both enabled."""
    v2 = CGROUP_ROOT / "cgroup.subtree_control"
    if v2.exists():
        try:
            enabled = v2.read_text().split()
        except OSError:
            enabled = []
        if {"pids", "memory"} <= set(enabled) and os.access(CGROUP_ROOT / "cgroup.procs", os.W_OK):
            return [(CGROUP_ROOT, {"pids.max": limits.processes, "memory.max": limits.sandbox_memory_bytes,
                                   "memory.swap.max": 0})]
        return []
    roots = []
    for controller, settings in (("pids", {"pids.max": limits.processes}),
                                 ("memory", {"memory.limit_in_bytes": limits.sandbox_memory_bytes,
                                             "memory.memsw.limit_in_bytes": limits.sandbox_memory_bytes})):
        if os.access(CGROUP_ROOT / controller / "cgroup.procs", os.W_OK):
            roots.append((CGROUP_ROOT / controller, settings))
    return roots


def run_submission(cells: list[str], release: Path, limits: Limits, sandboxed: bool = True, judge=None) -> Run:
    """Run the code cells (sources in order) in the sandbox; see the module
    docstring. Then, if given, `judge(session)` runs in this process while
    the sandbox waits, and calls the learner's objects through the `Session`;
    what it returns is `run.judged`."""
    cgroup = _Cgroups(limits) if sandboxed else None
    if sandboxed:
        program = bubblewrap()
        if program is None:
            return _judged(Run(stopped="bubblewrap (bwrap) is missing or does not work on this machine"), judge, None)
        command, environment, cwd = _bwrap_command(program, release, limits), BUBBLEWRAP_ENVIRONMENT, None

        def before_exec():
            cgroup.enter()
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    else:
        scratch = Path(tempfile.mkdtemp(prefix="course-grade-"))
        (scratch / "work").mkdir()
        environment = {**sandbox_environment(release, str(scratch)),
                       "COURSE_GRADING_LIMITS": json.dumps(limits.rlimits(count_processes=False))}
        if (data.cache_dir() / "runs").is_dir():  # as the sandbox shows them (its RUNS_MOUNT)
            environment[train.SHARED_RUNS_VARIABLE] = str(data.cache_dir() / "runs")
        command, cwd, before_exec = _harness_command(str(release)), scratch / "work", None
    try:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   env=environment, cwd=cwd, start_new_session=True, preexec_fn=before_exec)
    except OSError as error:
        if cgroup:
            cgroup.remove()
        return _judged(Run(stopped=f"the sandbox could not start ({error})"), judge, None)
    try:
        channel = _Channel(process, limits)
        run = _read_reports(channel, json.dumps({"cells": cells, "seconds": limits.seconds}).encode() + b"\n", limits)
        if cgroup:
            run.notes += cgroup.limits_reached(limits)
        return _judged(run, judge, channel)
    finally:
        _kill(process)
        if cgroup:
            cgroup.remove()
        if not sandboxed:
            shutil.rmtree(scratch, ignore_errors=True)


def _judged(run: Run, judge, channel: "_Channel | None") -> Run:
    if judge is not None:
        why = "" if run.answering else f"the notebook did not finish ({run.status.split(';')[0]}), so the sandbox could not be asked"
        run.judged = judge(Session(channel if run.answering else None, why))
    return run


class _Ended(Exception):
    """The harness stopped answering; the message says why."""


class _Channel:
    """The harness's stdout, read line by line, within the time and size limits."""

    def __init__(self, process: subprocess.Popen, limits: Limits):
        self.process, self.limits, self.buffer, self.received = process, limits, b"", 0
        self.selector = selectors.DefaultSelector()
        self.selector.register(process.stdout, selectors.EVENT_READ)

    def send(self, data: bytes, deadline: float, what: str) -> None:
        """Write all of `data` by the deadline: a harness that stops reading
        (its pipe full) cannot hold the grader."""
        descriptor = self.process.stdin.fileno()
        os.set_blocking(descriptor, False)
        with selectors.DefaultSelector() as writable:
            writable.register(descriptor, selectors.EVENT_WRITE)
            while data:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Ended(f"timed out after {what}: the sandbox stopped reading")
                if not writable.select(timeout=min(remaining, 1.0)):
                    continue
                try:
                    data = data[os.write(descriptor, data):]
                except BlockingIOError:
                    continue
                except OSError:
                    return  # the harness died; reading says how

    def discard_pending(self) -> None:
        """Drop what the sandbox wrote before a request was sent: a reply
        written in advance answers nothing (it still counts against the budget)."""
        self.buffer = b""
        while self.selector.select(timeout=0):
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            self.received += len(chunk)
            if not chunk or self.received > self.limits.report_bytes:
                return  # reading the next line says how the harness ended, or that it sent too much

    def line(self, deadline: float, what: str) -> bytes:
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Ended(f"timed out after {what}")
            if not self.selector.select(timeout=min(remaining, 1.0)):
                continue
            chunk = os.read(self.process.stdout.fileno(), 1 << 16)
            if not chunk:
                code = self.process.wait()
                reason = (f"the process was killed by signal {signal.Signals(-code).name}" if code < 0
                          else f"the process ended with exit code {code}")
                raise _Ended(reason + (" (out of memory, or killed)" if code in (128 + signal.SIGKILL, -signal.SIGKILL) else ""))
            self.received += len(chunk)
            if self.received > self.limits.report_bytes:
                raise _Ended(f"stopped: it sent more than {self.limits.report_bytes >> 20} MB")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line


def _read_reports(channel: _Channel, cells: bytes, limits: Limits) -> Run:
    """Feed the cells, then read the harness's lines until its "done", the
    time limit, or too much output. A child the notebook left behind may hold
    the pipe open after the last line: the run has finished all the same."""
    run = Run()
    # The harness interrupts its cell at the time limit, and then answers the
    # checkers; past the grace, it is not listening and is killed.
    deadline = time.monotonic() + limits.seconds + INTERRUPT_GRACE_SECONDS
    try:
        channel.send(cells, deadline, f"{limits.seconds:g} s")
        while not run.answering:
            _take(run, channel.line(deadline, f"{limits.seconds:g} s"), limits)
    except _Ended as ended:
        run.stopped = str(ended)
        if run.stopped.startswith("stopped: it sent"):
            run.stopped += " of output"
    return run


def _take(run: Run, line: bytes, limits: Limits) -> None:
    """Record one report line; a line that is not a report is ignored."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # a line nested past Python's recursion limit
        return
    if not isinstance(message, dict):
        return
    if isinstance(message.get("start"), int):
        run.running = message["start"]
    elif isinstance(message.get("cell"), int):
        run.cells.append({"cell": message["cell"], "error": str(message.get("error") or "")[:300] or None,
                          "output": str(message.get("output") or "")[:OUTPUT_KEPT + 100]})  # what a harness keeps, and its note
        run.running = None
        run.evidence = {"answers": message["answers"] if isinstance(message.get("answers"), dict) else {}}
    elif "timed_out" in message:
        run.stopped = f"timed out after {limits.seconds:g} s"
        run.running = message["timed_out"] if isinstance(message["timed_out"], int) else None
    elif message.get("done") is True:
        run.answering, run.finished = True, not run.stopped


class Session:
    """The grader's line to a sandbox that ran its cells (see remote.py):
    `lookup(name)` gives the learner's object as a Remote, or a plain copy."""

    def __init__(self, channel: _Channel | None, why_not: str = ""):
        self.channel, self.ended, self.count = channel, why_not, 0
        # Checking gets its own time, from the moment it starts.
        self.deadline = time.monotonic() + (channel.limits.check_seconds if channel else 0)
        if channel:
            channel.received = 0  # the replies have a budget of their own too
            channel.limits = replace(channel.limits, report_bytes=channel.limits.reply_bytes)

    def lookup(self, name: str):
        return self.request("name", None, (name,))

    def request(self, operation: str, target: int | None, args: tuple = (), kwargs: dict | None = None):
        """Send one request and wait for its reply: only a line that answers
        this request's id, a number drawn now and unknown to the sandbox until
        the request reaches it, and written after it was sent."""
        if self.ended:
            raise remote.SessionEnded(f"not checked: {self.ended}")
        self.count += 1
        request_id = secrets.randbits(62)
        what = f"{self.channel.limits.check_seconds:g} s of checking"
        try:
            self.channel.discard_pending()
            self.channel.send(remote.encode_request({"id": request_id, "op": operation, "target": target, "args": args,
                                                     "kwargs": kwargs or {}, "grad": torch.is_grad_enabled(),
                                                     "watch": remote.watched()}), self.deadline, what)
            while True:
                reply = _reply(self.channel.line(self.deadline, what))
                if reply.get("reply") == request_id:
                    break
        except _Ended as ended:
            self.ended = f"the sandbox stopped answering ({ended})"
            _kill(self.channel.process)
            raise remote.SessionEnded(f"not checked: {self.ended}") from None
        return read_reply(self, reply, self.channel.limits.reply_bytes)


def read_reply(session, reply: dict, max_bytes: int = Limits.reply_bytes):
    """The result of a request, from the harness's reply (see remote.py).
    Nothing in it changes the grader's objects: which arguments the learner's
    code wrote into is only noted (`remote.written()`)."""
    remote.saw(reply.get("used"))
    remote.note_written(reply.get("changed"))
    if reply.get("unwatched") is True:
        remote.saw_watch_switched_off()
    if "error" in reply:
        message = str(reply["error"])
        if reply.get("not_implemented"):
            raise NotImplementedError(message)
        if reply.get("no_attribute"):  # so that getattr(remote, name, default) and hasattr work
            raise AttributeError(message)
        raise remote.LearnerError(message, str(reply.get("where") or ""))
    try:
        if "value" in reply:
            return remote.decode_value(str(reply["value"]), max_bytes)
        if isinstance(reply.get("object"), int):
            described = {key: reply.get(key) for key in ("type", "name", "repr", "types", "classes")}
            return remote.Remote(session, reply["object"], described)
    except Exception as error:  # not something weights_only loading accepts, or malformed
        raise remote.LearnerError(f"the sandbox's answer could not be read ({type(error).__name__})") from None
    raise remote.LearnerError("the sandbox's answer could not be read")


def _reply(line: bytes) -> dict:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):  # a line nested past Python's recursion limit
        return {}
    return message if isinstance(message, dict) else {}


def _kill(process: subprocess.Popen) -> None:
    """End the whole session: the harness and anything it started."""
    try:
        process.stdin.close()  # the harness, waiting for requests, ends
    except OSError:
        pass
    try:
        process.wait(timeout=2)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    try:
        process.stdout.close()
    except OSError:
        pass
