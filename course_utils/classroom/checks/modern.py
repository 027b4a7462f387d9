"""Checkers for lesson 12: the pieces of a modern, Llama-style decoder.

Each compares the learner's function with the reviewed one in
`course_utils.modern` or `course_utils.positional`, on inputs the notebook
never uses (other shapes, float64, seeded random values that the grader's
seed moves), and names the classic slip that a wrong output matches:

- `check_rms_norm`: rows of ordinary size, rows 1000 times smaller (where ε's
  place matters) with a row of zeros, a square input (where a mean without
  keepdim broadcasts along the wrong axis), 2-D and 3-D inputs, a gain far
  from 1, float64 with another ε, and the gradient;
- `check_swiglu`: weights stored (out, in) as nn.Linear stores them, with a
  hidden width other than the model's (so that weights left untransposed
  raise, which the report says), 3-D and 2-D inputs, float64;
- `check_rotate_at`: positions after a cache (7..12), each row's own positions
  (a left-padded batch, a batch after a cache), head widths 8, 16 and 32,
  Llama 3's base, float64;
- `check_grouped_attention`: reviewed `modern.GroupedQueryAttention` modules
  with seeded weights and (heads, key-value heads) = (6, 2), (4, 1), (4, 4)
  and (8, 2): only the groups of 2 and 3 show key-value heads repeated in the
  wrong order; positions after a cache and per row; another rotary base;
  float64.
"""

import copy
import functools
import itertools

import torch
import torch.nn.functional as F

from course_utils import modern, positional
from .. import remote
from . import Checker, random_normal, seeded

# --- 12.rms_norm --------------------------------------------------------------------

RMS_NORM_SLIPS = {
    "centred": "the mean subtracted first (LayerNorm's centring: RMSNorm does not re-centre)",
    "eps_outside": "ε added to the root mean square instead of under the square root",
    "no_gain": "the gain (weight) left out",
    "unbiased_std": "the standard deviation (centred, divided by D - 1, as torch.std) instead of the root mean square",
    "centred_variance": "the variance (the mean of squared deviations from the mean) instead of the mean of the squares",
    "no_sqrt": "the mean of the squares without its square root",
    "no_eps": "ε left out",
    "eps_fixed": "ε fixed at 1e-5 whatever the eps argument says",
    "no_keepdim": "the mean taken without keepdim, so that it broadcasts along the wrong axis",
    "dim0": "the mean over dimension 0 instead of the last one (each vector is scaled by its own features)",
    "dim1": "the mean over dimension 1 instead of the last one (each vector is scaled by its own features)",
}

_RMS_NORM_HINT = "divide each vector by the root of the mean of its own squared features plus ε, then scale by the gain"
FLOAT32_PRECISION = ("your values are right to float32's precision only: a float64 input must be computed in float64 "
                     "(cast up to at least float32, never down)")


def _slipped_rms_norm(x, weight, eps, slip: str | None = None) -> torch.Tensor:
    """RMSNorm over the last axis, in float64, with one named slip from
    RMS_NORM_SLIPS (or none, which gives the reviewed result)."""
    x, weight = x.double(), weight.double()
    dim, keep = {"dim0": 0, "dim1": 1}.get(slip, -1), slip != "no_keepdim"
    eps = {"no_eps": 0.0, "eps_fixed": 1e-5}.get(slip, eps)
    if slip in ("centred", "centred_variance"):
        square_mean = x.var(dim, unbiased=False, keepdim=keep)
    elif slip == "unbiased_std":
        square_mean = x.var(dim, keepdim=keep)
    else:
        square_mean = x.pow(2).mean(dim, keepdim=keep)
    if slip == "eps_outside":
        scale = square_mean.sqrt() + eps
    elif slip == "no_sqrt":
        scale = square_mean + eps
    else:
        scale = (square_mean + eps).sqrt()
    normalised = (x - x.mean(dim, keepdim=keep) if slip == "centred" else x) / scale
    return normalised if slip == "no_gain" else normalised * weight


