"""The lesson 11 checker passes the reference and another correct way of
writing it, names each classic slip of label alignment, and never crashes."""

import json

import pytest
import torch
from course_utils.classroom.checks.ner import check_token_labels
from course_utils.ner import IGNORE_INDEX, token_labels

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_token_labels(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(token_labels, capsys)
    assert "checks passed" in out and "✗" not in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("11.token_labels", 1, 1)


def test_a_comprehension_over_positions_passes(capsys):
    def by_position(word_ids, word_labels):
        return [IGNORE_INDEX if word is None or (i and word_ids[i - 1] == word) else word_labels[word]
                for i, word in enumerate(word_ids)]

    assert "✗" not in run(by_position, capsys)


def test_an_integer_tensor_passes_and_float_labels_fail_saying_so(capsys):
    assert "✗" not in run(lambda ids, labels: torch.tensor(token_labels(ids, labels)), capsys)
    floats = run(lambda ids, labels: [float(label) for label in token_labels(ids, labels)], capsys)
    assert "the labels are integers" in floats and "float labels" in floats and "refuses floating-point ids" in floats
    float_tensor = run(lambda ids, labels: torch.tensor(token_labels(ids, labels), dtype=torch.float32), capsys)
    assert "a torch.float32 tensor" in float_tensor
    nones = run(lambda ids, labels: [None if w is None else label for w, label in zip(ids, token_labels(ids, labels))],
                capsys)
    assert "-100, not None" in nones


def once_per_word_id(ids, labels):  # the slip that sentence pairs expose: a word id seen before is skipped
    seen, out = set(), []
    for w in ids:
        out.append(IGNORE_INDEX if w is None or w in seen else labels[w])
        seen.add(w)
    return out


def previous_kept_across_separators(ids, labels):  # the slip a one-word first text exposes
    previous, out = None, []
    for w in ids:
        if w is None:
            out.append(IGNORE_INDEX)
            continue
        out.append(IGNORE_INDEX if w == previous else labels[w])
        previous = w
    return out


def test_word_ids_that_start_again_after_a_separator_are_new_words(capsys):
    from transformers import AutoTokenizer

    from course_utils import data

    tokenizer = AutoTokenizer.from_pretrained(data.encoder_path())
    pair = tokenizer(["Good", "morrow"], ["Benvolio", "!"], is_split_into_words=True).word_ids()
    assert pair == [None, 0, 1, None, 0, 0, 0, 1, None]  # the lesson never encodes a pair: the checker does
    assert token_labels(pair, [0, 1]) == [IGNORE_INDEX, 0, 1, IGNORE_INDEX, 0, IGNORE_INDEX, IGNORE_INDEX, 1,
                                          IGNORE_INDEX]
    once = run(once_per_word_id, capsys)
    assert "a word whose id appeared earlier in the row" in once and "a sentence pair" in once
    kept = run(previous_kept_across_separators, capsys)
    assert "the last word id before [SEP]" in kept and "a word whose id appeared earlier" not in kept
    assert "14 of 15 checks passed" in kept  # it passes every case but the pair whose first text is one word


def test_an_unnamed_mistake_is_located_without_giving_the_code(capsys):
    out = run(lambda ids, labels: [1 if label == 0 else label for label in token_labels(ids, labels)], capsys)
    assert "token 1, the first token of word 0, should have label 0; yours has 1" in out
    assert "first token of word 1 after [SEP]" in out


def test_each_classic_slip_is_named(capsys):
    every_piece = lambda ids, labels: [IGNORE_INDEX if w is None else labels[w] for w in ids]
    assert "labelling every piece of a word" in run(every_piece, capsys)
    last_piece = lambda ids, labels: [IGNORE_INDEX if w is None or (i + 1 < len(ids) and ids[i + 1] == w)
                                      else labels[w] for i, w in enumerate(ids)]
    assert "the last piece of a word instead of the first" in run(last_piece, capsys)
    special_o = lambda ids, labels: [0 if w is None else label for w, label in zip(ids, token_labels(ids, labels))]
    assert "labelling the special tokens O (they are no word" in run(special_o, capsys)
    word_id = lambda ids, labels: [label if label == IGNORE_INDEX else ids[i]
                                   for i, label in enumerate(token_labels(ids, labels))]
    assert "its word id instead of the word's label" in run(word_id, capsys)

    def in_place(ids, labels):
        ids[0] = -1
        return token_labels([None] + ids[1:], labels)

    assert "changed word_ids or word_labels" in run(in_place, capsys)


def test_a_stub_a_crash_a_non_function_and_a_wrong_length_are_reported(capsys):
    def stub(word_ids, word_labels):
        raise NotImplementedError

    assert "not attempted" in run(stub, capsys).lower()
    assert "TypeError" in run(lambda ids, labels: labels[None], capsys)
    assert "a function" in run("token_labels", capsys)
    assert "one label per token" in run(lambda ids, labels: labels, capsys)
