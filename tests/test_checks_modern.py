"""Lesson 12's checkers: rms_norm, swiglu, rotate_at and grouped_attention.
Each accepts the reviewed piece and a learner's way of writing it, names each
classic slip, and survives whatever a learner's code does. Every wrong
version below is written the way a learner would write it, independently of
the checker's own list."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import modern, positional
from course_utils.classroom.checks import modern as modern_checks
from course_utils.classroom.checks.modern import (ATTENTION_SLIPS, FLOAT32_PRECISION, RMS_NORM_SLIPS, ROTATE_SLIPS,
                                                  SWIGLU_SLIPS, UNTRANSPOSED, check_grouped_attention, check_rms_norm,
                                                  check_rotate_at, check_swiglu)
from course_utils.classroom.pytest_plugin import Watched, graded_report

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(checker, answer, capsys) -> str:
    checker(answer)
    return capsys.readouterr().out


# --- 12.rms_norm ----------------------------------------------------------------------

def rms_norm(x, weight, eps=1e-5, slip=None):
    """A learner's rms_norm, with switches for the classic slips."""
    dim = {"dim0": 0, "dim1": 1}.get(slip, -1)
    if slip == "centred":
        x = x - x.mean(dim, keepdim=True)
    if slip == "unbiased_std":
        return x / (x.std(dim, keepdim=True) + eps) * weight
    if slip == "centred_variance":
        return x / torch.sqrt(x.var(dim, keepdim=True, unbiased=False) + eps) * weight
    squares = (x * x).mean(dim, keepdim=slip != "no_keepdim")
    if slip == "eps_outside":
        return x / (torch.sqrt(squares) + eps) * weight
    if slip == "no_eps":
        return x / torch.sqrt(squares) * weight
    if slip == "eps_fixed":
        eps = 1e-5
    normalised = x / torch.sqrt(squares + eps)
    return normalised if slip == "no_gain" else normalised * weight


def test_rms_norm_reviewed_and_a_learner_s_pass_and_are_recorded(capsys, progress_file):
    out = run(check_rms_norm, modern.rms_norm, capsys)
    assert "All 9 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("12.rms_norm", 1, 1)
    assert "All 9 checks passed" in run(check_rms_norm, rms_norm, capsys)
    assert "All 9 checks passed" in run(check_rms_norm, lambda x, w, eps=1e-5: w * x * torch.rsqrt(
        x.pow(2).mean(-1, keepdim=True) + eps), capsys)


@pytest.mark.parametrize("slip", ["centred", "eps_outside", "no_gain", "unbiased_std", "centred_variance", "no_eps",
                                  "eps_fixed", "no_keepdim", "dim0", "dim1"])
def test_each_rms_norm_slip_is_named(slip, capsys, progress_file):
    out = run(check_rms_norm, lambda x, weight, eps=1e-5: rms_norm(x, weight, eps, slip), capsys)
    assert f"your output is exactly what {RMS_NORM_SLIPS[slip]} gives" in out and "✗" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_rms_norm_that_writes_into_x_loses_float64_or_float64_precision_fails(capsys):
    def in_place(x, weight, eps=1e-5):
        return x.div_(torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)).mul_(weight)

    def as_float32(x, weight, eps=1e-5):
        return rms_norm(x.float(), weight.float(), eps)

    def like_hugging_face(x, weight, eps=1e-5):  # computed in float32 whatever the input, then cast back
        return weight * rms_norm(x.float(), torch.ones(()), eps).to(x.dtype)

    assert "x and weight left as they were" in run(check_rms_norm, in_place, capsys)
    assert "✗ float64 rows of scale 0.001, eps=1e-6 as in the first LLaMA: the result keeps the input's dtype" in run(
        check_rms_norm, as_float32, capsys)
    out = run(check_rms_norm, like_hugging_face, capsys)
    assert "✓ a batch of sequences (2, 5, 16): the normalised values" in out and FLOAT32_PRECISION in out, out


def test_rms_norm_cut_off_from_x_fails_the_gradient(capsys):
    out = run(check_rms_norm, lambda x, weight, eps=1e-5: rms_norm(x.detach(), weight, eps), capsys)
    assert "✗ the gradient flows back to x" in out, out


def test_rms_norm_hints_give_no_code(capsys):
    for slip in ("centred", "eps_outside", "no_keepdim", "dim0"):
        out = run(check_rms_norm, lambda x, weight, eps=1e-5: rms_norm(x, weight, eps, slip), capsys)
        hints = "\n".join(line for line in out.splitlines() if "hint:" in line)
        assert hints and not any(code in hints for code in ("keepdim=", "sqrt(", ".mean(", "dim=", "torch.")), out


# --- 12.swiglu ------------------------------------------------------------------------

