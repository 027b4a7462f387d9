"""Checkers for the exercises of lesson 01: BPE from scratch, one-hot vectors
and embeddings.

Expected values come from the reference libraries themselves: the `tokenizers`
library's BpeTrainer and BPE model for BPE, PyTorch (`F.one_hot`,
`F.embedding`, the gradient of `nn.Embedding`) for embeddings;
tests/test_tokenization.py shows them equal to the reviewed
`course_utils.tokenization`. Each case is built so that a classic slip gives a
different answer, and the report names the slip.
"""

import collections
import functools

import torch
import torch.nn.functional as F

from course_utils import data, tokenization
from . import Checker, seeded

# The lesson's example: "I love data science" with the vocabulary in
# alphabetical order (data=0, I=1, love=2, science=3), embedded in 2-D.
SENTENCE_IDS = torch.tensor([1, 2, 0, 3])
SENTENCE_WEIGHT = torch.tensor([[0.9, 0.1],   # data
                                [0.1, 0.8],   # I
                                [0.2, 0.9],   # love
                                [0.8, 0.3]])  # science

_INTEGER_HINT = "F.one_hot returns integers (torch.int64) and a weight matrix holds floats: look at the dtype of your one-hot"


def _close(check: Checker, name: str, actual, expected: torch.Tensor, mistakes: dict, hint: str = "") -> bool:
    """check.close, which also names a mistake that gives the wrong *shape*
    (Checker.close compares values only once the shape is right)."""
    if isinstance(actual, torch.Tensor) and actual.shape != expected.shape:
        for mistake, wrong in mistakes.items():
            if actual.shape == wrong.shape and torch.allclose(actual.detach().double(), wrong.double()):
                return check.that(name, False, f"shape {tuple(expected.shape)}", f"shape {tuple(actual.shape)}",
                                  f"your output is exactly what {mistake} gives" + (f"; {hint}" if hint else ""))
    if isinstance(actual, torch.Tensor) and actual.shape == expected.shape and not actual.is_floating_point():
        hint = _INTEGER_HINT
    return check.close(name, actual, expected, hint=hint, mistakes=mistakes)


def check_one_hot(one_hot) -> None:
    """Check a learner's `one_hot(ids, vocab_size)` against F.one_hot(...).float()."""
    # The largest id (3) is not the last of the vocabulary (6 ids): guessing the
    # size from the ids, or an off-by-one, changes the shape.
    ids, vocab_size = torch.tensor([3, 0, 2]), 6
    mistakes = {
        "F.one_hot without num_classes (it guesses ids.max() + 1 = 4 classes)": F.one_hot(ids).float(),
        "a vocabulary one too large (vocab_size + 1 columns)": F.one_hot(ids, vocab_size + 1).float(),
        "a vocabulary one too small (vocab_size - 1 columns)": F.one_hot(ids, vocab_size - 1).float(),
        "the transposed matrix (vocab_size, len(ids))": F.one_hot(ids, vocab_size).float().T,
    }
    with Checker("01.one_hot", references=[tokenization.one_hot]) as check:
        out = check.call(one_hot, ids, vocab_size)
        _close(check, f"one_hot({ids.tolist()}, vocab_size={vocab_size}): a row per id, a column per vocabulary entry",
               out, F.one_hot(ids, vocab_size).float(), mistakes,
               hint="row i is all zeros except a 1.0 in column ids[i]; there are vocab_size columns")
        out = check.call(one_hot, SENTENCE_IDS, 4)
        _close(check, f"'I love data science', ids {SENTENCE_IDS.tolist()}, vocab_size=4",
               out, F.one_hot(SENTENCE_IDS, 4).float(), {})
        batch = torch.tensor([[5, 1, 1, 0], [2, 9, 7, 3]])
        out = check.call(one_hot, batch, 10)
        _close(check, "a batch of ids, shape (2, 4) -> (2, 4, 10)", out, F.one_hot(batch, 10).float(), {},
               hint="ids can have any shape; the one-hot dimension is added last (F.one_hot does this)")


