"""The student release: solutions stubbed, answers sealed, and it still runs."""

import ast
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
import yaml

from course_utils.classroom import lessons, paths, quiz, sealing
from course_utils.classroom.checks import exercise_references
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
    # A line that some lesson shows outside its solutions ("optimizer.step()" in a training loop) is no leak.
    shown = {line.strip() for lesson in LESSONS for line in re.sub(
        r"# BEGIN SOLUTION.*?# END SOLUTION", "", lesson.source.read_text(encoding="utf-8"), flags=re.DOTALL).splitlines()}
    leaks = [(name, line) for name, line in _solution_lines()
             if line in released and line not in shown and not line.startswith("answer(")]
    assert not leaks, f"solution lines found in the student release: {leaks}"
    for path in (release / "notebooks").glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in notebook.cells), f"{path.name} keeps outputs"


def _code_lines(source: str, skip_ranges=()) -> set[str]:
    """The stripped lines of `source` long enough to be telling, outside the
    given (first, last) line ranges; comments and docstrings left out."""
    skip = {number for first, last in skip_ranges for number in range(first, last + 1)}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            skip |= set(range(node.lineno, node.end_lineno + 1))
    return {line.strip() for number, line in enumerate(source.splitlines(), 1)
            if number not in skip and len(line.strip()) > 24 and not line.strip().startswith("#")}


def _reference_pieces():
    """Every reviewed piece that answers an exercise, once."""
    return {piece: exercise for exercise, pieces in sorted(exercise_references().items()) for piece in pieces
            if piece.__module__.startswith("course_utils.") and not piece.__module__.startswith("course_utils.classroom")}


def test_no_reference_code_leaks_into_the_release(release):
    """The lines of each reviewed answer are nowhere in the release, except the
    lines it shares with code a learner is meant to read (EncoderLayer's, in
    DecoderLayer's case) or is given (an exercise's scaffolding)."""
    pieces = _reference_pieces()
    shared = set()  # the course's readable code: the model modules outside the answers, the notebooks outside solutions
    for path in sorted((paths.COURSE_ROOT / "course_utils").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
        # A method's answer (GPT.forward) seals its whole class: the class is not readable code.
        answers = {piece.__qualname__.split(".")[0] for piece in pieces if piece.__module__ == f"course_utils.{path.stem}"}
        shared |= _code_lines(source, [(node.lineno, node.end_lineno) for node in tree.body
                                       if getattr(node, "name", None) in answers])
    for lesson in LESSONS:
        text = re.sub(r"# BEGIN SOLUTION.*?# END SOLUTION", "", lesson.source.read_text(encoding="utf-8"), flags=re.DOTALL)
        shared |= {line.strip() for line in text.splitlines()}
    released = {path.relative_to(release).as_posix(): path.read_text(encoding="utf-8")
                for path in sorted(release.rglob("*")) if path.suffix in (".py", ".ipynb", ".md", ".yaml")}
    leaks = []
    for piece, exercise in pieces.items():
        answer = textwrap.dedent(inspect.getsource(piece))
        header = ast.parse(answer).body[0]
        for line in _code_lines(answer, [(header.lineno, header.body[0].lineno - 1)]) - shared:
            leaks += [(exercise, line, where) for where, text in released.items() if line in text]
    assert not leaks, f"reference code found in the student release: {leaks}"


def test_sealed_pieces_run_as_the_reviewed_ones_and_show_no_body(release):
    for piece in _reference_pieces():
        module = release.joinpath(*piece.__module__.split(".")).with_suffix(".py").read_text(encoding="utf-8")
        sealed = piece.__qualname__.split(".")[0]  # a method's answer seals its class
        node = next(node for node in ast.parse(module).body if getattr(node, "name", None) == sealed)
        assert [type(statement) for statement in node.body[1:]] == [ast.Expr], f"{piece.__qualname__} keeps a body"
        assert f'{sealed} = _sealed.reviewed(__name__, "{sealed}")' in module
    script = textwrap.dedent("""
        import sys, torch
        from course_utils import attention, data, tokenization
        assert attention.__file__.startswith(sys.argv[1]), attention.__file__
        q, k, v = torch.randn(3, 3, 4, generator=torch.Generator().manual_seed(0)).unbind(0)
        print(attention.scaled_dot_product_attention(q, k, v, attention.causal_mask(3))[0].sum().item())
        print(sorted(data.word_counts("To be, or not to be: 'tis o'er").items()))
        print(tokenization.learn_bpe({"lower": 5, "lowest": 2, "newer": 6}, 4))
        """)
    outputs = [subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(root)!r}); " + script,
                               str(root)], capture_output=True, text=True, cwd=root) for root in (paths.COURSE_ROOT, release)]
    assert all(output.returncode == 0 for output in outputs), [output.stderr[-2000:] for output in outputs]
    assert outputs[0].stdout == outputs[1].stdout and outputs[0].stdout.count("\n") == 3


