"""The decoder-layer checker (lesson 06) accepts a correct layer, names each
classic slip, and survives whatever a learner's class does."""

import json

import pytest
from torch import nn

from course_utils.attention import MultiHeadAttention
from course_utils.classroom.checks.transformer import QUERIES_FROM_ENCODER, SLIPS, check_decoder_layer
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


class Stub(Given):
    def forward(self, x, memory, self_mask=None, memory_mask=None):
        raise NotImplementedError


def run(layer_class, capsys) -> str:
    check_decoder_layer(layer_class)
    return capsys.readouterr().out


def test_the_solution_passes_and_is_recorded(capsys, progress_file):
    out = run(Solution, capsys)
    assert "All 3 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("06.decoder_layer", 1, 1)


@pytest.mark.parametrize("layer_class, slip", [
    (NoCausalMask, SLIPS["no_causal_mask"]),
    (NoResidualAroundCross, SLIPS["no_residual_2"]),
    (PreNorm, SLIPS["pre_norm"]),
    (NoMemoryMask, SLIPS["no_memory_mask"]),
    (QueriesFromEncoder, QUERIES_FROM_ENCODER),
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
