"""`course grade` on a class of good and bad submissions made here: the
gradebook, the feedback and the statuses. Hostile submissions are in
test_sandbox.py."""

import csv

import jupytext
import nbformat
import pytest

from course_utils.classroom import cli, paths
from course_utils.classroom.lessons import all_lessons, find_lessons
from course_utils.classroom.scores import lesson_items
from course_utils.classroom.student import student_notebook

LESSON = find_lessons(["00"])[0]
ITEMS = lesson_items("00")  # 7 quiz questions and 2 exercises


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

    deleted = _reference()  # the exercise's cell deleted (its checker cell alone costs nothing: the grader checks)
    del deleted.cells[_cell_index(deleted, "def count_words(")]
    nbformat.write(deleted, folder / "dave.ipynb")

    crashing = _with_cell(_reference(), 3, "1 / 0")  # an exception, and a try at the network
    crashing = _with_cell(crashing, 4, "import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=2)")
    nbformat.write(crashing, folder / "erin.ipynb")

    looping = _with_cell(_reference(), len(_reference().cells), "while True:\n    pass")  # never ends
    nbformat.write(looping, folder / "frank.ipynb")
    stubborn = _with_cell(_reference(), len(_reference().cells),  # never ends, and swallows the interrupt
                          "while True:\n    try:\n        sum(range(10**6))\n    except KeyboardInterrupt:\n        pass")
    nbformat.write(stubborn, folder / "ivan.ipynb")

    (folder / "gina.ipynb").write_text('{"cells": [ this is not JSON')

    other = _reference()
    other.metadata["course"] = {"lesson": "05"}
    nbformat.write(other, folder / "hal.ipynb")

    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    assert cli.main(["grade", str(folder), "--out", str(out), "--lesson", "0", "--time-limit", "40", "--seed", "5"]) == 0
    with out.open() as file:
        rows = {row["learner"]: row for row in csv.DictReader(file)}
    return rows, out


def test_one_row_per_learner_with_every_item_in_lesson_order(gradebook):
    rows, out = gradebook
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin", "frank", "gina", "hal", "ivan"}
    header = out.read_text().splitlines()[0].split(",")
    assert header[:7] == ["learner", "total", "max", "00 score", "00 max", "00 status", "00 notebook"]
    assert header[7:-1] == list(ITEMS) and header[-1] == "notes" and len(ITEMS) == 9
    assert rows["alice"]["00 notebook"] == "alice/00_setup.ipynb"


def test_the_reference_solution_gets_full_marks(gradebook):
    alice = gradebook[0]["alice"]
    assert alice["total"] == alice["max"] == alice["00 score"] == "9"
    assert alice["00 status"] == "finished"


def test_a_half_done_release_notebook_gets_what_it_earned(gradebook):
    bob = gradebook[0]["bob"]
    assert (bob["00.offline"], bob["00.edit"], bob["00.count_words"], bob["total"]) == ("1", "0", "0", "2")
    assert bob["00.first-cell"] == "1", "a malformed answer earlier in the cell does not stop the next ones"
    assert bob["00 status"].startswith("finished; not answered or not run: ") and "00.count_words" in bob["00 status"]


def test_items_are_found_by_id_not_by_position(gradebook):
    assert gradebook[0]["carol"]["total"] == "9"


def test_a_deleted_exercise_cell_costs_only_that_exercise(gradebook):
    dave = gradebook[0]["dave"]
    assert dave["total"] == "7" and dave["00.count_words"] == dave["00.unseen_share"] == "0"
    assert "00.count_words" in dave["00 status"]


def test_errors_and_network_attempts_are_reported_by_jupyterlab_cell_number(gradebook):
    erin = gradebook[0]["erin"]
    assert erin["total"] == "9"
    assert "cell [2] raised ZeroDivisionError: division by zero" in erin["00 status"]
    assert "cell [3] raised NetworkBlockedError: This course runs offline" in erin["00 status"]


def test_an_infinite_loop_times_out_keeps_what_ran_and_says_which_cells(gradebook):
    frank = gradebook[0]["frank"]
    code_cells = sum(cell.cell_type == "code" and bool(cell.source.strip()) for cell in _reference().cells)
    assert frank["00 status"].startswith(f"timed out after 40 s (cells [1]-[{code_cells}] ran)")
    assert frank["total"] == "9"  # the loop was interrupted: what the cells before it defined is checked
    ivan = gradebook[0]["ivan"]  # his loop swallows the interrupt: the sandbox is killed, and cannot be asked
    assert ivan["00 status"].startswith(f"timed out after 40 s (cells [1]-[{code_cells}] ran)")
    assert ivan["total"] == "7"  # the quiz answers still count
    feedback = (gradebook[1].parent / "grades-feedback" / "ivan.txt").read_text()
    assert "not checked: the notebook did not finish (timed out" in feedback


