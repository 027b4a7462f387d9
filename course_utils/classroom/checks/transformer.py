"""Checker for the decoder-layer exercise (lesson 06).

The learner wires the forward pass of a post-LN decoder layer whose sublayers
are given: masked self-attention, cross-attention on the encoder's output,
the feed-forward network, each wrapped in a residual connection and a
LayerNorm. The checker copies the weights of the reviewed
`course_utils.transformer.DecoderLayer` into it, compares the outputs, and
names the classic slip that a wrong output matches.
"""

import torch

from course_utils.attention import causal_mask, padding_mask
from course_utils.transformer import DecoderLayer, TransformerConfig
from .. import remote
from . import Checker, seeded

# Target and source of different lengths, so that attention read the wrong way
# round changes a shape; the second source ends in two padding tokens.
BATCH, TARGET_LENGTH, SOURCE_LENGTH, D_MODEL, HEADS = 2, 5, 7, 16, 2
SOURCE_TOKENS = torch.tensor([[1] * SOURCE_LENGTH, [1] * (SOURCE_LENGTH - 2) + [0, 0]])
CONFIG = TransformerConfig(d_model=D_MODEL, num_heads=HEADS, d_ff=32, num_decoder_layers=1, dropout=0.0)

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
}
QUERIES_FROM_ENCODER = ("the queries of cross-attention taken from the encoder's output "
                        "(it is the decoder that asks, and the encoder's output that answers)")


def slipped_forward(layer: DecoderLayer, x, memory, self_mask, memory_mask, slip: str | None = None) -> torch.Tensor:
    """The post-LN decoder layer by `layer`'s weights, with one named slip from
    SLIPS (or none, which gives the reviewed result)."""
    def self_attention(h):
        return layer.self_attn(h, mask=None if slip == "no_causal_mask" else self_mask)[0]

    def cross_attention(h):
        source = h if slip == "cross_on_decoder" else memory
        mask = None if slip in ("no_memory_mask", "cross_on_decoder") else memory_mask
        return layer.cross_attn(h, source, source, mask=mask)[0]

    def residual(h, norm, sublayer, number):
        if slip == "pre_norm":
            return h + sublayer(norm(h))
        if slip == "norm_outside":
            return h + norm(sublayer(h))
        skip = 0 if slip == f"no_residual_{number}" else h
        return norm(skip + sublayer(h))

    first, second = (cross_attention, self_attention) if slip == "cross_first" else (self_attention, cross_attention)
    x = residual(x, layer.norm1, first, 1)
    x = residual(x, layer.norm2, second, 2)
    return residual(x, layer.norm3, layer.feed_forward, 3)


def _reference_and_inputs():
    """The reviewed layer with seeded random weights (norms too, so that a
    misplaced norm shows) and seeded inputs; the caller's random state is kept."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(606))
        reference = DecoderLayer(CONFIG).eval()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter.normal_(0, 0.4)
        x = torch.randn(BATCH, TARGET_LENGTH, D_MODEL)
        memory = torch.randn(BATCH, SOURCE_LENGTH, D_MODEL)
    return reference, x, memory


def _queries_from_encoder(learner, x, memory, self_mask) -> bool:
    """True if, without the padding mask (whose shape would make that slip
    raise), the layer returns one vector per source position."""
    try:
        out = learner(x, memory, self_mask, None)
    except Exception:  # any other bug: the checks that follow report it
        return False
    return isinstance(out, torch.Tensor) and tuple(out.shape) == (BATCH, SOURCE_LENGTH, D_MODEL)


def check_decoder_layer(DecoderLayerClass) -> None:
    """Check a learner's post-LN decoder layer class against course_utils.transformer.DecoderLayer."""
    with Checker("06.decoder_layer", references=[DecoderLayer]) as check:
        check.require_module_class(DecoderLayerClass, "MyDecoderLayer")
        reference, x, memory = _reference_and_inputs()
        with torch.random.fork_rng(devices=[]):
            learner = check.call(DecoderLayerClass, CONFIG, given=True)
        try:
            learner.load_state_dict(reference.state_dict())
        except remote.SessionEnded:
            raise
        except (RuntimeError, AttributeError, remote.LearnerError) as error:
            check.fail("__init__ keeps the sublayers as given", expected="self_attn, cross_attn, feed_forward, norm1-3",
                       actual=str(error).splitlines()[0][:120], hint="keep the __init__ of the exercise as it is")
            return
        learner.eval()
        self_mask, memory_mask = causal_mask(TARGET_LENGTH), padding_mask(SOURCE_TOKENS)
        with torch.no_grad():
            if _queries_from_encoder(learner, x, memory, self_mask):
                check.require("output (2, 5, 16): one vector per target position", False,
                              expected="shape (2, 5, 16)", actual="shape (2, 7, 16), the source's length",
                              hint=f"your output matches {QUERIES_FROM_ENCODER}")
            out = check.call(learner, x, memory, self_mask, memory_mask)
            if isinstance(out, tuple):
                check.require("forward returns one tensor", False, expected="the new x, (2, 5, 16)",
                              actual=f"a tuple of {len(out)}", hint="return the layer's output alone")
            check.close("output of the layer: masked self-attention, cross-attention, feed-forward, each "
                        "LayerNorm(x + sublayer(x))", out, slipped_forward(reference, x, memory, self_mask, memory_mask),
                        mistakes={name: slipped_forward(reference, x, memory, self_mask, memory_mask, slip)
                                  for slip, name in SLIPS.items()},
                        hint="compare each of your three steps with the diagram above: what each sublayer reads, "
                             "which mask it gets, what is added back, and where the norm goes")

            # No peeking: changing the last target token must not move any earlier position.
            later = x.clone()
            later[:, -1] += 1.0
            moved = check.call(learner, later, memory, self_mask, memory_mask)
            if isinstance(out, torch.Tensor) and isinstance(moved, torch.Tensor) and moved.shape == out.shape:
                changed = (moved[:, :-1] - out[:, :-1]).abs().amax().item()
                check.that("no position sees a later one (changing the last target token moves no earlier output)",
                           changed < 1e-6, expected="earlier positions unchanged", actual=f"they moved by up to {changed:.3g}",
                           hint="look at which mask the self-attention gets")