def check_embed(embed) -> None:
    """Check a learner's `embed(ids, weight)` against F.embedding and nn.Embedding's gradient."""
    with Checker("01.embed", references=[tokenization.embed]) as check:
        out = check.call(embed, SENTENCE_IDS, SENTENCE_WEIGHT)
        expected = F.embedding(SENTENCE_IDS, SENTENCE_WEIGHT)
        _close(check, "'I love data science' in 2-D: the rows of 'I', 'love', 'data', 'science'", out, expected,
               {"(one_hot(ids) @ weight).T, the transposed result": expected.T},
               hint="the product's shapes must be (L, vocab) @ (vocab, d): look at which operand comes first")

        # A square weight: the transposed matrix has the right shape but the wrong rows.
        generator = torch.Generator().manual_seed(seeded(1))
        square, ids = torch.randn(4, 4, generator=generator), torch.tensor([2, 0, 3, 3])
        out = check.call(embed, ids, square)
        _close(check, "a square (4, 4) weight: row ids[i] of weight, not column", out, F.embedding(ids, square),
               {"one_hot(ids) @ weight.T, the transposed matrix": F.one_hot(ids, 4).float() @ square.T},
               hint="the vocabulary indexes the rows of weight, shape (vocab_size, d)")

        weight, batch = torch.randn(50, 8, generator=generator), torch.tensor([[7, 3, 49], [0, 7, 12]])
        out = check.call(embed, batch, weight)
        _close(check, "a batch (2, 3) of ids, vocabulary 50, width 8 -> (2, 3, 8)", out, F.embedding(batch, weight), {},
               hint="look at where the vocabulary size is stored in the weight's shape, and let ids have any shape")

        # Training updates the weight through this product: the gradient must
        # reach it, and only the rows that were looked up (as nn.Embedding's).
        reference = torch.nn.Embedding.from_pretrained(weight.clone(), freeze=False)
        _, gradient = check.gradient(embed, batch, weight, wrt=1)
        if check.that("the result is differentiable with respect to weight", gradient is not None,
                      expected="a tensor with requires_grad=True", actual="no gradient path to weight",
                      hint="compute with torch operations on `weight` itself (no .detach(), .numpy() or torch.tensor(...))"):
            reference(batch).pow(2).sum().backward()
            check.close("the gradient equals nn.Embedding's: nonzero only in rows 0, 3, 7, 12 and 49",
                        gradient, reference.weight.grad)


# --- BPE from scratch ------------------------------------------------------------

# A small table on which each classic slip of BPE training learns different
# merges, with no tie at any step (so any way of breaking ties gives the same).
BPE_TABLE = {"bare": 1, "arbour": 8, "barbarous": 2, "sour": 4, "bar": 8}
BPE_TABLE_MERGES = 4
BPE_SAMPLE_MERGES = 200


def _merge(symbols: tuple, pair: tuple, first_only: bool = False) -> tuple:
    """tokenization.merge_pair, or (a slip) only its first occurrence."""
    if not first_only:
        return tokenization.merge_pair(symbols, pair)
    for i in range(len(symbols) - 1):
        if (symbols[i], symbols[i + 1]) == pair:
            return symbols[:i] + (symbols[i] + symbols[i + 1],) + symbols[i + 2:]
    return symbols


def _slipped_learn_bpe(piece_counts: dict, num_merges: int, across_words=False, once_per_word=False,
                       first_only=False) -> list:
    """BPE training with one classic slip switched on (ties go to the pair seen first)."""
    words = {tuple(piece): count for piece, count in piece_counts.items()}
    merges = []
    for _ in range(num_merges):
        pairs = collections.Counter()
        if across_words:  # the words read one after another, as in running text
            stream = [symbol for symbols, count in words.items() for _ in range(count) for symbol in symbols]
            pairs.update(zip(stream, stream[1:]))
        else:
            for symbols, count in words.items():
                for pair in zip(symbols, symbols[1:]):
                    pairs[pair] += 1 if once_per_word else count
        if not pairs:
            break
        best = pairs.most_common(1)[0][0]
        merges.append(best)
        words = {_merge(symbols, best, first_only): count for symbols, count in words.items()}
    return merges


def _learn_slips(piece_counts: dict, num_merges: int) -> dict:
    """Each slip in learning the merges, as (the slip, where to look): the merges it gives."""
    return {
        ("counting pairs across word boundaries (the last symbol of one word and the first of the next)",
         "look at where your pair count gets its neighbours: inside one word only"):
            _slipped_learn_bpe(piece_counts, num_merges, across_words=True),
        ("counting each distinct word once, ignoring how often it occurs",
         "look at what your pair count adds for a word: a word seen c times contributes c"):
            _slipped_learn_bpe(piece_counts, num_merges, once_per_word=True),
        ("merging only the first occurrence of the pair in a word",
         "look at your merge step: 'barbarous' holds 'a r' twice"):
            _slipped_learn_bpe(piece_counts, num_merges, first_only=True),
    }