def test_invalid_json_and_another_lesson_are_reported_in_their_rows(gradebook):
    rows, _ = gradebook
    assert rows["gina"]["00 status"].startswith("unreadable notebook (") and rows["gina"]["total"] == "0"
    assert rows["gina"]["max"] == "9" and rows["gina"]["00.offline"] == "0"
    assert rows["hal"]["00 status"] == "no submission" and rows["hal"]["max"] == "9"
    assert rows["hal"]["notes"] == "hal.ipynb: not assigned: this is lesson 05's notebook, and lesson 00 was asked for"


def test_each_notebook_gets_feedback_that_says_why_points_were_lost(gradebook):
    _, out = gradebook
    feedback = (out.parent / "grades-feedback" / "bob.txt").read_text()
    assert "Score: 2 / 9" in feedback and "✓ 00.offline" in feedback and "✗ 00.count_words" in feedback
    assert "✗ Not quite (0/1) · 00.edit" in feedback  # the grader's judgement, under its item
    assert "⚠ 00.checker has options A, B, C; 'M', 'Y', 'E' is not one of them" in feedback
    assert (out.parent / "grades-feedback" / "alice" / "00_setup.txt").exists()


def test_the_long_format_has_one_row_per_learner_lesson_and_item(gradebook, tmp_path):
    from course_utils.classroom.grading import Grade, write_gradebook

    grades = [Grade("bob.ipynb", "bob", "00", "finished", points=dict.fromkeys(ITEMS, 1.0), maximum=dict(ITEMS)),
              Grade("x/notes.ipynb", "x", "", "not a lesson of this course")]
    write_gradebook(tmp_path / "long.csv", grades, fmt="long", lessons=["00"])
    rows = list(csv.reader((tmp_path / "long.csv").open()))
    assert rows[0] == ["learner", "lesson", "item", "points", "max"]
    assert rows[1:] == [["bob", "00", item, "1", f"{full:g}"] for item, full in ITEMS.items()] + \
        [["x", "00", item, "0", f"{full:g}"] for item, full in ITEMS.items()], "x was assigned lesson 00: a true 0"
    write_gradebook(tmp_path / "long.csv", grades, fmt="long")
    rows = list(csv.reader((tmp_path / "long.csv").open()))
    assert rows[1:] == [["bob", "00", item, "1", f"{full:g}"] for item, full in ITEMS.items()], \
        "with no assignment, no 0 for a lesson x never handed in, which an LMS import would write over a grade"


def test_a_learner_with_two_notebooks_of_a_lesson_keeps_the_better_one(tmp_path):
    from course_utils.classroom.grading import Grade, gradebook_rows

    better = Grade("dan/00_setup.ipynb", "dan", "00", "finished", dict.fromkeys(ITEMS, 1.0), dict(ITEMS))
    worse = Grade("dan/00_copy.ipynb", "dan", "00", "finished", dict.fromkeys(ITEMS, 0.0), dict(ITEMS))
    header, row = gradebook_rows([worse, better])
    assert row[header.index("total")] == "9" and row[header.index("00 notebook")] == "dan/00_setup.ipynb"
    assert "dan/00_copy.ipynb: not counted, 0 points" in row[-1]


def test_regrading_replaces_the_feedback_folder(tmp_path):
    from course_utils.classroom.grading import grade_folder

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "x.ipynb").write_text("not json")
    (tmp_path / "grades-feedback" / "old").mkdir(parents=True)
    (tmp_path / "grades-feedback" / "old" / "learner.txt").write_text("from last week")
    grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lessons=["00"], echo=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "grades-feedback").iterdir()) == ["x.txt"]
    assert paths.COURSE_ROOT.exists()


def test_a_stale_partial_file_or_folder_beside_the_gradebook_changes_nothing(tmp_path):
    from course_utils.classroom.grading import grade_folder

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "x.ipynb").write_text("not json")
    (tmp_path / "grades.csv.partial").mkdir()
    grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lessons=["00"], echo=lambda _: None)
    assert (tmp_path / "grades.csv").read_text().startswith("learner,total,max")


def test_a_feedback_file_that_cannot_be_written_is_reported_in_its_row(tmp_path):
    from course_utils.classroom.grading import grade_folder

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "x.ipynb").write_text("not json")
    (tmp_path / "subs" / "y.ipynb").write_text("not json either")
    (tmp_path / "grades-feedback" / "x.txt").mkdir(parents=True)  # a folder where the file should go
    (tmp_path / "grades-feedback" / "x.txt" / "notes").write_text("the instructor's")
    grades = grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lessons=["00"], echo=lambda _: None)
    assert "its feedback file could not be written" in grades[0].status
    assert (tmp_path / "grades-feedback" / "y.txt").exists()


