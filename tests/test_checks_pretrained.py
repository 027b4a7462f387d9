"""The lesson 09 checker passes the reference and other correct ways of
writing it, names each classic slip of mean pooling, and never crashes on a
learner's code."""

import json

import pytest
import torch
import torch.nn.functional as F

from course_utils import pretrained
from course_utils.classroom.checks.pretrained import check_mean_pool

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_mean_pool(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(pretrained.mean_pool, capsys)
    assert "All 3 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("09.mean_pool", 1, 1)


def test_other_correct_ways_pass(capsys):
    def with_a_loop(hidden, attention_mask):
        return torch.stack([row[mask.bool()].mean(dim=0) for row, mask in zip(hidden, attention_mask)])

    def with_einsum(hidden, attention_mask):
        mask = attention_mask.float()
        return torch.einsum("btd,bt->bd", hidden, mask) / mask.sum(dim=1, keepdim=True)

    assert "All 3 checks passed" in run(with_a_loop, capsys)
    assert "All 3 checks passed" in run(with_einsum, capsys)


def test_each_classic_slip_is_named(capsys, progress_file):
    def real(mask):
        return mask.unsqueeze(-1).float()

    slips = {
        "padding included": lambda hidden, mask: hidden.mean(dim=1),
        "not divided by their number": lambda hidden, mask: (hidden * real(mask)).sum(dim=1),
        "divided by the padded length": lambda hidden, mask: (hidden * real(mask)).sum(dim=1) / hidden.size(1),
        "the sum over every position divided": lambda hidden, mask: hidden.sum(dim=1) / real(mask).sum(dim=1),
        "the [CLS] vector": lambda hidden, mask: hidden[:, 0],
        "then normalised to unit length": lambda hidden, mask: F.normalize(pretrained.mean_pool(hidden, mask), dim=-1),
        "the real tokens of the whole batch": lambda hidden, mask: (hidden * real(mask)).sum(dim=1) / mask.sum(),
    }
    for name, slip in slips.items():
        out = run(slip, capsys)
        assert "✗ four texts" in out and f"exactly what" in out and name in out, (name, out)
        assert json.loads(progress_file.read_text().splitlines()[-1])["points"] == 0


def test_padding_that_still_counts_on_a_real_batch_is_reported(capsys):
    out = run(lambda hidden, mask: hidden.mean(dim=1), capsys)
    assert "✗ MiniLM: 'Brevity is the soul of wit.' alone and padded" in out
    assert "padding still counts somewhere in your mean" in out


def test_assuming_padding_on_the_right_fails_on_the_left_padded_text(capsys):
    def first_tokens(hidden, attention_mask):
        return torch.stack([row[:count].mean(dim=0) for row, count in zip(hidden, attention_mask.sum(dim=1))])

    out = run(first_tokens, capsys)
    assert "✗ four texts" in out and "at position (3," in out


def test_writing_into_the_inputs_is_reported(capsys):
    def in_place(hidden, attention_mask):
        hidden *= attention_mask.unsqueeze(-1)
        return hidden.sum(dim=1) / attention_mask.sum(dim=1, keepdim=True)

    out = run(in_place, capsys)
    assert "✗ hidden and attention_mask are left as they were" in out and "hidden * mask, not hidden *= mask" in out


def test_a_stub_a_crash_and_a_non_function_are_reported_not_raised(capsys):
    def stub(hidden, attention_mask):
        raise NotImplementedError

    assert "not attempted yet" in run(stub, capsys)
    out = run(lambda hidden, mask: hidden.sum(dim=1) / mask.sum(dim=1), capsys)  # (4, 6) / (4,): no broadcast
    assert "it raised RuntimeError" in out
    assert "your answer is a function" in run(None, capsys)
