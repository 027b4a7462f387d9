"""`course student OUT/`: the release handed to learners.

- Every `# BEGIN SOLUTION` ... `# END SOLUTION` block becomes a stub: code
  becomes `raise NotImplementedError`, and a block of `answer(...)` lines keeps
  the question ids with `None` for the learner to fill in.
- Outputs are cleared: an output can show what a solution computes.
- Quizzes are sealed: right answers are stored only as salted hashes, and the
  explanations (which say which option is right) are obscured.
- The reviewed answers to the exercises in `course_utils` are sealed: they run
  for the lessons built on them, but their source is not there (`sealing`).
"""

import hashlib
import re
import secrets
import shutil
import tempfile
from pathlib import Path

import nbformat
import yaml

from . import paths, quiz, sealing
from .lessons import Lesson, all_lessons
from .runner import read_source

SOLUTION_BLOCK = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION[^\n]*\n(?P<body>.*?)^[ \t]*# END SOLUTION[^\n]*(\n|$)",
                            re.MULTILINE | re.DOTALL)
ANSWER_LINE = re.compile(r"""^\s*answer\(\s*(?P<id>(["'])\d\d\.[\w-]+\2)\s*,.*\)\s*(#.*)?$""")
STUB = 'raise NotImplementedError("Your code here: replace this line, then run the checker cell.")'
# Copied into the release so that learners can `make lab` there (no tests, no answer keys).
RELEASE_FILES = ("pyproject.toml", "environment.yml", "postBuild", "Makefile")
# Inside a release: each notebook as it was handed out, so that an update can
# tell the learner's edits from the course's changes (a three-way merge).
BASE_FOLDER = ".course-base"


