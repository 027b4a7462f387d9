"""Checkers for the two multi-head attention exercises (lesson 04).

1. `check_separate_heads`: the learner builds H single heads, each its own
   small module with W^Q, W^K, W^V, keeps them in an `nn.ModuleList`,
   concatenates their outputs and applies W^O.
2. `check_multi_head_attention`: the fused version, a `MultiHeadAttention`
   class whose `forward(query, key=None, value=None, mask=None,
   need_weights=False)` does self- and cross-attention and returns (output,
   weights or None); `split_heads` and `merge_heads` are given.

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
# Cross-attention: 5 queries attend to a memory of 7 tokens.
CROSS_QUERIES, CROSS_KEYS = 5, 7

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
    "keys_from_query": "keys and values projected from the query (self-attention, whatever key and value are)",
    "values_from_key": "values projected from key instead of from value",
    "weights_before_softmax": "returning the scores before the softmax as the weights",
}


def _slipped_attention(reference: MultiHeadAttention, query: torch.Tensor, key=None, value=None, mask=None,
                      slip: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The H heads' outputs (B, H, Lq, d_head) and weights (B, H, Lq, Lk) by
    `reference`'s weights, with one named slip from SLIPS (or none, which gives
    the reviewed result). key and value default to the query, as in the module."""
    key = query if key is None else key
    value = key if value is None else value
    if slip == "keys_from_query":
        key = value = query
    elif slip == "values_from_key":
        value = key
    heads, d_head = reference.num_heads, reference.head_dim

    def split(t):
        batch, length, _ = t.shape
        if slip == "transpose":  # fills head 0 with the first positions' features, not with every position
            return t.reshape(batch, heads, length, d_head)
        t = t.view(batch, length, heads, d_head).transpose(1, 2)
        if slip == "shared_head":  # weights copied head by head into one module: the last copy wins
            return t[:, -1:].expand_as(t)
        return t

    q, k, v = (split(t) for t in reference.project(query, key, value))
    scale = {"no_scale": 1.0, "scale_d_model": math.sqrt(reference.d_model)}.get(slip, math.sqrt(d_head))
    scores = q @ k.transpose(-2, -1) / scale
    if mask is not None and slip != "mask_ignored":
        scores = scores.masked_fill(mask if slip == "mask_inverted" else ~mask, float("-inf"))
    weights = scores.softmax(dim=-2 if slip == "softmax_axis" else -1)
    return weights @ v, scores if slip == "weights_before_softmax" else weights


def slipped_heads(reference: MultiHeadAttention, x: torch.Tensor, mask=None, slip: str | None = None) -> torch.Tensor:
    """The H heads' self-attention outputs (B, H, L, d_head), with one named slip."""
    return _slipped_attention(reference, x, mask=mask, slip=slip)[0]


def _slipped_forward(reference: MultiHeadAttention, query: torch.Tensor, key=None, value=None, mask=None,
                    slip: str | None = None) -> torch.Tensor:
    """The module's output (B, Lq, D) by `reference`'s weights, computed with
    one named slip from SLIPS (or none, which gives the reviewed result)."""
    heads = _slipped_attention(reference, query, key, value, mask, slip)[0]
    if slip == "heads_reversed":
        heads = heads.flip(1)
    batch, _, length, _ = heads.shape
    if slip == "transpose":
        merged = heads.reshape(batch, length, reference.d_model)
    else:
        merged = heads.transpose(1, 2).reshape(batch, length, reference.d_model)
    return merged if slip == "no_out_proj" else reference.out_proj(merged)


_FORWARD_HINT = ("the order is: project, split into heads, scores scaled by 1/√d_head, softmax over the keys, "
                 "weights times values, merge, W^O")
_MASK_HINT = ("in the course's masks True means 'may attend': the scores where the mask is False must become -inf "
              "before the softmax")
_CROSS_HINT = ("the queries come from query, the keys from key and the values from value: each is projected by its "
               "own block of in_proj (rows 0 to D-1 are W^Q, then W^K, then W^V), so one projection of the query "
               "alone is not enough")


def _mistakes(reference, query, key, value, mask, slips):
    return {SLIPS[slip]: _slipped_forward(reference, query, key, value, mask, slip) for slip in slips}


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


