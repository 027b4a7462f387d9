"""The machinery behind every `check_...` function of the exercises.

A checker runs the learner's code through a `Checker`, which turns whatever
happens (a wrong shape, NaNs, an exception, `NotImplementedError`) into a line
of feedback instead of a traceback:

    def check_count_words(count_words):
        with Checker("00.count_words") as check:
            counts = check.call(count_words, "To be, or not to be")
            check.that("returns a dict", isinstance(counts, dict), expected="dict", actual=type(counts).__name__)

The per-lesson checkers live beside this file, one module per topic.

In the notebook a checker prints its report and records the result in the
progress log. When `course grade` judges a submission, the same checker runs
in the grader (`judging()`), on the learner's objects in the sandbox
(`remote.Remote`): the report is collected instead, and the item earns
nothing if the learner's code ran the course's own version of the exercise
(`references=`).
"""

import ast
import collections
import contextlib
from pathlib import Path

import numpy as np
import torch

from .. import progress, remote

# While `judging()`: (exercise id, points earned, status, report) of each checker that ran.
_judged: list | None = None
# In the notebook, for `yours_if_passed`: each exercise's last verdict in this
# kernel, and the learner's objects that its checker called.
_verdicts: dict[str, tuple[str, list]] = {}
_seed_offset = 0  # while `judging(seed)`: added to the seeds of the checkers' random inputs


@contextlib.contextmanager
def judging(seed: int = 0):
    """Collect the checkers' results instead of printing and recording them;
    `seed` moves the checkers' random inputs (see `seeded`)."""
    global _judged, _seed_offset
    before = _judged, _seed_offset
    _judged, _seed_offset = [], seed
    try:
        yield _judged
    finally:
        _judged, _seed_offset = before


def seeded(base: int) -> int:
    """The seed of a checker's random inputs: `base` in the notebook, so that a
    report reads the same at every run; moved by the grader's seed when judged,
    so that the inputs are unknown while the notebook runs and no table of the
    right outputs can be made for them. Only for checkers that compare with the
    reviewed version on the same inputs: a statistical check keeps its inputs,
    whose tolerances were set on them."""
    return base + _seed_offset


def random_normal(generator: torch.Generator, *shape, mean: float = 0.0, std: float = 1.0,
                  dtype=torch.float32) -> torch.Tensor:
    """A checker's random input: drawn in float64 from `generator` (so every
    dtype gets the same numbers), then cast to `dtype`."""
    return (mean + std * torch.randn(*shape, generator=generator, dtype=torch.float64)).to(dtype)


def yours_if_passed(answer, exercise_id: str, reviewed):
    """The learner's `answer` if its checker passed in this kernel, else the
    course's `reviewed` version (None where there is none: the lesson then
    skips what needs it); one line says which the next cells run, and why. So
    a lesson goes on with the learner's own code where it works, and still
    runs where it is not written yet or is wrong."""
    name = getattr(answer, "__name__", "your answer")
    verdict, checked = _verdicts.get(exercise_id, ("its check has not run yet: run the check cell above", []))
    if not any(answer is seen for seen in checked) and verdict == "passed":
        verdict = f"your {name} changed since its check ran: run the check cell again"
    if verdict == "passed":
        print(f"→ The next cells run your {name}: it passed its checks.")
        return answer
    if reviewed is None:  # nothing to fall back on: the next cell waits for the learner's
        print(f"→ The next cell runs your {name} once it passes its checks ({exercise_id}: {verdict}).")
        return None
    print(f"→ The next cells run the course's version of {name} ({exercise_id}: {verdict}).")
    return reviewed


class _StopChecking(Exception):
    """Raised inside a Checker block when later checks would be meaningless."""


