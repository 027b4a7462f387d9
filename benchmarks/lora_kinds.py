"""LoRA against full fine-tuning and the head alone, on lesson 09's task
(MiniLM tells comedy, history and tragedy apart), by lesson 09's protocol;
lesson 14 shows the results.

    .venv/bin/python benchmarks/lora_kinds.py [--threads 2] [--out FILE]

Every method (`finetuning.adapted_kind_classifier`) fine-tunes MiniLM with lesson 09's loop (`finetuning.fine_tune`:
48 steps of 32 passages of a balanced sample of the training plays, AdamW,
10% linear warm-up then linear decay, clipping at 1) and trains the new
head (BERT's pooler and the 3-way classifier) whole; they differ in what
else trains:

- `head`: nothing else: the encoder is frozen;
- `lora-r1`, `lora-r8`, `lora-r64`: a LoRA update (`course_utils.lora`) of
  rank r on the query and value projections of all 6 layers, as LoRA's
  paper adapted W_Q and W_V, with alpha = 2r (the update scaled by 2);
- `full`: every weight.

1. The learning rate of each method is chosen on the validation plays (600
   passages, 200 of each kind; seed 0) from two candidates; the test plays
   are not read.
2. Each method, at its chosen rate, is then run with seeds 0, 1 and 2 (the
   sample's order, the head's and A's first weights) and scored once on
   lesson 09's test sample (600 passages, 200 of each kind).

Also recorded per method: the numbers the optimizer updates, AdamW's state
in bytes (two float32 moments per trainable number, and a step count per
tensor); the median seconds of a training step are printed, not stored
(lesson 14 times its own steps). Writes a JSON file
(default course_utils/results/lora_kinds.json).
"""

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

sys.path.insert(0, str(Path(__file__).resolve().parent))
from finetune_kinds import BATCH_SIZE, accuracy, tokenized  # noqa: E402  lesson 09's helpers

from course_utils import data  # noqa: E402
from course_utils.finetuning import KINDS, adapted_kind_classifier, balanced_sample, fine_tune, kind_dataset  # noqa: E402
from course_utils.lora import trainable_parameters  # noqa: E402

STEPS = 48
CANDIDATE_RATES = {"head": (1e-3, 4e-3), "lora-r1": (5e-4, 2e-3), "lora-r8": (5e-4, 2e-3),
                   "lora-r64": (5e-4, 2e-3), "full": (1e-4, 4e-4)}
SEEDS = (0, 1, 2)
OUT = Path(__file__).resolve().parents[1] / "course_utils" / "results" / "lora_kinds.json"


class StepTimer:
    """Wall seconds between the optimizer's steps (the first one left out: it allocates AdamW's state)."""

    def __init__(self):
        self.times, self.seconds = [], []
        self.handle = register_optimizer_step_post_hook(lambda *_: self.tick())

    def tick(self):
        self.times.append(time.perf_counter())
        if len(self.times) > 2:
            self.seconds.append(self.times[-1] - self.times[-2])

    def close(self):
        self.handle.remove()


def run(tokenizer, split, method, rate, seed, scored):
    from transformers import DataCollatorWithPadding

    rows = balanced_sample(split["train"], per_kind=STEPS * BATCH_SIZE // len(KINDS) + 1, seed=seed)
    model = adapted_kind_classifier(method, seed)
    timer = StepTimer()
    try:
        fine_tune(model, tokenized(tokenizer, rows), DataCollatorWithPadding(tokenizer), STEPS, BATCH_SIZE, rate,
                  warmup_steps=STEPS // 10)
    finally:
        timer.close()
    trainable = trainable_parameters(model)
    tensors = sum(1 for p in model.parameters() if p.requires_grad)
    print(f"  {method}: {statistics.median(timer.seconds):.2f} s a step", flush=True)  # printed, not stored: lesson 14 times its own
    return {"trainable": trainable, "adamw_state_bytes": 2 * 4 * trainable + 4 * tensors,
            **{name: accuracy(model, tokenizer, sample)[1].int().tolist() for name, sample in scored.items()}}


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--resume", type=Path, help="an earlier run's file: its methods are kept, not run again")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(data.encoder_path())
    split = kind_dataset()
    validation = balanced_sample(split["validation"], per_kind=200, seed=2)
    test = balanced_sample(split["test"], per_kind=200, seed=1)  # lesson 09's test sample
    results = {"command": "python " + " ".join(sys.argv), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "cpu": platform.processor() or platform.machine(), "threads": args.threads, "steps": STEPS,
               "batch_size": BATCH_SIZE, "validation_labels": [row["label"] for row in validation],
               "test_labels": [row["label"] for row in test], "test_plays": [row["play"] for row in test],
               "choice": {}, "test": {}}
    if args.resume:
        earlier = json.loads(args.resume.read_text())
        results["command"] += f" (resuming {earlier['command']} of {earlier['date']})"
        results["choice"], results["test"] = earlier["choice"], earlier["test"]
    for method, rates in CANDIDATE_RATES.items():
        if method in results["choice"]:
            continue
        scores = {}
        for rate in rates:
            outcome = run(tokenizer, split, method, rate, 0, {"validation": validation})
            scores[rate] = sum(outcome["validation"]) / len(validation)
            print(f"{method} lr {rate:g}: validation {scores[rate]:.3f}", flush=True)
        results["choice"][method] = {"validation": {f"{rate:g}": score for rate, score in scores.items()},
                                     "rate": max(rates, key=scores.get)}
    for method in CANDIDATE_RATES:
        if method in results["test"]:
            continue
        rate = results["choice"][method]["rate"]
        results["test"][method] = runs = {}
        for seed in SEEDS:
            runs[str(seed)] = outcome = run(tokenizer, split, method, rate, seed, {"test": test})
            print(f"{method} lr {rate:g} seed {seed}: test {sum(outcome['test']) / len(test):.3f}, "
                  f"{outcome['trainable']:,} trainable", flush=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