class ReleaseError(ValueError):
    """A source notebook cannot be turned into a student notebook."""


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each solution block with its stub (see the module docstring)."""
    def stub(match: re.Match) -> str:
        indent, body = match["indent"], match["body"]
        lines = [line for line in body.splitlines() if line.strip()]
        if lines and all(ANSWER_LINE.match(line) for line in lines):
            return "".join(f'{indent}answer({ANSWER_LINE.match(line)["id"]}, None)  # your answer here\n' for line in lines)
        return f"{indent}{STUB}\n"

    stripped = SOLUTION_BLOCK.sub(stub, source)
    if "# BEGIN SOLUTION" in stripped or "# END SOLUTION" in stripped:
        raise ReleaseError(f"{where}: a '# BEGIN SOLUTION' has no matching '# END SOLUTION' (or the reverse)")
    return stripped


def student_notebook(lesson: Lesson) -> nbformat.NotebookNode:
    notebook = read_source(lesson)
    notebook.metadata.pop("jupytext", None)  # the release has no .py pairs
    notebook.metadata["course"] = {"lesson": lesson.number}  # lets `course grade` tell lessons apart
    for number, cell in enumerate(notebook.cells, start=1):
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, f"{lesson.source.name}, cell {number}")
            # nbval's markers mean nothing to a learner, and a release is never run under nbval.
            cell.source = re.sub(r"^# NBVAL_[A-Z_]+[^\n]*\n?", "", cell.source, flags=re.MULTILINE)
            cell.outputs, cell.execution_count = [], None
    return notebook


def sealed_quiz(source: Path, salt: str, keys: bool = True) -> dict:
    """The quiz file's content with hashed keys and obscured explanations; with
    keys=False (the release a grading sandbox sees), with neither: nothing in
    it can tell a right answer from a wrong one."""
    plain = quiz.parse_quiz(source.read_text(encoding="utf-8"), source)
    questions = []
    for question in plain.questions.values():
        short_id = question.id.split(".", 1)[1]
        sealed = {"id": short_id, "type": question.type, "prompt": question.prompt, "points": question.points,
                  "keys": sorted(quiz.answer_key(salt, question.id, answer) for answer in question.answers) if keys else []}
        if question.options:
            sealed["options"] = [{"text": option.text,
                                  "why": quiz.seal_text(option.why if keys else "", f"{salt}|{question.id}|{letter}")}
                                 for letter, option in zip(question.letters, question.options)]
            sealed["right_options"] = question.right_options if keys else 0
        else:
            sealed["why"] = quiz.seal_text(question.why if keys else "", f"{salt}|{question.id}")
        if question.step:
            sealed["step"] = question.step
        questions.append(sealed)
    return {"lesson": plain.lesson, "title": plain.title, "salt": salt, "questions": questions}


def build_release(out: Path, salt: str | None = None, keys: bool = True) -> list[Path]:
    """Write the student release into `out` (which must be empty or absent);
    keys=False leaves the quizzes' keys and explanations out (see sealed_quiz)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} is not empty: choose a new folder, so that nothing already there is overwritten")
    salt = salt or secrets.token_hex(8)
    notebooks = [(lesson, student_notebook(lesson)) for lesson in all_lessons()]  # all checked before writing
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    (out / "quizzes").mkdir()
    written = []
    (out / BASE_FOLDER).mkdir()
    for lesson, notebook in notebooks:
        nbformat.write(notebook, out / "notebooks" / lesson.notebook.name)
        nbformat.write(notebook, out / BASE_FOLDER / lesson.notebook.name)
        written.append(out / "notebooks" / lesson.notebook.name)
    for source in sorted(paths.QUIZZES.glob("*.yaml")):
        content = yaml.safe_dump(sealed_quiz(source, salt, keys), sort_keys=False, allow_unicode=True, width=100)
        (out / "quizzes" / source.name).write_text(content, encoding="utf-8")
        written.append(out / "quizzes" / source.name)
    shutil.copytree(paths.COURSE_ROOT / "course_utils", out / "course_utils",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sealing.seal_release(out / "course_utils")
    for name in RELEASE_FILES:
        shutil.copy2(paths.COURSE_ROOT / name, out / name)
    (out / "README.md").write_text(STUDENT_README, encoding="utf-8")
    (out / BASE_FOLDER / "course-fingerprint").write_text(course_fingerprint(), encoding="utf-8")
    return written


# --- updating a learner's copy ---------------------------------------------------

def update_release(out: Path) -> list[str]:
    """Bring the release at `out` (a learner's practice copy) up to the course
    as it is now, keeping everything the learner wrote; return what was done,
    a line per lesson changed.

    The course's own files (course_utils, quizzes, Makefile, ...) are replaced.
    Each notebook is merged cell by cell (`merge_notebook`): a cell the learner
    never touched takes the course's new version; a cell the learner edited
    stays as the learner left it, with a note below it where the course changed
    it too; cells the learner added stay where they were. A copy made before
    updates existed has no record of what was handed out: its notebooks stay
    as they are, and each changed lesson is written beside them instead."""
    out = Path(out)
    if not paths.is_student_release(out):
        raise ReleaseError(f"{out} is not a student release made by `course student`: nothing to update")
    stamp = out / BASE_FOLDER / "course-fingerprint"
    if stamp.is_file() and stamp.read_text(encoding="utf-8") == course_fingerprint():
        return []  # nothing in the course changed since the last build or update
    first_quiz = next(iter(sorted((out / "quizzes").glob("*.yaml"))), None)
    sealed = yaml.safe_load(first_quiz.read_text(encoding="utf-8")) if first_quiz else {}
    salt = sealed.get("salt")  # the same salt: answers already given keep grading the same
    keys = any(question.get("keys") for question in sealed.get("questions", []))
    done = []
    with tempfile.TemporaryDirectory() as scratch:
        new = Path(scratch) / "release"
        build_release(new, salt=salt, keys=keys)
        shutil.rmtree(out / "course_utils")
        shutil.copytree(new / "course_utils", out / "course_utils")
        shutil.rmtree(out / "quizzes")
        shutil.copytree(new / "quizzes", out / "quizzes")
        for name in (*RELEASE_FILES, "README.md"):
            shutil.copy2(new / name, out / name)
        (out / BASE_FOLDER).mkdir(exist_ok=True)
        for path in sorted((new / "notebooks").glob("*.ipynb")):
            theirs = nbformat.read(path, as_version=4)
            mine_path, base_path = out / "notebooks" / path.name, out / BASE_FOLDER / path.name
            if not mine_path.exists():
                nbformat.write(theirs, mine_path)
                done.append(f"{path.stem}: new lesson")
            elif not base_path.exists():  # made before updates existed: nothing to merge against
                mine = nbformat.read(mine_path, as_version=4)
                if [cell.source for cell in mine.cells] != [cell.source for cell in theirs.cells]:
                    beside = mine_path.with_name(f"{path.stem}.updated.ipynb")
                    nbformat.write(theirs, beside)
                    done.append(f"{path.stem}: yours kept as it is; the course's new version is {beside.name}")
            else:
                mine, base = nbformat.read(mine_path, as_version=4), nbformat.read(base_path, as_version=4)
                if [cell.source for cell in base.cells] != [cell.source for cell in theirs.cells]:
                    merged, conflicts = merge_notebook(mine, base, theirs)
                    nbformat.write(merged, mine_path)
                    done.append(f"{path.stem}: updated" + (f", {conflicts} of your edited cells changed by the "
                                                           "course too (see the notes below them)" if conflicts else ""))
            shutil.copy2(path, base_path)
    stamp.write_text(course_fingerprint(), encoding="utf-8")
    return done


def course_fingerprint() -> str:
    """A hash of everything a release is built from: when it is unchanged, an
    update has nothing to do."""
    digest = hashlib.sha256()
    sources = [*sorted(paths.COURSE_ROOT.glob("notebooks/*.py")), *sorted(paths.QUIZZES.glob("*.yaml")),
               *sorted((paths.COURSE_ROOT / "course_utils").rglob("*.py")),
               *(paths.COURSE_ROOT / name for name in RELEASE_FILES)]
    for path in sources:
        digest.update(path.relative_to(paths.COURSE_ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def merge_notebook(mine: nbformat.NotebookNode, base: nbformat.NotebookNode,
                   theirs: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """Three-way merge of a learner's notebook (`mine`) with the course's new
    version (`theirs`), given the version handed out (`base`); cells are
    matched by id. Returns the merged notebook and the number of conflicts."""
    base_source = {cell.id: cell.source for cell in base.cells}
    mine_by_id = {cell.id: cell for cell in mine.cells}
    theirs_ids = {cell.id for cell in theirs.cells}
    # What the learner wrote that the course's new version will not place:
    # cells of their own, and edited cells the course has since removed.
    followers: dict[str | None, list] = {}
    previous = None
    for cell in mine.cells:
        own = cell.id not in base_source
        edited_then_removed = cell.id not in theirs_ids and base_source.get(cell.id) != cell.source
        if cell.id not in theirs_ids and (own or edited_then_removed):
            followers.setdefault(previous, []).append(cell)
        if cell.id in theirs_ids:
            previous = cell.id
    merged, conflicts = [], 0
    merged.extend(followers.get(None, []))
    for cell in theirs.cells:
        kept = mine_by_id.get(cell.id)
        if kept is None:
            if cell.id not in base_source:  # new in the course
                merged.append(cell)
            # else: the learner deleted it; respect that
        elif kept.source == base_source.get(cell.id) or kept.source == cell.source:
            merged.append(kept if kept.source == cell.source else cell)  # untouched: the course's version
        else:
            merged.append(kept)  # the learner's edit wins
            if base_source.get(cell.id) != cell.source:
                conflicts += 1
                merged.append(nbformat.v4.new_markdown_cell(
                    "**Course update:** the course changed the cell above, which you had edited; your version is "
                    "kept. The course's new version:\n\n```\n" + cell.source + "\n```"))
        merged.extend(followers.get(cell.id, []))
    result = nbformat.v4.new_notebook(metadata=theirs.metadata)
    result.cells = merged
    return result, conflicts


STUDENT_README = """\
# Transformers, hands on: student edition

If this folder is `practice/` inside a clone of the course, open it with
`make practice` in the course's folder: that uses the course's `.venv`, and
each time brings in lessons the course has added or corrected (after a
`git pull`, say), keeping everything you wrote. If it was handed to you on its
own, open it with `make lab` here (Python 3.11 to 3.14 and `make` needed; the
first run installs the packages into `.venv`). Start with
`notebooks/00_setup.ipynb`.

Each exercise says `raise NotImplementedError`: replace that line with your
code and run the checker cell after it. Answer each quiz with the widgets, and
put your graded answers in the cell after the quiz, replacing each `None`.
Hand in the notebooks as they are; they are graded by running them.

Later lessons run the course's reviewed version of each earlier exercise, from
`course_utils/`, so a slip in one exercise never breaks the next lesson. Those
versions are sealed here: they run, but their code is not shown (a note marks
each one). Run `course progress` in this folder to see your scores.
"""