class Checker:
    def __init__(self, exercise_id: str, points: float = 1, references=()):
        """`references`: the course's own functions or classes that answer this
        exercise; a graded answer that runs one of them earns nothing."""
        self.exercise_id, self.points = exercise_id, points
        self.results: list[tuple[bool, str, str]] = []  # (passed, name, detail)
        self.status = "checked"  # or "not attempted", "crashed"
        self.calls_answered = 0  # learner calls that returned: none means nothing is written yet
        self.wrote_into: tuple = ()  # the arguments the last call's learner code wrote into (positions, names)
        self.called: list = []  # the learner's functions and classes that the checks called
        self.watch = remote.watching(references)

    def __enter__(self) -> "Checker":
        self.watch.__enter__()
        return self

    def __exit__(self, kind, error, trace) -> bool:
        self.watch.__exit__()
        if kind is not None and issubclass(kind, remote.LearnerError):  # the sandbox failed outside check.call
            self._crashed(error)
        elif kind is not None and not issubclass(kind, _StopChecking):
            return False  # a bug in the checker itself: let it show
        for name in sorted(self.watch.seen):
            self.fail("your own code, not the course's", expected="your implementation",
                      actual=f"your answer runs the course's own {name.replace(':', '.')}",
                      hint="the exercise is to write it yourself: the grader gives no points for the reviewed version")
        if self.watch.switched_off:
            self.fail("your own code, not the course's", expected="the grader's watch over the course's code left on",
                      actual="your code switched off the profiler by which the grader sees what it runs")
        if _judged is not None:
            _judged.append((self.exercise_id, self.points if self.passed else 0, self.status, self.report()))
            return True
        print(self.report())
        _verdicts[self.exercise_id] = (self.verdict(), self.called)
        if self.status != "not attempted" or self.results:  # a stub alone records nothing
            progress.record(self.exercise_id, "exercise", self.points if self.passed else 0, self.points)
        return True

    @property
    def passed(self) -> bool:
        return self.status == "checked" and bool(self.results) and all(ok for ok, _, _ in self.results)

    # --- running the learner's code ---

    def call(self, function, *args, given: bool = False, **kwargs):
        """Call the learner's function; stop with a clear message if it fails.
        given=True marks code the exercise hands out ready-made (a class's
        __init__, say): its running says nothing about whether work began.

        The function gets copies of the arguments: whatever it writes into
        them, the checker's own inputs, from which it computes what is
        expected, stay as they were; `wrote_into` says which it changed."""
        if not callable(function):
            self.fail("your answer is a function", expected="a function (def ...)", actual=f"{type(function).__name__}: {function!r:.60}")
            raise _StopChecking
        copies, named = [_own_copy(arg) for arg in args], {key: _own_copy(value) for key, value in kwargs.items()}
        return self._answer(function, lambda: function(*copies, **named), (args, kwargs), (copies, named), given)

    def gradient(self, function, *args, wrt: int):
        """Call the learner's function and take the gradient of sum(output²)
        with respect to args[wrt]: (output, gradient, or None if none flows)."""
        if not callable(function):
            return self.call(function)
        copies = [_own_copy(arg) for arg in args]
        return self._answer(function, lambda: remote.gradient(function, copies, wrt), (args, {}), (copies, {}))

    def parameter_gradients(self, module, *args):
        """Call the learner's module on args from cleared gradients and take
        the gradient of sum(output²): ({name: requires_grad}, {name:
        gradient or None}) of its parameters (remote.parameter_gradients)."""
        copies = [_own_copy(arg) for arg in args]
        return self._answer(module, lambda: remote.parameter_gradients(module, copies), (args, {}), (copies, {}))

    def call_on(self, device: str, function, *args):
        """`call`, with `device` as the default device while the learner's
        function runs: a tensor it makes without `device=` lands there."""
        if not callable(function):
            return self.call(function)
        copies = [_own_copy(arg) for arg in args]
        return self._answer(function, lambda: remote.call_on(device, function, copies), (args, {}), (copies, {}))

    def in_processes(self, function, world_size: int, runner, *args, timeout: float):
        """What `runner` reports from each of `world_size` processes of a
        process group in which it calls the learner's function (see
        remote.in_processes), by rank."""
        if not callable(function):
            return self.call(function)
        return self._answer(function, lambda: remote.in_processes(function, world_size, runner, *args, timeout=timeout),
                            ((), {}), ((), {}))

    def _answer(self, function, run, originals, copies, given: bool = False):
        if not any(function is seen for seen in self.called):
            self.called.append(function)
        try:
            remote.note_written(None)
            result = run()
            self.calls_answered += not given
            # Remote: the sandbox's copies changed, not these, and the reply said which.
            self.wrote_into = remote.written() if isinstance(function, remote.Remote) else _changed(originals, copies)
            return result
        except NotImplementedError:
            self.status = "not attempted"
            raise _StopChecking from None
        except Exception as error:  # the learner's bug: report it, never crash the checker
            self._crashed(error, f"calling {getattr(function, '__name__', None) or 'your function'}")
            raise _StopChecking from None

    def _crashed(self, error: Exception, name: str = "running your code") -> None:
        self.status = "crashed"
        if isinstance(error, remote.SessionEnded):
            self.results.append((False, name, str(error)))
            return
        if isinstance(error, remote.LearnerError):  # raised in the sandbox: its message names the type
            said, where = str(error), error.where
        else:
            said, where = f"{type(error).__name__}: {error}", remote.where_raised(error)
        self.results.append((False, name, f"it raised {said}" + (f"\n      ({where})" if where else "")))

    def require_module_class(self, answer, expected: str) -> None:
        """Stop unless the learner's answer is a class derived from nn.Module."""
        self.require("your answer is a class derived from nn.Module", remote.is_subclass(answer, torch.nn.Module),
                     expected=f"class {expected}(nn.Module)", actual=repr(answer)[:60])

    # --- recording checks ---

    def that(self, name: str, passed: bool, expected=None, actual=None, hint: str = "") -> bool:
        detail = "" if passed else _detail(expected, actual, hint)
        self.results.append((bool(passed), name, detail))
        return bool(passed)

    def left_unchanged(self, name: str,
                       hint: str = "compute new tensors: an in-place operation changes the caller's tensor") -> bool:
        """That the last `call` wrote into none of its arguments."""
        return self.that(name, not self.wrote_into, "inputs unchanged", "your function wrote into its input", hint)

    def fail(self, name: str, expected=None, actual=None, hint: str = "") -> None:
        self.that(name, False, expected, actual, hint)

    def require(self, name: str, passed: bool, expected=None, actual=None, hint: str = "") -> None:
        """Like `that`, but stop here if it fails (later checks would only repeat it)."""
        if not self.that(name, passed, expected, actual, hint):
            raise _StopChecking

    def close(self, name: str, actual, expected, atol: float = 1e-5, rtol: float = 1e-4, hint: str = "",
              mistakes: dict | None = None) -> bool:
        """Compare an array or tensor with the expected one: type, shape, NaNs, then values.

        `mistakes` maps the name of a classic slip to the output that slip
        produces on the same input ({"softmax over the wrong axis": ...}); when
        the learner's output matches one, the report names it."""
        if not isinstance(actual, (torch.Tensor, np.ndarray)):
            return self.that(name, False, "a tensor", f"{type(actual).__name__}", "return a torch.Tensor")
        got = torch.as_tensor(actual).detach().cpu()
        want = torch.as_tensor(expected).detach().cpu()
        if tuple(got.shape) != tuple(want.shape):
            return self.that(name, False, f"shape {tuple(want.shape)}", f"shape {tuple(got.shape)}", hint)
        if not got.is_floating_point() and want.is_floating_point():
            return self.that(name, False, f"a floating-point tensor ({want.dtype})", f"{got.dtype}", hint)
        for mistake, wrong in (mistakes or {}).items():  # first: a slip often shows up as NaNs
            wrong = torch.as_tensor(wrong).detach().cpu().double()
            if wrong.shape == got.shape and torch.allclose(got.double(), wrong, atol=atol, rtol=rtol, equal_nan=True):
                hint = f"your output is exactly what {mistake} gives"  # the general hint would only distract
                break
        if torch.isnan(got.float()).any():
            position = tuple(torch.nonzero(torch.isnan(got.float()))[0].tolist())
            return self.that(name, False, "no NaN", f"NaN at position {position}", hint)
        difference = (got.double() - want.double()).abs()
        within = difference <= atol + rtol * want.double().abs()
        if bool(within.all()):
            return self.that(name, True)
        position = tuple(torch.nonzero(~within)[0].tolist())
        return self.that(name, False, f"{_number(want[position])} at position {position}",
                         f"{_number(got[position])} (largest difference {difference.max().item():.2g})", hint)

    # --- the report ---

    def verdict(self) -> str:
        """In a few words, after the report: "passed", "not attempted yet" or
        "2 of 6 checks passed"."""
        if self.passed:
            return "passed"
        if self.status == "not attempted" and not self.results:
            return "not attempted yet"
        return f"{sum(ok for ok, _, _ in self.results)} of {len(self.results)} checks passed"

    def report(self) -> str:
        if self.status == "not attempted" and not self.calls_answered:
            self.results.clear()  # checks of the given scaffolding say nothing yet
            return (f"… {self.exercise_id}: not attempted yet. Replace `raise NotImplementedError` "
                    "with your code and run both cells again.")
        if self.status == "not attempted":  # some parts written, the rest still a stub
            self.results.append((False, "the rest of the exercise",
                                 "not written yet: your code still raises NotImplementedError there"))
        lines = [f"{'✓' if ok else '✗'} {name}" + (f"\n      {detail}" if detail else "") for ok, name, detail in self.results]
        passed = sum(ok for ok, _, _ in self.results)
        verdict = (f"All {passed} checks passed: well done." if self.passed
                   else f"{passed} of {len(self.results)} checks passed; fix the first ✗ and run again.")
        return "\n".join([f"{self.exercise_id}", *lines, verdict])


