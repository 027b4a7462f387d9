"""`course grade SUBMISSIONS/ --out grades.csv`: run every submitted notebook
and grade its quiz answers and exercises by id.

Each submission runs in a process of its own (which starts its own kernel),
offline, under a time limit, with its own progress log; the quiz answers and
checker results recorded in that log are the grade. Items are found by id, so
learners may move, split or delete cells. Whatever goes wrong with one
submission is written in its row; the others are graded all the same.
"""

import csv
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import progress
from .lessons import all_lessons
from .scores import lesson_items

DEFAULT_TIME_LIMIT = 600  # seconds for one whole submission


@dataclass
class Grade:
    submission: str
    lesson: str = ""
    status: str = "ok"
    points: dict[str, float] = field(default_factory=dict)  # item id -> points earned
    maximum: dict[str, float] = field(default_factory=dict)  # item id -> points possible
    reports: dict[str, str] = field(default_factory=dict)  # item id -> what its checker or answer() printed

    @property
    def total(self) -> float:
        return sum(self.points.values())


def lesson_of(notebook: nbformat.NotebookNode, path: Path) -> str:
    """The lesson a notebook belongs to: the release's metadata, else the file name."""
    number = str(notebook.metadata.get("course", {}).get("lesson", ""))
    return number if len(number) == 2 and number.isdigit() else path.name[:2] if path.name[:2].isdigit() else ""


# The child process: run the copy, then write it back with its outputs (the
# feedback quotes them). Killed at the time limit, it leaves the log only.
_CHILD = """
import sys, nbformat
from pathlib import Path
from course_utils.classroom.runner import execute
notebook = nbformat.read(sys.argv[1], as_version=4)
try:
    execute(notebook, Path(sys.argv[1]).parent, "grading", allow_errors=True, quiet=True)
finally:
    nbformat.write(notebook, sys.argv[1])
"""


def _execute_in_subprocess(path: Path, log: Path, time_limit: float) -> str:
    """Run the notebook in a child process, offline; return '' or what went wrong.
    Errors inside cells are not problems here: they are read from the outputs."""
    from .runner import kernel_environment

    environment = {**os.environ, **kernel_environment(log)}
    try:
        result = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                                timeout=time_limit, env=environment, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"timed out after {time_limit:g} s; graded what ran before"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"could not be run: {last[:200]}"
    return ""


def grade_one(path: Path, root: Path, expected_lesson: str | None, time_limit: float) -> Grade:
    grade = Grade(submission=str(path.relative_to(root)))
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # invalid JSON, not a notebook, unreadable file
        grade.lesson = expected_lesson or (path.name[:2] if path.name[:2].isdigit() else "")
        if grade.lesson in {lesson.number for lesson in all_lessons()}:
            grade.maximum = lesson_items(grade.lesson)
            grade.points = dict.fromkeys(grade.maximum, 0.0)
        grade.status = f"unreadable notebook ({type(error).__name__}): not a valid .ipynb file; nothing could be run"
        return grade
    grade.lesson = lesson_of(notebook, path)
    if expected_lesson and grade.lesson != expected_lesson:
        grade.status = f"wrong lesson: this is lesson {grade.lesson or '?'}'s notebook, lesson {expected_lesson} was asked for"
        return grade
    if grade.lesson not in {lesson.number for lesson in all_lessons()}:
        grade.status = "not a lesson of this course (no lesson number in its metadata or file name)"
        return grade
    grade.maximum = lesson_items(grade.lesson)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / path.name  # run a copy: the submission itself is never modified
        nbformat.write(notebook, copy)
        log = Path(scratch) / "progress.jsonl"
        problem = _execute_in_subprocess(copy, log, time_limit)
        results = progress.latest_results(log)
        try:
            executed = nbformat.read(copy, as_version=4)
        except Exception:  # killed while writing: grade from the log alone
            executed = nbformat.v4.new_notebook()
    # Only items of this lesson count, each at most its full points.
    grade.points = {item: min(float(results[item]["points"]), full) if item in results else 0.0
                    for item, full in grade.maximum.items()}
    grade.reports = item_reports(executed)
    notes = [problem] if problem else []
    notes += [f"cell {number} raised {error}" for number, error in cell_errors(executed)]
    missing = [item for item in grade.maximum if item not in results]
    if missing:
        notes.append(f"not answered or not run: {', '.join(missing)}")
    grade.status = "; ".join(notes) or "ok"
    return grade


