import json
import textwrap
from pathlib import Path

import pytest

from course_utils.classroom import paths, progress
from course_utils.classroom.quiz import AnswerError, QuizFormatError, answer, grade, load_quiz, parse_quiz, quiz_as_text

QUIZ = textwrap.dedent("""\
    lesson: "42"
    title: Test quiz
    questions:
      - id: pick
        type: single
        prompt: Pick B.
        options:
          - {text: a, why: not a}
          - {text: b, why: yes b, correct: true}
          - {text: c, why: not c}
      - id: many
        type: multiple
        points: 2
        prompt: Pick A and C.
        options:
          - {text: a, why: yes a, correct: true}
          - {text: b, why: not b}
          - {text: c, why: yes c, correct: true}
      - id: number
        type: numeric
        prompt: Two and a half?
        answer: 2.5
        tolerance: 0.1
        why: 2.5 it is.
      - id: word
        type: text
        prompt: Which mask hides the future?
        accept: [causal mask, causal]
        why: The causal mask.
    """)


@pytest.fixture
def quiz():
    return parse_quiz(QUIZ, Path("quizzes/42_test.yaml"))


def test_every_quiz_file_in_the_course_is_valid():
    files = sorted(paths.QUIZZES.glob("*.yaml"))
    assert files
    for path in files:
        quiz = load_quiz(path.name[:2])
        assert quiz.lesson == path.name[:2]
        assert len(quiz.questions) >= 5, f"{path.name}: a lesson's quiz has at least 5 questions"


def _key_is_the_unique_longest_option(question) -> bool:
    lengths = [len(option.text) for option in question.options]
    longest = max(lengths)
    return lengths.count(longest) == 1 and question.letters[lengths.index(longest)] in question.answers


@pytest.mark.parametrize("lesson", sorted(path.name[:2] for path in paths.QUIZZES.glob("*.yaml")))
def test_option_lengths_do_not_give_the_key_away(lesson):
    """Always picking the longest option must not pay: in at most a third of a
    quiz's single-choice questions is the key the unique longest option."""
    singles = [question for question in load_quiz(lesson).questions.values() if question.type == "single"]
    giveaways = [question.id for question in singles if _key_is_the_unique_longest_option(question)]
    assert len(giveaways) <= len(singles) / 3, (
        f"the right option is also the longest in {giveaways} ({len(giveaways)} of {len(singles)} single-choice "
        "questions): balance the options' lengths")


@pytest.mark.parametrize("value, correct", [("B", True), ("b", True), (" b ", True), ("A", False)])
def test_single_choice(quiz, value, correct):
    feedback = grade(quiz.questions["42.pick"], value)
    assert feedback.correct is correct and feedback.points == (1 if correct else 0)
    assert ("yes b" if correct else "not a") in feedback.explanation


@pytest.mark.parametrize("value, correct", [(["A", "C"], True), ("ca", True), ("A, C", True), (["A"], False),
                                            (["A", "B", "C"], False)])
def test_multiple_choice(quiz, value, correct):
    feedback = grade(quiz.questions["42.many"], value)
    assert feedback.correct is correct and feedback.points == (2 if correct else 0)


@pytest.mark.parametrize("value, correct", [(2.5, True), (2.59, True), ("2.45", True), (3, False), (2.61, False),
                                            ("2,5", True), (" 2,45 ", True), ("2,61", False)])
def test_numeric_with_tolerance(quiz, value, correct):
    assert grade(quiz.questions["42.number"], value).correct is correct


def test_numbers_are_read_as_people_write_them():
    ffn = load_quiz("06").questions["06.ffn-parameters"]
    for written in ("2,099,712", "2 099 712", "2099712"):
        assert grade(ffn, written).correct, written
    power = load_quiz("06").questions["06.plain-stack"]
    assert grade(power, "\u22126").correct and grade(power, "-6").correct  # a typographic minus too


@pytest.mark.parametrize("value, correct", [("causal", True), ("  Causal  Mask. ", True), ("padding", False)])
def test_short_text_is_normalised(quiz, value, correct):
    assert grade(quiz.questions["42.word"], value).correct is correct


