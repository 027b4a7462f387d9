"""Checkers for lesson 14: from a language model to an assistant.

- `check_sft_batch` compares the learner's `sft_batch(prompts, responses,
  end_id, pad_id)` with `course_utils.chat.sft_batch` on batches the
  notebook never makes: one row; four rows of different lengths (so that
  the padding differs from row to row, one row needs none, one response is
  a single token); two rows whose prompt and response hold the pad id as an
  ordinary token (where a mask or labels made from `ids != pad_id` go
  wrong); three rows of one length (no padding at all). End and pad ids are
  never the lesson's (67 and 68), and the ids are seeded random ones that
  the grader's seed moves. Each of input_ids, attention_mask and labels
  must be int64 and equal to the reviewed batch, and the caller's lists
  must be left as they were; a wrong tensor is compared with what each
  classic slip gives (SFT_SLIPS).
- `check_lora_linear` builds the learner's `LoRALinear(base, rank, alpha)`
  on layers the notebook never uses: nn.Linear(12, 20) with rank 4 and
  alpha 6, nn.Linear(20, 7) without bias with rank 3 and alpha 12, and a
  float64 nn.Linear(9, 16) with rank 1 and alpha 0.25 (alpha / rank differs
  from 1, from alpha and from rank / alpha wherever the rank is not 1, so
  that each slip of the scale shows), with 2-D and 3-D inputs. It checks the
  base layer kept as given, the shapes and dtype of lora_A and lora_B, B
  zero and A not at the start, a new layer equal to the base layer, then,
  with seeded A and B loaded by `load_state_dict`, the output against
  base(x) + (alpha / rank) x Aᵀ Bᵀ, naming the slip a wrong output matches
  (LORA_SLIPS), and the gradients.

Which parameters train, and their gradients after a backward pass, are
read with `remote.parameter_gradients`: in the notebook directly, and,
graded, in the sandbox, where the learner's class lives (a tensor read
from it comes back as a copy, without its `requires_grad` or `.grad`).
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

from course_utils import chat, lora
from .. import remote
from . import Checker, random_normal, seeded

# --- 14.sft_batch ---------------------------------------------------------------------

SFT_SLIPS = {
    "prompt_in_loss": "the prompt left in the loss (its labels are its own tokens instead of -100): the model would "
                      "learn to write the user's side of the conversation too",
    "shifted": "labels shifted by one (labels[t] = input_ids[t + 1]): the loss already pairs the logits at t with the "
               "label at t + 1, so they end up shifted twice",
    "end_ignored": "the end-of-turn token left out of the loss (-100 at its place): the model would never learn to stop",
    "no_end": "no end-of-turn token after the response: the model would never learn to stop",
    "padding_labelled": "the padding labelled with the pad id instead of -100: the loss would teach the model to pad",
    "left_padded": "padding on the left instead of the right (each row starts at position 0, its padding after it)",
    "pad_zero": "padding with 0 instead of pad_id",
    "mask_all_ones": "an attention mask of ones everywhere, the padding included",
    "mask_inverted": "the attention mask inverted (1 on the padding, 0 on the tokens)",
    "mask_from_ids": "the attention mask read from the ids (0 wherever the pad id occurs): the pad id can also be an "
                     "ordinary token of a prompt or a response, so the mask must come from each row's length",
    "mask_response": "the loss's mask used as the attention mask (1 on the response only): the model must see the "
                     "prompt too",
    "ignore_pad": "the pad id instead of -100 as the label to skip (cross_entropy skips -100, its ignore_index)",
    "ignore_zero": "0 instead of -100 as the label to skip (0 is an ordinary token id; cross_entropy skips -100)",
    "dtype": "a tensor in another dtype than int64: the embedding and cross_entropy take int64 ids and "
             "labels, and the models of the lesson an int64 attention mask",
    "inputs_changed": "the caller's lists changed (the end-of-turn token appended to a response given, say): "
                      "build each row as a new list and leave prompts and responses as they were",
}

SFT_KEYS = ("input_ids", "attention_mask", "labels")
_SFT_CHECKED = {
    "input_ids": "input_ids: each row its prompt, its response and the end token, right-padded with pad_id",
    "attention_mask": "attention_mask: 1 on every token of a row, 0 on its padding",
    "labels": "labels: -100 on the prompt and the padding, the token itself on the response and its end token",
}
_SFT_HINTS = {
    "input_ids": "a row is the prompt, then the response, then end_id, and pad_id fills it up to the longest row",
    "attention_mask": "the mask says which positions hold a token of the row, whatever the token is",
    "labels": "the loss learns the response and its end token only, and skips every other position",
}


def _slipped_sft_batch(prompts, responses, end_id: int, pad_id: int, slip: str | None = None) -> dict:
    """The batch {"input_ids", "attention_mask", "labels"} (int64), with one
    named slip from SFT_SLIPS (or none, which gives the reviewed batch)."""
    ignore = {"ignore_pad": pad_id, "ignore_zero": 0}.get(slip, chat.IGNORE)
    pad = 0 if slip == "pad_zero" else pad_id
    rows = []
    for prompt, response in zip(prompts, responses):
        answer = list(response) + ([] if slip == "no_end" else [end_id])
        ids = list(prompt) + answer
        labels = list(ids) if slip == "prompt_in_loss" else [ignore] * len(prompt) + answer
        if slip == "end_ignored":
            labels[-1] = ignore
        if slip == "shifted":
            labels = labels[1:] + [ignore]
        mask = [0] * len(prompt) + [1] * len(answer) if slip == "mask_response" else [1] * len(ids)
        rows.append((ids, mask, labels))
    longest = max(len(ids) for ids, _, _ in rows)
    parts = {key: [] for key in SFT_KEYS}
    for ids, mask, labels in rows:
        room = longest - len(ids)
        filled = (ids, [pad] * room), (mask, [0] * room), (labels, [pad_id if slip == "padding_labelled" else ignore] * room)
        for key, (row, padding) in zip(SFT_KEYS, filled):
            parts[key].append(padding + row if slip == "left_padded" else row + padding)
    batch = {key: torch.tensor(value, dtype=torch.long) for key, value in parts.items()}
    if slip == "mask_all_ones":
        batch["attention_mask"] = torch.ones_like(batch["attention_mask"])
    elif slip == "mask_inverted":
        batch["attention_mask"] = 1 - batch["attention_mask"]
    elif slip == "mask_from_ids":
        batch["attention_mask"] = (batch["input_ids"] != pad_id).long()
    return batch


def _sft_mistakes(prompts, responses, end_id: int, pad_id: int) -> dict[str, dict]:
    """{key: {slip's name: that key's tensor with the slip}} for every slip
    whose tensor differs from the reviewed one, of any shape."""
    right, mistakes = _slipped_sft_batch(prompts, responses, end_id, pad_id), {key: {} for key in SFT_KEYS}
    for slip, name in SFT_SLIPS.items():
        if slip in ("dtype", "inputs_changed"):
            continue
        wrong = _slipped_sft_batch(prompts, responses, end_id, pad_id, slip)
        for key in SFT_KEYS:
            if not (wrong[key].shape == right[key].shape and torch.equal(wrong[key], right[key])):
                mistakes[key].setdefault(name, wrong[key])
    return mistakes


def _sft_cases():
    """(what, prompts, responses, end_id, pad_id): seeded, moved by the
    grader; each prompt ends with an id standing for the assistant's role
    token."""
    generator = torch.Generator().manual_seed(seeded(1414))

    def rows(prompt_lengths, response_lengths, low, high, assistant):
        draw = lambda count: torch.randint(low, high, (count,), generator=generator).tolist()
        return [draw(length - 1) + [assistant] for length in prompt_lengths], [draw(length) for length in response_lengths]

    one_prompt, one_response = rows([6], [4], 5, 60, 4)
    four_prompts, four_responses = rows([4, 7, 3, 5], [6, 1, 8, 2], 10, 499, 499)
    padded_prompts, padded_responses = rows([5, 3], [1, 4], 5, 60, 4)
    padded_prompts[0][1] = padded_prompts[0][3] = padded_prompts[1][0] = padded_responses[1][2] = 0  # the pad id, as a token
    even_prompts, even_responses = rows([3, 5, 4], [4, 2, 3], 3, 40, 40)
    return [
        ("one row (a prompt of 6 ids, a response of 4), end 3, pad 0", one_prompt, one_response, 3, 0),
        ("4 rows of different lengths (one without padding, one response of a single token), end 500, pad 501",
         four_prompts, four_responses, 500, 501),
        ("2 rows in which the pad id 0 is also an ordinary token (in a prompt, in a response), end 3, pad 0",
         padded_prompts, padded_responses, 3, 0),
        ("3 rows of the same length (no padding at all), end 1, pad 2", even_prompts, even_responses, 1, 2),
    ]


def _sft_part(check: Checker, what: str, key: str, got, expected: torch.Tensor, mistakes: dict) -> None:
    """One tensor of the learner's batch against the reviewed one: a tensor,
    int64, then its values, naming the slip it matches (of any shape)."""
    name = f"{what}: {_SFT_CHECKED[key]}"
    if not isinstance(got, torch.Tensor):
        check.fail(name, f"a tensor of shape {tuple(expected.shape)}", type(got).__name__,
                   "return each of the three as a tensor, one row per conversation")
        return
    if got.dtype != torch.int64:
        check.fail(name, "torch.int64", str(got.dtype), f"this is {SFT_SLIPS['dtype']}")
        return
    got = got.detach().cpu()
    if got.shape == expected.shape and torch.equal(got, expected):
        check.that(name, True)
        return
    slip = next((slip for slip, wrong in mistakes.items() if wrong.shape == got.shape and torch.equal(got, wrong)), None)
    hint = f"your {key} is exactly what this slip gives: {slip}" if slip else _SFT_HINTS[key]
    if got.shape != expected.shape:
        check.fail(name, f"shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}", hint)
        return
    row, column = torch.nonzero(got != expected)[0].tolist()
    check.fail(name, f"{expected[row, column].item()} in row {row}, at position {column}", f"{got[row, column].item()}",
               hint)


def check_sft_batch(sft_batch) -> None:
    """Check a learner's `sft_batch(prompts, responses, end_id, pad_id)`
    against `chat.sft_batch` on four batches the notebook never makes (see
    the module docstring): the three tensors int64 and equal to the
    reviewed ones, the caller's lists left as they were."""
    with Checker("14.sft_batch", references=[chat.sft_batch]) as check:
        for what, prompts, responses, end_id, pad_id in _sft_cases():
            batch = check.call(sft_batch, prompts, responses, end_id, pad_id)
            check.left_unchanged(f"{what}: prompts and responses left as they were",
                                 hint=f"this is {SFT_SLIPS['inputs_changed']}")
            missing = [key for key in SFT_KEYS if key not in batch] if isinstance(batch, dict) else list(SFT_KEYS)
            if missing:
                check.require(f"{what}: returns a dict of input_ids, attention_mask and labels", False,
                              expected="a dict with the keys input_ids, attention_mask and labels",
                              actual=(f"a dict without {', '.join(missing)}" if isinstance(batch, dict)
                                      else type(batch).__name__),
                              hint="the three go together in one dict, as a tokenizer gives its batch")
            expected = chat.sft_batch(prompts, responses, end_id, pad_id)
            mistakes = _sft_mistakes(prompts, responses, end_id, pad_id)
            for key in SFT_KEYS:
                _sft_part(check, what, key, batch[key], expected[key], mistakes[key])


