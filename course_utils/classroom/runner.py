"""Execute lessons headlessly: `course run` (executed copies into build/) and
`make notebooks` (re-execute the sources and store them as the .ipynb pairs)."""

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ipykernel.kernelspec
import jupytext
import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from tqdm.auto import tqdm

from course_utils import env

from . import paths, progress, quiz
from .lessons import BUDGET_SECONDS, TIMINGS, Lesson, measured_seconds

KERNEL_NAME = "transformers-course"
KERNEL_DISPLAY_NAME = "Python (transformers course)"
CELL_TIMEOUT_SECONDS = 600


def kernel_environment(progress_file: Path) -> dict[str, str]:
    """What every kernel of a headless run (`course run`, the tests, grading) sees."""
    return {
        **env.OFFLINE_VARIABLES,
        env.BLOCK_NETWORK_VARIABLE: "1",
        quiz.HEADLESS_VARIABLE: "1",
        progress.PROGRESS_VARIABLE: str(progress_file),
        "PYTHONHASHSEED": "0",  # set order and str hashes, printed in some outputs
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }


class _ThisEnvironment(KernelSpecManager):
    """Always start the kernel with this Python, whatever kernels are registered.
    Under COURSE_BLOCK_NETWORK the guard goes up before the first cell, so it
    holds even in a notebook whose set-up cell was deleted."""

    def get_kernel_spec(self, kernel_name):
        spec = ipykernel.kernelspec.get_kernel_dict()
        if os.environ.get(env.BLOCK_NETWORK_VARIABLE) == "1":
            spec["argv"] = [*spec["argv"], "--IPKernelApp.exec_lines=['import course_utils.env as e; e.block_network()']"]
        return KernelSpec(resource_dir=ipykernel.kernelspec.RESOURCES, **spec)


def read_source(lesson: Lesson) -> nbformat.NotebookNode:
    notebook = jupytext.read(lesson.source)
    notebook.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}
    try:
        keep_cell_ids(notebook, nbformat.read(lesson.notebook, as_version=4))
    except (OSError, ValueError):  # none stored yet, or not a notebook (NotJSONError is a ValueError): fresh ids
        pass
    return notebook


def keep_cell_ids(notebook: nbformat.NotebookNode, stored: nbformat.NotebookNode) -> None:
    """Give `notebook`'s cells the ids they have in the stored .ipynb, so that
    re-running a lesson after a one-word edit changes one cell of its diff,
    not every cell's (jupytext draws new random ids at each read). A cell
    keeps the id of a stored cell with the same source; an edited cell, the id
    of the stored cell at its position, if that one is of its kind and free."""
    free = {cell.id: cell for cell in stored.cells if cell.get("id")}
    unmatched = []
    for index, cell in enumerate(notebook.cells):
        same = next((cell_id for cell_id, old in free.items()
                     if (old.cell_type, old.source) == (cell.cell_type, cell.source)), None)
        if same is None:
            unmatched.append(index)
        else:
            cell.id = free.pop(same).id
    for index in unmatched:
        old = stored.cells[index] if index < len(stored.cells) else None
        if old is not None and old.get("id") in free and old.cell_type == notebook.cells[index].cell_type:
            notebook.cells[index].id = free.pop(old.id).id


def execute(notebook: nbformat.NotebookNode, workdir: Path, description: str, allow_errors: bool = False,
            quiet: bool = False) -> None:
    """Run every cell in order in a fresh kernel, with a progress bar over cells
    (none if quiet). With allow_errors, a failing cell is recorded and the next
    ones still run."""
    code_cells = sum(cell.cell_type == "code" for cell in notebook.cells)
    # disable=None: no bar where stderr is not a terminal (a CI log, a file), whose \r updates would be garbage there.
    bar = tqdm(total=code_cells, desc=description, unit="cell", leave=False, disable=True if quiet else None)
    client = NotebookClient(
        notebook, km=KernelManager(kernel_spec_manager=_ThisEnvironment(), kernel_name=KERNEL_NAME),
        timeout=CELL_TIMEOUT_SECONDS, resources={"metadata": {"path": str(workdir)}}, record_timing=False,
        allow_errors=allow_errors,
        on_cell_executed=lambda **_: bar.update(1),
    )
    try:
        # The kernel's own stderr only says that it talks over loopback TCP and
        # when it shuts down; what cells print and raise arrives separately.
        client.execute(stderr=subprocess.DEVNULL)
    finally:
        bar.close()
        if client.km.has_kernel:  # nbclient stops only kernels it made itself; this one is ours
            client.km.shutdown_kernel(now=True)


