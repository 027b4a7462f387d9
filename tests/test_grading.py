"""`course grade` on a class of good and bad submissions made here."""

import csv

import jupytext
import nbformat
import pytest

from course_utils.classroom import cli, paths
from course_utils.classroom.lessons import find_lessons
from course_utils.classroom.scores import lesson_items
from course_utils.classroom.student import student_notebook

LESSON = find_lessons(["00"])[0]
ITEMS = lesson_items("00")  # 6 quiz questions and 1 exercise


def _reference():
    """The instructor's notebook (every answer right), as a learner hands it in:
    with the lesson number the release puts in its metadata."""
    notebook = jupytext.read(LESSON.source)
    notebook.metadata["course"] = {"lesson": "00"}
    return notebook


def _cell_index(notebook, text):
    return next(i for i, cell in enumerate(notebook.cells) if text in cell.source)


def _with_cell(notebook, index, source):
    notebook.cells.insert(index, nbformat.v4.new_code_cell(source))
    return notebook


@pytest.fixture(scope="module")
def gradebook(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    (folder / "alice").mkdir()
    nbformat.write(_reference(), folder / "alice" / "00_setup.ipynb")  # full marks

    bob = student_notebook(LESSON)  # the release, half done: two answers, one wrong; exercise not attempted
    answers = bob.cells[_cell_index(bob, 'answer("00.offline"')]
    answers.source = answers.source.replace('answer("00.offline", None)', 'answer("00.offline", "A")')
    answers.source = answers.source.replace('answer("00.edit", None)', 'answer("00.edit", "A")')
    answers.source = answers.source.replace('answer("00.checker", None)', 'answer("00.checker", "maybe")')  # malformed
    answers.source = answers.source.replace('answer("00.first-cell", None)', 'answer("00.first-cell", "setup_notebook")')
    nbformat.write(bob, folder / "bob.ipynb")

    moved = _reference()  # cells moved about: the exercise and its checker last, after the quiz
    for text in ("def count_words(", "check_count_words(count_words, coverage)"):
        moved.cells.append(moved.cells.pop(_cell_index(moved, text)))
    nbformat.write(moved, folder / "carol.ipynb")

    deleted = _reference()  # the exercise's checker cell deleted
    del deleted.cells[_cell_index(deleted, "check_count_words(count_words, coverage)")]
    nbformat.write(deleted, folder / "dave.ipynb")

    crashing = _with_cell(_reference(), 3, "1 / 0")  # an exception, and a try at the network
    crashing = _with_cell(crashing, 4, "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)")
    nbformat.write(crashing, folder / "erin.ipynb")

    looping = _with_cell(_reference(), len(_reference().cells), "while True:\n    pass")  # never ends
    nbformat.write(looping, folder / "frank.ipynb")

    (folder / "gina.ipynb").write_text('{"cells": [ this is not JSON')

    other = _reference()
    other.metadata["course"] = {"lesson": "05"}
    nbformat.write(other, folder / "hal.ipynb")

    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    assert cli.main(["grade", str(folder), "--out", str(out), "--lesson", "0", "--time-limit", "40"]) == 0
    with out.open() as file:
        rows = {row["submission"]: row for row in csv.DictReader(file)}
    return rows, out


def test_one_row_per_submission_with_every_item(gradebook):
    rows, _ = gradebook
    assert set(rows) == {"alice/00_setup.ipynb", "bob.ipynb", "carol.ipynb", "dave.ipynb", "erin.ipynb",
                         "frank.ipynb", "gina.ipynb", "hal.ipynb"}
    assert set(ITEMS) <= set(next(iter(rows.values())))
    assert len(ITEMS) == 7


def test_the_reference_solution_gets_full_marks(gradebook):
    rows, _ = gradebook
    assert rows["alice/00_setup.ipynb"]["score"] == rows["alice/00_setup.ipynb"]["max"] == "7"
    assert rows["alice/00_setup.ipynb"]["status"] == "ok"


def test_a_half_done_release_notebook_gets_what_it_earned(gradebook):
    rows, _ = gradebook
    bob = rows["bob.ipynb"]
    assert (bob["00.offline"], bob["00.edit"], bob["00.count_words"], bob["score"]) == ("1", "0", "0", "2")
    assert bob["00.first-cell"] == "1", "a malformed answer earlier in the cell does not stop the next ones"
    assert "not answered or not run: " in bob["status"] and "00.count_words" in bob["status"]


def test_items_are_found_by_id_not_by_position(gradebook):
    assert gradebook[0]["carol.ipynb"]["score"] == "7"


def test_a_deleted_exercise_cell_costs_only_that_exercise(gradebook):
    dave = gradebook[0]["dave.ipynb"]
    assert dave["score"] == "6" and dave["00.count_words"] == "0" and "00.count_words" in dave["status"]


def test_errors_and_network_attempts_are_reported_and_the_rest_graded(gradebook):
    erin = gradebook[0]["erin.ipynb"]
    assert erin["score"] == "7"
    assert "cell 2 raised ZeroDivisionError: division by zero" in erin["status"]
    assert "cell 3 raised NetworkBlockedError: This course runs offline" in erin["status"]


def test_an_infinite_loop_times_out_and_keeps_what_ran(gradebook):
    frank = gradebook[0]["frank.ipynb"]
    assert "timed out after 40 s" in frank["status"] and frank["score"] == "7"


def test_invalid_json_and_another_lesson_are_reported_in_their_rows(gradebook):
    rows, _ = gradebook
    assert rows["gina.ipynb"]["status"].startswith("unreadable notebook (") and rows["gina.ipynb"]["score"] == "0"
    assert rows["gina.ipynb"]["max"] == "7" and rows["gina.ipynb"]["00.offline"] == "0"
    assert rows["hal.ipynb"]["status"] == "wrong lesson: this is lesson 05's notebook, lesson 00 was asked for"


def test_each_learner_gets_feedback_that_says_why_points_were_lost(gradebook):
    _, out = gradebook
    feedback = (out.parent / "grades-feedback" / "bob.txt").read_text()
    assert "Score: 2 / 7" in feedback and "✓ 00.offline" in feedback and "✗ 00.count_words" in feedback
    assert "✗ Not quite (0/1) · 00.edit" in feedback  # the answer's own feedback, under its item
    assert "⚠ 00.checker has options A, B, C; 'M', 'Y', 'E' is not one of them" in feedback
    assert "not attempted yet" in feedback
    assert (out.parent / "grades-feedback" / "alice__00_setup.txt").exists()


def test_regrading_replaces_the_feedback_folder(tmp_path):
    from course_utils.classroom.grading import grade_folder

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "x.ipynb").write_text("not json")
    (tmp_path / "grades-feedback").mkdir()
    (tmp_path / "grades-feedback" / "old-learner.txt").write_text("from last week")
    grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lesson="00", echo=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "grades-feedback").iterdir()) == ["x.txt"]
    assert paths.COURSE_ROOT.exists()
