"""Time every lesson against the course budgets (COURSE_DESIGN.md): at most
150 s per notebook and 15 minutes for the whole course on a 2-core CPU.

    .venv/bin/python benchmarks/course_budget.py [LESSON ...]

Executes the lessons headlessly (as `course run` does, into build/benchmark/),
prints seconds per lesson and exits 1 if any budget is exceeded. Run it on an
otherwise idle machine: the numbers are wall-clock seconds. `course bench`
times lessons the same way (`runner.execute_lessons`) against these budgets.
"""

import json
import sys
import time

from course_utils.classroom import paths
from course_utils.classroom.lessons import BUDGET_SECONDS, find_lessons
from course_utils.classroom.runner import execute_lessons, timing_table

COURSE_BUDGET_SECONDS = 15 * 60


def main(selectors: list[str]) -> int:
    lessons = find_lessons(selectors)
    out_dir = paths.BUILD / "benchmark"
    start = time.perf_counter()
    runs = execute_lessons(lessons, out_dir)
    total = time.perf_counter() - start
    print(timing_table(runs))
    print(f"\nExecuted notebooks: {out_dir}")
    seconds = {run.name: round(run.seconds, 1) if run.ok else None for run in runs}  # None: the lesson failed
    over = {name: s for name, s in seconds.items() if s is None or s > BUDGET_SECONDS}
    print(json.dumps({"seconds_per_lesson": seconds, "total_seconds": round(total, 1)}, indent=1))
    print(f"per-lesson budget {BUDGET_SECONDS} s: {'met' if not over else f'EXCEEDED by {sorted(over)}'}")
    if not selectors:
        print(f"course budget {COURSE_BUDGET_SECONDS} s: {'met' if total <= COURSE_BUDGET_SECONDS else 'EXCEEDED'} ({total:.0f} s)")
    return 0 if not over and (selectors or total <= COURSE_BUDGET_SECONDS) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