def swiglu(x, gate_weight, up_weight, down_weight, slip=None):
    """A learner's swiglu, with switches for the classic slips."""
    gate, up = x @ gate_weight.T, x @ up_weight.T
    if slip == "gate_on_up":
        gate, up = up, gate
    if slip == "untransposed":
        gate, up = x @ gate_weight, x @ up_weight
    silu = {"gelu": F.gelu, "sigmoid": torch.sigmoid, "relu": torch.relu}.get(slip, lambda z: z * torch.sigmoid(z))
    hidden = {"gate_only": lambda: silu(gate), "up_only": lambda: up, "silu_after": lambda: F.silu(gate * up),
              "added": lambda: silu(gate) + up}.get(slip, lambda: silu(gate) * up)()
    return hidden @ (down_weight if slip == "untransposed" else down_weight.T)


def test_swiglu_reviewed_and_a_learner_s_pass_and_are_recorded(capsys, progress_file):
    out = run(check_swiglu, modern.swiglu, capsys)
    assert "All 6 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("12.swiglu", 1, 1)
    assert "All 6 checks passed" in run(check_swiglu, swiglu, capsys)


@pytest.mark.parametrize("slip", list(SWIGLU_SLIPS))
def test_each_swiglu_slip_is_named(slip, capsys, progress_file):
    out = run(check_swiglu, lambda x, g, u, d: swiglu(x, g, u, d, slip), capsys)
    assert f"your output is exactly what {SWIGLU_SLIPS[slip]} gives" in out and "✗" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_swiglu_with_untransposed_weights_is_named_not_just_a_crash(capsys):
    out = run(check_swiglu, lambda x, g, u, d: swiglu(x, g, u, d, "untransposed"), capsys)
    assert "✗ a batch of sequences (2, 5, 12), ffn_width 32: weights stored (out, in)" in out, out
    assert f"exactly what {UNTRANSPOSED} gives" in out and "it raised" not in out, out

    def down_untransposed(x, g, u, d):  # only the last projection left as stored
        return (F.silu(F.linear(x, g)) * F.linear(x, u)) @ d

    assert UNTRANSPOSED in run(check_swiglu, down_untransposed, capsys)


def test_swiglu_that_writes_into_x_or_loses_float64_fails(capsys):
    def in_place(x, g, u, d):
        out = swiglu(x, g, u, d)
        x.zero_()
        return out

    assert "x and the weights left as they were" in run(check_swiglu, in_place, capsys)
    assert "✗ float64 (3, 4, 8), ffn_width 20: the result keeps the input's dtype" in run(
        check_swiglu, lambda x, g, u, d: swiglu(x.float(), g.float(), u.float(), d.float()), capsys)


def test_another_crash_in_swiglu_is_reported_as_it_is(capsys):
    out = run(check_swiglu, lambda x, g, u, d: swiglu(x, g, u, d)[..., :3] + x, capsys)
    assert "it raised RuntimeError" in out and "weights stored (out, in)" not in out, out


# --- 12.rotate_at ---------------------------------------------------------------------

