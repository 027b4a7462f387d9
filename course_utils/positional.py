"""Positions, the reviewed version of lesson 05.

Attention compares every token with every other one and then averages: shuffle
the tokens and the outputs are shuffled the same way, nothing else changes. A
transformer learns word order only from what we add to say where each token
sits. Three ways, all used by later lessons:

- sinusoidal encoding (Vaswani et al., 2017): a fixed vector per position,
  added to the token embeddings. Pairs of features are sines and cosines of
  pos * theta_i, so moving by k positions is a fixed rotation of each pair
  (`shift_matrix`). No parameters; defined at any position (whether a
  trained model reads positions it never saw is another matter: lesson 05
  measures it with `TinyPositionModel` on `previous_token_batch`).
- learned position embeddings (BERT, GPT-2): one trained vector per position,
  an `nn.Embedding` looked up with 0, 1, 2, ...; as long as `max_len`, no longer.
- rotary embeddings, RoPE (Su et al., 2021; LLaMA and most recent models):
  nothing is added; queries and keys are rotated by their position's angles,
  so that q_m . k_n depends on the offset m - n only.

Layout: feature pairs are interleaved, (0, 1), (2, 3), ..., as in the paper's
PE[pos, 2i] = sin, PE[pos, 2i+1] = cos, and as in RoFormer's RoPE. Some
libraries (Marian's sinusoids, LLaMA's `rotate_half`) pair feature i with
feature i + d/2 instead; that is the same encoding with its features in
another order (tests/test_positional.py checks both against Hugging Face).

Shapes: batch B, heads H, length L, width D (d_model), head width Dh.
"""

import math

import torch
from torch import nn

from .attention import scaled_dot_product_attention

BASE = 10000.0  # the paper's: wavelengths run from 2*pi to 10000 * 2*pi positions


def frequencies(dim: int, base: float = BASE, dtype=torch.float64) -> torch.Tensor:
    """theta_i = base^(-2i/dim) for the dim/2 feature pairs i = 0, 1, ...:
    pair 0 turns one radian per position, the last pair almost not at all."""
    if dim % 2:
        raise ValueError(f"the width must be even (features come in sine/cosine pairs), got {dim}")
    return base ** (-torch.arange(0, dim, 2, dtype=dtype) / dim)


def sinusoidal_encoding(num_positions: int, d_model: int, base: float = BASE) -> torch.Tensor:
    """(num_positions, d_model) float32: PE[pos, 2i] = sin(pos * theta_i) and
    PE[pos, 2i+1] = cos(pos * theta_i), positions counted from 0."""
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * frequencies(d_model, base)
    encoding = torch.empty(num_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2] = angles.sin()
    encoding[:, 1::2] = angles.cos()
    return encoding.float()  # computed in float64: large angles keep their precision


def shift_matrix(offset: int, d_model: int, base: float = BASE) -> torch.Tensor:
    """The (d_model, d_model) M_k with M_k @ PE[pos] = PE[pos + k] for every pos.

    Block-diagonal, one 2x2 rotation per pair, from the angle-sum formulas
    sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b - sin a sin b:
    it depends on the offset k only, never on pos."""
    angles = offset * frequencies(d_model, base)
    cos, sin = angles.cos(), angles.sin()
    blocks = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # (D/2, 2, 2)
    return torch.block_diag(*blocks).float()


