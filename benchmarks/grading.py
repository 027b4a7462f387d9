"""How long does `course grade` take for an honest class, one notebook at a
time and with --jobs?

    .venv/bin/python benchmarks/grading.py                  # 30 learners, lessons 00-02, --jobs 1 then 2
    .venv/bin/python benchmarks/grading.py --learners 4 --jobs 1   # a quick look

It makes a class of honest submissions in a temporary folder, one folder per
learner holding both lessons' notebooks: the instructor's notebook (every
exercise solved) with the lesson number a release puts in its metadata, and,
for every second learner, one quiz answer changed to a wrong option, so that
the class is not 30 copies of one grade. Then it times `course grade` on the
folder once for each --jobs value, side by side in one run (machines differ),
checks that every run wrote the same gradebook, and prints the wall times.

One at a time, the time is about the sum of the lessons' run times plus a
start-up cost per notebook (what a sandbox adds); with --jobs N, notebooks run
N at a time, each kernel on the threads the grader gives it.
"""

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

from course_utils.classroom import cli
from course_utils.classroom.lessons import find_lessons

LESSONS = ("00", "01", "02")
WRONG_OPTION = "B"  # every quiz's first question is single choice with at least two options


def make_class(folder: Path, learners: int, lessons=LESSONS) -> int:
    """Write `learners` folders of submissions; return the number of notebooks."""
    written = 0
    for lesson in find_lessons(list(lessons)):
        notebook = jupytext.read(lesson.source)
        notebook.metadata["course"] = {"lesson": lesson.number}
        for learner in range(learners):
            copy = nbformat.from_dict(notebook)
            if learner % 2:
                _answer_first_question(copy, WRONG_OPTION)
            (folder / f"learner{learner:02d}").mkdir(parents=True, exist_ok=True)
            nbformat.write(copy, folder / f"learner{learner:02d}" / lesson.notebook.name)
            written += 1
    return written


def _answer_first_question(notebook, option: str) -> None:
    for cell in notebook.cells:
        if cell.cell_type == "code" and re.search(r'^answer\("\d\d\.[\w-]+", ', cell.source, re.MULTILINE):
            cell.source = re.sub(r'^(answer\("\d\d\.[\w-]+", )"[A-Z]"', rf'\1"{option}"', cell.source, count=1,
                                 flags=re.MULTILINE)
            return


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--learners", type=int, default=30)
    parser.add_argument("--lessons", nargs="+", default=list(LESSONS))
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2], help="the --jobs values to time (default 1 2)")
    parser.add_argument("--grade-args", default="", help="extra options for `course grade`, e.g. '--unsafe-no-sandbox'")
    args = parser.parse_args(argv)
    status, timings, gradebooks = 0, {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        submissions = Path(scratch) / "submissions"
        notebooks = make_class(submissions, args.learners, args.lessons)
        for jobs in args.jobs:
            out = Path(scratch) / f"grades-jobs{jobs}.csv"
            start = time.perf_counter()
            status |= cli.main(["grade", str(submissions), "--out", str(out), "--seed", "0", "--jobs", str(jobs),
                                *args.grade_args.split()])
            timings[jobs] = time.perf_counter() - start
            gradebooks[jobs] = out.read_text()
    print(f"\n{args.learners} learners x lessons {', '.join(args.lessons)}: {notebooks} notebooks, "
          f"{os.cpu_count()} CPUs")
    for jobs, seconds in timings.items():
        print(f"  --jobs {jobs}: {seconds / 60:.1f} min ({seconds / notebooks:.1f} s per notebook)")
    if len(set(gradebooks.values())) > 1:
        print("The gradebooks differ between --jobs values: a bug.")
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
