"""The sinusoidal-encoding checker accepts the reference, and names each classic
mistake when a learner's version makes it. Every wrong version below is written
the way a learner would write it, independently of the checker's own list."""

import json
import math

import pytest
import torch

from course_utils.classroom.checks.positional import check_sinusoidal_encoding

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def learner_version(num_positions, d_model, *, swap=False, pair_exponent=2, column_exponent=False,
                    denominator=None, halves=False, start=0):
    """A plain learner's implementation, with switches for the classic slips."""
    position = torch.arange(start, start + num_positions, dtype=torch.float32).unsqueeze(1)
    i = torch.arange(d_model // 2, dtype=torch.float32)
    width = d_model if denominator is None else denominator(num_positions, d_model)
    div_term = 10000 ** (pair_exponent * i / width)
    angle = position / div_term
    sines, cosines = torch.sin(angle), torch.cos(angle)
    if swap:
        sines, cosines = cosines, sines
    if column_exponent:  # the cosine in column 2i+1 uses the exponent (2i+1)/d_model
        cosines = torch.cos(position / 10000 ** ((2 * i + 1) / d_model))
    if halves:
        return torch.cat([sines, cosines], dim=1)
    pe = torch.zeros(num_positions, d_model)
    pe[:, 0::2] = sines
    pe[:, 1::2] = cosines
    return pe


def run(function, capsys):
    check_sinusoidal_encoding(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(learner_version, capsys)
    assert "All 7 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("05.sinusoidal_encoding", 1, 1)


def test_the_exp_log_form_of_the_formula_also_passes(capsys):
    """The annotated transformer's div_term = exp(-2i ln(10000) / d_model), in float32."""
    def sinusoidal_encoding(num_positions, d_model):
        pe = torch.zeros(num_positions, d_model)
        position = torch.arange(0, num_positions).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * -(math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        return pe

    assert "All 7 checks passed" in run(sinusoidal_encoding, capsys)


@pytest.mark.parametrize("slip, named", [
    ({"swap": True}, "swapping sine and cosine"),
    ({"pair_exponent": 1}, "using i instead of 2i in the exponent"),
    ({"column_exponent": True}, "using the column number j in the exponent"),
    ({"denominator": lambda num_positions, d_model: num_positions}, "dividing the exponent by num_positions instead of d_model"),
    ({"denominator": lambda num_positions, d_model: d_model / 2}, "dividing the exponent by d_model/2 instead of d_model"),
    ({"halves": True}, "concatenating [all sines | all cosines] instead of interleaving them"),
    ({"start": 1}, "counting positions from 1 instead of 0"),
])
def test_each_classic_mistake_is_caught_and_named(slip, named, capsys, progress_file):
    out = run(lambda num_positions, d_model: learner_version(num_positions, d_model, **slip), capsys)
    assert "✗ values for 50 positions, d_model=16" in out
    assert f"hint:     your output is exactly what {named}" in out
    assert sum(line.startswith("✗") for line in out.splitlines()) == 2, "caught at both sizes"
    assert json.loads(progress_file.read_text())["points"] == 0


def test_an_unnamed_mistake_still_shows_expected_and_actual(capsys):
    out = run(lambda n, d: learner_version(n, d) * 0.5, capsys)
    assert "✗ values for 50 positions, d_model=16" in out and "expected: 1.0000 at position (0, 1)" in out
    assert "actual:   0.5000" in out and "exactly what" not in out and "PE[pos, 2i] = sin" in out


def test_wrong_shape_is_reported(capsys):
    out = run(lambda n, d: learner_version(n, d).T, capsys)
    assert "✗ shape for (50, 16)" in out and "expected: (50, 16)" in out and "actual:   (16, 50)" in out


def test_wrong_dtype_is_reported(capsys):
    out = run(lambda n, d: learner_version(n, d).double(), capsys)
    assert "✗ dtype for (50, 16) is torch.float32" in out and "actual:   torch.float64" in out


def test_numpy_or_list_is_reported(capsys):
    assert "actual:   ndarray" in run(lambda n, d: learner_version(n, d).numpy(), capsys)
    assert "actual:   list" in run(lambda n, d: learner_version(n, d).tolist(), capsys)


def test_hard_coded_sizes_fail_the_second_size(capsys):
    out = run(lambda n, d: learner_version(50, 16), capsys)
    assert "✓ values for 50 positions, d_model=16" in out and "✗ shape for (8, 64)" in out


def test_not_attempted_yet(capsys, progress_file):
    def sinusoidal_encoding(num_positions, d_model):
        raise NotImplementedError

    out = run(sinusoidal_encoding, capsys)
    assert "not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


def test_an_exception_in_learner_code_is_reported_not_raised(capsys):
    def sinusoidal_encoding(num_positions, d_model):
        return torch.zeros(num_positions, d_model)[:, 0::2] + torch.zeros(num_positions, d_model // 3)

    out = run(sinusoidal_encoding, capsys)
    assert "it raised RuntimeError" in out and "at line" in out
