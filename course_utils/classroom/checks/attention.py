"""Checkers for the attention exercises: lesson 02 (`attention`) and lesson 03
(`causal_mask`, `masked_attention`).

The expected values come from the reviewed code in `course_utils.attention`.
Each classic slip (no 1/√d_k, softmax over the wrong axis, the mask ignored,
inverted or applied after the softmax, ...) is computed on the same inputs, so
that a wrong answer is named, not only shown to be wrong.
"""

import math
import warnings

import numpy as np
import torch

from course_utils.attention import causal_mask as reference_causal_mask
from course_utils.attention import padding_mask, scaled_dot_product_attention
from .. import remote
from . import Checker, seeded

NEG_INF = float("-inf")

# Hints say what is wrong and where to look; they never hand over the line of code.
_WEIGHTS_HINT = ("check the three steps of the weights in order: the scores of every query with every key, "
                 "their division by √d_k (d_k is the width of q), and a softmax over the keys (the last axis)")
_OUTPUT_HINT = "each query's output is the mix of the values v in the proportions of its row of weights: check that product"
_MASK_HINT = ("a forbidden key must get weight 0 while each row still sums to 1: look at where you apply the mask "
              "(on the scores or on the weights?) and at the value the forbidden entries get")
_NOTHING_HINT = ("find the queries whose row of the mask is all False, and make sure no NaN is ever computed for "
                 "them, not even on the way to a zero: the backward pass multiplies by every weight")
_K_DOT_T = ("k.T on a batched k (it reverses ALL the axes, (B, L, d) -> (d, L, B), where only the last two "
            "should swap, as transpose(-2, -1) does)")


def _random(seed: int, *shapes) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seeded(seed))
    return [torch.randn(*shape, generator=generator) for shape in shapes]


def _is_array(value) -> bool:
    return isinstance(value, (torch.Tensor, np.ndarray))


def _returns_a_pair(check: Checker, result, again: bool = False) -> tuple:
    """Stop unless the learner returned (output, weights); said once, on the first call."""
    is_pair = isinstance(result, (tuple, list)) and len(result) == 2
    if not (is_pair and again):
        check.require("returns a pair (output, weights)", is_pair, expected="a tuple (output, weights)",
                      actual=f"{type(result).__name__}" + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else ""),
                      hint="return two things, as a tuple: the output first, then the weights")
    return tuple(result)


def _k_dot_t_slip(attention, dims: int, *mask) -> tuple | None:
    """`k.T` on a batched k reverses every axis, and the product then raises on
    the checker's shapes, which would only say "it raised". On square inputs,
    (4, 4, 4) or (4, 4, 4, 4), it runs: if the learner's weights there equal
    the slip's, return (their weights, the right ones, the slip's), else None."""
    q, k, v = _random(4, *[(4,) * dims] * 3)
    scores = q @ k.permute(*reversed(range(dims))) / math.sqrt(4)
    if mask:
        scores = scores.masked_fill(~mask[0], NEG_INF)
    try:
        with warnings.catch_warnings():  # torch warns that .T on more than 2 dims is deprecated
            warnings.simplefilter("ignore")
            weights = torch.as_tensor(attention(q, k, v, *mask)[1]).detach().double()
    except Exception:  # any other bug: the checks below report it
        return None
    slip = scores.softmax(-1).double()
    if weights.shape != slip.shape or not torch.allclose(weights, slip, atol=1e-5, equal_nan=True):
        return None
    return weights, scaled_dot_product_attention(q, k, v, *mask)[1], slip


# --- lesson 02: attention(q, k, v) ------------------------------------------------

def _attention_mistakes(q, k, v) -> tuple[dict, dict]:
    """The weights and outputs of the classic slips, by name."""
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1)
    weights = {
        "no 1/√d_k scaling (softmax of q·kᵀ)": scores.softmax(-1),
        "dividing by d_k instead of √d_k": (scores / d_k).softmax(-1),
        "softmax over the wrong axis (dim=-2, the queries, instead of dim=-1, the keys)":
            (scores / math.sqrt(d_k)).softmax(-2),
        "no softmax (the scaled scores themselves)": scores / math.sqrt(d_k),
    }
    if q.dim() > 2:
        weights["softmax over the wrong axis (dim=0, the batch, instead of dim=-1, the keys)"] = \
            (scores / math.sqrt(d_k)).softmax(0)
    return weights, {mistake: w @ v for mistake, w in weights.items()}


