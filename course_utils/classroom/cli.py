"""The `course` command: list, doctor, run (and more as the course grows)."""

import argparse
import sys
from pathlib import Path

from .lessons import BUDGET_SECONDS, all_lessons, find_lessons, measured_seconds


def cmd_list(args) -> int:
    measured, lessons = measured_seconds(), all_lessons()
    # Columns as wide as their longest entry, so that a long title never pushes the times out of line.
    name_width = max([len("lesson"), *(len(lesson.name) for lesson in lessons)])
    title_width = max([len("title"), *(len(lesson.title) for lesson in lessons)])
    print(f"{'#':<3} {'lesson':<{name_width}} {'title':<{title_width}} {'last run':>9}  budget")
    for lesson in lessons:
        seconds = measured.get(lesson.name)
        last = f"{seconds / 60:.1f} min" if seconds is not None else "-"
        print(f"{lesson.number:<3} {lesson.name:<{name_width}} {lesson.title:<{title_width}} {last:>9}  "
              f"{BUDGET_SECONDS / 60:.1f} min")
    return 0


def cmd_doctor(args) -> int:
    from .doctor import run_doctor

    return run_doctor()


def cmd_run(args) -> int:
    from .runner import run_lessons

    ok = run_lessons(find_lessons(args.lessons), in_place=args.in_place)
    return 0 if ok else 1


def cmd_progress(args) -> int:
    from .scores import progress_table

    print(progress_table())
    return 0


def _in_the_authoring_copy(verb: str) -> bool:
    """`course student` and `course grade` need the answer keys, which a student release has not."""
    from . import paths

    if paths.is_student_release():
        print(f"course {verb}: {paths.COURSE_ROOT} is a student release, which has no answer keys; run "
              f"`course {verb}` in the instructor's copy of the course (or set COURSE_ROOT to it).", file=sys.stderr)
        return False
    return True


def cmd_student(args) -> int:
    from .student import ReleaseError, build_release, update_release

    if not _in_the_authoring_copy("student"):
        return 2
    try:
        if args.update:
            done = update_release(args.out)
            print(f"{args.out} is up to date with the course" + (":\n  " + "\n  ".join(done) if done else "."))
            return 0
        written = build_release(args.out)
    except ReleaseError as error:
        print(f"course student: {error}", file=sys.stderr)
        return 2
    notebooks = sum(path.suffix == ".ipynb" for path in written)
    print(f"Student release in {args.out}: {notebooks} notebooks with solutions stubbed, "
          f"{len(written) - notebooks} quizzes with answers sealed.")
    return 0


def cmd_grade(args) -> int:
    from .grading import feedback_folder, grade_folder
    from .sandbox import Limits

    if not _in_the_authoring_copy("grade"):
        return 2
    lessons = [f"{int(lesson):02d}" if lesson.strip().isdigit() else lesson for lesson in args.lessons or []]
    limits = Limits(seconds=args.time_limit, memory_bytes=int(args.memory_limit * (1 << 30)))
    roster = None
    if args.roster:
        from .roster import Roster, RosterError

        try:
            roster = Roster.read(args.roster)
        except RosterError as error:
            print(f"course grade: {error}", file=sys.stderr)
            return 2
    grades = grade_folder(args.submissions, args.out, lessons=lessons or None, limits=limits, fmt=args.format,
                          sandboxed=not args.unsafe_no_sandbox, seed=args.seed, per_learner=args.per_learner,
                          jobs=args.jobs, roster=roster, reveal=args.reveal_answers, shard=args.shard)
    learners = len({grade.learner for grade in grades})
    print(f"\nGradebook: {args.out} ({learners} learners, {len(grades)} notebooks); "
          f"feedback files in {feedback_folder(args.out)}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        part, parts = (int(number) for number in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share such as 2/4") from None
    if not 1 <= part <= parts:
        raise argparse.ArgumentTypeError(f"{text!r}: the share must be between 1 and {parts}")
    return part, parts


def cmd_merge_grades(args) -> int:
    from .grading import merge_gradebooks

    roster = None
    if args.roster:
        from .roster import Roster

        roster = Roster.read(args.roster)
    grades = merge_gradebooks(args.parts, args.out, args.format, roster)
    print(f"Gradebook: {args.out} ({len({grade.learner for grade in grades})} learners, {len(grades)} notebooks, "
          f"from {len(args.parts)} shares)")
    return 0


