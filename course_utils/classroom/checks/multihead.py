"""Checkers for the two multi-head attention exercises (lesson 04).

1. `check_separate_heads`: the learner builds H single heads, each its own
   small module with W^Q, W^K, W^V, keeps them in an `nn.ModuleList`,
   concatenates their outputs and applies W^O.
2. `check_multi_head_attention`: the fused version, a `MultiHeadAttention`
   class with `split_heads`, `merge_heads` and `forward(x, mask=None)`.

Both copy the weights of the reviewed `course_utils.attention.MultiHeadAttention`
into the learner's module and compare with it. When an output is wrong, it is
also compared with what each classic slip produces on the same input, so that
the report can say which slip it was. Hints name the slip and where to look;
they never spell out the code.
"""

import math

import torch
from torch import nn

from course_utils.attention import MultiHeadAttention, causal_mask, padding_mask
from .. import remote
from . import Checker, seeded

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
    "mask_inverted": "nn.MultiheadAttention's mask convention (True = masked out) instead of the course's (True = may attend)",
    "heads_reversed": "concatenating the heads in the wrong order (the last head first)",
    "shared_head": "one head shared by every slot (the same module, so the same W^Q, W^K, W^V, H times)",
}


def slipped_heads(reference: MultiHeadAttention, x: torch.Tensor, mask=None, slip: str | None = None) -> torch.Tensor:
    """The H heads' outputs (B, H, L, d_head) by `reference`'s weights, with
    one named slip from SLIPS (or none, which gives the reviewed result)."""
    batch, length, d_model = x.shape
    heads, d_head = reference.num_heads, reference.head_dim

    def split(t):
        if slip == "transpose":  # fills head 0 with the first positions' features, not with every position
            return t.reshape(batch, heads, length, d_head)
        t = t.view(batch, length, heads, d_head).transpose(1, 2)
        if slip == "shared_head":  # weights copied head by head into one module: the last copy wins
            return t[:, -1:].expand_as(t)
        return t

    q, k, v = (split(t) for t in reference.in_proj(x).chunk(3, dim=-1))
    scale = {"no_scale": 1.0, "scale_d_model": math.sqrt(d_model)}.get(slip, math.sqrt(d_head))
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and slip != "mask_ignored":
        scores = scores.masked_fill(mask if slip == "mask_inverted" else ~mask, float("-inf"))
    weights = scores.softmax(dim=-2 if slip == "softmax_axis" else -1)
    return weights @ v


def slipped_forward(reference: MultiHeadAttention, x: torch.Tensor, mask=None, slip: str | None = None) -> torch.Tensor:
    """Self-attention by `reference`'s weights, computed with one named slip
    from SLIPS (or none, which gives the reviewed result)."""
    batch, length, d_model = x.shape
    heads = slipped_heads(reference, x, mask, slip)
    if slip == "heads_reversed":
        heads = heads.flip(1)
    if slip == "transpose":
        merged = heads.reshape(batch, length, d_model)
    else:
        merged = heads.transpose(1, 2).reshape(batch, length, d_model)
    return merged if slip == "no_out_proj" else reference.out_proj(merged)


_FORWARD_HINT = ("the order is: project, split into heads, scores scaled by 1/√d_head, softmax over the keys, "
                 "weights times values, merge, W^O")
_MASK_HINT = ("in the course's masks True means 'may attend': the scores where the mask is False must become -inf "
              "before the softmax")


def _mistakes(reference, x, mask, slips):
    return {SLIPS[slip]: slipped_forward(reference, x, mask, slip) for slip in slips}