def _rms_norm_mistakes(x, weight, eps) -> dict:
    """{slip's name: what it gives} for the slips that run on this input and
    give something else than the right answer on it."""
    right, mistakes = _slipped_rms_norm(x, weight, eps), {}
    for slip, name in RMS_NORM_SLIPS.items():
        try:
            wrong = _slipped_rms_norm(x, weight, eps, slip)
        except RuntimeError:  # a mean without keepdim broadcasts on a square input only
            continue
        if wrong.shape == right.shape and not torch.allclose(wrong, right, atol=1e-3, rtol=1e-3):
            mistakes[name] = wrong
    return mistakes


def _rms_norm_cases():
    """(what, x, weight, eps) the notebook never uses: seeded, moved by the grader."""
    generator = torch.Generator().manual_seed(seeded(1212))

    normal = functools.partial(random_normal, generator)

    small = normal(5, 12, mean=0.3, std=1.0) * 1e-3
    small[-1] = 0.0
    return [
        ("a square input (6 vectors of width 6)", normal(6, 6, mean=0.5, std=2.0), normal(6, mean=1.0, std=0.5), 1e-5),
        ("a batch of sequences (2, 5, 16)", normal(2, 5, 16, mean=0.5, std=3.0), normal(16, mean=1.0, std=0.5), 1e-5),
        ("rows 1000 times smaller (where ε's place matters) and a row of zeros", small, normal(12, mean=1.0, std=0.5), 1e-5),
        ("float64 rows of scale 0.001, eps=1e-6 as in the first LLaMA", normal(3, 4, 8, std=1e-3, dtype=torch.float64),
         normal(8, mean=1.0, std=0.5, dtype=torch.float64), 1e-6),
    ]


def check_rms_norm(rms_norm) -> None:
    """Check a learner's `rms_norm(x, weight, eps=1e-5)` against
    `modern.rms_norm`: a square input (6, 6), a batch of sequences (2, 5, 16),
    rows of scale 0.001 with a row of zeros (eps 1e-5), float64 rows of scale
    0.001 with eps 1e-6, each with a gain far from 1; the input left as it
    was, the dtype kept, and the gradient with respect to x."""
    with Checker("12.rms_norm", references=[modern.rms_norm]) as check:
        cases = _rms_norm_cases()
        for what, x, weight, eps in cases:
            out = check.call(rms_norm, x, weight, eps=eps)
            if not check.that(f"{what}: x and weight left as they were", not check.wrote_into, "inputs unchanged",
                              "your function wrote into " + ", ".join(("x", "weight", "eps")[at] if isinstance(at, int)
                                                                       else at for at in check.wrote_into),
                              "compute new tensors: an in-place operation changes the caller's tensor"):
                continue
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: the result keeps the input's dtype", str(x.dtype), str(out.dtype),
                           "build no new tensor in another dtype, and bring what you computed back to x's")
                continue
            expected = modern.rms_norm(x, weight, eps)
            precise = x.dtype == torch.float64
            tolerance = dict(atol=1e-9, rtol=1e-9) if precise else dict(atol=1e-5, rtol=1e-4)
            hint = FLOAT32_PRECISION if precise and _within(out, expected, 1e-4) else _RMS_NORM_HINT
            check.close(f"{what}: the normalised values", out, expected, mistakes=_rms_norm_mistakes(x, weight, eps),
                        hint=hint, **tolerance)
        if not check.passed:  # the values are wrong already: their gradient would say nothing new
            return
        _, x, weight, eps = cases[1]
        _, gradient = check.gradient(rms_norm, x, weight, eps, wrt=0)
        _, expected = remote.local_gradient(lambda *args: modern.rms_norm(*args, eps), (x, weight), 0)
        if gradient is None:
            check.fail("the gradient flows back to x", "a gradient", "none: your result is cut off from x",
                       "keep every step a differentiable tensor operation (no .item(), .detach() or numpy)")
        else:
            check.close("the gradient with respect to x", gradient, expected, atol=1e-4, rtol=1e-3)