def cmd_book(args) -> int:
    from .book import build

    build(args.jupyter_book)
    return 0


def cmd_train(args) -> int:
    import dataclasses

    from course_utils.checkpoint import CheckpointError

    from . import train

    if args.model == "bert" and args.recipe:
        print("course train: --recipe is for gpt and modern; bert has one recipe (lesson 08's)", file=sys.stderr)
        return 2
    if args.processes is not None and (args.model == "bert" or args.processes < 1):
        print("course train: --processes is for gpt and modern, and at least 1", file=sys.stderr)
        return 2
    try:
        if args.model == "bert":
            from course_utils.bert import PretrainingRecipe

            train.train_bert(PretrainingRecipe(steps=args.steps or train.LONG_RUN_STEPS),
                             eval_every=args.checkpoint_every, fresh=args.fresh,
                             results=args.results or train.BERT_RESULTS)
        else:
            from course_utils.gpt import SHORT_RECIPE, TrainingRecipe

            recipe = {"nanogpt": TrainingRecipe(), "short": SHORT_RECIPE}[args.recipe or "nanogpt"]
            recipe = dataclasses.replace(recipe, steps=args.steps or recipe.steps, eval_every=args.checkpoint_every)
            if (args.processes or 1) == 1:
                train.train_decoder(args.model, recipe, fresh=args.fresh, results=args.results)
            else:
                return _train_data_parallel(args, recipe)
    except CheckpointError as error:
        print(f"course train: {error}", file=sys.stderr)
        return 2
    return 0


