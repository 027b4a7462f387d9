"""`course bench`: the course's performance figures, measured on this machine.

Each stage runs the measurement of a script in benchmarks/ (imported from
there, so that the script and this command time the same thing), then the
lessons against their budget. The figures go to a Markdown table and a JSON
file. A stage that fails is reported in the table with its reason, and the
other stages still run.
"""

import functools
import importlib.util
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from unittest import mock

import torch
from tqdm.auto import tqdm

from course_utils.gpt import GPTConfig, TrainingRecipe

from . import paths
from .lessons import BUDGET_SECONDS, Lesson, all_lessons


class BenchError(Exception):
    """`course bench` cannot start: the message says why and what to do."""


@dataclass(frozen=True)
class Amounts:
    """How long each measurement runs: long enough for steady figures by
    default; --tiny takes a few steps, tokens and repeats (for the tests)."""

    matmul_seconds: float = 1.0
    training_steps: int = 100
    new_tokens: int = 256
    generation_repeats: int = 3
    attention_repeats: int = 30
    attention_warmup: int = 5
    # Lesson 00 (the set-up) and the two longest: if they fit the budget, so
    # do the rest. All 15 lessons take about 16 minutes on the 2-core CPU.
    lessons: tuple[str, ...] = ("00", "08", "09")


TINY = Amounts(matmul_seconds=0.2, training_steps=5, new_tokens=16, generation_repeats=1, attention_repeats=2,
               attention_warmup=1, lessons=("00",))


@dataclass
class Figure:
    name: str
    value: float | int | str | None  # None: not measured, see failed
    unit: str = ""
    note: str = ""
    failed: bool = False  # then note holds the reason


def benchmark(name: str) -> ModuleType:
    """benchmarks/NAME.py, imported by its path: benchmarks/ is a folder of
    scripts at the course root, not an installed package."""
    path = benchmarks_folder() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def benchmarks_folder() -> Path:
    folder = paths.COURSE_ROOT / "benchmarks"
    if not folder.is_dir():
        raise BenchError(f"{folder} is missing, and `course bench` runs the scripts in it. The student edition "
                         "(`course student`) ships without them, and its lessons would stop at the exercises left "
                         "to do: run `course bench` in the full course (the repository).")
    return folder


