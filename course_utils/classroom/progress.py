"""A learner's results: one JSON line per graded quiz answer or exercise check.

Appending one line at a time means a crash, a full disk or a second notebook
writing at the same moment can lose at most the line being written, never what
was saved before; unreadable lines are skipped when reading.
"""

import json
import os
import time
from pathlib import Path

PROGRESS_VARIABLE = "COURSE_PROGRESS_FILE"


def progress_file() -> Path:
    """One log per copy of the course: the worked notebooks and a practice
    (student) copy keep separate scores."""
    from .paths import COURSE_ROOT

    return Path(os.environ.get(PROGRESS_VARIABLE, COURSE_ROOT / ".progress.jsonl"))


def record(item: str, kind: str, points: float, max_points: float) -> None:
    """Save one result, e.g. record("00.count_words", "exercise", 1, 1)."""
    path = progress_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"item": item, "kind": kind, "points": points, "max": max_points, "time": time.time()})
        with path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
    except OSError as error:  # feedback still reaches the learner; only the log is missed
        print(f"(Could not save this result to {path}: {error})")


def latest_results(path: Path | None = None) -> dict[str, dict]:
    """The most recent result for every item, keyed by item id."""
    path = path or progress_file()
    results = {}
    if not path.exists():
        return results
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
            results[entry["item"]] = entry
        except (ValueError, KeyError, TypeError):
            continue  # a torn line from an interrupted write
    return results



def progress_table(path: Path | None = None) -> str:
    """Per lesson: quiz questions answered right, exercises passed, and score."""
    from .checks import exercise_points
    from .lessons import all_lessons
    from .quiz import load_quiz

    results = latest_results(path)
    rows = [f"{'lesson':<28} {'quiz right':>10} {'exercises':>10} {'score':>9}"]
    for lesson in all_lessons():
        questions = {qid: q.points for qid, q in load_quiz(lesson.number).questions.items()}
        exercises = exercise_points(lesson.number)

        def done(items):
            return sum(1 for item, full in items.items() if item in results and results[item]["points"] >= full)

        score = sum(min(float(results[item]["points"]), full)
                    for item, full in {**questions, **exercises}.items() if item in results)
        rows.append(f"{lesson.name:<28} {f'{done(questions)}/{len(questions)}':>10} "
                    f"{f'{done(exercises)}/{len(exercises)}':>10} {f'{score:g}/{sum(questions.values()) + sum(exercises.values()):g}':>9}")
    rows.append(f"\n(from {path or progress_file()}; each item counts its latest attempt)")
    return "\n".join(rows)
