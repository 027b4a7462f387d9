"""The program `course grade` starts inside the sandbox, once per submission.

It reads the submission's code cells and its time limit from stdin, as one
JSON line ({"cells": [...], "seconds": 600}), runs the cells in order in one
IPython shell, as JupyterLab's "Run All" would (a failing cell is reported and
the next ones still run), and writes JSON lines to the stdout it was started
with:

    {"start": 3}                                     cell [3] is about to run
    {"cell": 3, "error": "ZeroDivisionError: ...", "output": "...",
     "answers": {...}}                              cell [3] ran
    {"timed_out": 12}                                the time limit stopped cell [12]
    {"done": true}                                   no cell runs any more

Then it serves the grader's requests (one per line on stdin, see remote.py):
the checkers run in the grader and call the learner's functions and classes
here, on the grader's inputs, until the grader closes stdin:

    {"reply": 7, "value": ...}                       request 7's result

Cells are numbered as JupyterLab numbers them after Run All: [1], [2], ...
over the code cells that are not empty. What a cell prints is kept up to
OUTPUT_KEPT characters (its start and its end). Each cell's line carries the
evidence so far, read from this run's progress log: the value of every quiz
answer. At the time limit the running cell is interrupted (KeyboardInterrupt,
as JupyterLab's stop button does) and no later cell runs; the checkers are
still served, so what the finished cells defined is checked. Code that
swallows the interrupt only loses this: the grader kills the sandbox a few
seconds later, and its exercises go unchecked. What the exercise checkers
printed in the notebook is only shown to the learner: the grader runs the
checkers itself, through the requests above.

None of this is trusted. The learner's code runs in this process and could
write any line; the grader outside treats every line as a claim to judge, and
a claim can only cost its author. Everything that could harm others (the
filesystem, the network, other processes, memory) is bounded by the sandbox
and the limits set here before the first cell runs.
"""

import contextlib
import importlib
import io
import json
import os
import resource
import signal
import sys
import threading

import numpy as np
import torch

from . import remote

OUTPUT_KEPT = 20_000  # characters of one cell's output: its first and last 10,000
SANDBOXED_VARIABLE = "COURSE_GRADING_SANDBOXED"  # set by the sandbox: this process's pid namespace is its own


class KeptOutput(io.TextIOBase):
    """A stream for sys.stdout and sys.stderr that keeps the start and the end
    of what is written, and counts what it drops in between."""

    def __init__(self, keep: int = OUTPUT_KEPT):
        self.half, self.head, self.tail, self.dropped = keep // 2, "", "", 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = self.half - len(self.head)
        self.head += text[:room]
        rest = text[max(room, 0):]
        if rest:
            joined = self.tail + rest
            self.dropped += max(len(joined) - self.half, 0)
            self.tail = joined[-self.half:]
        return len(text)

    def text(self) -> str:
        if not self.dropped:
            return self.head + self.tail
        return f"{self.head}\n[… {self.dropped:,} characters of output left out …]\n{self.tail}"


def set_limits(limits: dict) -> None:
    """Soft and hard limits alike, so that the learner's code cannot raise them."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def evidence(log: str) -> dict:
    """The latest quiz answer of each question, as a value."""
    answers = {}
    try:
        lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
            if entry.get("kind") == "quiz" and "answer" in entry:
                answers[entry["item"]] = entry["answer"]
        except (ValueError, AttributeError, KeyError, TypeError):
            continue
    return {"answers": answers}


# --- serving the grader's checkers ----------------------------------------------

class Objects:
    """The learner's objects that the grader holds a Remote of, by handle."""

    def __init__(self):
        self.held: list = []

    def hold(self, value) -> dict:
        """The reply for a result: the value itself if it is plain data, else a handle."""
        try:
            return {"value": remote.encode_value(plain(value))}
        except _NotPlain:
            self.held.append(value)
            kind = type(value)
            name = getattr(value, "__name__", "")
            return {"object": len(self.held) - 1, "type": kind.__name__, "repr": _safe_repr(value),
                    "name": name[:60] if isinstance(name, str) else "",
                    "types": [remote.qualified_name(cls) for cls in kind.__mro__],
                    "classes": [remote.qualified_name(cls) for cls in value.__mro__] if isinstance(value, type) else []}

    def resolve(self, value):
        """A request's argument, with each Remote the grader passed back (as a
        top-level argument) swapped for its object; anything else as it came."""
        if isinstance(value, remote._Handle):
            return self.held[value.handle]
        if type(value) is tuple:
            return tuple(self.resolve(item) for item in value)
        if type(value) is dict:
            return {key: self.resolve(item) for key, item in value.items()}
        return value


