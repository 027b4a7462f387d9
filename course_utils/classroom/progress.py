"""A learner's results: one JSON line per graded quiz answer or exercise check.

Appending one line at a time means a crash, a full disk or a second notebook
writing at the same moment can lose at most the line being written, never what
was saved before; unreadable lines are skipped when reading.

This module knows only the log's format; what a lesson's items are worth and
the per-lesson totals are in `scores`.
"""

import json
import os
import time
from pathlib import Path

from . import paths

PROGRESS_VARIABLE = "COURSE_PROGRESS_FILE"


def progress_file() -> Path:
    """One log per copy of the course: the worked notebooks and a practice
    (student) copy keep separate scores."""
    return Path(os.environ.get(PROGRESS_VARIABLE, paths.COURSE_ROOT / ".progress.jsonl"))


def record(item: str, kind: str, points: float, max_points: float, answer=None) -> None:
    """Save one result, e.g. record("00.count_words", "exercise", 1, 1); a quiz
    result keeps the answer given (a string, number or list of letters), which
    is what `course grade` judges."""
    path = progress_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"item": item, "kind": kind, "points": points, "max": max_points, "time": time.time()}
        if answer is not None:
            entry["answer"] = sorted(answer) if isinstance(answer, (set, frozenset)) else answer
        line = json.dumps(entry)
        with path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError as error:  # feedback still reaches the learner; only the log is missed
        print(f"(Could not save this result to {path}: {error})")


# What a quiz widget's Check button records: practice, not an answer handed
# in. `course grade` reads the answer(...) cell, so `course progress` counts
# those ("quiz") and lists the widget-only items apart.
WIDGET_KIND = "quiz-widget"


def latest_results(path: Path | None = None, kinds=("quiz", "exercise")) -> dict[str, dict]:
    """The most recent result of the given kinds for every item, keyed by item id."""
    path = path or progress_file()
    results = {}
    if not path.exists():
        return results
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            if entry.get("kind") in kinds:
                results[entry["item"]] = entry
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn line from an interrupted write
    return results
