"""Checkers for lesson 06: layer normalisation from its formula, and the
post-LN decoder layer wired from its sublayers.

`check_layer_norm` compares the learner's function with PyTorch's on inputs
where the classic slips show: rows of tiny variance (where ε's place
matters), a width of 4 (where dividing by D - 1 does), a square input (where
a mean without keepdim broadcasts along the wrong axis), an ε other than the
default, float64, and the gradient.

`check_decoder_layer` copies the weights of the reviewed
`course_utils.transformer.DecoderLayer` into the learner's layer, compares
the outputs on two configurations (the second with a left-padded target,
whose mask an answer that builds its own causal mask cannot honour), and
names the classic slip that a wrong output matches.
"""

import functools

import torch
import torch.nn.functional as F

from course_utils.attention import causal_mask, padding_mask
from course_utils.transformer import DecoderLayer, TransformerConfig
from .. import remote
from . import Checker, random_normal, seeded

# --- layer normalisation ----------------------------------------------------------

LAYER_NORM_SLIPS = {
    "unbiased": "the variance divided by D - 1 (torch.var's and torch.std's default) instead of D",
    "eps_outside": "ε added to the standard deviation instead of under the square root",
    "eps_fixed": "ε fixed at 1e-5 whatever the eps argument says",
    "no_eps": "ε left out",
    "no_mean": "no mean subtracted anywhere (that is RMSNorm, another norm)",
    "uncentred": "x instead of x - μ in the numerator",
    "no_keepdim": "the mean and variance taken without keepdim, so that they broadcast along the wrong axis",
    "first_axis": "statistics over the first axis (the batch) instead of each vector's own features",
    "shift_then_scale": "β added before scaling by γ",
    "no_affine": "γ and β left out",
}


def _slipped_layer_norm(x, gamma, beta, eps, slip: str | None = None):
    """Layer normalisation over the last axis, with one named slip from
    LAYER_NORM_SLIPS (or none, which gives PyTorch's result)."""
    if slip is None:
        return F.layer_norm(x, gamma.shape, gamma, beta, eps)
    axis, keep = (0 if slip == "first_axis" else -1), slip != "no_keepdim"
    mean = torch.zeros_like(x) if slip == "no_mean" else x.mean(axis, keepdim=keep)
    centred = x - mean
    variance = x.var(axis, keepdim=keep) if slip == "unbiased" else (centred ** 2).mean(axis, keepdim=keep)
    eps = {"no_eps": 0.0, "eps_fixed": 1e-5}.get(slip, eps)
    scale = variance.sqrt() + eps if slip == "eps_outside" else (variance + eps).sqrt()
    normalised = (x if slip == "uncentred" else centred) / scale
    if slip == "no_affine":
        return normalised
    if slip == "shift_then_scale":
        return (normalised + beta) * gamma
    return gamma * normalised + beta


def _layer_norm_mistakes(x, gamma, beta, eps) -> dict:
    """{slip's name: what it gives} for the slips that run on this input (without
    keepdim, only a square one broadcasts) and give something else than the
    right answer on it (a fixed ε of 1e-5 does, only where eps is not 1e-5)."""
    right, mistakes = _slipped_layer_norm(x, gamma, beta, eps), {}
    for slip, name in LAYER_NORM_SLIPS.items():
        try:
            wrong = _slipped_layer_norm(x, gamma, beta, eps, slip)
        except RuntimeError:
            continue
        if not torch.allclose(wrong, right, atol=1e-3, rtol=1e-3):
            mistakes[name] = wrong
    return mistakes


