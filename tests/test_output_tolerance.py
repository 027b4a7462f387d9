"""Stored outputs compare by value: a number within tolerance passes, any other
change fails, in the comparator and in nbval itself."""

import subprocess
import sys

import nbformat
import pytest

from course_utils.classroom import paths
from course_utils.classroom.output_tolerance import Band, declared_bands, numbers_agree, reconcile_outputs, reconcile_text

TRAINED = "step 500 mean of the last 100 steps: MLM loss 5.10\nshape (2, 5)\nplay 0.507 (95%: 0.485 to 0.529)\n"
STORED = "weight of 'with' 0.4869\ntensor([[ 0.1000, -0.0000],\n        [ 0.2500,  1.0000]])\nshape (2, 5, 8)\n"


@pytest.mark.parametrize("fresh", [
    STORED,
    STORED.replace("0.4869", "0.4868"),  # the float32 rounding that failed a fresh clone
    STORED.replace("-0.0000", "0.0000"),  # a sign of zero
    "weight of 'with' 0.4869\ntensor([[0.1000, 0.0000],\n        [0.2500, 1.0000]])\nshape (2, 5, 8)\n",  # torch re-pads
    STORED.replace("0.4869", "4.8685e-01"),
])
def test_agreeing_texts_come_back_as_stored(fresh):
    assert reconcile_text(fresh, STORED) == STORED


@pytest.mark.parametrize("fresh, why", [
    (STORED.replace("0.4869", "0.4881"), "a number beyond the tolerance"),
    (STORED.replace("0.2500", "0.2600"), "a number inside a tensor beyond the tolerance"),
    (STORED.replace("(2, 5, 8)", "(2, 5, 9)"), "an integer (a shape) is exact"),
    (STORED.replace("weight", "height"), "a changed word"),
    (STORED.replace("shape (2, 5, 8)\n", ""), "a missing line"),
    (STORED.replace("0.4869\n", "0.4869 0.1\n"), "an extra number"),
    (STORED.replace("of 'with'", "of'with'"), "spacing between words counts"),
])
def test_real_changes_still_differ(fresh, why):
    assert reconcile_text(fresh, STORED) != STORED, why


def test_a_partly_agreeing_text_shows_only_what_changed():
    fresh = "a 0.4868 b 0.9000 c 3"
    assert reconcile_text(fresh, "a 0.4869 b 0.5000 c 3") == "a 0.4869 b 0.9000 c 3"


@pytest.mark.parametrize("fresh, stored, agree", [
    ("0.4868", "0.4869", True),  # one unit of the last digit
    ("0.48", "0.49", True),
    ("0.47", "0.49", False),  # two units: more than rounding can do
    ("100.0", "100.1", True),  # relative 1e-3
    ("100.0", "100.3", False),
    ("2e-06", "3e-06", True),  # noise below the absolute tolerance
    ("64", "65", False),  # integers are exact
    ("64", "64", True),
])
def test_numbers_agree(fresh, stored, agree):
    assert numbers_agree(fresh, stored) is agree


@pytest.mark.parametrize("text", ["version 2.13.0", "0x7f3a2b1c", "d_k2 = x1", "cell 02.attention"])
def test_versions_names_and_addresses_are_not_numbers(text):
    nudged = text.replace("2", "3", 1)
    assert reconcile_text(nudged, text) == nudged


def test_outputs_of_every_kind_are_reconciled_and_the_stored_ones_untouched():
    stored = [nbformat.v4.new_output("stream", name="stdout", text="loss 0.4869\n"),
              nbformat.v4.new_output("execute_result", data={"text/plain": "0.25", "image/png": "AAAA"}, execution_count=1)]
    fresh = [nbformat.v4.new_output("stream", name="stdout", text="loss 0.4868\n"),
             nbformat.v4.new_output("execute_result", data={"text/plain": "0.2501", "image/png": "BBBB"}, execution_count=1)]
    reconciled = reconcile_outputs(fresh, stored)
    assert reconciled[0]["text"] == "loss 0.4869\n" and reconciled[1]["data"]["text/plain"] == "0.25"
    assert reconciled[1]["data"]["image/png"] == "BBBB", "pictures are never touched"
    assert fresh[0]["text"] == "loss 0.4868\n", "the fresh outputs are copied, not edited"


def test_a_stream_is_compared_only_with_the_same_stream():
    stored = [nbformat.v4.new_output("stream", name="stdout", text="0.4869")]
    fresh = [nbformat.v4.new_output("stream", name="stderr", text="0.4868")]
    assert reconcile_outputs(fresh, stored)[0]["text"] == "0.4868"


# --- the same rules, end to end through nbval ------------------------------------------------

def _notebook(stored_text: str, printed: str = STORED, marker: str = "") -> nbformat.NotebookNode:
    """One cell that prints `printed`, stored with `stored_text` as its output."""
    cell = nbformat.v4.new_code_cell(f"print({printed!r}, end=''){marker}", execution_count=1,
                                     outputs=[nbformat.v4.new_output("stream", name="stdout", text=stored_text)])
    return nbformat.v4.new_notebook(cells=[cell])


