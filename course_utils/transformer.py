"""The transformer block and the encoder-decoder, the reviewed version of lesson 06.

Every block is one attention or feed-forward sublayer wrapped in a residual
connection and a layer normalisation. Where the norm goes is the design
choice lesson 06 studies, set by `TransformerConfig.norm`:

    "post"      x = LayerNorm(x + Sublayer(x))                  the 2017 paper, BERT
    "pre"       x = x + Sublayer(LayerNorm(x))                  GPT-2, GPT-3 and most models since
    "parallel"  h = LayerNorm(x); x = x + Attention(h) + FFN(h)  GPT-J, PaLM (encoder layers only)

Masks follow `course_utils.attention`: bool, True = may attend. Weights are laid
out so that `load_torch_weights` copies PyTorch's `nn.TransformerEncoderLayer`,
`nn.TransformerDecoderLayer` and `nn.Transformer` one to one.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiHeadAttention

ACTIVATIONS = {
    "relu": F.relu,  # the paper
    "gelu": F.gelu,  # BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2
}
NORM_POSITIONS = ("post", "pre", "parallel")


@dataclass
class TransformerConfig:
    """The paper's base model by default (Vaswani et al. 2017, Table 3)."""

    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dropout: float = 0.1
    activation: str = "relu"
    norm: str = "post"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.norm not in NORM_POSITIONS:
            raise ValueError(f"norm must be one of {NORM_POSITIONS}, got {self.norm!r}")


class LayerNorm(nn.Module):
    """(x - mean) / √(variance + eps) · γ + β over the last dimension, with the
    biased variance (divided by D, not D - 1).

    Lesson 06 writes that formula out; here PyTorch's fused kernel computes
    it in one kernel, where the formula written out launches one operation
    per step, each a pass over memory (a unit test checks it against the
    formula). Written out, the layer norms cost a small GPT's training step
    about 13% of its time (benchmarks/gpt_train.py --ablation)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))  # γ
        self.bias = nn.Parameter(torch.zeros(d_model))  # β

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class FeedForward(nn.Module):
    """The position-wise network: the same two-layer MLP applied to every
    position on its own, widening D to d_ff and back."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.linear1 = nn.Linear(config.d_model, config.d_ff)
        self.linear2 = nn.Linear(config.d_ff, config.d_model)
        self.activation = ACTIVATIONS[config.activation]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention, then the feed-forward network, each with its residual."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.norm_position = config.norm
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.feed_forward = FeedForward(config)
        self.norm1 = LayerNorm(config.d_model, config.layer_norm_eps)
        # The parallel block's two sublayers read the same normalised x: one norm.
        self.norm2 = None if config.norm == "parallel" else LayerNorm(config.d_model, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, mask=None, need_weights: bool = False, is_causal: bool = False, cache=None):
        """x: (B, L, D); mask: bool, True = may attend; is_causal and cache as
        in `MultiHeadAttention`. Returns (x, attention weights or None)."""
        attend = dict(mask=mask, need_weights=need_weights, is_causal=is_causal, cache=cache)
        if self.norm_position == "parallel":  # side by side: both sublayers read one normalised x
            normalised = self.norm1(x)
            attended, weights = self.self_attn(normalised, **attend)
            return x + self.dropout(attended) + self.dropout(self.feed_forward(normalised)), weights
        if self.norm_position == "pre":
            attended, weights = self.self_attn(self.norm1(x), **attend)
            x = x + self.dropout(attended)
            return x + self.dropout(self.feed_forward(self.norm2(x))), weights
        attended, weights = self.self_attn(x, **attend)
        x = self.norm1(x + self.dropout(attended))
        return self.norm2(x + self.dropout(self.feed_forward(x))), weights


