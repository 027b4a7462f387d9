"""What each lesson is worth and what a learner has scored.

A lesson's items are its quiz questions (from quizzes/) and its exercises (from
the checkers in checks/). This is the one module that knows both lists, so
that neither `progress` (the log) nor `quiz` and `checks` (which write to it)
needs the others: `course progress` and `course grade` both total from here.
"""

from pathlib import Path

from . import progress
from .checks import exercise_points
from .lessons import all_lessons
from .quiz import load_quiz


def quiz_points(lesson: str) -> dict[str, float]:
    """Every question id of a lesson's quiz, with its points."""
    return {qid: question.points for qid, question in load_quiz(lesson).questions.items()}


def lesson_items(lesson: str) -> dict[str, float]:
    """Every gradable item of a lesson: its quiz questions and its exercises."""
    return {**quiz_points(lesson), **exercise_points(lesson)}


def progress_table(path: Path | None = None) -> str:
    """Per lesson: quiz questions answered right, exercises passed, and score."""
    results = progress.latest_results(path)

    def done(items: dict[str, float]) -> int:
        return sum(1 for item, full in items.items() if item in results and results[item]["points"] >= full)

    def earned(items: dict[str, float]) -> float:  # never more than an item is worth
        return sum(min(float(results[item]["points"]), full) for item, full in items.items() if item in results)

    rows = [f"{'lesson':<28} {'quiz right':>10} {'exercises':>10} {'score':>9}"]
    for lesson in all_lessons():
        questions, exercises = quiz_points(lesson.number), exercise_points(lesson.number)
        items = {**questions, **exercises}
        rows.append(f"{lesson.name:<28} {f'{done(questions)}/{len(questions)}':>10} "
                    f"{f'{done(exercises)}/{len(exercises)}':>10} {f'{earned(items):g}/{sum(items.values()):g}':>9}")
    rows.append(f"\n(from {path or progress.progress_file()}; each item counts its latest answer(...) or check)")
    practised = sorted(set(progress.latest_results(path, kinds=(progress.WIDGET_KIND,))) - set(results))
    if practised:
        rows.append(f"Checked in the quiz widgets only, not handed in: {', '.join(practised)}. "
                    "`course grade` reads the answer(...) cell below each quiz: put your answers there and run it.")
    return "\n".join(rows)
