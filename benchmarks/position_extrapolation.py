"""Lesson 05's extrapolation test over several seeds: how much do its numbers move?

    .venv/bin/python benchmarks/position_extrapolation.py            # seeds 0, 1, 2
    .venv/bin/python benchmarks/position_extrapolation.py --seeds 0 1 2 3 4

The lesson trains four tiny models (no positions, sinusoidal, learned,
rotary) once, with seed 0, to predict the previous token at length 32, and
tests them at lengths 32 and 64. This runs the same training with other seeds
(the model's initialisation and its training sequences; the test sequences
stay those of the lesson) and prints each model's accuracy per seed and the
range, which the lesson's prose and assertions are sized by.
"""

import argparse

import torch

from course_utils import positional

VOCAB, TRAIN_LENGTH, TEST_LENGTH, STEPS = 16, 32, 64, 400  # as in lesson 05


@torch.no_grad()
def accuracies(model, ids, targets) -> tuple:
    """(length 32, length 64 positions 1-31, length 64 positions 32-63); None where it cannot run."""
    def accuracy(length, positions):
        return (model(ids[:, :length]).argmax(-1)[:, positions] == targets[:, positions]).float().mean().item()

    at_32 = accuracy(TRAIN_LENGTH, slice(1, TRAIN_LENGTH))
    try:
        return at_32, accuracy(TEST_LENGTH, slice(1, TRAIN_LENGTH)), accuracy(TEST_LENGTH, slice(TRAIN_LENGTH, TEST_LENGTH))
    except ValueError:  # the learned table has no row 32
        return at_32, None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    seeds = parser.parse_args().seeds
    torch.set_num_threads(1)
    ids, targets = positional.previous_token_batch(500, TEST_LENGTH, VOCAB, torch.Generator().manual_seed(99))
    results = {kind: [accuracies(positional.train_previous_token(kind, seed, STEPS, VOCAB, TRAIN_LENGTH), ids, targets)
                      for seed in seeds] for kind in positional.POSITION_KINDS}
    print(f"seeds {seeds}; accuracy per seed, then the range")
    for column, name in enumerate(["length 32", "length 64, positions 1-31", "length 64, positions 32-63"]):
        print(f"\n{name}")
        for kind, rows in results.items():
            values = [row[column] for row in rows]
            if None in values:
                print(f"  {kind:<11} cannot run")
                continue
            shown = " ".join(f"{value:.0%}" for value in values)
            print(f"  {kind:<11} {shown}   range {min(values):.0%}-{max(values):.0%}")


if __name__ == "__main__":
    main()