# --- 14.lora_linear -------------------------------------------------------------------

LORA_SLIPS = {
    "both_random": "A and B both random at the start: the adapted model differs from the pretrained one before any "
                   "training (LoRA starts B at zero, so that the update B A is zero)",
    "both_zero": "A and B both zero at the start: nothing would ever train, since B's gradient goes through x Aᵀ "
                 "(zero) and A's through B (zero)",
    "a_zero": "A zero and B random: the other way round from LoRA, which starts A random and B at zero",
    "a_too_large": "A drawn larger than either of peft's starts (kaiming_uniform_ with a = √5: within ±1/√(in features); "
                   "or its 'gaussian' option: a standard deviation of 1/rank), e.g. by torch.randn: the update then "
                   "moves far faster than peft's at the same learning rate",
    "a_constant": "A filled with one value: every row of A the same, so the update has rank 1 whatever the rank",
    "no_scale": "the scale alpha / rank forgotten",
    "alpha_only": "the update scaled by alpha instead of alpha / rank",
    "rank_over_alpha": "the update scaled by rank / alpha instead of alpha / rank",
    "update_twice": "the update added twice",
    "no_base": "the base layer's output missing (the update alone)",
    "base_twice": "the base layer's output added twice",
    "trainable_base": "the base layer's weight (or bias) left trainable: LoRA freezes the pretrained layer and trains A "
                      "and B only",
    "not_trained": "no gradient reaching A or B (a frozen or detached A or B): they would never train",
    "transposed": "A and B stored transposed: A is (rank, in_features) and B (out_features, rank), each (out, in) as "
                  "nn.Linear stores its weight",
    "swapped": "A and B swapped: A (rank, in_features) acts on x first, and B (out_features, rank) brings the result "
               "to the output's width",
    "base_changed": "the base layer re-initialised or copied wrongly: LoRA keeps the pretrained weight and bias exactly "
                    "as they are",
}

