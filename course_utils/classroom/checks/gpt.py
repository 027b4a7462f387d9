"""Checkers for the exercises of lesson 10: nucleus (top-p) filtering, and
the decoder's forward pass with a KV cache.

Top-p's expected values come from `course_utils.generation.top_p_filter`:
keep the smallest set of most likely tokens whose probabilities reach p, the
token that crosses p included, and set every other logit to -inf.
tests/test_sampling.py checks that definition on its own. The inputs are
logits, not log-probabilities (each row is shifted by a constant, which the
softmax ignores), and the two rows have different distributions, so an answer
that skips the normalisation, or counts the kept tokens on one row and reuses
the count, gives other tokens.
"""

import torch
import torch.nn.functional as F

from course_utils.attention import MultiHeadAttention
from course_utils.generation import top_p_filter
from course_utils.gpt import GPT, GPTConfig, forward_with_past
from course_utils.transformer import EncoderLayer
from . import Checker, seeded

# Sorted, row 0's probabilities are 0.40, 0.25, 0.15, 0.10, 0.06, 0.04 (running
# sums 0.40, 0.65, 0.80, 0.90, 0.96, 1) and row 1's 0.70, 0.12, 0.08, 0.05,
# 0.03, 0.02 (0.70, 0.82, 0.90, 0.95, 0.98, 1): no running sum lands on a p below.
ROWS = torch.tensor([[0.10, 0.40, 0.04, 0.25, 0.06, 0.15],
                     [0.05, 0.02, 0.12, 0.70, 0.03, 0.08]]).log() + torch.tensor([[1.5], [-0.7]])
CASES = [(0.6, "row 0 keeps its 2 most likely (0.40 + 0.25 reach 0.6), row 1 its most likely (0.70)"),
         (0.3, "each row keeps only its most likely token"),
         (0.85, "row 0 keeps 4 (0.90 is the first sum to reach 0.85), row 1 keeps 3 (0.90)")]
LARGE_VOCABULARY = 50_257  # GPT-2's


def _kept_if(logits: torch.Tensor, keep_sorted, probabilities=None) -> torch.Tensor:
    """The kept tokens (bool, like logits) when keep_sorted(sorted probabilities)
    chooses them in sorted order; `probabilities` default to the softmax."""
    probabilities = logits.softmax(dim=-1) if probabilities is None else probabilities
    ordered, order = probabilities.sort(dim=-1, descending=True)
    return torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order, keep_sorted(ordered))


