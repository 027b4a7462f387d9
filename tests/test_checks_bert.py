"""The checkers of lesson 08 (BERT's masking, ALBERT's sentence-order pairs)
accept the course's versions and other right ones, and name each classic
slip, each wrong version written as a learner would."""

import json
import random

import pytest
import torch

from course_utils.bert import IGNORE_INDEX, IS_NEXT, NOT_NEXT, mask_tokens, segment_at, sop_pair
from course_utils.classroom.checks.bert import check_mask_tokens, check_sop_pair

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it

MASKING_CHECKS, SOP_CHECKS = 24, 9


def run(checker, function, capsys):
    checker(function)
    return capsys.readouterr().out


# --- masking ------------------------------------------------------------------------

def masking(ids, special, mask_id, first_word_id, vocab_size, rate=0.15, generator=None, *, keep=0.1, random_share=0.1,
            low=None, high=None, labels_at=None, write_into_ids=False, own_generator=False, per_row=None,
            fixed_rate=None, float_labels=False, global_seed=False, ignore_device=False, default_device=False):
    """A right masking with one knob per slip; it draws on the generator's
    device and moves what it drew to the device of ids."""
    if global_seed:
        torch.manual_seed(0)
    draw = torch.Generator().manual_seed(torch.seed()) if own_generator else generator
    draw = None if global_seed else draw
    move = (lambda t: t) if ignore_device else (lambda t: t.to(ids.device))
    on = {} if default_device else {"device": draw.device if draw is not None else ids.device}
    rows = (ids.shape[0], 1)
    where_drawn = rows if per_row == "coin" else (1, ids.shape[1]) if per_row == "pattern" else ids.shape
    chosen = move(torch.rand(where_drawn, generator=draw, **on) < (fixed_rate or rate)) & ~special
    roll = move(torch.rand(rows if per_row == "fate" else ids.shape, generator=draw, **on)).expand(ids.shape)
    words = move(torch.randint(first_word_id if low is None else low, high or vocab_size, ids.shape, generator=draw,
                               **on))
    inputs = ids if write_into_ids else ids.clone()
    original = ids.clone()
    inputs = inputs.masked_fill_(chosen & (roll < 1 - keep - random_share), mask_id)
    replace = chosen & (roll >= 1 - keep - random_share) & (roll < 1 - keep)
    inputs = torch.where(replace, words, inputs)
    where = {"chosen": chosen, "everywhere": torch.ones_like(chosen), "masked": inputs == mask_id}[labels_at or "chosen"]
    labels = torch.where(where, original, -100.0 if float_labels else IGNORE_INDEX)
    return inputs, labels


def fixed_count_masking(ids, special, mask_id, first_word_id, vocab_size, rate=0.15, generator=None):
    """BERT's own data script: a fixed number of positions per row (rate of
    its allowed ones, rounded), chosen at random; each chosen position then
    draws its fate. Right, though its rows vary less than coins do."""
    on = generator.device
    scores = torch.rand(ids.shape, generator=generator, device=on).to(ids.device).masked_fill(special, 2.0)
    count = ((~special).sum(dim=1, keepdim=True) * rate).round().long()
    ranks = scores.argsort(dim=1).argsort(dim=1)
    chosen = ranks < count
    roll = torch.rand(ids.shape, generator=generator, device=on).to(ids.device)
    words = torch.randint(first_word_id, vocab_size, ids.shape, generator=generator, device=on).to(ids.device)
    inputs = torch.where(chosen & (roll < 0.8), mask_id, ids)
    inputs = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), words, inputs)
    return inputs, torch.where(chosen, ids, IGNORE_INDEX)


def test_the_course_masking_passes_and_is_recorded(capsys, progress_file):
    out = run(check_mask_tokens, mask_tokens, capsys)
    assert f"All {MASKING_CHECKS} checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("08.mask_tokens", 2, 2)


@pytest.mark.parametrize("right", [masking, fixed_count_masking])
def test_other_right_maskings_pass(right, capsys):
    assert f"All {MASKING_CHECKS} checks passed" in run(check_mask_tokens, right, capsys)