def check_attention(attention) -> None:
    """Check a learner's `attention(q, k, v) -> (output, weights)` (lesson 02)."""
    with Checker("02.attention", references=[scaled_dot_product_attention]) as check:
        if (slip := _k_dot_t_slip(attention, 3)) is not None:
            weights, want_weights, wrong = slip
            check.close("a batch (4, 4, 4): weights", weights, want_weights, mistakes={_K_DOT_T: wrong})
            return
        # A batch of 2 sequences of 5 tokens, d_k = 8: the shape models use.
        q, k, v = _random(2, (2, 5, 8), (2, 5, 8), (2, 5, 8))
        output, weights = _returns_a_pair(check, check.call(attention, q, k, v))
        want_output, want_weights = scaled_dot_product_attention(q, k, v)
        swapped = _is_array(output) and _is_array(weights) and (
            tuple(output.shape), tuple(weights.shape)) == (tuple(want_weights.shape), tuple(want_output.shape))
        if swapped:  # said only when it happens: the shapes would otherwise hide the cause
            check.require("returns (output, weights), in that order", False, expected="(output, weights)",
                          actual="(weights, output): the pair is swapped",
                          hint="the output has the shape of v's rows (..., L_q, d_v), the weights (..., L_q, L_k): "
                               "look at the order of your return")
        wrong_weights, wrong_outputs = _attention_mistakes(q, k, v)
        check.close("weights = softmax(q·kᵀ / √d_k) over the keys, shape (2, 5, 5)", weights, want_weights,
                    mistakes=wrong_weights, hint=_WEIGHTS_HINT)
        if _is_array(weights) and tuple(weights.shape) == (2, 5, 5):
            sums = torch.as_tensor(weights).detach().cpu().double().sum(-1)
            check.that("each row of weights sums to 1", torch.allclose(sums, torch.ones_like(sums)),
                       expected="1.0000 in every row", actual="row sums " + ", ".join(f"{x:.4f}" for x in sums.flatten()[:4].tolist()) + ", ...",
                       hint="a row holds one query's weights over all the keys: look at which axis your softmax runs over")
        check.close("output = weights @ v, shape (2, 5, 8)", output, want_output,
                    mistakes=wrong_outputs, hint=_OUTPUT_HINT)

        # No batch, 3 queries and 4 keys, values wider than keys: nothing may
        # assume Lq == Lk or d_v == d_k, and the transpose must be of the last two axes.
        q, k, v = _random(3, (3, 6), (4, 6), (4, 10))
        output, weights = _returns_a_pair(check, check.call(attention, q, k, v), again=True)
        want_output, want_weights = scaled_dot_product_attention(q, k, v)
        wrong_weights, wrong_outputs = _attention_mistakes(q, k, v)
        check.close("no batch axis, 3 queries, 4 keys, d_v = 10: weights (3, 4)", weights, want_weights,
                    mistakes=wrong_weights, hint="transpose only the last two axes of k and read d_k from the last axis of q, "
                         "so that any number of leading axes works")
        check.close("... and output (3, 10)", output, want_output,
                    mistakes=wrong_outputs, hint=_OUTPUT_HINT)


# --- lesson 03: causal_mask(n) ------------------------------------------------------

def check_causal_mask(causal_mask) -> None:
    """Check a learner's `causal_mask(n)`: (n, n) bool, True where query i may see key j <= i."""
    with Checker("03.causal_mask", references=[reference_causal_mask]) as check:
        first = check.call(causal_mask, 4)
        check.require("returns a torch.Tensor", isinstance(first, torch.Tensor), expected="torch.Tensor",
                      actual=type(first).__name__, hint="build the (n, n) mask as a tensor, e.g. from torch.ones and a triangle function")
        for n in (4, 7, 1):
            want, ones = reference_causal_mask(n), torch.ones(n, n, dtype=torch.bool)
            mistakes = {
                "the mask inverted (True where attending is forbidden, nn.MultiheadAttention's convention)": ~want,
                "the upper triangle instead of the lower one (query i would see only the future)": ones.triu(),
                "the diagonal left out (tril(-1): a token must be able to see itself)": ones.tril(-1),
                "a mask of all True (nothing masked)": ones,
            }
            check.close(f"causal_mask({n}): True on and below the diagonal", check.call(causal_mask, n), want,
                        mistakes=mistakes if n > 1 else {}, hint="row i is the query, column j the key: True where j <= i")
        check.that("dtype is torch.bool (True = may attend)", first.dtype == torch.bool, expected="torch.bool",
                   actual=f"{first.dtype}", hint="the mask must be boolean: F.scaled_dot_product_attention ADDS a float "
                   "mask to the scores, so a 0/1 float mask would mask nothing")


# --- lesson 03: masked_attention(q, k, v, mask) ---------------------------------------

def _masked_mistakes(q, k, v, mask) -> tuple[dict, dict]:
    d_k = q.size(-1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)
    causal = reference_causal_mask(q.size(-2))
    weights = {
        "the mask ignored": scores.softmax(-1),
        "the mask applied after the softmax (weights zeroed but not renormalised, rows no longer sum to 1)":
            scores.softmax(-1) * mask,
        "the mask inverted (masked_fill(mask, -inf) hides the allowed keys)": scores.masked_fill(mask, NEG_INF).softmax(-1),
        "masked scores set to 0 instead of -inf (exp(0) = 1 still gives them weight)": (scores * mask).softmax(-1),
        "no 1/√d_k scaling": (q @ k.transpose(-2, -1)).masked_fill(~mask, NEG_INF).softmax(-1),
        "softmax over the wrong axis (dim=-2, the queries)": scores.masked_fill(~mask, NEG_INF).softmax(-2),
        "a causal mask of your own instead of the mask passed in": scores.masked_fill(~causal, NEG_INF).softmax(-1),
    }
    return weights, {mistake: w @ v for mistake, w in weights.items()}