def test_a_broken_sealed_file_says_how_to_fix_it(release, tmp_path):
    copy = tmp_path / "copy"
    (copy / "course_utils").mkdir(parents=True)
    for path in (release / "course_utils").glob("*.py"):
        (copy / "course_utils" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (copy / "course_utils" / sealing.SEALED_FILE).write_bytes(b"not a sealed file")
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(copy)!r}); "
                             "import course_utils.attention"], capture_output=True, text=True, cwd=copy)
    assert result.returncode == 1
    assert "is sealed in this student release, but" in result.stderr and "course student" in result.stderr


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


def _runs_with_nothing_attempted(release, lesson, monkeypatch):
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


# Every lesson runs again here, as its release: the longest part of the suite.
# pytest-xdist (--dist loadscope) keeps a class's tests on one worker, so the
# lessons are dealt to three classes of about five minutes each, which the
# two workers share out with everything else, instead of one module of
# fifteen minutes that one worker must run alone at the end.
EARLY, MIDDLE = LESSONS[:9], LESSONS[9:12]


class TestTheReleaseRunsEarlyLessons:
    @pytest.mark.parametrize("lesson", EARLY, ids=[lesson.name for lesson in EARLY])
    def test_the_release_runs_and_every_exercise_is_not_attempted_yet(self, release, lesson, monkeypatch):
        _runs_with_nothing_attempted(release, lesson, monkeypatch)


class TestTheReleaseRunsMiddleLessons:
    @pytest.mark.parametrize("lesson", MIDDLE, ids=[lesson.name for lesson in MIDDLE])
    def test_the_release_runs_and_every_exercise_is_not_attempted_yet(self, release, lesson, monkeypatch):
        _runs_with_nothing_attempted(release, lesson, monkeypatch)


class TestTheReleaseRunsLateLessons:
    @pytest.mark.parametrize("lesson", LESSONS[12:], ids=[lesson.name for lesson in LESSONS[12:]])
    def test_the_release_runs_and_every_exercise_is_not_attempted_yet(self, release, lesson, monkeypatch):
        _runs_with_nothing_attempted(release, lesson, monkeypatch)


def _in_the_copy(release: Path, *verb: str) -> subprocess.CompletedProcess:
    """`course VERB` typed in a terminal in the copy: no COURSE_ROOT, no log set."""
    environment = {key: value for key, value in os.environ.items() if key not in ("COURSE_ROOT", "COURSE_PROGRESS_FILE")}
    return subprocess.run([sys.executable, "-m", "course_utils.classroom.cli", *verb], cwd=release / "notebooks",
                          env=environment, capture_output=True, text=True, timeout=600)


def test_course_run_and_progress_in_a_practice_copy_use_its_own_log(release):
    path = release / "notebooks" / LESSONS[0].notebook.name
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        cell.source = cell.source.replace('answer("00.offline", None)', 'answer("00.offline", "A")')
    nbformat.write(notebook, path)
    ran = _in_the_copy(release, "run", "00")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert (release / "build" / "executed" / path.name).exists()
    logged = [json.loads(line) for line in (release / ".progress.jsonl").read_text().splitlines()]
    assert [(entry["item"], entry["answer"], entry["points"]) for entry in logged] == [("00.offline", "A", 1)]
    shown = _in_the_copy(release, "progress")
    assert shown.returncode == 0 and str(release / ".progress.jsonl") in shown.stdout
    assert re.search(r"00_setup\s+1/7\s+0/\d+\s+1/\d+", shown.stdout), shown.stdout


def test_grading_in_a_student_release_is_refused_with_the_reason(release):
    refused = _in_the_copy(release, "grade", str(release / "notebooks"))
    assert refused.returncode == 2 and "is a student release, which has no answer keys" in refused.stderr
    assert not (release / "notebooks" / "grades.csv").exists()


WRONG_ANSWER = "return None  # a wrong answer: the check fails, and the lesson goes on with the reviewed version"


