"""`course grade SUBMISSIONS/ --out grades.csv`: grade a folder of submitted
notebooks into a gradebook, with a feedback file for each notebook.

Who is who: a notebook in a folder of its own is that folder's learner's
(`alice/02_qkv_by_hand.ipynb` is alice's); a notebook directly in SUBMISSIONS
is named after itself (`bob.ipynb` is bob's); the names Canvas and Moodle give
downloaded submissions are recognised, and a roster maps them to the ids an
LMS imports (`roster.py`). A notebook's lesson is the one
the release wrote in its metadata, else the number its file name starts with.

How: each notebook's code cells run in a sandbox (`sandbox.py`) that sees the
sealed student release and nothing else of the course; the sandbox only reports
evidence, which is judged here, in the grader's own process:

- a quiz answer is the value the learner passed to `answer(...)`, graded with
  the authoring quiz (the sandbox's release has no keys at all);
- an exercise is judged by its checker, run here on the reviewed course code
  after the cells have run: the checker calls the learner's function or class
  in the sandbox, which is waiting, on the checker's inputs (`remote.py`).
  What the notebook's own checker cell printed or recorded counts for nothing,
  and an answer that runs the course's own version of the exercise earns
  nothing.

Items are found by id, so learners may move, split or delete cells. Whatever
goes wrong with one notebook is written in its learner's row and feedback; the
others are graded all the same.
"""

import ast
import collections
import concurrent.futures
import csv
import dataclasses
import functools
import importlib
import json
import multiprocessing
import os
import re
import secrets
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import checks, quiz, remote, sandbox, scores
from . import lessons as authoring
from .roster import Roster, download_key
from .runner import read_source
from .student import build_release

MAX_NOTEBOOK_BYTES = 64 << 20
REPORT_KEPT = 20_000  # characters of one item's quoted output in a feedback file
FORMATS = ("csv", "long", "canvas", "moodle")


@dataclass
class Grade:
    submission: str  # the notebook's path under SUBMISSIONS
    learner: str
    lesson: str = ""
    status: str = ""
    points: dict[str, float] = field(default_factory=dict)  # item id -> points earned
    maximum: dict[str, float] = field(default_factory=dict)  # item id -> points possible
    reports: dict[str, str] = field(default_factory=dict)  # item id -> why, in words

    @property
    def total(self) -> float:
        return sum(self.points.values())


def learner_of(submission: Path, roster: Roster | None = None) -> str:
    """alice/02_x.ipynb -> alice; bob.ipynb -> bob; the names Canvas and Moodle
    give downloaded submissions, and a roster's ids (see `roster`).
    Control characters are shown escaped, so a name cannot split a row."""
    name = (roster.learner(submission) if roster else None) or download_key(submission)
    return ascii(name)[1:-1] if _CONTROL.search(name) else name


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")  # bidi overrides too
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, lines: bool = False) -> str:
    """Text from a sandbox (an error message, a checker's report), with its
    control characters shown escaped: a status stays on one line of the
    gradebook and of the feedback, and no escape sequence reaches the
    instructor's terminal. `lines`: line breaks and tabs are kept (a report)."""
    pattern = _CONTROL_BUT_LINES if lines else _CONTROL
    return pattern.sub(lambda match: ascii(match.group())[1:-1], text)


def _refused_name(submission: Path, folder: Path) -> str | None:
    """Why a submission's path cannot be graded as it stands, or None."""
    if _CONTROL.search(submission.as_posix()):
        return "refused: its path has control characters (a line break, a tab, ...); rename it and grade again"
    if len(submission.parts) == 1 and (folder / submission.stem).is_dir():
        return (f"refused: both {submission.name} and the folder {submission.stem}/ are there, so whose it is is "
                f"unclear; move it into {submission.stem}/")
    return None


