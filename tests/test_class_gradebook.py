"""An instructor's class: who handed in what (the names Canvas and Moodle give
downloaded submissions, a roster that maps them to ids), gradebooks that
Canvas and Moodle import as they are, and feedback that reveals answers."""

from pathlib import Path

import pytest

from course_utils.classroom.grading import grade_folder, learner_of
from course_utils.classroom.roster import Roster, RosterError, download_key


@pytest.mark.parametrize("path, key", [
    ("alice/02_qkv_by_hand.ipynb", "alice"),
    ("bob.ipynb", "bob"),
    ("smithjohn_12345_67890_00_setup.ipynb", "smithjohn_12345"),
    ("smithjohn_late_12345_67891_02_qkv_by_hand-1.ipynb", "smithjohn_12345"),
    ("John Smith_4711_assignsubmission_file_/00_setup.ipynb", "John Smith_4711"),
])
def test_download_names_of_canvas_and_moodle_keep_one_learner_s_files_together(path, key):
    assert download_key(Path(path)) == key


def _roster(tmp_path, text):
    (tmp_path / "roster.csv").write_text(text)
    return Roster.read(tmp_path / "roster.csv")


def test_a_roster_maps_canvas_moodle_and_folder_names_to_ids(tmp_path):
    roster = _roster(tmp_path, "id,name,canvas_user_id,moodle_participant_id,aliases\n"
                               "jsmith,John Smith,12345,4711,johnny;js\nakhan,Amira Khan,,,\n")
    assert learner_of(Path("smithjohn_12345_67890_00_setup.ipynb"), roster) == "jsmith"
    assert learner_of(Path("John Smith_4711_assignsubmission_file_/00_setup.ipynb"), roster) == "jsmith"
    assert learner_of(Path("johnny/00_setup.ipynb"), roster) == "jsmith"
    assert learner_of(Path("akhan.ipynb"), roster) == "akhan"
    assert roster.learner(Path("stranger.ipynb")) is None


@pytest.mark.parametrize("text, message", [
    ("name,email\nJohn,j@x\n", "needs a header row with a column `id`"),
    ("id,aliases\njsmith,js\nakhan,js\n", "'js' already belongs to jsmith"),
    ("id\n\n ,\n", "no id"),
])
def test_a_roster_that_cannot_be_read_says_why(tmp_path, text, message):
    with pytest.raises(RosterError, match=message):
        _roster(tmp_path, text)


def test_a_submission_of_no_one_on_the_roster_is_reported_not_run(tmp_path):
    roster = _roster(tmp_path, "id,canvas_user_id\njsmith,12345\n")
    (tmp_path / "subs").mkdir()
    for name in ("smithjohn_12345_1_00_setup.ipynb", "smithjohn_12345_2_00_setup-1.ipynb", "mallory_999_3_00_setup.ipynb"):
        (tmp_path / "subs" / name).write_text("not json")
    grades = grade_folder(tmp_path / "subs", tmp_path / "grades.csv", lessons=["00"], echo=lambda _: None,
                          roster=roster, seed=1)
    by_learner = {grade.submission: (grade.learner, grade.status) for grade in grades}
    assert by_learner["smithjohn_12345_1_00_setup.ipynb"][0] == "jsmith"
    assert by_learner["smithjohn_12345_2_00_setup-1.ipynb"][0] == "jsmith"
    assert by_learner["mallory_999_3_00_setup.ipynb"] == (
        "mallory_999", "not on the roster: no id for 'mallory_999'; nothing was run")


