"""Lesson 14's checkers: sft_batch and LoRALinear. Each accepts the reviewed
answer and other right ways of writing it, names each classic slip, and
survives whatever a learner's code does. Every wrong version below is
written the way a learner would write it, independently of the checker's
own list."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from course_utils import chat, lora
from course_utils.classroom.checks import adaptation
from course_utils.classroom.checks.adaptation import (FLOAT32_ONLY, LORA_SLIPS, SFT_SLIPS, check_lora_linear,
                                                      check_sft_batch)
from course_utils.classroom.pytest_plugin import Watched, graded_report

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it

SFT_CHECKS = 16  # 4 batches: the inputs left as they were, and each of the 3 tensors


def run(checker, answer, capsys) -> str:
    checker(answer)
    return capsys.readouterr().out


def notebook_side(request) -> bool:
    return request.node.callspec.params["both_sides"] == "in the notebook"


def hints(out: str) -> str:
    return "\n".join(line for line in out.splitlines() if "hint:" in line)


# --- 14.sft_batch ---------------------------------------------------------------------

def sft_batch(prompts, responses, end_id, pad_id, slip=None):
    """A learner's sft_batch, row by row in plain lists, with switches for the classic slips."""
    ignore = {"ignore_pad": pad_id, "ignore_zero": 0}.get(slip, -100)
    rows = []
    for prompt, response in zip(prompts, responses):
        if slip == "inputs_changed":
            response.append(end_id)
            answer = response
        elif slip == "no_end":
            answer = list(response)
        else:
            answer = response + [end_id]
        ids = prompt + answer
        if slip == "prompt_in_loss":
            labels = list(ids)
        elif slip == "shifted":  # the next token as each position's label
            labels = [ignore] * (len(prompt) - 1) + answer + [ignore]
        elif slip == "end_ignored":
            labels = [ignore] * len(prompt) + answer[:-1] + [ignore]
        else:
            labels = [ignore] * len(prompt) + answer
        mask = [0] * len(prompt) + [1] * len(answer) if slip == "mask_response" else [1] * len(ids)
        rows.append((ids, mask, labels))
    longest = max(len(ids) for ids, _, _ in rows)
    input_ids, attention_mask, all_labels = [], [], []
    for ids, mask, labels in rows:
        missing = longest - len(ids)
        pad = 0 if slip == "pad_zero" else pad_id
        label_pad = pad_id if slip == "padding_labelled" else ignore
        if slip == "left_padded":
            input_ids.append([pad] * missing + ids)
            attention_mask.append([0] * missing + mask)
            all_labels.append([label_pad] * missing + labels)
        else:
            input_ids.append(ids + [pad] * missing)
            attention_mask.append(mask + [0] * missing)
            all_labels.append(labels + [label_pad] * missing)
    input_ids = torch.tensor(input_ids)
    if slip == "mask_all_ones":
        attention_mask = torch.ones_like(input_ids)
    elif slip == "mask_from_ids":
        attention_mask = (input_ids != pad_id).long()
    elif slip == "mask_inverted":
        attention_mask = 1 - torch.tensor(attention_mask)
    else:
        attention_mask = torch.tensor(attention_mask)
    labels = torch.tensor(all_labels)
    if slip == "mask_bool":
        attention_mask = attention_mask.bool()
    elif slip == "mask_float":
        attention_mask = attention_mask.float()
    elif slip == "labels_int32":
        labels = labels.int()
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def by_pad_sequence(prompts, responses, end_id, pad_id):
    """Another right answer: tensors per row, padded by PyTorch's pad_sequence."""
    ids = [torch.tensor(prompt + response + [end_id]) for prompt, response in zip(prompts, responses)]
    labels = [torch.tensor([-100] * len(prompt) + response + [end_id]) for prompt, response in zip(prompts, responses)]
    return {"input_ids": pad_sequence(ids, batch_first=True, padding_value=pad_id),
            "attention_mask": pad_sequence([torch.ones_like(row) for row in ids], batch_first=True),
            "labels": pad_sequence(labels, batch_first=True, padding_value=-100)}