def _read_regular_file(path: Path) -> str:
    """The text of `path`, which must be a regular file: never a link, a FIFO or
    a device, which could block the grader or read what it should not."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as error:
        if path.is_symlink():
            raise ValueError("it is a symbolic link, which is not followed: hand in the notebook itself") from None
        raise error
    with os.fdopen(handle, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("it is not a regular file (a pipe or a device?): hand in the notebook itself")
        if status.st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"it is larger than {MAX_NOTEBOOK_BYTES >> 20} MB")
        return file.read(MAX_NOTEBOOK_BYTES + 1).decode("utf-8")


def lesson_of(notebook: nbformat.NotebookNode, path: Path) -> str:
    """The lesson a notebook belongs to: the release's metadata, else the file name."""
    number = str(notebook.metadata.get("course", {}).get("lesson", ""))
    return number if len(number) == 2 and number.isdigit() else path.name[:2] if path.name[:2].isdigit() else ""


def find_submissions(folder: Path) -> list[Path]:
    """Every .ipynb under `folder`, relative to it, without following links out
    of it; checkpoints and hidden folders are not submissions."""
    found = []
    for here, folders, files in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith(".") and name != ".ipynb_checkpoints")
        found += [Path(here, name).relative_to(folder) for name in sorted(files) if name.endswith(".ipynb")]
    return found


def grade_one(folder: Path, submission: Path, assigned: list[str] | None, release: Path,
              limits: sandbox.Limits, sandboxed: bool = True, seed: int = 0, roster: Roster | None = None) -> Grade:
    """Grade one notebook; `assigned`, if given, the lessons being graded
    (a notebook of another lesson is reported, not run)."""
    grade = Grade(submission=submission.as_posix(), learner=learner_of(submission, roster))
    if roster is not None and roster.learner(submission) is None:
        grade.status = f"not on the roster: no id for {download_key(submission)!r}; nothing was run"
        return grade
    path = folder / submission
    # Until the notebook is read: its file name's lesson, or the one assigned.
    grade.lesson = path.name[:2] if path.name[:2].isdigit() else assigned[0] if assigned and len(assigned) == 1 else ""
    refused = _refused_name(submission, folder)
    if refused:
        grade.status = refused
        return grade
    try:
        notebook = nbformat.reads(_read_regular_file(path), as_version=4)
        cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        if not all(isinstance(source, str) for source in cells):
            raise ValueError("a code cell's source is not text")
    except Exception as error:  # invalid JSON, not a notebook, unreadable, a link
        reason = str(error) if isinstance(error, ValueError) and str(error).startswith("it ") else type(error).__name__
        return _no_points(grade, f"unreadable notebook ({reason}): not a valid .ipynb file; nothing was run")
    found = lesson_of(notebook, path)
    if assigned and found not in assigned:
        grade.lesson = ""  # not in the gradebook's columns: an unassigned lesson changes nobody's maximum
        grade.status = (f"not assigned: this is lesson {found or '?'}'s notebook, and lesson"
                        f"{'s' if len(assigned) > 1 else ''} {', '.join(assigned)} {'were' if len(assigned) > 1 else 'was'} asked for")
        return grade
    grade.lesson = found
    if grade.lesson not in {lesson.number for lesson in all_lessons()}:
        grade.status = "not a lesson of this course (no lesson number in its metadata or file name)"
        return grade
    run = sandbox.run_submission(cells, release, limits, sandboxed,
                                 judge=functools.partial(check_exercises, grade.lesson, seed=seed))
    judge(grade, run)
    return grade


# The authoring lessons, quizzes and checkers, read once per grading run
# (grade_folder clears them): not once per notebook and gradebook rewrite.
@functools.cache
def all_lessons() -> list:
    return authoring.all_lessons()


@functools.cache
def lesson_items(lesson: str) -> dict[str, float]:
    return scores.lesson_items(lesson)


@functools.cache
def quiz_questions(lesson: str) -> dict:
    return quiz.load_quiz(lesson).questions  # the authoring file: the real keys


