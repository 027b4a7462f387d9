"""The multi-head attention checker (lesson 04) accepts a correct class,
names each classic mistake, and survives whatever a learner's class does."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.attention import MultiHeadAttention as Reviewed
from course_utils.classroom.checks import multihead
from course_utils.classroom.checks.multihead import SLIPS, check_multi_head_attention, check_separate_heads, _slipped_forward

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

    def project(self, query, key, value):
        blocks = zip(self.in_proj.weight.chunk(3), self.in_proj.bias.chunk(3))
        return [F.linear(t, weight, bias) for t, (weight, bias) in zip((query, key, value), blocks)]

    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-1)
        return weights @ v, weights

    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (self.split_heads(t) for t in self.project(query, key, value))
        heads, weights = self.attend(q, k, v, mask)
        return self.output(self.merge_heads(heads)), weights if need_weights else None

    def output(self, merged):
        return self.out_proj(merged)


class OneProjectionForSelfAttention(Solution):
    """Another right answer: self-attention by one multiply, as the lesson traced it."""

    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        if key is None and value is None:
            q, k, v = (self.split_heads(t) for t in self.in_proj(query).chunk(3, dim=-1))
            heads, weights = self.attend(q, k, v, mask)
            return self.out_proj(self.merge_heads(heads)), weights if need_weights else None
        return super().forward(query, key, value, mask, need_weights)


# --- one wrong implementation per classic mistake ------------------------------

class ReshapeWithoutTranspose(Solution):
    def split_heads(self, x):
        batch, length, _ = x.shape
        return x.reshape(batch, self.num_heads, length, self.head_dim)

    def merge_heads(self, x):
        batch, _, length, _ = x.shape
        return x.reshape(batch, length, self.d_model)


class NoOutputProjection(Solution):
    def output(self, merged):
        return merged


class NoScaling(Solution):
    def attend(self, q, k, v, mask):
        return super().attend(q * math.sqrt(self.head_dim), k, v, mask)


class SoftmaxOverQueries(Solution):
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(dim=-2)
        return weights @ v, weights


class MaskIgnored(Solution):
    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        return super().forward(query, key, value, None, need_weights)


class MaskInverted(Solution):
    """nn.MultiheadAttention's convention, True = masked out, in a course module."""
    def attend(self, q, k, v, mask):
        return super().attend(q, k, v, None if mask is None else ~mask)


class KeysFromQuery(Solution):
    """The traced self-attention, whatever key and value are."""
    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        return super().forward(query, None, None, mask, need_weights)


class ValuesFromKey(Solution):
    def forward(self, query, key=None, value=None, mask=None, need_weights=False):
        return super().forward(query, key, None, mask, need_weights)