def _as_merges(merges) -> list | None:
    """The learner's merges as a list of (left, right) string pairs, or None if they are not that."""
    try:
        if isinstance(merges, str) or any(isinstance(merge, str) for merge in merges):
            return None  # "a r" or "ar": a merge must keep its two halves apart
        pairs = [tuple(merge) for merge in merges]
    except TypeError:
        return None
    return pairs if all(len(pair) == 2 and all(isinstance(s, str) for s in pair) for pair in pairs) else None


@functools.cache
def _bpe_sample() -> tuple:
    """Every fourth line of Hamlet, its pieces, the library's merges on it, and
    held-out pieces of Macbeth that the sample never contains."""
    sample = "\n".join(data.plays()["hamlet"].splitlines()[::4])
    pieces = tokenization.pre_tokenize(sample)
    library = tokenization.train_bpe([sample], 256 + len(tokenization.SPECIAL_TOKENS) + BPE_SAMPLE_MERGES)
    macbeth = tokenization.pre_tokenize(data.plays()["macbeth"])
    held_out = sorted((piece for piece in macbeth if piece not in pieces), key=lambda piece: (-macbeth[piece], piece))
    return sample, pieces, library, tuple(held_out[:400])


def _most_frequent_at_each_step(piece_counts: dict, merges: list) -> tuple | None:
    """Replay `merges`: the first step whose pair was not a most frequent pair,
    as (step, pair, its count, a most frequent pair, its count); None if all were."""
    words = {tuple(piece): count for piece, count in piece_counts.items()}
    for step, merge in enumerate(merges):
        pairs = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        top, top_count = pairs.most_common(1)[0] if pairs else (None, 0)
        if pairs[merge] < top_count or pairs[merge] == 0:
            return step, merge, pairs[merge], top, top_count
        words = {tokenization.merge_pair(symbols, merge): count for symbols, count in words.items()}
    return None


def check_learn_bpe(learn_bpe) -> None:
    """Check a learner's `learn_bpe(piece_counts, num_merges)`: first on a small
    table built so that each classic slip learns different merges, then on real
    Shakespeare against the `tokenizers` library's BpeTrainer.

    Ties: when two pairs are equally frequent, `tokenizers` takes the pair of
    older symbols (characters first, then merged symbols in the order they were
    made); `tokenization.learn_bpe` does the same and learns exactly its merges.
    A learner's loop may break ties another way, so on real text the check is
    robust to ties: the merges pass if they are the library's, or if each one
    was a most frequent pair at its step."""
    with Checker("01.learn_bpe", references=[tokenization.learn_bpe]) as check:
        out = check.call(learn_bpe, dict(BPE_TABLE), BPE_TABLE_MERGES)
        merges = _as_merges(out)
        check.require("returns a list of merges, each a pair of strings (left, right)", merges is not None,
                      expected="[('a', 'r'), ('o', 'u'), ...]", actual=f"{out!r:.80}")
        expected = tokenization.learn_bpe(BPE_TABLE, BPE_TABLE_MERGES)
        hint = ""
        if len(merges) > BPE_TABLE_MERGES:
            hint = "more merges than asked: stop after num_merges (look at the bound of your loop)"
        elif len(merges) < BPE_TABLE_MERGES:
            hint = "fewer merges than asked: make num_merges merges (look at when your loop stops)"
        for (mistake, where), wrong in _learn_slips(BPE_TABLE, BPE_TABLE_MERGES).items():
            if merges == wrong:
                hint = f"your merges are exactly what {mistake} gives; {where}"
        check.that(f"{BPE_TABLE_MERGES} merges on {BPE_TABLE}", merges == expected,
                   expected=expected, actual=merges, hint=hint or "replay the merges by hand: count every adjacent "
                   "pair inside each word, weighted by the word's count, and merge the most frequent one")

        _, pieces, library, _ = _bpe_sample()
        out = check.call(learn_bpe, collections.Counter(pieces), BPE_SAMPLE_MERGES)
        merges, reference = _as_merges(out) or [], tokenization.bpe_merges(library)
        name = (f"{BPE_SAMPLE_MERGES} merges on every fourth line of Hamlet ({pieces.total():,} pieces): "
                "the merges of the tokenizers library, up to ties")
        if merges == reference:
            check.that(name, True)
        elif len(merges) != BPE_SAMPLE_MERGES:
            check.that(name, False, f"{BPE_SAMPLE_MERGES} merges", f"{len(merges)} merges",
                       "stop after exactly num_merges merges (look at the bound of your loop)")
        else:
            wrong_step = _most_frequent_at_each_step(pieces, merges)
            if wrong_step is None:
                check.that(name + " (yours broke a tie another way, and every merge was a most frequent pair)", True)
            else:
                step, merge, count, top, top_count = wrong_step
                check.that(name, False, f"merge {step + 1}: a pair occurring {top_count} times, such as {top}",
                           f"{merge}, which occurs {count} times at that step",
                           "the merges before it were right: look at how pairs are counted after a merge, "
                           "and at how a merge rewrites each word")