def _read_authoring_afresh() -> None:
    for cached in (all_lessons, lesson_items, quiz_questions, checker_calls):
        cached.cache_clear()


def _no_points(grade: Grade, status: str) -> Grade:
    if grade.lesson in {lesson.number for lesson in all_lessons()}:
        grade.maximum = dict(lesson_items(grade.lesson))
        grade.points = dict.fromkeys(grade.maximum, 0.0)
    grade.status = status
    return grade


@functools.cache
def checker_calls(lesson: str) -> list[tuple[str, object, list[str]]]:
    """(checker name, checker, names of the learner's answers) for each
    checker cell of the lesson, read from the authoring notebook: a learner
    cannot change what is checked, or on which of their objects."""
    source = next(found for found in all_lessons() if found.number == lesson)
    modules, calls = {}, []
    for cell in read_source(source).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython syntax: no checker there
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils.classroom.checks"):
                modules.update({alias.asname or alias.name: node.module for alias in node.names})
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in modules
                  and all(isinstance(argument, ast.Name) for argument in node.args)):
                checker = getattr(importlib.import_module(modules[node.func.id]), node.func.id)
                calls.append((node.func.id, checker, [argument.id for argument in node.args]))
    return calls


class _Undefined:
    """What a checker gets for an answer the sandbox could not give."""

    def __init__(self, why: str):
        self.why = why

    def __call__(self, *args, **kwargs):
        raise remote.LearnerError(self.why)

    def __repr__(self) -> str:
        return self.why


def check_exercises(lesson: str, session: sandbox.Session, seed: int = 0) -> dict:
    """Run the lesson's checkers here, on the learner's objects in the sandbox,
    with random inputs moved by `seed` (checks.seeded): {item: (points, report,
    attempted)}, and {"": notes} if a checker itself failed. Not attempted:
    still the stub, or the answer is not defined."""
    judged, notes = {}, []
    for name, checker, answer_names in checker_calls(lesson):
        answers = []
        for answer_name in answer_names:
            try:
                answers.append(session.lookup(answer_name))
            except remote.LearnerError as error:
                answers.append(_Undefined(str(error)))
        defined = not any(isinstance(answer, _Undefined) for answer in answers)
        with checks.judging(seed) as results:
            try:
                checker(*answers)
            except Exception as error:  # a bug of ours, or a learner object no checker foresaw
                notes.append(f"{name} could not finish ({type(error).__name__}: {error})"[:300])
        judged.update({item: (earned, report, defined and status != "not attempted")
                       for item, earned, status, report in results})
    return {**judged, "": notes}


def judge(grade: Grade, run: sandbox.Run) -> None:
    """Points from the run's evidence, judged here (see the module docstring)."""
    grade.maximum = dict(lesson_items(grade.lesson))
    questions = quiz_questions(grade.lesson)
    answers, exercises = run.evidence["answers"], dict(run.judged or {})
    printed = item_reports("\n".join(cell["output"] for cell in run.cells))
    missing = []
    for item, full in grade.maximum.items():
        grade.points[item] = 0.0
        if item in questions:
            if item not in answers:  # what the sandbox printed says why: not answered, or a malformed answer
                missing.append(item)
                grade.reports[item] = printed.get(item, "")
                continue
            try:
                feedback = quiz.grade(questions[item], answers[item])
                grade.points[item], grade.reports[item] = min(float(feedback.points), full), str(feedback)
            except quiz.AnswerError as problem:
                grade.reports[item] = f"⚠ {problem}"
            except Exception as error:  # an answer no rule foresaw: it costs its own item, nothing else
                grade.reports[item] = f"⚠ {item}: the answer could not be read ({type(error).__name__})"
        elif item in exercises:
            earned, grade.reports[item], attempted = exercises[item]
            grade.points[item] = min(float(earned), full)
            if not attempted:
                missing.append(item)
        else:
            missing.append(item)
    unanswered = [f"not answered or not run: {', '.join(missing)}"] if missing else []
    grade.status = "; ".join([run.status, *unanswered, *exercises.get("", [])])


