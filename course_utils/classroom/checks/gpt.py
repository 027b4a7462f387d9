"""Checkers for the exercise of lesson 10: nucleus (top-p) filtering.

The expected values come from `course_utils.generation.top_p_filter`: keep the
smallest set of most likely tokens whose probabilities reach p, the token
that crosses p included, and set every other logit to -inf. tests/test_sampling.py
checks that definition on its own.
"""

import torch

from course_utils.generation import top_p_filter
from . import Checker

# Probabilities chosen so that no running sum lands on p: sorted, they are
# 0.40, 0.25, 0.15, 0.10, 0.06, 0.04 (running sums 0.40, 0.65, 0.80, 0.90, 0.96, 1).
ROWS = torch.tensor([[0.10, 0.40, 0.04, 0.25, 0.06, 0.15],
                     [0.25, 0.06, 0.15, 0.04, 0.40, 0.10]]).log()
CASES = [(0.6, "keeps the 2 most likely: 0.40 + 0.25 = 0.65 is the first sum to reach 0.6"),
         (0.3, "keeps only the most likely: 0.40 alone reaches 0.3"),
         (0.85, "keeps the 4 most likely: 0.90 is the first sum to reach 0.85")]


def _kept_if(logits: torch.Tensor, keep_sorted) -> torch.Tensor:
    """The kept tokens (bool, like logits) when keep_sorted(sorted probabilities) chooses them in sorted order."""
    probabilities, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted(probabilities))


def _slips(logits: torch.Tensor, p: float) -> dict[str, torch.Tensor]:
    """What each classic slip keeps, as a bool mask over the vocabulary."""
    before = lambda probs: probs.cumsum(-1) - probs  # the mass before each token
    ascending, order_up = logits.softmax(-1).sort(dim=-1)
    return {
        "dropping the token that crosses p (keep it: the kept mass must reach p)":
            _kept_if(logits, lambda probs: probs.cumsum(-1) < p),
        "sorting from least to most likely (descending=True puts the most likely first)":
            torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order_up, ascending.cumsum(-1) - ascending < p),
        "keeping the mask in sorted order (map it back to the vocabulary's order with the sort's indices)":
            (before(logits.softmax(-1).sort(dim=-1, descending=True).values) < p),
        "running sums of the logits instead of the probabilities":
            _kept_if(logits, lambda probs: before(logits.sort(dim=-1, descending=True).values) < p),
    }


def _show(kept: torch.Tensor) -> str:
    return "; ".join(f"row {i}: tokens {row.nonzero().flatten().tolist()}" for i, row in enumerate(kept))


def check_top_p_filter(top_p_filter_answer) -> None:
    """Check a learner's `top_p_filter(logits, p)` on two rows of six tokens
    and three values of p, then on p = 1 and on a peaked row."""
    with Checker("10.top_p_filter", references=[top_p_filter]) as check:
        for p, what in CASES:
            out = check.call(top_p_filter_answer, ROWS, p)
            check.require(f"p = {p}: returns logits of the same shape", isinstance(out, torch.Tensor) and
                          out.shape == ROWS.shape, expected=f"a tensor of shape {tuple(ROWS.shape)}",
                          actual=f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
                          hint="return the logits with the dropped tokens set to -inf, one row per row")
            if not check.that(f"p = {p}: the input logits are left as they were", not check.wrote_into,
                              "logits unchanged", "your function wrote into its input",
                              "build a new tensor (masked_fill, not masked_fill_)"):
                return
            expected = top_p_filter(ROWS, p)
            kept, wanted = torch.isfinite(out), torch.isfinite(expected)
            if torch.equal(kept, wanted):
                check.close(f"p = {p}: the kept tokens keep their logits, unchanged", out[kept], ROWS[kept],
                            hint="change nothing but the dropped tokens: the softmax renormalises the rest")
                if check.results[-1][0]:
                    check.that(f"p = {p}: {what}", True)
                continue
            named = [slip for slip, slip_kept in _slips(ROWS, p).items() if torch.equal(kept, slip_kept)]
            if torch.equal(kept, torch.ones_like(kept)) and out.min() >= 0:
                named = ["returning probabilities (dropped ones at 0) instead of logits at -inf"]
            check.fail(f"p = {p}: {what}", expected=_show(wanted), actual=_show(kept),
                       hint=f"your tokens are exactly what {named[0]} gives" if named else
                       "sort the probabilities from most likely down, and keep each token whose mass before it is still below p")
        everything = check.call(top_p_filter_answer, ROWS, 1.0)
        check.that("p = 1 keeps every token", isinstance(everything, torch.Tensor) and bool(torch.isfinite(everything).all()),
                   "all six tokens", "some set to -inf", "at p = 1 the sum reaches p only with the last token")
        peaked = torch.tensor([[9.0, 0.0, 0.0, 0.0]])
        alone = check.call(top_p_filter_answer, peaked, 0.9)
        check.that("a token with 99.9% of the mass is kept alone at p = 0.9",
                   isinstance(alone, torch.Tensor) and torch.isfinite(alone).tolist() == [[True, False, False, False]],
                   "only token 0 kept", repr(alone)[:80], "the nucleus shrinks when the model is sure")