class Bench:
    """The stages, in order; each returns its figures."""

    def __init__(self, device: str, amounts: Amounts, lessons: list[Lesson], out: Path, threads: int | None = None):
        self.device, self.amounts, self.lessons, self.out, self.threads = device, amounts, lessons, out, threads
        self.stages = [("Machine", self.machine), ("GPT training", self.training), ("Generation", self.generation),
                       ("Multi-head attention", self.attention)] + ([("Lessons", self.lesson_times)] if lessons else [])

    @functools.cached_property
    def matmul_flops(self) -> float:
        """Measured once: the machine stage shows it, the training stage compares with it."""
        return benchmark("gpt_train").matmul_throughput(torch.float32, seconds=self.amounts.matmul_seconds,
                                                        device=self.device)

    def machine(self) -> list[Figure]:
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
        return [
            Figure("device", device_name(self.device)),
            Figure("threads", torch.get_num_threads(), "", "CPU threads PyTorch uses (--threads)"),
            Figure("torch", torch.__version__, "", build),
            Figure("float32 matmul, 1024³", self.matmul_flops / 1e9, "GFLOP/s",
                   "what the training share below compares with"),
        ]

    def training(self) -> list[Figure]:
        recipe, config = TrainingRecipe(), GPTConfig()
        speed = benchmark("gpt_train").measure_training(self.amounts.training_steps, self.device, self.matmul_flops)
        full_run = recipe.steps * speed["ms_per_step"] / 6e4
        return [
            Figure("ms per step", speed["ms_per_step"], "ms", f"mean of {self.amounts.training_steps} steps after 10 "
                   f"warm-up steps, batch {recipe.batch_size} × {config.context} tokens"),
            Figure("tokens per second", speed["tokens_per_second"], "tokens/s",
                   f"the recipe's {recipe.steps:,} steps would take {shown(full_run)} min"),
            Figure("FLOPs per step", speed["flops_per_step"] / 1e9, "GFLOP", "forward and backward, as counted by "
                   "torch.utils.flop_counter"),
            Figure("FLOPs per second", speed["flops_per_second"] / 1e9, "GFLOP/s"),
            Figure("share of the float32 matmul", 100 * speed["matmul_share"], "%",
                   "small matrices and many small operations keep training below it"),
        ]

    def generation(self) -> list[Figure]:
        script = benchmark("generation")
        new_tokens, repeats = self.amounts.new_tokens, self.amounts.generation_repeats
        _, seconds, _ = script.time_writers(repeats, new_tokens, self.device)
        cache_speedup = seconds["ours, no cache"] / seconds["ours, KV cache"]
        against_hf = seconds["Hugging Face generate"] / seconds["ours, KV cache"]
        setting = f"greedy, {new_tokens} tokens after a {script.PROMPT}-token prompt, best of {repeats}"
        notes = {"ours, no cache": setting, "Hugging Face generate": "the same weights, writing the same tokens"}
        return [Figure(name, new_tokens / best, "tokens/s", notes.get(name, "")) for name, best in seconds.items()] + [
            Figure("KV cache speed-up", cache_speedup, "x", target(cache_speedup, script.TARGET_CACHE_SPEEDUP, "x")),
            Figure("ours against Hugging Face", against_hf, "x", target(against_hf, 1.0, "x")),
        ]

    def attention(self) -> list[Figure]:
        script = benchmark("mha_fast_path")
        times = script.time_candidates(self.amounts.attention_repeats, self.amounts.attention_warmup,
                                       device=self.device)
        speedups = script.speedups(times)
        setting = (f"forward + backward, batch {script.BATCH}, length {script.LENGTH}, width {script.WIDTH}, "
                   f"{script.HEADS} heads; median of {self.amounts.attention_repeats}")
        return [Figure(name, 1e3 * statistics.median(values), "ms", setting if name == script.OURS else "")
                for name, values in times.items()] + [
            Figure("speed-up over the default call", speedups[script.DEFAULT_CALL], "x",
                   target(speedups[script.DEFAULT_CALL], script.TARGET_SPEEDUP, "x")),
            Figure("speed-up over need_weights=False", speedups[script.WITHOUT_WEIGHTS], "x",
                   "the same fused kernel: about 1x expected"),
        ]

    def lesson_times(self) -> list[Figure]:
        from .runner import execute_lessons

        course_budget = benchmark("course_budget").COURSE_BUDGET_SECONDS
        kernels = {}  # what the lessons' kernels inherit: this command's threads and device
        if self.threads:
            kernels["OMP_NUM_THREADS"] = str(self.threads)  # read by PyTorch in each new kernel
        if self.device == "cpu" and torch.cuda.is_available():
            kernels["CUDA_VISIBLE_DEVICES"] = ""  # the lessons pick CUDA when they see it
        with mock.patch.dict(os.environ, kernels):  # and put back the environment the runner changes
            runs = execute_lessons(self.lessons, self.out / "lessons")
        figures = [Figure(run.name, None, "s", run.error, failed=True) if not run.ok else
                   Figure(run.name, run.seconds, "s", f"budget {BUDGET_SECONDS} s"
                          + ("" if run.seconds <= BUDGET_SECONDS else ": over budget"))
                   for run in runs]
        total, course = sum(run.seconds for run in runs), len(all_lessons())
        whole_course = len(runs) == course
        figures.append(Figure("total", total, "s", target(total, course_budget, " s", at_most=True) if whole_course
                              else f"{len(runs)} of the {course} lessons (--lessons all for every one)"))
        return figures

    def run(self) -> list[dict]:
        """Every stage, with a progress bar; a stage that raises becomes a failed figure."""
        results = []
        bar = tqdm(self.stages, desc="course bench", unit="stage")
        for number, (title, measure) in enumerate(bar, start=1):
            bar.set_postfix_str(title)
            start = time.perf_counter()
            try:
                figures = measure()
            except Exception as error:  # noqa: BLE001 (any failure is reported, and the next stage runs)
                figures = [Figure(title, None, "", f"{type(error).__name__}: {error}", failed=True)]
            failed = any(figure.failed for figure in figures)
            results.append({"stage": f"{number}. {title}", "status": "failed" if failed else "ok",
                            "seconds": three_figures(time.perf_counter() - start),
                            "figures": [{**asdict(figure), "value": three_figures(figure.value)}
                                        for figure in figures]})
        return results