@pytest.mark.parametrize("question, value, message", [
    ("42.pick", 1, "expects one letter"),
    ("42.pick", "", "empty"),
    ("42.pick", "E", "options A, B, C"),
    ("42.pick", "AB", "exactly one letter"),
    ("42.many", 3.0, "expects letters"),
    ("42.number", "two", "expects a number"),
    ("42.number", True, "expects a number"),
    ("42.number", float("nan"), "finite"),
    ("42.number", 10 ** 400, "ordinary size"),  # once an OverflowError: a grader error that cost the notebook
    ("42.word", 7, "short text"),
    ("42.word", "   ", "short text"),
])
def test_malformed_answers_get_a_clear_message(quiz, question, value, message):
    with pytest.raises(AnswerError, match=message):
        grade(quiz.questions[question], value)


def test_answer_prints_feedback_and_records_progress(progress_file, capsys):
    answer("00.edit", "B")
    assert "✓ Correct (1/1) · 00.edit" in capsys.readouterr().out
    answer("00.edit", "A")
    assert "✗ Not quite (0/1)" in capsys.readouterr().out
    lines = [json.loads(line) for line in progress_file.read_text().splitlines()]
    assert [(entry["item"], entry["points"]) for entry in lines] == [("00.edit", 1), ("00.edit", 0)]
    assert progress.latest_results(progress_file)["00.edit"]["points"] == 0


def test_unanswered_is_not_an_error(progress_file, capsys):
    answer("00.edit", None)
    assert "not answered yet" in capsys.readouterr().out
    assert not progress_file.exists()


@pytest.mark.parametrize("question_id, value, message", [
    ("00.nope", "A", "⚠ Quiz 00 has no question '00.nope'. Its questions: 00.offline"),
    ("99.x", "A", "⚠ There is no quiz for lesson '99'"),
    ("offline", "A", "⚠ A question id looks like"),
    (7, "A", "⚠ A question id looks like"),
    ("00.offline", "", "⚠ 00.offline: the answer is empty"),
    ("00.offline", 2, "⚠ 00.offline expects one letter"),
    ("00.offline", "Z", "⚠ 00.offline has options A, B, C; 'Z' is not one of them"),
    ("00.first-cell", "x" * 200_000, "⚠ 00.first-cell: this answer is 200,000 characters long; answers are at most 200"),
])
def test_answer_explains_what_it_cannot_grade_and_never_raises(question_id, value, message, capsys, progress_file):
    answer(question_id, value)
    out = capsys.readouterr().out
    assert out.startswith(message) and out.count("\n") == 1, "one line"
    assert not progress_file.exists()


def test_a_graded_answer_is_saved_with_its_value(progress_file):
    answer("00.rare-words", {"D", "A"})
    entry = json.loads(progress_file.read_text())
    assert entry["item"] == "00.rare-words" and entry["answer"] == ["A", "D"]


def test_answer_without_a_value_is_not_answered_yet(capsys):
    answer("00.offline")
    assert "not answered yet" in capsys.readouterr().out


def test_text_fallback_lists_every_question_and_option(quiz):
    text = quiz_as_text(quiz)
    assert "42.pick  (1 point, one answer)" in text and "    C) c" in text
    assert "42.many  (2 points, one or more answers)" in text
    assert "yes b" not in text, "the plain-text quiz never shows explanations before an answer"


@pytest.mark.parametrize("edit, message", [
    (lambda q: q.replace('lesson: "42"', 'lesson: "4"'), "field 'lesson' must be two digits"),
    (lambda q: q.replace("title: Test quiz\n", ""), "missing field 'title'"),
    (lambda q: q.replace("type: numeric", "type: essay"), r"question 3 \('number'\): field 'type' must be one of"),
    (lambda q: q.replace("{text: b, why: yes b, correct: true}", "{text: b, why: yes b}"),
     r"question 1 \('pick'\): field 'options': no option is marked"),
    (lambda q: q.replace("{text: a, why: not a}", "{text: a}"), r"question 1 \('pick'\): field 'options', option 1: needs 'text' and 'why'"),
    (lambda q: q.replace("answer: 2.5", "answer: lots"), r"question 3 \('number'\): field 'answer' must be a number"),
    (lambda q: q.replace("accept: [causal mask, causal]", "accept: []"), "field 'accept' must be a non-empty list"),
    (lambda q: q.replace("id: many", "id: pick"), "duplicate id '42.pick'"),
    (lambda q: q.replace("points: 2", "points: -1"), "field 'points' must be a positive number"),
    (lambda q: q + "  - [unclosed\n", "not valid YAML"),
])
def test_a_malformed_quiz_file_names_file_question_and_field(edit, message):
    with pytest.raises(QuizFormatError, match=r"quizzes/42_test\.yaml.*" + message):
        parse_quiz(edit(QUIZ), Path("quizzes/42_test.yaml"))


