"""A modern decoder, the reviewed version of lesson 12: GPT-2's design as
Llama, Mistral, Qwen and most decoders of today change it.

- RMSNorm instead of LayerNorm: rescale by the root mean square, do not
  re-centre, no bias (Zhang & Sennrich, 2019);
- a gated feed-forward network, SwiGLU: SiLU(x W_gate) ⊙ (x W_up), then
  W_down (Shazeer, 2020), three matrices of width ffn_width ≈ 8/3 · width
  instead of two of 4 · width;
- rotary positions (lesson 05) applied to queries and keys inside every
  attention layer, at each token's own position, instead of learned
  positions added to the input;
- grouped-query attention (Ainslie et al., 2023): `kv_heads` key-value heads,
  each shared by heads / kv_heads query heads, so the KV cache is smaller
  (kv_heads = 1 is multi-query attention, kv_heads = heads plain multi-head);
- no biases, and a language-model head of its own (untied) or tied.

The block is lesson 06's pre-norm residual block with these pieces in it;
attention runs through `attention.attend` and the cache is `attention.KVCache`,
as in GPT; `gpt.generate` writes with this model too. The weights map onto
Hugging Face's `LlamaForCausalLM` (`to_huggingface`, `from_huggingface`).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache, attend, causal_mask
from .gpt import _init_weights, refuse_differences
from .positional import BASE, rotate_at


@dataclass(frozen=True)
class ModernConfig:
    """A small Llama-style decoder. The defaults are lesson 10's GPT's sizes
    (4 layers, 4 heads, width 128, context 64, 65 characters), with 2
    key-value heads and a feed-forward width of 3 · width, which brings the
    parameter count within 1% of that GPT's."""

    vocab_size: int = 65
    context: int = 64
    width: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    ffn_width: int = 384
    rope_base: float = BASE
    norm_eps: float = 1e-5  # Llama 2 and 3's
    tie_embeddings: bool = False

    def __post_init__(self):
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be divisible by heads ({self.heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads}): "
                             f"each key-value head serves the same number of query heads")
        if self.head_dim % 2:
            raise ValueError(f"the head width ({self.head_dim}) must be even: rotary turns pairs of features")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x / √(mean(x²) + eps) · weight, the mean over the last dimension.
    Computed in at least float32, as Llama does (half-precision squares
    overflow), and returned in x's dtype times weight's."""
    precise = x.to(torch.promote_types(x.dtype, torch.float32))
    normalised = precise * torch.rsqrt(precise.pow(2).mean(dim=-1, keepdim=True) + eps)
    return weight * normalised.to(x.dtype)


class RMSNorm(nn.Module):
    """`rms_norm` with a learned gain per feature, starting at 1."""

    def __init__(self, width: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def swiglu(x: torch.Tensor, gate_weight: torch.Tensor, up_weight: torch.Tensor, down_weight: torch.Tensor) -> torch.Tensor:
    """SwiGLU: (SiLU(x W_gateᵀ) ⊙ x W_upᵀ) W_downᵀ, with weights stored as
    nn.Linear stores them, (out, in): gate and up (ffn_width, width), down
    (width, ffn_width). SiLU(z) = z · sigmoid(z)."""
    return F.linear(F.silu(F.linear(x, gate_weight)) * F.linear(x, up_weight), down_weight)


class SwiGLU(nn.Module):
    """The gated feed-forward network: three bias-free linear layers."""

    def __init__(self, width: int, ffn_width: int):
        super().__init__()
        self.gate = nn.Linear(width, ffn_width, bias=False)
        self.up = nn.Linear(width, ffn_width, bias=False)
        self.down = nn.Linear(ffn_width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, self.gate.weight, self.up.weight, self.down.weight)


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, kv_heads, L, Dh) -> (B, kv_heads · groups, L, Dh): each key-value
    head repeated for the `groups` query heads it serves, side by side, so
    that query head h meets key-value head h // groups."""
    return x.repeat_interleave(groups, dim=1)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with `heads` query heads and `kv_heads` key-value
    heads, rotary positions on queries and keys, no biases."""

    def __init__(self, width: int, heads: int, kv_heads: int, rope_base: float = BASE):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.rope_base = heads, kv_heads, width // heads, rope_base
        self.q_proj = nn.Linear(width, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(width, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, width, bias=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None, need_weights: bool = False):
        """x (B, L, width) at `positions` ((L,) or (B, L), see
        `positional.rotate_at`). mask: bool, broadcastable to (B, heads, L,
        keys), True = may attend; None means causal. With a `cache`, the new
        keys and values are appended to it (rotated, kv_heads of them) and the
        queries attend to all it holds. Returns (output (B, L, width),
        weights (B, heads, L, keys) or None)."""
        batch, length, _ = x.shape

        def split(t: torch.Tensor, heads: int) -> torch.Tensor:  # (B, L, heads · Dh) -> (B, heads, L, Dh)
            return t.view(batch, length, heads, self.head_dim).transpose(1, 2)

        q = rotate_at(split(self.q_proj(x), self.heads), positions, self.rope_base)
        k = rotate_at(split(self.k_proj(x), self.kv_heads), positions, self.rope_base)
        v = split(self.v_proj(x), self.kv_heads)  # values carry content, not position: never rotated
        if cache is not None:
            k, v = cache.append(k, v)
        groups = self.heads // self.kv_heads
        out, weights = attend(q, repeat_kv(k, groups), repeat_kv(v, groups), mask, is_causal=mask is None,
                              need_weights=need_weights)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, -1)), weights


class ModernBlock(nn.Module):
    """Lesson 06's pre-norm block with the modern pieces:
    x + Attention(RMSNorm(x)), then x + SwiGLU(RMSNorm(x))."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.attention_norm = RMSNorm(config.width, config.norm_eps)
        self.attention = GroupedQueryAttention(config.width, config.heads, config.kv_heads, config.rope_base)
        self.feed_forward_norm = RMSNorm(config.width, config.norm_eps)
        self.feed_forward = SwiGLU(config.width, config.ffn_width)

    def forward(self, x, positions, mask=None, cache=None):
        x = x + self.attention(self.attention_norm(x), positions, mask, cache)[0]
        return x + self.feed_forward(self.feed_forward_norm(x))


