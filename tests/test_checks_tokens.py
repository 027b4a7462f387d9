"""The lesson 01 checkers pass the reference, name each classic mistake, and
never crash on a learner's code."""

import json

import torch
import torch.nn.functional as F

from course_utils import tokenization
from course_utils.checks.tokens import check_embed, check_one_hot


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
    assert "✗ one_hot([3, 0, 2]" in out and "actual:   torch.int64" in out and "convert with .float()" in out
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
