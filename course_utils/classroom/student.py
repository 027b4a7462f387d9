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

import re
import secrets
import shutil
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
    for lesson, notebook in notebooks:
        nbformat.write(notebook, out / "notebooks" / lesson.notebook.name)
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
    return written


STUDENT_README = """\
# Transformers, hands on: student edition

Open the course with `make lab` (Python 3.11 to 3.14 and `make` needed; the first run
installs the packages into `.venv`), then start with `notebooks/00_setup.ipynb`.

Each exercise says `raise NotImplementedError`: replace that line with your
code and run the checker cell after it. Answer each quiz with the widgets, and
put your graded answers in the cell after the quiz, replacing each `None`.
Hand in the notebooks as they are; they are graded by running them.

Later lessons run the course's reviewed version of each earlier exercise, from
`course_utils/`, so a slip in one exercise never breaks the next lesson. Those
versions are sealed here: they run, but their code is not shown (a note marks
each one). Run `course progress` in this folder to see your scores.
"""