def rotate_at(x, positions, base=10000.0, slip=None):
    """A learner's rotate_at (angles in float32, as many write it), with switches for the classic slips."""
    dim = x.size(-1)
    if slip == "from_zero":
        positions = torch.arange(x.size(-2))
    if slip == "first_row" and positions.dim() == 2:
        positions = positions[0]
    pair = torch.arange(0, dim, 2).float() / 2 if slip == "i_exponent" else torch.arange(0, dim, 2).float()
    theta = 1.0 / ((10000.0 if slip == "base_fixed" else base) ** (pair / dim))
    angles = positions.float()[..., None] * theta  # (L, Dh/2) or (B, L, Dh/2)
    if angles.dim() == 3 and slip != "rows_as_heads":
        angles = angles.unsqueeze(1)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if slip == "backwards":
        sin = -sin
    if slip == "half_split":  # Hugging Face's rotate_half
        cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
        half = torch.cat([-x[..., dim // 2:], x[..., : dim // 2]], -1)
        return x * cos + half * sin
    out = torch.empty_like(x)
    out[..., 0::2] = x[..., 0::2] * cos - x[..., 1::2] * sin
    out[..., 1::2] = x[..., 0::2] * sin + x[..., 1::2] * cos
    return out


def test_rotate_at_reviewed_and_a_learner_s_pass_and_are_recorded(capsys, progress_file):
    out = run(check_rotate_at, positional.rotate_at, capsys)
    assert "All 8 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("12.rotate_at", 1, 1)
    assert "All 8 checks passed" in run(check_rotate_at, rotate_at, capsys)


def test_rotate_at_as_complex_numbers_passes(capsys):
    """RoFormer's and Meta's way: pairs as complex numbers, multiplied by e^(i · angle)."""
    def by_complex(x, positions, base=10000.0):
        theta = base ** (-torch.arange(0, x.size(-1), 2, dtype=torch.float64) / x.size(-1))
        angles = positions.double()[..., None] * theta
        if angles.dim() == 3:
            angles = angles[:, None]
        pairs = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
        return torch.view_as_real(pairs * torch.polar(torch.ones_like(angles), angles)).flatten(-2).to(x.dtype)

    assert "✗" not in run(check_rotate_at, by_complex, capsys)


@pytest.mark.parametrize("slip", list(ROTATE_SLIPS))
def test_each_rotate_at_slip_is_named(slip, capsys, progress_file):
    out = run(check_rotate_at, lambda x, positions, base=10000.0: rotate_at(x, positions, base, slip), capsys)
    assert f"your output is exactly what {ROTATE_SLIPS[slip]} gives" in out and "✗" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_rotate_at_that_writes_into_x_or_loses_float64_fails(capsys):
    def in_place(x, positions, base=10000.0):
        return x.copy_(rotate_at(x, positions, base))

    assert "x and positions left as they were" in run(check_rotate_at, in_place, capsys)
    assert "the result keeps the input's dtype" in run(
        check_rotate_at, lambda x, positions, base=10000.0: rotate_at(x.float(), positions, base), capsys)


# --- 12.grouped_attention -------------------------------------------------------------

def grouped_attention(attention, x, positions, slip=None):
    """A learner's forward pass, with switches for the classic slips."""
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = attention.heads, attention.kv_heads, attention.head_dim
    if slip == "reshape_heads":
        split = lambda t, n: t.reshape(batch, n, length, head_dim)
    else:
        split = lambda t, n: t.view(batch, length, n, head_dim).transpose(1, 2)
    q, k, v = split(attention.q_proj(x), heads), split(attention.k_proj(x), kv_heads), split(attention.v_proj(x), kv_heads)
    at = torch.arange(length) if slip == "from_zero" else positions
    rotation = slip if slip in ("half_split", "base_fixed") else None
    if slip != "queries_unrotated":
        q = rotate_at(q, at, attention.rope_base, rotation)
    if slip != "keys_unrotated":
        k = rotate_at(k, at, attention.rope_base, rotation)
    if slip == "values_rotated":
        v = rotate_at(v, at, attention.rope_base)
    groups = heads // kv_heads
    if slip == "tiled":
        k, v = k.repeat(1, groups, 1, 1), v.repeat(1, groups, 1, 1)
    else:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    scores = q @ k.transpose(-2, -1) / (1 if slip == "unscaled" else math.sqrt(head_dim))
    if slip != "no_mask":
        scores = scores.masked_fill(torch.triu(torch.ones(length, length, dtype=torch.bool), 1), float("-inf"))
    out = scores.softmax(-1) @ v
    return attention.o_proj(out.transpose(1, 2).reshape(batch, length, heads * head_dim))


def by_the_course_s_pieces(attention, x, positions):
    """Allowed: the previous exercise's reviewed rotate_at, and attend."""
    from course_utils.attention import attend

    batch, length, _ = x.shape
    split = lambda t, n: t.view(batch, length, n, attention.head_dim).transpose(1, 2)
    q = positional.rotate_at(split(attention.q_proj(x), attention.heads), positions, attention.rope_base)
    k = positional.rotate_at(split(attention.k_proj(x), attention.kv_heads), positions, attention.rope_base)
    v = split(attention.v_proj(x), attention.kv_heads)
    groups = attention.heads // attention.kv_heads
    k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    out, _ = attend(q, k, v, is_causal=True)
    return attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1))


def test_grouped_attention_a_learner_s_and_one_from_the_course_s_pieces_pass(capsys, progress_file):
    out = run(check_grouped_attention, grouped_attention, capsys)
    assert "All 12 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("12.grouped_attention", 1, 1)
    assert "All 12 checks passed" in run(check_grouped_attention, by_the_course_s_pieces, capsys)

    def by_pytorch(attention, x, positions):  # PyTorch's kernel, which repeats the key-value heads itself
        batch, length, _ = x.shape
        split = lambda t, n: t.view(batch, length, n, attention.head_dim).transpose(1, 2)
        q = rotate_at(split(attention.q_proj(x), attention.heads), positions, attention.rope_base)
        k = rotate_at(split(attention.k_proj(x), attention.kv_heads), positions, attention.rope_base)
        out = F.scaled_dot_product_attention(q, k, split(attention.v_proj(x), attention.kv_heads), is_causal=True,
                                             enable_gqa=True)
        return attention.o_proj(out.transpose(1, 2).reshape(batch, length, -1))

    assert "All 12 checks passed" in run(check_grouped_attention, by_pytorch, capsys)


@pytest.mark.parametrize("slip", list(ATTENTION_SLIPS))
def test_each_grouped_attention_slip_is_named(slip, capsys, progress_file):
    out = run(check_grouped_attention, lambda attention, x, positions: grouped_attention(attention, x, positions, slip),
              capsys)
    assert f"your output is exactly what {ATTENTION_SLIPS[slip]} gives" in out and "✗" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_heads_repeated_in_the_wrong_order_fail_only_where_it_shows(capsys):
    out = run(check_grouped_attention, lambda a, x, p: grouped_attention(a, x, p, "tiled"), capsys)
    assert "✗ 6 query heads sharing 2 key-value heads" in out and "✗ float64, 8 query heads sharing 2" in out, out
    assert "✓ multi-query attention (4 heads, 1 key-value head), width 32, a left-padded batch's positions (3, 4): " \
           "the output" in out, out
    assert "✓ plain multi-head attention (4 heads, 4 key-value heads), width 16, rope_base 1,000, positions 3..8: " \
           "the output" in out, out


def test_grouped_attention_that_returns_a_pair_writes_into_x_or_loses_float64_fails(capsys):
    assert "returns one tensor" in run(check_grouped_attention, lambda a, x, p: (grouped_attention(a, x, p), None), capsys)

    def in_place(attention, x, positions):
        out = grouped_attention(attention, x, positions)
        x.mul_(2)
        return out

    assert "x and positions left as they were" in run(check_grouped_attention, in_place, capsys)
    assert "✗ float64, 8 query heads sharing 2 key-value heads, width 64, each row's own positions: a torch.float64 " \
           "module gives torch.float64 outputs" in run(check_grouped_attention,
                                                       lambda a, x, p: grouped_attention(a.float(), x.float(), p), capsys)


def test_the_module_called_whole_does_not_pass(capsys, request):
    """In the notebook, a hook sees the module called; graded, the sandbox's watch does (below)."""
    out = run(check_grouped_attention, lambda attention, x, positions: attention(x, positions)[0], capsys)
    if request.node.callspec.params["both_sides"] == "in the notebook":
        assert "✗" in out and "your code called the GroupedQueryAttention module itself" in out, out


# --- every exercise ---------------------------------------------------------------------

CHECKERS = [check_rms_norm, check_swiglu, check_rotate_at, check_grouped_attention]


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda checker: checker.__name__)
def test_a_stub_reads_as_not_attempted(checker, capsys, progress_file):
    def stub(*args, **kwargs):
        raise NotImplementedError

    out = run(checker, stub, capsys)
    assert "not attempted yet" in out and "✗" not in out, out
    assert not progress_file.exists()