def _reference_and_input():
    """The reviewed module with seeded random weights (biases too, so that a
    missing W^O cannot hide), and a seeded input; the caller's random state is
    left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(404))
        reference = MultiHeadAttention(D_MODEL, HEADS).eval()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.normal_(0, 0.3)
        x = torch.randn(BATCH, LENGTH, D_MODEL)
    return reference, x


def _has_linear(module, name, in_features, out_features) -> bool:
    layer = getattr(module, name, None)
    return (remote.is_instance(layer, nn.Linear) and layer.in_features == in_features
            and layer.out_features == out_features and layer.bias is not None)


def check_multi_head_attention(MultiHeadAttentionClass) -> None:
    """Check a learner's MultiHeadAttention class against course_utils.attention.MultiHeadAttention."""
    with Checker("04.multi_head_attention", references=[MultiHeadAttention]) as check:
        check.require_module_class(MultiHeadAttentionClass, "MultiHeadAttention")
        reference, x = _reference_and_input()
        with torch.random.fork_rng(devices=[]):
            learner = check.call(MultiHeadAttentionClass, D_MODEL, HEADS, given=True)
        check.require("__init__ keeps in_proj (D -> 3D) and out_proj (D -> D) as given",
                      _has_linear(learner, "in_proj", D_MODEL, 3 * D_MODEL)
                      and _has_linear(learner, "out_proj", D_MODEL, D_MODEL),
                      expected="nn.Linear(32, 96) as self.in_proj and nn.Linear(32, 32) as self.out_proj",
                      actual=f"in_proj={getattr(learner, 'in_proj', None)!r}, out_proj={getattr(learner, 'out_proj', None)!r}",
                      hint="keep the __init__ of the exercise as it is")
        # The same weights as the reference: outputs must then agree.
        _load(check, learner, {f"{name}.{part}": value for name in ("in_proj", "out_proj")
                               for part, value in getattr(reference, name).state_dict().items()})
        wrong_split = x.reshape(BATCH, HEADS, LENGTH, D_MODEL // HEADS)

        with torch.no_grad():
            heads = check.call(learner.split_heads, x)
            check.close("split_heads: (2, 6, 32) -> (2, 4, 6, 8), head h holds slice h of every position's width",
                        heads, reference.split_heads(x), mistakes={SLIPS["transpose"]: wrong_split},
                        hint="cut each token's width into H slices first, then bring the head axis in front of the token axis")

            merged = check.call(learner.merge_heads, reference.split_heads(x))
            check.close("merge_heads undoes split_heads: (2, 4, 6, 8) -> (2, 6, 32)",
                        merged, x, mistakes={SLIPS["transpose"]: reference.split_heads(x).reshape(BATCH, LENGTH, D_MODEL)},
                        hint="undo the split in reverse order: put the heads back behind the tokens, then make one width")

            cases = [
                ("forward(x), no mask", None,
                 ["transpose", "no_out_proj", "no_scale", "scale_d_model", "softmax_axis"],
                 _FORWARD_HINT),
                ("forward(x, mask=padding), the last 2 tokens of sequence 2 are padding", padding_mask(TOKENIZER_MASK),
                 ["mask_ignored", "mask_inverted"], _MASK_HINT),
                ("forward(x, mask=causal), no position sees a later one", causal_mask(LENGTH),
                 ["mask_ignored", "mask_inverted"], _MASK_HINT),
            ]
            for name, mask, slips, hint in cases:
                out = check.call(learner, x) if mask is None else check.call(learner, x, mask=mask)
                if isinstance(out, tuple):
                    check.fail(name, expected="one tensor, the output (2, 6, 32)", actual=f"a tuple of {len(out)}",
                               hint="forward returns the output tensor alone, not a tuple (no attention weights)")
                    continue
                check.close(name, out, reference(x, mask=mask)[0], mistakes=_mistakes(reference, x, mask, slips), hint=hint)


# --- exercise 1: H separate heads in an nn.ModuleList ------------------------

def _load(check: Checker, learner, weights: dict) -> None:
    """Load the reference's weights into the learner's module (load_state_dict
    works the same on a module in the sandbox), and switch it to eval mode."""
    try:
        learner.load_state_dict(weights, strict=False)
        learner.eval()
    except remote.SessionEnded:
        raise
    except Exception as error:
        check.require("__init__ keeps its layers as given", False, expected="the layers of the exercise's __init__",
                      actual=str(error).splitlines()[0][:120], hint="keep the __init__ of the exercise as it is")


def _fused_weights(reference: MultiHeadAttention) -> dict:
    """The learner's state dict: head h gets the rows of the fused in_proj that
    belong to it (its slice of W^Q, of W^K and of W^V), and W^O as it is."""
    d_model, d_head = reference.d_model, reference.head_dim
    weights = {f"out_proj.{part}": value for part, value in reference.out_proj.state_dict().items()}
    for h in range(reference.num_heads):
        for index, name in enumerate(["query", "key", "value"]):
            rows = slice(index * d_model + h * d_head, index * d_model + (h + 1) * d_head)
            weights[f"heads.{h}.{name}.weight"] = reference.in_proj.weight[rows].detach().clone()
            weights[f"heads.{h}.{name}.bias"] = reference.in_proj.bias[rows].detach().clone()
    return weights


def check_separate_heads(SeparateHeadsClass) -> None:
    """Check a learner's multi-head attention built from H single-head modules
    (self.heads, an nn.ModuleList; each head with query, key, value of
    nn.Linear(D, D/H); self.out_proj, W^O) against the reviewed fused module."""
    d_head = D_MODEL // HEADS
    with Checker("04.separate_heads", references=[MultiHeadAttention]) as check:
        check.require_module_class(SeparateHeadsClass, "SeparateHeadsAttention")
        reference, x = _reference_and_input()
        with torch.random.fork_rng(devices=[]):
            learner = check.call(SeparateHeadsClass, D_MODEL, HEADS)
        heads = getattr(learner, "heads", None)
        check.require(f"self.heads is an nn.ModuleList of {HEADS} heads (d_model={D_MODEL}, num_heads={HEADS})",
                      remote.is_instance(heads, nn.ModuleList) and len(heads) == HEADS,
                      expected=f"nn.ModuleList of {HEADS} SingleHead modules",
                      actual=f"{type(heads).__name__}" + (f" of {len(heads)}" if hasattr(heads, "__len__") else ""),
                      hint="a plain Python list hides the heads' parameters from the module (and from the optimizer); "
                           "one head per slot")
        check.require(f"each head keeps query, key and value as nn.Linear({D_MODEL}, {d_head})",
                      all(_has_linear(head, name, D_MODEL, d_head) for head in heads for name in ["query", "key", "value"]),
                      expected=f"nn.Linear({D_MODEL}, {d_head}) for each of query, key, value",
                      actual=repr(heads[0])[:120], hint="each head is a SingleHead(d_model, d_model // num_heads), as given")
        check.require(f"self.out_proj is W^O, nn.Linear({D_MODEL}, {D_MODEL})",
                      _has_linear(learner, "out_proj", D_MODEL, D_MODEL),
                      expected=f"nn.Linear({D_MODEL}, {D_MODEL}) as self.out_proj",
                      actual=repr(getattr(learner, "out_proj", None)),
                      hint=f"{SLIPS['no_out_proj']}: the concatenated heads still need W^O")
        _load(check, learner, _fused_weights(reference))

        with torch.no_grad():
            first_head = check.call(heads[0], x)
            check.close(f"one head: heads[0](x) is (2, 6, {d_head}), attention in head 0's subspace",
                        first_head, slipped_heads(reference, x)[:, 0],
                        mistakes={SLIPS[slip]: slipped_heads(reference, x, slip=slip)[:, 0]
                                  for slip in ["no_scale", "scale_d_model", "softmax_axis", "shared_head"]},
                        hint="a head projects x with its own query, key and value, scales the scores by 1/√(its own "
                             "width), and takes the softmax over the keys")
            cases = [
                ("forward(x), no mask", None,
                 ["heads_reversed", "no_out_proj", "no_scale", "scale_d_model", "softmax_axis", "shared_head"],
                 "concatenate the heads' outputs in order, head 0 first, along the features; then W^O"),
                # a head's scores are (B, L, L): its masks have no head axis, (B, 1, L) for padding
                ("forward(x, mask=padding), the last 2 tokens of sequence 2 are padding", padding_mask(TOKENIZER_MASK),
                 ["mask_ignored", "mask_inverted"], _MASK_HINT + "; pass the mask on to every head"),
                ("forward(x, mask=causal), no position sees a later one", causal_mask(LENGTH),
                 ["mask_ignored", "mask_inverted"], _MASK_HINT + "; pass the mask on to every head"),
            ]
            for name, mask, slips, hint in cases:
                head_mask = mask[:, 0] if mask is not None and mask.dim() == 4 else mask
                out = check.call(learner, x) if mask is None else check.call(learner, x, mask=head_mask)
                if isinstance(out, tuple):
                    check.fail(name, expected="one tensor, the output (2, 6, 32)", actual=f"a tuple of {len(out)}",
                               hint="forward returns the output tensor alone, not a tuple")
                    continue
                check.close(name, out, reference(x, mask=mask)[0], mistakes=_mistakes(reference, x, mask, slips),
                            hint=hint)
