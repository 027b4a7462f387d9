"""The lesson 11 checker passes the reference and another correct way of
writing it, names each classic slip of label alignment, and never crashes."""

import json

import pytest
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


def test_each_classic_slip_is_named(capsys):
    every_piece = lambda ids, labels: [IGNORE_INDEX if w is None else labels[w] for w in ids]
    assert "labelling every piece of a word" in run(every_piece, capsys)
    last_piece = lambda ids, labels: [IGNORE_INDEX if w is None or (i + 1 < len(ids) and ids[i + 1] == w)
                                      else labels[w] for i, w in enumerate(ids)]
    assert "the last piece of a word instead of the first" in run(last_piece, capsys)
    special_o = lambda ids, labels: [0 if w is None else label for w, label in zip(ids, token_labels(ids, labels))]
    assert "labelling the special tokens O (they are no word" in run(special_o, capsys)

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
