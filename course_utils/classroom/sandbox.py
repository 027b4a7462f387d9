"""Run one submitted notebook where it can harm nothing: a bubblewrap sandbox.

`course grade` runs every submission through `run_submission`. Inside the
sandbox the learner's code sees:

- the system's programs and libraries (/usr), Python and the course's virtual
  environment, all read-only;
- the sealed student release at /course, read-only: no authoring quizzes, no
  tests, no gradebook, no feedback, no other submission, nothing of the
  instructor's own course folder;
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
session of its own. At the time limit the harness interrupts the running cell
(as JupyterLab's stop button does) and runs no more cells; a sandbox still
busy INTERRUPT_GRACE_SECONDS later is killed whole, at once.
The harness reports, one JSON line per cell, how the cell ran and the quiz
answers so far, as values. Then it waits while the grader's checkers call the
learner's code through a `Session` (see remote.py). Nothing that comes out
of the sandbox is trusted: `grading` judges it.

Where bubblewrap is missing (macOS, or Linux without the package) the grader
refuses to grade unless told `--unsafe-no-sandbox`: then the harness runs as an
ordinary process of the instructor, with the same limits on memory and file
size and the same time limit, but it can read and write what the instructor can.
"""

import json
import os
import resource
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

from course_utils import env

from . import progress, quiz, remote

RELEASE_MOUNT = "/course"  # where the student release appears inside the sandbox
SANDBOX_ID = 65534  # the uid and gid of the learner's code inside: "nobody", never root
BUBBLEWRAP_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # all bwrap itself sees of the grader's
WORKDIR = "/tmp/work"
INTERRUPT_GRACE_SECONDS = 10  # after the time limit, for the interrupted harness to start answering the checkers
SHM_BYTES = 64 << 20
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")  # cgroup v1's process counter, where the grader may write to it


@dataclass(frozen=True)
class Limits:
    """What one submission may use. The defaults leave room for the heaviest
    lesson: lesson 11 peaks at 4.6 GB of address space in the sandbox."""

    seconds: float = 600  # the whole notebook
    memory_bytes: int = 6 << 30  # address space of each process
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
    if _pids_cgroup_root():
        return f"a pids cgroup ({PIDS_CGROUP})"
    if os.geteuid() != 0:
        return "RLIMIT_NPROC in the sandbox's user namespace"
    return "none: root is exempt from RLIMIT_NPROC and no pids cgroup is writable"


def _pids_cgroup_root() -> Path | None:
    return PIDS_CGROUP if os.access(PIDS_CGROUP / "cgroup.procs", os.W_OK) else None


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
    command += ["--ro-bind", str(release), RELEASE_MOUNT, "--remount-ro", "/", "--clearenv"]
    for name, value in sandbox_environment(Path(RELEASE_MOUNT), "/tmp").items():
        command += ["--setenv", name, value]
    limits_json = json.dumps(limits.rlimits(count_processes=True))
    return [*command, "--setenv", "COURSE_GRADING_LIMITS", limits_json, "--", *_harness_command(RELEASE_MOUNT)]


class _ProcessCgroup:
    """A pids cgroup of its own for one sandbox, where the grader may make one:
    the only bound on a fork bomb when the grader runs as root (RLIMIT_NPROC
    does not apply to root). Elsewhere it does nothing."""

    def __init__(self, limit: int):
        root = _pids_cgroup_root()
        self.path = root / f"course-grade-{os.getpid()}-{time.monotonic_ns()}" if root else None
        if self.path:
            try:
                self.path.mkdir()
                (self.path / "pids.max").write_text(str(limit))
            except OSError:
                self.path = None

    def enter(self) -> None:
        """In the child, before exec: join the cgroup (children inherit it)."""
        if self.path:
            (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def hit_limit(self) -> bool:
        try:
            return self.path is not None and " 0" not in (self.path / "pids.events").read_text()
        except OSError:
            return False

    def remove(self) -> None:
        if self.path:
            for _ in range(50):  # the last processes may take a moment to be reaped
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def run_submission(cells: list[str], release: Path, limits: Limits, sandboxed: bool = True, judge=None) -> Run:
    """Run the code cells (sources in order) in the sandbox; see the module
    docstring. Then, if given, `judge(session)` runs in this process while
    the sandbox waits, and calls the learner's objects through the `Session`;
    what it returns is `run.judged`."""
    cgroup = _ProcessCgroup(limits.processes) if sandboxed else None
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
        if cgroup and cgroup.hit_limit():
            run.notes.append(f"reached the limit of {limits.processes} processes")
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

    def send(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            self.process.stdin.flush()
        except OSError:
            pass  # the harness died; reading says how

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
    channel.send(cells)
    try:
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
                          "output": str(message.get("output") or "")})
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
        if self.ended:
            raise remote.SessionEnded(f"not checked: {self.ended}")
        self.count += 1
        kwargs = kwargs or {}
        self.channel.send(remote.encode_request({"id": self.count, "op": operation, "target": target, "args": args,
                                                 "kwargs": kwargs, "grad": torch.is_grad_enabled(),
                                                 "watch": remote.watched()}))
        try:
            while True:
                reply = _reply(self.channel.line(self.deadline, f"{self.channel.limits.check_seconds:g} s of checking"))
                if reply.get("reply") == self.count:
                    break
        except _Ended as ended:
            self.ended = f"the sandbox stopped answering ({ended})"
            _kill(self.channel.process)
            raise remote.SessionEnded(f"not checked: {self.ended}") from None
        return read_reply(self, reply, args, kwargs)


def read_reply(session, reply: dict, args: tuple, kwargs: dict):
    """The result of a request, from the harness's reply (see remote.py)."""
    remote.saw(reply.get("used"))
    if "error" in reply:
        message = str(reply["error"])
        if reply.get("not_implemented"):
            raise NotImplementedError(message)
        if reply.get("no_attribute"):  # so that getattr(remote, name, default) and hasattr work
            raise AttributeError(message)
        raise remote.LearnerError(message, str(reply.get("where") or ""))
    try:
        if isinstance(reply.get("changed"), str):  # the learner's code wrote into these arguments
            for key, value in remote.decode_value(reply["changed"]).items():
                mine = args[key] if isinstance(key, int) and key < len(args) else kwargs.get(key)
                if isinstance(mine, torch.Tensor) and isinstance(value, torch.Tensor):
                    with torch.no_grad():
                        mine.set_(value.to(mine.dtype)) if mine.shape != value.shape else mine.copy_(value)
                elif isinstance(mine, list) and isinstance(value, list):
                    mine[:] = value
                elif isinstance(mine, dict) and isinstance(value, dict):
                    mine.clear()
                    mine.update(value)
        if "value" in reply:
            return remote.decode_value(str(reply["value"]))
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
