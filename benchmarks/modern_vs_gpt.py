"""Lesson 12's Llama-style decoder against lesson 10's GPT: the same characters, recipe and budget, over five seeds.

    .venv/bin/python benchmarks/modern_vs_gpt.py --threads 2                 # the comparison, results file written
    .venv/bin/python benchmarks/modern_vs_gpt.py --steps 20 --seeds 0 --output /tmp/smoke.json   # a smoke test
    ATEN_CPU_CAPABILITY=default .venv/bin/python benchmarks/modern_vs_gpt.py --models modern --seeds 0 \\
        --threads 1 --output /tmp/modern_default.json                         # seed 0 on another kernel / thread count
    .venv/bin/python benchmarks/modern_vs_gpt.py --threads 1 --resume /tmp/earlier.json   # keep earlier runs, train the rest

Each run's record holds its thread count; the two models of a seed always
run with the same one. Results from the same thread count and kernel are
bit-identical at 1 and 2 threads on the AVX-512 machine measured (seed 0).

The two models (`gpt.GPT(GPTConfig())`, 809,856 weights, and
`modern.ModernDecoder(ModernConfig())`, 804,224: RMSNorm, rotary positions,
grouped-query attention with 2 key-value heads, SwiGLU, an untied head) train
on `gpt.character_data()` (the first 1,115,394 characters of the course's
text, split 90/10) with `gpt.SHORT_RECIPE` (1,200 steps of batch 12 × 64
characters, AdamW, peak learning rate 5e-3) by `gpt.train_gpt`, as lesson 10
trains its GPT.

For each seed, `torch.manual_seed(seed)` before building each model and the
recipe's seed set to the same seed, so the two models of a seed draw the same
training batches and the same held-out evaluation windows: a paired design.
The comparison is the per-seed difference (modern - GPT), with its mean,
standard deviation and a 95% Student t-interval over the seeds.

The score is bits per character on the WHOLE validation split (111,540
characters), not on sampled windows: the split is cut into non-overlapping
windows of 64 inputs (the context of both models), each predicting the 64
characters that follow its inputs one by one (the last window is shorter), and
the mean cross-entropy over every predicted character is divided by ln 2.
Every character but the first is predicted exactly once; a character at the
start of a window is predicted with no context and one at its end with 63
characters, 31.5 on average, the same for both models. A sliding evaluation
(each character with a full 63 characters of context) would give lower
figures for both; this one is simple and identical for the two.

Alongside: the training-time losses of `train_gpt` (its last evaluation on
240 sampled windows of each split), the training loss every 25 steps, the wall
time of each training run (evaluations included), and a separate timing of a
training step: both models built afresh, 10 warm-up steps each, then
`--timing-steps` steps alternating one of each, the median of each model's.
And the 80 characters each model writes at seed 0 from "ROMEO:\\n" at
temperature 0.8 (`gpt.generate`, `torch.Generator().manual_seed(0)`).

The results file's `seed0_other_kernels` records seed 0 of the modern model
trained again with ATEN_CPU_CAPABILITY=default (the side run in the usage
above): how far kernels move the number lesson 12 prints, its tolerance.

No weights are saved.
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from course_utils.gpt import (GPT, SHORT_RECIPE, GPTConfig, bits_per_character, character_data, generate,
                              next_token_loss, train_gpt)
from course_utils.classroom.bench import cpu_name
from course_utils.modern import ModernConfig, ModernDecoder, parameter_count
from course_utils.tokenization import encode_chars
from course_utils.training import train

RESULTS = Path(__file__).resolve().parent.parent / "course_utils" / "results" / "modern_vs_gpt.json"
MODELS = {"gpt": lambda: GPT(GPTConfig()), "modern": lambda: ModernDecoder(ModernConfig())}
PROMPT = "ROMEO:\n"


def sample_text(model, tokenizer) -> str:
    ids = generate(model, encode_chars(tokenizer, PROMPT)[None], 80, temperature=0.8,
                   generator=torch.Generator().manual_seed(0))
    return tokenizer.decode(ids[0].tolist())


def time_steps(names: list[str], train_ids: torch.Tensor, steps: int, warmup: int = 10) -> dict:
    """ms per training step of each model, built afresh (seed 0): `warmup`
    steps each, then `steps` steps alternating one step of each model."""
    recipe = SHORT_RECIPE
    setups = {}
    for name in names:
        torch.manual_seed(0)
        model = MODELS[name]()
        setups[name] = (model, recipe.optimizer(model))

    def one_step(name: str, step: int) -> float:
        model, optimizer = setups[name]
        start = time.perf_counter()
        train(model, lambda s: recipe.batch_at(s, train_ids, model.config.context), next_token_loss, optimizer,
              step, recipe.lr_at(), recipe.clip_grad_norm, progress=False, first_step=step)
        return time.perf_counter() - start

    for name in names:
        for step in range(1, warmup + 1):
            one_step(name, step)
    times = {name: [] for name in names}
    for step in range(warmup + 1, warmup + steps + 1):
        for name in names:
            times[name].append(one_step(name, step))
    return {name: {"median_ms": statistics.median(t) * 1e3, "mean_ms": statistics.fmean(t) * 1e3,
                   "min_ms": min(t) * 1e3, "max_ms": max(t) * 1e3, "steps": len(t)} for name, t in times.items()}


def paired_summary(differences: list[float]) -> dict:
    n = len(differences)
    mean = statistics.fmean(differences)
    summary = {"per_seed": differences, "mean": mean, "n": n}
    if n >= 2:
        from scipy.stats import t

        sd = statistics.stdev(differences)
        half = t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        summary.update(sd=sd, t_interval_95=[mean - half, mean + half], degrees_of_freedom=n - 1)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--steps", type=int, default=SHORT_RECIPE.steps, help="training steps (the recipe's 1,200)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: PyTorch's choice)")
    parser.add_argument("--timing-steps", type=int, default=50, help="alternating steps of the step timing (0: none)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--resume", type=Path, help="a results file of this script: keep its runs, train the others")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer, train_ids, validation_ids = character_data()
    results = {
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "threads": torch.get_num_threads(),
        "cpu": cpu_name(), "cores": os.cpu_count(),
        "recipe": {**dataclasses.asdict(dataclasses.replace(SHORT_RECIPE, steps=args.steps)), "seed": "per run"},
        "validation": {"characters": len(validation_ids), "predicted": len(validation_ids) - 1, "window": 64,
                       "method": "non-overlapping windows of 64 inputs, mean cross-entropy over every predicted "
                                 "character / ln 2"},
        "parameters": {name: parameter_count(MODELS[name]()) for name in args.models},
        "sample_prompt": PROMPT, "runs": {name: {} for name in args.models},
    }
    if args.resume and args.resume.exists():
        earlier = json.loads(args.resume.read_text())
        results["resumed_from"] = [earlier["command"], *earlier.get("resumed_from", [])]
        for name in args.models:
            results["runs"][name].update({seed: {"threads": earlier["threads"], "cpu_capability": earlier["cpu_capability"],
                                                 **record}
                                          for seed, record in earlier["runs"].get(name, {}).items()
                                          if int(seed) in args.seeds})

    def write() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{results['cpu_capability']}, {results['cpu']}", flush=True)
    for seed in args.seeds:
        recipe = dataclasses.replace(SHORT_RECIPE, seed=seed, steps=args.steps)
        for name in args.models:
            if str(seed) in results["runs"][name]:
                continue
            start = time.perf_counter()
            torch.manual_seed(seed)
            model = MODELS[name]()
            run = train_gpt(model, train_ids, validation_ids, recipe, progress=False)
            seconds = time.perf_counter() - start
            bits = bits_per_character(model, validation_ids)
            _, final_train, final_validation = run.evaluations[-1]
            record = {"validation_bits_per_character": bits, "validation_nats": bits * math.log(2),
                      "final_train_loss": final_train, "final_validation_loss": final_validation,
                      "evaluations": run.evaluations, "train_seconds": seconds,
                      "threads": torch.get_num_threads(), "cpu_capability": results["cpu_capability"],
                      "train_loss_every_25": [[step, loss] for step, loss in enumerate(run.losses, 1)
                                              if step % 25 == 0 or step == 1]}
            if seed == 0:
                record["sample"] = sample_text(model, tokenizer)
            results["runs"][name][str(seed)] = record
            print(f"seed {seed} {name:<6} {seconds:6.1f} s  train {final_train:.3f}  validation {final_validation:.3f}"
                  f"  whole split {record['validation_nats']:.4f} nats = {record['validation_bits_per_character']:.4f} bits/char", flush=True)
            write()

    if set(args.models) == set(MODELS):
        seeds = [str(s) for s in args.seeds]
        runs = results["runs"]
        results["paired_modern_minus_gpt"] = {
            key: paired_summary([runs["modern"][s][key] - runs["gpt"][s][key] for s in seeds])
            for key in ("validation_bits_per_character", "final_validation_loss")}
        results["paired_modern_minus_gpt"]["seeds"] = args.seeds
        for name in MODELS:
            bits = [runs[name][s]["validation_bits_per_character"] for s in seeds]
            results.setdefault("bits_per_character_mean", {})[name] = statistics.fmean(bits)
            if len(bits) > 1:
                results.setdefault("bits_per_character_sd", {})[name] = statistics.stdev(bits)
    if args.timing_steps:
        results["ms_per_step"] = time_steps(args.models, train_ids, args.timing_steps)
        results["ms_per_step"]["method"] = (f"fresh models, 10 warm-up steps each, then {args.timing_steps} steps "
                                            f"alternating one of each model; no evaluations")
    for name in args.models:
        seconds = [r["train_seconds"] for r in results["runs"][name].values()]
        results.setdefault("train_seconds_median", {})[name] = statistics.median(seconds)
    write()
    print(json.dumps({k: results[k] for k in ("paired_modern_minus_gpt", "ms_per_step", "train_seconds_median")
                      if k in results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
