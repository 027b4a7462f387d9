"""Sequence to sequence, the reviewed version of lesson 07.

The task: reverse the words of a line of Shakespeare.

    source   four nights will quickly dream away the time
    target   time the away dream quickly will nights four

It is real text with a Zipfian vocabulary, its answer is exact, and its
alignment is known: target word i is source word n - 1 - i, an anti-diagonal
when the cross-attention is drawn. (For a reader going left to right, the
first word out is the last word in, so the distances between a word read and
the same word written run from 1 to 2n - 1, with mean n, as for copying:
the arrangement Sutskever et al., 2014, made by reversing their sources.)
Lines of the 34 training plays train; lines of the held-out plays
(`data.VALIDATION_PLAYS`) test.

Three models learn it, each with one shared embedding table, tied to the
output layer (`logits = h @ E^T`, as in the paper):

- `TransformerSeq2Seq`: lesson 06's encoder-decoder with sinusoidal positions;
- `TorchTransformerSeq2Seq`: the same model around `nn.Transformer`, whose
  weights copy one to one (`copy_weights_from_torch`);
- `LSTMSeq2Seq`: a bidirectional LSTM encoder and an LSTM decoder, with
  attention (Luong et al., 2015, "general" scores) or without it (the
  decoder sees the source only through the encoder's final state).

Every model exposes `next_log_probs_for(source)`, the callable that
`course_utils.generation` decodes with, so greedy decoding and beam search
are written once for all three (`greedy_decode` is greedy decoding for a
batch of padded sources).
"""

import collections
import copy
import math
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from . import data
from .attention import causal_mask
from .generation import greedy
from .positional import sinusoidal_encoding
from .transformer import EncoderDecoder, TransformerConfig, load_torch_weights

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(len(SPECIALS))


# --- the task -------------------------------------------------------------------

def verse_lines(text: str, min_words: int = 3, max_words: int = 12) -> list[list[str]]:
    """The spoken lines of `text` with min_words to max_words words (as
    `data.words` cuts them). `text` is speeches as `data.clean_play` writes
    them, blocks of "Speaker:" and then lines; the speakers are left out."""
    spoken = (line for speech in text.split("\n\n") for line in speech.strip().split("\n")[1:])
    lines = (data.words(line) for line in spoken)
    return [line for line in lines if min_words <= len(line) <= max_words]


class Vocabulary:
    """The special tokens, then the `size` most frequent words of `lines`;
    every other word is <unk>."""

    def __init__(self, lines: list[list[str]], size: int):
        counts = collections.Counter(word for line in lines for word in line)
        self.words = list(SPECIALS) + [word for word, _ in counts.most_common(size)]
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: list[str]) -> list[int]:
        return [self.index.get(word, UNK) for word in words]

    def decode(self, ids) -> list[str]:
        return [self.words[i] for i in ids]


def reversal_pairs(lines: list[list[str]], vocab: Vocabulary) -> list[tuple[list[int], list[int]]]:
    """(source ids, target ids) for each line: the target is the source reversed."""
    return [(ids, ids[::-1]) for ids in map(vocab.encode, lines)]


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-pad lists of ids with <pad> into one (B, longest) tensor."""
    batch = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.long)
    for i, row in enumerate(rows):
        batch[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return batch


def make_batch(pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, target) tensors: the source ends with <eos> (so the encoder
    sees where the line ends); the target is <bos> words <eos>. The decoder
    reads target[:, :-1] and is trained to predict target[:, 1:]."""
    sources = pad([source + [EOS] for source, _ in pairs])
    targets = pad([[BOS] + target + [EOS] for _, target in pairs])
    return sources, targets