def test_a_damaged_sealed_file_says_to_rebuild_the_release():
    damaged = 'lesson: "42"\ntitle: T\nsalt: abc\nquestions:\n  - {id: q, type: single, prompt: P, keys: [x], options: [{text: a}]}\n'
    with pytest.raises(QuizFormatError, match=r"42_test\.yaml: question 1 \('q'\): a sealed question is damaged .* `course student`"):
        parse_quiz(damaged, Path("quizzes/42_test.yaml"))


def test_numeric_tolerance_holds_at_its_edges(quiz):
    question = quiz.questions["42.number"]  # 2.5 ± 0.1
    assert all(grade(question, 2.5 + d).correct for d in (-0.1, -0.099, 0.05, 0.099, 0.1))
    assert not any(grade(question, 2.5 + d).correct for d in (-0.11, 0.11, 1.0))


def test_show_quiz_prints_text_outside_jupyter(monkeypatch, capsys):
    from course_utils.classroom.quiz import HEADLESS_VARIABLE, show_quiz

    monkeypatch.delenv(HEADLESS_VARIABLE, raising=False)  # not headless, but no kernel either
    show_quiz("00")
    out = capsys.readouterr().out
    assert out.startswith("Quiz 00 · How this course works") and "00.offline  (1 point, one answer)" in out


def test_the_quiz_widget_shows_the_quiz_as_text_where_only_text_is_kept(monkeypatch):
    """nbconvert and papermill keep a widget's text/plain: it must be the quiz."""
    from IPython import display as ipython_display

    from course_utils.classroom import quiz as quiz_module

    shown = []
    monkeypatch.setattr(quiz_module.env, "widgets_can_show", lambda: True)
    monkeypatch.setattr(ipython_display, "display", shown.append)
    quiz_module.show_quiz("00")
    bundle = shown[0]._repr_mimebundle_()
    assert bundle["text/plain"] == quiz_as_text(load_quiz("00"))
    assert "application/vnd.jupyter.widget-view+json" in bundle


@pytest.mark.parametrize("quiz_file", sorted(Path(__file__).parent.parent.joinpath("quizzes").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_question_is_answered_right_in_its_lesson_s_solution_cell(quiz_file):
    """The instructor's edition answers each question of the quiz, once and correctly,
    so that a new question cannot ship without its worked answer."""
    import ast

    from course_utils.classroom.quiz import grade

    lesson = quiz_file.stem[:2]
    quiz = load_quiz(lesson)
    source = next(quiz_file.parent.parent.joinpath("notebooks").glob(f"{lesson}_*.py")).read_text(encoding="utf-8")
    answered = [(call.args[0].value, ast.literal_eval(call.args[1])) for call in ast.walk(ast.parse(source))
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "answer" and len(call.args) == 2]
    assert sorted(question_id for question_id, _ in answered) == sorted(quiz.questions)
    for question_id, value in answered:
        assert grade(quiz.questions[question_id], value).correct, (question_id, value)


def test_quiz_widget_checks_are_practice_and_progress_says_what_is_not_handed_in(progress_file):
    """The grader reads the answer(...) cell: a widget's Check never counts as
    handed in, and exploring options there never undoes an answer given."""
    from course_utils.classroom.quiz import hand_in_line
    from course_utils.classroom.scores import progress_table

    answer("00.edit", "B")  # handed in, right
    progress.record("00.edit", progress.WIDGET_KIND, 0, 1, answer="A")  # then another option explored
    progress.record("00.offline", progress.WIDGET_KIND, 1, 1, answer="A")  # only ever checked in the widget
    results = progress.latest_results(progress_file)
    assert results["00.edit"]["points"] == 1 and "00.offline" not in results
    table = progress_table(progress_file)
    assert "not handed in: 00.offline" in table and "00.edit" not in table.split("not handed in:")[1]
    line = hand_in_line(load_quiz("00").questions["00.offline"], "A")
    assert 'answer("00.offline", "A")' in line and "answer cell" in line


@pytest.mark.parametrize("lesson, written", [("00", "setup_notebook(seed = 0)"), ("00", "setup_notebook( )"),
                                             ("02", "one over L"), ("02", "1 / L"), ("02", "L ** -1")])
def test_short_text_answers_pass_as_a_person_would_write_them(lesson, written):
    question = next(question for question in load_quiz(lesson).questions.values() if question.type == "text")
    assert grade(question, written).correct, written
