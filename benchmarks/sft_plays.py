"""How lesson 14's supervised fine-tuning was set, and how much its result
moves from run to run; and what the pretraining buys.

    .venv/bin/python benchmarks/sft_plays.py [--threads 2] [--out FILE]

Lesson 10's GPT, pretrained by `course train gpt --recipe short` (the base
of lesson 14), grows the chat tokens and is fine-tuned on the instruction
data of the plays (`chat.instruction_dataset`: shout a line, give its last
word, tell its kind of play), batches of 32, the loss on the replies only
(`chat.fine_tune_on_replies`), then scored by exact match of its greedy
replies.

1. `choice`: each (steps, peak learning rate) fine-tunes on the training
   plays and is scored on the validation plays (150 requests of each
   task); the test plays are not read.
2. `test`: the setting whose replies were right most often on the
   validation plays (all tasks together), with seeds 0-4 (the order and draw of the
   training rows), scored on the test plays as lesson 14 scores them (150
   of each task, seed 0), which sizes the lesson's tolerance; and the same
   fine-tuning from a model that was never pretrained (GPT-2's random
   initialisation, seeds 0-2): the control.

Writes a JSON file (default course_utils/results/sft_plays.json).
"""

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from course_utils import chat
from course_utils.classroom.train import trained_decoder
from course_utils.gpt import GPT, SHORT_RECIPE, character_data

BATCH_SIZE = 32
SETTINGS = ((400, 3e-3), (800, 1e-3), (800, 3e-3), (800, 5e-3))
OUT = Path(__file__).resolve().parents[1] / "course_utils" / "results" / "sft_plays.json"


def run(base, tokenizer, train, scored, steps, rate, seed, pretrained=True):
    torch.manual_seed(seed)
    model = chat.grow_vocabulary(base, len(tokenizer))
    if not pretrained:
        model = GPT(model.config)  # GPT-2's initialisation, drawn with the seed
    started = time.perf_counter()
    losses = chat.fine_tune_on_replies(model, chat.sft_batches(tokenizer, train, BATCH_SIZE), steps, rate, progress=False)
    seconds = time.perf_counter() - started
    print(f"  {steps} steps in {seconds:.0f} s", flush=True)  # printed, not stored: lesson 14 times its own run
    answered = chat.scored_replies(model, tokenizer, scored)
    outcome = {"last_loss": losses[-1], "last_100_mean_loss": sum(losses[-100:]) / 100, "tasks": {}}
    for task in chat.TASKS:
        chosen = [row for row in answered if row["task"] == task]
        outcome["tasks"][task] = {"right": sum(row["right"] for row in chosen),
                                  "in_form": sum(row["in_form"] for row in chosen), "of": len(chosen)}
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    characters = character_data()[0]
    tokenizer = chat.chat_tokenizer(characters)
    base = trained_decoder("gpt", SHORT_RECIPE, progress=False)
    alphabet = set(characters.get_vocab())
    held_out = chat.instruction_dataset({"validation": 150, "test": 150}, alphabet=alphabet)
    results = {"command": "python " + " ".join(sys.argv), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "cpu": platform.processor() or platform.machine(), "threads": args.threads, "batch_size": BATCH_SIZE,
               "choice": [], "test": {"pretrained": {}, "from_scratch": {}}}

    def report(label, outcome):
        print(label + ": " + ", ".join(f"{task} {score['right']}/{score['of']} ({score['in_form']} in form)"
                                       for task, score in outcome["tasks"].items()), flush=True)

    for steps, rate in SETTINGS:
        train = chat.instruction_dataset({"train": 3000}, seed=0, alphabet=alphabet)["train"]
        outcome = run(base, tokenizer, train, held_out["validation"], steps, rate, 0)
        results["choice"].append({"steps": steps, "peak_lr": rate, **outcome})
        report(f"validation, {steps} steps, peak lr {rate:g}", outcome)
    best = max(results["choice"], key=lambda tried: sum(score["right"] for score in tried["tasks"].values()))
    steps, rate = results["chosen"] = best["steps"], best["peak_lr"]
    print(f"chosen on the validation plays: {steps} steps, peak lr {rate:g}", flush=True)
    for pretrained, seeds in ((True, range(5)), (False, range(3))):
        for seed in seeds:
            train = chat.instruction_dataset({"train": 3000}, seed=seed, alphabet=alphabet)["train"]
            outcome = run(base, tokenizer, train, held_out["test"], steps, rate, seed, pretrained)
            results["test"]["pretrained" if pretrained else "from_scratch"][str(seed)] = outcome
            report(f"test, {'pretrained' if pretrained else 'from scratch'}, seed {seed}", outcome)
            args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