@dataclass(frozen=True)
class LessonRun:
    name: str
    seconds: float
    error: str | None = None  # the failing cell's exception, e.g. "ZeroDivisionError: division by zero"

    @property
    def ok(self) -> bool:
        return self.error is None


def execute_lessons(lessons: list[Lesson], out_dir: Path, in_place: bool = False) -> list[LessonRun]:
    """Execute the lessons in order, each timed; a failing lesson is reported
    and the others still run. In a student release (a practice copy), the
    answers and checks are recorded in that copy's progress log. The executed
    notebooks go to out_dir (a failed run too, to inspect) or, with in_place,
    over the stored .ipynb pairs (a failed one is left as it was)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = measured_seconds()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        # A learner's own copy keeps what its notebooks answer; the worked
        # notebooks' answers are the keys, and would only fill a log with them.
        log = progress.progress_file() if paths.is_student_release() else Path(scratch) / "progress.jsonl"
        os.environ.update(kernel_environment(log))
        for lesson in tqdm(lessons, desc="lessons", unit="lesson", disable=None):
            notebook = read_source(lesson)
            start = time.perf_counter()
            error = None
            try:
                execute(notebook, lesson.source.parent, lesson.name)
            except CellExecutionError as failure:
                error = f"{failure.ename}: {failure.evalue}"
                tqdm.write(f"\n{lesson.name} failed:\n{_short(failure)}\n")
            seconds = time.perf_counter() - start
            if error is None:
                timings[lesson.name] = round(seconds, 1)
                target = lesson.notebook if in_place else out_dir / lesson.notebook.name
                jupytext.write(notebook, target, fmt="ipynb")
            elif not in_place:
                nbformat.write(notebook, out_dir / lesson.notebook.name)  # keep the partial run to inspect
            runs.append(LessonRun(lesson.name, seconds, error))
            if not sys.stderr.isatty():  # no bar in a log: a line per lesson instead
                print(f"{lesson.name}: {'ok' if error is None else 'FAILED'} in {seconds:.0f} s", flush=True)
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps(timings, indent=1, sort_keys=True))
    return runs


def run_lessons(lessons: list[Lesson], in_place: bool = False, out_dir: Path | None = None) -> bool:
    """`course run`: execute the lessons (see execute_lessons), print minutes
    per lesson; True if all passed."""
    out_dir = out_dir or paths.BUILD / "executed"
    runs = execute_lessons(lessons, out_dir, in_place)
    print(timing_table(runs))
    advice = over_budget_advice(runs, os.getloadavg()[1] if hasattr(os, "getloadavg") else None, os.cpu_count() or 1)
    if advice:
        print("\n" + advice)
    print(f"\nExecuted notebooks: {'notebooks/ (in place)' if in_place else out_dir}")
    return all(run.ok for run in runs)


def timing_table(runs: list[LessonRun]) -> str:
    width = max([len(run.name) for run in runs] + [6])
    lines = [f"{'lesson':<{width}}  minutes  budget  status", "-" * (width + 25)]
    for run in runs:
        over = "  over budget" if run.seconds > BUDGET_SECONDS else ""
        status = "ok" if run.ok else "FAILED"
        lines.append(f"{run.name:<{width}}  {run.seconds / 60:7.1f}  {BUDGET_SECONDS / 60:6.1f}  {status}{over}")
    lines.append(f"{'total':<{width}}  {sum(run.seconds for run in runs) / 60:7.1f}")
    return "\n".join(lines)


def over_budget_advice(runs: list[LessonRun], load: float | None, cores: int) -> str:
    """What to do about lessons over their time budget; "" if none is. `load`:
    the machine's load average over the last 5 minutes (None where the system
    has none), which shows whether other programs were using the CPU."""
    over = [run.name for run in runs if run.ok and run.seconds > BUDGET_SECONDS]
    if not over:
        return ""
    text = (f"{', '.join(over)} took longer than its budget of {BUDGET_SECONDS / 60:.1f} minutes. "
            "The training cells share the CPU with everything else that runs")
    if load is not None and load > cores:
        text += (f", and other programs were busy: the load average was {load:.1f} on {cores} cores. "
                 "Close them and run the lesson again")
    else:
        text += (", and nothing else was busy: this machine may be slower than the course's 2-core reference. "
                 "`course bench` measures it against the course's figures")
    return text + "."


def _short(error: CellExecutionError) -> str:
    text = str(error)
    return text if len(text) < 3000 else text[:1500] + "\n...\n" + text[-1500:]
