"""The learning-rate schedule checker (lesson 07) accepts right versions and
names each classic slip, each wrong version written as a learner would."""

import json
import math

import pytest
import torch

from course_utils.classroom.checks.seq2seq import check_transformer_lr

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_transformer_lr(function)
    return capsys.readouterr().out


def paper(step, d_model, warmup_steps):
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(paper, capsys)
    assert "All 4 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("07.transformer_lr", 1, 1)


@pytest.mark.parametrize("version", [
    lambda step, d, w: math.pow(d, -0.5) * min(1 / math.sqrt(step), step / w ** 1.5),
    lambda step, d, w: torch.tensor(d, dtype=torch.float64).rsqrt() * torch.minimum(
        torch.tensor(step, dtype=torch.float64).rsqrt(), step * torch.tensor(w, dtype=torch.float64) ** -1.5),
    lambda step, d, w: (step ** -0.5 if step > w else step * w ** -1.5) / math.sqrt(d),  # the two cases by hand
])
def test_other_right_forms_pass(version, capsys):
    assert "All 4 checks passed" in run(version, capsys)


@pytest.mark.parametrize("slip, named", [
    (lambda step, d, w: d ** -0.5 * max(step ** -0.5, step * w ** -1.5), "max instead of min"),
    (lambda step, d, w: d ** -0.5 * min(step ** -0.5, step * w ** -0.5), "warmup_steps^-0.5"),
    (lambda step, d, w: d ** 0.5 * min(step ** -0.5, step * w ** -1.5), "d_model^0.5"),
    (lambda step, d, w: min(step ** -0.5, step * w ** -1.5), "leaving out the d_model^-0.5 factor"),
    (lambda step, d, w: d ** -0.5 * min(step ** 0.5, step * w ** -1.5), "step^0.5"),
])
def test_classic_slips_are_named(slip, named, capsys):
    out = run(slip, capsys)
    assert "✗" in out and named in out


def test_steps_counted_from_zero_are_reported_not_crashed(capsys):
    def from_zero(step, d_model, warmup_steps):
        step -= 1
        return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)

    out = run(from_zero, capsys)
    assert "✗" in out and "ZeroDivisionError" in out


def test_a_wrong_type_is_named(capsys):
    out = run(lambda step, d, w: [paper(step, d, w)], capsys)
    assert "returns one number per step" in out and "list" in out


def test_the_stub_is_not_attempted(capsys, progress_file):
    def stub(step, d_model, warmup_steps):
        raise NotImplementedError

    out = run(stub, capsys)
    assert "07.transformer_lr: not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


def test_a_peak_in_the_wrong_place_is_named(capsys):
    out = run(lambda step, d, w: paper(step, d, 2 * w), capsys)
    assert "peaks at step = warmup_steps" in out and "step 400" in out


def test_steps_counted_from_zero_by_adding_one_are_named(capsys):
    out = run(lambda step, d, w: paper(step + 1, d, w), capsys)
    assert "counting steps from 0" in out


def test_a_numpy_float_passes(capsys):
    import numpy as np

    assert "All 4 checks passed" in run(lambda step, d, w: np.float32(paper(step, d, w)), capsys)