def _own_copy(value):
    """A copy of a checker's input for the learner's code to have: tensors,
    arrays and the lists, tuples and dicts holding them; anything else (a
    Remote, a generator, a number) as it is."""
    if isinstance(value, torch.Tensor):
        copy = value.detach().clone()
        return copy.requires_grad_() if value.requires_grad else copy
    if isinstance(value, np.ndarray):
        return value.copy()
    if type(value) in (list, tuple):
        return type(value)(_own_copy(item) for item in value)
    if type(value) in (dict, collections.Counter):
        return type(value)({key: _own_copy(item) for key, item in value.items()})
    return value


def _changed(originals, copies) -> tuple:
    """The arguments (positions, then names) whose copy no longer equals the original."""
    (args, kwargs), (arg_copies, kwarg_copies) = originals, copies
    return (*(index for index, (arg, copy) in enumerate(zip(args, arg_copies)) if not remote.same_value(copy, arg)),
            *(name for name in kwargs if not remote.same_value(kwarg_copies[name], kwargs[name])))


def _number(value: torch.Tensor) -> str:
    return str(value.item()) if value.dtype == torch.bool else f"{value.item():.4f}"


def _detail(expected, actual, hint: str) -> str:
    parts = []
    if expected is not None:
        parts.append(f"expected: {expected}")
    if actual is not None:
        parts.append(f"actual:   {actual}")
    if hint:
        parts.append(f"hint:     {hint}")
    return "\n      ".join(parts)