def _unsafe_mistakes(q, k, v, mask) -> tuple[dict, dict]:
    """The weights and outputs of the recipes that break on a query with nothing to attend to."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = {
        "the plain recipe: a row of the mask that is all False leaves the softmax only −∞, and 0/0 is NaN":
            scores.masked_fill(~mask, NEG_INF).softmax(-1),
        "a large negative number instead of −∞: a query with nothing to attend to then spreads its weight "
        "evenly over keys it may not see": scores.masked_fill(~mask, -1e9).softmax(-1),
    }
    return weights, {mistake: w @ v for mistake, w in weights.items()}


def _leak(weights, mask) -> tuple[bool, str]:
    """Does any weight fall on a forbidden key? Names the first such position."""
    weights = torch.as_tensor(weights).detach().cpu().double()
    forbidden = (~mask).expand_as(weights) & (weights.abs() > 1e-6)
    if not forbidden.any():
        return True, ""
    where = tuple(torch.nonzero(forbidden)[0].tolist())
    return False, (f"weight {weights[where].item():.4f} at (batch, head, query, key) = {where}, "
                   "a key that the mask forbids")


def check_masked_attention(masked_attention) -> None:
    """Check a learner's `masked_attention(q, k, v, mask) -> (output, weights)` (lesson 03)."""
    with Checker("03.masked_attention", references=[scaled_dot_product_attention]) as check:
        if (slip := _k_dot_t_slip(masked_attention, 4, reference_causal_mask(4))) is not None:
            weights, want_weights, wrong = slip
            check.close("a batch (4, 4, 4, 4), causal mask: weights", weights, want_weights, mistakes={_K_DOT_T: wrong})
            return
        # A batch of 2 sequences, 2 heads, 5 tokens, d_k = 4; the second sequence
        # has 2 padding tokens. The mask is causal AND padding, (2, 1, 5, 5).
        q, k, v = _random(3, (2, 2, 5, 4), (2, 2, 5, 4), (2, 2, 5, 4))
        tokenizer_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
        cases = {"causal and padding mask": reference_causal_mask(5) & padding_mask(tokenizer_mask),
                 "padding mask only (no causal part)": padding_mask(tokenizer_mask)}
        for again, (case, mask) in enumerate(cases.items()):
            output, weights = _returns_a_pair(check, check.call(masked_attention, q, k, v, mask), again=bool(again))
            want_output, want_weights = scaled_dot_product_attention(q, k, v, mask)
            wrong_weights, wrong_outputs = _masked_mistakes(q, k, v, mask)
            if _is_array(weights) and tuple(weights.shape) == tuple(want_weights.shape):
                no_leak, where = _leak(weights, mask)
                check.that(f"{case}: no weight on a masked key", no_leak, expected="weight 0 on every masked key",
                           actual=where, hint=_MASK_HINT)
            check.close(f"{case}: weights (2, 2, 5, 5)", weights, want_weights,
                        mistakes=wrong_weights, hint=_MASK_HINT)
            check.close(f"{case}: output = weights @ v (2, 2, 5, 4)", output, want_output,
                        mistakes=wrong_outputs, hint=_OUTPUT_HINT)

        # Left padding under a causal mask: queries 0 and 1 of the second
        # sequence may see only padding. Values wider than keys, other sizes.
        q, k, v = _random(5, (2, 2, 4, 3), (2, 2, 4, 3), (2, 2, 4, 6))
        mask = reference_causal_mask(4) & padding_mask(torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]]))
        output, weights = _returns_a_pair(check, check.call(masked_attention, q, k, v, mask), again=True)
        want_output, want_weights = scaled_dot_product_attention(q, k, v, mask)
        wrong_weights, wrong_outputs = _unsafe_mistakes(q, k, v, mask)
        check.close("left padding under a causal mask: a query with nothing to attend to gets all-zero weights",
                    weights, want_weights, mistakes=wrong_weights, hint=_NOTHING_HINT)
        check.close("... and a zero output; the other queries as before", output, want_output,
                    mistakes=wrong_outputs, hint=_NOTHING_HINT)
        # The backward pass: through v, and through the scores to q and k, where
        # a NaN cleaned up after the softmax still flows back.
        for wrt, name in enumerate("qkv"):
            _, gradient = check.gradient(masked_attention, q, k, v, mask, wrt=wrt)
            _, want_gradient = remote.local_gradient(scaled_dot_product_attention, (q, k, v, mask), wrt)
            check.require(f"a gradient flows back to {name}", gradient is not None, expected="a gradient",
                          actual=f"none: the output is not computed from {name} with tensor operations")
            check.that(f"no NaN in the gradient that reaches {name} (and every layer before it)",
                       bool(torch.isfinite(torch.as_tensor(gradient)).all()), expected="finite everywhere",
                       actual="NaN: a NaN anywhere on the way, even one replaced later, is still NaN in the backward pass",
                       hint=_NOTHING_HINT)
            check.close(f"... and equal to the reviewed version's gradient for {name}", gradient, want_gradient,
                        hint=_NOTHING_HINT)
