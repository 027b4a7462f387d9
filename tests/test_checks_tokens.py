"""The lesson 01 checkers pass the reference, name each classic mistake, and
never crash on a learner's code."""

import json

import pytest
import torch
import torch.nn.functional as F

from course_utils import tokenization
from course_utils.classroom.checks.tokens import check_embed, check_encode, check_learn_bpe, check_one_hot

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(checker, function, capsys):
    checker(function)
    return capsys.readouterr().out


# --- one_hot ---------------------------------------------------------------------

def test_reference_one_hot_passes_and_is_recorded(capsys, progress_file):
    out = run(check_one_hot, tokenization.one_hot, capsys)
    assert "All 3 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("01.one_hot", 1, 1)


def test_one_hot_via_eye_rows_passes(capsys):
    assert "All 3 checks passed" in run(check_one_hot, lambda ids, n: torch.eye(n)[ids], capsys)


def test_integer_one_hot_is_named(capsys, progress_file):
    out = run(check_one_hot, lambda ids, n: F.one_hot(ids, n), capsys)
    assert "✗ one_hot([3, 0, 2]" in out and "actual:   torch.int64" in out and "look at the dtype of your one-hot" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_guessing_the_vocabulary_from_the_ids_is_named(capsys):
    out = run(check_one_hot, lambda ids, n: F.one_hot(ids).float(), capsys)
    assert "expected: shape (3, 6)\n      actual:   shape (3, 4)" in out
    assert "exactly what F.one_hot without num_classes" in out


def test_off_by_one_vocabulary_is_named(capsys):
    assert "a vocabulary one too large" in run(check_one_hot, lambda ids, n: F.one_hot(ids, n + 1).float(), capsys)
    assert "a vocabulary one too small" in run(check_one_hot, lambda ids, n: F.one_hot(ids, n - 1).float(), capsys)


def test_transposed_one_hot_is_named(capsys):
    out = run(check_one_hot, lambda ids, n: F.one_hot(ids, n).float().transpose(0, -1), capsys)
    assert "exactly what the transposed matrix (vocab_size, len(ids)) gives" in out


def test_a_one_hot_that_only_handles_1d_ids_is_caught(capsys):
    def one_hot(ids, n):
        out = torch.zeros(len(ids), n)
        for row, i in enumerate(ids):
            out[row, i] = 1.0
        return out

    out = run(check_one_hot, one_hot, capsys)
    assert "✓ one_hot([3, 0, 2]" in out and "✗ a batch of ids" in out and "2 of 3 checks passed" in out


def test_one_hot_not_attempted_and_crashing(capsys, progress_file):
    def not_yet(ids, n):
        raise NotImplementedError

    assert "not attempted yet" in run(check_one_hot, not_yet, capsys)
    assert not progress_file.exists()
    out = run(check_one_hot, lambda ids, n: F.one_hot(ids.float(), n), capsys)
    assert "it raised RuntimeError" in out and "✗ calling" in out


# --- embed -----------------------------------------------------------------------

def test_reference_embed_passes_and_is_recorded(capsys, progress_file):
    out = run(check_embed, tokenization.embed, capsys)
    assert "All 5 checks passed" in out and "✗" not in out
    assert json.loads(progress_file.read_text())["item"] == "01.embed"


def test_embedding_lookup_passes_too(capsys):
    assert "All 5 checks passed" in run(check_embed, lambda ids, weight: weight[ids], capsys)


def test_transposed_weight_is_named(capsys):
    out = run(check_embed, lambda ids, w: F.one_hot(ids, w.shape[0]).float() @ w.T if w.shape[0] == w.shape[1]
              else tokenization.embed(ids, w), capsys)
    assert "✗ a square (4, 4) weight" in out and "exactly what one_hot(ids) @ weight.T, the transposed matrix gives" in out


def test_transposed_result_is_named(capsys):
    out = run(check_embed, lambda ids, w: (F.one_hot(ids, w.shape[0]).float() @ w).transpose(0, -1), capsys)
    assert "expected: shape (4, 2)\n      actual:   shape (2, 4)" in out and "the transposed result" in out


def test_detached_result_is_caught(capsys):
    out = run(check_embed, lambda ids, w: tokenization.embed(ids, w).detach(), capsys)
    assert "✗ the result is differentiable" in out and "3 of 4 checks passed" in out


def test_integer_multiplication_is_reported_not_raised(capsys):
    out = run(check_embed, lambda ids, w: F.one_hot(ids, w.shape[0]) @ w, capsys)
    assert "it raised RuntimeError" in out and "0 of 1 checks passed" in out


def test_embed_not_attempted(capsys):
    def embed(ids, weight):
        raise NotImplementedError

    assert "not attempted yet" in run(check_embed, embed, capsys)


# --- BPE from scratch: wrong implementations a learner might write ----------------

def learner_bpe(piece_counts, num_merges, across_words=False, once_per_word=False, first_only=False, extra=0):
    """A plain BPE loop (ties: the pair counted first), with one slip switched on."""
    words = [[list(piece), count] for piece, count in piece_counts.items()]
    merges = []
    while len(merges) < num_merges + extra:
        pairs = {}
        if across_words:
            stream = [symbol for symbols, count in words for _ in range(count) for symbol in symbols]
            for pair in zip(stream, stream[1:]):
                pairs[pair] = pairs.get(pair, 0) + 1
        else:
            for symbols, count in words:
                for pair in zip(symbols, symbols[1:]):
                    pairs[pair] = pairs.get(pair, 0) + (1 if once_per_word else count)
        if not pairs:
            break
        best = max(pairs, key=pairs.get)
        merges.append(best)
        for word in words:
            symbols, i, merged = word[0], 0, []
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                    if first_only:  # the slip: the rest of the word is copied unmerged
                        merged.extend(symbols[i:])
                        break
                else:
                    merged.append(symbols[i])
                    i += 1
            word[0] = merged
    return merges