def test_canvas_and_moodle_gradebooks_have_the_columns_their_imports_read(tmp_path):
    """Canvas: Student, ID, SIS User ID, SIS Login ID, Section, one column per
    assignment, and a Points Possible row; Moodle: an identifier column and
    one numeric column per grade item."""
    import csv

    from course_utils.classroom.grading import Grade, lesson_items, write_gradebook

    roster = _roster(tmp_path, "id,name,canvas_user_id\njsmith,John Smith,12345\nakhan,Amira Khan,777\n")
    items = lesson_items("00")
    grades = [Grade("smithjohn_12345_1_00_setup.ipynb", "jsmith", "00", "finished", dict.fromkeys(items, 1.0), dict(items)),
              Grade("akhan/00_setup.ipynb", "akhan", "00", "finished", dict.fromkeys(items, 0.0), dict(items))]
    write_gradebook(tmp_path / "canvas.csv", grades, "canvas", ["00"], roster)
    rows = list(csv.reader((tmp_path / "canvas.csv").open()))
    assert rows[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Lesson 00: Setup: how this course works"]
    assert rows[1] == ["Points Possible", "", "", "", "", f"{sum(items.values()):g}"]
    assert rows[2] == ["Amira Khan", "777", "akhan", "", "", "0"]
    assert rows[3] == ["John Smith", "12345", "jsmith", "", "", f"{sum(items.values()):g}"]
    write_gradebook(tmp_path / "moodle.csv", grades, "moodle", ["00"], roster)
    rows = list(csv.reader((tmp_path / "moodle.csv").open()))
    assert rows == [["ID number", "Lesson 00: Setup: how this course works"], ["akhan", "0"],
                    ["jsmith", f"{sum(items.values()):g}"]]


def test_feedback_reveals_the_right_answers_missed_only_when_asked():
    from course_utils.classroom.grading import Grade, feedback_text, lesson_items

    items = lesson_items("06")
    points = dict.fromkeys(items, 1.0)
    points.update({"06.cross-attention": 0.0, "06.layer-norm-value": 0.0})
    grade = Grade("a/06.ipynb", "a", "06", "finished", points, dict(items))
    assert "right:" not in feedback_text(grade)
    revealed = feedback_text(grade, reveal=True)
    assert "right: C) Queries from the decoder, keys and values from the encoder's output" in revealed
    assert "right: 1.6 (" in revealed and revealed.count("right:") == 2


def test_shares_of_a_class_merge_into_the_gradebook_of_the_whole(tmp_path):
    """`--shard 1/2` and `2/2` on two machines, then `course merge-grades`:
    the same gradebook and feedback as grading everyone at once."""
    from course_utils.classroom import cli

    (tmp_path / "subs").mkdir()
    for name in ("ann/00_setup.ipynb", "ben/00_setup.ipynb", "cat.ipynb", "dan_1_2_00_setup.ipynb"):
        (tmp_path / "subs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "subs" / name).write_text("not json")  # graded at once: each learner's row says why
    common = ["--lesson", "0", "--seed", "3"]
    assert cli.main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / "all" / "grades.csv"), *common]) == 0
    for part in (1, 2):
        out = tmp_path / f"share{part}" / "grades.csv"
        assert cli.main(["grade", str(tmp_path / "subs"), "--out", str(out), "--shard", f"{part}/2", *common]) == 0
    shares = [tmp_path / f"share{part}" / "grades.csv" for part in (1, 2)]
    assert {len(share.read_text().splitlines()) for share in shares} == {3}, "two learners in each share"
    merged = tmp_path / "merged" / "grades.csv"
    assert cli.main(["merge-grades", *map(str, shares), "--out", str(merged)]) == 0
    assert merged.read_text() == (tmp_path / "all" / "grades.csv").read_text()
    feedback = sorted(path.relative_to(merged.parent).as_posix() for path in merged.parent.rglob("*.txt"))
    assert len(feedback) == 4


def test_shares_graded_with_another_seed_are_not_merged(tmp_path):
    from course_utils.classroom import cli

    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "ann.ipynb").write_text("not json")
    (tmp_path / "subs" / "ben.ipynb").write_text("not json")
    for part, seed in ((1, "3"), (2, "4")):
        cli.main(["grade", str(tmp_path / "subs"), "--out", str(tmp_path / f"s{part}" / "g.csv"), "--lesson", "0",
                  "--seed", seed, "--shard", f"{part}/2"])
    with pytest.raises(SystemExit, match="different seed"):
        cli.main(["merge-grades", str(tmp_path / "s1" / "g.csv"), str(tmp_path / "s2" / "g.csv"),
                  "--out", str(tmp_path / "g.csv")])
