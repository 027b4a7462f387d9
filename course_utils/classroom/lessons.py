"""The lessons: found in notebooks/ as NN_slug.py (the source) + NN_slug.ipynb
(the same cells, executed), numbered in teaching order."""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jupytext

from . import paths

BUDGET_SECONDS = 150  # every lesson runs top to bottom in this time on a 2-core CPU
TIMINGS = paths.BUILD / "timings.json"  # written by `course run`

_LESSON_FILE = re.compile(r"^(\d\d)_([a-z0-9_]+)\.(py|ipynb)$")
_TITLE = re.compile(r"^# (\d\d) · (.+)$", re.MULTILINE)  # the first heading of the first cell


@dataclass(frozen=True)
class Lesson:
    number: str
    slug: str
    title: str
    source: Path  # the .py; in the student edition, which has no .py, the .ipynb

    @property
    def name(self) -> str:
        return f"{self.number}_{self.slug}"

    @property
    def notebook(self) -> Path:
        return self.source.with_suffix(".ipynb")


def all_lessons(folder: Path | None = None) -> list[Lesson]:
    folder = folder or paths.NOTEBOOKS
    lessons = []
    for source in sorted(folder.glob("[0-9][0-9]_*")):
        match = _LESSON_FILE.match(source.name)
        if not match or (source.suffix == ".ipynb" and source.with_suffix(".py").exists()):
            continue  # not a lesson, or the .ipynb half of a pair whose source is the .py
        first_cell = jupytext.read(source).cells[0].source if source.stat().st_size else ""
        title = _TITLE.search(first_cell)
        lessons.append(Lesson(match.group(1), match.group(2), title.group(2).strip() if title else "(untitled)", source))
    return lessons


def find_lessons(selectors: list[str]) -> list[Lesson]:
    """Lessons named by number ("3", "03") or name ("03_masks"); all if none named."""
    lessons = all_lessons()
    if not selectors:
        return lessons
    chosen = []
    for selector in selectors:
        matches = [lesson for lesson in lessons
                   if selector in (lesson.number, lesson.name, lesson.notebook.name, lesson.source.name)
                   or (selector.isdigit() and int(selector) == int(lesson.number))]
        if not matches:
            known = ", ".join(lesson.name for lesson in lessons)
            raise SystemExit(f"No lesson {selector!r}. The lessons are: {known}")
        chosen += [lesson for lesson in matches if lesson not in chosen]
    return chosen


def measured_seconds() -> dict[str, float]:
    """Seconds each lesson took in the last `course run`, by lesson name."""
    try:
        return json.loads(TIMINGS.read_text())
    except (OSError, ValueError):
        return {}
