"""The multi-head attention checker (lesson 04) accepts a correct class,
names each classic mistake, and survives whatever a learner's class does."""

import json
import math

import pytest
import torch
from torch import nn

from course_utils.attention import MultiHeadAttention as Reviewed
from course_utils.classroom.checks import multihead
from course_utils.classroom.checks.multihead import SLIPS, check_multi_head_attention, check_separate_heads, slipped_forward

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


class Solution(nn.Module):
    """What a learner should write: the solution of the lesson's exercise."""

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.d_model, self.num_heads, self.head_dim = d_model, num_heads, d_model // num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def split_heads(self, x):
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x):
        batch, _, length, _ = x.shape
        return x.transpose(1, 2).reshape(batch, length, self.d_model)

    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ v

    def forward(self, x, mask=None):
        q, k, v = (self.split_heads(t) for t in self.in_proj(x).chunk(3, dim=-1))
        return self.out_proj(self.merge_heads(self.attend(q, k, v, mask)))


# --- one wrong implementation per classic mistake ------------------------------

class ReshapeWithoutTranspose(Solution):
    def split_heads(self, x):
        batch, length, _ = x.shape
        return x.reshape(batch, self.num_heads, length, self.head_dim)

    def merge_heads(self, x):
        batch, _, length, _ = x.shape
        return x.reshape(batch, length, self.d_model)


class NoOutputProjection(Solution):
    def forward(self, x, mask=None):
        q, k, v = (self.split_heads(t) for t in self.in_proj(x).chunk(3, dim=-1))
        return self.merge_heads(self.attend(q, k, v, mask))


class NoScaling(Solution):
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ v


class SoftmaxOverQueries(Solution):
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-2) @ v


class MaskIgnored(Solution):
    def forward(self, x, mask=None):
        return super().forward(x)


class MaskInverted(Solution):
    """nn.MultiheadAttention's convention, True = masked out, in a course module."""
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        return scores.softmax(dim=-1) @ v


def run(cls, capsys):
    check_multi_head_attention(cls)
    return capsys.readouterr().out


def test_the_slip_free_variant_is_the_reviewed_module():
    reference, x = multihead._reference_and_input()
    for mask in (None, multihead.causal_mask(x.shape[1])):
        torch.testing.assert_close(slipped_forward(reference, x, mask), reference(x, mask=mask)[0], atol=1e-5, rtol=0)


def test_every_slip_changes_the_output():
    """Otherwise the checker could not tell a slip from the right answer."""
    reference, x = multihead._reference_and_input()
    mask = multihead.padding_mask(multihead.TOKENIZER_MASK)
    right = reference(x, mask=mask)[0]
    for slip in SLIPS:
        if slip != "softmax_axis":  # masked columns would be all -inf over the queries
            difference = (slipped_forward(reference, x, mask, slip) - right).abs()
            assert difference.isnan().any() or difference.max() > 1e-2, slip  # an inverted mask leaves rows all -inf: NaN


def test_the_solution_passes_and_is_recorded(capsys, progress_file):
    out = run(Solution, capsys)
    assert "All 7 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("04.multi_head_attention", 1, 1)


def test_a_class_built_on_the_reviewed_module_passes(capsys):
    class Wrapped(Reviewed):
        def forward(self, x, mask=None):
            return super().forward(x, mask=mask)[0]

    assert "All 7 checks passed" in run(Wrapped, capsys)


def test_the_checker_leaves_the_random_state_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run(Solution, capsys)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("cls, slip, failing", [
    (ReshapeWithoutTranspose, "transpose", ["✗ split_heads", "✗ merge_heads", "✗ forward(x), no mask"]),
    (NoOutputProjection, "no_out_proj", ["✗ forward(x), no mask"]),
    (NoScaling, "no_scale", ["✗ forward(x), no mask"]),
    (SoftmaxOverQueries, "softmax_axis", ["✗ forward(x), no mask"]),
    (MaskIgnored, "mask_ignored", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)"]),
    (MaskInverted, "mask_inverted", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)"]),
])
def test_each_classic_mistake_is_caught_and_named(cls, slip, failing, capsys, progress_file):
    out = run(cls, capsys)
    assert f"your output is exactly what {SLIPS[slip]} gives" in out
    for line in failing:
        assert line in out
    assert out.count("✗") >= len(failing)
    assert "checks passed; fix the first ✗" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_the_transpose_slip_is_named_for_each_step(capsys):
    out = run(ReshapeWithoutTranspose, capsys)
    assert out.count(f"your output is exactly what {SLIPS['transpose']} gives") == 3


