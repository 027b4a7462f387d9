"""The lesson 07 checkers (greedy decoding, the teacher-forcing loss) accept
right versions and name each classic slip, each wrong version written as a
learner would."""

import json

import pytest
import torch
import torch.nn.functional as F

from course_utils import seq2seq
from course_utils.classroom.checks.seq2seq import check_greedy_decode, check_teacher_forcing_loss
from course_utils.seq2seq import BOS, EOS, PAD

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def decoded(slip=None):
    """A learner's greedy decoding, right, or with one slip."""
    def greedy_decode(model, source, max_new_tokens):
        with torch.no_grad():
            memory, memory_mask = model.encode(source)
            written = torch.full((len(source), 1), PAD if slip == "pad start" else BOS, dtype=torch.long)
            done = torch.zeros(len(source), dtype=torch.bool)
            for _ in range(max_new_tokens):
                if slip == "re-encode":
                    memory, memory_mask = model.encode(source)
                reads = written[:, -1:] if slip == "last only" else written
                logits, _ = model.decode(reads, memory, None if slip == "no mask" else memory_mask)
                token = {"first": lambda: logits[:, 0].argmax(-1), "dim": lambda: logits.argmax(dim=1)[:, -1]}.get(
                    slip, lambda: logits[:, -1].argmax(dim=-1))()
                if slip != "no pad":
                    token = token.masked_fill(done, EOS if slip == "eos fill" else PAD)
                written = torch.cat([written, token[:, None]], dim=1)
                done |= token == EOS
                if done.all() and slip != "no stop":
                    break
            out = written[:, 1:] if slip == "no bos" else written
            return out.float() if slip == "float" else out
    return greedy_decode


def run_greedy(function, capsys):
    check_greedy_decode(function)
    return capsys.readouterr().out


def test_greedy_right_answer_passes_and_is_recorded(capsys, progress_file):
    out = run_greedy(decoded(), capsys)
    assert "checks passed: well done" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"]) == ("07.greedy_decode", 1)


def test_the_course_s_greedy_decode_passes_its_checks_in_the_notebook(capsys):
    """(When graded, running the course's own version earns nothing: see test_grading.)"""
    check_greedy_decode(lambda model, source, n: seq2seq.greedy_decode(model, source, n))
    out = capsys.readouterr().out
    assert "the tokens" in out


def test_re_encoding_at_every_step_passes(capsys):
    assert "checks passed: well done" in run_greedy(decoded("re-encode"), capsys)


@pytest.mark.parametrize("slip, named", [
    ("no stop", "after every row has already produced <eos>"),
    ("no pad", "a finished row not padded"),
    ("eos fill", "a finished row not padded"),
    ("first", "the first position's logits"),
    ("dim", "the argmax over the positions"),
    ("last only", "only the last token written"),
    ("no bos", "leaves out the leading <bos>"),
    ("pad start", "started from <pad>"),
    ("no mask", "padding left unmasked"),
])
def test_greedy_slips_are_named(slip, named, capsys):
    out = run_greedy(decoded(slip), capsys)
    assert "✗" in out and named in out


def test_greedy_float_ids_are_refused(capsys):
    out = run_greedy(decoded("float"), capsys)
    assert "✗" in out and "LongTensor" in out


def test_greedy_writing_into_the_source_is_named(capsys):
    def writes(model, source, max_new_tokens):
        out = decoded()(model, source, max_new_tokens)
        source[source == PAD] = EOS
        return out

    assert "the source left as it was" in run_greedy(writes, capsys)


def test_greedy_stub_is_not_attempted(capsys, progress_file):
    def greedy_decode(model, source, max_new_tokens):
        raise NotImplementedError

    out = run_greedy(greedy_decode, capsys)
    assert "07.greedy_decode: not attempted yet" in out and not progress_file.exists()


def test_greedy_cases_hold_rows_that_end_at_different_steps_for_several_seeds():
    from course_utils.classroom import checks
    from course_utils.classroom.checks import seq2seq as checker

    for seed in (0, 1, 2, 977):
        with checks.judging(seed):
            model, cases = checker._greedy_cases()
        (_, varied, long_run), (_, cut, short_run), _ = cases
        ends = checker._end_steps(seq2seq.greedy_decode(model, varied, long_run))
        assert None not in ends and len(set(ends)) == len(ends) >= 4
        assert (varied == PAD).any()  # padded sources
        cut_ends = checker._end_steps(seq2seq.greedy_decode(model, cut, short_run))
        assert cut_ends[0] is not None and cut_ends[0] <= 2 and all(end is None for end in cut_ends[1:])