FLOAT32_ONLY = ("your values are right to float32's precision only: a float64 layer must compute in float64 "
                "(its A and B in float64 too)")
_FORWARD_SLIPS = ("no_scale", "alpha_only", "rank_over_alpha", "update_twice", "no_base", "base_twice")
_LORA_HINT = "the output is the base layer's, plus the low-rank update of x through A then B, times alpha / rank"


def _lora_outputs(weight, bias, A, B, rank: int, alpha: float, x) -> dict:
    """The adapted layer's output in float64, by slip: None for the reviewed
    output, and each slip of _FORWARD_SLIPS."""
    x = x.double()
    base = F.linear(x, weight.double(), None if bias is None else bias.double())
    product = x @ A.double().T @ B.double().T
    scales = {None: alpha / rank, "no_scale": 1.0, "alpha_only": alpha, "rank_over_alpha": rank / alpha}
    outputs = {slip: base + scale * product for slip, scale in scales.items()}
    update = scales[None] * product
    outputs.update(update_twice=base + 2 * update, no_base=update, base_twice=2 * base + update)
    return outputs


def _slip_hint(out, mistakes: dict, hint: str, atol: float, rtol: float) -> str:
    """The hint "your output is exactly what this slip gives: ..." for the
    first of `mistakes` ({slip's name: output}) that `out` matches, else
    `hint`."""
    if isinstance(out, torch.Tensor):
        got = out.detach().cpu().double()
        for name, wrong in mistakes.items():
            if wrong.shape == got.shape and torch.allclose(got, wrong, atol=atol, rtol=rtol):
                return f"your output is exactly what this slip gives: {name}"
    return hint


