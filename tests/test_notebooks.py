"""The notebook pipeline: pairs agree, stored notebooks were executed top to
bottom, every lesson has its parts, and nbval really is strict."""

import re
import subprocess
import sys

import jupytext
import nbformat
import pytest

from course_utils import lessons, paths
from course_utils.runner import KERNEL_NAME

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
        f"{lesson.notebook.name} is out of date with {lesson.source.name}: run `make notebooks`")


@pytest.mark.parametrize("lesson", LESSONS, ids=_ids(LESSONS))
def test_stored_notebook_was_executed_in_order_without_errors(lesson):
    notebook = nbformat.read(lesson.notebook, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), (
        f"{lesson.notebook.name} was not executed top to bottom in one kernel: run `make notebooks`")
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


def test_changing_a_stored_output_fails_nbval(tmp_path):
    """Strict mode for real: edit one stored output by hand, and nbval must fail."""
    notebook = nbformat.read(paths.NOTEBOOKS / "00_setup.ipynb", as_version=4)
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code" and cell.outputs
                and cell.outputs[0].output_type == "stream" and "NBVAL_IGNORE_OUTPUT" not in cell.source)
    cell.outputs[0].text = cell.outputs[0].text.replace("2", "3", 1)
    nbformat.write(notebook, tmp_path / "00_setup.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "--nbval", "--nbval-current-env",
         f"--nbval-sanitize-with={ROOT / 'tests' / 'nbval_sanitize.cfg'}", str(tmp_path / "00_setup.ipynb")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "1 failed" in result.stdout, result.stdout[-2000:]
