"""Checkers for the exercises on one-hot vectors and embeddings (lesson 01).

Expected values come from PyTorch itself (`F.one_hot`, `F.embedding`, the
gradient of `nn.Embedding`), which tests/test_tokenization.py shows equal to
the reviewed `course_utils.tokenization`. Each case is built so that a classic
slip gives a different answer, and the report names the slip.
"""

import torch
import torch.nn.functional as F

from . import Checker

# The lesson's example: "I love data science" with the vocabulary in
# alphabetical order (data=0, I=1, love=2, science=3), embedded in 2-D.
SENTENCE_IDS = torch.tensor([1, 2, 0, 3])
SENTENCE_WEIGHT = torch.tensor([[0.9, 0.1],   # data
                                [0.1, 0.8],   # I
                                [0.2, 0.9],   # love
                                [0.8, 0.3]])  # science

_INTEGER_HINT = "F.one_hot returns integers (torch.int64); a weight matrix holds floats, so convert with .float()"


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
    with Checker("01.one_hot") as check:
        out = check.call(one_hot, ids.clone(), vocab_size)
        _close(check, f"one_hot({ids.tolist()}, vocab_size={vocab_size}): a row per id, a column per vocabulary entry",
               out, F.one_hot(ids, vocab_size).float(), mistakes,
               hint="row i is all zeros except a 1.0 in column ids[i]; there are vocab_size columns")
        out = check.call(one_hot, SENTENCE_IDS.clone(), 4)
        _close(check, f"'I love data science', ids {SENTENCE_IDS.tolist()}, vocab_size=4",
               out, F.one_hot(SENTENCE_IDS, 4).float(), {})
        batch = torch.tensor([[5, 1, 1, 0], [2, 9, 7, 3]])
        out = check.call(one_hot, batch.clone(), 10)
        _close(check, "a batch of ids, shape (2, 4) -> (2, 4, 10)", out, F.one_hot(batch, 10).float(), {},
               hint="ids can have any shape; the one-hot dimension is added last (F.one_hot does this)")


def check_embed(embed) -> None:
    """Check a learner's `embed(ids, weight)` against F.embedding and nn.Embedding's gradient."""
    with Checker("01.embed") as check:
        out = check.call(embed, SENTENCE_IDS.clone(), SENTENCE_WEIGHT.clone())
        expected = F.embedding(SENTENCE_IDS, SENTENCE_WEIGHT)
        _close(check, "'I love data science' in 2-D: the rows of 'I', 'love', 'data', 'science'", out, expected,
               {"(one_hot(ids) @ weight).T, the transposed result": expected.T},
               hint="multiply one_hot(ids, vocab_size) on the left: (4, 4) @ (4, 2) gives (4, 2)")

        # A square weight: the transposed matrix has the right shape but the wrong rows.
        generator = torch.Generator().manual_seed(1)
        square, ids = torch.randn(4, 4, generator=generator), torch.tensor([2, 0, 3, 3])
        out = check.call(embed, ids.clone(), square.clone())
        _close(check, "a square (4, 4) weight: row ids[i] of weight, not column", out, F.embedding(ids, square),
               {"one_hot(ids) @ weight.T, the transposed matrix": F.one_hot(ids, 4).float() @ square.T},
               hint="the vocabulary indexes the rows of weight, shape (vocab_size, d)")

        weight, batch = torch.randn(50, 8, generator=generator), torch.tensor([[7, 3, 49], [0, 7, 12]])
        out = check.call(embed, batch.clone(), weight.clone())
        _close(check, "a batch (2, 3) of ids, vocabulary 50, width 8 -> (2, 3, 8)", out, F.embedding(batch, weight), {},
               hint="take the vocabulary size from weight.shape[0], and let ids have any shape")

        # Training updates the weight through this product: the gradient must
        # reach it, and only the rows that were looked up (as nn.Embedding's).
        learner_weight = weight.clone().requires_grad_()
        reference = torch.nn.Embedding.from_pretrained(weight.clone(), freeze=False)
        out = check.call(embed, batch.clone(), learner_weight)
        differentiable = isinstance(out, torch.Tensor) and out.requires_grad
        if check.that("the result is differentiable with respect to weight", differentiable,
                      expected="a tensor with requires_grad=True", actual="no gradient path to weight",
                      hint="compute with torch operations on `weight` itself (no .detach(), .numpy() or torch.tensor(...))"):
            out.pow(2).sum().backward()
            reference(batch).pow(2).sum().backward()
            gradient = learner_weight.grad if learner_weight.grad is not None else torch.zeros(0)
            check.close("the gradient equals nn.Embedding's: nonzero only in rows 0, 3, 7, 12 and 49",
                        gradient, reference.weight.grad)