def _lora_mistakes(outputs: dict, slips=_FORWARD_SLIPS) -> dict:
    """{slip's name: what it gives} for those of `slips` that give something
    else than the right output (`outputs`, from _lora_outputs) here: with
    rank 1, alpha / rank is alpha."""
    right = outputs[None]
    return {LORA_SLIPS[slip]: outputs[slip] for slip in slips
            if not torch.allclose(outputs[slip], right, atol=1e-3, rtol=1e-3)}


def _within(out, expected: torch.Tensor, atol: float) -> bool:
    """True if `out` is a tensor of expected's shape, within atol of it."""
    return (isinstance(out, torch.Tensor) and out.shape == expected.shape
            and bool(((out.detach().double() - expected.double()).abs() <= atol).all()))


def _base_layer(weight: torch.Tensor, bias) -> nn.Linear:
    """An nn.Linear holding these weights; the caller's random state is kept."""
    with torch.random.fork_rng(devices=[]):
        layer = nn.Linear(weight.size(1), weight.size(0), bias=bias is not None, dtype=weight.dtype)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _lora_cases():
    """(what, (weight, bias), rank, alpha, (A, B) to load, x): layers the
    notebook never uses, seeded and moved by the grader."""
    generator = torch.Generator().manual_seed(seeded(1415))
    normal = functools.partial(random_normal, generator)

    def case(what, in_features, out_features, bias, rank, alpha, batch, dtype=torch.float32):
        weight = normal(out_features, in_features, std=in_features ** -0.5, dtype=dtype)
        weights = weight, normal(out_features, std=0.5, dtype=dtype) if bias else None
        loaded = (normal(rank, in_features, std=in_features ** -0.5, dtype=dtype),
                  normal(out_features, rank, std=rank ** -0.5, dtype=dtype))
        return what, weights, rank, alpha, loaded, normal(*batch, in_features, dtype=dtype)

    return [
        case("nn.Linear(12, 20), rank 4, alpha 6, 5 vectors", 12, 20, True, 4, 6.0, (5,)),
        case("nn.Linear(20, 7) without bias, rank 3, alpha 12, a batch of sequences (2, 6, 20)", 20, 7, False, 3, 12.0,
             (2, 6)),
        case("float64 nn.Linear(9, 16), rank 1, alpha 0.25, sequences (3, 2, 9)", 9, 16, True, 1, 0.25, (3, 2),
             torch.float64),
    ]