def _positions(length: int, offset: int, max_len: int, device) -> torch.Tensor:
    if offset + length > max_len:
        raise ValueError(f"positions {offset}..{offset + length - 1} do not fit: this model knows {max_len} positions "
                         f"(max_len); use shorter sequences or a larger max_len")
    return torch.arange(offset, offset + length, device=device)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding to token embeddings (B, L, D).

    The table is a buffer, not a parameter: nothing to train, and left out of
    the state dict (persistent=False) because it is a formula, not a weight."""

    def __init__(self, d_model: int, max_len: int = 4096, base: float = BASE):
        super().__init__()
        self.max_len = max_len
        self.register_buffer("encoding", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x + PE[offset : offset + L]; `offset` > 0 when generating token by
        token after `offset` tokens already seen."""
        positions = _positions(x.size(-2), offset, self.max_len, x.device)
        return x + self.encoding[positions].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a trained vector per position to token embeddings (B, L, D), as
    BERT (`position_embeddings`) and GPT-2 (`wpe`) do."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)
        # BERT and GPT-2 start positions at the scale of token embeddings
        # (std 0.02); nn.Embedding's default N(0, 1) would drown the tokens.
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """x + E[offset : offset + L], where E is the (max_len, D) table."""
        return x + self.embedding(_positions(x.size(-2), offset, self.max_len, x.device))