def _layer_norm_cases():
    """(what, x, γ, β, eps) the notebook never uses: seeded, moved by the grader."""
    generator = torch.Generator().manual_seed(seeded(616))

    normal = functools.partial(random_normal, generator)

    def affine(width, dtype=torch.float32):
        return normal(width, mean=1.0, std=0.5, dtype=dtype), normal(width, std=0.5, dtype=dtype)

    return [
        ("a square input (8 vectors of width 8)", normal(8, 8, mean=1.0, std=3.0), *affine(8), 1e-5),
        ("a batch of sequences, far from mean 0 and std 1", normal(3, 5, 24, mean=-2.0, std=7.0), *affine(24), 1e-5),
        ("rows of tiny variance (std 0.001, where ε's place matters)", normal(4, 20, mean=0.2, std=1e-3), *affine(20), 1e-5),
        ("width 4 (where D or D - 1 matters), eps=0.1", normal(6, 4, std=0.5), *affine(4), 0.1),
        ("float64, eps=1e-12 as in BERT", normal(3, 16, mean=3.0, std=2.0, dtype=torch.float64),
         *affine(16, torch.float64), 1e-12),
    ]


def check_layer_norm(layer_norm) -> None:
    """Check a learner's layer_norm(x, gamma, beta, eps=1e-5) against F.layer_norm."""
    with Checker("06.layer_norm", references=[F.layer_norm]) as check:
        for what, x, gamma, beta, eps in _layer_norm_cases():
            out = check.call(layer_norm, x, gamma, beta, eps=eps)
            if not check.that(f"{what}: x, γ and β left as they were", not check.wrote_into, "inputs unchanged",
                              "your function wrote into " + ", ".join(("x", "gamma", "beta", "eps")[at] if isinstance(at, int)
                                                                       else at for at in check.wrote_into),
                              "compute new tensors: an in-place operation changes the caller's tensor"):
                continue
            if isinstance(out, torch.Tensor) and out.dtype != x.dtype:
                check.fail(f"{what}: the result keeps the input's dtype", str(x.dtype), str(out.dtype),
                           "build no new tensor in another dtype")
                continue
            tolerance = dict(atol=1e-9, rtol=1e-9) if x.dtype == torch.float64 else dict(atol=2e-4, rtol=1e-4)
            check.close(f"{what}: the normalised values", out, _slipped_layer_norm(x, gamma, beta, eps),
                        mistakes=_layer_norm_mistakes(x, gamma, beta, eps), **tolerance,
                        hint="normalise each vector over its own features, with the formula above, term by term")
        if not check.passed:  # the values are wrong already: their gradient would say nothing new
            return
        x, gamma, beta, eps = _layer_norm_cases()[1][1:]  # the batch of sequences
        _, gradient = check.gradient(layer_norm, x, gamma, beta, eps, wrt=0)
        _, expected = remote.local_gradient(lambda *args: F.layer_norm(args[0], gamma.shape, *args[1:], eps), (x, gamma, beta), 0)
        if gradient is None:
            check.fail("the gradient flows back to x", "a gradient", "none: your result is cut off from x",
                       "keep every step a differentiable tensor operation (no .item(), .detach() or numpy)")
        else:
            check.close("the gradient with respect to x", gradient, expected, atol=1e-4, rtol=1e-3)


# --- the decoder layer ----------------------------------------------------------------

# Target and source of different lengths, so that attention read the wrong way
# round changes a shape; the second source ends in two padding tokens.
BATCH, TARGET_LENGTH, SOURCE_LENGTH, D_MODEL, HEADS = 2, 5, 7, 16, 2
SOURCE_TOKENS = torch.tensor([[1] * SOURCE_LENGTH, [1] * (SOURCE_LENGTH - 2) + [0, 0]])
CONFIG = TransformerConfig(d_model=D_MODEL, num_heads=HEADS, d_ff=32, num_decoder_layers=1, dropout=0.0)
# A second case the notebook never uses: other widths and lengths, and a
# left-padded target (as a batch is when a decoder generates), whose padding
# the causal mask alone does not cover.
OTHER_CONFIG = TransformerConfig(d_model=24, num_heads=3, d_ff=40, num_decoder_layers=1, dropout=0.0)
OTHER_TARGET_TOKENS = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 1, 1, 1, 1, 1]])
OTHER_SOURCE_TOKENS = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]])