def _copy(value):
    """A tensor read from the learner's layer as a plain copy (graded, it is one already)."""
    return value.detach().cpu().clone() if isinstance(value, torch.Tensor) else value


def _is_parameter(layer, name: str) -> bool:
    """True if `name` is one of the layer's registered parameters (here or in the sandbox)."""
    try:
        layer.get_parameter(name)
        return True
    except remote.SessionEnded:
        raise
    except Exception:  # not a parameter, or no get_parameter at all
        return False


def _check_base(check: Checker, what: str, layer, weight: torch.Tensor, bias) -> None:
    """self.base: an nn.Linear holding the weight and bias given, as they were."""
    base = getattr(layer, "base", None)
    if not remote.is_instance(base, nn.Linear):
        check.require(f"{what}: self.base is the layer given", False, expected="the nn.Linear given, as self.base",
                      actual=repr(base)[:80], hint="keep the layer given as self.base: its weight is the pretrained one")
    kept, kept_bias = _copy(getattr(base, "weight", None)), _copy(getattr(base, "bias", None))
    same_weight = isinstance(kept, torch.Tensor) and kept.dtype == weight.dtype and kept.shape == weight.shape and bool(
        torch.equal(kept, weight))
    same_bias = (kept_bias is None if bias is None else isinstance(kept_bias, torch.Tensor) and kept_bias.dtype == bias.dtype
                 and kept_bias.shape == bias.shape and bool(torch.equal(kept_bias, bias)))
    if bias is None and kept_bias is not None:
        actual = "a bias where the layer given has none"
    elif not same_weight:
        actual = "another weight" + (f" ({kept.dtype}, {tuple(kept.shape)})" if isinstance(kept, torch.Tensor) else "")
    else:
        actual = "another bias"
    check.that(f"{what}: self.base is the layer given, its weight and bias as they were", same_weight and same_bias,
               "the pretrained weight and bias, unchanged", actual, f"this is {LORA_SLIPS['base_changed']}")


def _check_factors(check: Checker, what: str, layer, weight: torch.Tensor, rank: int):
    """lora_A (rank, in) and lora_B (out, rank), registered parameters in the
    layer's dtype; returns their starting values (copies)."""
    out_features, in_features = weight.shape
    A, B = _copy(getattr(layer, "lora_A", None)), _copy(getattr(layer, "lora_B", None))
    name = f"{what}: lora_A ({rank}, {in_features}) and lora_B ({out_features}, {rank}), parameters in the layer's dtype"
    if not (isinstance(A, torch.Tensor) and isinstance(B, torch.Tensor)):
        check.require(name, False, expected="self.lora_A and self.lora_B, two tensors",
                      actual=f"lora_A: {type(A).__name__}, lora_B: {type(B).__name__}",
                      hint="the layer keeps its two factors as self.lora_A and self.lora_B, each a parameter "
                           "tensor of its own (not a layer)")
    shapes = tuple(A.shape), tuple(B.shape)
    if shapes != ((rank, in_features), (out_features, rank)):
        slip = {((in_features, rank), (rank, out_features)): "transposed",
                ((out_features, rank), (rank, in_features)): "swapped"}.get(shapes)
        check.require(name, False, expected=f"lora_A {(rank, in_features)}, lora_B {(out_features, rank)}",
                      actual=f"lora_A {shapes[0]}, lora_B {shapes[1]}",
                      hint=f"this is {LORA_SLIPS[slip]}" if slip else
                      "A takes x's in_features down to rank numbers, B takes those up to out_features")
    plain = [factor for factor in ("lora_A", "lora_B") if not _is_parameter(layer, factor)]
    if plain:
        check.require(name, False, expected="lora_A and lora_B registered as parameters of the layer",
                      actual=f"{' and '.join(plain)}: a plain tensor, not a parameter",
                      hint="a plain tensor kept on a module is not one of its parameters: the optimizer would never "
                           "see it, nor load_state_dict")
    check.that(name, A.dtype == weight.dtype and B.dtype == weight.dtype, str(weight.dtype),
               f"lora_A {A.dtype}, lora_B {B.dtype}", "make A and B in the base layer's dtype")
    return A, B


