"""The student release: solutions stubbed, answers sealed, and it still runs."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from course_utils.classroom import lessons, paths, quiz
from course_utils.classroom.runner import execute
from course_utils.classroom.student import ReleaseError, build_release, strip_solutions

LESSONS = lessons.all_lessons()


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release")
    build_release(out)
    return out


def test_code_solutions_become_a_stub_at_the_same_indent():
    source = "def f(x):\n    '''Doc.'''\n    # BEGIN SOLUTION\n    y = x + 1\n    return y\n    # END SOLUTION\n\nprint(1)\n"
    stripped = strip_solutions(source)
    assert "y = x + 1" not in stripped and "return y" not in stripped
    assert "    raise NotImplementedError(" in stripped and stripped.endswith("\nprint(1)\n")
    compile(stripped, "cell", "exec")


def test_answer_blocks_keep_their_ids_and_lose_their_values():
    source = '# BEGIN SOLUTION\nanswer("03.mask", "B")\nanswer("03.why", ["A", "C"])  # both\n# END SOLUTION\n'
    assert strip_solutions(source) == 'answer("03.mask", None)  # your answer here\nanswer("03.why", None)  # your answer here\n'


def test_an_unclosed_solution_block_is_refused_with_its_place():
    with pytest.raises(ReleaseError, match="03_x.py, cell 4: a '# BEGIN SOLUTION' has no matching"):
        strip_solutions("x = 1\n# BEGIN SOLUTION\nx = 2\n", "03_x.py, cell 4")


def test_release_refuses_a_non_empty_folder_and_leaves_it_alone(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not empty"):
        build_release(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def _solution_lines():
    """Every line of every solution block in the sources."""
    for lesson in LESSONS:
        text = lesson.source.read_text(encoding="utf-8")
        for block in re.findall(r"# BEGIN SOLUTION[^\n]*\n(.*?)# END SOLUTION", text, re.DOTALL):
            for line in block.splitlines():
                line = line.strip().lstrip("# ").strip()
                if len(line) > 8:  # short lines ("return x") may legitimately appear elsewhere
                    yield lesson.name, line


def test_no_solution_line_leaks_into_the_release(release):
    released = "\n".join(path.read_text(encoding="utf-8") for path in (release / "notebooks").glob("*.ipynb"))
    assert "BEGIN SOLUTION" not in released and "END SOLUTION" not in released
    leaks = [(name, line) for name, line in _solution_lines() if line in released and not line.startswith("answer(")]
    assert not leaks, f"solution lines found in the student release: {leaks}"
    for path in (release / "notebooks").glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells), f"{path.name} keeps outputs"


def test_no_plain_answer_or_explanation_in_the_released_quizzes(release):
    released = "\n".join(path.read_text(encoding="utf-8") for path in (release / "quizzes").glob("*.yaml"))
    assert "correct:" not in released and "accept:" not in released and "answer:" not in released
    for source in paths.QUIZZES.glob("*.yaml"):
        for question in yaml.safe_load(source.read_text())["questions"]:
            for option in question.get("options", []):
                assert option["why"].strip() not in released, f"{source.name}: an explanation is in plain text"
            if question["type"] == "text":  # the id is shown in plain text: it must not be the answer
                id_words = {question["id"], *question["id"].split("-")}
                assert not id_words & {quiz.normalise_text(a) for a in question["accept"]}, (
                    f"{source.name}: question id '{question['id']}' gives its answer away")
            if question["type"] in ("numeric", "text"):
                assert question["why"].strip() not in released


def _sample_answers(raw: dict) -> list:
    """A right answer and some wrong ones for a question of an authoring file."""
    if raw["type"] in ("single", "multiple"):
        letters = "ABCDEFGH"[: len(raw["options"])]
        right = [letter for letter, option in zip(letters, raw["options"]) if option.get("correct")]
        value = right[0] if raw["type"] == "single" else right
        return [value] + [letter for letter in letters if letter not in right][:2]
    if raw["type"] == "numeric":
        tolerance = raw.get("tolerance", 0)
        return [raw["answer"], raw["answer"] + 0.9 * tolerance, raw["answer"] + 3 * tolerance + 1]
    return [raw["accept"][0].upper(), "certainly not this"]


def test_sealed_quizzes_grade_exactly_like_the_authoring_files(release):
    for source in sorted(paths.QUIZZES.glob("*.yaml")):
        plain = quiz.parse_quiz(source.read_text(), source)
        sealed_path = release / "quizzes" / source.name
        sealed = quiz.parse_quiz(sealed_path.read_text(), sealed_path)
        for raw in yaml.safe_load(source.read_text())["questions"]:
            question_id = f"{plain.lesson}.{raw['id']}"
            for value in _sample_answers(raw):
                a, b = quiz.grade(plain.questions[question_id], value), quiz.grade(sealed.questions[question_id], value)
                assert (a.correct, a.points, a.explanation) == (b.correct, b.points, b.explanation), (question_id, value)
            assert quiz.grade(plain.questions[question_id], _sample_answers(raw)[0]).correct


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.name for lesson in LESSONS])
def test_the_release_runs_and_every_exercise_is_not_attempted_yet(release, lesson, monkeypatch):
    monkeypatch.setenv("COURSE_ROOT", str(release))
    monkeypatch.setenv("PYTHONPATH", str(release))
    notebook = nbformat.read(release / "notebooks" / lesson.notebook.name, as_version=4)
    execute(notebook, release / "notebooks", lesson.name)
    outputs = {cell.source: "".join(o.get("text", "") for o in cell.outputs) for cell in notebook.cells
               if cell.cell_type == "code"}
    checker_cells = [text for source, text in outputs.items() if re.search(r"^check_\w+\(", source, re.MULTILINE)]
    assert checker_cells and all("not attempted yet" in text and "✓" not in text for text in checker_cells)
    answer_cells = [text for source, text in outputs.items() if "answer(" in source and "None" in source]
    assert answer_cells and all("not answered yet" in text for text in answer_cells)
