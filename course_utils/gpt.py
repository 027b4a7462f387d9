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

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from .attention import KVCache
from .generation import sample_next
from .training import train, warmup_cosine
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
    # GPT-2 used GELU's tanh approximation ("gelu_tanh"); nanoGPT the exact
    # one, which PyTorch computes faster on this CPU (benchmarks/gpt_train.py --ablation).
    activation: str = "gelu"

    def block(self) -> TransformerConfig:
        return TransformerConfig(d_model=self.width, num_heads=self.heads, d_ff=4 * self.width, dropout=self.dropout,
                                 activation=self.activation, norm="pre")


class GPT(nn.Module):
    """GPT-2's layout: token + learned position embeddings, `layers` pre-LN
    blocks under a causal mask, a final LayerNorm, and a head tied to the
    token table. Lesson 10's learner writes its forward pass (10.gpt_forward)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.context, config.width)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(EncoderLayer(config.block()) for _ in range(config.layers))
        self.final_norm = LayerNorm(config.width)
        # When on, training keeps only each block's input and recomputes the
        # block's insides during the backward pass: less memory, more time (lesson 11).
        self.gradient_checkpointing = False
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
            if self.gradient_checkpointing and torch.is_grad_enabled() and layer_cache is None:
                x, _ = checkpoint(block, x, is_causal=True, use_reentrant=False)
            else:
                x, _ = block(x, is_causal=True, cache=layer_cache)
        return F.linear(self.final_norm(x), self.token_embedding.weight)  # the head is the token table

    def new_cache(self) -> list[KVCache]:
        """An empty key-value cache, one per block."""
        return [KVCache(self.config.context) for _ in self.blocks]


def forward_with_past(model: GPT, ids: torch.Tensor, past: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
    """The model's forward pass with its cache as plain tensors, the form of
    Hugging Face's `past_key_values`: `past` holds one (keys, values) pair per
    layer, each (B, heads, positions so far, head width), and ids (B, L) are
    the tokens after those positions. Returns (logits (B, L, vocab), present):
    present is past with the new positions' keys and values appended."""
    cache = model.new_cache()
    for layer, (keys, values) in zip(cache, past or []):
        layer.append(keys, values)
    logits = model(ids, cache)
    return logits, [layer.held() for layer in cache]