def _check_start(check: Checker, what: str, A: torch.Tensor, B: torch.Tensor) -> None:
    a_zero, b_zero = not bool(A.any()), not bool(B.any())
    slip = "both_zero" if a_zero and b_zero else "both_random" if not b_zero and not a_zero else "a_zero" if a_zero else None
    if check.that(f"{what}: at the start lora_B is zero and lora_A is not", slip is None,
                  "B all zeros, A random", f"A {'zero' if a_zero else 'random'}, B {'zero' if b_zero else 'random'}",
                  f"this is {LORA_SLIPS[slip]}" if slip else ""):
        rank, inputs = A.shape
        bound = 1 / inputs ** 0.5  # kaiming_uniform_ with a = √5: uniform within ±1/√(in features)
        largest, spread = A.abs().max().item(), A.double().std().item() if A.numel() > 1 else 0.0
        too_large = largest > bound * (1 + 1e-6) and spread > 1.5 / rank  # nor peft's "gaussian", std 1/rank
        slip = "a_constant" if bool((A == A.flatten()[0]).all()) else "a_too_large" if too_large else None
        check.that(f"{what}: lora_A random, of the size peft starts it at", slip is None,
                   f"values within ±{bound:.3f}, or a standard deviation of about 1/{rank}, not all the same",
                   f"largest |value| {largest:.3f}, standard deviation {spread:.3f}"
                   + (", every value the same" if slip == "a_constant" else ""), f"this is {LORA_SLIPS[slip]}" if slip else "")


def _check_new_output(check: Checker, what: str, layer, weights, A, B, rank: int, alpha: float, x) -> None:
    """A new layer (B zero) gives the base layer's output; `A` and `B` are
    the layer's own starting values."""
    with torch.no_grad():
        out = check.call(layer, x)
    zero_A, zero_B = torch.zeros_like(A), torch.zeros_like(B)
    new = _lora_outputs(*weights, zero_A, zero_B, rank, alpha, x)
    mistakes = _lora_mistakes(new, ("no_base", "base_twice"))
    if B.any() and A.any():
        mistakes[LORA_SLIPS["both_random"]] = _lora_outputs(*weights, A, B, rank, alpha, x)[None]
    tolerance = dict(atol=1e-10, rtol=1e-10) if x.dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    hint = _slip_hint(out, mistakes, "at the start the update must be zero, so that the adapted model is the "
                                     "pretrained one until training moves it", **tolerance)
    check.close(f"{what}: a new layer gives the base layer's output", out, new[None], hint=hint, **tolerance)


def _check_frozen(check: Checker, what: str, layer, x) -> None:
    """The base layer's weight and bias frozen, A and B trainable."""
    flags, _ = check.parameter_gradients(layer, x)
    trainable = [name for name in ("base.weight", "base.bias") if flags.get(name)]
    frozen = [name for name in ("lora_A", "lora_B") if not flags.get(name)]
    hint = f"this is {LORA_SLIPS['trainable_base']}" if trainable else f"this is {LORA_SLIPS['not_trained']}"
    check.that(f"{what}: only lora_A and lora_B train (the base layer's weight and bias frozen)",
               not trainable and not frozen, "requires_grad: False for the base layer's weight and bias, True for A and B",
               f"{', '.join(trainable)} trainable" if trainable else f"{', '.join(frozen)} frozen", hint)


def _load(check: Checker, layer, weights: dict) -> None:
    """Load A and B (and the base layer's weights) into the learner's layer."""
    try:
        layer.load_state_dict(weights, strict=False)
    except remote.SessionEnded:
        raise
    except Exception as error:
        check.require("the layer takes A and B by load_state_dict", False, expected="lora_A and lora_B loaded",
                      actual=str(error).splitlines()[0][:120],
                      hint="keep A and B as the layer's parameters lora_A and lora_B, with the shapes asked")