def test_a_masked_solution_is_not_blamed_for_the_no_mask_slips(capsys):
    out = run(MaskIgnored, capsys)
    assert "✓ forward(x), no mask" in out and "✓ split_heads" in out and "✓ merge_heads" in out


def test_not_attempted_yet(capsys, progress_file):
    class Stub(Solution):  # the student release: every method to write still a stub
        def split_heads(self, x):
            raise NotImplementedError

        def merge_heads(self, x):
            raise NotImplementedError

        def forward(self, x, mask=None):
            raise NotImplementedError

    out = run(Stub, capsys)
    assert "not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


def test_partly_written_shows_the_parts_that_pass(capsys):
    class Partial(Solution):  # split and merge written, forward still a stub
        def forward(self, x, mask=None):
            raise NotImplementedError

    out = run(Partial, capsys)
    assert "not attempted yet" not in out and "✗ the rest of the exercise" in out and "✓" in out


def test_a_crash_in_learner_code_is_reported_not_raised(capsys):
    class Crashes(Solution):
        def forward(self, x, mask=None):
            return x @ x  # (2, 6, 32) @ (2, 6, 32): sizes do not match

    out = run(Crashes, capsys)
    assert "it raised RuntimeError" in out and "at line" in out


def test_wrong_shape_and_wrong_type_are_explained(capsys):
    class KeepsHeads(Solution):
        def merge_heads(self, x):
            return x

        def forward(self, x, mask=None):
            q, k, v = (self.split_heads(t) for t in self.in_proj(x).chunk(3, dim=-1))
            return self.attend(q, k, v, mask)

    class ReturnsTuple(Solution):
        def forward(self, x, mask=None):
            return super().forward(x, mask), None

    out = run(KeepsHeads, capsys)
    assert "expected: shape (2, 6, 32)\n      actual:   shape (2, 4, 6, 8)" in out
    out = run(ReturnsTuple, capsys)
    assert "actual:   a tuple of 2" in out and "not a tuple" in out


def test_not_a_module_class_and_a_changed_init(capsys):
    assert "your answer is a class derived from nn.Module" in run(lambda d, h: None, capsys)
    assert "✗ your answer is a class" in run(Solution(32, 4), capsys)

    class NoBias(Solution):
        def __init__(self, d_model, num_heads):
            super().__init__(d_model, num_heads)
            self.out_proj = nn.Linear(d_model, d_model, bias=False)

    assert "keep the __init__ of the exercise as it is" in run(NoBias, capsys)


# --- exercise 1: H separate heads in an nn.ModuleList ---------------------------

class SingleHead(nn.Module):
    """The lesson's given head, with the forward a learner writes."""

    def __init__(self, d_model, head_dim):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(d_model, head_dim) for _ in range(3))

    def scores(self, q, k):
        return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))

    def forward(self, x, mask=None):
        scores = self.scores(self.query(x), self.key(x))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ self.value(x)


