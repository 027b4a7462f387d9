"""The checkers of lesson 08 (BERT's masking, next-sentence pairs) accept
the course's versions and another right one, and name each classic slip,
each wrong version written as a learner would."""

import json
import random

import pytest
import torch

from course_utils.bert import IGNORE_INDEX, IS_NEXT, NOT_NEXT, mask_tokens, nsp_pair, random_start, segment_at
from course_utils.classroom.checks.bert import check_mask_tokens, check_nsp_pair

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(checker, function, capsys):
    checker(function)
    return capsys.readouterr().out


# --- masking ------------------------------------------------------------------------

def masking(ids, special, mask_id, first_word_id, vocab_size, rate=0.15, generator=None, *, keep=0.1, random_share=0.1,
            low=None, labels_at=None, write_into_ids=False, own_generator=False):
    """A right masking with one knob per slip."""
    draw = torch.Generator().manual_seed(torch.seed()) if own_generator else generator
    chosen = (torch.rand(ids.shape, generator=draw) < rate) & ~special
    roll = torch.rand(ids.shape, generator=draw)
    words = torch.randint(first_word_id if low is None else low, vocab_size, ids.shape, generator=draw)
    inputs = ids if write_into_ids else ids.clone()
    original = ids.clone()
    inputs[chosen & (roll < 1 - keep - random_share)] = mask_id
    replace = chosen & (roll >= 1 - keep - random_share) & (roll < 1 - keep)
    inputs[replace] = words[replace]
    where = {"chosen": chosen, "everywhere": torch.ones_like(chosen), "masked": inputs == mask_id}[labels_at or "chosen"]
    labels = torch.where(where, original, IGNORE_INDEX)
    return inputs, labels


def test_the_course_masking_passes_and_is_recorded(capsys, progress_file):
    out = run(check_mask_tokens, mask_tokens, capsys)
    assert "All 13 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("08.mask_tokens", 2, 2)


def test_another_right_masking_passes(capsys):
    assert "All 13 checks passed" in run(check_mask_tokens, masking, capsys)


@pytest.mark.parametrize("slip, named", [
    (dict(keep=0.0, random_share=0.0), "every chosen position became [MASK]"),
    (dict(keep=0.1, random_share=0.8), "swapped"),
    (dict(labels_at="everywhere"), "a label at every position"),
    (dict(labels_at="masked"), "the 10% replaced by a random word are chosen positions too"),
    (dict(low=0), "special tokens are not words"),
    (dict(write_into_ids=True), "build the inputs in a new tensor"),
    (dict(own_generator=True), "pass `generator` to every random draw"),
])
def test_masking_slips_are_named(slip, named, capsys):
    out = run(check_mask_tokens, lambda *args: masking(*args, **slip), capsys)
    assert "✗" in out and named in out


def test_choosing_special_tokens_is_named(capsys):
    def ignores_special(ids, special, mask_id, first_word_id, vocab_size, rate, generator):
        return masking(ids, torch.zeros_like(special), mask_id, first_word_id, vocab_size, rate, generator)

    out = run(check_mask_tokens, ignores_special, capsys)
    assert "✗ no special token or padding is ever chosen" in out


def test_labels_holding_the_new_inputs_are_named(capsys):
    def new_labels(*args):
        inputs, labels = masking(*args)
        return inputs, torch.where(labels != IGNORE_INDEX, inputs, IGNORE_INDEX)

    out = run(check_mask_tokens, new_labels, capsys)
    assert "✗ a label is the original word" in out


def test_a_masking_stub_and_a_wrong_return_are_reported(capsys):
    def stub(*args):
        raise NotImplementedError

    assert "not attempted yet" in run(check_mask_tokens, stub, capsys)
    assert "✗ returns (inputs, labels)" in run(check_mask_tokens, lambda ids, *args: ids, capsys)


# --- next-sentence pairs ----------------------------------------------------------------

def pairing(speeches_by_play, play, start, rng, words=24, *, coin=0.5, labels=(IS_NEXT, NOT_NEXT), next_at=None,
            own_play_allowed=False, any_start=False, global_random=False):
    """A right next-sentence pair with one knob per slip."""
    draw = random.Random() if global_random else rng
    own = speeches_by_play[play]
    a, after = segment_at(own, start, words)
    if draw.random() < coin:
        return a, segment_at(own, start + 1 if next_at == "start + 1" else after, words)[0], labels[0]
    others = sorted(speeches_by_play) if own_play_allowed else sorted(name for name in speeches_by_play if name != play)
    source = speeches_by_play[draw.choice(others)]
    begin = draw.randrange(len(source)) if any_start else random_start(source, draw, words)
    return a, segment_at(source, begin, words)[0], labels[1]


def test_the_course_pairing_passes_and_is_recorded(capsys, progress_file):
    out = run(check_nsp_pair, nsp_pair, capsys)
    assert "All 8 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("08.nsp_pair", 2, 2)


def test_another_right_pairing_passes(capsys):
    assert "All 8 checks passed" in run(check_nsp_pair, pairing, capsys)


@pytest.mark.parametrize("slip, named", [
    (dict(labels=(NOT_NEXT, IS_NEXT)), "the labels are swapped"),
    (dict(coin=0.15), "one fair coin per pair"),
    (dict(next_at="start + 1"), "A may hold several speeches"),
    (dict(own_play_allowed=True), "choose among the plays other than `play`"),
    (dict(any_start=True), "start the negative with random_start"),
    (dict(global_random=True), "draw every random choice from `rng`"),
])
def test_pairing_slips_are_named(slip, named, capsys):
    out = run(check_nsp_pair, lambda *args, **kwargs: pairing(*args, **kwargs, **slip), capsys)
    assert "✗" in out and named in out


def test_a_pairing_that_returns_a_list_is_told_the_shape(capsys):
    out = run(check_nsp_pair, lambda *args, **kwargs: list(pairing(*args, **kwargs)), capsys)
    assert "✗ returns (a, b, label)" in out