def _reference_gradients(weights, rank: int, alpha: float, A, B, x):
    """(d sum(y²)/dx, d/dA, d/dB) of the reviewed layer holding these weights."""
    with torch.random.fork_rng(devices=[]):
        reference = lora.LoRALinear(_base_layer(*weights), rank, alpha)
    reference.load_state_dict({"lora_A": A, "lora_B": B}, strict=False)
    _, gradient = remote.local_gradient(reference, (x,), 0)
    return gradient, reference.lora_A.grad, reference.lora_B.grad


def _check_gradients(check: Checker, what: str, layer, weights, rank: int, alpha: float, A, B, x) -> None:
    """The gradients of A and B after a backward pass, against the reviewed layer's."""
    float64 = x.dtype == torch.float64
    tolerance = dict(atol=1e-9, rtol=1e-9) if float64 else dict(atol=1e-4, rtol=1e-4)
    _, expected_A, expected_B = _reference_gradients(weights, rank, alpha, A, B, x)
    _, gradients = check.parameter_gradients(layer, x)
    name = f"{what}: after a backward pass, the gradients of lora_A and lora_B"
    got = [gradients.get(factor) for factor in ("lora_A", "lora_B")]
    if any(grad is None for grad in got):
        check.fail(name, "a gradient for A and for B", "none for " + " and ".join(
            factor for factor, grad in zip(("lora_A", "lora_B"), got) if grad is None), f"this is {LORA_SLIPS['not_trained']}")
        return
    check.close(name, torch.cat([grad.flatten() for grad in got]),
                torch.cat([expected_A.flatten(), expected_B.flatten()]), **tolerance,
                hint="compute the update from the parameters themselves, with differentiable tensor operations")


def check_lora_linear(LoRALinear) -> None:
    """Check a learner's `LoRALinear(base, rank, alpha)` class against
    `lora.LoRALinear` on three layers the notebook never uses (see the
    module docstring): the base layer kept as given, lora_A and lora_B in
    their shapes and dtype, B zero and A not at the start, a new layer equal
    to the base layer, only A and B trainable, the output
    with seeded A and B loaded, and the gradients."""
    with Checker("14.lora_linear", references=[lora.LoRALinear]) as check:
        check.require_module_class(LoRALinear, "LoRALinear")
        for what, weights, rank, alpha, (A, B), x in _lora_cases():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seeded(1416))
                layer = check.call(LoRALinear, _base_layer(*weights), rank, alpha)
            if not remote.is_instance(layer, nn.Module):
                check.require(f"{what}: LoRALinear(base, rank, alpha) is a module", False, "an nn.Module",
                              type(layer).__name__, "derive the class from nn.Module")
            _check_base(check, what, layer, *weights)
            start_A, start_B = _check_factors(check, what, layer, weights[0], rank)
            _check_start(check, what, start_A, start_B)
            _check_new_output(check, what, layer, weights, start_A, start_B, rank, alpha, x)
            _check_frozen(check, what, layer, x)
            _load(check, layer, {"base.weight": weights[0], **({} if weights[1] is None else {"base.bias": weights[1]}),
                                 "lora_A": A, "lora_B": B})
            with torch.no_grad():
                out = check.call(layer, x)
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: a {x.dtype} layer gives {x.dtype} outputs", str(x.dtype), str(out.dtype),
                           "build no new tensor in another dtype")
                continue
            outputs, precise = _lora_outputs(*weights, A, B, rank, alpha, x), x.dtype == torch.float64
            expected = outputs[None]
            tolerance = dict(atol=1e-10, rtol=1e-10) if precise else dict(atol=1e-5, rtol=1e-5)
            hint = FLOAT32_ONLY if precise and _within(out, expected, 1e-4) else _slip_hint(
                out, _lora_mistakes(outputs), _LORA_HINT, **tolerance)
            if check.close(f"{what}: with A and B set, base(x) + (alpha / rank) · x Aᵀ Bᵀ", out, expected, hint=hint,
                           **tolerance):
                _check_gradients(check, what, layer, weights, rank, alpha, A, B, x)