@pytest.mark.parametrize("slip, named", [
    (dict(keep=0.0, random_share=0.0), "every chosen position became [MASK]"),
    (dict(keep=0.1, random_share=0.8), "swapped"),
    (dict(labels_at="everywhere"), "a label at every position"),
    (dict(labels_at="masked"), "the 10% replaced by a random word are chosen positions too"),
    (dict(low=0), "special tokens are not words"),
    (dict(write_into_ids=True), "build the inputs in a new tensor"),
    (dict(own_generator=True), "pass `generator` to every random draw"),
    (dict(per_row="coin"), "✗ each row's positions are chosen one by one"),
    (dict(per_row="fate"), "✗ each chosen position draws its own fate"),
    (dict(per_row="pattern"), "every row was chosen at the same positions"),
    (dict(fixed_rate=0.15), "✗ the `rate` argument is honoured"),
    (dict(high=1000), "✗ random words stay inside the vocabulary given"),
    (dict(high=-1), "✗ random words reach both ends of the vocabulary"),
    (dict(float_labels=True), "✗ labels are int64"),
    (dict(global_seed=True), "✗ another generator seed gives another masking"),
    (dict(ignore_device=True), "✗ results land on the device of ids"),
    (dict(default_device=True), "✗ new tensors follow the devices given, not the default device"),
])
def test_masking_slips_are_named(slip, named, capsys):
    def slipped(ids, special, mask_id, first_word_id, vocab_size, rate, generator):
        knobs = dict(slip)
        if knobs.get("high") == -1:  # one short of the top: vocab_size - 1 is never drawn
            knobs["high"] = vocab_size - 1
        return masking(ids, special, mask_id, first_word_id, vocab_size, rate, generator, **knobs)

    out = run(check_mask_tokens, slipped, capsys)
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


# --- sentence-order pairs ----------------------------------------------------------------

def ordering(play_speeches, start, rng, words=12, *, coin=0.5, labels=(IS_NEXT, NOT_NEXT), next_at=None,
             negative=None, global_random=False, as_bool=False, by_start=False, mutate=False):
    """A right sentence-order pair with one knob per slip."""
    draw = random.Random() if global_random else rng
    a, after = segment_at(play_speeches, start, words)
    b = segment_at(play_speeches, start + 1 if next_at == "start + 1" else after, words)[0]
    if mutate:
        play_speeches.reverse()  # "reads" the play backwards, and leaves it so
        play_speeches.reverse()
        play_speeches.append("an extra speech")
    keep = start % 2 == 0 if by_start else draw.random() < coin
    if keep:
        return a, b, False if as_bool else labels[0]
    if negative == "elsewhere":  # NSP's negative: A, then a segment from far away
        return a, segment_at(play_speeches, (after + 20) % (len(play_speeches) - 2 * words), words)[0], labels[1]
    return b, a, True if as_bool else labels[1]


def test_the_course_ordering_passes_and_is_recorded(capsys, progress_file):
    out = run(check_sop_pair, sop_pair, capsys)
    assert f"All {SOP_CHECKS} checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("08.sop_pair", 2, 2)


def test_another_right_ordering_passes(capsys):
    assert f"All {SOP_CHECKS} checks passed" in run(check_sop_pair, ordering, capsys)


@pytest.mark.parametrize("slip, named", [
    (dict(labels=(NOT_NEXT, IS_NEXT)), "the labels are swapped"),
    (dict(coin=0.15), "✗ half the pairs are swapped"),
    (dict(next_at="start + 1"), "A may hold several speeches"),
    (dict(negative="elsewhere"), "keep A and its continuation"),
    (dict(global_random=True), "✗ the same rng seed gives the same pair"),
    (dict(as_bool=True), "✗ a label is an int, not a bool"),
    (dict(by_start=True), "✗ every start gets its own coin"),
    (dict(mutate=True), "✗ the speeches are left as they were"),
])
def test_ordering_slips_are_named(slip, named, capsys):
    out = run(check_sop_pair, lambda *args, **kwargs: ordering(*args, **kwargs, **slip), capsys)
    assert "✗" in out and named in out


def test_an_ordering_that_returns_a_list_is_told_the_shape(capsys):
    out = run(check_sop_pair, lambda *args, **kwargs: list(ordering(*args, **kwargs)), capsys)
    assert "✗ returns (first, second, label)" in out