@pytest.mark.parametrize("lesson", LESSONS[:6], ids=[lesson.name for lesson in LESSONS[:6]])
def test_with_every_exercise_answered_wrong_the_lesson_still_runs(release, lesson, monkeypatch):
    """Each solution replaced by `return None`: every checker fails, and every
    later cell still runs, on the reviewed fallback where the lesson uses the
    learner's code (checks.yours_if_passed)."""
    from course_utils.classroom import student

    monkeypatch.setattr(student, "STUB", WRONG_ANSWER)
    monkeypatch.setenv("COURSE_ROOT", str(release))
    monkeypatch.setenv("PYTHONPATH", str(release))
    notebook = student.student_notebook(lesson)
    execute(notebook, release / "notebooks", lesson.name)  # raises at the first cell that fails
    outputs = {cell.source: "".join(o.get("text", "") for o in cell.outputs) for cell in notebook.cells
               if cell.cell_type == "code"}
    checker_cells = [text for source, text in outputs.items() if re.search(r"^check_\w+\(", source, re.MULTILINE)]
    assert checker_cells and not any("checks passed: well done" in text for text in checker_cells)
    fallbacks = [text for source, text in outputs.items() if "yours_if_passed(" in source]
    assert all("→ The next cell" in text and "it passed its checks" not in text for text in fallbacks)


def test_an_update_keeps_what_the_learner_wrote_and_takes_the_course_s_changes(tmp_path):
    """`make practice` after a `git pull`: the lesson changed in the course, and
    the learner's code, answers and own cells all survive."""
    from course_utils.classroom.student import BASE_FOLDER, STUB, update_release

    out, name = tmp_path / "practice", "02_qkv_by_hand.ipynb"
    build_release(out)
    mine = nbformat.read(out / "notebooks" / name, as_version=4)
    base = nbformat.read(out / BASE_FOLDER / name, as_version=4)
    stub = next(index for index, cell in enumerate(mine.cells) if cell.cell_type == "code" and STUB in cell.source)
    prose = next(index for index, cell in enumerate(mine.cells) if cell.cell_type == "markdown" and 0 < index < stub)
    course_wording = mine.cells[prose].source
    # As handed out, before the course changed: other wording in a paragraph and in the exercise's cell.
    for notebook in (mine, base):
        notebook.cells[prose].source = "An older wording of this paragraph."
    base.cells[stub].source += "\n# an older comment"
    # The learner's work: the exercise written, and a cell of their own after it.
    mine.cells[stub].source = base.cells[stub].source.replace(STUB, "return 'my own code'")
    mine.cells.insert(stub + 1, nbformat.v4.new_code_cell("print('my own experiment')"))
    nbformat.write(mine, out / "notebooks" / name)
    nbformat.write(base, out / BASE_FOLDER / name)
    (out / BASE_FOLDER / "course-fingerprint").write_text("an older course")

    done = update_release(out)
    sources = [cell.source for cell in nbformat.read(out / "notebooks" / name, as_version=4).cells]
    assert course_wording in sources and "An older wording of this paragraph." not in sources
    written = next(index for index, source in enumerate(sources) if "return 'my own code'" in source)
    assert sources[written + 1].startswith("**Course update:**"), "the course changed the learner's cell too: a note"
    assert sources[written + 2] == "print('my own experiment')", "the learner's own cell stays where it was"
    assert any(line.startswith("02_qkv_by_hand: updated, 1 of your edited cells") for line in done), done
    assert update_release(out) == [], "a second update with nothing new changes nothing"


def test_an_old_copy_without_its_hand_out_record_is_left_as_it_is(tmp_path):
    from course_utils.classroom.student import BASE_FOLDER, update_release

    out, name = tmp_path / "practice", "02_qkv_by_hand.ipynb"
    build_release(out)
    mine = nbformat.read(out / "notebooks" / name, as_version=4)
    mine.cells[-1].source = "# the learner's last cell"
    nbformat.write(mine, out / "notebooks" / name)
    before = (out / "notebooks" / name).read_text()
    for path in (out / BASE_FOLDER).iterdir():
        path.unlink()
    done = update_release(out)
    assert (out / "notebooks" / name).read_text() == before
    assert (out / "notebooks" / "02_qkv_by_hand.updated.ipynb").exists() and any("02_qkv_by_hand: yours kept" in line for line in done)


def test_the_release_shows_learners_no_nbval_markers(release):
    for path in (release / "notebooks").glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        assert not any("NBVAL" in cell.source for cell in notebook.cells), path.name
