"""The course's pytest plugin (loaded by `-p course_utils.classroom.pytest_plugin`
in pyproject.toml, so it applies to `pytest notebooks/NN.ipynb` too): every
test and every notebook kernel runs offline.

The kernels that nbval starts inherit this process's environment, so setting it
here gives them the same variables as `course run`: headless quizzes, offline
Hugging Face libraries, a throwaway progress file, and COURSE_BLOCK_NETWORK,
which makes `setup_notebook()` install the network guard in the kernel too.

The kernels run on COURSE_TEST_THREADS threads, 1 unless set, while `make
notebooks` stores the lessons as run on PyTorch's default (every core: 2 on the
course's CPU). So each run of the suite also shows that no stored output depends
on the thread count; and the two pytest-xdist workers fill two cores, not four.

They also train with rounding-sized nudges (`perturbation`): every optimizer
step is followed by a last-bit change of the weights it changed, in the
pattern of variant COURSE_PERTURB_TRAINING, drawn from 1-4 for each run unless
set (0 turns it off) and shown in the header, so that a failure can be
repeated. So each run also shows that no stored result of training hangs on
a last bit.

nbval's strict comparison is kept, with one change: numbers in text outputs
compare within a tolerance (see `output_tolerance`), so that a stored output
made on another CPU or thread count still passes while any real change fails.
"""

import os
import random
import tempfile
from pathlib import Path

import pytest
from nbval.plugin import IPyNbCell

from course_utils import env
from course_utils.classroom import output_tolerance, perturbation, runner

THREADS_VARIABLE = "COURSE_TEST_THREADS"

_scratch = tempfile.mkdtemp(prefix="course-tests-")
os.environ.update(runner.kernel_environment(Path(_scratch) / "progress.jsonl"))
os.environ["OMP_NUM_THREADS"] = os.environ.get(THREADS_VARIABLE, "1")  # read by PyTorch in each new kernel
# pytest-xdist's workers import this plugin too, and inherit the variant the
# controller drew: one machine per run.
os.environ.setdefault(perturbation.VARIABLE, str(random.randint(1, 4)))
perturbation.variant()  # a malformed value stops the run here, with its reason
os.environ.update(perturbation.kernel_startup(Path(_scratch) / "ipython"))
env.block_network()


def pytest_report_header(config):
    return (f"notebook kernels: {os.environ['OMP_NUM_THREADS']} thread(s), weights nudged by a last bit after each step "
            f"({perturbation.VARIABLE}={os.environ[perturbation.VARIABLE]}; set it to repeat this run, 0 for none)")

_compare_exactly = IPyNbCell.compare_outputs


def _compare_numbers_within_tolerance(cell, fresh, stored, skip_compare=None):
    bands = output_tolerance.declared_bands(cell.cell.source)
    fresh = output_tolerance.reconcile_outputs(fresh, stored, cell.sanitize, bands)
    return _compare_exactly(cell, fresh, stored, skip_compare)


IPyNbCell.compare_outputs = _compare_numbers_within_tolerance


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    """A fresh progress log for one test."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(path))
    return path


class Loopback:
    """A sandbox session without the sandbox: each request goes through the
    same encoding, the harness's handling and the grader's decoding, in this
    process. Used to run the checker tests on Remote answers too."""

    def __init__(self, namespace: dict):
        from course_utils.classroom import harness

        self.namespace, self.objects, self.count = namespace, harness.Objects(), 0

    def lookup(self, name: str):
        return self.request("name", None, (name,))

    def request(self, operation: str, target, args: tuple = (), kwargs: dict | None = None):
        import json

        import torch

        from course_utils.classroom import harness, remote, sandbox

        self.count += 1
        request = remote.decode_request(remote.encode_request({
            "id": self.count, "op": operation, "target": target, "args": args, "kwargs": kwargs or {},
            "grad": torch.is_grad_enabled(), "watch": ()}))  # the tests pass the course's own code as answers
        reply = json.loads(json.dumps(harness.do_request(request, self.namespace, self.objects)))
        return sandbox.read_reply(self, reply)


def processes_left() -> list:
    """The processes this one started and that still run (multiprocessing's
    resource tracker and fork server, helpers that live as long as Python, aside)."""
    import psutil

    helpers = ("resource_tracker", "forkserver")
    return [child for child in psutil.Process().children(recursive=True)
            if not any(helper in " ".join(child.cmdline()) for helper in helpers)]


class Watched(Loopback):
    """The loopback sandbox with the grader's watch on, as `course grade`
    runs it: an answer that runs the course's own piece is caught."""

    def request(self, operation: str, target, args: tuple = (), kwargs: dict | None = None):
        import json

        import torch

        from course_utils.classroom import harness, remote, sandbox

        self.count += 1
        request = remote.decode_request(remote.encode_request({
            "id": self.count, "op": operation, "target": target, "args": args, "kwargs": kwargs or {},
            "grad": torch.is_grad_enabled(), "watch": remote.watched()}))
        reply = json.loads(json.dumps(harness.do_request(request, self.namespace, self.objects)))
        return sandbox.read_reply(self, reply)


def graded_report(checker, answer) -> tuple:
    """(points earned, report) of `checker` judging `answer` as `course grade`
    does: in a Watched session, with the grader's seed 3."""
    from course_utils.classroom.checks import judging

    session = Watched({"answer": answer})
    with judging(seed=3) as judged:
        checker(session.lookup("answer"))
    (_, earned, _, report), = judged
    return earned, report


@pytest.fixture(params=["in the notebook", "judged by the grader"])
def both_sides(request, monkeypatch):
    """Run a checker test twice: on the learner's objects as they are, and as
    `course grade` runs it, on Remote stand-ins for them (see remote.py). Every
    `check_...` function of the test module is wrapped for the second run,
    whose checkers draw other random inputs, as a grader's seed makes them."""
    if request.param == "in the notebook":
        return
    from course_utils.classroom import checks

    monkeypatch.setattr(checks, "_seed_offset", 7919)
    module = request.module
    for name, checker in list(vars(module).items()):
        if name.startswith("check_") and getattr(checker, "__module__", "").startswith("course_utils.classroom.checks"):
            def judged(*answers, _checker=checker, **options):
                session = Loopback({f"answer{index}": answer for index, answer in enumerate(answers)})
                return _checker(*(session.lookup(f"answer{index}") for index in range(len(answers))), **options)
            monkeypatch.setitem(vars(module), name, judged)