def lossed(slip=None):
    """A learner's teacher-forcing loss, right, or with one slip."""
    def teacher_forcing_loss(model, batch, label_smoothing=0.0):
        source, target = batch
        reads, labels = target[:, :-1], target[:, 1:]
        if slip == "unshifted":
            labels = target[:, :-1]
        if slip == "whole":
            reads, labels = target, target
        logits = model(source, reads)
        flat, wanted = logits.reshape(-1, logits.size(-1)), labels.reshape(-1)
        if slip == "no ignore":
            return F.cross_entropy(flat, wanted, label_smoothing=label_smoothing)
        if slip == "sum":
            return F.cross_entropy(flat, wanted, ignore_index=PAD, label_smoothing=label_smoothing, reduction="sum")
        if slip == "twice":
            real = wanted != PAD
            smoothed = F.one_hot(wanted[real], flat.size(-1)) * (1 - label_smoothing) + label_smoothing / flat.size(-1)
            return F.cross_entropy(flat[real], smoothed.float(), label_smoothing=label_smoothing)
        if slip == "item":
            return torch.tensor(F.cross_entropy(flat, wanted, ignore_index=PAD, label_smoothing=label_smoothing).item())
        if slip == "float32":
            return F.cross_entropy(flat, wanted, ignore_index=PAD, label_smoothing=label_smoothing).float()
        return F.cross_entropy(flat, wanted, ignore_index=PAD, label_smoothing=0.0 if slip == "unsmoothed" else label_smoothing)
    return teacher_forcing_loss


def run_loss(function, capsys):
    check_teacher_forcing_loss(function)
    return capsys.readouterr().out


def test_loss_right_answer_passes_and_is_recorded(capsys, progress_file):
    out = run_loss(lossed(), capsys)
    assert "checks passed: well done" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"]) == ("07.teacher_forcing_loss", 1)


def test_smoothing_by_hand_passes(capsys):
    def by_hand(model, batch, label_smoothing=0.0):
        source, target = batch
        log_probs = model(source, target[:, :-1]).log_softmax(dim=-1)
        labels = target[:, 1:]
        per_token = -(1 - label_smoothing) * log_probs.gather(-1, labels[..., None])[..., 0] \
            - label_smoothing * log_probs.mean(dim=-1)
        real = labels != PAD
        return per_token[real].mean()

    assert "checks passed: well done" in run_loss(by_hand, capsys)


@pytest.mark.parametrize("slip, named", [
    ("unshifted", "labels not shifted"),
    ("whole", "the decoder reading the whole target"),
    ("no ignore", "<pad> labels scored"),
    ("sum", "the sum over positions"),
    ("twice", "label smoothing applied twice"),
    ("unsmoothed", "label_smoothing not applied"),
])
def test_loss_slips_are_named(slip, named, capsys):
    out = run_loss(lossed(slip), capsys)
    assert "✗" in out and named in out


def kl_loss(annotated: bool):
    """KL divergence from the smoothed target, PyTorch's even spread or The
    Annotated Transformer's (ε over the words neither right nor <pad>)."""
    def teacher_forcing_loss(model, batch, label_smoothing=0.0):
        source, target = batch
        log_probs = model(source, target[:, :-1]).log_softmax(dim=-1)
        labels, vocab = target[:, 1:], log_probs.size(-1)
        real = labels != PAD
        if annotated:
            wanted = torch.full(log_probs.shape, label_smoothing / (vocab - 2))
            wanted[..., PAD] = 0
            wanted.scatter_(-1, labels[..., None], 1 - label_smoothing)
        else:
            wanted = F.one_hot(labels, vocab) * (1 - label_smoothing) + label_smoothing / vocab
        return F.kl_div(log_probs[real], wanted[real].to(log_probs.dtype), reduction="sum") / real.sum()
    return teacher_forcing_loss


@pytest.mark.parametrize("annotated, named", [(False, "the KL divergence"), (True, "The Annotated Transformer's smoothing")])
def test_kl_divergence_and_the_annotated_transformer_s_smoothing_are_named(annotated, named, capsys):
    out = run_loss(kl_loss(annotated), capsys)
    assert "✗" in out and named in out, out


def test_a_loss_without_its_gradient_is_named_in_the_notebook(capsys, request):
    out = run_loss(lossed("item"), capsys)
    if request.node.callspec.params.get("both_sides") == "in the notebook":
        assert "carries its gradient" in out and "✗" in out


def test_a_float32_loss_from_a_float64_model_is_named(capsys):
    out = run_loss(lossed("float32"), capsys)
    assert "float64" in out and "✗" in out


def test_loss_stub_is_not_attempted(capsys, progress_file):
    def teacher_forcing_loss(model, batch, label_smoothing=0.0):
        raise NotImplementedError

    out = run_loss(teacher_forcing_loss, capsys)
    assert "07.teacher_forcing_loss: not attempted yet" in out and not progress_file.exists()