def _cross_inputs():
    """Queries and a memory of other lengths than x (5 and 7), and values
    unlike the keys, for the cross-attention cases."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(405))
        return (torch.randn(BATCH, CROSS_QUERIES, D_MODEL), torch.randn(BATCH, CROSS_KEYS, D_MODEL),
                torch.randn(BATCH, CROSS_KEYS, D_MODEL))


def _has_linear(module, name, in_features, out_features) -> bool:
    layer = getattr(module, name, None)
    return (remote.is_instance(layer, nn.Linear) and layer.in_features == in_features
            and layer.out_features == out_features and layer.bias is not None)


def _output_and_weights(check: Checker, name: str, result, shape: tuple):
    """The pair forward returns, or None (and a failed check saying why)."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor):
        return result
    actual = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"{type(result).__name__}"
    check.fail(name, expected=f"a pair (output {shape}, weights or None)", actual=actual,
               hint="forward returns two things, as nn.MultiheadAttention does: the output, and the weights "
                    "(None unless need_weights=True)")
    return None


def check_multi_head_attention(MultiHeadAttentionClass) -> None:
    """Check a learner's MultiHeadAttention class against course_utils.attention.MultiHeadAttention."""
    with Checker("04.multi_head_attention", references=[MultiHeadAttention]) as check:
        check.require_module_class(MultiHeadAttentionClass, "MultiHeadAttention")
        reference, x = _reference_and_input()
        queries, keys, values = _cross_inputs()
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
        with torch.no_grad():
            memory_mask = padding_mask(torch.tensor([[1] * CROSS_KEYS, [1] * (CROSS_KEYS - 3) + [0] * 3]))
            cases = [  # name, (query, key, value), mask, slips to name, hint
                ("forward(x), no mask", (x, None, None), None,
                 ["transpose", "no_out_proj", "no_scale", "scale_d_model", "softmax_axis"], _FORWARD_HINT),
                ("forward(x, mask=padding), the last 2 tokens of sequence 2 are padding", (x, None, None),
                 padding_mask(TOKENIZER_MASK), ["mask_ignored", "mask_inverted"], _MASK_HINT),
                ("forward(x, mask=causal), no position sees a later one", (x, None, None), causal_mask(LENGTH),
                 ["mask_ignored", "mask_inverted"], _MASK_HINT),
                ("cross-attention forward(query, memory): 5 queries attend to 7 other tokens", (queries, keys, None),
                 None, ["keys_from_query", "transpose", "no_scale", "scale_d_model"], _CROSS_HINT),
                ("forward(query, key, value) with values unlike the keys", (queries, keys, values), None,
                 ["values_from_key", "keys_from_query"], _CROSS_HINT),
                ("cross-attention with a padding mask over the memory, (2, 1, 1, 7)", (queries, keys, None),
                 memory_mask, ["mask_ignored", "mask_inverted"], _MASK_HINT),
            ]
            for name, (query, key, value), mask, slips, hint in cases:
                arguments = [argument for argument in (query, key, value) if argument is not None]
                result = check.call(learner, *arguments, **({} if mask is None else {"mask": mask}))
                pair = _output_and_weights(check, name, result, tuple(query.shape))
                if pair is not None:
                    check.close(name, pair[0], reference(query, key, value, mask=mask)[0],
                                mistakes=_mistakes(reference, query, key, value, mask, slips), hint=hint)

            name = "need_weights=True returns the weights (2, 4, 5, 7): rows sum to 1, padding keys get 0"
            result = check.call(learner, queries, keys, mask=memory_mask, need_weights=True)
            pair = _output_and_weights(check, name, result, tuple(queries.shape))
            if pair is not None:
                check.close(name, pair[1], reference(queries, keys, mask=memory_mask, need_weights=True)[1],
                            mistakes={SLIPS[slip]: _slipped_attention(reference, queries, keys, None, memory_mask, slip)[1]
                                      for slip in ["weights_before_softmax", "mask_ignored", "softmax_axis"]},
                            hint="the weights are what the softmax gives, one row per query and head, before they "
                                 "multiply the values")


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
                check.close(name, out, reference(x, mask=mask)[0], mistakes=_mistakes(reference, x, None, None, mask, slips),
                            hint=hint)