def random_batches(pairs, batch_size: int, seed: int = 0, by_length: bool = True):
    """next_batch(step) for `training.train`: a batch of pairs drawn at random
    (with replacement) by a seeded generator. With `by_length`, a pair is
    drawn with probability proportional to its length, so that every source
    word is equally likely to be trained on."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.tensor([float(len(source)) if by_length else 1.0 for source, _ in pairs])

    def next_batch(step: int):
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=generator).tolist()
        return make_batch([pairs[i] for i in picks])

    return next_batch


def loss_of(model: nn.Module, batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Teacher forcing: the decoder reads the true target shifted right, and
    every position's prediction is scored at once; <pad> scores nothing. With
    label_smoothing = ε, each target is 1 - ε on the right token plus ε
    spread evenly over the vocabulary (Szegedy et al., 2016)."""
    source, target = batch
    logits = model(source, target[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), target[:, 1:].flatten(), ignore_index=PAD,
                           label_smoothing=label_smoothing)


# --- the transformer ------------------------------------------------------------

class TransformerSeq2Seq(nn.Module):
    """Shared embeddings (× √d_model, as in the paper) plus sinusoidal
    positions, lesson 06's `EncoderDecoder`, and the embedding table as the
    output layer."""

    def __init__(self, vocab_size: int, config: TransformerConfig, max_len: int = 512):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.d_model)
        # N(0, 1/d) so that √d · embedding has unit-size entries, the scale of
        # the sinusoids; nn.Embedding's N(0, 1) times √d would drown them.
        nn.init.normal_(self.embedding.weight, std=config.d_model ** -0.5)
        self.register_buffer("positions", sinusoidal_encoding(max_len, config.d_model).float(), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.transformer = self.build_core(config)

    def build_core(self, config: TransformerConfig) -> nn.Module:
        return EncoderDecoder(config)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids) * math.sqrt(self.config.d_model)
        return self.dropout(x + self.positions[:ids.size(1)])

    def encode(self, source: torch.Tensor):
        """(memory (B, Ls, D), memory mask (B, 1, 1, Ls), True = a real token)."""
        memory_mask = (source != PAD)[:, None, None, :]
        return self.transformer.encoder(self.embed(source), memory_mask), memory_mask

    def decode(self, target: torch.Tensor, memory, memory_mask, need_weights: bool = False):
        """(logits (B, Lt, V), each decoder layer's cross-attention (B, H, Lt, Ls)
        if need_weights). Target padding needs no mask of its own: it comes
        after the tokens that are scored, and the causal mask hides it from them."""
        x, cross_attention = self.transformer.decoder(self.embed(target), memory, causal_mask(target.size(1), target.device),
                                                      memory_mask, need_weights)
        return x @ self.embedding.weight.T, cross_attention

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, *self.encode(source))[0]

    def next_log_probs_for(self, source: torch.Tensor):
        """A `generation.NextLogProbs` for the sources (B, Ls): encoded once,
        then each call decodes a batch of prefixes (the same B rows, or any
        number of rows for a single source, as beam search asks)."""
        memory, memory_mask = self.encode(source)

        def next_log_probs(prefixes: torch.Tensor) -> torch.Tensor:
            rows = len(prefixes)  # expand() is a no-op for B rows, a broadcast for one source
            logits, _ = self.decode(prefixes, memory.expand(rows, -1, -1), memory_mask.expand(rows, -1, -1, -1))
            return logits[:, -1].log_softmax(dim=-1)

        return next_log_probs