# Classic slips in applying merges to a new piece.
def _encode_by_frequency(piece: str, merges: list) -> tuple:
    """A slip: merge the pair most frequent in this piece first (ties by rank), not the one learned first."""
    rank = {pair: number for number, pair in enumerate(merges)}
    symbols = tuple(piece)
    while True:
        counts = collections.Counter(pair for pair in zip(symbols, symbols[1:]) if pair in rank)
        if not counts:
            return symbols
        best = min(counts, key=lambda pair: (-counts[pair], rank[pair]))
        symbols = tokenization.merge_pair(symbols, best)


def _encode_first_occurrence(piece: str, merges: list) -> tuple:
    """A slip: each merge, in learned order, applied to its first occurrence only."""
    symbols = tuple(piece)
    for pair in merges:
        symbols = _merge(symbols, pair, first_only=True)
    return symbols


def _encode_reversed(piece: str, merges: list) -> tuple:
    """A slip: the merges applied from the last learned to the first."""
    return tokenization.apply_bpe(piece, merges[::-1])


def check_encode(encode) -> None:
    """Check a learner's `encode(piece, merges)` against the `tokenizers` library's
    BPE model, which cuts pieces with the merges it learned (the merges here are
    the library's, so this check does not depend on the learner's learn_bpe)."""
    with Checker("01.encode", references=[tokenization.apply_bpe]) as check:
        out = check.call(encode, "barbarous", [("a", "r"), ("b", "ar"), ("o", "u"), ("ou", "s")])
        check.require("returns the symbols of the piece, a list or tuple of strings",
                      isinstance(out, (list, tuple)) and all(isinstance(symbol, str) for symbol in out),
                      expected="['bar', 'bar', 'ous']", actual=f"{out!r:.80}")
        check.that("'barbarous' with the merges a r, b ar, o u, ou s", tuple(out) == ("bar", "bar", "ous"),
                   expected=["bar", "bar", "ous"], actual=list(out),
                   hint="merge every occurrence of a pair in the piece, and keep merging while a learned pair is left")
        out = check.call(encode, "stop", [("t", "o"), ("s", "t"), ("o", "p")])
        check.that("'stop' with the merges t o, s t, o p: the merge learned first wins",
                   tuple(out) == ("s", "to", "p"), expected=["s", "to", "p"], actual=list(out),
                   hint="when two merges could apply, take the one learned first (lowest rank), "
                        "not the one that comes first in the word")

        _, _, library, held_out = _bpe_sample()
        merges = tokenization.bpe_merges(library)
        expected = {piece: tuple(token.value for token in library.model.tokenize(piece)) for piece in held_out}
        actual = {}
        for piece in held_out:
            symbols = check.call(encode, piece, list(merges))
            actual[piece] = tuple(symbols) if isinstance(symbols, (list, tuple)) else symbols
        wrong = [piece for piece in held_out if actual[piece] != expected[piece]]
        hint = "compare your pieces with the expected ones by hand, merge by merge"
        slips = {("merging the pair that is most frequent in the piece first",
                  "look at how you pick the next merge: the one learned first (lowest rank) wins, however often "
                  "a pair occurs in this piece"): _encode_by_frequency,
                 ("applying each merge to its first occurrence only", "look at your merge step"):
                     _encode_first_occurrence,
                 ("applying the merges from the last learned to the first",
                  "look at the order in which merges are tried"): _encode_reversed}
        for (mistake, where), slip in slips.items():
            if wrong and all(actual[piece] == slip(piece, merges) for piece in held_out):
                hint = f"your pieces are exactly what {mistake} gives; {where}"
        example = wrong[0] if wrong else None
        check.that(f"{len(held_out)} pieces of Macbeth that the sample never contains, with the library's "
                   f"{len(merges)} merges: the tokens of the tokenizers library", not wrong,
                   expected=f"{example!r} -> {list(expected[example])}" if wrong else None,
                   actual=f"{example!r} -> {list(actual[example]) if isinstance(actual[example], tuple) else actual[example]!r}"
                          f" ({len(wrong)} pieces differ)" if wrong else None, hint=hint)
