"""GPT, the reviewed version of lesson 10: a decoder-only transformer that
predicts each token from the tokens before it.

It is lesson 06's pre-LN block (`EncoderLayer` with norm="pre") under a
causal mask, between token + position embeddings and a language-model head
tied to the token table. The weights map one to one onto Hugging Face's
`GPT2LMHeadModel` (`to_huggingface`, `from_huggingface`), whose linear
layers are `Conv1D`s that store their weight transposed.

Work in progress (issue 11): generation with a KV cache and the training
recipe come next.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import causal_mask
from .transformer import EncoderLayer, LayerNorm, TransformerConfig


@dataclass(frozen=True)
class GPTConfig:
    """A small GPT: by default, the CPU recipe of the best-known small GPT
    trainer (4 layers, 4 heads, width 128, context 64)."""

    vocab_size: int = 65
    context: int = 64
    width: int = 128
    layers: int = 4
    heads: int = 4
    dropout: float = 0.0

    def block(self) -> TransformerConfig:
        return TransformerConfig(d_model=self.width, num_heads=self.heads, d_ff=4 * self.width, dropout=self.dropout,
                                 activation="gelu_tanh", norm="pre")


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.context, config.width)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderLayer(config.block()) for _ in range(config.layers))
        self.final_norm = LayerNorm(config.width)
        self.apply(_init_weights)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, L) with L <= context. Returns logits (B, L, vocab): row t
        scores the token that follows ids[:, :t + 1]."""
        length = ids.size(1)
        if length > self.config.context:
            raise ValueError(f"{length} tokens do not fit a context of {self.config.context}: keep the last "
                             f"{self.config.context} (ids[:, -{self.config.context}:])")
        positions = torch.arange(length, device=ids.device)
        x = self.dropout(self.token_embedding(ids) + self.position_embedding(positions))
        mask = causal_mask(length, device=ids.device)
        for block in self.blocks:
            x, _ = block(x, mask=mask)
        return F.linear(self.final_norm(x), self.token_embedding.weight)  # the head is the token table


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# --- Hugging Face ------------------------------------------------------------------

def _weight_pairs(model: GPT):
    """(Hugging Face name, our tensor, transposed?) for every weight."""
    yield "transformer.wte.weight", model.token_embedding.weight, False
    yield "transformer.wpe.weight", model.position_embedding.weight, False
    for i, block in enumerate(model.blocks):
        prefix = f"transformer.h.{i}."
        for theirs, ours in [("ln_1", block.norm1), ("ln_2", block.norm2)]:
            yield prefix + theirs + ".weight", ours.weight, False
            yield prefix + theirs + ".bias", ours.bias, False
        for theirs, ours in [("attn.c_attn", block.self_attn.in_proj), ("attn.c_proj", block.self_attn.out_proj),
                             ("mlp.c_fc", block.feed_forward.linear1), ("mlp.c_proj", block.feed_forward.linear2)]:
            yield prefix + theirs + ".weight", ours.weight, True  # Conv1D stores (in, out)
            yield prefix + theirs + ".bias", ours.bias, False
    yield "transformer.ln_f.weight", model.final_norm.weight, False
    yield "transformer.ln_f.bias", model.final_norm.bias, False


def huggingface_config(config: GPTConfig):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.context, n_embd=config.width,
                      n_layer=config.layers, n_head=config.heads, n_inner=4 * config.width,
                      activation_function="gelu_new", resid_pdrop=config.dropout, embd_pdrop=config.dropout,
                      attn_pdrop=config.dropout, layer_norm_epsilon=1e-5, tie_word_embeddings=True,
                      bos_token_id=None, eos_token_id=None)


@torch.no_grad()
def to_huggingface(model: GPT):
    """A `GPT2LMHeadModel` with our weights, in eval mode."""
    from transformers import GPT2LMHeadModel

    theirs = GPT2LMHeadModel(huggingface_config(model.config)).eval()
    state = theirs.state_dict()
    for name, tensor, transposed in _weight_pairs(model):
        state[name].copy_(tensor.T if transposed else tensor)
    theirs.tie_weights()
    return theirs


@torch.no_grad()
def from_huggingface(theirs) -> GPT:
    """Our GPT with the weights of a `GPT2LMHeadModel` (tied head, GELU-tanh)."""
    hf = theirs.config
    model = GPT(GPTConfig(vocab_size=hf.vocab_size, context=hf.n_positions, width=hf.n_embd, layers=hf.n_layer,
                          heads=hf.n_head)).eval()
    state = theirs.state_dict()
    for name, tensor, transposed in _weight_pairs(model):
        tensor.copy_(state[name].T if transposed else state[name])
    return model