def test_nbval_passes_numbers_within_tolerance_and_fails_every_other_change(tmp_path):
    cases = {
        "same": (STORED, "passed"),
        "within_tolerance": (STORED.replace("0.4869", "0.4868").replace("0.2500", "0.2501"), "passed"),
        "beyond_tolerance": (STORED.replace("0.4869", "0.4881"), "failed"),
        "changed_word": (STORED.replace("weight", "height"), "failed"),
        "changed_shape": (STORED.replace("(2, 5, 8)", "(2, 5)"), "failed"),
        "missing_line": (STORED.replace("shape (2, 5, 8)\n", ""), "failed"),
        "trained_within_band": (TRAINED.replace("5.10", "5.14"), "passed"),
        "trained_beyond_band": (TRAINED.replace("5.10", "5.17"), "failed"),
    }
    for name, (stored_text, _) in cases.items():
        trained = name.startswith("trained")
        notebook = _notebook(stored_text, TRAINED, '  # NBVAL_TOLERANCE ±0.05 "MLM loss": a test') if trained else _notebook(stored_text)
        nbformat.write(notebook, tmp_path / f"{name}.ipynb")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-p", "course_utils.classroom.pytest_plugin",
         "--nbval", "--nbval-current-env", f"--nbval-sanitize-with={paths.COURSE_ROOT / 'tests' / 'nbval_sanitize.cfg'}",
         "-rA", "--color=no", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=600)
    outcomes = {name: ("passed" if f"PASSED {name}.ipynb::Cell 0" in result.stdout else "failed") for name in cases}
    assert outcomes == {name: want for name, (_, want) in cases.items()}, result.stdout[-3000:]


# --- declared bands: numbers that come out of training --------------------------------

def test_a_declared_band_is_read_from_the_cell_source():
    source = 'print(loss)  # NBVAL_TOLERANCE ±0.05 "MLM loss": moved 0.02 between CPUs\n# NBVAL_TOLERANCE ±3%\nx = 1'
    assert declared_bands(source) == [Band(0.05, key="MLM loss"), Band(0.03, relative=True)]
    assert declared_bands("print(1)  # no marker here") == []


@pytest.mark.parametrize("source", ['# NBVAL_TOLERANCE 0.05', '# NBVAL_TOLERANCE ±abc', '# NBVAL_TOLERANCE ±0.05 MLM loss',
                                    '# NBVAL_TOLERANCE ±0.05 "MLM loss" and more'])
def test_a_malformed_band_is_an_error_that_shows_the_form(source):
    with pytest.raises(ValueError, match='NBVAL_TOLERANCE ±0.05 "text on the output line"'):
        declared_bands(source)


def test_a_number_moved_less_than_its_band_passes_and_more_fails():
    band = [Band(0.05, key="MLM loss")]
    assert reconcile_text(TRAINED.replace("5.10", "5.08"), TRAINED, band) == TRAINED  # two CPUs' 5.10 and 5.08
    assert reconcile_text(TRAINED.replace("5.10", "5.15"), TRAINED, band) == TRAINED  # at the band's edge (+ last digit)
    assert reconcile_text(TRAINED.replace("5.10", "5.17"), TRAINED, band) != TRAINED
    assert reconcile_text(TRAINED.replace("5.10", "5.08"), TRAINED) != TRAINED, "without the band it fails"


def test_a_band_covers_only_the_lines_with_its_text_and_never_words():
    band = [Band(0.05, key="MLM loss")]
    assert reconcile_text(TRAINED.replace("0.507", "0.520"), TRAINED, band) != TRAINED, "another line keeps the default"
    assert reconcile_text(TRAINED.replace("MLM loss 5.10", "MLM loss 5.11 (worse)"), TRAINED, band) != TRAINED
    every_line = [Band(0.03)]
    assert reconcile_text(TRAINED.replace("0.507", "0.520").replace("0.529", "0.541"), TRAINED, every_line) == TRAINED
    assert reconcile_text(TRAINED.replace("(2, 5)", "(2, 6)"), TRAINED, every_line) != TRAINED, "a shape is exact"
    assert reconcile_text(TRAINED.replace("95%", "96%"), TRAINED, every_line) != TRAINED


def test_integers_stay_exact_on_a_banded_line():
    stored = "step 500 correct 487 of 1000, accuracy 0.487\n"
    assert reconcile_text(stored.replace("0.487", "0.480"), stored, [Band(0.01)]) == stored
    assert reconcile_text(stored.replace("487 of", "480 of"), stored, [Band(10)]) != stored
    assert reconcile_text(stored.replace("500", "510"), stored, [Band(0.02, relative=True)]) != stored


def test_only_comments_declare_bands_and_a_misspelt_marker_is_an_error():
    assert declared_bands('text = "# NBVAL_TOLERANCE ±0.05"\nprint(text)') == []
    for typo in ("# nbval_tolerance ±0.05", "# NBVAL_TOLERANCES ±0.05", "x = 1  # NBVAL_TOLERANCE+0.05"):
        with pytest.raises(ValueError, match="malformed"):
            declared_bands(typo)


def test_every_band_s_text_is_in_its_cell_s_stored_output():
    """A band whose text matches no line would pass vacuously."""
    for source in sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(source, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            stored = "".join(output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
                             for output in cell.outputs)
            for band in declared_bands(cell.source):
                assert band.key is None or band.key in stored, f"{source.name}: no stored line has {band.key!r}"


def test_a_relative_band_scales_with_the_value():
    stored = "perplexity 200.0\n"
    assert reconcile_text("perplexity 205.0\n", stored, [Band(0.03, relative=True)]) == stored
    assert reconcile_text("perplexity 210.0\n", stored, [Band(0.03, relative=True)]) != stored


def test_every_marker_in_the_lessons_is_well_formed():
    for source in sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.py")):
        declared_bands(source.read_text())  # raises on a malformed one