@pytest.mark.parametrize("checker", CHECKERS, ids=lambda checker: checker.__name__)
def test_a_crash_and_a_non_function_are_reported(checker, capsys):
    assert "it raised ZeroDivisionError" in run(checker, lambda *args, **kwargs: 1 / 0, capsys)
    assert "your answer is a function" in run(checker, 42, capsys)


@pytest.mark.parametrize("checker, answer, piece", [
    (modern_checks.check_rms_norm, lambda x, weight, eps=1e-5: modern.rms_norm(x, weight, eps), "modern.rms_norm"),
    (modern_checks.check_rms_norm, lambda x, weight, eps=1e-5: modern.RMSNorm(x.size(-1), eps).to(x.dtype).requires_grad_(
        False)(x) * weight, "modern.rms_norm"),
    (modern_checks.check_swiglu, modern.swiglu, "modern.swiglu"),
    (modern_checks.check_rotate_at, positional.rotate_at, "positional.rotate_at"),
    (modern_checks.check_grouped_attention, lambda attention, x, positions: attention(x, positions)[0],
     "modern.GroupedQueryAttention.forward"),
    (modern_checks.check_grouped_attention, lambda attention, x, positions: modern_checks._slipped_attention(
        attention, x, positions).to(x.dtype), "classroom.checks.modern._slipped_attention"),
])
def test_graded_an_answer_that_runs_the_course_s_own_earns_nothing(checker, answer, piece, request):
    if request.node.callspec.params["both_sides"] == "in the notebook":
        pytest.skip("the grader's watch only")
    earned, report = graded_report(checker, answer)
    assert earned == 0 and f"your answer runs the course's own course_utils.{piece}" in report, report


def test_graded_the_previous_exercise_s_rotate_at_and_attend_are_allowed(request):
    from course_utils.classroom.checks import judging

    if request.node.callspec.params["both_sides"] == "in the notebook":
        pytest.skip("the grader's watch only")
    session = Watched({"answer": by_the_course_s_pieces})
    with judging(seed=3) as judged:
        modern_checks.check_grouped_attention(session.lookup("answer"))
    (_, earned, _, report), = judged
    assert earned == 1, report