@pytest.mark.parametrize("lesson", ["99", "abc"])
def test_an_unknown_lesson_is_a_clear_error(tmp_path, lesson):
    (tmp_path / "x.ipynb").write_text("{}")
    last = all_lessons()[-1].number
    with pytest.raises(SystemExit, match=f"There is no lesson .* the lessons are 00 to {last}"):
        cli.main(["grade", str(tmp_path), "--lesson", lesson, "--out", str(tmp_path / "g.csv")])


def test_without_bubblewrap_grading_refuses_and_says_why(tmp_path, monkeypatch):
    from course_utils.classroom import sandbox

    monkeypatch.setattr(sandbox, "bubblewrap", lambda: None)
    (tmp_path / "x.ipynb").write_text("{}")
    with pytest.raises(SystemExit, match=r"(?s)no working `bwrap`.*apt-get install bubblewrap.*--unsafe-no-sandbox"):
        cli.main(["grade", str(tmp_path), "--out", str(tmp_path / "g.csv")])


def test_unsafe_grading_without_a_sandbox_judges_the_same_way(tmp_path):
    notebook = nbformat.v4.new_notebook(metadata={"course": {"lesson": "00"}})
    notebook.cells = [nbformat.v4.new_code_cell('from course_utils.classroom.quiz import answer\n'
                                                'answer("00.offline", "A")\nanswer("00.edit", "A")')]
    nbformat.write(notebook, tmp_path / "ann.ipynb")
    out = tmp_path / "grades.csv"
    assert cli.main(["grade", str(tmp_path), "--out", str(out), "--unsafe-no-sandbox", "--time-limit", "60"]) == 0
    row = next(csv.DictReader(out.open()))
    assert (row["00.offline"], row["00.edit"], row["total"]) == ("1", "0", "1")
    assert row["00 status"].startswith("finished; not answered or not run: 00.checker")


# --- names, files and gradebooks a submission cannot turn against the grader ------------

def test_a_fifo_a_control_character_and_an_ambiguous_name_are_refused_without_running(tmp_path):
    import os
    import signal

    from course_utils.classroom import sandbox
    from course_utils.classroom.grading import grade_folder

    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "bob").mkdir()
    os.mkfifo(subs / "alice" / "00_setup.ipynb")  # opened to read, a FIFO blocks until someone writes
    nbformat.write(_reference(), subs / "eve\nmallory.ipynb")
    nbformat.write(_reference(), subs / "=HYPERLINK(1).ipynb")
    nbformat.write(_reference(), subs / "bob.ipynb")  # whose: bob's folder's, or a learner named bob?
    nbformat.write(_reference(), subs / "bob" / "00_setup.ipynb")
    signal.alarm(120)  # a test that blocks fails instead of hanging the suite
    try:
        grades = {grade.submission: grade for grade in grade_folder(subs, tmp_path / "g.csv", lessons=["00"],
                                                                    limits=sandbox.Limits(seconds=60), echo=lambda _: None)}
    finally:
        signal.alarm(0)
    assert grades["alice/00_setup.ipynb"].status.startswith("unreadable notebook (it is not a regular file")
    assert grades["eve\nmallory.ipynb"].status.startswith("refused: its path has control characters")
    assert grades["eve\nmallory.ipynb"].learner == "eve\\nmallory"
    assert grades["bob.ipynb"].status.startswith("refused: both bob.ipynb and the folder bob/ are there")
    assert grades["bob/00_setup.ipynb"].total == 9
    rows = list(csv.reader((tmp_path / "g.csv").open()))
    assert len(rows) == 1 + 4, "one line per learner, whatever their names hold"
    assert sorted(row[0] for row in rows[1:]) == ["'=HYPERLINK(1)", "alice", "bob", "eve\\nmallory"]
    assert grades["=HYPERLINK(1).ipynb"].total == 9, "a strange name is graded, and shown as text"


@pytest.mark.parametrize("cell, shown", [("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+1+1", "'+1+1"),
                                         ("@SUM(A1)", "'@SUM(A1)"), ("-2+3", "'-2+3"), ("\tx", "'\tx"),
                                         ("-1", "-1"), ("7", "7"), ("0.5", "0.5"), ("alice", "alice")])
def test_gradebook_cells_are_never_formulas(cell, shown):
    from course_utils.classroom.grading import _spreadsheet_safe

    assert _spreadsheet_safe(cell) == shown


def _grade(learner, lesson, points):
    from course_utils.classroom.grading import Grade

    items = lesson_items(lesson)
    return Grade(submission=f"{learner}/{lesson}.ipynb", learner=learner, lesson=lesson, status="finished",
                 points=dict.fromkeys(items, points), maximum=items)


