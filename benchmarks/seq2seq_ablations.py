"""Lesson 07's recipe, and the recipe with one choice changed at a time.

    .venv/bin/python benchmarks/seq2seq_ablations.py [VARIANT ...]

Trains the word-reversal transformer of lesson 07 as the lesson does (same
data, seed, steps) and reports held-out exact match for each variant: the
recipe itself, no cool-down at the end of the schedule, no label smoothing,
nn.Embedding's default initialisation (N(0, 1), then × √d_model), training
lines drawn uniformly instead of in proportion to their length, and two
decoder layers instead of one; then the lesson's LSTM without attention
trained four times longer than the lesson can afford. The lesson quotes
these numbers; this script is how to reproduce them (about 40 s a variant on
the 2-core CPU, with one thread).

The default initialisation does two things at once: the scaled word vectors
drown the positions (about 11 times their size), and the tied output layer
h · Eᵀ gives logits about 8 times too large, so that the first loss is
around 60 instead of ln 1004 ≈ 6.9. Two more variants keep N(0, 1) and undo
one of the two: the logits multiplied by d_model^-0.5, or the positions by
√d_model = 8; a third undoes both.
"""

import dataclasses
import json
import random
import sys
import time

import torch

from course_utils import seq2seq
from course_utils.data import shakespeare_splits
from course_utils.training import linear_warmup, train, transformer_schedule, with_cooldown
from course_utils.transformer import TransformerConfig

# The lesson's recipe.
VOCAB_SIZE, BATCH_SIZE, STEPS, WARMUP, LR_FACTOR, LABEL_SMOOTHING, TEST_LINES = 1000, 64, 1000, 200, 0.5, 0.1, 2000
CONFIG = TransformerConfig(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=2, num_decoder_layers=1,
                           dropout=0.0, norm="pre")

VARIANTS = {
    "recipe": {},
    "no cool-down": {"cooldown": 0.0},
    "no label smoothing": {"label_smoothing": 0.0},
    "default embedding init": {"default_init": True},
    "default init, logits × d_model^-0.5": {"default_init": True, "logit_scale": CONFIG.d_model ** -0.5},
    "default init, positions × √d_model": {"default_init": True, "position_scale": CONFIG.d_model ** 0.5},
    "default init, both undone": {"default_init": True, "logit_scale": CONFIG.d_model ** -0.5,
                                  "position_scale": CONFIG.d_model ** 0.5},
    "lines drawn uniformly, not by length": {"by_length": False},
    "two decoder layers": {"config": dataclasses.replace(CONFIG, num_decoder_layers=2)},
}
# The lesson trains its LSTM without attention for the transformer's 1,000
# steps; how far does it get with four times as many?
LSTM_VARIANTS = {"LSTM, no attention, 4,000 steps": 4 * STEPS}


def task():
    train_text, held_out_text = shakespeare_splits()
    lines = seq2seq.verse_lines(train_text)
    vocab = seq2seq.Vocabulary(lines, VOCAB_SIZE)
    test = random.Random(0).sample(seq2seq.reversal_pairs(seq2seq.verse_lines(held_out_text), vocab), TEST_LINES)
    return vocab, seq2seq.reversal_pairs(lines, vocab), test


class ScaledLogits(seq2seq.TransformerSeq2Seq):
    """The lesson's model with its output logits multiplied by `logit_scale`."""

    def __init__(self, vocab_size: int, config: TransformerConfig, logit_scale: float):
        super().__init__(vocab_size, config)
        self.logit_scale = logit_scale

    def decode(self, target, memory, memory_mask, need_weights=False):
        logits, cross_attention = super().decode(target, memory, memory_mask, need_weights)
        return logits * self.logit_scale, cross_attention


def run(vocab, pairs, test, config=CONFIG, cooldown=0.3, label_smoothing=LABEL_SMOOTHING, default_init=False,
        by_length=True, logit_scale=1.0, position_scale=1.0) -> dict:
    torch.manual_seed(0)
    model = ScaledLogits(len(vocab), config, logit_scale) if logit_scale != 1.0 else \
        seq2seq.TransformerSeq2Seq(len(vocab), config)
    if default_init:
        torch.nn.init.normal_(model.embedding.weight, std=1.0)
    model.positions.mul_(position_scale)
    schedule = transformer_schedule(config.d_model, WARMUP, LR_FACTOR)
    optimizer = torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9)
    start = time.perf_counter()
    losses = train(model, seq2seq.random_batches(pairs, BATCH_SIZE, by_length=by_length),
                   lambda m, batch: seq2seq.loss_of(m, batch, label_smoothing), optimizer, STEPS,
                   lr_at=with_cooldown(schedule, STEPS, cooldown) if cooldown else schedule, progress=False)
    seconds = time.perf_counter() - start
    accuracy, _ = seq2seq.exact_match(model, test)
    plateau = next((step for step, loss in enumerate(losses, 1) if loss < 4.0), None)  # first step below 4 nats
    return {"held-out exact match": round(accuracy, 4), "first loss": round(losses[0], 2),
            "loss at step 500": round(losses[499], 2), "first step below 4": plateau,
            "final loss": round(sum(losses[-50:]) / 50, 3), "training seconds": round(seconds, 1)}


def run_lstm(vocab, pairs, test, steps: int) -> dict:
    """The lesson's LSTM without attention (hidden size 50), built and trained
    as the lesson builds and trains it: after the seed, the lesson builds the
    LSTM with attention first, so this one starts from the same weights."""
    torch.manual_seed(0)
    seq2seq.LSTMSeq2Seq(len(vocab), CONFIG.d_model, 45, attention=True)  # drawn first in the lesson
    model = seq2seq.LSTMSeq2Seq(len(vocab), CONFIG.d_model, 50, attention=False)
    optimizer = torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9)
    start = time.perf_counter()
    train(model, seq2seq.random_batches(pairs, BATCH_SIZE), lambda m, batch: seq2seq.loss_of(m, batch, LABEL_SMOOTHING),
          optimizer, steps, lr_at=with_cooldown(linear_warmup(3e-3, 100), steps, 0.3), clip_grad_norm=1.0, progress=False)
    seconds = time.perf_counter() - start
    accuracy, by_length = seq2seq.exact_match(model, test)
    return {"held-out exact match": round(accuracy, 4), "by length": {n: round(a, 3) for n, a in by_length.items()},
            "training seconds": round(seconds, 1)}


def main(names: list[str]) -> None:
    vocab, pairs, test = task()
    for name in names or [*VARIANTS, *LSTM_VARIANTS]:
        result = run_lstm(vocab, pairs, test, LSTM_VARIANTS[name]) if name in LSTM_VARIANTS else \
            run(vocab, pairs, test, **VARIANTS[name])
        print(json.dumps({name: result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