def test_reference_learn_bpe_passes_and_is_recorded(capsys, progress_file):
    out = run(check_learn_bpe, tokenization.learn_bpe, capsys)
    assert "All 3 checks passed" in out and "✗" not in out
    assert json.loads(progress_file.read_text())["item"] == "01.learn_bpe"


def test_a_plain_loop_that_breaks_ties_another_way_passes(capsys):
    out = run(check_learn_bpe, learner_bpe, capsys)
    assert "All 3 checks passed" in out and "broke a tie another way" in out


def test_counting_pairs_across_word_boundaries_is_named(capsys):
    out = run(check_learn_bpe, lambda counts, n: learner_bpe(counts, n, across_words=True), capsys)
    assert "✗ 4 merges" in out and "exactly what counting pairs across word boundaries (the last symbol of one word and the first of the next) gives; look at where" in out


def test_ignoring_word_frequencies_is_named(capsys):
    out = run(check_learn_bpe, lambda counts, n: learner_bpe(counts, n, once_per_word=True), capsys)
    assert "✗ 4 merges" in out and "exactly what counting each distinct word once" in out


def test_merging_only_the_first_occurrence_is_named(capsys):
    out = run(check_learn_bpe, lambda counts, n: learner_bpe(counts, n, first_only=True), capsys)
    assert "✗ 4 merges" in out and "exactly what merging only the first occurrence" in out


def test_not_stopping_at_the_requested_number_of_merges_is_named(capsys):
    out = run(check_learn_bpe, lambda counts, n: learner_bpe(counts, n, extra=1), capsys)
    assert "✗ 4 merges" in out and "more merges than asked" in out
    assert "expected: 200 merges" in out and "actual:   201 merges" in out


def test_a_wrong_merge_on_real_text_names_its_step(capsys):
    def second_best_at_step_50(counts, n):
        merges = tokenization.learn_bpe(counts, n)
        if n < 50:
            return merges
        return merges[:49] + [merges[60]] + merges[49:60] + merges[61:]

    out = run(check_learn_bpe, second_best_at_step_50, capsys)
    assert "✓ 4 merges" in out and "✗ 200 merges" in out and "expected: merge 50: a pair occurring" in out


def test_learn_bpe_returning_strings_stops_with_a_clear_message(capsys):
    out = run(check_learn_bpe, lambda counts, n: [" ".join(pair) for pair in tokenization.learn_bpe(counts, n)], capsys)
    assert "✗ returns a list of merges, each a pair of strings" in out and "0 of 1 checks passed" in out


def test_learn_bpe_not_attempted(capsys):
    def learn_bpe(counts, n):
        raise NotImplementedError

    assert "not attempted yet" in run(check_learn_bpe, learn_bpe, capsys)


def test_reference_encode_passes_and_is_recorded(capsys, progress_file):
    out = run(check_encode, tokenization.apply_bpe, capsys)
    assert "All 4 checks passed" in out and "✗" not in out
    assert json.loads(progress_file.read_text())["item"] == "01.encode"


def test_applying_every_merge_in_learned_order_passes_too(capsys):
    def encode(piece, merges):
        symbols = list(piece)
        for left, right in merges:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == left and symbols[i + 1] == right:
                    symbols[i:i + 2] = [left + right]
                i += 1
        return symbols

    assert "All 4 checks passed" in run(check_encode, encode, capsys)


def test_merging_by_frequency_in_the_piece_is_named(capsys):
    def encode(piece, merges):
        symbols = list(piece)
        while True:
            pairs = [pair for pair in zip(symbols, symbols[1:]) if pair in merges]
            if not pairs:
                return symbols
            best = max(pairs, key=lambda pair: (pairs.count(pair), -merges.index(pair)))
            symbols = list(tokenization.merge_pair(tuple(symbols), best))

    out = run(check_encode, encode, capsys)
    assert "✗ 400 pieces" in out and "exactly what merging the pair that is most frequent in the piece first gives; look at how you pick" in out


def test_first_occurrence_only_in_encode_is_named(capsys):
    def encode(piece, merges):
        symbols = list(piece)
        for left, right in merges:
            for i in range(len(symbols) - 1):
                if symbols[i] == left and symbols[i + 1] == right:
                    symbols[i:i + 2] = [left + right]
                    break
        return symbols

    out = run(check_encode, encode, capsys)
    assert "✗ 'barbarous'" in out and "exactly what applying each merge to its first occurrence only" in out


def test_merges_in_reverse_order_are_named(capsys):
    out = run(check_encode, lambda piece, merges: tokenization.apply_bpe(piece, merges[::-1]), capsys)
    assert "exactly what applying the merges from the last learned to the first" in out


def test_leftmost_pair_first_is_caught_by_the_rank_case(capsys):
    def encode(piece, merges):
        symbols = list(piece)
        merged = True
        while merged:
            merged = False
            for i in range(len(symbols) - 1):
                if (symbols[i], symbols[i + 1]) in merges:
                    symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
                    merged = True
                    break
        return symbols

    out = run(check_encode, encode, capsys)
    assert "✗ 'stop' with the merges t o, s t, o p" in out and "the one learned first (lowest rank)" in out