def device_name(device: str) -> str:
    if device == "cuda":
        return f"cuda: {torch.cuda.get_device_name()}"
    return f"cpu: {cpu_name()} ({torch.backends.cpu.get_cpu_capability()})"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux
    return platform.processor() or platform.machine()


def target(value: float, goal: float, unit: str, at_most: bool = False) -> str:
    met = value <= goal if at_most else value >= goal
    return f"target {'at most' if at_most else 'at least'} {goal:g}{unit}: {'met' if met else 'missed'}"


def three_figures(value):
    """A float rounded to 3 significant figures (timings vary more than that); anything else as it is."""
    if isinstance(value, float) and value and math.isfinite(value):
        return round(value, 2 - math.floor(math.log10(abs(value))))
    return value


def shown(value) -> str:
    if isinstance(value, float):
        value = three_figures(value)
        decimals = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 0
        return f"{value:,.{decimals}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown_table(results: list[dict]) -> str:
    rows = [("figure", "value", "unit", "note")]
    for stage in results:
        failed = " FAILED" if stage["status"] == "failed" else ""
        rows.append((f"**{stage['stage']}**{failed}", "", "", f"stage took {shown(stage['seconds'])} s"))
        for figure in stage["figures"]:
            rows.append((figure["name"], "FAILED" if figure["failed"] else shown(figure["value"]), figure["unit"],
                         cell(figure["note"])))
    # Padded to the widest cell, so that the table reads as well printed as rendered; values right-aligned.
    widths = [max(len(row[column]) for row in rows) for column in range(4)]

    def line(row) -> str:
        return "| " + " | ".join(text.rjust(width) if column == 1 else text.ljust(width)
                                 for column, (text, width) in enumerate(zip(row, widths))) + " |"

    rule = "|" + "|".join("-" * (width + 1) + ":" if column == 1 else "-" * (width + 2)
                          for column, width in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), rule] + [line(row) for row in rows[1:]])


def cell(text: str) -> str:
    """Text that keeps a Markdown table whole: one line, no bare |, at most 200 characters."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= 200 else text[:199] + "…"


def machine_info(device: str) -> dict:
    return {"device": device, "device_name": device_name(device), "cpu": cpu_name(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "platform": platform.platform()}


def run_bench(device: str, amounts: Amounts, lessons: list[Lesson], out: Path, threads: int | None = None) -> bool:
    """Measure every stage, write out/bench.md and out/bench.json, print the
    table and where the files are; True if no stage failed."""
    benchmarks_folder()  # before any measurement: without it, every stage would fail
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device cuda: this PyTorch ({torch.__version__}) sees no CUDA GPU. "
                         "Use --device cpu, or install a CUDA build of PyTorch on a machine with an NVIDIA GPU.")
    if threads:
        torch.set_num_threads(threads)
    options = {"device": device, "threads": threads, "tiny": amounts == TINY, "amounts": asdict(amounts),
               "lessons": [lesson.name for lesson in lessons], "out": str(out)}
    start = time.perf_counter()
    results = Bench(device, amounts, lessons, out, threads).run()
    table = markdown_table(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(f"# `course bench` on {device_name(device)}\n\n{table}\n", encoding="utf-8")
    report = {"machine": machine_info(device), "options": options, "stages": results,
              "total_seconds": three_figures(time.perf_counter() - start)}
    (out / "bench.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    failed = [stage["stage"] for stage in results if stage["status"] == "failed"]
    print(f"\n{table}\n\n{len(results)} stages in {shown(report['total_seconds'] / 60)} min"
          + (f"; FAILED: {', '.join(failed)}" if failed else "")
          + f"\nTable: {out / 'bench.md'}\nJSON:  {out / 'bench.json'}")
    return not failed