SLIPS = {
    "no_causal_mask": "masked self-attention without its causal mask (each position sees the future)",
    "no_memory_mask": "cross-attention without the source's padding mask",
    "cross_on_decoder": "cross-attention over the decoder's own states instead of the encoder's output",
    "no_residual_1": "no residual connection around the self-attention",
    "no_residual_2": "no residual connection around the cross-attention",
    "no_residual_3": "no residual connection around the feed-forward network",
    "pre_norm": "the norm before each sublayer (pre-LN) instead of after the residual sum (post-LN, as asked)",
    "norm_outside": "the norm applied to the sublayer's output before the residual sum",
    "cross_first": "the sublayers in the wrong order (cross-attention before self-attention)",
    "own_causal_mask": "a causal mask of your own (or is_causal) instead of the self_mask given, "
                       "which also hides the target's padding",
    "one_norm": "the same norm (norm1) after every sublayer: each sublayer has its own, with its own γ and β",
    "norms_swapped": "norm2 and norm3 swapped: each sublayer's norm is the one numbered after it",
}
QUERIES_FROM_ENCODER = ("the queries of cross-attention taken from the encoder's output "
                        "(it is the decoder that asks, and the encoder's output that answers)")


def _slipped_forward(layer: DecoderLayer, x, memory, self_mask, memory_mask, slip: str | None = None) -> torch.Tensor:
    """The post-LN decoder layer by `layer`'s weights, with one named slip from
    SLIPS (or none, which gives the reviewed result)."""
    def self_attention(h):
        mask = {"no_causal_mask": None, "own_causal_mask": causal_mask(h.size(1))}.get(slip, self_mask)
        return layer.self_attn(h, mask=mask)[0]

    def cross_attention(h):
        source = h if slip == "cross_on_decoder" else memory
        mask = None if slip in ("no_memory_mask", "cross_on_decoder") else memory_mask
        return layer.cross_attn(h, source, source, mask=mask)[0]

    norms = {"one_norm": (layer.norm1,) * 3, "norms_swapped": (layer.norm1, layer.norm3, layer.norm2)}.get(
        slip, (layer.norm1, layer.norm2, layer.norm3))

    def residual(h, norm, sublayer, number):
        if slip == "pre_norm":
            return h + sublayer(norm(h))
        if slip == "norm_outside":
            return h + norm(sublayer(h))
        skip = 0 if slip == f"no_residual_{number}" else h
        return norm(skip + sublayer(h))

    first, second = (cross_attention, self_attention) if slip == "cross_first" else (self_attention, cross_attention)
    x = residual(x, norms[0], first, 1)
    x = residual(x, norms[1], second, 2)
    return residual(x, norms[2], layer.feed_forward, 3)