def test_a_lesson_nobody_was_assigned_changes_no_one_s_maximum_or_rows():
    from course_utils.classroom.grading import gradebook_rows, long_rows

    grades = [_grade("alice", "00", 1), _grade("mallory", "00", 1), _grade("mallory", "05", 1)]
    header, *rows = gradebook_rows(grades, ["00"])
    assert not any(column.startswith("05") for column in header)
    assert {row[0]: row[2] for row in rows} == {"alice": "9", "mallory": "9"}
    long = long_rows(grades, ["00"])
    assert {row[1] for row in long[1:]} == {"00"}
    # Without an assignment, the long format never writes a 0 for a lesson a
    # learner did not hand in, which an LMS import would write over a real grade.
    unassigned = long_rows(grades)
    assert not [row for row in unassigned[1:] if row[0] == "alice" and row[1] == "05"]
    assert [row for row in unassigned[1:] if row[0] == "mallory" and row[1] == "05"]


def test_a_report_nested_past_the_recursion_limit_is_ignored_not_a_grader_error():
    from course_utils.classroom import sandbox

    run = sandbox.Run()
    sandbox._take(run, b"[" * 100_000 + b"]" * 100_000, sandbox.Limits())
    assert sandbox._reply(b'{"a":' * 5_000 + b"1" + b"}" * 5_000) == {}


def test_a_thousand_notebooks_from_one_learner_cost_only_that_learner(tmp_path):
    """Run at most twice the lessons of one learner's notebooks: the rest are
    reported, not run, and the authoring lessons are read once per run."""
    from course_utils.classroom import grading, lessons

    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    for number in range(1000):
        (tmp_path / "subs" / "mallory" / f"{number:04d}.ipynb").write_text("not json")
    (tmp_path / "subs" / "alice.ipynb").write_text("not json either")
    reads = []
    original = lessons.all_lessons

    def counted(*args, **kwargs):
        reads.append(1)
        return original(*args, **kwargs)

    lessons.all_lessons, saved = counted, lessons.all_lessons
    try:
        grades = grading.grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lessons=["00"], echo=lambda _: None,
                                      per_learner=3)
    finally:
        lessons.all_lessons = saved
    mallory = [grade for grade in grades if grade.learner == "mallory"]
    assert sum(grade.status.startswith("unreadable") for grade in mallory) == 3
    assert [grade.status for grade in mallory[3:]] == [
        "not graded: 997 notebooks past the first 3 of this learner (in name order), from mallory/0003.ipynb to mallory/0999.ipynb"]
    assert len(list((tmp_path / "grades-feedback" / "mallory").iterdir())) == 3  # no file per notebook not run
    assert next(grade for grade in grades if grade.learner == "alice").status.startswith("unreadable")
    assert len(reads) == 1, "the authoring lessons are read once, not per notebook or gradebook rewrite"


def test_control_characters_from_a_sandbox_are_escaped_in_the_status_and_the_feedback():
    """An exception message with line breaks forged a gradebook row when read
    line by line, split the feedback's Status line, and cleared the
    instructor's screen with an escape sequence."""
    from course_utils.classroom.grading import printable

    forged = "ValueError: \r\nvictim,3,3\r\n\x00\x1b[2J\u202e"
    assert printable(forged) == "ValueError: \\r\\nvictim,3,3\\r\\n\\x00\\x1b[2J\\u202e"
    assert printable("line one\n\tline two\x1b[2J", lines=True) == "line one\n\tline two\\x1b[2J"


def test_grading_in_parallel_gives_the_same_gradebook_and_feedback_and_stores_the_seed(tmp_path):
    """`course grade --jobs 2`: each notebook in a process of its own; the
    results, their order and the feedback are those of one at a time."""
    import json

    from course_utils.classroom.grading import grade_folder, grading_record

    folder = tmp_path / "subs"
    (folder / "alice").mkdir(parents=True)
    nbformat.write(_reference(), folder / "alice" / "00_setup.ipynb")
    half = student_notebook(LESSON)
    answers = half.cells[_cell_index(half, 'answer("00.offline"')]
    answers.source = answers.source.replace('answer("00.offline", None)', 'answer("00.offline", "A")')
    nbformat.write(half, folder / "bob.ipynb")
    (folder / "gina.ipynb").write_text('{"cells": [ this is not JSON')
    books = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}" / "grades.csv"
        out.parent.mkdir()
        grade_folder(folder, out, lessons=["00"], seed=5, jobs=jobs, echo=lambda _: None)
        feedback = {path.relative_to(out.parent / "grades-feedback").as_posix(): path.read_text()
                    for path in sorted((out.parent / "grades-feedback").rglob("*.txt"))}
        books[jobs] = (out.read_text(), feedback)
        assert json.loads(grading_record(out).read_text())["seed"] == 5
    assert books[1] == books[2]
    assert len(books[1][1]) == 3 and "alice" in books[1][0]
