"""Checkers accept the reference, name each common mistake, and survive
whatever a learner's code does."""

import collections
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from course_utils.classroom.checks import Checker
from course_utils.classroom.checks.words import check_count_words, check_unseen_share

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def reference(text):
    return collections.Counter(re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower()))


def reference_coverage(counts, n):
    return sum(count for _, count in counts.most_common(n)) / sum(counts.values())


def run(checker, function, capsys, coverage=reference_coverage):
    checker(function, coverage)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(check_count_words, reference, capsys)
    assert "All 9 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("00.count_words", 1, 1)


def test_forgetting_lower_case_is_named(capsys, progress_file):
    out = run(check_count_words, lambda text: collections.Counter(re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", text)), capsys)
    assert "✗ case" in out and "lower-case the text first" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_splitting_on_spaces_is_named(capsys):
    out = run(check_count_words, lambda text: collections.Counter(text.lower().split()), capsys)
    assert "✓ case" in out and "✗ punctuation" in out and "'night,': 1" in out and "look at what you split on" in out


def test_dropping_apostrophes_is_named(capsys):
    out = run(check_count_words, lambda text: collections.Counter(re.findall(r"[a-z]+", text.lower())), capsys)
    assert "✗ apostrophes" in out and "o'er" in out


def test_not_attempted_yet(capsys, progress_file):
    def count_words(text):
        raise NotImplementedError

    out = run(check_count_words, count_words, capsys)
    assert "not attempted yet" in out and "✗" not in out
    assert not progress_file.exists()


def test_an_exception_in_learner_code_is_reported_not_raised(capsys):
    def count_words(text):
        return {word: 1 / 0 for word in text.split()}

    out = run(check_count_words, count_words, capsys)
    assert "it raised ZeroDivisionError: division by zero" in out and "at line" in out


def test_a_crash_in_a_notebook_names_the_cell_as_jupyterlab_numbers_it():
    """In IPython (as in JupyterLab), the report says which cell: its [n]."""
    cells = ["from course_utils.classroom.checks.words import check_count_words",
             "import collections\n\ndef count_words(text):\n    words = text.split()\n    return collections.Counter(w[9] for w in words)",
             "check_count_words(count_words, lambda counts, n: 0.5)"]
    script = ("from IPython.core.interactiveshell import InteractiveShell\n"
              "shell = InteractiveShell.instance(colors='NoColor')\n"
              f"for cell in {cells!r}:\n    shell.run_cell(cell, store_history=True)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "(in cell [2], at line 5: return collections.Counter(w[9] for w in words))" in result.stdout, result.stdout


def test_wrong_return_type_and_non_function(capsys):
    assert "expected: dict or collections.Counter" in run(check_count_words, lambda text: text.split(), capsys)
    assert "your answer is a function" in run(check_count_words, 42, capsys)


def test_close_reports_shape_dtype_nan_and_position(capsys):
    want = torch.arange(6.0).reshape(2, 3)
    with Checker("99.demo") as check:
        check.close("right", want.clone(), want)
        check.close("numpy is fine", want.numpy(), want)
        check.close("shape", want.T, want)
        check.close("dtype", want.long(), want)
        check.close("nan", torch.full((2, 3), float("nan")), want)
        wrong = want.clone()
        wrong[1, 2] = 9
        check.close("values", wrong, want)
        check.close("type", [[0, 1, 2]], want)
    out = capsys.readouterr().out
    assert "✓ right" in out and "✓ numpy is fine" in out
    assert "expected: shape (2, 3)\n      actual:   shape (3, 2)" in out
    assert "actual:   torch.int64" in out
    assert "NaN at position (0, 0)" in out
    assert "expected: 5.0000 at position (1, 2)\n      actual:   9.0000" in out
    assert "actual:   list" in out
    assert "2 of 7 checks passed" in out
    assert np.isfinite(want.numpy()).all()


def test_close_names_a_known_mistake(capsys):
    scores = torch.tensor([[1.0, 2.0], [3.0, 5.0]])
    with Checker("99.demo") as check:
        check.close("softmax", scores.softmax(dim=0), scores.softmax(dim=-1),
                    mistakes={"softmax over the wrong axis (dim=0)": scores.softmax(dim=0), "no softmax": scores})
    out = capsys.readouterr().out
    assert "hint:     your output is exactly what softmax over the wrong axis (dim=0) gives" in out


def test_a_partly_written_exercise_shows_what_passed_and_what_is_left(capsys, progress_file):
    def first_part(x):
        return x

    def second_part(x):
        raise NotImplementedError

    with Checker("99.parts") as check:
        check.that("first part", check.call(first_part, 1) == 1)
        check.call(second_part, 1)
        check.that("second part", True)
    out = capsys.readouterr().out
    assert "✓ first part" in out and "✗ the rest of the exercise" in out and "NotImplementedError" in out
    assert "not attempted yet" not in out and "second part" not in out
    assert '"points": 0' in progress_file.read_text()


def test_a_known_mistake_is_named_even_when_it_produces_nans(capsys):
    want = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    nan_output = torch.tensor([[float("nan"), float("nan")], [0.5, 0.5]])
    with Checker("99.demo") as check:
        check.close("weights", nan_output, want, mistakes={"the mask inverted": nan_output.clone()})
        check.close("mask", torch.tensor([True, True]), torch.tensor([True, False]))
    out = capsys.readouterr().out
    assert "NaN at position (0, 0)" in out and "exactly what the mask inverted gives" in out
    assert "expected: False at position (1,)" in out and "actual:   True" in out


def test_keeping_apostrophes_at_the_edges_is_named(capsys):
    out = run(check_count_words, lambda text: collections.Counter(re.findall(r"[a-z']+", text.lower())), capsys)
    assert "✓ apostrophes: " in out and "✗ apostrophes at the edges" in out and "\"'tis\": 1" not in out
    assert "a word starts and ends with a letter" in out


def test_counting_digits_as_letters_is_named(capsys):
    out = run(check_count_words, lambda text: collections.Counter(re.findall(r"\w+(?:'\w+)*", text.lower())), capsys)
    assert "✗ letters only" in out and "digits and underscores are not letters" in out


def test_a_character_loop_passes(capsys):
    def count_words(text):
        found, word = [], ""
        text = text.lower() + " "
        for i, char in enumerate(text):
            if "a" <= char <= "z" or (char == "'" and word and "a" <= text[i + 1] <= "z"):
                word += char
            elif word:
                found.append(word)
                word = ""
        return collections.Counter(found)

    assert "All 9 checks passed" in run(check_count_words, count_words, capsys)


@pytest.mark.parametrize("coverage, slip", [
    (lambda counts, n: sum(c for _, c in counts.most_common(n)) / len(counts), "dividing by the number of distinct words"),
    (lambda counts, n: n / sum(counts.values()), "counting the n words once each"),
    (lambda counts, n: sum(sorted(counts.values())[:n]) / sum(counts.values()), "the n least frequent words"),
    (lambda counts, n: sum(c for _, c in counts.most_common(n + 1)) / sum(counts.values()), "one word too many"),
    (lambda counts, n: sum(c for _, c in counts.most_common(n - 1)) / sum(counts.values()), "one word too few"),
])
def test_each_coverage_slip_is_named(capsys, coverage, slip):
    out = run(check_count_words, reference, capsys, coverage=coverage)
    assert "✗ coverage(counts, 3)" in out and f"your number is exactly what {slip}" in out


def test_coverage_beyond_the_vocabulary_is_one(capsys):
    def coverage(counts, n):
        ordered = sorted(counts.values(), reverse=True)
        return sum(ordered[i] for i in range(min(n, 6))) / sum(ordered) if n < len(ordered) else 0.0

    out = run(check_count_words, reference, capsys, coverage=coverage)
    assert "✓ coverage(counts, 3)" in out and "✗ coverage(counts, 10)" in out and "the share is 1" in out


def test_coverage_not_written_yet_after_count_words(capsys, progress_file):
    def coverage(counts, n):
        raise NotImplementedError

    out = run(check_count_words, reference, capsys, coverage=coverage)
    assert "✓ case" in out and "✗ the rest of the exercise" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_coverage_that_returns_no_number_is_reported(capsys):
    out = run(check_count_words, reference, capsys, coverage=lambda counts, n: counts.most_common(n))
    assert "expected: a number between 0 and 1" in out and "actual:   list" in out


@pytest.mark.parametrize("coverage, slip, where", [
    (lambda counts, n: sum(c for _, c in counts.most_common(n)) / len(counts),
     "dividing by the number of distinct words instead of running words", "look at the denominator"),
    (lambda counts, n: n / sum(counts.values()), "counting the n words once each instead of their occurrences",
     "look at what you add up"),
])
def test_a_coverage_hint_reads_as_one_sentence(capsys, coverage, slip, where):
    """The slip, then where to look: never a "; look at ..." inside the slip's name."""
    out = run(check_count_words, reference, capsys, coverage=coverage)
    assert f"your number is exactly what {slip} gives; {where}" in out


# --- part 3: unseen_share ------------------------------------------------------------

def reference_unseen_share(known, counts):
    unseen = sum(count for word, count in counts.items() if word not in known)
    return unseen / sum(counts.values())


def run_unseen(function, capsys):
    check_unseen_share(function)
    return capsys.readouterr().out


def test_unseen_share_reference_passes_and_is_recorded(capsys, progress_file):
    out = run_unseen(reference_unseen_share, capsys)
    assert "All 7 checks passed" in out and "✗" not in out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("00.unseen_share", 1, 1)


@pytest.mark.parametrize("unseen_share, slip", [
    (lambda known, counts: sum(word not in known for word in counts) / len(counts),
     "the share of distinct words instead of running words"),
    (lambda known, counts: 1 - reference_unseen_share(known, counts), "the share of the words that are known"),
    (lambda known, counts: reference_unseen_share(counts, known) if known else 1.0,
     "the share of the vocabulary missing from the new text"),
    (lambda known, counts: sum(c for w, c in counts.items() if w not in known) / sum(known.values()),
     "dividing by the vocabulary's running words"),
    (lambda known, counts: 100 * reference_unseen_share(known, counts), "a percentage instead of a share"),
])
def test_each_unseen_share_slip_is_named(capsys, progress_file, unseen_share, slip):
    out = run_unseen(unseen_share, capsys)
    assert f"your number is exactly what {slip}" in out and "✗ known" in out
    assert json.loads(progress_file.read_text())["points"] == 0


def test_unseen_share_that_changes_its_input_fails(capsys):
    def unseen_share(known, counts):
        share = reference_unseen_share(known, counts)
        for word in list(counts):
            if word in known:
                del counts[word]
        return share

    out = run_unseen(unseen_share, capsys)
    assert "✗ ...and leaves known and counts as they were" in out and "your function changed counts" in out


def test_unseen_share_that_looks_words_up_by_count_passes_a_counter_but_not_the_edges(capsys):
    """known[word] == 0 works for a Counter; a plain dict raises KeyError, named with its line."""
    out = run_unseen(lambda known, counts: sum(c for w, c in counts.items() if known[w] == 0) / sum(counts.values()),
                     capsys)
    assert "it raised KeyError" in out


def test_unseen_share_not_attempted(capsys, progress_file):
    def unseen_share(known, counts):
        raise NotImplementedError

    assert "not attempted yet" in run_unseen(unseen_share, capsys)
    assert not progress_file.exists()


# --- the learner's code, used downstream when it passed --------------------------------

def _reviewed_square(x):
    return x * x


def _check_square(square) -> None:
    with Checker("99.square") as check:
        for x in (2.0, -3.0):
            check.that(f"square({x})", check.call(square, x) == x * x)


def test_a_passing_answer_is_what_the_next_cells_run(capsys, progress_file):
    from course_utils.classroom.checks import yours_if_passed

    def square(x):
        return x ** 2

    _check_square(square)
    assert yours_if_passed(square, "99.square", _reviewed_square) is square
    assert "→ The next cells run your square: it passed its checks." in capsys.readouterr().out


def test_a_wrong_or_unwritten_answer_falls_back_to_the_reviewed_one_and_says_why(capsys, progress_file):
    from course_utils.classroom.checks import yours_if_passed

    def square(x):
        return 2 * x  # right for x = 2 only

    _check_square(square)
    assert yours_if_passed(square, "99.square", _reviewed_square) is _reviewed_square
    assert "the course's version of square (99.square: 1 of 2 checks passed)" in capsys.readouterr().out

    def stub(x):
        raise NotImplementedError

    _check_square(stub)
    assert yours_if_passed(stub, "99.square", _reviewed_square) is _reviewed_square
    assert "(99.square: not attempted yet)" in capsys.readouterr().out


def test_an_answer_redefined_after_its_check_is_not_trusted(capsys, progress_file):
    from course_utils.classroom.checks import yours_if_passed

    def square(x):
        return x * x

    _check_square(square)

    def square(x):  # noqa: F811 - the learner edits and reruns the definition, not the check
        return x + x

    assert yours_if_passed(square, "99.square", _reviewed_square) is _reviewed_square
    assert "changed since its check ran: run the check cell again" in capsys.readouterr().out
    assert yours_if_passed(square, "98.never_checked", _reviewed_square) is _reviewed_square