def _init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: normal(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


# --- generation --------------------------------------------------------------------

@torch.no_grad()
def generate(model: GPT, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, generator: torch.Generator | None = None, use_cache: bool = True,
             attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Extend every row of ids (B, t) by max_new_tokens sampled tokens (see
    `generation.sample_next`; temperature 0 is greedy). Returns (B, t + new).

    With use_cache, the prompt goes through the model once, then each step
    feeds the newest token only. Once the text is longer than the context,
    the model sees a sliding window of the last `context` tokens; every
    position in the window then shifts by one at each step, and learned
    absolute positions make every cached key stale, so from there each step
    runs the whole window again, as without a cache.

    attention_mask (B, t), 1 for a token and 0 for padding, lets prompts of
    different lengths share a batch, left-padded, for a model that takes one
    (lesson 12's `modern.ModernDecoder`); every new token counts as a token."""
    model.eval()
    context = model.config.context
    cache = None
    masked = {} if attention_mask is None else {"attention_mask": attention_mask}
    for _ in range(max_new_tokens):
        if not use_cache or ids.size(1) > context:
            logits = model(ids[:, -context:], **{name: mask[:, -context:] for name, mask in masked.items()})
        elif cache is None:
            cache = model.new_cache()
            logits = model(ids, cache, **masked)
        else:
            logits = model(ids[:, -1:], cache, **masked)
        next_token = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
        ids = torch.cat([ids, next_token[:, None]], dim=1)
        masked = {name: torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1) for name, mask in masked.items()}
    return ids


def next_token_log_probs(model: GPT):
    """The model as the callable `generation.greedy` and `generation.beam_search`
    take: prefixes (N, t) -> log-probabilities of the next token (N, vocab)."""
    context = model.config.context
    return lambda prefixes: model(prefixes[:, -context:])[:, -1].log_softmax(dim=-1)


# --- data and training -------------------------------------------------------------

# As many characters as nanoGPT's tiny-shakespeare file, so that its recipe
# sees as much text with us as with it.
RECIPE_CHARACTERS = 1_115_394


def character_data(characters: int = RECIPE_CHARACTERS):
    """(tokenizer, train ids, validation ids): the first `characters`
    characters of the course's training text, one id per character, split
    90/10 with the first 90% to train (the split nanoGPT makes of its text)."""
    from .data import shakespeare_splits
    from .tokenization import char_tokenizer, encode_chars

    text = shakespeare_splits()[0][:characters]
    tokenizer = char_tokenizer(text)
    ids = encode_chars(tokenizer, text)
    split = int(0.9 * len(ids))
    return tokenizer, ids[:split], ids[split:]


def random_windows(ids: torch.Tensor, count: int, context: int,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` windows of context + 1 tokens of ids (1-D) at random starts, as
    (inputs, targets), each (count, context): the targets are the inputs
    shifted by one, so target t is the token that follows inputs[:t + 1]."""
    starts = torch.randint(len(ids) - context, (count,), generator=generator)
    windows = ids[starts[:, None] + torch.arange(context + 1)]
    return windows[:, :-1], windows[:, 1:]


def next_token_loss(model: GPT, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The cross-entropy of every target token, averaged over all positions."""
    inputs, targets = batch
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


@dataclass(frozen=True)
class TrainingRecipe:
    """The CPU recipe of the best-known small GPT trainer, nanoGPT (its README:
    batch 12, 2,000 steps, AdamW with learning rate 1e-3 after 100 warm-up
    steps, cosine decay to 1e-4, β2 = 0.99, weight decay 0.1 on the weight
    matrices, gradients clipped at 1, 20 batches per split to evaluate)."""

    batch_size: int = 12
    steps: int = 2000
    peak_lr: float = 1e-3
    warmup_steps: int = 100
    final_lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.1
    clip_grad_norm: float = 1.0
    eval_every: int = 250
    eval_batches: int = 20
    seed: int = 0
    fused_optimizer: bool = True  # one kernel updates every tensor (benchmarks/gpt_train.py measures it)

    def lr_at(self) -> Callable[[int], float]:
        return warmup_cosine(self.peak_lr, self.warmup_steps, self.steps, self.final_lr)

    def optimizer(self, model: GPT) -> torch.optim.Optimizer:
        """AdamW that decays the weight matrices and embeddings only (not the
        biases and norms), with the fused kernel: one update for all tensors."""
        matrices = [p for p in model.parameters() if p.dim() >= 2]
        vectors = [p for p in model.parameters() if p.dim() < 2]
        return torch.optim.AdamW([{"params": matrices, "weight_decay": self.weight_decay},
                                  {"params": vectors, "weight_decay": 0.0}],
                                 lr=self.peak_lr, betas=self.betas, fused=self.fused_optimizer)

    def batch_at(self, step: int, ids: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of a step, the same on every run (seeded by the step)."""
        return random_windows(ids, self.batch_size, context, torch.Generator().manual_seed(self.seed * 1_000_003 + step))


def flops_per_step(config: GPTConfig, batch_size: int) -> int:
    """The FLOPs of one training step on `batch_size` windows, forward and
    backward, as PyTorch's `FlopCounterMode` counts them (matrix multiplies
    and attention; the element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = GPT(config)
    inputs = torch.zeros(batch_size, config.context, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        next_token_loss(model, (inputs, inputs)).backward()
    return counter.get_total_flops()


@torch.no_grad()
def bits_per_character(model: GPT, ids: torch.Tensor, windows_per_batch: int = 256) -> float:
    """The model's mean loss in bits on every token of ids (1-D) but the
    first, each predicted from the tokens before it in its window: ids are cut
    into consecutive windows of `context` inputs (the last one shorter). A
    token at a window's start is predicted with no context and one at its end
    with context - 1 tokens, the same for every model scored this way; for
    character ids it is bits per character (lessons 10 and 12)."""
    model.eval()
    context = model.config.context
    total = 0.0
    for start in range(0, len(ids) - 1, context * windows_per_batch):
        chunk = ids[start:start + context * windows_per_batch + 1]
        inputs, targets = chunk[:-1], chunk[1:]
        whole = len(inputs) // context * context
        pieces = [(inputs[:whole].view(-1, context), targets[:whole].view(-1, context)), (inputs[whole:][None], targets[whole:][None])]
        for window_inputs, window_targets in pieces:
            if window_inputs.numel():
                total += F.cross_entropy(model(window_inputs).flatten(0, 1), window_targets.flatten(), reduction="sum").item()
    return total / (len(ids) - 1) / math.log(2)


# A shorter schedule for the same model: a peak rate five times nanoGPT's,
# reached after 50 steps, decayed to 1e-5 by step 1,200. It reaches the
# validation loss of nanoGPT's 2,000 steps in 60% of them
# (benchmarks/nanogpt_race.py runs the two side by side).
SHORT_RECIPE = TrainingRecipe(steps=1200, peak_lr=5e-3, warmup_steps=50, final_lr=1e-5)


@dataclass
class TrainingRun:
    losses: list[float] = field(default_factory=list)  # every step's training loss
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)  # (step, train, validation)
    samples: list[tuple[int, str]] = field(default_factory=list)  # (step, text the model wrote)


@torch.no_grad()
def mean_loss(model: GPT, batch: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    return next_token_loss(model, batch).item()


def train_gpt(model: GPT, train_ids: torch.Tensor, validation_ids: torch.Tensor, recipe: TrainingRecipe = TrainingRecipe(),
              sample: Callable[[GPT], str] | None = None, progress: bool = True,
              optimizer: torch.optim.Optimizer | None = None, run: TrainingRun | None = None,
              last_step: int | None = None, after_evaluation: Callable[[int], None] | None = None,
              parallel=None) -> TrainingRun:
    """Train with `recipe`; every `eval_every` steps, measure the loss on the
    same eval_batches · batch_size windows of each split (one forward pass
    each) and, if `sample(model)` is given, print what the model writes.

    A run can stop and go on. Given the optimizer and the TrainingRun of the
    steps already taken (a run saved with `course_utils.checkpoint`), it
    goes on from the step after the last loss in `run`; it stops after
    `last_step` (default: the recipe's last). after_evaluation(step), if
    given, runs after each evaluation: `course train gpt` saves a
    checkpoint there. Also works for lesson 12's `modern.ModernDecoder`.

    parallel: a `distributed.DataParallel`, to train as one of several
    processes (see `distributed.train_gpt_data_parallel`): the steps then
    run through its DDP module on this process's shard of each batch, and
    `run.losses` records the loss of the whole batch (the mean over the
    processes). Evaluation runs on `model` itself, the whole held-out batches
    in every process."""
    context = model.config.context
    held = [random_windows(ids, recipe.eval_batches * recipe.batch_size, context,
                           torch.Generator().manual_seed(recipe.seed + 1)) for ids in (train_ids, validation_ids)]
    optimizer = optimizer or recipe.optimizer(model)
    run = run or TrainingRun()

    def evaluate(step: int) -> None:
        if step % recipe.eval_every and step != recipe.steps:
            return
        train_loss, validation_loss = (mean_loss(model, batch) for batch in held)
        run.evaluations.append((step, train_loss, validation_loss))
        line = f"step {step:>5}  train loss {train_loss:.3f}  validation loss {validation_loss:.3f}"
        if sample is not None:
            run.samples.append((step, sample(model)))
            line += "\n" + run.samples[-1][1]
        if progress:
            tqdm.write(line)
        if after_evaluation is not None:
            after_evaluation(step)

    def loss_of(model: GPT, batch) -> torch.Tensor:
        loss = next_token_loss(model, batch)
        # Now, not when `train` returns: a checkpoint mid-run holds every loss so far.
        run.losses.append((loss if parallel is None else parallel.mean(loss)).item())
        return loss

    def batch_at(step: int):
        batch = recipe.batch_at(step, train_ids, context)
        return batch if parallel is None else parallel.shard(batch)

    if not run.evaluations:  # a new run: its loss before training
        evaluate(0)
    train(model if parallel is None else parallel.module, batch_at, loss_of, optimizer,
          recipe.steps if last_step is None else last_step, recipe.lr_at(), recipe.clip_grad_norm,
          desc=f"training {type(model).__name__}", progress=progress, first_step=len(run.losses) + 1,
          after_step=evaluate)
    return run


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


HUGGINGFACE_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new"}  # ours -> GPT2Config.activation_function


def huggingface_config(config: GPTConfig):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.context, n_embd=config.width,
                      n_layer=config.layers, n_head=config.heads, n_inner=4 * config.width,
                      activation_function=HUGGINGFACE_ACTIVATIONS[config.activation], resid_pdrop=config.dropout, embd_pdrop=config.dropout,
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


def refuse_differences(config, assumed: dict[str, tuple[str, bool]], message: str) -> None:
    """Raise ValueError, `message` then every disagreeing field, if a Hugging
    Face config disagrees with what our model computes. assumed: field ->
    (what ours computes, whether the config agrees)."""
    differing = [f"{field}={getattr(config, field)!r} (ours: {ours})" for field, (ours, agrees) in assumed.items()
                 if not agrees]
    if differing:
        raise ValueError(f"{message}: " + ", ".join(differing))


@torch.no_grad()
def from_huggingface(theirs) -> GPT:
    """Our GPT with the weights of a `GPT2LMHeadModel` (with a tied head).
    A config field that would change the model's arithmetic in a way ours does
    not follow raises, rather than being ignored."""
    hf = theirs.config
    assumed = {  # field: (what our GPT computes, whether the config agrees)
        "n_inner": ("4 * n_embd", hf.n_inner in (None, 4 * hf.n_embd)),
        "layer_norm_epsilon": ("1e-05", hf.layer_norm_epsilon == 1e-5),
        "scale_attn_weights": ("True", hf.scale_attn_weights),
        "scale_attn_by_inverse_layer_idx": ("False", not hf.scale_attn_by_inverse_layer_idx),
        "reorder_and_upcast_attn": ("False", not hf.reorder_and_upcast_attn),
        "tie_word_embeddings": ("True", getattr(hf, "tie_word_embeddings", True)),
    }
    refuse_differences(hf, assumed, "this GPT2 config differs from what course_utils.gpt.GPT computes")
    activation = {theirs: ours for ours, theirs in HUGGINGFACE_ACTIVATIONS.items()}.get(hf.activation_function)
    if activation is None:
        raise ValueError(f"activation {hf.activation_function!r} has no counterpart here; "
                         f"use one of {sorted(HUGGINGFACE_ACTIVATIONS.values())}")
    model = GPT(GPTConfig(vocab_size=hf.vocab_size, context=hf.n_positions, width=hf.n_embd, layers=hf.n_layer,
                          heads=hf.n_head, activation=activation)).eval()
    state = theirs.state_dict()
    for name, tensor, transposed in _weight_pairs(model):
        tensor.copy_(state[name].T if transposed else state[name])
    return model