def _within(out, expected: torch.Tensor, atol: float) -> bool:
    """True if `out` is a tensor of expected's shape, within atol of it."""
    return (isinstance(out, torch.Tensor) and out.shape == expected.shape
            and bool(((out.detach().double() - expected.double()).abs() <= atol).all()))


# --- 12.swiglu ----------------------------------------------------------------------

SWIGLU_SLIPS = {
    "gate_on_up": "the gate on the wrong branch (SiLU applied to the up projection instead of the gate projection)",
    "gelu": "GELU instead of SiLU (that is GeGLU)",
    "sigmoid": "sigmoid instead of SiLU (that is the plain GLU: SiLU(z) is z · sigmoid(z))",
    "relu": "ReLU instead of SiLU (that is ReGLU)",
    "gate_only": "no gate: SiLU of the gate projection alone, never multiplied by the up projection",
    "up_only": "no gate: the up projection alone, without SiLU of the gate projection",
    "silu_after": "SiLU applied to the product instead of to the gate projection alone",
    "added": "the two branches added instead of multiplied",
}
UNTRANSPOSED = ("the weights used as stored, not transposed: nn.Linear keeps each weight as (out features, in "
                "features), so x goes through its transpose (as F.linear does)")

_SWIGLU_HINT = "project x twice (gate and up), multiply SiLU of the gate by the up branch, then project back down"


def _slipped_swiglu(x, gate_weight, up_weight, down_weight, slip: str | None = None,
                    untransposed: tuple = ()) -> torch.Tensor:
    """SwiGLU in float64 with one named slip from SWIGLU_SLIPS (or none, which
    gives the reviewed result); `untransposed` names the weights ("gate",
    "up", "down") used as stored instead of transposed."""
    def project(t, weight, name):
        return t @ weight.double() if name in untransposed else F.linear(t, weight.double())

    x = x.double()
    gate, up = project(x, gate_weight, "gate"), project(x, up_weight, "up")
    if slip == "gate_on_up":
        gate, up = up, gate
    activation = {"gelu": F.gelu, "sigmoid": torch.sigmoid, "relu": F.relu}.get(slip, F.silu)
    if slip == "silu_after":
        hidden = F.silu(gate * up)
    elif slip == "gate_only":
        hidden = activation(gate)
    elif slip == "up_only":
        hidden = up
    elif slip == "added":
        hidden = activation(gate) + up
    else:
        hidden = activation(gate) * up
    return project(hidden, down_weight, "down")


def _swiglu_cases():
    """(what, x, gate_weight, up_weight, down_weight): seeded, moved by the
    grader; every hidden width differs from the model's."""
    generator = torch.Generator().manual_seed(seeded(1213))

    def case(what, shape, ffn_width, dtype=torch.float32):
        width = shape[-1]
        draw = lambda *size: torch.randn(*size, generator=generator, dtype=torch.float64)
        weights = (draw(ffn_width, width) / width ** 0.5, draw(ffn_width, width) / width ** 0.5,
                   draw(width, ffn_width) / ffn_width ** 0.5)
        return (what, draw(*shape).to(dtype), *(weight.to(dtype) for weight in weights))

    return [case("a batch of sequences (2, 5, 12), ffn_width 32", (2, 5, 12), 32),
            case("a 2-D input (7 vectors of width 16), ffn_width 40", (7, 16), 40),
            case("float64 (3, 4, 8), ffn_width 20", (3, 4, 8), 20, torch.float64)]


def _runs_untransposed(swiglu, x, gate_weight, up_weight, down_weight) -> bool:
    """True if the learner's swiglu raises on these weights (whose hidden
    width is not the model's) and, on square ones drawn here, returns what
    some of the weights used as stored, untransposed, give."""
    try:
        swiglu(x.clone(), gate_weight.clone(), up_weight.clone(), down_weight.clone())
        return False
    except Exception:  # a stub or another bug: the checks that follow report it
        pass
    width = x.size(-1)
    generator = torch.Generator().manual_seed(seeded(1214))
    square = [(torch.randn(width, width, generator=generator, dtype=torch.float64) / width ** 0.5).to(x.dtype)
              for _ in range(3)]
    try:
        out = swiglu(x.clone(), *(weight.clone() for weight in square))
    except Exception:
        return False
    names = ("gate", "up", "down")
    return any(_within(out, _slipped_swiglu(x, *square, untransposed=kept), 1e-4)
               for count in (1, 2, 3) for kept in itertools.combinations(names, count))