def _mass_before(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities.cumsum(-1) - probabilities


def _slips(logits: torch.Tensor, p: float) -> dict[str, tuple[torch.Tensor, ...]]:
    """What each classic slip keeps, as bool masks over the vocabulary (one per way of writing it)."""
    ascending, order_up = logits.softmax(-1).sort(dim=-1)
    first_row_count = int((_mass_before(logits[0].softmax(-1).sort(descending=True).values) < p).sum())
    top_first = lambda probs: torch.arange(probs.size(-1)) == 0
    slips = {
        "dropping the token that crosses p (keep it: the kept mass must reach p)":
            (_kept_if(logits, lambda probs: probs.cumsum(-1) < p),
             _kept_if(logits, lambda probs: (probs.cumsum(-1) <= p) | top_first(probs))),
        "sorting from least to most likely (the most likely must come first)":
            torch.zeros_like(logits, dtype=torch.bool).scatter(-1, order_up, _mass_before(ascending) < p),
        "keeping the mask in sorted order (it must go back to the vocabulary's order, by the sort's indices)":
            _mass_before(logits.softmax(-1).sort(dim=-1, descending=True).values) < p,
        "running sums of the logits instead of the probabilities":
            _kept_if(logits, lambda ordered: _mass_before(ordered) < p, probabilities=logits),
        "exponentiating the logits without normalising them (they are not log-probabilities: a row's exp does not sum to 1)":
            _kept_if(logits, lambda ordered: _mass_before(ordered) < p, probabilities=logits.exp()),
        "counting the tokens to keep on the first row and keeping that many in every row":
            _kept_if(logits, lambda ordered: torch.arange(ordered.size(-1)).expand_as(ordered) < first_row_count),
        "a softmax over the rows (dim=0) instead of over the vocabulary":
            _kept_if(logits, lambda ordered: _mass_before(ordered) < p, probabilities=logits.softmax(0)),
    }
    return {slip: kept if isinstance(kept, tuple) else (kept,) for slip, kept in slips.items()}


def _borderline(logits: torch.Tensor, p: float, within: float = 1e-4) -> torch.Tensor:
    """Tokens whose mass before them is within `within` of p: float32 rounding
    may keep or drop them, so either is accepted."""
    return _kept_if(logits, lambda ordered: (_mass_before(ordered.double()) - p).abs() < within)


def _show(kept: torch.Tensor, limit: int = 8) -> str:
    rows = []
    for i, row in enumerate(kept):
        tokens = row.nonzero().flatten().tolist()
        rows.append(f"row {i}: " + (f"tokens {tokens}" if len(tokens) <= limit else f"{len(tokens):,} tokens"))
    return "; ".join(rows)


def _returned_logits(check: Checker, out, logits: torch.Tensor, what: str) -> bool:
    """The answer's output is a tensor like the logits, without NaN, and the input was left alone."""
    check.require(f"{what}: returns logits of the same shape", isinstance(out, torch.Tensor) and out.shape == logits.shape,
                  expected=f"a tensor of shape {tuple(logits.shape)}",
                  actual=f"{type(out).__name__} {tuple(getattr(out, 'shape', ()))}",
                  hint="return the logits with the dropped tokens set to -inf, one row per row")
    if not check.that(f"{what}: the input logits are left as they were", not check.wrote_into,
                      "logits unchanged", "your function wrote into its input", "build a new tensor; do not edit the one you were given"):
        return False
    if (torch.isfinite(out) & (out < -1e4)).any():
        return check.that(f"{what}: dropped tokens at -inf", False, "-inf for every dropped token",
                          f"{out[torch.isfinite(out) & (out < -1e4)][0].item():.3g}",
                          "a very negative number still gets a tiny probability, and is not what the filter promises: use -inf")
    nan = torch.isnan(out)
    if nan.any():
        where = tuple(nan.nonzero()[0].tolist())
        return check.that(f"{what}: no NaN in the output", False, "logits or -inf", f"NaN at {where} ({int(nan.sum())} in all)",
                          "a NaN comes from arithmetic on -inf or on 0 · inf: a dropped token's logit must be set to -inf, not computed")
    return True


def _same_tokens(check: Checker, out: torch.Tensor, logits: torch.Tensor, p: float, what: str) -> None:
    """The kept tokens are the reference's (borderline ones either way), with their logits unchanged."""
    kept, wanted = torch.isfinite(out), torch.isfinite(top_p_filter(logits, p))
    differ = (kept != wanted) & ~_borderline(logits, p)
    if not differ.any():
        check.close(f"{what}: the kept tokens keep their logits, unchanged", out[kept], logits[kept],
                    hint="change nothing but the dropped tokens: the softmax renormalises the rest")
        if check.results[-1][0]:
            check.that(what, True)
        return
    near = _borderline(logits, p)
    named = [slip for slip, ways in _slips(logits, p).items() if any(not ((kept != way) & ~near).any() for way in ways)]
    if out.min() >= 0 and (out == 0).any() and torch.isfinite(out).all():
        named = ["returning probabilities (dropped ones at 0) instead of logits at -inf"]
    check.fail(what, expected=_show(wanted), actual=_show(kept),
               hint=f"your tokens are exactly what {named[0]} gives" if named else
               "for each row, list the tokens from most to least likely and find where their probabilities first reach p")


def check_top_p_filter(top_p_filter_answer) -> None:
    """Check a learner's `top_p_filter(logits, p)`: two rows of six tokens at
    three values of p, random rows of other sizes and values, rows that
    already hold -inf, float64 logits, then p = 1 on GPT-2's vocabulary size
    and on a peaked row."""
    with Checker("10.top_p_filter", references=[top_p_filter]) as check:
        for p, what in CASES:
            out = check.call(top_p_filter_answer, ROWS, p)
            if not _returned_logits(check, out, ROWS, f"p = {p}"):
                return
            _same_tokens(check, out, ROWS, p, f"p = {p}: {what}")
        if not check.passed:
            return  # the small rows already name the slip; larger ones would only repeat it
        generator = torch.Generator().manual_seed(seeded(1010))
        for rows, vocabulary, p in [(3, 50, 0.7), (5, 200, 0.92)]:
            logits = torch.randn(rows, vocabulary, generator=generator) * torch.linspace(0.5, 3.0, rows)[:, None] + 4.0
            out = check.call(top_p_filter_answer, logits, p)
            if _returned_logits(check, out, logits, f"{rows} random rows of {vocabulary} logits, p = {p}"):
                _same_tokens(check, out, logits, p, f"{rows} random rows of {vocabulary} logits, p = {p}: the smallest set reaching p")
        after_top_k = torch.randn(2, 30, generator=generator).index_fill(1, torch.arange(0, 30, 3), float("-inf"))
        out = check.call(top_p_filter_answer, after_top_k, 0.8)
        if _returned_logits(check, out, after_top_k, "rows that already hold -inf (as after top-k)"):
            _same_tokens(check, out, after_top_k, 0.8, "rows that already hold -inf (as after top-k), p = 0.8")
        double = ROWS.double()
        out = check.call(top_p_filter_answer, double, 0.6)
        check.that("float64 logits come back as float64", isinstance(out, torch.Tensor) and out.dtype == torch.float64,
                   "torch.float64", getattr(out, "dtype", type(out).__name__), "keep the logits' own dtype")
        for name, logits in [(f"p = 1 keeps all {LARGE_VOCABULARY:,} tokens of GPT-2's vocabulary",
                              torch.randn(2, LARGE_VOCABULARY, generator=generator) * 2),
                             ("p = 1 keeps all 1,001 tokens of a row that gives one token 99.9998%",
                              torch.cat([torch.tensor([[20.0]]), torch.zeros(1, 1000)], dim=1))]:
            everything = check.call(top_p_filter_answer, logits, 1.0)
            dropped = int((~torch.isfinite(everything)).sum()) if isinstance(everything, torch.Tensor) else None
            check.that(name, dropped == 0, "every token kept", f"{dropped} tokens set to -inf" if dropped is not None else
                       type(everything).__name__, "the probabilities add up to 1 only in exact arithmetic: a float32 softmax's rounded "
                       "probabilities can total a little more, so the last tokens already have 1 before them "
                       "(a float64 sum does not undo that). At p = 1, nothing may be dropped")
        peaked = torch.tensor([[9.0, 0.0, 0.0, 0.0]])
        alone = check.call(top_p_filter_answer, peaked, 0.9)
        check.that("a token with 99.96% of the mass is kept alone at p = 0.9",
                   isinstance(alone, torch.Tensor) and torch.isfinite(alone).tolist() == [[True, False, False, False]],
                   "only token 0 kept", repr(alone)[:80], "the nucleus shrinks when the model is sure")


# --- the decoder's forward pass with a KV cache --------------------------------------

def _test_model(dtype: torch.dtype = torch.float32):
    """A GPT of a size the lesson never uses (vocabulary 13, context 12, width
    24, 3 heads, 2 layers), with every weight random, the norms and biases
    too: a slip in any of them shows in the logits."""
    torch.manual_seed(seeded(1011))
    model = GPT(GPTConfig(vocab_size=13, context=12, width=24, layers=2, heads=3))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0 if parameter.dim() > 1 else 1.0, 0.3)
    return model.to(dtype).eval()


