"""Attention, the reviewed version of lessons 02-04.

Mask convention, everywhere in this course: a boolean tensor in which True
means "may attend" (the same as `F.scaled_dot_product_attention`). Note that
`nn.MultiheadAttention` uses the opposite: True there means "masked out".

Shapes: batch B, heads H, query length Lq, key length Lk, width D = H * Dh.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q kᵀ / √d_k) v, returning (output, weights).

    q: (..., Lq, d_k), k: (..., Lk, d_k), v: (..., Lk, d_v);
    mask: bool, broadcastable to (..., Lq, Lk), True where attending is allowed.

    A query whose keys are all masked (left padding under a causal mask, say)
    has nothing to attend to: like `F.scaled_dot_product_attention`, it gets
    all-zero weights and a zero output, and no gradient, instead of the NaN
    that the softmax of a row of -inf would give.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is None:
        weights = scores.softmax(dim=-1)
        return weights @ v, weights
    # -inf before the softmax gives masked keys exactly zero weight.
    scores = scores.masked_fill(~mask, float("-inf"))
    # A row of -inf only would softmax to NaN, in the forward pass and in every
    # gradient behind it: give such rows finite scores, then zero their weights.
    nothing_to_attend = ~mask.any(dim=-1, keepdim=True)
    weights = scores.masked_fill(nothing_to_attend, 0.0).softmax(dim=-1).masked_fill(nothing_to_attend, 0.0)
    return weights @ v, weights


def causal_mask(length: int, device=None, past: int = 0) -> torch.Tensor:
    """(length, past + length) bool: query i, which sits at position past + i,
    may attend to positions 0..past + i. With past = 0 it is square: position i
    sees positions 0..i. (past > 0 is the case of a KV cache holding the keys
    of `past` earlier positions.)"""
    return torch.ones(length, past + length, dtype=torch.bool, device=device).tril(diagonal=past)


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """From a tokenizer's (B, Lk) 0/1 `attention_mask` to a (B, 1, 1, Lk) bool
    mask that broadcasts over heads and queries: padded keys get no attention."""
    return attention_mask.bool()[:, None, None, :]


def attend(q, k, v, mask=None, is_causal: bool = False, need_weights: bool = False, dropout: float = 0.0):
    """The attention step of a layer whose heads are split: q (B, H, Lq, Dh)
    attends to k and v (B, H, Lk, Dh). Returns (output (B, H, Lq, Dh),
    weights (B, H, Lq, Lk) or None).

    mask: bool, broadcastable to (B, H, Lq, Lk), True = may attend.
    is_causal=True is the causal mask without building it: the fused kernel
    skips the masked half itself. When Lk > Lq (a KV cache holds Lk - Lq
    earlier positions) the queries sit after those positions. Without
    need_weights this is PyTorch's fused kernel, which never builds the
    weights; with it, the course's own `scaled_dot_product_attention`."""
    if is_causal and mask is not None:
        raise ValueError("give a mask or is_causal=True, not both")
    queries, keys = q.size(-2), k.size(-2)
    # The kernel's own causal mask is square (query i sees keys 0..i); a
    # cache puts the queries after `keys - queries` earlier positions.
    fused_causal = is_causal and queries == keys and not need_weights
    if is_causal and not fused_causal and queries > 1:  # one query sees every key: no mask
        mask = causal_mask(queries, device=q.device, past=keys - queries)
    if need_weights:
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        if dropout:
            out = F.dropout(weights, dropout) @ v
        return out, weights
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=fused_causal), None


class KVCache:
    """The keys and values one attention layer has computed so far, each
    (B, H, positions, Dh). When a decoder generates token t + 1, the keys and
    values of tokens 1..t are the ones it computed at the steps before (a
    causal model never revises them), so it keeps them here and computes the
    newest token's only: memory that grows with the length, traded for time.

    The first `append` reserves room for `capacity` positions, so that later
    ones write in place instead of copying everything held into a new tensor."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.length = 0
        self._keys: torch.Tensor | None = None
        self._values: torch.Tensor | None = None

    def __len__(self) -> int:
        """How many positions the cache holds."""
        return self.length

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the new positions' keys and values; return all of them."""
        new = keys.size(2)
        if self.length + new > self.capacity:
            raise ValueError(f"the cache holds {self.length} positions and has room for {self.capacity}: "
                             f"{new} more do not fit")
        if self._keys is None:
            batch, heads, _, head_dim = keys.shape
            self._keys = keys.new_empty(batch, heads, self.capacity, head_dim)
            self._values = values.new_empty(batch, heads, self.capacity, head_dim)
        self._keys[:, :, self.length:self.length + new] = keys
        self._values[:, :, self.length:self.length + new] = values
        self.length += new
        return self._keys[:, :, :self.length], self._values[:, :, :self.length]

    def held(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values of the positions held, each (B, H, positions, Dh)."""
        if self._keys is None:
            raise ValueError("the cache is empty: nothing has been appended yet")
        return self._keys[:, :, :self.length], self._values[:, :, :self.length]

    @property
    def nbytes(self) -> int:
        """The bytes of the keys and values held (the reserved room is not counted)."""
        if self._keys is None:
            return 0
        return sum(tensor.numel() * tensor.element_size() for tensor in self.held())


class MultiHeadAttention(nn.Module):
    """H heads of width D/H attend in parallel to different projections of the
    same sequence; W^O mixes their outputs back to width D.

    The projections are stored like `nn.MultiheadAttention`'s (one packed
    (3D, D) input projection, then `out_proj`), so weights copy one to one.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)  # W^Q, W^K, W^V stacked
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)  # W^O
        self.dropout = dropout

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, Dh): view the width as H slices, then bring
        heads forward. A reshape straight to (B, H, L, Dh) would mix positions."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, L, Dh) -> (B, L, D), the inverse of split_heads."""
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.d_model)

    def project(self, query, key, value):
        if query is key is value:  # self-attention: one matrix multiply for all three
            return self.in_proj(query).chunk(3, dim=-1)
        w_q, w_k, w_v = self.in_proj.weight.chunk(3)
        b_q, b_k, b_v = self.in_proj.bias.chunk(3) if self.in_proj.bias is not None else (None,) * 3
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def forward(self, query, key=None, value=None, mask=None, need_weights: bool = False, is_causal: bool = False,
                cache: KVCache | None = None):
        """query: (B, Lq, D); key, value: (B, Lk, D), default: the query
        (self-attention). mask: bool, broadcastable to (B, H, Lq, Lk), True =
        may attend. Returns (output (B, Lq, D), weights (B, H, Lq, Lk) or None).

        is_causal=True is the causal mask without building it: the fused
        kernel skips the masked half itself. With a `cache`, the new keys and
        values are appended to it and the queries attend to all it holds."""
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (self.split_heads(x) for x in self.project(query, key, value))
        if cache is not None:
            k, v = cache.append(k, v)
        out, weights = attend(q, k, v, mask, is_causal, need_weights, self.dropout if self.training else 0.0)
        return self.out_proj(self.merge_heads(out)), weights

    @torch.no_grad()
    def load_from_torch(self, reference: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a `nn.MultiheadAttention(d_model, num_heads, batch_first=True)`."""
        if reference.in_proj_weight is None:
            raise ValueError("only nn.MultiheadAttention with equal query, key and value widths is supported")
        self.in_proj.weight.copy_(reference.in_proj_weight)
        self.out_proj.weight.copy_(reference.out_proj.weight)
        if self.in_proj.bias is not None:
            self.in_proj.bias.copy_(reference.in_proj_bias)
            self.out_proj.bias.copy_(reference.out_proj.bias)
        return self