class SeparateHeads(nn.Module):
    head_class = SingleHead

    def __init__(self, d_model, num_heads):
        super().__init__()
        self.heads = nn.ModuleList(self.head_class(d_model, d_model // num_heads) for _ in range(num_heads))
        self.out_proj = nn.Linear(d_model, d_model)

    def concatenate(self, outputs):
        return torch.cat(outputs, dim=-1)

    def forward(self, x, mask=None):
        return self.out_proj(self.concatenate([head(x, mask) for head in self.heads]))


class HeadsReversed(SeparateHeads):
    def concatenate(self, outputs):
        return torch.cat(outputs[::-1], dim=-1)


class HeadsWithoutWO(SeparateHeads):
    def forward(self, x, mask=None):
        return self.concatenate([head(x, mask) for head in self.heads])


class NoWOAtAll(HeadsWithoutWO):
    def __init__(self, d_model, num_heads):
        super().__init__(d_model, num_heads)
        del self.out_proj


class ScaledByModelWidth(SeparateHeads):
    class head_class(SingleHead):
        def scores(self, q, k):
            return q @ k.transpose(-2, -1) / math.sqrt(32)  # √D, the model's width, not the head's


class OneSharedHead(SeparateHeads):
    def __init__(self, d_model, num_heads):
        super().__init__(d_model, num_heads)
        self.heads = nn.ModuleList([SingleHead(d_model, d_model // num_heads)] * num_heads)


class SeparateMaskInverted(SeparateHeads):
    class head_class(SingleHead):
        def forward(self, x, mask=None):
            scores = self.scores(self.query(x), self.key(x))
            if mask is not None:
                scores = scores.masked_fill(mask, float("-inf"))
            return scores.softmax(dim=-1) @ self.value(x)


class SeparateNoScaling(SeparateHeads):
    class head_class(SingleHead):
        def scores(self, q, k):
            return q @ k.transpose(-2, -1)


class SeparateSoftmaxOverQueries(SeparateHeads):
    class head_class(SingleHead):
        def forward(self, x, mask=None):
            scores = self.scores(self.query(x), self.key(x))
            return scores.softmax(dim=-2) @ self.value(x)


class SeparateMaskIgnored(SeparateHeads):
    def forward(self, x, mask=None):
        return super().forward(x)


class PlainList(SeparateHeads):
    def __init__(self, d_model, num_heads):
        nn.Module.__init__(self)
        self.heads = [SingleHead(d_model, d_model // num_heads) for _ in range(num_heads)]
        self.out_proj = nn.Linear(d_model, d_model)


def run_separate(cls, capsys):
    check_separate_heads(cls)
    return capsys.readouterr().out


def test_separate_heads_solution_passes_and_is_recorded(capsys, progress_file):
    out = run_separate(SeparateHeads, capsys)
    assert "All 8 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("04.separate_heads", 1, 1)


def test_separate_heads_equal_the_fused_module_with_copied_weights():
    """The exercise's point: H small modules are the fused module, cut apart."""
    reference, x = multihead._reference_and_input()
    separate = SeparateHeads(32, 4).eval()
    separate.load_state_dict(multihead._fused_weights(reference))
    with torch.no_grad():
        torch.testing.assert_close(separate(x), reference(x)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("cls, slip, failing", [
    (HeadsReversed, "heads_reversed", ["✗ forward(x), no mask"]),
    (HeadsWithoutWO, "no_out_proj", ["✗ forward(x), no mask"]),
    (ScaledByModelWidth, "scale_d_model", ["✗ one head", "✗ forward(x), no mask"]),
    (OneSharedHead, "shared_head", ["✗ one head", "✗ forward(x), no mask"]),
    (SeparateMaskInverted, "mask_inverted", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)"]),
    (SeparateNoScaling, "no_scale", ["✗ one head", "✗ forward(x), no mask"]),
    (SeparateSoftmaxOverQueries, "softmax_axis", ["✗ one head", "✗ forward(x), no mask"]),
    (SeparateMaskIgnored, "mask_ignored", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)"]),
])
def test_each_separate_heads_mistake_is_caught_and_named(cls, slip, failing, capsys, progress_file):
    out = run_separate(cls, capsys)
    assert f"your output is exactly what {SLIPS[slip]} gives" in out
    for line in failing:
        assert line in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_separate_heads_structure_is_explained(capsys):
    out = run_separate(NoWOAtAll, capsys)
    assert "✗ self.out_proj is W^O" in out and SLIPS["no_out_proj"] in out
    out = run_separate(PlainList, capsys)
    assert "✗ self.heads is an nn.ModuleList" in out and "a plain Python list hides" in out


def test_separate_heads_not_attempted(capsys, progress_file):
    class Stub(SeparateHeads):
        def __init__(self, d_model, num_heads):
            raise NotImplementedError

    assert "not attempted yet" in run_separate(Stub, capsys)
    assert not progress_file.exists()


def test_no_hint_spells_out_code(capsys):
    """A hint names the slip and where to look, never the line to write."""
    outputs = [run(cls, capsys) for cls in (ReshapeWithoutTranspose, NoScaling, MaskIgnored, MaskInverted)]
    outputs += [run_separate(cls, capsys) for cls in (HeadsReversed, SeparateMaskInverted, NoWOAtAll)]
    for out in outputs:
        for code in ("masked_fill", ".transpose(", ".view(", ".reshape(", "softmax(", "torch.cat"):
            assert code not in out, code