def by_filling(prompts, responses, end_id, pad_id):
    """Another right answer: tensors filled first, then written row by row."""
    lengths = [len(prompt) + len(response) + 1 for prompt, response in zip(prompts, responses)]
    input_ids = torch.full((len(lengths), max(lengths)), pad_id)
    labels = torch.full_like(input_ids, -100)
    attention_mask = torch.zeros_like(input_ids)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        input_ids[row, :lengths[row]] = torch.tensor([*prompt, *response, end_id])
        labels[row, len(prompt):lengths[row]] = torch.tensor([*response, end_id])
        attention_mask[row, :lengths[row]] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def test_sft_batch_reviewed_and_a_learner_s_pass_and_are_recorded(capsys, progress_file):
    out = run(check_sft_batch, chat.sft_batch, capsys)
    assert f"All {SFT_CHECKS} checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("14.sft_batch", 1, 1)
    assert f"All {SFT_CHECKS} checks passed" in run(check_sft_batch, sft_batch, capsys)


@pytest.mark.parametrize("answer", [by_pad_sequence, by_filling], ids=lambda answer: answer.__name__)
def test_other_right_ways_of_building_the_batch_pass(answer, capsys):
    assert f"All {SFT_CHECKS} checks passed" in run(check_sft_batch, answer, capsys)


@pytest.mark.parametrize("slip", ["prompt_in_loss", "shifted", "end_ignored", "no_end", "padding_labelled",
                                  "left_padded", "pad_zero", "mask_all_ones", "mask_inverted", "mask_from_ids",
                                  "mask_response", "ignore_pad", "ignore_zero"])
def test_each_sft_batch_slip_is_named(slip, capsys, progress_file):
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: sft_batch(p, r, end_id, pad_id, slip), capsys)
    assert f"is exactly what this slip gives: {SFT_SLIPS[slip]}" in out and "✗" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


@pytest.mark.parametrize("slip, failing", [
    ("mask_bool", "attention_mask: 1 on every token"), ("mask_float", "attention_mask: 1 on every token"),
    ("labels_int32", "labels: -100 on the prompt"),
])
def test_a_tensor_in_another_dtype_is_named(slip, failing, capsys):
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: sft_batch(p, r, end_id, pad_id, slip), capsys)
    assert f"{failing}" in out and SFT_SLIPS["dtype"] in out and "expected: torch.int64" in out, out
    assert out.count("\n✗ ") == 4, out  # the one tensor, in each batch


def test_the_mask_read_from_the_ids_fails_only_where_the_pad_id_is_a_token(capsys):
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: sft_batch(p, r, end_id, pad_id, "mask_from_ids"), capsys)
    assert out.count("\n✗ ") == 1 and "✗ 2 rows in which the pad id 0 is also an ordinary token" in out, out


def test_appending_the_end_token_to_the_caller_s_response_is_named(capsys, progress_file):
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: sft_batch(p, r, end_id, pad_id, "inputs_changed"), capsys)
    assert "✗ one row (a prompt of 6 ids, a response of 4), end 3, pad 0: prompts and responses left as they were" in out
    assert SFT_SLIPS["inputs_changed"] in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_sft_batch_that_returns_no_dict_or_lists_is_explained(capsys):
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: tuple(sft_batch(p, r, end_id, pad_id).values()), capsys)
    assert "✗ one row" in out and "returns a dict of input_ids, attention_mask and labels" in out, out
    out = run(check_sft_batch, lambda p, r, end_id, pad_id: {key: value.tolist() for key, value in
                                                              sft_batch(p, r, end_id, pad_id).items()}, capsys)
    assert "return each of the three as a tensor" in out and "actual:   list" in out, out


def test_sft_batch_hints_give_no_code(capsys):
    for slip in ("prompt_in_loss", "shifted", "no_end", "left_padded", "mask_from_ids", "ignore_pad", "inputs_changed",
                 "mask_float"):
        out = run(check_sft_batch, lambda p, r, end_id, pad_id: sft_batch(p, r, end_id, pad_id, slip), capsys)
        found = hints(out)
        assert found and not any(code in found for code in (".append(", "torch.", "pad_sequence", "= -100", "[end_id]",
                                                             "ignore_index=", ".long()", "dtype=")), out


# --- 14.lora_linear -------------------------------------------------------------------