class _NotPlain(Exception):
    pass


def plain(value, depth: int = 0):
    """`value` as tensors and built-in containers only (what weights_only
    loading accepts), or _NotPlain."""
    if depth > 20:
        raise _NotPlain
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, complex, str, bytes):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":  # numbers only: it crosses as a tensor
        return {remote.NUMPY_TAG: torch.from_numpy(np.array(value))}
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {plain(key, depth + 1): plain(item, depth + 1) for key, item in value.items()}
    for kind in (list, tuple, set, frozenset):
        if isinstance(value, kind):
            return kind(plain(item, depth + 1) for item in value)
    raise _NotPlain


def _safe_repr(value) -> str:
    try:
        return repr(value)[:200]
    except Exception:
        return f"<{type(value).__name__}>"


def _fingerprint(code) -> tuple:
    """What a code object does, without its name, file or line numbers: a
    copy of the course's code renamed or moved (code.replace(...)) has the
    same fingerprint."""
    return (code.co_code, code.co_names, tuple(_fingerprint(const) if hasattr(const, "co_code") else repr(const)
                                               for const in code.co_consts))


def reference_codes(names: tuple[str, ...]) -> dict:
    """The fingerprints of the code of the course pieces `names`
    (module:qualname): a function's own, or every method of a class."""
    codes = {}
    for name in names:
        module, _, qualname = name.partition(":")
        try:
            piece = importlib.import_module(module)
            for part in qualname.split("."):
                piece = getattr(piece, part)
        except (ImportError, AttributeError):
            continue
        members = vars(piece).values() if isinstance(piece, type) else [piece]
        for member in members:
            function = getattr(member, "__func__", getattr(member, "fget", member))
            code = getattr(getattr(function, "__wrapped__", function), "__code__", None)
            if code is not None:
                codes[_fingerprint(code)] = name
    return codes


CHECKER_FILES = "course_utils/classroom/checks/"  # in the file name of the checkers' code, sealed or not


class Watch:
    """Notes every call into the course's pieces `names` (a renamed copy of
    their code too), and into any function of the checkers' modules, in
    every thread started through `threading` (on Python 3.12 and later, those
    already running too), while a request runs; `switched_off` if the
    learner's code removed the watch."""

    def __init__(self, names):
        self.names = tuple(names)
        self.codes = reference_codes(tuple(name for name in self.names if name != remote.CHECKER_CODE))
        self.used, self.switched_off = set(), False
        self.seen_codes: dict = {}  # code object -> name or None: each is looked at once

    def __call__(self, frame, event, _):
        if event == "call":
            code = frame.f_code
            if code not in self.seen_codes:
                self.seen_codes[code] = self._name(code)
            if self.seen_codes[code]:
                self.used.add(self.seen_codes[code])

    def _name(self, code) -> str | None:
        if remote.CHECKER_CODE in self.names and CHECKER_FILES in code.co_filename.replace(os.sep, "/"):
            module = code.co_filename.replace(os.sep, "/").split(CHECKER_FILES)[1].split(".")[0]
            return f"course_utils.classroom.checks.{module}:{code.co_qualname}"
        return self.codes.get(_fingerprint(code))

    def __enter__(self) -> "Watch":
        if self.names:
            self._install(self)
        return self

    def __exit__(self, *_) -> None:
        if self.names:
            self.switched_off = sys.getprofile() is not self
            self._install(None)

    @staticmethod
    def _install(function) -> None:
        if hasattr(threading, "setprofile_all_threads"):  # Python 3.12+: the threads already running too
            threading.setprofile_all_threads(function)
        else:
            threading.setprofile(function)
            sys.setprofile(function)