class TorchTransformerSeq2Seq(TransformerSeq2Seq):
    """The same model with PyTorch's `nn.Transformer` as its core. PyTorch's
    masks mean the opposite of ours: True = *not* allowed."""

    def build_core(self, config: TransformerConfig) -> nn.Module:
        with warnings.catch_warnings():  # "enable_nested_tensor ... norm_first": a speed path we do not need
            warnings.simplefilter("ignore", UserWarning)
            return nn.Transformer(config.d_model, config.num_heads, config.num_encoder_layers, config.num_decoder_layers,
                                  config.d_ff, config.dropout, config.activation, layer_norm_eps=config.layer_norm_eps,
                                  batch_first=True, norm_first=config.norm == "pre")

    def encode(self, source: torch.Tensor):
        padding = source == PAD
        return self.transformer.encoder(self.embed(source), src_key_padding_mask=padding), padding

    def decode(self, target: torch.Tensor, memory, padding, need_weights: bool = False):
        if need_weights:
            raise ValueError("nn.Transformer does not return its attention weights; use TransformerSeq2Seq")
        future = ~causal_mask(target.size(1), target.device)
        x = self.transformer.decoder(self.embed(target), memory, tgt_mask=future, memory_key_padding_mask=padding)
        return x @ self.embedding.weight.T, None

    def next_log_probs_for(self, source: torch.Tensor):
        memory, padding = self.encode(source)

        def next_log_probs(prefixes: torch.Tensor) -> torch.Tensor:
            rows = len(prefixes)
            logits, _ = self.decode(prefixes, memory.expand(rows, -1, -1), padding.expand(rows, -1))
            return logits[:, -1].log_softmax(dim=-1)

        return next_log_probs


@torch.no_grad()
def copy_weights_from_torch(ours: TransformerSeq2Seq, theirs: TorchTransformerSeq2Seq) -> TransformerSeq2Seq:
    """Give our model exactly the weights of the nn.Transformer-based one."""
    ours.embedding.weight.copy_(theirs.embedding.weight)
    load_torch_weights(ours.transformer, theirs.transformer)
    return ours


# --- the LSTM encoder-decoder ------------------------------------------------------

class LSTMSeq2Seq(nn.Module):
    """A bidirectional LSTM reads the source; an LSTM decoder, started from the
    encoder's final states (forward and backward side by side), writes the
    target. With `attention`, each decoder state scores every encoder output
    (h_dec · W · h_enc), and the softmax-weighted sum of them, the context,
    joins the decoder state before the output layer: Luong et al.'s global
    attention, without input feeding, so that training runs the decoder LSTM
    over the whole target in one call. Without it, the whole source reaches
    the decoder through one pair of state vectors."""

    def __init__(self, vocab_size: int, embed_dim: int, hidden: int, attention: bool = True):
        super().__init__()
        self.attention = attention
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        nn.init.normal_(self.embedding.weight, std=embed_dim ** -0.5)
        self.encoder = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
        self.decoder = nn.LSTM(embed_dim, 2 * hidden, batch_first=True)
        self.score = nn.Linear(2 * hidden, 2 * hidden, bias=False) if attention else None
        self.combine = nn.Linear((4 if attention else 2) * hidden, embed_dim)

    def encode(self, source: torch.Tensor):
        """(encoder outputs (B, Ls, 2H), decoder start state, source mask (B, Ls))."""
        lengths = (source != PAD).sum(dim=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(source), lengths, batch_first=True, enforce_sorted=False)
        outputs, (h, c) = self.encoder(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=source.size(1))
        # (2 directions, B, H) -> (1, B, 2H): the decoder starts from both.
        state = tuple(s.transpose(0, 1).reshape(1, len(source), -1) for s in (h, c))
        return outputs, state, source != PAD

    def decode(self, target: torch.Tensor, encoded, need_weights: bool = False):
        """(logits (B, Lt, V), attention weights (B, Lt, Ls) or None)."""
        outputs, state, source_mask = encoded
        states, _ = self.decoder(self.embedding(target), state)
        weights = None
        if self.attention:
            scores = self.score(states) @ outputs.transpose(1, 2)  # (B, Lt, Ls)
            weights = scores.masked_fill(~source_mask[:, None, :], float("-inf")).softmax(dim=-1)
            states = torch.cat([states, weights @ outputs], dim=-1)
        return torch.tanh(self.combine(states)) @ self.embedding.weight.T, (weights if need_weights else None)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        return self.decode(target_in, self.encode(source))[0]

    def next_log_probs_for(self, source: torch.Tensor):
        """As `TransformerSeq2Seq.next_log_probs_for`; each call re-reads the
        whole prefix (short lines make that cheap)."""
        outputs, state, source_mask = self.encode(source)

        def next_log_probs(prefixes: torch.Tensor) -> torch.Tensor:
            rows = len(prefixes)
            encoded = (outputs.expand(rows, -1, -1), tuple(s.expand(-1, rows, -1).contiguous() for s in state),
                       source_mask.expand(rows, -1))
            return self.decode(prefixes, encoded)[0][:, -1].log_softmax(dim=-1)

        return next_log_probs