def check_swiglu(swiglu) -> None:
    """Check a learner's `swiglu(x, gate_weight, up_weight, down_weight)`
    against `modern.swiglu`, weights stored (out, in) as nn.Linear stores
    them: a batch of sequences (2, 5, 12) with ffn_width 32, a 2-D input
    (7, 16) with ffn_width 40, float64 (3, 4, 8) with ffn_width 20; the
    inputs left as they were and the dtype kept."""
    with Checker("12.swiglu", references=[modern.swiglu]) as check:
        cases = _swiglu_cases()
        if _runs_untransposed(swiglu, *cases[0][1:]):
            check.require(f"{cases[0][0]}: weights stored (out, in), as nn.Linear stores them", False,
                          expected=f"output {tuple(cases[0][1].shape)}",
                          actual="an error where the hidden width is not the model's; with square weights, no error",
                          hint=f"your output, on square weights, is exactly what {UNTRANSPOSED} gives")
        for what, x, gate_weight, up_weight, down_weight in cases:
            out = check.call(swiglu, x, gate_weight, up_weight, down_weight)
            if not check.left_unchanged(f"{what}: x and the weights left as they were"):
                continue
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: the result keeps the input's dtype", str(x.dtype), str(out.dtype),
                           "build no new tensor in another dtype")
                continue
            expected = modern.swiglu(x, gate_weight, up_weight, down_weight)
            tolerance = dict(atol=1e-9, rtol=1e-9) if x.dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
            mistakes = {name: _slipped_swiglu(x, gate_weight, up_weight, down_weight, slip)
                        for slip, name in SWIGLU_SLIPS.items()}
            check.close(f"{what}: (SiLU(x W_gateᵀ) ⊙ x W_upᵀ) W_downᵀ", out, expected, mistakes=mistakes,
                        hint=_SWIGLU_HINT, **tolerance)


# --- 12.rotate_at ---------------------------------------------------------------------

ROTATE_SLIPS = {
    "half_split": "Hugging Face's half-split layout (feature i paired with feature i + Dh/2, as rotate_half does) "
                  "instead of interleaved pairs (2i, 2i + 1)",
    "from_zero": "positions counted 0..L-1 instead of the positions given (a cache's new tokens come after the "
                 "cached ones; a left-padded row starts later)",
    "backwards": "a rotation the wrong way (the sine's sign flipped)",
    "i_exponent": "i instead of 2i in the exponent (base^(-i/Dh), i the pair number)",
    "first_row": "the first row's positions used for every row of the batch",
    "rows_as_heads": "(B, L) positions lined up with the heads instead of the rows (row b's angles must reach all of "
                     "its heads)",
    "base_fixed": "the base fixed at 10,000 whatever the base argument says",
}

_ROTATE_HINT = "turn each pair (x[2i], x[2i+1]) by the angle position · base^(-2i/Dh), the position of its own token"


def _slipped_rotation(x, positions, base, slip: str | None = None) -> torch.Tensor:
    """x (B, H, L, Dh) rotated in float64 at `positions` ((L,) or (B, L)),
    with one named slip from ROTATE_SLIPS (or none, which gives the reviewed
    result)."""
    x, dim = x.double(), x.size(-1)
    if slip == "from_zero":
        positions = torch.arange(x.size(-2))
    elif slip == "first_row" and positions.dim() == 2:
        positions = positions[0]
    exponent = torch.arange(0, dim, 2, dtype=torch.float64) / dim
    if slip == "i_exponent":
        exponent = exponent / 2
    angles = positions.double()[..., None] * (10000.0 if slip == "base_fixed" else base) ** -exponent
    if angles.dim() == 3:
        angles = angles[None] if slip == "rows_as_heads" else angles[:, None]
    if slip == "backwards":
        angles = -angles
    cos, sin = angles.cos(), angles.sin()
    if slip == "half_split":
        first, second = x[..., : dim // 2], x[..., dim // 2:]
        return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)


