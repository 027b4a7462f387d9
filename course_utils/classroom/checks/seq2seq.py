"""Checkers for the exercises of the trained encoder-decoder (lesson 07)."""

import math
import numbers

import torch

from course_utils.training import transformer_schedule
from . import Checker

# The paper's base model, then a small one; steps on both sides of the warm-up
# end (and at it), so that the climb, the peak and the decay are all compared.
_SETTINGS = [(512, 4000), (64, 200)]
_STEPS = [1, 2, 10, 100, 199, 200, 201, 1000, 3999, 4000, 4001, 20000, 100000]

_HINT = "lr = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5), steps counted from 1"


def _slips(d_model: int, warmup: int) -> dict[str, callable]:
    """The rate each classic slip gives, keyed by what went wrong."""
    def paper(step, scale=d_model ** -0.5, decay=-0.5, climb=-1.5, pick=min):
        return scale * pick(step ** decay, step * warmup ** climb)

    return {
        "max instead of min (the larger of the two terms, not the smaller)": lambda s: paper(s, pick=max),
        "warmup_steps^-0.5 instead of warmup_steps^-1.5 in the climb": lambda s: paper(s, climb=-0.5),
        "d_model^0.5 instead of d_model^-0.5": lambda s: paper(s, scale=d_model ** 0.5),
        "leaving out the d_model^-0.5 factor": lambda s: paper(s, scale=1.0),
        "step^0.5 instead of step^-0.5 in the decay": lambda s: paper(s, decay=0.5),
        "counting steps from 0 (computing the rate of step + 1)": lambda s: paper(s + 1),
    }


def check_transformer_lr(transformer_lr) -> None:
    """Check a learner's `transformer_lr(step, d_model, warmup_steps)` against
    course_utils.training.transformer_schedule."""
    with Checker("07.transformer_lr", references=[transformer_schedule]) as check:
        rates = {setting: [check.call(transformer_lr, step, *setting) for step in _STEPS] for setting in _SETTINGS}
        kind = next((type(rate).__name__ for row in rates.values() for rate in row if not _is_number(rate)), None)
        check.require("returns one number per step", kind is None, expected="a float", actual=kind,
                      hint="return a plain number (a float, or a tensor with one element)")
        for (d_model, warmup), row in rates.items():
            reference = transformer_schedule(d_model, warmup)
            actual = torch.tensor([float(rate) for rate in row], dtype=torch.float64)
            expected = torch.tensor([reference(step) for step in _STEPS], dtype=torch.float64)
            slips = {name: torch.tensor([slip(step) for step in _STEPS], dtype=torch.float64)
                     for name, slip in _slips(d_model, warmup).items()}
            check.close(f"rates for d_model={d_model}, warmup_steps={warmup} at steps {_STEPS[0]} to {_STEPS[-1]}",
                        actual, expected, atol=0, rtol=1e-6, hint=_HINT, mistakes=slips)
        rates = {step: float(check.call(transformer_lr, step, 64, 200)) for step in range(1, 401)}
        peak = max(rates, key=rates.get)
        check.that("the rate peaks at step = warmup_steps", peak == 200, expected="step 200 (warmup_steps=200)",
                   actual=f"step {peak}", hint="the two terms of the min are equal exactly when step = warmup_steps")


def _is_number(value) -> bool:
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