_CHECKER_HEADER = re.compile(r"^(\d\d\.[\w-]+)$")  # a checker's report starts with the exercise id
_ANSWER_LINE = re.compile(r"^(?:[✓✗] (?:Correct|Not quite) \(.*\) · |… |⚠ .*?)(\d\d\.[\w-]+)")


def item_reports(text: str) -> dict[str, str]:
    """What each checker and answer() printed, by item id: a block runs from
    its first line (the exercise id, or an answer's verdict) to the next one."""
    blocks: dict[str, list[str]] = {}  # lines, joined once: adding to a string per line is quadratic
    item = None
    for line in text.splitlines():
        start = _CHECKER_HEADER.match(line) or _ANSWER_LINE.match(line)
        if start:
            item = start.group(1)
            blocks[item] = [line]
        elif item:
            blocks[item].append(line)
    return {item: "\n".join(lines) for item, lines in blocks.items()}


def _kept(text: str) -> str:
    if len(text) <= REPORT_KEPT:
        return text
    return text[:REPORT_KEPT] + f"\n[… {len(text) - REPORT_KEPT:,} more characters not shown]"


def revealed_answer(question: quiz.Question) -> list[str]:
    """The right answer of a quiz question and why, for feedback once grading
    is over (`--reveal-answers`)."""
    if question.options:
        right = set(question.answers[0]) if question.answers else set()
        return [f"right: {letter}) {option.text}" + (f" ({option.why})" if option.why else "")
                for letter, option in zip(question.letters, question.options) if letter in right]
    if question.type == "numeric" and question.answers:
        # The middle of the accepted grid, in the question's own units.
        cells = sorted(float(cell) for cell in question.answers)
        value = (cells[len(cells) // 2] * question.step) if question.step else cells[0]
        return [f"right: {value:g}" + (f" ({question.why})" if question.why else "")]
    return [f"right: {' or '.join(question.answers)}" + (f" ({question.why})" if question.why else "")]


def feedback_text(grade: Grade, reveal: bool = False) -> str:
    """A learner's feedback for one notebook: each item's points and why
    points were lost; with `reveal`, the right answers of the quiz questions
    missed too (for after the deadline)."""
    questions = quiz_questions(grade.lesson) if reveal and grade.lesson else {}
    lines = [f"Learner: {grade.learner}", f"Submission: {grade.submission}", f"Lesson: {grade.lesson or '?'}",
             f"Score: {grade.total:g} / {sum(grade.maximum.values()):g}", f"Status: {grade.status}", ""]
    for item, full in grade.maximum.items():
        earned = grade.points.get(item, 0)
        lines.append(f"{'✓' if earned == full else '✗'} {item:<28} {earned:g} / {full:g}")
        if earned < full and grade.reports.get(item):  # say why the points were lost
            lines += ["      " + line for line in _kept(grade.reports[item]).splitlines()]
        if earned < full and item in questions:
            lines += ["      " + line for line in revealed_answer(questions[item])]
    return "\n".join(lines) + "\n"


def feedback_folder(gradebook: Path) -> Path:
    """grades.csv -> grades-feedback/: one folder per gradebook, never mixed."""
    return gradebook.with_name(f"{gradebook.stem}-feedback")


def feedback_path(gradebook: Path, grade: Grade) -> Path:
    """The submission's own path under the feedback folder, so two notebooks
    never share a feedback file (dan/02_x.ipynb and dan__02_x.ipynb included)."""
    return feedback_folder(gradebook) / Path(grade.submission).with_suffix(".txt")


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: a
    reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _clear_feedback(folder: Path) -> None:
    """Remove last run's feedback files (only .txt files: nothing else there is ours)."""
    for stale in folder.rglob("*.txt"):
        if stale.is_file() or stale.is_symlink():
            stale.unlink()
    for empty in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(empty.iterdir()):
            empty.rmdir()


def grade_folder(folder: Path, gradebook: Path, lessons: list[str] | None = None,
                 limits: sandbox.Limits = sandbox.Limits(), fmt: str = "csv", sandboxed: bool = True, echo=print,
                 seed: int | None = None, per_learner: int | None = None, jobs: int = 1,
                 roster: Roster | None = None, reveal: bool = False, shard: tuple[int, int] = (1, 1)) -> list[Grade]:
    """Grade every notebook under `folder`; write the gradebook after each one
    (an interrupted run keeps what it graded) and one feedback file per notebook.
    `lessons` are the assignment: every learner's maximum counts exactly these,
    and a notebook of another lesson is reported, not graded (default: the
    lessons handed in, which one stray notebook changes for everyone).
    `seed` draws the checkers' random inputs (default: a new draw, shown).
    At most `per_learner` notebooks of one learner are run (in name order;
    default twice the lessons): a thousand handed in cost that learner's row
    only, not everyone's time. `jobs` notebooks are graded at once, each in
    a process of its own (the checkers keep state per process): the gradebook
    and feedback are the same as one at a time, in the same order. `shard`
    (i, n) grades the i-th of n shares of the learners (every learner's
    notebooks in one share), so that a class can be split across machines;
    `merge_gradebooks` puts the shares' gradebooks together."""
    folder, gradebook = Path(folder), Path(gradebook)
    part, parts = shard
    if not 1 <= part <= parts:
        raise SystemExit(f"--shard {part}/{parts}: the share must be between 1 and {parts}.")
    _read_authoring_afresh()
    known = [lesson.number for lesson in all_lessons()]
    per_learner = per_learner or 2 * len(known)
    unknown = [lesson for lesson in lessons or [] if lesson not in known]
    if unknown:
        raise SystemExit(f"There is no lesson {', '.join(map(repr, unknown))}: the lessons are {known[0]} to {known[-1]}.")
    if fmt not in FORMATS:
        raise SystemExit(f"Unknown gradebook format {fmt!r}: choose {' or '.join(FORMATS)}.")
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder of submitted notebooks")
    submissions = find_submissions(folder)
    if not submissions:
        raise SystemExit(f"No .ipynb files under {folder}")
    if sandboxed and sandbox.bubblewrap() is None:
        raise SystemExit(UNSANDBOXED)
    if sandboxed and sandbox.process_counter().startswith("none"):
        echo(f"Warning: nothing bounds the number of processes here ({sandbox.process_counter()}); a fork bomb "
             "in a submission would run until the time limit. Grade as an ordinary user to bound it.")
    seed = secrets.randbelow(1 << 30) if seed is None else seed
    echo(f"The checkers' random inputs are drawn with seed {seed} (`--seed {seed}` draws them again).")
    write_atomically(grading_record(gradebook), json.dumps(
        {"seed": seed, "lessons": lessons, "format": fmt, "submissions": folder.as_posix(), "jobs": jobs,
         "shard": f"{part}/{parts}"}, indent=1))
    feedback = feedback_folder(gradebook)
    feedback.mkdir(parents=True, exist_ok=True)
    _clear_feedback(feedback)
    everyone = sorted({learner_of(submission, roster) for submission in submissions})
    mine = set(everyone[part - 1::parts])  # every parts-th learner: each learner's notebooks in one share
    handed_in, over_the_cap, to_grade = collections.Counter(), {}, []
    for number, submission in enumerate(submissions, start=1):
        learner = learner_of(submission, roster)
        if learner not in mine:
            continue
        handed_in[learner] += 1
        if handed_in[learner] > per_learner:  # not run, and said once for all of them, below
            over_the_cap.setdefault(learner, []).append(submission.as_posix())
        else:
            to_grade.append((number, submission))
    graded: dict[int, Grade] = {}
    with tempfile.TemporaryDirectory(prefix="course-release-") as scratch:
        release = Path(scratch) / "release"
        build_release(release, keys=False)  # what learners have, less the quiz keys: a sandbox sees only a copy of this
        shutil.rmtree(release / "notebooks")  # the submission brings its own cells
        work = [(folder, number, submission, lessons, release, limits, sandboxed, seed, roster)
                for number, submission in to_grade]
        if jobs > 1:
            # spawn, not fork: the grader holds torch's thread pools, which a forked child must not inherit.
            pool = concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
            results = concurrent.futures.as_completed([pool.submit(_grade_copy, *task) for task in work])
            finished = (future.result() for future in results)
        else:
            pool, finished = None, (_grade_copy(*task) for task in work)
        try:
            for number, grade in finished:
                try:
                    write_atomically(feedback_path(gradebook, grade), feedback_text(grade, reveal))
                except OSError as error:
                    grade.status += f"; its feedback file could not be written ({error})"
                graded[number] = grade
                echo(f"[{number}/{len(submissions)}] {grade.submission}: {grade.total:g}/{sum(grade.maximum.values()):g} "
                     f"({grade.status})")
                write_gradebook(gradebook, [graded[key] for key in sorted(graded)], fmt, lessons, roster)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    grades = [graded[key] for key in sorted(graded)]
    for learner, skipped in over_the_cap.items():
        grades.append(Grade(submission=f"{len(skipped)} more notebooks", learner=learner,
                            status=f"not graded: {len(skipped)} notebooks past the first {per_learner} of this learner "
                                   f"(in name order), from {skipped[0]} to {skipped[-1]}"))
        echo(f"{learner}: {grades[-1].status}")
    if over_the_cap:
        write_gradebook(gradebook, grades, fmt, lessons, roster)
    return grades


def _grade_copy(folder: Path, number: int, submission: Path, lessons, release: Path, limits: sandbox.Limits,
                sandboxed: bool, seed: int, roster: Roster | None) -> tuple[int, Grade]:
    """Grade one submission on a copy of its own of the release (never mounted
    before); in a worker process when grading with --jobs."""
    try:
        own = release.parent / f"release-{number}"
        shutil.copytree(release, own, symlinks=True)
        try:
            grade = grade_one(folder, submission, lessons, own, limits, sandboxed, seed, roster)
        finally:
            shutil.rmtree(own, ignore_errors=True)
    except Exception as error:  # a grader bug must not cost the other learners their grades
        grade = Grade(submission=submission.as_posix(), learner=learner_of(submission, roster),
                      status=f"grader error: {type(error).__name__}: {error}")
    grade.status = printable(grade.status)
    grade.reports = {item: printable(report, lines=True) for item, report in grade.reports.items()}
    return number, grade


def grades_record(gradebook: Path) -> Path:
    """Beside the gradebook: every grade, one JSON line each."""
    return Path(gradebook).with_name(Path(gradebook).stem + ".grades.jsonl")


def merge_gradebooks(parts: list[Path], out: Path, fmt: str = "csv", roster: Roster | None = None) -> list[Grade]:
    """Put together the gradebooks of the shares of a class (`--shard i/n`),
    graded with the same lessons and seed, into one; their feedback folders
    are copied into the merged one's."""
    records = [json.loads(grading_record(part).read_text()) for part in parts]
    for setting in ("lessons", "seed"):
        values = {json.dumps(record.get(setting)) for record in records}
        if len(values) > 1:
            raise SystemExit(f"The shares were graded with different {setting} ({', '.join(sorted(values))}): "
                             "grade every share with the same --lessons and --seed.")
    grades = [Grade(**json.loads(line)) for part in parts for line in grades_record(part).read_text().splitlines()]
    if len({grade.submission for grade in grades}) != len(grades):
        raise SystemExit("A notebook appears in two shares: merge the shares of one grading run, each once.")
    grades.sort(key=lambda grade: grade.submission)
    lessons = records[0].get("lessons")
    write_gradebook(out, grades, fmt, lessons, roster)
    for part in parts:
        shutil.copytree(feedback_folder(part), feedback_folder(out), dirs_exist_ok=True)
    write_atomically(grading_record(out), json.dumps({**records[0], "format": fmt, "shard": "merged",
                                                      "parts": [Path(part).as_posix() for part in parts]}, indent=1))
    return grades


def grading_record(gradebook: Path) -> Path:
    """Beside the gradebook: the seed and settings of the run that made it, so
    that the same checkers' inputs can be drawn again (`--seed`)."""
    return Path(gradebook).with_name(Path(gradebook).stem + ".grading.json")


UNSANDBOXED = """\
course grade runs each submitted notebook in a bubblewrap sandbox, and this
machine has no working `bwrap`. A notebook run without it runs as you: it can
read the answer keys, change other learners' grades and feedback, and reach
the network.
Install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install
bubblewrap), or grade on a Linux machine that has it. To grade here anyway,
knowing the above, pass --unsafe-no-sandbox."""


# --- the gradebook ----------------------------------------------------------------

def write_gradebook(path: Path, grades: list[Grade], fmt: str = "csv", lessons: list[str] | None = None,
                    roster: Roster | None = None) -> None:
    """The gradebook in `fmt`, and beside it every grade as a JSON line
    (`grades_record`), from which shares of a class are merged."""
    write_atomically(grades_record(path), "".join(json.dumps(dataclasses.asdict(grade)) + "\n" for grade in grades))
    if fmt in ("canvas", "moodle"):
        rows = lms_rows(grades, lessons, roster, fmt)
    else:
        rows = gradebook_rows(grades, lessons) if fmt == "csv" else long_rows(grades, lessons)
    with tempfile.SpooledTemporaryFile(mode="w+", newline="", encoding="utf-8") as buffer:
        csv.writer(buffer).writerows([[_spreadsheet_safe(cell) for cell in row] for row in rows])
        buffer.seek(0)
        write_atomically(path, buffer.read())


def _spreadsheet_safe(cell: str) -> str:
    """A cell that a spreadsheet will show as text, never run as a formula: a
    learner's name or file name such as =HYPERLINK(...) or +1+1 gets a
    leading apostrophe (OWASP's advice for CSV injection); numbers stay."""
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not re.fullmatch(r"-?\d+(\.\d+)?", cell):
        return "'" + cell
    return cell


def _lessons_graded(grades: list[Grade], assigned: list[str] | None = None) -> list[str]:
    graded = set(assigned) if assigned else {grade.lesson for grade in grades if grade.maximum}
    return [lesson.number for lesson in all_lessons() if lesson.number in graded]


def _by_learner(grades: list[Grade]) -> dict[str, dict[str, Grade]]:
    """learner -> lesson -> the grade that counts: the higher when a learner
    handed in a lesson twice (the status says so)."""
    table: dict[str, dict[str, Grade]] = {}
    for grade in grades:
        if not grade.maximum:
            continue
        kept = table.setdefault(grade.learner, {}).get(grade.lesson)
        if kept is None or grade.total > kept.total:
            table[grade.learner][grade.lesson] = grade
    return table


def _notes(grades: list[Grade], counted: dict[str, Grade]) -> str:
    """Every notebook of `grades` (one learner's) that is not the one counted for its lesson."""
    others = [grade for grade in grades if counted.get(grade.lesson) is not grade]
    return "; ".join(f"{grade.submission}: " + (f"not counted, {grade.total:g} points (a higher-scoring notebook of "
                                                 f"lesson {grade.lesson} counts)" if grade.maximum else grade.status)
                     for grade in others)


def gradebook_rows(grades: list[Grade], assigned: list[str] | None = None) -> list[list[str]]:
    """One row per learner: the course total, then per lesson its score, status,
    notebook and items in lesson order; a last column for anything else."""
    lessons = _lessons_graded(grades, assigned)
    items = {lesson: lesson_items(lesson) for lesson in lessons}
    header = ["learner", "total", "max"]
    for lesson in lessons:
        header += [f"{lesson} score", f"{lesson} max", f"{lesson} status", f"{lesson} notebook", *items[lesson]]
    rows = [header + ["notes"]]
    table = _by_learner(grades)
    handed_in = collections.defaultdict(list)  # learner -> their grades: each row reads its own, not all
    for grade in grades:
        handed_in[grade.learner].append(grade)
    learners = sorted(handed_in)
    course_max = sum(sum(full.values()) for full in items.values())
    for learner in learners:
        counted = table.get(learner, {})
        row = [learner, f"{sum(grade.total for grade in counted.values()):g}", f"{course_max:g}"]
        for lesson in lessons:
            grade = counted.get(lesson)
            row += [f"{grade.total:g}" if grade else "0", f"{sum(items[lesson].values()):g}",
                    grade.status if grade else "no submission", grade.submission if grade else ""]
            row += [f"{grade.points.get(item, 0):g}" if grade else "0" for item in items[lesson]]
        rows.append(row + [_notes(handed_in[learner], counted)])
    return rows


def long_rows(grades: list[Grade], assigned: list[str] | None = None) -> list[list[str]]:
    """One row per learner, lesson and item, for an LMS import: only the
    lessons a learner handed in, so that an import never writes a 0 over a
    grade kept elsewhere; with an assignment, its lessons for every learner."""
    rows = [["learner", "lesson", "item", "points", "max"]]
    table = _by_learner(grades)
    for learner in sorted({grade.learner for grade in grades}):
        for lesson in _lessons_graded(grades, assigned):
            grade = table.get(learner, {}).get(lesson)
            if grade is None and not assigned:
                continue
            for item, full in lesson_items(lesson).items():
                rows.append([learner, lesson, item, f"{grade.points.get(item, 0) if grade else 0:g}", f"{full:g}"])
    return rows


def lms_rows(grades: list[Grade], assigned: list[str] | None, roster: Roster | None, lms: str) -> list[list[str]]:
    """A gradebook an LMS imports as it is: one row per learner, one numeric
    column per lesson (the lesson's points), nothing else to edit first.

    - canvas: Canvas's gradebook import columns (Student, ID, SIS User ID,
      SIS Login ID, Section, then one column per assignment, which Canvas
      creates if it is new) and the "Points Possible" row under the header;
      rows are matched by ID (the Canvas user id, from the roster) or SIS User
      ID (the learner id);
    - moodle: the learner id, then one column per lesson; Moodle's CSV grade
      import maps the first to a user field (ID number, username or e-mail)
      and each lesson's column to a grade item, whose maximum is set in Moodle.
    """
    lessons = _lessons_graded(grades, assigned)
    titles = {lesson.number: lesson.title for lesson in all_lessons()}
    columns = [f"Lesson {lesson}: {titles[lesson]}" for lesson in lessons]
    maximum = {lesson: sum(lesson_items(lesson).values()) for lesson in lessons}
    table = _by_learner(grades)
    learners = sorted({grade.learner for grade in grades if grade.maximum or grade.learner in table})
    scores = {learner: [f"{table[learner][lesson].total:g}" if lesson in table.get(learner, {}) else "0"
                        for lesson in lessons] for learner in learners}
    if lms == "moodle":
        return [["ID number", *columns], *([learner, *scores[learner]] for learner in learners)]
    names = roster.names if roster else {}
    canvas_ids = roster.canvas_user_ids if roster else {}
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *columns],
            ["Points Possible", "", "", "", "", *(f"{maximum[lesson]:g}" for lesson in lessons)]]
    rows += [[names.get(learner, learner), canvas_ids.get(learner, ""), learner, "", "", *scores[learner]]
             for learner in learners]
    return rows