def cell_errors(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    """(code cell number, 'ErrorName: message') for each cell that failed."""
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    return [(number, f"{output.ename}: {output.evalue}"[:160])
            for number, cell in enumerate(code, start=1) for output in cell.get("outputs", [])
            if output.get("output_type") == "error"]


_CHECKER_HEADER = re.compile(r"^(\d\d\.[\w-]+)$")  # a checker's report starts with the exercise id
_ANSWER_LINE = re.compile(r"^(?:[✓✗] (?:Correct|Not quite) \(.*\) · |… |⚠ .*?)(\d\d\.[\w-]+)")


def item_reports(notebook: nbformat.NotebookNode) -> dict[str, str]:
    """What each checker and answer() printed, by item id: a block runs from
    its first line (the exercise id, or an answer's verdict) to the next one."""
    reports = {}
    for cell in notebook.cells:
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        item = None
        for line in text.splitlines():
            start = _CHECKER_HEADER.match(line) or _ANSWER_LINE.match(line)
            if start:
                item = start.group(1)
                reports[item] = line
            elif item:
                reports[item] += "\n" + line
    return reports


def feedback_text(grade: Grade) -> str:
    lines = [f"Submission: {grade.submission}", f"Lesson: {grade.lesson or '?'}",
             f"Score: {grade.total:g} / {sum(grade.maximum.values()):g}", f"Status: {grade.status}", ""]
    for item, full in grade.maximum.items():
        earned = grade.points.get(item, 0)
        lines.append(f"{'✓' if earned == full else '✗'} {item:<28} {earned:g} / {full:g}")
        if earned < full and grade.reports.get(item):  # say why the points were lost
            lines += ["      " + line for line in grade.reports[item].splitlines()]
    return "\n".join(lines) + "\n"


def grade_folder(folder: Path, out_csv: Path, lesson: str | None = None,
                 time_limit: float = DEFAULT_TIME_LIMIT, echo=print) -> list[Grade]:
    """Grade every .ipynb under `folder`; write the gradebook and one feedback
    file per submission (in GRADEBOOK-feedback/ beside the CSV)."""
    folder, out_csv = Path(folder), Path(out_csv)
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of submitted notebooks")
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise SystemExit(f"No .ipynb files under {folder}")
    feedback_dir = feedback_folder(out_csv)
    feedback_dir.mkdir(parents=True, exist_ok=True)
    for stale in feedback_dir.glob("*.txt"):  # this gradebook's earlier feedback, replaced like the CSV
        stale.unlink()
    grades = []
    for number, path in enumerate(paths, start=1):
        try:
            grade = grade_one(path, folder, lesson, time_limit)
        except Exception as error:  # a grader bug must not cost the other learners their grades
            grade = Grade(submission=str(path.relative_to(folder)), status=f"grader error: {type(error).__name__}: {error}")
        grades.append(grade)
        name = grade.submission.replace(os.sep, "__").removesuffix(".ipynb")
        (feedback_dir / f"{name}.txt").write_text(feedback_text(grade), encoding="utf-8")
        echo(f"[{number}/{len(paths)}] {grade.submission}: {grade.total:g}/{sum(grade.maximum.values()):g} ({grade.status})")
        _write_csv(out_csv, grades)  # after each one: an interrupted run keeps what it graded
    return grades


def feedback_folder(out_csv: Path) -> Path:
    """grades.csv -> grades-feedback/: one folder per gradebook, never mixed."""
    return out_csv.with_name(f"{out_csv.stem}-feedback")


def _write_csv(out_csv: Path, grades: list[Grade]) -> None:
    items = sorted({item for grade in grades for item in grade.maximum})
    partial = out_csv.with_name(out_csv.name + ".partial")
    with partial.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["submission", "lesson", "score", "max", "status", *items])
        for grade in grades:
            cells = [f"{grade.points[item]:g}" if item in grade.points else "" for item in items]
            writer.writerow([grade.submission, grade.lesson, f"{grade.total:g}", f"{sum(grade.maximum.values()):g}",
                             grade.status, *cells])
    partial.replace(out_csv)