# --- evaluation ------------------------------------------------------------------

@torch.no_grad()
def greedy_decode(model: nn.Module, source: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Greedy decoding of a batch of sources (B, Ls), padded with <pad>: the
    source encoded once, then at each step the most likely next token of
    every row's prefix, appended, until every row has produced <eos> or
    max_new_tokens tokens are written. Returns (B, 1 + steps): <bos>, then
    each row's tokens, with <pad> after its <eos>."""
    begin = torch.full((len(source), 1), BOS, dtype=torch.long, device=source.device)
    generated = greedy(model.next_log_probs_for(source), begin, EOS, max_new_tokens)
    # `greedy` fills an ended row with <eos>; keep the first and pad the rest.
    ended_before = (generated == EOS).long().cumsum(dim=1) - (generated == EOS).long() > 0
    return generated.masked_fill(ended_before, PAD)


@torch.no_grad()
def greedy_reversals(model: nn.Module, pairs, batch_size: int = 500, decode=greedy_decode) -> list[list[int]]:
    """The greedy output of `model` for each pair's source: ids up to, not
    including, the first <eos>. `decode(model, source, max_new_tokens)` is
    `greedy_decode` or any function with its contract."""
    model.eval()
    outputs = []
    for start in range(0, len(pairs), batch_size):
        source, _ = make_batch(pairs[start:start + batch_size])
        generated = decode(model, source, source.size(1) + 1)
        for row in generated[:, 1:].tolist():
            outputs.append(row[:row.index(EOS)] if EOS in row else row)
    return outputs


def exact_match(model: nn.Module, pairs, batch_size: int = 500, decode=greedy_decode) -> tuple[float, dict[int, float]]:
    """(share of pairs whose greedy output is exactly the target, that share
    for each source length in words); `decode` as in `greedy_reversals`."""
    outputs = greedy_reversals(model, pairs, batch_size, decode)
    right, total = collections.Counter(), collections.Counter()
    for (source, target), output in zip(pairs, outputs):
        right[len(source)] += output == target
        total[len(source)] += 1
    return sum(right.values()) / len(pairs), {n: right[n] / total[n] for n in sorted(total)}


@torch.no_grad()
def cross_attention(model: nn.Module, pairs) -> torch.Tensor:
    """Head-averaged cross-attention of the last decoder layer while it reads
    the true targets: (lines, target positions, source positions)."""
    source, target = make_batch(pairs)
    memory, memory_mask = model.encode(source)
    _, maps = model.decode(target[:, :-1], memory, memory_mask, need_weights=True)
    return maps[-1].mean(dim=1)


def alignment_share(model: nn.Module, pairs) -> float:
    """The share of the rows that output a word (not the final <eos>) whose
    strongest cross-attention is on the aligned source word: for the
    reversal of n words, row i (output word i) on source word n - 1 - i."""
    was_training = model.training
    model.eval()
    aligned = total = 0
    for (source, _), weights in zip(pairs, cross_attention(model, pairs)):
        n = len(source)
        aligned += (weights[:n].argmax(dim=-1) == torch.arange(n - 1, -1, -1, device=weights.device)).sum().item()
        total += n
    model.train(was_training)
    return aligned / total


def seconds_per_step(model: nn.Module, batch, repeats: int = 5) -> float:
    """Median wall time of one training step (forward, backward, Adam update)
    on `batch`, after one warm-up step, timed on a copy so that `model` keeps
    its weights."""
    trial = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(trial.parameters())
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_of(trial, batch).backward()
        optimizer.step()
        if batch[0].is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[repeats // 2]
