"""GPT, the reviewed version of lesson 10: a decoder-only transformer that
predicts each token from the tokens before it.

It is lesson 06's pre-LN block (`EncoderLayer` with norm="pre") under a
causal mask, between token + position embeddings and a language-model head
tied to the token table. The weights map one to one onto Hugging Face's
`GPT2LMHeadModel` (`to_huggingface`, `from_huggingface`), whose linear
layers are `Conv1D`s that store their weight transposed.

Generation (`generate`) samples one token at a time with the rules of
`course_utils.generation`, and keeps each layer's keys and values in a
`KVCache` so that every step computes the newest token only.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .attention import KVCache
from .generation import sample_next
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
        for block in self.blocks:  # GPT-2: each residual branch's last layer starts smaller, 1/√(2·layers)
            for projection in (block.self_attn.out_proj, block.feed_forward.linear2):
                nn.init.normal_(projection.weight, std=0.02 / (2 * config.layers) ** 0.5)

    def forward(self, ids: torch.Tensor, cache: list[KVCache] | None = None) -> torch.Tensor:
        """ids: (B, L). Returns logits (B, L, vocab): row t scores the token
        that follows ids[:, :t + 1].

        With a cache (from `new_cache`), ids are the tokens after the ones the
        cache already holds: their positions continue from there."""
        past = len(cache[0]) if cache else 0
        length = ids.size(1)
        if past + length > self.config.context:
            held = f"the cache holds {past} positions and " if past else ""
            raise ValueError(f"{held}{length} tokens do not fit a context of {self.config.context}: keep the last "
                             f"{self.config.context} (ids[:, -{self.config.context}:]) and start a new cache")
        positions = torch.arange(past, past + length, device=ids.device)
        x = self.dropout(self.token_embedding(ids) + self.position_embedding(positions))
        for block, layer_cache in zip(self.blocks, cache or [None] * len(self.blocks)):
            x, _ = block(x, is_causal=True, cache=layer_cache)
        return F.linear(self.final_norm(x), self.token_embedding.weight)  # the head is the token table

    def new_cache(self) -> list[KVCache]:
        """An empty key-value cache, one per block."""
        return [KVCache() for _ in self.blocks]


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# --- generation --------------------------------------------------------------------

@torch.no_grad()
def generate(model: GPT, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Extend every row of ids (B, t) by max_new_tokens sampled tokens (see
    `generation.sample_next`; temperature 0 is greedy). Returns (B, t + new).

    With use_cache, the prompt goes through the model once, then each step
    feeds the newest token only. Once the text is longer than the context,
    the model sees a sliding window of the last `context` tokens; every
    position in the window then shifts by one at each step, and learned
    absolute positions make every cached key stale, so from there each step
    runs the whole window again, as without a cache."""
    model.eval()
    context = model.config.context
    cache = None
    for _ in range(max_new_tokens):
        if not use_cache or ids.size(1) > context:
            logits = model(ids[:, -context:])
        elif cache is None:
            cache = model.new_cache()
            logits = model(ids, cache)
        else:
            logits = model(ids[:, -1:], cache)
        next_token = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, next_token[:, None]], dim=1)
    return ids


def next_token_log_probs(model: GPT):
    """The model as the callable `generation.greedy` and `generation.beam_search`
    take: prefixes (N, t) -> log-probabilities of the next token (N, vocab)."""
    context = model.config.context
    return lambda prefixes: model(prefixes[:, -context:])[:, -1].log_softmax(dim=-1)


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