def _reference_and_inputs(config=CONFIG, batch=BATCH, target_length=TARGET_LENGTH, source_length=SOURCE_LENGTH,
                          seed=606):
    """The reviewed layer with seeded random weights (norms too, so that a
    misplaced norm shows) and seeded inputs; the caller's random state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(seed))
        reference = DecoderLayer(config).eval()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.normal_(0, 0.4)
        x = torch.randn(batch, target_length, config.d_model)
        memory = torch.randn(batch, source_length, config.d_model)
    return reference, x, memory


def _queries_from_encoder(learner, x, memory, self_mask) -> bool:
    """True if, without the padding mask (whose shape would make that slip
    raise), the layer returns one vector per source position."""
    try:
        out = learner(x.clone(), memory.clone(), self_mask, None)  # copies: the checker's inputs stay as they are
    except Exception:  # any other bug: the checks that follow report it
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape) == (BATCH, SOURCE_LENGTH, D_MODEL)


def check_decoder_layer(DecoderLayerClass) -> None:
    """Check a learner's post-LN decoder layer class against course_utils.transformer.DecoderLayer."""
    with Checker("06.decoder_layer", references=[DecoderLayer]) as check:
        check.require_module_class(DecoderLayerClass, "MyDecoderLayer")
        reference, x, memory = _reference_and_inputs()
        learner = _learner_layer(check, DecoderLayerClass, reference, CONFIG)
        self_mask, memory_mask = causal_mask(TARGET_LENGTH), padding_mask(SOURCE_TOKENS)
        with torch.no_grad():
            if _queries_from_encoder(learner, x, memory, self_mask):
                check.require("output (2, 5, 16): one vector per target position", False,
                              expected="shape (2, 5, 16)", actual="shape (2, 7, 16), the source's length",
                              hint=f"your output matches {QUERIES_FROM_ENCODER}")
            out = _compare(check, "a causal target mask", learner, reference, x, memory, self_mask, memory_mask)

            # No peeking: changing the last target token must not move any earlier position.
            later = x.clone()
            later[:, -1] += 1.0
            moved = check.call(learner, later, memory, self_mask, memory_mask)
            if isinstance(out, torch.Tensor) and isinstance(moved, torch.Tensor) and moved.shape == out.shape:
                changed = (moved[:, :-1] - out[:, :-1]).abs().amax().item()
                check.that("no position sees a later one (changing the last target token moves no earlier output)",
                           changed < 1e-6, expected="earlier positions unchanged", actual=f"they moved by up to {changed:.3g}",
                           hint="look at which mask the self-attention gets")

            # Another width, batch and lengths, and a left-padded target: the mask given is causal AND padding.
            batch, target_length = OTHER_TARGET_TOKENS.shape
            reference, x, memory = _reference_and_inputs(OTHER_CONFIG, batch, target_length,
                                                         OTHER_SOURCE_TOKENS.size(1), seed=626)
            learner = _learner_layer(check, DecoderLayerClass, reference, OTHER_CONFIG)
            self_mask = causal_mask(target_length) & padding_mask(OTHER_TARGET_TOKENS)
            _compare(check, "width 24, 3 heads, a left-padded target", learner, reference, x, memory, self_mask,
                     padding_mask(OTHER_SOURCE_TOKENS))
            out = check.call(learner.double(), x.double(), memory.double(), self_mask, padding_mask(OTHER_SOURCE_TOKENS))
            check.that("a float64 layer gives float64 outputs", isinstance(out, torch.Tensor) and out.dtype == torch.float64,
                       "torch.float64", getattr(out, "dtype", type(out).__name__), "build no new tensor in another dtype")


def _learner_layer(check, DecoderLayerClass, reference, config):
    """The learner's layer for `config`, holding the reference's weights."""
    with torch.random.fork_rng(devices=[]):
        learner = check.call(DecoderLayerClass, config, given=True)
    try:
        learner.load_state_dict(reference.state_dict())
    except remote.SessionEnded:
        raise
    except (RuntimeError, AttributeError, remote.LearnerError) as error:
        check.require("__init__ keeps the sublayers as given", False, expected="self_attn, cross_attn, feed_forward, norm1-3",
                      actual=str(error).splitlines()[0][:120], hint="keep the __init__ of the exercise as it is")
    return learner.eval()


def _compare(check, what, learner, reference, x, memory, self_mask, memory_mask):
    """Run the learner's layer on one case and compare with the reviewed one, naming a slip."""
    out = check.call(learner, x, memory, self_mask, memory_mask)
    if isinstance(out, tuple):
        check.require(f"{what}: forward returns one tensor", False, expected=f"the new x, {tuple(x.shape)}",
                      actual=f"a tuple of {len(out)}", hint="return the layer's output alone")
    check.that(f"{what}: x, memory and the masks left as they were", not check.wrote_into, "inputs unchanged",
               "your layer wrote into " + ", ".join(("x", "memory", "self_mask", "memory_mask")[at] if isinstance(at, int)
                                                    else at for at in check.wrote_into),
               "compute new tensors: an in-place operation changes the caller's tensor")
    check.close(f"{what}: masked self-attention, cross-attention, feed-forward, each LayerNorm(x + sublayer(x))",
                out, _slipped_forward(reference, x, memory, self_mask, memory_mask),
                mistakes={name: _slipped_forward(reference, x, memory, self_mask, memory_mask, slip)
                          for slip, name in SLIPS.items()},
                hint="compare each of your three steps with the diagram above: what each sublayer reads, "
                     "which mask it gets, what is added back, and where the norm goes")
    return out