class ScoresAsWeights(Solution):
    def attend(self, q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(dim=-1) @ v, scores


def run(cls, capsys):
    check_multi_head_attention(cls)
    return capsys.readouterr().out


def test_the_slip_free_variant_is_the_reviewed_module():
    reference, x = multihead._reference_and_input()
    queries, keys, values = multihead._cross_inputs()
    for arguments, mask in [((x,), None), ((x,), multihead.causal_mask(x.shape[1])), ((queries, keys, values), None)]:
        torch.testing.assert_close(_slipped_forward(reference, *arguments, mask=mask),
                                   reference(*arguments, mask=mask)[0], atol=1e-5, rtol=0)


def test_every_slip_changes_the_output():
    """Otherwise the checker could not tell a slip from the right answer."""
    reference, x = multihead._reference_and_input()
    queries, keys, values = multihead._cross_inputs()
    memory_mask = multihead.padding_mask(torch.tensor([[1] * 7, [1] * 4 + [0] * 3]))
    right = reference(queries, keys, values, mask=memory_mask)[0]
    for slip in SLIPS:
        if slip not in ("softmax_axis", "keys_from_query", "shared_head", "heads_reversed", "weights_before_softmax"):
            # (a softmax over the queries makes masked columns NaN; keys from the query do not fit a 7-key mask;
            # the module's forward has no shared or reversed heads, and its output no weights)
            difference = (_slipped_forward(reference, queries, keys, values, memory_mask, slip) - right).abs()
            assert difference.isnan().any() or difference.max() > 1e-2, slip  # an inverted mask leaves rows all -inf: NaN
    unmasked = reference(queries, keys, values)[0]
    for slip in ("keys_from_query", "softmax_axis"):
        assert (_slipped_forward(reference, queries, keys, values, slip=slip) - unmasked).abs().max() > 1e-2, slip


def test_the_solution_passes_and_is_recorded(capsys, progress_file):
    out = run(Solution, capsys)
    assert "All 9 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("04.multi_head_attention", 1, 1)


@pytest.mark.parametrize("cls", [OneProjectionForSelfAttention, Reviewed])
def test_other_right_answers_pass(cls, capsys):
    """One multiply for self-attention, as the lesson traced it; the reviewed module itself."""
    assert "All 9 checks passed" in run(cls, capsys)


def test_the_checker_leaves_the_random_state_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run(Solution, capsys)
    torch.testing.assert_close(torch.rand(3), expected)


@pytest.mark.parametrize("cls, slip, failing", [
    (ReshapeWithoutTranspose, "transpose", ["✗ forward(x), no mask", "✗ cross-attention forward(query, memory)"]),
    (NoOutputProjection, "no_out_proj", ["✗ forward(x), no mask"]),
    (NoScaling, "no_scale", ["✗ forward(x), no mask", "✗ cross-attention forward(query, memory)"]),
    (SoftmaxOverQueries, "softmax_axis", ["✗ forward(x), no mask", "✗ need_weights=True"]),
    (MaskIgnored, "mask_ignored", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)",
                                   "✗ cross-attention with a padding mask", "✗ need_weights=True"]),
    (MaskInverted, "mask_inverted", ["✗ forward(x, mask=padding)", "✗ forward(x, mask=causal)",
                                     "✗ cross-attention with a padding mask"]),
    (KeysFromQuery, "keys_from_query", ["✗ cross-attention forward(query, memory)",
                                        "✗ forward(query, key, value)"]),
    (ValuesFromKey, "values_from_key", ["✗ forward(query, key, value)"]),
    (ScoresAsWeights, "weights_before_softmax", ["✗ need_weights=True"]),
])
def test_each_classic_mistake_is_caught_and_named(cls, slip, failing, capsys, progress_file):
    out = run(cls, capsys)
    assert f"your output is exactly what {SLIPS[slip]} gives" in out
    for line in failing:
        assert line in out
    assert out.count("✗") >= len(failing)
    assert "checks passed; fix the first ✗" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_the_cross_attention_slips_pass_self_attention(capsys):
    """Keys from the query is right for self-attention: only the cross cases fail."""
    out = run(KeysFromQuery, capsys)
    assert "✓ forward(x), no mask" in out and "✓ forward(x, mask=causal)" in out
    assert "✓ forward(query, key, value)" not in out


def test_the_transpose_slip_is_named_in_self_and_cross_attention(capsys):
    """A learner who splits by reshape instead of the given split_heads."""
    out = run(ReshapeWithoutTranspose, capsys)
    assert out.count(f"your output is exactly what {SLIPS['transpose']} gives") == 2


def test_a_masked_solution_is_not_blamed_for_the_no_mask_slips(capsys):
    out = run(MaskIgnored, capsys)
    assert "✓ forward(x), no mask" in out and "✓ cross-attention forward(query, memory)" in out


def test_not_attempted_yet(capsys, progress_file):
    class Stub(Solution):  # the student release: forward still a stub
        def forward(self, query, key=None, value=None, mask=None, need_weights=False):
            raise NotImplementedError

    out = run(Stub, capsys)
    assert "not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


def test_partly_written_shows_the_parts_that_pass(capsys):
    class Partial(Solution):  # self-attention written, cross-attention still to come
        def forward(self, query, key=None, value=None, mask=None, need_weights=False):
            if key is not None:
                raise NotImplementedError
            return super().forward(query, mask=mask, need_weights=need_weights)

    out = run(Partial, capsys)
    assert "not attempted yet" not in out and "✗ the rest of the exercise" in out and "✓ forward(x), no mask" in out


def test_a_crash_in_learner_code_is_reported_not_raised(capsys):
    class Crashes(Solution):
        def forward(self, query, key=None, value=None, mask=None, need_weights=False):
            return query @ query, None  # (2, 6, 32) @ (2, 6, 32): sizes do not match

    out = run(Crashes, capsys)
    assert "it raised RuntimeError" in out and "at line" in out


def test_wrong_shape_and_wrong_type_are_explained(capsys):
    class KeepsHeads(Solution):
        def output(self, merged):
            return self.split_heads(self.out_proj(merged))

    class OutputAlone(Solution):
        def forward(self, query, key=None, value=None, mask=None, need_weights=False):
            return super().forward(query, key, value, mask, need_weights)[0]

    out = run(KeepsHeads, capsys)
    assert "expected: shape (2, 6, 32)\n      actual:   shape (2, 4, 6, 8)" in out
    out = run(OutputAlone, capsys)
    assert "actual:   Tensor" in out and "forward returns two things" in out


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
