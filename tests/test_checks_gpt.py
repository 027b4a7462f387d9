"""The lesson 10 checker passes the reference and another correct way of
writing it, names each classic slip of nucleus filtering, and never crashes."""

import json

import pytest
import torch

from course_utils.classroom.checks.gpt import check_top_p_filter
from course_utils.generation import top_p_filter

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_top_p_filter(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(top_p_filter, capsys)
    assert "checks passed" in out and "✗" not in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("10.top_p_filter", 1, 1)


def test_a_loop_over_rows_passes(capsys):
    def by_rows(logits, p):
        out = logits.clone()
        for row in out:
            probabilities, order = row.softmax(-1).sort(descending=True)
            total = 0.0
            for probability, index in zip(probabilities.tolist(), order.tolist()):
                if total >= p:
                    row[index] = float("-inf")
                total += probability
        return out

    assert "✗" not in run(by_rows, capsys)


def _slip(kind):
    def answer(logits, p):
        probabilities, order = logits.softmax(-1).sort(dim=-1, descending=kind != "ascending")
        running = probabilities.cumsum(-1)
        if kind == "crossing":
            drop = running > p
        else:
            drop = running - probabilities >= p
        if kind == "unsorted":
            return logits.masked_fill(drop, float("-inf"))
        drop = torch.zeros_like(drop).scatter(-1, order, drop)
        if kind == "probabilities":
            kept = logits.softmax(-1).masked_fill(drop, 0)
            return kept / kept.sum(-1, keepdim=True)
        if kind == "in place":
            return logits.masked_fill_(drop, float("-inf"))
        return logits.masked_fill(drop, float("-inf"))
    return answer


def test_each_classic_slip_is_named(capsys):
    assert "dropping the token that crosses p" in run(_slip("crossing"), capsys)
    assert "sorting from least to most likely" in run(_slip("ascending"), capsys)
    assert "keeping the mask in sorted order" in run(_slip("unsorted"), capsys)
    assert "wrote into its input" in run(_slip("in place"), capsys)
    out = run(_slip("probabilities"), capsys)
    assert "returning probabilities (dropped ones at 0)" in out


def test_a_stub_a_crash_and_a_non_function_are_reported(capsys, progress_file):
    def stub(logits, p):
        raise NotImplementedError

    assert "not attempted" in run(stub, capsys).lower()
    assert "ZeroDivisionError" in run(lambda logits, p: 1 / 0, capsys)
    assert "a function" in run(42, capsys)
    assert "shape" in run(lambda logits, p: logits[0], capsys)