class DecoderLayer(nn.Module):
    """Masked self-attention over the output so far, cross-attention whose
    queries come from the decoder and whose keys and values come from the
    encoder's output (the memory), then the feed-forward network."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.norm == "parallel":
            raise ValueError("the parallel block is built for encoder layers only")
        self.pre_norm = config.norm == "pre"
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_heads, dropout=config.dropout)
        self.feed_forward = FeedForward(config)
        self.norm1 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.norm2 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.norm3 = LayerNorm(config.d_model, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def _residual(self, x, norm, sublayer):
        """x + Sublayer(LayerNorm(x)) (pre-LN) or LayerNorm(x + Sublayer(x)) (post-LN)."""
        if self.pre_norm:
            return x + self.dropout(sublayer(norm(x)))
        return norm(x + self.dropout(sublayer(x)))

    def forward(self, x, memory, self_mask=None, memory_mask=None, need_weights: bool = False):
        """x: (B, Lt, D) the target so far; memory: (B, Ls, D) the encoder's
        output; self_mask: causal (and padding) mask over the target;
        memory_mask: padding mask over the source. Returns (x, cross-attention
        weights (B, H, Lt, Ls) or None)."""
        cross = {}

        def cross_attend(queries):
            out, cross["weights"] = self.cross_attn(queries, memory, memory, mask=memory_mask, need_weights=need_weights)
            return out

        x = self._residual(x, self.norm1, lambda h: self.self_attn(h, mask=self_mask)[0])
        x = self._residual(x, self.norm2, cross_attend)
        x = self._residual(x, self.norm3, self.feed_forward)
        return x, cross["weights"]


class Encoder(nn.Module):
    """N encoder layers and a final LayerNorm, as `nn.Transformer` has. Pre-LN
    and parallel blocks need it, since their residual stream is never
    normalised otherwise; the paper's post-LN model has none (2·D parameters
    that `nn.Transformer` adds in either mode)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_encoder_layers))
        self.norm = LayerNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x, mask=None):
        for layer in self.layers:
            x, _ = layer(x, mask)
        return self.norm(x)


class Decoder(nn.Module):
    """N decoder layers and a final LayerNorm."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.num_decoder_layers))
        self.norm = LayerNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x, memory, self_mask=None, memory_mask=None, need_weights: bool = False):
        """Returns (x, the cross-attention weights of every layer, or None)."""
        maps = []
        for layer in self.layers:
            x, weights = layer(x, memory, self_mask, memory_mask, need_weights)
            maps.append(weights)
        return self.norm(x), (maps if need_weights else None)


class EncoderDecoder(nn.Module):
    """The encoder and the decoder of the paper, without embeddings or output
    layer: the part that `nn.Transformer` implements."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def forward(self, source, target, source_mask=None, target_mask=None, memory_mask=None):
        """source: (B, Ls, D), target: (B, Lt, D), both already embedded."""
        memory = self.encoder(source, source_mask)
        return self.decoder(target, memory, target_mask, memory_mask)[0]


# --- counting parameters ----------------------------------------------------------

def parameter_counts(config: TransformerConfig, vocab_size: int = 0) -> dict[str, int]:
    """Parameters of each part, computed from the config alone (weights and
    biases), for an encoder-decoder with one embedding table of `vocab_size`
    shared by source, target and output layer, as in the paper."""
    if config.norm == "parallel" and config.num_decoder_layers:
        raise ValueError("the parallel block is built for encoder layers only: set num_decoder_layers=0")
    d, d_ff = config.d_model, config.d_ff
    attention = 4 * (d * d + d)  # W^Q, W^K, W^V, W^O and their biases
    feed_forward = (d * d_ff + d_ff) + (d_ff * d + d)
    norm = 2 * d  # γ and β
    norms_per_encoder_layer = 1 if config.norm == "parallel" else 2
    encoder_layer = attention + feed_forward + norms_per_encoder_layer * norm
    decoder_layer = 2 * attention + feed_forward + 3 * norm
    counts = {
        "embedding (shared)": vocab_size * d,
        f"encoder: {config.num_encoder_layers} layers of {encoder_layer:,}": config.num_encoder_layers * encoder_layer,
        f"decoder: {config.num_decoder_layers} layers of {decoder_layer:,}": config.num_decoder_layers * decoder_layer,
        "final norms": (1 + bool(config.num_decoder_layers)) * norm,  # nn.Transformer's, in either mode
    }
    counts["total"] = sum(counts.values())
    return counts


# --- PyTorch's own layers, weight for weight ---------------------------------------

_TORCH_NAMES = (  # (our name, PyTorch's) wherever they differ
    ("in_proj.weight", "in_proj_weight"),
    ("in_proj.bias", "in_proj_bias"),
    ("cross_attn.", "multihead_attn."),
    ("feed_forward.", ""),
)


def torch_name(name: str) -> str:
    """The name in a PyTorch state dict of one of our parameters."""
    for ours, theirs in _TORCH_NAMES:
        name = name.replace(ours, theirs)
    return name


@torch.no_grad()
def load_torch_weights(module: nn.Module, reference: nn.Module) -> nn.Module:
    """Copy into our EncoderLayer, DecoderLayer or EncoderDecoder the weights of
    PyTorch's TransformerEncoderLayer, TransformerDecoderLayer or Transformer.
    Fails if any parameter is missing on either side."""
    theirs = reference.state_dict()
    ours = {name: theirs[torch_name(name)] for name in module.state_dict()}
    unused = set(theirs) - {torch_name(name) for name in ours}
    if unused:
        raise ValueError(f"PyTorch's module has weights with no place in ours: {sorted(unused)}")
    module.load_state_dict(ours)
    return module

