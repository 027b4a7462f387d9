"""Checker for the multi-head attention exercise (lesson 04).

The learner writes a `MultiHeadAttention` class with `split_heads`,
`merge_heads` and `forward(x, mask=None)`. The checker copies the weights of
the reviewed `course_utils.attention.MultiHeadAttention` into it and compares
every step with the reviewed version. When an output is wrong, it is also
compared with what each classic slip produces on the same input, so that the
report can say which slip it was.
"""

import math

import torch
from torch import nn

from ..attention import MultiHeadAttention, causal_mask, padding_mask
from . import Checker

# Small but not square, so that a swapped axis changes a shape or a value:
# batch 2, length 6, width 32 in 4 heads of 8.
BATCH, LENGTH, D_MODEL, HEADS = 2, 6, 32, 4
# The second sequence of the batch ends in two padding tokens.
TOKENIZER_MASK = torch.tensor([[1] * LENGTH, [1] * (LENGTH - 2) + [0, 0]])

SLIPS = {
    "transpose": "heads split (and merged) by a plain reshape, without the transpose",
    "no_out_proj": "leaving out the output projection W^O (self.out_proj)",
    "no_scale": "leaving out the 1/sqrt(d_head) scaling",
    "scale_d_model": "scaling by 1/sqrt(d_model) instead of 1/sqrt(d_head)",
    "softmax_axis": "a softmax over the queries (dim=-2) instead of the keys (dim=-1)",
    "mask_ignored": "ignoring the mask",
}


def slipped_forward(reference: MultiHeadAttention, x: torch.Tensor, mask=None, slip: str | None = None) -> torch.Tensor:
    """Self-attention by `reference`'s weights, computed with one named slip
    from SLIPS (or none, which gives the reviewed result)."""
    batch, length, d_model = x.shape
    heads, d_head = reference.num_heads, reference.head_dim

    def split(t):
        if slip == "transpose":  # fills head 0 with the first positions' features, not with every position
            return t.reshape(batch, heads, length, d_head)
        return t.view(batch, length, heads, d_head).transpose(1, 2)

    def merge(t):
        if slip == "transpose":
            return t.reshape(batch, length, d_model)
        return t.transpose(1, 2).reshape(batch, length, d_model)

    q, k, v = (split(t) for t in reference.in_proj(x).chunk(3, dim=-1))
    scale = {"no_scale": 1.0, "scale_d_model": math.sqrt(d_model)}.get(slip, math.sqrt(d_head))
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and slip != "mask_ignored":
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-2 if slip == "softmax_axis" else -1)
    merged = merge(weights @ v)
    return merged if slip == "no_out_proj" else reference.out_proj(merged)


def _mistakes(reference, x, mask, slips):
    return {SLIPS[slip]: slipped_forward(reference, x, mask, slip) for slip in slips}


def _reference_and_input():
    """The reviewed module with seeded random weights (biases too, so that a
    missing W^O cannot hide), and a seeded input; the caller's random state is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(404)
        reference = MultiHeadAttention(D_MODEL, HEADS).eval()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.normal_(0, 0.3)
        x = torch.randn(BATCH, LENGTH, D_MODEL)
    return reference, x


def _has_linear(module, name, in_features, out_features) -> bool:
    layer = getattr(module, name, None)
    return (isinstance(layer, nn.Linear) and layer.in_features == in_features
            and layer.out_features == out_features and layer.bias is not None)


def check_multi_head_attention(MultiHeadAttentionClass) -> None:
    """Check a learner's MultiHeadAttention class against course_utils.attention.MultiHeadAttention."""
    with Checker("04.multi_head_attention") as check:
        check.require("your answer is a class derived from nn.Module",
                      isinstance(MultiHeadAttentionClass, type) and issubclass(MultiHeadAttentionClass, nn.Module),
                      expected="class MultiHeadAttention(nn.Module)", actual=repr(MultiHeadAttentionClass)[:60])
        reference, x = _reference_and_input()
        with torch.random.fork_rng(devices=[]):
            learner = check.call(MultiHeadAttentionClass, D_MODEL, HEADS, given=True)
        check.require("__init__ keeps in_proj (D -> 3D) and out_proj (D -> D) as given",
                      _has_linear(learner, "in_proj", D_MODEL, 3 * D_MODEL)
                      and _has_linear(learner, "out_proj", D_MODEL, D_MODEL),
                      expected="nn.Linear(32, 96) as self.in_proj and nn.Linear(32, 32) as self.out_proj",
                      actual=f"in_proj={getattr(learner, 'in_proj', None)!r}, out_proj={getattr(learner, 'out_proj', None)!r}",
                      hint="keep the __init__ of the exercise as it is")
        with torch.no_grad():  # the same weights as the reference: outputs must then agree
            learner.in_proj.weight.copy_(reference.in_proj.weight)
            learner.in_proj.bias.copy_(reference.in_proj.bias)
            learner.out_proj.weight.copy_(reference.out_proj.weight)
            learner.out_proj.bias.copy_(reference.out_proj.bias)
        learner.eval()
        wrong_split = x.reshape(BATCH, HEADS, LENGTH, D_MODEL // HEADS)

        with torch.no_grad():
            heads = check.call(learner.split_heads, x)
            check.close("split_heads: (2, 6, 32) -> (2, 4, 6, 8), head h holds slice h of every position's width",
                        heads, reference.split_heads(x), mistakes={SLIPS["transpose"]: wrong_split},
                        hint="view the width as (H, Dh): x.view(B, L, H, Dh), then swap L and H with .transpose(1, 2)")

            merged = check.call(learner.merge_heads, reference.split_heads(x))
            check.close("merge_heads undoes split_heads: (2, 4, 6, 8) -> (2, 6, 32)",
                        merged, x, mistakes={SLIPS["transpose"]: reference.split_heads(x).reshape(BATCH, LENGTH, D_MODEL)},
                        hint="first .transpose(1, 2) back to (B, L, H, Dh), then .reshape(B, L, D)")

            cases = [
                ("forward(x), no mask", None,
                 ["transpose", "no_out_proj", "no_scale", "scale_d_model", "softmax_axis"],
                 "project with self.in_proj, split, softmax(q kᵀ / √d_head) v, merge, then self.out_proj"),
                ("forward(x, mask=padding), the last 2 tokens of sequence 2 are padding", padding_mask(TOKENIZER_MASK),
                 ["mask_ignored"],
                 "True in the mask means 'may attend': scores.masked_fill(~mask, float('-inf')) before the softmax"),
                ("forward(x, mask=causal), no position sees a later one", causal_mask(LENGTH),
                 ["mask_ignored"],
                 "True in the mask means 'may attend': scores.masked_fill(~mask, float('-inf')) before the softmax"),
            ]
            for name, mask, slips, hint in cases:
                out = check.call(learner, x) if mask is None else check.call(learner, x, mask=mask)
                if isinstance(out, tuple):
                    check.fail(name, expected="one tensor, the output (2, 6, 32)", actual=f"a tuple of {len(out)}",
                               hint="forward returns the output tensor alone, not a tuple (no attention weights)")
                    continue
                check.close(name, out, reference(x, mask=mask)[0], mistakes=_mistakes(reference, x, mask, slips), hint=hint)