def _checker_calls():
    """(checks module name, `Checker(...)` call node) for every checker beside
    this file: the id written in a checker is the only list of exercises there is."""
    for module in sorted(Path(__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Checker" and node.args
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                yield module.stem, node


def exercise_points(lesson: str | None = None) -> dict[str, float]:
    """Every exercise id, with its points (`Checker("NN.name", points=...)`);
    `scores` totals lessons with it."""
    found = {}
    for _, node in _checker_calls():
        points = next((k.value.value for k in node.keywords if k.arg == "points" and isinstance(k.value, ast.Constant)), 1)
        found[node.args[0].value] = points
    return {item: points for item, points in sorted(found.items()) if lesson is None or item.startswith(f"{lesson}.")}


def exercise_references() -> dict[str, list]:
    """Every exercise id, with the course's pieces that answer it (the
    `references=[...]` of its Checker, each a name or a dotted attribute)."""
    import importlib

    found = {}
    for module_name, node in _checker_calls():
        listed = next((k.value for k in node.keywords if k.arg == "references"), None)
        if listed is None:
            continue
        namespace = vars(importlib.import_module(f"{__name__}.{module_name}"))
        found.setdefault(node.args[0].value, []).extend(_resolve(element, namespace) for element in listed.elts)
    return found


def _resolve(node: ast.expr, namespace: dict):
    if isinstance(node, ast.Name):
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        return getattr(_resolve(node.value, namespace), node.attr)
    raise ValueError(f"a checker's references= holds {ast.unparse(node)!r}: name the pieces, e.g. data.word_counts")