def _rotation_mistakes(x, positions, base, slips=ROTATE_SLIPS) -> dict:
    """{slip's name: what it gives} for the slips of `slips` that run on this
    input and give something else than the right answer on it."""
    right, mistakes = _slipped_rotation(x, positions, base), {}
    for slip, name in slips.items():
        try:
            wrong = _slipped_rotation(x, positions, base, slip)
        except RuntimeError:  # positions of B rows lined up with H heads: only where B = H
            continue
        if wrong.shape == right.shape and not torch.allclose(wrong, right, atol=1e-3, rtol=1e-3):
            mistakes[name] = wrong
    return mistakes


# Each row's positions: a left-padded batch (as ModernDecoder counts them, padding at 0), and two rows after a cache.
LEFT_PADDED_POSITIONS = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 0, 1, 2, 3]])
AFTER_A_CACHE_POSITIONS = torch.tensor([[5, 6, 7, 8], [2, 3, 4, 5]])


def _rotate_cases():
    """(what, x, positions, base): seeded, moved by the grader. The batch of
    two rows of two heads comes before the batch of three rows of two heads,
    where positions lined up with the heads raise."""
    generator = torch.Generator().manual_seed(seeded(1215))
    draw = lambda *shape, dtype=torch.float32: torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
    return [
        ("positions 7..12 (after 7 cached tokens), 3 heads of width 8", draw(2, 3, 6, 8), torch.arange(7, 13), 10000.0),
        ("each row's own positions (2 rows after caches of 5 and 2 tokens), 2 heads of width 16", draw(2, 2, 4, 16),
         AFTER_A_CACHE_POSITIONS, 10000.0),
        ("a left-padded batch: each row's own positions (3, 5), 2 heads of width 32", draw(3, 2, 5, 32),
         LEFT_PADDED_POSITIONS, 10000.0),
        ("float64, base 500,000 as in Llama 3, positions 20..22, 4 heads of width 16",
         draw(1, 4, 3, 16, dtype=torch.float64), torch.arange(20, 23), 500000.0),
    ]


def check_rotate_at(rotate_at) -> None:
    """Check a learner's `rotate_at(x, positions, base=10000.0)` against
    `positional.rotate_at`: x (2, 3, 6, 8) at positions 7..12; x (2, 2, 4, 16)
    at each row's own positions after a cache; x (3, 2, 5, 32) at a
    left-padded batch's positions (3, 5); float64 x (1, 4, 3, 16) at 20..22
    with base 500,000; the inputs left as they were and the dtype kept."""
    with Checker("12.rotate_at", references=[positional.rotate_at]) as check:
        for what, x, positions, base in _rotate_cases():
            out = check.call(rotate_at, x, positions, base)
            if not check.left_unchanged(f"{what}: x and positions left as they were"):
                continue
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: the result keeps the input's dtype", str(x.dtype), str(out.dtype),
                           "compute the angles as precisely as you like, but bring the result back to x's dtype")
                continue
            # float64's tolerance lets angles be computed in float32, as many libraries do, at these small positions.
            tolerance = dict(atol=1e-5, rtol=1e-5) if x.dtype == torch.float64 else dict(atol=1e-5, rtol=1e-4)
            check.close(f"{what}: the rotated pairs", out, positional.rotate_at(x, positions, base),
                        mistakes=_rotation_mistakes(x, positions, base), hint=_ROTATE_HINT, **tolerance)


# --- 12.grouped_attention -------------------------------------------------------------