class ModernDecoder(nn.Module):
    """Token embeddings (no position table: positions act inside attention),
    `layers` modern blocks, a final RMSNorm and the head."""

    def __init__(self, config: ModernConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.blocks = nn.ModuleList(ModernBlock(config) for _ in range(config.layers))
        self.final_norm = RMSNorm(config.width, config.norm_eps)
        self.head = None if config.tie_embeddings else nn.Linear(config.width, config.vocab_size, bias=False)
        self.apply(_init_weights)  # GPT-2's: normal(0, 0.02), as Llama's initializer_range
        for block in self.blocks:  # and, as GPT-2, each residual branch's last layer smaller, 1/√(2·layers)
            for projection in (block.attention.o_proj, block.feed_forward.down):
                nn.init.normal_(projection.weight, std=0.02 / (2 * config.layers) ** 0.5)

    def forward(self, ids: torch.Tensor, cache: list[KVCache] | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, L) -> logits (B, L, vocab). With a cache (from `new_cache`),
        ids are the tokens after the ones it holds. attention_mask (B, past +
        L), 1 for a token and 0 for padding, as a tokenizer returns it: padded
        keys get no attention, and each row's positions count its tokens only,
        so a left-padded prompt gets the angles it would get alone."""
        past = len(cache[0]) if cache else 0
        length = ids.size(1)
        if past + length > self.config.context:
            held = f"the cache holds {past} positions and " if past else ""
            raise ValueError(f"{held}{length} tokens do not fit a context of {self.config.context}: keep the last "
                             f"{self.config.context} (ids[:, -{self.config.context}:]) and start a new cache")
        if attention_mask is None:
            positions, mask = torch.arange(past, past + length, device=ids.device), None
        else:
            if attention_mask.shape != (ids.size(0), past + length):
                raise ValueError(f"attention_mask must be (batch, cached + new tokens) = {(ids.size(0), past + length)}, "
                                 f"got {tuple(attention_mask.shape)}")
            positions = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)[:, past:]
            # A padding query still attends to itself, so that no row of the mask is empty.
            itself = torch.arange(past + length, device=ids.device) == torch.arange(past, past + length, device=ids.device)[:, None]
            mask = causal_mask(length, device=ids.device, past=past) & (attention_mask.bool()[:, None, None, :] | itself)
        x = self.token_embedding(ids)
        for block, layer_cache in zip(self.blocks, cache or [None] * len(self.blocks)):
            x = block(x, positions, mask, layer_cache)
        x = self.final_norm(x)
        return F.linear(x, self.token_embedding.weight) if self.head is None else self.head(x)

    def new_cache(self) -> list[KVCache]:
        """An empty key-value cache, one per block."""
        return [KVCache(self.config.context) for _ in self.blocks]


def kv_cache_bytes_per_token(layers: int, kv_heads: int, head_dim: int, bytes_per_number: int = 2) -> int:
    """What a KV cache holds per token: a key and a value vector of head_dim
    numbers for each key-value head of each layer."""
    return 2 * layers * kv_heads * head_dim * bytes_per_number


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# --- Hugging Face ------------------------------------------------------------------

def _half_split_order(head_dim: int) -> torch.Tensor:
    """Our feature order -> Hugging Face's within a head: the pairs' first
    features (0, 2, 4, ...), then their second ones (1, 3, 5, ...)."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def to_half_split_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """A q or k projection weight (heads · Dh, width) with each head's output
    rows reordered from our interleaved pairs to Hugging Face's layout. HF
    Llama's `rotate_half` turns feature i with feature i + Dh/2, lesson 05
    turns 2i with 2i + 1 (by the same angle): the permuted rows put our pair
    i at (i, i + Dh/2), and q · k is unchanged when q and k are permuted
    alike, so the scores are the same; v and o need no change."""
    head_dim = weight.size(0) // heads
    return weight.view(heads, head_dim, -1)[:, _half_split_order(head_dim)].reshape(weight.shape)


def to_interleaved_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """The inverse of `to_half_split_rows`: Hugging Face's rows back to our
    interleaved pairs, feature i and i + Dh/2 side by side."""
    head_dim = weight.size(0) // heads
    return weight.view(heads, head_dim, -1)[:, _half_split_order(head_dim).argsort()].reshape(weight.shape)


def _weight_pairs(model: ModernDecoder):
    """(Hugging Face name, our tensor, heads whose rows carry rotary pairs or None) for every weight."""
    config = model.config
    yield "model.embed_tokens.weight", model.token_embedding.weight, None
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        attention, feed_forward = block.attention, block.feed_forward
        yield prefix + "input_layernorm.weight", block.attention_norm.weight, None
        yield prefix + "self_attn.q_proj.weight", attention.q_proj.weight, config.heads
        yield prefix + "self_attn.k_proj.weight", attention.k_proj.weight, config.kv_heads
        yield prefix + "self_attn.v_proj.weight", attention.v_proj.weight, None
        yield prefix + "self_attn.o_proj.weight", attention.o_proj.weight, None
        yield prefix + "post_attention_layernorm.weight", block.feed_forward_norm.weight, None
        for theirs, ours in [("gate_proj", feed_forward.gate), ("up_proj", feed_forward.up),
                             ("down_proj", feed_forward.down)]:
            yield prefix + "mlp." + theirs + ".weight", ours.weight, None
    yield "model.norm.weight", model.final_norm.weight, None
    if model.head is not None:
        yield "lm_head.weight", model.head.weight, None


def huggingface_config(config: ModernConfig):
    """The `LlamaConfig` of the same model. SDPA attention: the fused kernel
    that `attention.attend` runs too when no weights are asked for."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.width, intermediate_size=config.ffn_width,
                       num_hidden_layers=config.layers, num_attention_heads=config.heads,
                       num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
                       max_position_embeddings=config.context, rms_norm_eps=config.norm_eps,
                       rope_parameters={"rope_type": "default", "rope_theta": config.rope_base},
                       tie_word_embeddings=config.tie_embeddings, attention_bias=False, mlp_bias=False,
                       hidden_act="silu", attn_implementation="sdpa", bos_token_id=None, eos_token_id=None)


