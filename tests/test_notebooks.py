"""The notebook pipeline: pairs agree, stored notebooks were executed top to
bottom, every lesson has its parts, and nbval really is strict."""

import re
import subprocess
import sys

import jupytext
import nbformat
import pytest

from course_utils.classroom import lessons, paths
from course_utils.classroom.runner import KERNEL_NAME

LESSONS = lessons.all_lessons()
ROOT = paths.COURSE_ROOT


def _ids(items):
    return [lesson.name for lesson in items]


def test_there_are_lessons():
    assert LESSONS, "no notebooks/NN_slug.py found"


def test_lesson_numbers_are_contiguous_from_00():
    assert [lesson.number for lesson in LESSONS] == [f"{n:02d}" for n in range(len(LESSONS))]


def test_every_notebook_has_a_source_and_every_source_a_notebook():
    sources = {path.stem for path in paths.NOTEBOOKS.glob("[0-9][0-9]_*.py")}
    notebooks = {path.stem for path in paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert sources == notebooks, f"unpaired: {sorted(sources ^ notebooks)}"


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("lesson", LESSONS, ids=_ids(LESSONS))
def test_pair_has_the_same_cells(lesson):
    source, stored = jupytext.read(lesson.source), nbformat.read(lesson.notebook, as_version=4)
    assert _cells(source) == _cells(stored), (
        f"{lesson.notebook.name} is out of date with {lesson.source.name}: run `.venv/bin/course run --in-place {lesson.number}`")


@pytest.mark.parametrize("lesson", LESSONS, ids=_ids(LESSONS))
def test_stored_notebook_was_executed_in_order_without_errors(lesson):
    notebook = nbformat.read(lesson.notebook, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{lesson.notebook.name} was not executed top to bottom in one kernel: run `.venv/bin/course run --in-place {lesson.number}`")
    errors = [cell.source[:60] for cell in code for output in cell.outputs if output.output_type == "error"]
    assert not errors, f"{lesson.notebook.name} stores error outputs in: {errors}"
    assert notebook.metadata["kernelspec"]["name"] == KERNEL_NAME


@pytest.mark.parametrize("lesson", LESSONS, ids=_ids(LESSONS))
def test_lesson_has_title_objectives_exercise_quiz_and_summary(lesson):
    notebook = jupytext.read(lesson.source)
    markdown = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "markdown")
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert notebook.cells[0].source.startswith(f"# {lesson.number} · "), "the first cell is the '# NN · Title' heading"
    assert "**In this lesson you will**" in notebook.cells[0].source, "objectives belong in the first cell"
    assert re.search(r"^## Summary", markdown, re.MULTILINE), "a lesson ends with a '## Summary' section"
    assert "setup_notebook(" in code[0], "the first code cell calls setup_notebook()"
    assert any("# BEGIN SOLUTION" in cell for cell in code), "at least one exercise"
    assert any(re.search(r"^check_\w+\(", cell, re.MULTILINE) for cell in code), "an exercise checker call"
    assert any(f'show_quiz("{lesson.number}")' in cell for cell in code), "the lesson's quiz is shown"
    assert (paths.QUIZZES / f"{lesson.name}.yaml").is_file(), "quizzes/NN_slug.yaml exists"


def _checked_stream(notebook, wanted):
    """The first stream output of a cell whose output nbval checks, and whose text passes `wanted`."""
    return next(cell.outputs[0] for cell in notebook.cells
                if cell.cell_type == "code" and cell.outputs and cell.outputs[0].output_type == "stream"
                and "NBVAL_IGNORE_OUTPUT" not in cell.source and wanted(cell.outputs[0].text))


def _nudge_first_float(text: str, units: float) -> str:
    """Move the first decimal number of `text` by `units` of its last printed digit."""
    match = re.search(r"(?<![\w.])\d+\.(\d+)(?![\w]|\.\d)", text)
    decimals = len(match.group(1))
    nudged = f"{float(match.group()) + units * 10.0 ** -decimals:.{decimals}f}"
    return text[:match.start()] + nudged + text[match.end():]


def test_nbval_fails_a_changed_output_and_passes_a_number_within_tolerance(tmp_path):
    """Strict mode for real, on lesson 00 as stored, through the course's plugin:
    a changed character in a version string fails, as does a number moved far
    beyond its rounding; a number moved by one unit of its last digit passes."""
    has_float = lambda text: re.search(r"(?<![\w.])\d+\.\d+(?![\w]|\.\d)", text)
    edits = {  # name: (which output to edit, the edit)
        "changed_text": (lambda text: "2" in text and not has_float(text), lambda text: text.replace("2", "3", 1)),
        "within_tolerance": (has_float, lambda text: _nudge_first_float(text, 1)),
        "beyond_tolerance": (has_float, lambda text: _nudge_first_float(text, 50)),
    }
    for name, (wanted, edit) in edits.items():
        notebook = nbformat.read(paths.NOTEBOOKS / "00_setup.ipynb", as_version=4)
        output = _checked_stream(notebook, wanted)
        output.text = edit(output.text)
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "course_utils.classroom.pytest_plugin",
         "--nbval", "--nbval-current-env", f"--nbval-sanitize-with={ROOT / 'tests' / 'nbval_sanitize.cfg'}",
         "-rA", "--color=no", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    failed = {name for name in edits if f"FAILED {name}.ipynb::" in result.stdout}
    assert failed == {"changed_text", "beyond_tolerance"}, result.stdout[-3000:]
    assert result.stdout.count("FAILED ") == 2, "exactly one cell fails in each edited copy"


def test_kernels_under_test_run_on_the_test_thread_count(tmp_path):
    """The stored notebooks come from kernels on every core; the tests' kernels
    run on COURSE_TEST_THREADS (1 by default), so passing proves the stored
    numbers do not hang on the thread count."""
    import os

    from course_utils.classroom.pytest_plugin import THREADS_VARIABLE
    from course_utils.classroom.runner import execute

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch; print(torch.get_num_threads())")])
    execute(notebook, tmp_path, "threads", quiet=True)
    assert notebook.cells[0].outputs[0].text.strip() == os.environ.get(THREADS_VARIABLE, "1")


def test_every_nbval_marker_is_one_that_nbval_or_the_course_reads():
    """nbval reads `# NBVAL_IGNORE_OUTPUT` only when the comment is exactly
    that: with words after it, the cell is compared after all, and passes
    only on the machine that stored it."""
    from nbval.plugin import find_comment_markers

    from course_utils.classroom.output_tolerance import MARKER

    for source in sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        for line in source.read_text(encoding="utf-8").splitlines():
            if "NBVAL_" in line and MARKER not in line:
                assert list(find_comment_markers(line.strip())), f"{source.name}: nbval does not read {line.strip()!r}"


def test_re_running_a_lesson_keeps_the_stored_cell_ids():
    """A one-word edit changes one cell of the .ipynb's diff, not every id."""
    from course_utils.classroom.runner import keep_cell_ids

    lesson = LESSONS[2]
    stored = nbformat.read(lesson.notebook, as_version=4)
    fresh = jupytext.read(lesson.source)
    edited = next(index for index, cell in enumerate(fresh.cells) if cell.cell_type == "markdown" and index > 2)
    fresh.cells[edited].source += " One more word."
    fresh.cells.insert(len(fresh.cells) - 1, nbformat.v4.new_code_cell("print('a new cell')"))
    keep_cell_ids(fresh, stored)
    ids = [cell.id for cell in fresh.cells]
    assert len(set(ids)) == len(ids), "every id once"
    kept = [cell.id for cell in fresh.cells[:-2]]
    assert kept == [cell.id for cell in stored.cells[:-1]], "unchanged and edited cells keep their ids"
    assert fresh.cells[-2].id not in {cell.id for cell in stored.cells}, "the new cell has an id of its own"


def test_a_lesson_over_budget_comes_with_advice_that_names_a_busy_machine():
    from course_utils.classroom.runner import BUDGET_SECONDS, LessonRun, over_budget_advice

    quick, slow = LessonRun("00_setup", 10.0), LessonRun("10_gpt", BUDGET_SECONDS * 3)
    assert over_budget_advice([quick], 5.0, 2) == ""
    busy = over_budget_advice([quick, slow], 5.3, 2)
    assert "10_gpt" in busy and "00_setup" not in busy and "load average was 5.3 on 2 cores" in busy
    assert "course bench" in over_budget_advice([slow], 1.0, 2)
    assert over_budget_advice([LessonRun("10_gpt", BUDGET_SECONDS * 3, error="ValueError: x")], 5.0, 2) == ""