ATTENTION_SLIPS = {
    "tiled": "key-value heads repeated in the wrong order (the whole set of key-value heads tiled): query head h "
             "must meet key-value head h // groups, its group's, not h % kv_heads",
    "values_rotated": "the values rotated too (rotary turns queries and keys only: values carry content, not position)",
    "keys_unrotated": "the keys not rotated (only the queries)",
    "queries_unrotated": "the queries not rotated (only the keys)",
    "from_zero": "positions counted 0..L-1 instead of the positions given",
    "no_mask": "no causal mask: every position sees the ones after it",
    "half_split": "rotary in Hugging Face's half-split layout (feature i paired with i + Dh/2) instead of "
                  "interleaved pairs (2i, 2i + 1)",
    "base_fixed": "the rotary base fixed at 10,000 instead of the module's rope_base",
    "reshape_heads": "heads split by a reshape straight to (B, heads, L, head width), which mixes positions",
    "unscaled": "scores not divided by the square root of the head width",
}

_ATTENTION_HINT = ("project, split into heads, rotate queries and keys at the positions given, let each query head "
                   "meet its group's key-value head, attend causally, merge the heads, project out")


def _slipped_attention(attention, x, positions, slip: str | None = None) -> torch.Tensor:
    """The causal forward pass of a GroupedQueryAttention `attention`
    without cache, in float64, with one named slip from ATTENTION_SLIPS (or
    none, which gives the reviewed result)."""
    module, x = copy.deepcopy(attention).double(), x.double()
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = module.heads, module.kv_heads, module.head_dim

    def split(t, count):
        if slip == "reshape_heads":
            return t.reshape(batch, count, length, head_dim)
        return t.view(batch, length, count, head_dim).transpose(1, 2)

    def turn(t):
        rotation = slip if slip in ("from_zero", "half_split", "base_fixed") else None
        return _slipped_rotation(t, positions, module.rope_base, rotation)

    with torch.no_grad():
        q, k, v = split(module.q_proj(x), heads), split(module.k_proj(x), kv_heads), split(module.v_proj(x), kv_heads)
        q = q if slip == "queries_unrotated" else turn(q)
        k = k if slip == "keys_unrotated" else turn(k)
        v = turn(v) if slip == "values_rotated" else v
        groups = heads // kv_heads
        if slip == "tiled":
            k, v = k.repeat(1, groups, 1, 1), v.repeat(1, groups, 1, 1)
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(-2, -1) / (1.0 if slip == "unscaled" else head_dim ** 0.5)
        if slip != "no_mask":
            future = torch.ones(length, length, dtype=torch.bool).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out = scores.softmax(dim=-1) @ v
        return module.o_proj(out.transpose(1, 2).reshape(batch, length, heads * head_dim))