@torch.no_grad()
def to_huggingface(model: ModernDecoder, reorder_rotary_rows: bool = True):
    """A `LlamaForCausalLM` with our weights, in eval mode. reorder_rotary_rows=False
    copies W_q and W_k as they are, which is wrong (the tests show it)."""
    from transformers import LlamaForCausalLM

    theirs = LlamaForCausalLM(huggingface_config(model.config)).eval()
    state = theirs.state_dict()
    for name, tensor, heads in _weight_pairs(model):
        state[name].copy_(to_half_split_rows(tensor, heads) if heads and reorder_rotary_rows else tensor)
    theirs.tie_weights()
    return theirs


@torch.no_grad()
def from_huggingface(theirs) -> ModernDecoder:
    """Our ModernDecoder with the weights of a `LlamaForCausalLM`. A config
    field that would change the arithmetic in a way ours does not follow
    raises, rather than being ignored."""
    hf = theirs.config
    rope = hf.rope_parameters or {}
    assumed = {  # field: (what ModernDecoder computes, whether the config agrees)
        "hidden_act": ("'silu'", hf.hidden_act == "silu"),
        "attention_bias": ("False", not hf.attention_bias),
        "mlp_bias": ("False", not hf.mlp_bias),
        "head_dim": ("hidden_size // num_attention_heads", hf.head_dim == hf.hidden_size // hf.num_attention_heads),
        "rope_parameters": ("rope_type 'default'", rope.get("rope_type", "default") == "default"),
    }
    refuse_differences(hf, assumed, "this Llama config differs from what course_utils.modern.ModernDecoder computes")
    config = ModernConfig(vocab_size=hf.vocab_size, context=hf.max_position_embeddings, width=hf.hidden_size,
                          layers=hf.num_hidden_layers, heads=hf.num_attention_heads, kv_heads=hf.num_key_value_heads,
                          ffn_width=hf.intermediate_size, rope_base=rope.get("rope_theta", BASE),
                          norm_eps=hf.rms_norm_eps, tie_embeddings=hf.tie_word_embeddings)
    model = ModernDecoder(config).eval()
    state = theirs.state_dict()
    for name, tensor, heads in _weight_pairs(model):
        tensor.copy_(to_interleaved_rows(state[name], heads) if heads else state[name])
    return model