def do_request(request: dict, namespace: dict, objects: Objects) -> dict:
    """Do one request on the learner's objects; see remote.py."""
    watch = Watch(request.get("watch", ()))
    operation = request["op"]
    target = objects.held[request["target"]] if request.get("target") is not None else None
    args, kwargs = objects.resolve(tuple(request.get("args", ()))), objects.resolve(dict(request.get("kwargs", {})))
    inputs = {**dict(enumerate(args)), **kwargs}
    before = {key: _snapshot(value) for key, value in inputs.items() if isinstance(value, (torch.Tensor, list, dict))}
    in_processes = Watch(())  # what the processes of an "in_processes" request report they saw
    try:
        with watch, torch.set_grad_enabled(bool(request.get("grad", True))):
            if operation == "name":
                if args[0] not in namespace:
                    raise NameError(f"name {args[0]!r} is not defined: is its cell in your notebook, and did it run?")
                result = namespace[args[0]]
            elif operation == "call":
                result = target(*args, **kwargs)
            elif operation == "gradient":
                result = remote.local_gradient(target, args, kwargs["wrt"])
            elif operation == "parameter_gradients":
                result = remote.local_parameter_gradients(target, args)
            elif operation == "call_on":
                result = remote.local_call_on(kwargs["device"], target, args)
            elif operation == "in_processes":  # the processes watch themselves: this process's profiler is not theirs
                result, in_processes.used, in_processes.switched_off = remote.local_in_processes(
                    target, args[0], args[1], args[2:], kwargs["timeout"], watch.names)
            elif operation == "getattr":
                result = getattr(target, args[0])
            elif operation == "getitem":
                result = target[args[0]]
            elif operation == "len":
                result = len(target)
            else:
                raise ValueError(f"unknown request {operation!r}")
    except BaseException as error:  # the learner's exception, SystemExit included: the grader reports it
        return {"error": f"{type(error).__name__}: {error}"[:500], "used": sorted(watch.used),
                "unwatched": watch.switched_off, "where": remote.where_raised(error)[:300],
                "not_implemented": isinstance(error, NotImplementedError),
                "no_attribute": operation == "getattr" and isinstance(error, AttributeError)}
    reply = objects.hold(result)
    # The learner's code wrote into these arguments: said, never sent back.
    changed = [key for key, value in before.items() if not remote.same_value(_snapshot(inputs[key]), value)]
    return {**reply, "changed": changed, "used": sorted(watch.used | in_processes.used),
            "unwatched": watch.switched_off or in_processes.switched_off}


def _snapshot(value):
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    try:
        return plain(value)
    except _NotPlain:
        return None


def serve(namespace: dict, requests, send) -> None:
    objects = Objects()
    for line in requests:
        try:
            request = remote.decode_request(line)
        except Exception:
            continue
        try:
            send(reply=request["id"], **do_request(request, namespace, objects))
        except Exception as error:  # a reply that cannot be encoded: said, never fatal
            send(reply=request.get("id"), error=f"{type(error).__name__}: {error}"[:500], where="", used=[])


class TimeLimit:
    """Interrupts the running cell when the notebook's time is up (SIGALRM);
    between cells it only notes that the time is up."""

    def __init__(self, seconds: float):
        self.up = self.in_cell = False
        signal.signal(signal.SIGALRM, self._ring)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def _ring(self, *_) -> None:
        self.up = True
        if self.in_cell:
            raise KeyboardInterrupt("the notebook's time limit")

    @contextlib.contextmanager
    def interruptible(self):
        self.in_cell = True
        try:
            yield
        finally:
            self.in_cell = False

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main() -> None:
    report = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    requests = os.fdopen(os.dup(0), "rb")
    submission = json.loads(requests.readline())
    cells = submission["cells"]
    # What the learner's code writes to the real file descriptors (a
    # subprocess, C code) goes nowhere; what it prints is kept per cell.
    quiet = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(quiet, descriptor)
    set_limits(json.loads(os.environ.pop("COURSE_GRADING_LIMITS", "{}")))
    alone_in_its_sandbox = os.environ.pop(SANDBOXED_VARIABLE, "") == "1"  # read before any learner code runs

    def send(**message) -> None:
        report.write(json.dumps(message) + "\n")

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no history database to write
    shell = InteractiveShell.instance(config=config, colors="NoColor")
    clock = TimeLimit(submission["seconds"])
    for source in cells:
        if not source.strip():
            continue  # JupyterLab gives an empty cell no number
        number = shell.execution_count
        if clock.up:  # no cell starts after the time limit
            send(timed_out=number)
            break
        send(start=number)
        kept = KeptOutput()
        sys.stdout = sys.stderr = kept
        try:
            with clock.interruptible():
                result = shell.run_cell(source, store_history=True)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        if clock.up and isinstance(result.error_in_exec, KeyboardInterrupt):
            send(timed_out=number)
            break
        error = result.error_before_exec or result.error_in_exec
        send(cell=number, error=f"{type(error).__name__}: {error}"[:300] if error else None, output=kept.text(),
             **evidence(os.environ["COURSE_PROGRESS_FILE"]))
    clock.stop()
    if alone_in_its_sandbox:
        # Every other process of the sandbox ends before the checkers call in:
        # none left from the cells can answer for the learner's code. (Not
        # outside a sandbox: there, -1 would mean the instructor's processes.)
        with contextlib.suppress(OSError):
            os.kill(-1, signal.SIGKILL)
    send(done=True)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # what the learner's code prints while checked goes nowhere
    serve(shell.user_ns, requests, send)


if __name__ == "__main__":
    main()