def _slipped_forward(model, ids: torch.Tensor, past, slip: str):
    """What an answer with one classic slip returns: (logits, present)."""
    held = 0 if past is None or slip == "past ignored" else past[0][0].size(2)
    start = 0 if slip == "positions restart at 0" else held
    x = model.token_embedding(ids) + model.position_embedding(torch.arange(start, start + ids.size(1)))
    present = []
    for i, block in enumerate(model.blocks):
        attention = block.self_attn
        heads = attention.num_heads
        if slip == "heads split by a reshape":
            split = lambda t: t.reshape(t.size(0), heads, t.size(1), -1)
        else:
            split = attention.split_heads
        q, k, v = (split(t) for t in attention.in_proj(x if slip == "post-LN" else block.norm1(x)).chunk(3, dim=-1))
        if held:
            k, v = torch.cat([past[i][0], k], dim=2), torch.cat([past[i][1], v], dim=2)
        present.append((k, v))
        scale = {"scores not scaled": 1.0, "scaled by the width": attention.d_model ** -0.5}.get(slip, attention.head_dim ** -0.5)
        scores = q @ k.transpose(-2, -1) * scale
        corner = {"mask in the top-left corner": 0, "no mask": k.size(2)}.get(slip, k.size(2) - q.size(2))
        allowed = torch.ones(q.size(2), k.size(2), dtype=torch.bool).tril(diagonal=corner)
        attended = attention.out_proj(attention.merge_heads(scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v))
        if slip == "post-LN":
            x = block.norm1(x + attended)
            x = block.norm2(x + block.feed_forward(x))
        else:
            x = x + attended
            x = x + block.feed_forward(block.norm2(x))
    final = x if slip == "no final norm" else model.final_norm(x)
    return F.linear(final, model.token_embedding.weight), present


GPT_FORWARD_SLIPS = {
    "positions restart at 0": "positions that restart at 0 after the cache (they continue from the positions it holds)",
    "mask in the top-left corner": "a causal mask in the top-left corner: new token i may see keys 0..i, but it sits "
                                   "after the cached positions (this is what is_causal=True does when queries and keys differ in number)",
    "no mask": "no causal mask: every position sees the ones after it",
    "past ignored": "the past ignored: the new tokens attend only to each other, at positions from 0",
    "scores not scaled": "scores not divided by the square root of the head width",
    "scaled by the width": "scores divided by the square root of the model's width, not of one head's",
    "post-LN": "a post-LN block (this GPT normalises each sublayer's input, GPT-2's pre-LN)",
    "no final norm": "no final LayerNorm before the head",
    "heads split by a reshape": "heads split by a reshape straight to (B, heads, L, head width), which mixes positions",
}


