"""The attention checkers (lessons 02 and 03) pass the reference, and catch and
NAME each classic wrong implementation kept below."""

import json
import math
import re

import pytest
import torch

from course_utils.attention import causal_mask as reference_causal_mask
from course_utils.attention import scaled_dot_product_attention
from course_utils.classroom.checks.attention import check_attention, check_causal_mask, check_masked_attention

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(checker, function, capsys):
    checker(function)
    return capsys.readouterr().out


def named(mistake: str) -> str:
    return f"your output is exactly what {mistake}"


# --- lesson 02: attention(q, k, v) -------------------------------------------------

def attention(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(dim=-1)
    return weights @ v, weights


def attention_unscaled(q, k, v):
    weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
    return weights @ v, weights


def attention_divided_by_d_k(q, k, v):
    weights = (q @ k.transpose(-2, -1) / q.size(-1)).softmax(dim=-1)
    return weights @ v, weights


def attention_softmax_over_queries(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(dim=-2)
    return weights @ v, weights


def attention_softmax_over_batch(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(dim=0)
    return weights @ v, weights


def attention_no_softmax(q, k, v):
    weights = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return weights @ v, weights


def test_reference_attention_passes_and_is_recorded(capsys, progress_file):
    out = run(check_attention, attention, capsys)
    assert "✗" not in out and "All 6 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("02.attention", 1, 1)


def test_attention_returning_numpy_arrays_also_passes(capsys):
    def via_numpy(q, k, v):
        output, weights = attention(q, k, v)
        return output.numpy(), weights.numpy()

    assert "All 6 checks passed" in run(check_attention, via_numpy, capsys)


@pytest.mark.parametrize("wrong, mistake", [
    (attention_unscaled, "no 1/√d_k scaling"),
    (attention_divided_by_d_k, "dividing by d_k instead of √d_k"),
    (attention_softmax_over_queries, "softmax over the wrong axis (dim=-2, the queries"),
    (attention_softmax_over_batch, "softmax over the wrong axis (dim=0, the batch"),
    (attention_no_softmax, "no softmax"),
])
def test_each_attention_mistake_is_named(wrong, mistake, capsys, progress_file):
    out = run(check_attention, wrong, capsys)
    assert "✗ weights = softmax" in out and named(mistake) in out, out
    assert "fix the first ✗" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_softmax_over_the_queries_is_also_caught_by_the_row_sums(capsys):
    out = run(check_attention, attention_softmax_over_queries, capsys)
    assert "✗ each row of weights sums to 1" in out and "which axis your softmax runs over" in out


def test_attention_returning_only_the_output(capsys):
    out = run(check_attention, lambda q, k, v: attention(q, k, v)[0], capsys)
    assert "✗ returns a pair (output, weights)" in out and "actual:   Tensor" in out


def test_attention_wrong_shape_dtype_and_type(capsys):
    out = run(check_attention, lambda q, k, v: (attention(q, k, v)[0], attention(q, k, v)[1].transpose(-2, -1)[..., :3]), capsys)
    assert "expected: shape (2, 5, 5)\n      actual:   shape (2, 5, 3)" in out
    out = run(check_attention, lambda q, k, v: (attention(q, k, v)[0], attention(q, k, v)[1].argmax(-1, keepdim=True)
                                                .eq(torch.arange(k.size(-2))).long()), capsys)  # hard attention
    assert "expected: a floating-point tensor (torch.float32)\n      actual:   torch.int64" in out
    out = run(check_attention, lambda q, k, v: (attention(q, k, v)[0].tolist(), attention(q, k, v)[1]), capsys)
    assert "✗ output = weights @ v" in out and "actual:   list" in out


def test_attention_that_only_works_with_a_batch_axis_is_reported_not_raised(capsys):
    def batch_only(q, k, v):
        weights = (q @ k.transpose(1, 2) / math.sqrt(q.size(-1))).softmax(dim=-1)
        return weights @ v, weights

    out = run(check_attention, batch_only, capsys)
    assert "✓ weights = softmax" in out and "✗ calling batch_only" in out and "it raised IndexError" in out


def test_attention_not_attempted_yet(capsys, progress_file):
    def stub(q, k, v):
        raise NotImplementedError

    out = run(check_attention, stub, capsys)
    assert "02.attention: not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


# --- lesson 03: causal_mask(n) ---------------------------------------------------

def causal_mask(n):
    return torch.ones(n, n, dtype=torch.bool).tril()


@pytest.mark.parametrize("right", [causal_mask, lambda n: torch.arange(n)[:, None] >= torch.arange(n)[None, :],
                                   lambda n: ~torch.ones(n, n, dtype=torch.bool).triu(1)])
def test_reference_causal_mask_passes(right, capsys, progress_file):
    out = run(check_causal_mask, right, capsys)
    assert "✗" not in out and "All 5 checks passed" in out, out
    assert json.loads(progress_file.read_text())["item"] == "03.causal_mask"


@pytest.mark.parametrize("wrong, mistake", [
    (lambda n: ~torch.ones(n, n, dtype=torch.bool).tril(), "the mask inverted"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "the mask inverted"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "the upper triangle instead of the lower one"),
    (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "the diagonal left out"),
    (lambda n: torch.ones(n, n, dtype=torch.bool), "a mask of all True"),
])
def test_each_causal_mask_mistake_is_named(wrong, mistake, capsys):
    out = run(check_causal_mask, wrong, capsys)
    assert "✗ causal_mask(4)" in out and named(mistake) in out, out


def test_a_float_causal_mask_has_the_right_pattern_but_the_wrong_dtype(capsys):
    out = run(check_causal_mask, lambda n: torch.ones(n, n).tril(), capsys)
    assert "✓ causal_mask(4)" in out and "✗ dtype is torch.bool" in out and "actual:   torch.float32" in out
    assert "a 0/1 float mask would mask nothing" in out


def test_causal_mask_wrong_type_and_shape(capsys):
    assert "✗ returns a torch.Tensor" in run(check_causal_mask, lambda n: causal_mask(n).tolist(), capsys)
    out = run(check_causal_mask, lambda n: causal_mask(n + 1), capsys)
    assert "expected: shape (4, 4)\n      actual:   shape (5, 5)" in out


def test_causal_mask_not_attempted_yet(capsys):
    def stub(n):
        raise NotImplementedError

    assert "03.causal_mask: not attempted yet" in run(check_causal_mask, stub, capsys)


# --- lesson 03: masked_attention(q, k, v, mask) -------------------------------------

def _scores(q, k):
    return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))


def masked_attention(q, k, v, mask):
    weights = _scores(q, k).masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_large_negative(q, k, v, mask):
    weights = _scores(q, k).masked_fill(~mask, -1e9).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_renormalised_after_softmax(q, k, v, mask):
    weights = _scores(q, k).softmax(dim=-1) * mask
    weights = weights / weights.sum(-1, keepdim=True)
    return weights @ v, weights


def masked_attention_ignoring_the_mask(q, k, v, mask):
    weights = _scores(q, k).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_after_softmax(q, k, v, mask):
    weights = _scores(q, k).softmax(dim=-1).masked_fill(~mask, 0.0)
    return weights @ v, weights


def masked_attention_inverted(q, k, v, mask):
    weights = _scores(q, k).masked_fill(mask, float("-inf")).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_filled_with_zero(q, k, v, mask):
    weights = _scores(q, k).masked_fill(~mask, 0.0).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_own_causal_mask(q, k, v, mask):
    weights = _scores(q, k).masked_fill(~reference_causal_mask(q.size(-2)), float("-inf")).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_safe(q, k, v, mask):
    nothing = ~mask.any(dim=-1, keepdim=True)  # queries that may see no key
    weights = _scores(q, k).masked_fill(~mask | nothing, float("-inf")).masked_fill(nothing, 0.0).softmax(dim=-1)
    weights = weights.masked_fill(nothing, 0.0)
    return weights @ v, weights


def masked_attention_safe_by_where(q, k, v, mask):
    scores = _scores(q, k).masked_fill(~mask, float("-inf"))
    finite = torch.where(mask.any(dim=-1, keepdim=True), scores, torch.zeros_like(scores))
    weights = finite.softmax(dim=-1) * mask.any(dim=-1, keepdim=True)
    return weights @ v, weights


@pytest.mark.parametrize("right", [masked_attention_safe, masked_attention_safe_by_where,
                                   lambda q, k, v, mask: scaled_dot_product_attention(q, k, v, mask)])
def test_reference_masked_attention_passes(right, capsys, progress_file):
    out = run(check_masked_attention, right, capsys)
    assert "✗" not in out and "All 18 checks passed" in out, out
    assert json.loads(progress_file.read_text())["item"] == "03.masked_attention"


@pytest.mark.parametrize("unsafe, mistake", [
    (masked_attention, "the plain recipe: a row of the mask that is all False leaves the softmax only −∞"),
    (masked_attention_renormalised_after_softmax, "the plain recipe"),
    (masked_attention_large_negative, "a large negative number instead of −∞"),
])
def test_a_query_with_nothing_to_attend_to_is_checked_and_the_unsafe_recipes_named(unsafe, mistake, capsys):
    out = run(check_masked_attention, unsafe, capsys)
    assert "✓ causal and padding mask: weights (2, 2, 5, 5)" in out, out  # right where every query sees a key
    assert "✗ left padding under a causal mask: a query with nothing to attend to gets all-zero weights" in out
    assert named(mistake) in out, out
    if unsafe is masked_attention:
        assert "✗ no NaN in the gradient that reaches v" in out


@pytest.mark.parametrize("wrong, mistake", [
    (masked_attention_ignoring_the_mask, "the mask ignored"),
    (masked_attention_after_softmax, "the mask applied after the softmax (weights zeroed but not renormalised"),
    (masked_attention_inverted, "the mask inverted"),
    (masked_attention_filled_with_zero, "masked scores set to 0 instead of -inf"),
])
def test_each_masking_mistake_is_named_and_the_leak_located(wrong, mistake, capsys):
    out = run(check_masked_attention, wrong, capsys)
    assert "✗ causal and padding mask: weights" in out and named(mistake) in out, out
    assert "✗ causal and padding mask: output" in out
    if wrong is not masked_attention_after_softmax:  # that one leaks nothing: its rows just do not sum to 1
        assert "✗ causal and padding mask: no weight on a masked key" in out
        assert re.search(r"weight 0\.\d{4} at \(batch, head, query, key\) = \(\d, \d, \d, \d\), a key that the mask forbids", out)
    else:
        assert "✓ causal and padding mask: no weight on a masked key" in out


def test_a_causal_mask_built_inside_instead_of_the_one_passed_in_is_named(capsys):
    out = run(check_masked_attention, masked_attention_own_causal_mask, capsys)
    assert "✗ causal and padding mask: weights" in out and named("a causal mask of your own") in out
    assert "✗ padding mask only (no causal part): weights" in out


def test_masked_attention_forgetting_the_scale_or_the_axis_is_named(capsys):
    def unscaled(q, k, v, mask):
        weights = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")).softmax(dim=-1)
        return weights @ v, weights

    def over_queries(q, k, v, mask):
        weights = _scores(q, k).masked_fill(~mask, float("-inf")).softmax(dim=-2)
        return weights @ v, weights

    assert named("no 1/√d_k scaling") in run(check_masked_attention, unscaled, capsys)
    out = run(check_masked_attention, over_queries, capsys)
    assert named("softmax over the wrong axis (dim=-2, the queries)") in out and "NaN at position" in out


def test_masked_attention_wrong_type_and_not_attempted(capsys):
    out = run(check_masked_attention, lambda q, k, v, mask: masked_attention(q, k, v, mask)[0], capsys)
    assert "✗ returns a pair (output, weights)" in out

    def stub(q, k, v, mask):
        raise NotImplementedError

    assert "03.masked_attention: not attempted yet" in run(check_masked_attention, stub, capsys)


def test_a_swapped_pair_is_named(capsys):
    def swapped(q, k, v):
        output, weights = scaled_dot_product_attention(q, k, v)
        return weights, output

    check_attention(swapped)
    out = capsys.readouterr().out
    assert "✗ returns (output, weights), in that order" in out and "the pair is swapped" in out


# --- hints name the slip and where to look, never the line of code ------------------

def attention_k_dot_t(q, k, v):
    weights = (q @ k.T / math.sqrt(q.size(-1))).softmax(dim=-1)
    return weights @ v, weights


def masked_attention_k_dot_t(q, k, v, mask):
    weights = (q @ k.T / math.sqrt(q.size(-1))).masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return weights @ v, weights


@pytest.mark.parametrize("checker, wrong", [(check_attention, attention_k_dot_t),
                                            (check_masked_attention, masked_attention_k_dot_t)])
def test_k_dot_t_on_a_batch_is_named_and_points_at_the_last_two_axes(checker, wrong, capsys, progress_file):
    out = run(checker, wrong, capsys)
    assert named("k.T on a batched k (it reverses ALL the axes") in out, out
    assert "transpose(-2, -1)" in out and "raised" not in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_k_dot_t_is_right_without_a_batch_so_only_the_batch_case_fails():
    q, k, v = (torch.randn(3, 4) for _ in range(3))
    assert torch.allclose(attention_k_dot_t(q, k, v)[1], attention(q, k, v)[1])


SOLUTION_FRAGMENTS = ["weights @ v", "softmax(q", "k.transpose(-2, -1) /", "masked_fill(~mask", "float('-inf')",
                      'float("-inf")', "math.sqrt"]


def _every_wrong_attention():
    def unnamed(q, k, v):  # wrong in no classic way: the general hints show
        weights = (q @ k.transpose(-2, -1)).sigmoid()
        return weights @ v * 2, weights

    def swapped(q, k, v):
        output, weights = scaled_dot_product_attention(q, k, v)
        return weights, output

    return [(check_attention, f) for f in (unnamed, swapped, attention_unscaled, attention_no_softmax,
                                           attention_k_dot_t, lambda q, k, v: attention(q, k, v)[0])] + \
           [(check_masked_attention, f) for f in (masked_attention_ignoring_the_mask, masked_attention_inverted,
                                                  masked_attention_after_softmax, masked_attention_k_dot_t,
                                                  lambda q, k, v, mask: masked_attention(q, k, v, mask)[0])]


@pytest.mark.parametrize("checker, wrong", _every_wrong_attention())
def test_no_hint_hands_over_the_solution(checker, wrong, capsys):
    out = run(checker, wrong, capsys)
    assert "✗" in out
    hints = "\n".join(line for line in out.splitlines() if "hint:" in line or "your output is exactly" in line)
    for fragment in SOLUTION_FRAGMENTS:
        assert fragment not in hints, (fragment, out)


def test_a_table_of_right_outputs_passes_only_on_the_inputs_it_was_made_for(capsys):
    """A table of the reviewed outputs for the notebook's inputs fools the
    notebook's self-check, not the grader, whose seed draws other inputs."""
    from course_utils.classroom import checks

    table = {}

    def recording(q, k, v):
        table[q.numpy().tobytes()] = scaled_dot_product_attention(q, k, v)
        return table[q.numpy().tobytes()]

    with checks.judging() as made:  # the notebook's inputs, as the lesson's checker cell draws them
        checks.attention.check_attention(recording)
    assert made[0][1] == 1

    def from_the_table(q, k, v):
        return table[q.numpy().tobytes()]

    with checks.judging() as notebook:
        checks.attention.check_attention(from_the_table)
    with checks.judging(seed=123457) as graded:
        checks.attention.check_attention(from_the_table)
    assert notebook[0][1] == 1 and graded[0][1] == 0 and "it raised KeyError" in graded[0][3]


def masked_attention_cleaned_after_the_softmax(q, k, v, mask):
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    weights = (_scores(q, k) + additive).softmax(dim=-1).nan_to_num(0.0)
    return weights @ v, weights


def test_a_nan_cleaned_after_the_softmax_is_caught_in_the_gradient_of_q_and_k(capsys):
    """Right weights and outputs, a finite gradient for v: only q's and k's
    gradients show the NaN that the additive -inf mask sent back."""
    out = run(check_masked_attention, masked_attention_cleaned_after_the_softmax, capsys)
    assert "✓ left padding under a causal mask: a query with nothing to attend to gets all-zero weights" in out, out
    assert "✓ no NaN in the gradient that reaches v" in out
    assert "✗ no NaN in the gradient that reaches q" in out and "✗ no NaN in the gradient that reaches k" in out