class LoRA(nn.Module):
    """A learner's LoRALinear."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        for parameter in self.base.parameters():
            parameter.requires_grad = False
        self.lora_A = nn.Parameter(0.01 * torch.randn(rank, base.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        self.scale = alpha / rank

    def update(self, x):
        return x @ self.lora_A.T @ self.lora_B.T

    def forward(self, x):
        return self.base(x) + self.scale * self.update(x)


class Merged(LoRA):
    """Another right answer: one F.linear with the weight W + (alpha / rank) B A."""

    def forward(self, x):
        return F.linear(x, self.base.weight + self.scale * self.lora_B @ self.lora_A, self.base.bias)


class TwoLinears(nn.Module):
    """Another right answer: A and B applied by F.linear, the scale last, the base frozen with requires_grad_."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, dtype=base.weight.dtype))
        nn.init.normal_(self.lora_A, std=1 / rank)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))

    def forward(self, x):
        return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * (self.alpha / self.rank)


# --- one wrong class per classic slip ------------------------------------------------------

class BothRandom(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_B = nn.Parameter(0.01 * torch.randn(base.out_features, rank, dtype=base.weight.dtype))


class BothZero(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(torch.zeros(rank, base.in_features, dtype=base.weight.dtype))


class RandnA(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features, dtype=base.weight.dtype))


class ConstantA(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(torch.full((rank, base.in_features), 0.01, dtype=base.weight.dtype))


class NoScale(LoRA):
    def forward(self, x):
        return self.base(x) + self.update(x)


class ScaledByAlpha(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.scale = alpha


class ScaledByRankOverAlpha(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.scale = rank / alpha


class TrainableBase(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.base.requires_grad_(True)


class TrainableBias(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        if self.base.bias is not None:
            self.base.bias.requires_grad = True


class Transposed(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(0.01 * torch.randn(base.in_features, rank, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(rank, base.out_features, dtype=base.weight.dtype))

    def update(self, x):
        return x @ self.lora_A @ self.lora_B


class Swapped(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(0.01 * torch.randn(rank, base.in_features, dtype=base.weight.dtype))

    def update(self, x):
        return x @ self.lora_B.T @ self.lora_A.T


class Reinitialised(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                                   dtype=base.weight.dtype), rank, alpha)


class BiasNotCopied(LoRA):
    """The weight copied into a new layer, the bias left as the new layer drew it."""

    def __init__(self, base, rank, alpha):
        layer = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, dtype=base.weight.dtype)
        layer.weight.data = base.weight.data.clone()
        super().__init__(layer, rank, alpha)


class UpdateTwice(LoRA):
    def forward(self, x):
        out = self.base(x) + self.scale * self.update(x)
        out = out + self.scale * self.update(x)
        return out


class NoBase(LoRA):
    def forward(self, x):
        return self.scale * self.update(x)


class BaseTwice(LoRA):
    def forward(self, x):
        out = self.base(x)
        return out + self.base(x) + self.scale * self.update(x)


class Detached(LoRA):
    def update(self, x):
        return x @ self.lora_A.detach().T @ self.lora_B.detach().T


class FrozenFactors(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A.requires_grad_(False)
        self.lora_B.requires_grad_(False)


class PlainTensors(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        A, B = self.lora_A.detach().clone(), self.lora_B.detach().clone()
        del self.lora_A, self.lora_B
        self.lora_A, self.lora_B = A, B


class Float32Factors(LoRA):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        self.lora_A = nn.Parameter(0.01 * torch.randn(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x):
        return self.base(x) + self.scale * (x.float() @ self.lora_A.T @ self.lora_B.T)


def test_lora_linear_reviewed_and_a_learner_s_pass_and_are_recorded(capsys, progress_file, request):
    out = run(check_lora_linear, lora.LoRALinear, capsys)
    assert "All 25 checks passed" in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("14.lora_linear", 1, 1)
    assert "All 25 checks passed" in run(check_lora_linear, LoRA, capsys)


@pytest.mark.parametrize("cls", [Merged, TwoLinears])
def test_other_right_ways_of_writing_the_layer_pass(cls, capsys):
    out = run(check_lora_linear, cls, capsys)
    assert "✗" not in out and "checks passed: well done" in out, out


@pytest.mark.parametrize("cls, slip, failing", [
    (BothRandom, "both_random", ["at the start lora_B is zero and lora_A is not", "a new layer gives the base"]),
    (BothZero, "both_zero", ["at the start lora_B is zero and lora_A is not"]),
    (RandnA, "a_too_large", ["lora_A random, of the size peft starts it at"]),
    (ConstantA, "a_constant", ["lora_A random, of the size peft starts it at"]),
    (Swapped, "swapped", ["lora_A (4, 12) and lora_B (20, 4)"]),
    (Transposed, "transposed", ["lora_A (4, 12) and lora_B (20, 4)"]),
    (NoScale, "no_scale", ["with A and B set"]),
    (ScaledByAlpha, "alpha_only", ["with A and B set"]),
    (ScaledByRankOverAlpha, "rank_over_alpha", ["with A and B set"]),
    (UpdateTwice, "update_twice", ["with A and B set"]),
    (NoBase, "no_base", ["a new layer gives the base layer's output", "with A and B set"]),
    (BaseTwice, "base_twice", ["a new layer gives the base layer's output", "with A and B set"]),
    (Reinitialised, "base_changed", ["self.base is the layer given, its weight and bias as they were"]),
    (BiasNotCopied, "base_changed", ["self.base is the layer given, its weight and bias as they were"]),
])
def test_each_lora_slip_is_named(cls, slip, failing, capsys, progress_file):
    out = run(check_lora_linear, cls, capsys)
    assert LORA_SLIPS[slip] in out, out
    for line in failing:
        assert f"✗ nn.Linear(12, 20), rank 4, alpha 6, 5 vectors: {line}" in out, out
    assert "checks passed; fix the first ✗" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_the_scale_slips_are_told_apart_where_alpha_over_rank_differs(capsys):
    """With rank 1, alpha / rank is alpha: only the other two layers show that slip."""
    out = run(check_lora_linear, ScaledByAlpha, capsys)
    assert out.count(LORA_SLIPS["alpha_only"]) == 2 and "✓ float64 nn.Linear(9, 16), rank 1, alpha 0.25, sequences " \
                                                            "(3, 2, 9): with A and B set" in out, out
    for cls, slip in [(NoScale, "no_scale"), (ScaledByRankOverAlpha, "rank_over_alpha")]:
        assert run(check_lora_linear, cls, capsys).count(LORA_SLIPS[slip]) == 3


@pytest.mark.parametrize("cls, slip", [(TrainableBase, "trainable_base"), (TrainableBias, "trainable_base"),
                                       (FrozenFactors, "not_trained"), (Detached, "not_trained")])
def test_what_only_requires_grad_shows_is_named_in_the_notebook_and_graded(cls, slip, capsys):
    """Graded, the sandbox reports requires_grad and the gradients (remote.parameter_gradients)."""
    out = run(check_lora_linear, cls, capsys)
    assert LORA_SLIPS[slip] in out and "✗ nn.Linear(12, 20), rank 4, alpha 6, 5 vectors" in out, out


def test_plain_tensors_and_factors_in_another_dtype_are_caught(capsys):
    out = run(check_lora_linear, PlainTensors, capsys)
    assert "✗ nn.Linear(12, 20), rank 4, alpha 6, 5 vectors: lora_A (4, 12)" in out and "not a parameter" in out, out
    out = run(check_lora_linear, Float32Factors, capsys)
    assert "✓ nn.Linear(12, 20)" in out and "✗ float64 nn.Linear(9, 16), rank 1, alpha 0.25, sequences (3, 2, 9): " \
                                            "lora_A (1, 9) and lora_B (16, 1), parameters in the layer's dtype" in out, out
    assert f"hint:     {FLOAT32_ONLY}" in out, out


def test_lora_linear_that_is_no_module_or_misses_its_parts_is_explained(capsys):
    assert "✗ your answer is a class derived from nn.Module" in run(check_lora_linear, lambda base, r, a: None, capsys)

    class NoBaseKept(LoRA):
        def __init__(self, base, rank, alpha):
            super().__init__(base, rank, alpha)
            self.weight = self.base.weight
            del self.base

        def forward(self, x):
            return F.linear(x, self.weight) + self.scale * self.update(x)

    out = run(check_lora_linear, NoBaseKept, capsys)
    assert "✗ nn.Linear(12, 20), rank 4, alpha 6, 5 vectors: self.base is the layer given" in out, out

    class OtherNames(LoRA):
        def __init__(self, base, rank, alpha):
            super().__init__(base, rank, alpha)
            self.A, self.B = self.lora_A, self.lora_B
            del self.lora_A, self.lora_B

    out = run(check_lora_linear, OtherNames, capsys)
    assert "expected: self.lora_A and self.lora_B, two tensors" in out, out


def test_lora_linear_hints_give_no_code(capsys):
    for cls in (BothRandom, BothZero, Transposed, NoScale, ScaledByAlpha, UpdateTwice, Reinitialised):
        out = run(check_lora_linear, cls, capsys)
        found = hints(out)
        assert found and not any(code in found for code in ("torch.", "nn.Parameter(", "requires_grad_(", "zeros(",
                                                             "@", ".T", "F.linear", "self.scale", "= alpha")), out


def test_partly_written_shows_the_parts_that_pass(capsys, progress_file):
    class InitOnly(LoRA):
        def forward(self, x):
            raise NotImplementedError

    out = run(check_lora_linear, InitOnly, capsys)
    assert "not attempted yet" not in out and "✗ the rest of the exercise" in out, out
    assert "✓ nn.Linear(12, 20), rank 4, alpha 6, 5 vectors: at the start lora_B is zero and lora_A is not" in out, out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_a_crash_in_the_layer_is_reported_not_raised(capsys):
    class Crashes(LoRA):
        def forward(self, x):
            return self.base(x) + x @ self.lora_B  # shapes do not match

    out = run(check_lora_linear, Crashes, capsys)
    assert "it raised RuntimeError" in out and "at line" in out, out


def test_the_checker_leaves_the_random_state_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    run(check_lora_linear, LoRA, capsys)
    torch.testing.assert_close(torch.rand(3), expected)


# --- both exercises -----------------------------------------------------------------------

def sft_stub(prompts, responses, end_id, pad_id):
    raise NotImplementedError


class LoRAStub(nn.Module):
    """The exercise as handed out: __init__ and forward to write."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError


@pytest.mark.parametrize("checker, stub", [(check_sft_batch, sft_stub), (check_lora_linear, LoRAStub)],
                         ids=["sft_batch", "lora_linear"])
def test_a_stub_reads_as_not_attempted(checker, stub, capsys, progress_file):
    out = run(checker, stub, capsys)
    assert "not attempted yet" in out and "✗" not in out, out
    assert not progress_file.exists()


def test_a_crash_and_a_non_function_are_reported(capsys):
    assert "it raised ZeroDivisionError" in run(check_sft_batch, lambda *args: 1 / 0, capsys)
    assert "your answer is a function" in run(check_sft_batch, 42, capsys)


class SubclassOfTheCourse(lora.LoRALinear):
    """A learner who builds on the course's own layer."""


@pytest.mark.parametrize("checker, answer, piece", [
    (adaptation.check_sft_batch, chat.sft_batch, "chat.sft_batch"),
    (adaptation.check_sft_batch, lambda p, r, end_id, pad_id: chat.sft_batch(p, r, end_id, pad_id), "chat.sft_batch"),
    (adaptation.check_lora_linear, SubclassOfTheCourse, "lora.LoRALinear"),
    (adaptation.check_lora_linear, lora.LoRALinear, "lora.LoRALinear"),
])
def test_graded_an_answer_that_runs_the_course_s_own_earns_nothing(checker, answer, piece, request):
    if notebook_side(request):
        pytest.skip("the grader's watch only")
    earned, report = graded_report(checker, answer)
    assert earned == 0 and f"your answer runs the course's own course_utils.{piece}" in report, report


def test_graded_a_learner_s_own_answers_earn_their_points(request):
    from course_utils.classroom.checks import judging

    if notebook_side(request):
        pytest.skip("the grader's watch only")
    session = Watched({"sft": by_pad_sequence, "lora": Merged})
    with judging(seed=3) as judged:
        adaptation.check_sft_batch(session.lookup("sft"))
        adaptation.check_lora_linear(session.lookup("lora"))
    assert [(item, earned) for item, earned, _, _ in judged] == [("14.sft_batch", 1), ("14.lora_linear", 1)], judged