def _present_matches(present, expected) -> bool:
    return (isinstance(present, (list, tuple)) and len(present) == len(expected) and all(
        isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(t, torch.Tensor) and t.shape == e.shape and torch.allclose(t.double(), e.double(), atol=1e-5, rtol=1e-4)
            for t, e in zip(pair, want)) for pair, want in zip(present, expected)))


def check_gpt_forward(gpt_forward_answer) -> None:
    """Check a learner's `gpt_forward(model, ids, past=None)` against
    `gpt.forward_with_past` on a GPT of other sizes with random weights: a
    whole text without a past, 4 new tokens after 5 cached (the case that
    shows the mask's corner), 1 after 9, and a float64 model."""
    with Checker("10.gpt_forward", references=[GPT.forward, MultiHeadAttention.forward, forward_with_past]) as check:
        model = _test_model()
        generator = torch.Generator().manual_seed(seeded(1012))
        text = torch.randint(13, (2, 12), generator=generator)
        with torch.no_grad():
            _, past_of_5 = forward_with_past(model, text[:, :5])
            _, past_of_9 = forward_with_past(model, text[:, :9])
        cases = [("a text of 7 tokens, no past", text[:, :7], None),
                 ("4 new tokens after 5 in the past", text[:, 5:9], past_of_5),
                 ("1 new token after 9 in the past", text[:, 9:10], past_of_9)]
        for what, ids, past in cases:
            with torch.no_grad(), _modules_called() as called:
                out = check.call(gpt_forward_answer, model, ids, past)
            with torch.no_grad():
                expected_logits, expected_present = forward_with_past(model, ids, past)
            # In the notebook only: graded answers run in the sandbox, whose watch names any course code they run.
            if not check.that(f"{what}: the attention written out, no block or attention module called", not called,
                              "your own attention", f"your code called {', '.join(sorted(called))}",
                              "use the block's pieces (norm1, self_attn.in_proj, out_proj, norm2, feed_forward), "
                              "not the block, its attention module or the model"):
                return
            check.require(f"{what}: returns (logits, present)", isinstance(out, (tuple, list)) and len(out) == 2,
                          "a pair (logits, present)", f"{type(out).__name__}",
                          "return the logits and the list of (keys, values) pairs, one per layer")
            logits, present = out
            if not check.that(f"{what}: ids and past left as they were", not check.wrote_into, "inputs unchanged",
                              "your function wrote into its input", "build new tensors (torch.cat makes one); do not edit the past"):
                return
            with torch.no_grad():
                mistakes = {GPT_FORWARD_SLIPS[slip]: _slipped_forward(model, ids, past, slip)[0] for slip in GPT_FORWARD_SLIPS}
            if not check.close(f"{what}: the logits", logits, expected_logits, mistakes=mistakes,
                               hint="compare one block at a time with the layers of the model: embeddings, "
                                    "then attention, then the feed-forward network"):
                return
            positions = expected_present[0][0].size(2)
            check.that(f"{what}: present holds the keys and values of all {positions} positions, layer by layer",
                       _present_matches(present, expected_present),
                       f"{len(expected_present)} pairs (keys, values), each {tuple(expected_present[0][0].shape)}",
                       _describe_present(present),
                       "each layer's pair is its past keys and values with the new positions' appended along the positions")
        double = _test_model(torch.float64)
        with torch.no_grad():
            out = check.call(gpt_forward_answer, double, text[:, :6], None)
        logits = out[0] if isinstance(out, (tuple, list)) and out else out
        check.that("a float64 model gives float64 logits", isinstance(logits, torch.Tensor) and logits.dtype == torch.float64,
                   "torch.float64", getattr(logits, "dtype", type(logits).__name__),
                   "build every new tensor in the model's dtype (a mask or positions have none to lose)")


class _modules_called:
    """`with _modules_called() as called:` the names of the GPT, block and
    attention modules whose forward ran inside (a global hook, so that the
    model handed to the answer stays as it was)."""

    def __enter__(self) -> set:
        self.called = set()
        watched = (GPT, EncoderLayer, MultiHeadAttention)
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(
            lambda module, args: self.called.add(type(module).__name__) if isinstance(module, watched) else None)
        return self.called

    def __exit__(self, *exception) -> None:
        self.handle.remove()


def _describe_present(present) -> str:
    if not isinstance(present, (list, tuple)):
        return type(present).__name__
    shapes = [tuple(tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in pair)
              if isinstance(pair, (list, tuple)) else type(pair).__name__ for pair in present]
    return f"{len(present)} entries: {shapes[:2]}{' ...' if len(shapes) > 2 else ''} (shapes) or values that differ"