def _test_attention(heads: int, kv_heads: int, width: int, rope_base: float = positional.BASE,
                    dtype: torch.dtype = torch.float32, seed: int = 1216):
    """A reviewed GroupedQueryAttention with seeded weights large enough that
    attention is not uniform (queries and keys of std about 1.2); the
    caller's random state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(seed))
        attention = modern.GroupedQueryAttention(width, heads, kv_heads, rope_base)
        with torch.no_grad():
            for projection in (attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj):
                projection.weight.normal_(0.0, 1.2 / projection.in_features ** 0.5)
    return attention.to(dtype).eval()


def _attention_cases():
    """(what, attention, x, positions): modules and inputs the notebook never
    uses, seeded and moved by the grader."""
    generator = torch.Generator().manual_seed(seeded(1217))
    draw = lambda *shape, dtype=torch.float32: torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)
    return [
        ("6 query heads sharing 2 key-value heads, width 24, positions 5..9 (after 5 cached tokens)",
         _test_attention(6, 2, 24, seed=1216), draw(2, 5, 24), torch.arange(5, 10)),
        ("multi-query attention (4 heads, 1 key-value head), width 32, a left-padded batch's positions (3, 4)",
         _test_attention(4, 1, 32, seed=1218), draw(3, 4, 32), torch.tensor([[0, 0, 1, 2], [0, 1, 2, 3], [0, 0, 0, 1]])),
        ("plain multi-head attention (4 heads, 4 key-value heads), width 16, rope_base 1,000, positions 3..8",
         _test_attention(4, 4, 16, rope_base=1000.0, seed=1219), draw(2, 6, 16), torch.arange(3, 9)),
        ("float64, 8 query heads sharing 2 key-value heads, width 64, each row's own positions",
         _test_attention(8, 2, 64, dtype=torch.float64, seed=1220), draw(2, 5, 64, dtype=torch.float64),
         torch.tensor([[2, 3, 4, 5, 6], [0, 0, 1, 2, 3]])),
    ]


def check_grouped_attention(grouped_attention) -> None:
    """Check a learner's `grouped_attention(attention, x, positions)`, the
    causal forward pass without cache of a `modern.GroupedQueryAttention`,
    against the module's own: (heads, key-value heads, width) = (6, 2, 24) at
    positions 5..9, (4, 1, 32) at a left-padded batch's positions (3, 4),
    (4, 4, 16) with rope_base 1,000 at 3..8, and a float64 (8, 2, 64) at each
    row's own positions. Only (6, 2) and (8, 2) show key-value heads repeated
    in the wrong order. The answer may not run the module itself."""
    with Checker("12.grouped_attention",
                 references=[modern.GroupedQueryAttention.forward, modern.repeat_kv]) as check:
        for what, attention, x, positions in _attention_cases():
            with torch.no_grad():
                expected = attention(x, positions)[0]
            with torch.no_grad(), _attention_called(not isinstance(grouped_attention, remote.Remote)) as called:
                out = check.call(grouped_attention, attention, x, positions)
            # In the notebook only: graded answers run in the sandbox, whose watch names any course code they run.
            if not check.that(f"{what}: the forward pass written out, not the module's own", not called,
                              "your own forward pass", "your code called the GroupedQueryAttention module itself",
                              "use the module's pieces (its four projections, heads, kv_heads, head_dim, rope_base), "
                              "not the module"):
                return
            if isinstance(out, (tuple, list)):
                check.require(f"{what}: returns one tensor", False, expected=f"the output, {tuple(expected.shape)}",
                              actual=f"a {type(out).__name__} of {len(out)}", hint="return the output alone")
            if not check.left_unchanged(f"{what}: x and positions left as they were"):
                continue
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: a {x.dtype} module gives {x.dtype} outputs", str(x.dtype), str(out.dtype),
                           "build every new tensor in the input's dtype (positions and masks have none to lose)")
                continue
            tolerance = dict(atol=1e-5, rtol=1e-5) if x.dtype == torch.float64 else dict(atol=2e-5, rtol=1e-4)
            check.close(f"{what}: the output", out, expected, mistakes=_attention_mistakes(attention, x, positions),
                        hint=_ATTENTION_HINT, **tolerance)


def _attention_mistakes(attention, x, positions) -> dict:
    """{slip's name: what it gives} for the slips that give something else
    than the right answer on this case (the order of repeated key-value heads
    matters only with more than one of them, each shared by 2 or more)."""
    right, mistakes = _slipped_attention(attention, x, positions), {}
    for slip, name in ATTENTION_SLIPS.items():
        wrong = _slipped_attention(attention, x, positions, slip)
        if not torch.allclose(wrong, right, atol=1e-3, rtol=1e-3):
            mistakes[name] = wrong
    return mistakes


class _attention_called:
    """`with _attention_called(active) as called:` True in `called` if a
    GroupedQueryAttention's forward ran inside (a global hook, so that the
    module handed to the answer stays as it was); nothing unless `active`
    (an answer in the sandbox runs elsewhere, under the sandbox's own watch)."""

    def __init__(self, active: bool = True):
        self.active, self.called, self.handle = active, [], None

    def __enter__(self) -> list:
        if self.active:
            self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self._note)
        return self.called

    def _note(self, module, args) -> None:
        if isinstance(module, modern.GroupedQueryAttention):
            self.called.append(True)

    def __exit__(self, *exception) -> None:
        if self.handle is not None:
            self.handle.remove()