def _train_data_parallel(args, recipe) -> int:
    """`course train gpt|modern --processes N`: started by the user, start N
    copies of this command with torchrun and wait for them; started by
    torchrun (which sets RANK), be one of them."""
    import os
    import subprocess

    from course_utils import distributed

    from . import train

    processes, batch_size = args.processes, recipe.batch_size
    if processes > batch_size or batch_size % processes:
        print(f"course train: the batch of {batch_size} windows cannot be split evenly over {processes} processes: "
              f"each process takes batch/processes of them, so choose a divisor of {batch_size}", file=sys.stderr)
        return 2
    if "RANK" in os.environ:  # one of the processes torchrun started
        if int(os.environ["WORLD_SIZE"]) != processes:
            print(f"course train: --processes {processes}, but torchrun started {os.environ['WORLD_SIZE']}",
                  file=sys.stderr)
            return 2
        # gloo even where CUDA is: `course train` keeps the model and its batches on the CPU, which NCCL cannot reduce.
        with distributed.process_group(backend_name="gloo"):
            train.train_decoder(args.model, recipe, fresh=args.fresh, results=args.results)
        return 0
    arguments = ["train", args.model, "--processes", str(processes), "--checkpoint-every", str(args.checkpoint_every)]
    arguments += ["--recipe", args.recipe] if args.recipe else []
    arguments += ["--steps", str(args.steps)] if args.steps else []
    arguments += ["--fresh"] if args.fresh else []
    arguments += ["--results", str(args.results)] if args.results else []
    threads = max(1, (os.cpu_count() or 1) // processes)  # the cores shared out, not each process on all of them
    environment = {**os.environ, **distributed.loopback_environment(threads)}
    command = distributed.torchrun_command(processes, "course_utils.classroom.cli", arguments)
    print(f"Starting {processes} processes of {threads} thread(s): {' '.join(command)}", flush=True)
    return subprocess.run(command, env=environment).returncode


def cmd_bench(args) -> int:
    import torch

    from . import paths
    from .bench import TINY, Amounts, BenchError, run_bench

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    amounts = TINY if args.tiny else Amounts()
    selectors = [] if args.lessons == ["all"] else args.lessons or list(amounts.lessons)  # [] means every lesson
    lessons = [] if args.no_lessons else find_lessons(selectors)
    try:
        ok = run_bench(device, amounts, lessons, args.out or paths.BUILD / "bench", args.threads)
    except BenchError as error:
        print(f"course bench: {error}", file=sys.stderr)
        return 2
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="course", description="The transformers course: run, check and grade lessons.")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("list", help="the lessons in order, with titles and time budgets").set_defaults(func=cmd_list)
    verbs.add_parser("doctor", help="check this environment; exit 1 with a fix for each problem").set_defaults(func=cmd_doctor)
    run = verbs.add_parser("run", help="execute lessons headlessly (all by default) and time them")
    run.add_argument("lessons", nargs="*", metavar="LESSON", help="a number (3) or a name (03_masks)")
    run.add_argument("--in-place", action="store_true",
                     help="store the executed notebooks as notebooks/NN_slug.ipynb (what `make notebooks` does)")
    run.set_defaults(func=cmd_run)
    verbs.add_parser("progress", help="your quiz answers and exercises, per lesson").set_defaults(func=cmd_progress)
    student = verbs.add_parser("student", help="write the student release: solutions stubbed, quiz answers sealed")
    student.add_argument("out", type=Path, metavar="OUT", help="a new (or empty) folder")
    student.add_argument("--update", action="store_true",
                         help="bring the release already in OUT (a learner's copy) up to the course, keeping "
                              "everything the learner wrote")
    student.set_defaults(func=cmd_student)
    grade = verbs.add_parser(
        "grade", help="run each submitted notebook in a sandbox and grade it into a gradebook",
        description="Run every .ipynb under SUBMISSIONS in a bubblewrap sandbox that sees only the sealed student "
        "release, judge its quiz answers and exercises here, and write a gradebook (one row per learner: the "
        "folder a notebook is in, or its file name) and one feedback file per notebook.")
    grade.add_argument("submissions", type=Path, metavar="SUBMISSIONS", help="folder with the .ipynb files (searched recursively)")
    grade.add_argument("--out", type=Path, default=Path("grades.csv"), help="the gradebook (default: grades.csv)")
    grade.add_argument("--format", choices=["csv", "long", "canvas", "moodle"], default="csv",
                       help="csv: one row per learner, a column per lesson total and item (default); "
                       "long: one row per learner, lesson and item (learner, lesson, item, points, max); "
                       "canvas, moodle: what Canvas's and Moodle's gradebook imports read as they are, a column per "
                       "lesson (with --roster for Canvas user ids and names)")
    grade.add_argument("--lessons", "--lesson", nargs="+", metavar="N",
                       help="the lessons assigned (e.g. --lessons 0 2): every learner's maximum counts them, and a "
                            "notebook of another lesson is reported, not graded (default: the lessons handed in)")
    grade.add_argument("--time-limit", type=float, default=600, help="seconds for one submission (default 600)")
    grade.add_argument("--memory-limit", type=float, default=6,
                       help="GiB of address space for each process of a submission (default 6)")
    grade.add_argument("--per-learner", type=int, metavar="N",
                       help="run at most N notebooks of one learner, in name order (default: twice the number of lessons)")
    grade.add_argument("--roster", type=Path, metavar="CSV",
                       help="a CSV file with a column `id` (the gradebook's learner ids) and any of canvas_user_id, "
                            "moodle_participant_id, aliases: maps the names of downloaded submissions to learners")
    grade.add_argument("--shard", type=_shard, default=(1, 1), metavar="I/N",
                       help="grade the I-th of N shares of the learners (each learner's notebooks in one share), to "
                            "split a class across machines; `course merge-grades` puts the gradebooks together")
    grade.add_argument("--reveal-answers", action="store_true",
                       help="feedback files give the right answer of each quiz question missed, with its "
                            "explanation (for after the deadline)")
    grade.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="grade N notebooks at once, each in a process and sandbox of its own (default 1); "
                            "the gradebook is the same as one at a time")
    grade.add_argument("--seed", type=int, help="draws the random inputs the checkers give learners' code "
                       "(default: a new draw each run, printed, so that no table of answers made in advance passes)")
    grade.add_argument("--unsafe-no-sandbox", action="store_true",
                       help="grade without bubblewrap (e.g. on macOS): the notebooks then run as you and can "
                       "read and change what you can; only for notebooks you trust")
    grade.set_defaults(func=cmd_grade)
    merge = verbs.add_parser("merge-grades", help="put together the gradebooks of the shares of a class (--shard)")
    merge.add_argument("parts", type=Path, nargs="+", metavar="GRADEBOOK", help="each share's gradebook")
    merge.add_argument("--out", type=Path, default=Path("grades.csv"), help="the merged gradebook (default: grades.csv)")
    merge.add_argument("--format", choices=["csv", "long", "canvas", "moodle"], default="csv")
    merge.add_argument("--roster", type=Path, metavar="CSV")
    merge.set_defaults(func=cmd_merge_grades)
    book = verbs.add_parser("book", help="the course as a static website, with every lesson's stored outputs "
                            "(`make book` installs Jupyter Book and runs this)")
    book.add_argument("--jupyter-book", default="jupyter-book", metavar="PATH",
                      help="the jupyter-book command to build with (default: the one on PATH)")
    book.set_defaults(func=cmd_book)
    from .train import LONG_RUN_STEPS

    train = verbs.add_parser("train", help="the longer training runs that lessons show the results of",
                             description="Train a model for longer than a lesson allows, with a progress bar, an "
                             "evaluation and a checkpoint (in the cache folder) every --checkpoint-every steps; run "
                             "again, it resumes from the last checkpoint, exactly as if it had never stopped.")
    train.add_argument("model", choices=["bert", "gpt", "modern"],
                       help="bert: lesson 08's pre-training, about half an hour on 2 cores (the stored run: 27 "
                       "minutes); gpt: lesson 10's GPT; modern: lesson 12's Llama-style decoder (both on the "
                       "course's characters, by nanoGPT's recipe unless --recipe short)")
    train.add_argument("--steps", type=int, help=f"training steps (default: {LONG_RUN_STEPS} for bert, the recipe's "
                       "for gpt and modern: 2000, or 1200 with --recipe short)")
    train.add_argument("--recipe", choices=["nanogpt", "short"],
                       help="gpt and modern: nanoGPT's CPU recipe (default) or lessons 10 and 12's shorter one")
    train.add_argument("--checkpoint-every", type=int, default=250, metavar="N",
                       help="evaluate and save a checkpoint every N steps, and at the last (default 250)")
    train.add_argument("--fresh", action="store_true", help="start again instead of resuming from the checkpoint")
    train.add_argument("--processes", type=int, metavar="N",
                       help="gpt and modern: train data-parallel in N processes on this machine (started with "
                       "torchrun), each on batch/N of every batch; the checkpoint is the same as one process's, so "
                       "a run may resume with another N (default 1)")
    train.add_argument("--results", type=Path,
                       help="where to write the curve (default: for bert, the file lesson 08 reads; for gpt and "
                       "modern, results.json in the run's folder in the cache)")
    train.set_defaults(func=cmd_train)
    bench = verbs.add_parser(
        "bench", help="measure this machine: matmul, GPT training, generation, attention, lessons (about 4 min)",
        description="Measure the course's performance figures on this machine, with the scripts in benchmarks/: "
        "float32 matmul throughput, the GPT recipe's training speed, generation with and without the KV cache, "
        "our multi-head attention against PyTorch's, and lessons against their budget. Writes bench.md (a table) "
        "and bench.json; exits 1 if a stage failed (the others still run). By default it times lessons 00, 08 "
        "and 09 (the set-up and the two longest) and takes about 4 minutes on a 2-core CPU, more when other work "
        "shares the cores; --lessons all times every lesson, about 12 minutes in all there.")
    bench.add_argument("--device", choices=["cpu", "cuda"],
                       help="where to measure (default: cuda when PyTorch sees a GPU, else cpu); with cpu, the "
                       "lessons' kernels are not shown the GPU either")
    bench.add_argument("--out", type=Path, help="folder for bench.md, bench.json and the executed lessons "
                       "(default: build/bench/ in the course folder)")
    bench.add_argument("--threads", type=int, help="PyTorch's CPU threads, here and in the lessons' kernels "
                       "(default: PyTorch's choice)")
    bench.add_argument("--tiny", action="store_true", help="a few steps, tokens and repeats, and lesson 00 only: "
                       "checks that everything runs, in well under a minute; the figures are rough")
    chosen = bench.add_mutually_exclusive_group()
    chosen.add_argument("--lessons", nargs="+", metavar="LESSON",
                        help="the lessons to time: numbers (3) or names (03_masks), or `all`")
    chosen.add_argument("--no-lessons", action="store_true", help="skip the lessons stage")
    bench.set_defaults(func=cmd_bench)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
