"""How far does each printed number of a lesson move on another CPU?

    .venv/bin/python benchmarks/output_spread.py 08 10            # lessons 08 and 10, variants 1 2 3
    .venv/bin/python benchmarks/output_spread.py --variants 0 1 2 3 4
    .venv/bin/python benchmarks/output_spread.py 08 --report-only  # the report of the last runs again

Runs each lesson once per variant of `course_utils.classroom.perturbation`
(variant v nudges the last bit of the weights after every optimizer step in
its own pattern, as another CPU's rounding would; 0 runs it as it is), on
`--threads` threads, into build/spread/v<v>/. Then compares every text output
with the stored notebook and prints, for each output line where a number
moved further than the arithmetic tolerance allows (whatever band its cell
declares) or a word changed, the stored line, its numbers as stored and as
run in each variant, and the band its cell declares (`# NBVAL_TOLERANCE`, see
`output_tolerance`), which the notebook tests apply.

Size a band from this report: at least twice the largest move seen across
the variants and across machines (a stored output made on another CPU is one
more sample), and write the moves in the marker's comment. A changed word is
a verdict or a prediction that flips: make it robust, or print the interval
and let the prose judge. Each variant of every training lesson takes the
lessons' time again (about 10 minutes on the 2-core CPU).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat

from course_utils.classroom import lessons, output_tolerance, paths, perturbation, runner

OUT = paths.BUILD / "spread"


def run_variant(lesson: lessons.Lesson, variant: int, threads: int) -> Path:
    os.environ[perturbation.VARIABLE] = str(variant)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    notebook = runner.read_source(lesson)
    start = time.perf_counter()
    runner.execute(notebook, lesson.source.parent, f"{lesson.name} v{variant}", allow_errors=True, quiet=True)
    target = OUT / f"v{variant}" / lesson.notebook.name
    target.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(notebook, target, fmt="ipynb")
    print(f"{lesson.name} variant {variant}: {time.perf_counter() - start:.0f} s", flush=True)
    return target


def _texts(cell) -> list[str]:
    """The cell's text outputs, consecutive pieces of a stream joined, as nbval
    compares them."""
    texts, last_stream = [], None
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            if last_stream == output["name"]:
                texts[-1] += output["text"]
            else:
                texts.append(output["text"])
            last_stream = output["name"]
            continue
        last_stream = None
        if output.get("output_type") == "error":
            texts.append(f"ERROR {output['ename']}: {output['evalue']}")
        else:
            texts.extend(v for k, v in output.get("data", {}).items() if k.startswith("text/") and isinstance(v, str))
    return texts


def report(lesson: lessons.Lesson, variants: list[int]) -> list[str]:
    stored = nbformat.read(lesson.notebook, as_version=4)
    runs = {v: nbformat.read(OUT / f"v{v}" / lesson.notebook.name, as_version=4) for v in variants
            if (OUT / f"v{v}" / lesson.notebook.name).exists()}
    lines = []
    code_cells = [cell for cell in stored.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        if "NBVAL_IGNORE_OUTPUT" in cell.source:
            continue
        bands = output_tolerance.declared_bands(cell.source)
        moves: dict[str, dict[int, list[float] | str]] = {}
        for v, run in runs.items():
            fresh_cell = [c for c in run.cells if c.cell_type == "code"][number - 1]
            for old, new in zip(_texts(cell), _texts(fresh_cell)):
                if output_tolerance.reconcile_text(new, old) == old:  # without bands: show every move past arithmetic
                    continue
                old_skeleton, old_numbers, old_lines = output_tolerance._split(old)
                new_skeleton, new_numbers, _ = output_tolerance._split(new)
                if old_skeleton != new_skeleton:
                    moves.setdefault("(words changed) " + old[:300], {})[v] = "words: " + new[:300]
                    continue
                for a, b, line in zip(new_numbers, old_numbers, old_lines):
                    if not output_tolerance.numbers_agree(a, b):
                        moves.setdefault(line, {}).setdefault(v, []).append(f"{b} -> {a}")
        for line, by_variant in moves.items():
            lines.append(f"{lesson.name} cell [{number}] {line.strip()[:160]!r}")
            declared = output_tolerance._band_for(line, bands)
            for v, moved in sorted(by_variant.items()):
                shown = moved if isinstance(moved, str) else ", ".join(moved)
                lines.append(f"    variant {v}: {shown}")
            lines.append(f"    declared: {declared}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="numbers or names (default: all)")
    parser.add_argument("--variants", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    chosen = lessons.find_lessons(args.lessons)
    with tempfile.TemporaryDirectory() as scratch:
        os.environ.update(runner.kernel_environment(Path(scratch) / "progress.jsonl"))
        os.environ.update(perturbation.kernel_startup(Path(scratch) / "ipython"))
        if not args.report_only:
            for lesson in chosen:
                for variant in args.variants:
                    run_variant(lesson, variant, args.threads)
    found = [line for lesson in chosen for line in report(lesson, args.variants)]
    print("\n".join(found) if found else "no number moved past the arithmetic tolerance, and no word changed")


if __name__ == "__main__":
    main()
