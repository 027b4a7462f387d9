"""Lesson 06's checkers: layer_norm and the decoder layer. Each accepts a
correct answer, names each classic slip, and survives whatever a learner's
code does."""

import json

import pytest
import torch
from torch import nn

from course_utils.attention import MultiHeadAttention, causal_mask
from course_utils.classroom.checks.transformer import (LAYER_NORM_SLIPS, QUERIES_FROM_ENCODER, SLIPS,
                                                       check_decoder_layer, check_layer_norm)
from course_utils.transformer import FeedForward, LayerNorm

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


class Given(nn.Module):
    """The exercise's __init__, as handed out."""

    def __init__(self, config):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.feed_forward = FeedForward(config)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(config.d_model) for _ in range(3))


class Solution(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class NoCausalMask(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class QueriesFromEncoder(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(memory + self.cross_attn(memory, x, x, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class NoResidualAroundCross(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class PreNorm(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = x + self.self_attn(self.norm1(x), mask=self_mask)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, memory, memory, mask=memory_mask)[0]
        return x + self.feed_forward(self.norm3(x))


class NoMemoryMask(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory)[0])
        return self.norm3(x + self.feed_forward(x))


class OwnCausalMask(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=causal_mask(x.size(1)))[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))


class InPlace(Solution):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        out = super().forward(x, memory, self_mask, memory_mask)
        x.zero_()
        return out


class Float32Always(Solution):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        return super().forward(x, memory, self_mask, memory_mask).float()


class OneNorm(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm1(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm1(x + self.feed_forward(x))


class Stub(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        raise NotImplementedError


def run(layer_class, capsys) -> str:
    check_decoder_layer(layer_class)
    return capsys.readouterr().out


def test_the_solution_passes_and_is_recorded(capsys, progress_file):
    out = run(Solution, capsys)
    assert "All 7 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("06.decoder_layer", 1, 1)


@pytest.mark.parametrize("layer_class, slip", [
    (NoCausalMask, SLIPS["no_causal_mask"]),
    (NoResidualAroundCross, SLIPS["no_residual_2"]),
    (PreNorm, SLIPS["pre_norm"]),
    (NoMemoryMask, SLIPS["no_memory_mask"]),
    (QueriesFromEncoder, QUERIES_FROM_ENCODER),
    (OwnCausalMask, SLIPS["own_causal_mask"]),
    (OneNorm, SLIPS["one_norm"]),
])
def test_each_classic_slip_is_named(layer_class, slip, capsys):
    out = run(layer_class, capsys)
    assert slip in out and "✗" in out, out


def test_a_peeking_layer_fails_the_no_future_check(capsys):
    assert "✗ no position sees a later one" in run(NoCausalMask, capsys)


def test_a_stub_reads_as_not_attempted(capsys):
    out = run(Stub, capsys)
    assert "06.decoder_layer: not attempted yet" in out and "✗" not in out


def test_a_changed_init_is_reported_not_crashed(capsys):
    class Renamed(Solution):
        def __init__(self, config):
            super().__init__(config)
            self.ffn = self.feed_forward
            del self.feed_forward

    out = run(Renamed, capsys)
    assert "✗ __init__ keeps the sublayers as given" in out, out


def test_hints_name_the_slip_without_code(capsys):
    for layer_class in (NoCausalMask, NoResidualAroundCross, PreNorm, QueriesFromEncoder):
        out = run(layer_class, capsys)
        assert "self.norm" not in out and "cross_attn(" not in out and "mask=" not in out, out


def test_a_layer_that_writes_into_its_input_or_loses_float64_fails(capsys):
    assert "✗ a causal target mask: x, memory and the masks left as they were" in run(InPlace, capsys)
    assert "✗ a float64 layer gives float64 outputs" in run(Float32Always, capsys)


def test_a_layer_with_its_own_causal_mask_passes_the_causal_case_and_fails_the_padded_one(capsys):
    out = run(OwnCausalMask, capsys)
    assert "✓ a causal target mask: masked self-attention" in out, out
    assert "✗ width 24, 3 heads, a left-padded target: masked self-attention" in out, out


# --- layer_norm ---------------------------------------------------------------------

def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(-1, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(variance + eps) + beta


def unbiased(x, gamma, beta, eps=1e-5):
    return gamma * (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + eps) + beta


def eps_outside(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return gamma * (x - mean) / (((x - mean) ** 2).mean(-1, keepdim=True).sqrt() + eps) + beta


def eps_fixed(x, gamma, beta, eps=1e-5):
    return layer_norm(x, gamma, beta)


def no_keepdim(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1)
    return gamma * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1) + eps) + beta


def rms_norm(x, gamma, beta, eps=1e-5):
    return gamma * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) + beta


def over_the_batch(x, gamma, beta, eps=1e-5):
    mean = x.mean(0, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(((x - mean) ** 2).mean(0, keepdim=True) + eps) + beta


def shift_then_scale(x, gamma, beta, eps=1e-5):
    return (layer_norm(x, torch.ones_like(gamma), torch.zeros_like(beta), eps) + beta) * gamma


def in_place(x, gamma, beta, eps=1e-5):
    x.sub_(x.mean(-1, keepdim=True))
    return gamma * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + eps) + beta


def as_float32(x, gamma, beta, eps=1e-5):
    return layer_norm(x.float(), gamma.float(), beta.float(), eps)


def cut_off(x, gamma, beta, eps=1e-5):
    return layer_norm(x.detach(), gamma, beta, eps)


def by_torch(x, gamma, beta, eps=1e-5):
    return torch.nn.functional.layer_norm(x, gamma.shape, gamma, beta, eps)


def test_layer_norm_from_the_formula_passes_and_is_recorded(capsys, progress_file):
    check_layer_norm(layer_norm)
    out = capsys.readouterr().out
    assert "All 11 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("06.layer_norm", 1, 1)


@pytest.mark.parametrize("answer, slip", [
    (unbiased, "unbiased"), (eps_outside, "eps_outside"), (eps_fixed, "eps_fixed"), (no_keepdim, "no_keepdim"),
    (rms_norm, "no_mean"), (over_the_batch, "first_axis"), (shift_then_scale, "shift_then_scale"),
])
def test_each_layer_norm_slip_is_named(answer, slip, capsys):
    check_layer_norm(answer)
    out = capsys.readouterr().out
    assert LAYER_NORM_SLIPS[slip] in out and "✗" in out, out


@pytest.mark.parametrize("answer, failure", [
    (in_place, "x, γ and β left as they were"),
    (as_float32, "the result keeps the input's dtype"),
    (cut_off, "the gradient flows back to x"),
])
def test_layer_norm_that_writes_into_x_loses_float64_or_the_gradient_fails(answer, failure, capsys):
    check_layer_norm(answer)
    out = capsys.readouterr().out
    assert f"✗ {failure}" in out or f": {failure}" in out, out


def test_layer_norm_hints_give_no_code(capsys):
    for answer in (unbiased, eps_outside, rms_norm, over_the_batch):
        check_layer_norm(answer)
        out = capsys.readouterr().out
        assert "keepdim=" not in out and "sqrt(" not in out and ".mean(" not in out, out