def rotary_angles(num_positions: int, head_dim: int, base: float = BASE) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each (num_positions, head_dim / 2): the rotation of pair i
    at position m is by m * theta_i, theta_i = base^(-2i / head_dim): the
    sinusoidal encoding's angles over the head's width, not the model's."""
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * frequencies(head_dim, base)
    return angles.cos().float(), angles.sin().float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each feature pair (x[2i], x[2i+1]) of x (..., L, Dh) by its
    angle: cos and sin are (L, Dh / 2), one row per position of x.

    [x'_2i  ]   [cos  -sin] [x_2i  ]
    [x'_2i+1] = [sin   cos] [x_2i+1]
    """
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2)  # (..., L, Dh/2, 2) -> (..., L, Dh): pairs back in place


def rotate_at(x: torch.Tensor, positions: torch.Tensor, base: float = BASE) -> torch.Tensor:
    """Queries or keys x (B, H, L, Dh) rotated pair by pair, (x[2i], x[2i+1])
    by the angle p * theta_i of each token's position p: `positions` is (L,),
    the same for every row, or (B, L), one row of positions per sequence.

    Positions are given, not counted from 0, because in a model they are not
    always 0..L-1: with a KV cache the new tokens come after the cached ones,
    and with left padding each row's text starts at its own column."""
    precise = torch.float32 if x.device.type == "mps" else torch.float64  # Apple's GPUs have no float64
    angles = positions.to(precise)[..., None] * frequencies(x.size(-1), base, dtype=precise).to(x.device)
    if angles.dim() == 3:  # (B, L, Dh/2) -> (B, 1, L, Dh/2): every head of a row turns by the same angles
        angles = angles[:, None]
    return apply_rotary(x, angles.cos(), angles.sin())


class RotaryEmbedding(nn.Module):
    """RoPE: rotates queries and keys (B, H, L, Dh) by their positions, so that
    the score q_m . k_n depends on m - n only. Values are not rotated: position
    changes who is attended to, not what is carried. Applied inside attention,
    after the heads are split; no parameters."""

    def __init__(self, head_dim: int, max_len: int = 4096, base: float = BASE):
        super().__init__()
        self.max_len = max_len
        cos, sin = rotary_angles(max_len, head_dim, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, k) rotated; positions offset..offset+L-1 (queries and keys of
        the same tokens: with a KV cache, rotate keys once, as they arrive)."""
        positions = _positions(q.size(-2), offset, self.max_len, q.device)
        if k.size(-2) != q.size(-2):
            raise ValueError(f"q and k must cover the same positions, got lengths {q.size(-2)} and {k.size(-2)}")
        cos, sin = self.cos[positions], self.sin[positions]
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


# --- a tiny model to compare the three, on a task that needs positions ---------

POSITION_KINDS = ("none", "sinusoidal", "learned", "rotary")


def previous_token_batch(batch: int, length: int, vocab_size: int, generator: torch.Generator | None = None):
    """(ids, targets), each (batch, length): random tokens, and at every
    position the token just before it (-100, ignored by cross_entropy, at
    position 0). The answer is fixed by order alone: a model that does not know
    where tokens sit can only guess among the tokens it sees."""
    ids = torch.randint(0, vocab_size, (batch, length), generator=generator)
    targets = ids.roll(1, dims=1)
    targets[:, 0] = -100
    return ids, targets


class TinyPositionModel(nn.Module):
    """Token embedding, one pre-LN transformer layer (self-attention without a
    mask, then a feed-forward network, each around a residual), and a linear
    read-out to the vocabulary. `positions` says how it learns where tokens
    sit: "none", "sinusoidal" or "learned" (added to the embeddings, up to
    `max_len`; the sinusoidal table is computed far beyond it), or "rotary"
    (queries and keys rotated in the attention)."""

    def __init__(self, vocab_size: int, d_model: int = 32, num_heads: int = 2, positions: str = "none",
                 max_len: int = 32):
        super().__init__()
        if positions not in POSITION_KINDS:
            raise ValueError(f"positions must be one of {POSITION_KINDS}, got {positions!r}")
        self.positions, self.num_heads, self.head_dim = positions, num_heads, d_model // num_heads
        self.embedding = nn.Embedding(vocab_size, d_model)
        # Each scheme beside tokens of the size its source gives them, so that
        # neither signal drowns the other: the Transformer's sinusoids (entries
        # of ±1) beside tokens drawn at std 1/√d_model and multiplied by
        # √d_model (§3.4, and its reference code), so of std 1; everywhere else
        # tokens at std 0.02, the scale of GPT-2's and BERT's learned positions.
        sinusoidal = positions == "sinusoidal"
        nn.init.normal_(self.embedding.weight, std=d_model ** -0.5 if sinusoidal else 0.02)
        self.token_scale = math.sqrt(d_model) if sinusoidal else 1.0
        self.add_positions = {"sinusoidal": lambda: SinusoidalPositionalEncoding(d_model, max_len=4096),
                              "learned": lambda: LearnedPositionalEmbedding(max_len, d_model)}.get(positions, nn.Identity)()
        self.rotary = RotaryEmbedding(self.head_dim, max_len=4096) if positions == "rotary" else None
        self.attention_norm, self.in_proj, self.out_proj = nn.LayerNorm(d_model), nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.feed_forward = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 4 * d_model), nn.GELU(),
                                          nn.Linear(4 * d_model, d_model))
        self.read_out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> logits (B, L, vocab_size)."""
        x = self.add_positions(self.embedding(ids) * self.token_scale)
        batch, length, d_model = x.shape
        q, k, v = (t.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
                   for t in self.in_proj(self.attention_norm(x)).chunk(3, dim=-1))
        if self.rotary is not None:
            q, k = self.rotary(q, k)
        heads, _ = scaled_dot_product_attention(q, k, v)
        x = x + self.out_proj(heads.transpose(1, 2).reshape(batch, length, d_model))
        x = x + self.feed_forward(x)
        return self.read_out(x)


def train_previous_token(kind: str, seed: int = 0, steps: int = 400, vocab_size: int = 16, length: int = 32,
                         on_step=None) -> TinyPositionModel:
    """Lesson 05's extrapolation test: a TinyPositionModel with `kind` of
    positions, trained to predict the previous token in sequences of `length`
    (AdamW, lr 3e-3, `steps` batches of 64); returned in eval mode. `seed`
    draws the weights and the training sequences (the same sequences for
    every kind); `on_step()` is called after each step (a progress bar)."""
    torch.manual_seed(seed)
    batches = torch.Generator().manual_seed(1 + seed)
    model = TinyPositionModel(vocab_size, d_model=32, num_heads=2, positions=kind, max_len=length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        ids, targets = previous_token_batch(64, length, vocab_size, batches)
        loss = nn.functional.cross_entropy(model(ids).flatten(0, 1), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if on_step:
            on_step()
    return model.eval()

