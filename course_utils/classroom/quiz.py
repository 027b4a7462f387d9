"""Quizzes: read from quizzes/NN_slug.yaml, shown as widgets in JupyterLab or
as plain text in a headless run, and graded the same way by `answer(...)`.

A quiz file looks like this (every option carries its own explanation):

    lesson: "00"
    title: How this course works
    questions:
      - id: offline                 # answered as "00.offline"
        type: single                # single | multiple | numeric | text
        points: 1                   # optional, 1 by default
        prompt: Where does the course load its pretrained encoder from?
        options:
          - text: A local folder installed by a Python package
            correct: true
            why: The course runs offline; the weights ship in a package.
          - text: The Hugging Face hub, at first use
            why: No lesson opens a network connection.
      - id: words
        type: numeric
        prompt: ...
        answer: 3
        tolerance: 0            # optional, 0 by default
        why: ...
      - id: mask
        type: text
        prompt: ...
        accept: [attention mask, mask]
        why: ...
"""

import base64
import hashlib
import html
import math
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from course_utils import env

from . import paths, progress

QUESTION_TYPES = ("single", "multiple", "numeric", "text")
HEADLESS_VARIABLE = env.HEADLESS_VARIABLE


class QuizFormatError(ValueError):
    """A quiz file does not follow the format above."""


class AnswerError(ValueError):
    """An answer that cannot be graded (unknown id, wrong type, ...)."""


@dataclass
class Option:
    text: str
    why: str


@dataclass
class Question:
    """One question, graded by comparing a salted hash of the answer's
    canonical form with `keys`. The same code grades an authoring file (keys
    computed from its plain answers) and a sealed student file (keys stored)."""

    id: str  # the full id, "00.offline"
    type: str
    prompt: str
    points: float = 1
    options: list[Option] = field(default_factory=list)
    why: str = ""  # numeric and text questions
    keys: frozenset[str] = frozenset()  # salted hashes of every accepted canonical answer
    salt: str = ""
    step: float = 0.0  # numeric: answers are compared on a grid of this step (a tenth of the tolerance)
    right_options: int = 0  # multiple choice: how many options are right, for feedback
    answers: tuple[str, ...] = ()  # the canonical right answers: authoring files only, never sealed

    @property
    def letters(self) -> str:
        return string.ascii_uppercase[: len(self.options)]


@dataclass
class Quiz:
    lesson: str
    title: str
    questions: dict[str, Question]
    source: Path


@dataclass
class Feedback:
    question: Question
    correct: bool
    points: float
    explanation: str

    def __str__(self) -> str:
        mark = "✓ Correct" if self.correct else "✗ Not quite"
        return f"{mark} ({self.points:g}/{self.question.points:g}) · {self.question.id}\n{self.explanation}"


# --- keys: hashes of canonical answers, and sealed explanations -------------------

def answer_key(salt: str, question_id: str, canonical: str) -> str:
    return hashlib.sha256(f"{salt}|{question_id}|{canonical}".encode()).hexdigest()[:32]


def numeric_canonical(value: float, step: float) -> str:
    """The grid cell of a number; with no tolerance, the exact float."""
    return str(round(value / step)) if step else repr(float(value))


CELLS_PER_TOLERANCE = 10
MAX_ANSWER_LENGTH = 200  # characters of a text answer, or letters of a multiple choice


def numeric_cells(answer: float, tolerance: float) -> tuple[float, list[str]]:
    """(step, canonical forms) accepting every number within the tolerance,
    give or take half a step (a twentieth of the tolerance) at the edges."""
    if not tolerance:
        return 0.0, [numeric_canonical(answer, 0.0)]
    step = tolerance / CELLS_PER_TOLERANCE
    return step, [str(j) for j in range(round((answer - tolerance) / step), round((answer + tolerance) / step) + 1)]


def _keystream(key: str, length: int) -> bytes:
    blocks = (hashlib.sha256(f"{key}|{n}".encode()).digest() for n in range(length // 32 + 1))
    return b"".join(blocks)[:length]


def seal_text(text: str, key: str) -> str:
    """Obscure an explanation so that a student file shows no answer in plain
    text (it says which option was right); `unseal_text` reverses it."""
    data = text.encode()
    return base64.b64encode(bytes(a ^ b for a, b in zip(data, _keystream(key, len(data))))).decode()


def unseal_text(sealed: str, key: str) -> str:
    data = base64.b64decode(sealed)
    return bytes(a ^ b for a, b in zip(data, _keystream(key, len(data)))).decode()


# --- reading and validating quiz files ---------------------------------------

def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise QuizFormatError(f"{where}: {problem}")


def parse_quiz(text: str, source: Path) -> Quiz:
    """Validate a quiz file's text; an error names the file, question and field."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise QuizFormatError(f"{source}: not valid YAML ({error})") from None
    _require(isinstance(data, dict), str(source), "expected a mapping with 'lesson', 'title' and 'questions'")
    for key in ("lesson", "title", "questions"):
        _require(key in data, str(source), f"missing field '{key}'")
    lesson = str(data["lesson"])
    _require(re.fullmatch(r"\d\d", lesson) is not None, str(source), f"field 'lesson' must be two digits, got {lesson!r}")
    _require(isinstance(data["questions"], list) and data["questions"], str(source),
             "field 'questions' must be a non-empty list")
    salt = str(data.get("salt", ""))  # present in sealed (student) files only
    questions = {}
    for index, raw in enumerate(data["questions"], start=1):
        where = f"{source}: question {index}"
        question = _parse_sealed(raw, lesson, salt, where) if salt else _parse_question(raw, lesson, where)
        _require(question.id not in questions, where, f"duplicate id '{question.id}'")
        questions[question.id] = question
    return Quiz(lesson, str(data["title"]), questions, source)


def _parse_common(raw, lesson: str, where: str) -> tuple[Question, str]:
    _require(isinstance(raw, dict), where, "expected a mapping with 'id', 'type' and 'prompt'")
    for key in ("id", "type", "prompt"):
        _require(key in raw, where, f"missing field '{key}'")
    where = f"{where} ('{raw['id']}')"
    _require(raw["type"] in QUESTION_TYPES, where, f"field 'type' must be one of {', '.join(QUESTION_TYPES)}, got {raw['type']!r}")
    points = raw.get("points", 1)
    _require(isinstance(points, (int, float)) and points > 0, where, f"field 'points' must be a positive number, got {points!r}")
    return Question(id=f"{lesson}.{raw['id']}", type=raw["type"], prompt=str(raw["prompt"]).strip(), points=points), where


def _parse_question(raw, lesson: str, where: str) -> Question:
    """An authoring question, with its answers in plain text."""
    question, where = _parse_common(raw, lesson, where)
    if question.type in ("single", "multiple"):
        options = raw.get("options")
        _require(isinstance(options, list) and len(options) >= 2, where, "field 'options' must list at least two options")
        right = ""
        for number, option in enumerate(options, start=1):
            _require(isinstance(option, dict) and "text" in option and "why" in option, where,
                     f"field 'options', option {number}: needs 'text' and 'why' (the explanation)")
            question.options.append(Option(str(option["text"]), str(option["why"]).strip()))
            right += question.letters[-1] if option.get("correct", False) else ""
        _require(len(right) >= 1, where, "field 'options': no option is marked 'correct: true'")
        _require(question.type == "multiple" or len(right) == 1, where, "field 'options': a single-choice question needs exactly one correct option")
        canonical, question.right_options = [right], len(right)
    else:
        _require("why" in raw, where, "missing field 'why' (the explanation)")
        question.why = str(raw["why"]).strip()
    if question.type == "numeric":
        _require(isinstance(raw.get("answer"), (int, float)) and not isinstance(raw.get("answer"), bool), where,
                 "field 'answer' must be a number")
        tolerance = raw.get("tolerance", 0)
        _require(isinstance(tolerance, (int, float)) and tolerance >= 0, where, "field 'tolerance' must be a number, not negative")
        question.step, canonical = numeric_cells(float(raw["answer"]), float(tolerance))
    if question.type == "text":
        accept = raw.get("accept")
        _require(isinstance(accept, list) and accept and all(isinstance(a, str) and normalise_text(a) for a in accept), where,
                 "field 'accept' must be a non-empty list of accepted answers")
        canonical = [normalise_text(a) for a in accept]
    question.answers = tuple(canonical)
    question.keys = frozenset(answer_key("", question.id, c) for c in canonical)
    return question


def _parse_sealed(raw, lesson: str, salt: str, where: str) -> Question:
    """A student question: hashed keys and sealed explanations (see student.py)."""
    question, where = _parse_common(raw, lesson, where)
    try:
        question.salt, question.keys = salt, frozenset(raw["keys"])
        question.step, question.right_options = float(raw.get("step", 0)), int(raw.get("right_options", 0))
        if question.type in ("single", "multiple"):
            letters = string.ascii_uppercase
            question.options = [Option(str(o["text"]), unseal_text(o["why"], f"{salt}|{question.id}|{letters[n]}"))
                                for n, o in enumerate(raw["options"])]
        else:
            question.why = unseal_text(raw["why"], f"{salt}|{question.id}")
    except (KeyError, TypeError, ValueError) as error:
        raise QuizFormatError(f"{where}: a sealed question is damaged ({error!r}); rebuild the release with `course student`") from None
    return question


def quiz_path(lesson: str) -> Path:
    """quizzes/00_setup.yaml for "00", "00_setup" or "00.anything"."""
    number = str(lesson)[:2]
    matches = sorted(paths.QUIZZES.glob(f"{number}_*.yaml"))
    if not matches:
        raise AnswerError(f"There is no quiz for lesson {number!r} in {paths.QUIZZES}.")
    return matches[0]


def load_quiz(lesson: str) -> Quiz:
    path = quiz_path(lesson)
    return parse_quiz(path.read_text(encoding="utf-8"), path)


# --- grading -------------------------------------------------------------------

def normalise_text(text: str) -> str:
    """Case, surrounding punctuation and repeated spaces do not matter, nor
    spaces beside a symbol: "setup_notebook(seed = 0)" is "setup_notebook(seed=0)",
    "1 / L" is "1/L"."""
    spaced = " ".join(text.lower().split()).strip(string.punctuation + " ")
    return re.sub(r" ?([^\w\s]) ?", r"\1", spaced)


def _letters(question: Question, value) -> str:
    usage = f'answer("{question.id}", "{question.letters[0]}")'
    if question.type == "multiple":
        usage = f'answer("{question.id}", ["{question.letters[0]}", "{question.letters[-1]}"])'
    if isinstance(value, str):
        chosen = [letter for letter in value.upper() if not letter.isspace() and letter != ","]
    elif isinstance(value, (list, tuple, set)) and question.type == "multiple":
        chosen = [str(letter).strip().upper() for letter in value]
    else:
        raise AnswerError(f"{question.id} expects {'letters' if question.type == 'multiple' else 'one letter'}, "
                          f"got {value!r} ({type(value).__name__}). Example: {usage}")
    if not chosen:
        raise AnswerError(f"{question.id}: the answer is empty. Example: {usage}")
    unknown = [letter for letter in chosen if letter not in question.letters]
    if unknown:
        raise AnswerError(f"{question.id} has options {', '.join(question.letters)}; "
                          f"{', '.join(map(repr, unknown))} is not one of them. Example: {usage}")
    if question.type == "single" and len(chosen) != 1:
        raise AnswerError(f"{question.id} takes exactly one letter, got {len(chosen)}. Example: {usage}")
    return "".join(sorted(set(chosen)))


def canonical_answer(question: Question, value) -> str:
    """The one string an answer is reduced to before hashing; raises AnswerError
    for an answer of the wrong form."""
    size = len(value) if isinstance(value, (str, list, tuple, set)) else 0
    if size > MAX_ANSWER_LENGTH:
        raise AnswerError(f"{question.id}: this answer is {size:,} {'characters' if isinstance(value, str) else 'items'} "
                          f"long; answers are at most {MAX_ANSWER_LENGTH} (a letter, a number or a few words).")
    if question.type in ("single", "multiple"):
        return _letters(question, value)
    if question.type == "numeric":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise AnswerError(f"{question.id} expects a number, got {value!r} ({type(value).__name__}).")
        try:
            number = float(_as_written(value) if isinstance(value, str) else value)
        except ValueError:
            raise AnswerError(f"{question.id} expects a number, got the text {value!r}.") from None
        except OverflowError:  # an integer past any float, 10**400 say
            raise AnswerError(f"{question.id} expects a number of ordinary size, got one of {len(str(value)):,} digits.") from None
        if not math.isfinite(number):
            raise AnswerError(f"{question.id} expects a finite number, got {value!r}.")
        return numeric_canonical(number, question.step)
    if not isinstance(value, str) or not normalise_text(value):
        raise AnswerError(f'{question.id} expects a short text answer, e.g. answer("{question.id}", "your words"); got {value!r}.')
    return normalise_text(value)


def _as_written(text: str) -> str:
    """A number as people write it, in the form float() reads: "0,72" (a
    decimal comma), "2,099,712" and "2 099 712" (thousands separated)."""
    text = text.strip().replace("\u2009", " ").replace("\u00a0", " ").replace("\u2212", "-")  # thin, no-break, minus
    if re.fullmatch(r"-?[1-9]\d{0,2}([, ]\d{3})+(\.\d+)?", text):  # not "0,725", a decimal comma
        return text.replace(",", "").replace(" ", "")
    if re.fullmatch(r"-?\d+,\d+", text):
        return text.replace(",", ".")
    return text


def grade(question: Question, value) -> Feedback:
    """Grade one answer; raise AnswerError for an answer of the wrong form."""
    canonical = canonical_answer(question, value)
    correct = answer_key(question.salt, question.id, canonical) in question.keys
    points = question.points if correct else 0
    if question.type in ("single", "multiple"):
        notes = [f"{letter}) {question.options[question.letters.index(letter)].why}" for letter in canonical]
        if question.type == "multiple" and not correct:
            notes.append(f"Not quite the right set: {question.right_options} of the options are right.")
        return Feedback(question, correct, points, "\n".join(notes))
    if correct:
        return Feedback(question, True, points, question.why)
    if question.type == "numeric":
        return Feedback(question, False, 0, "Check your arithmetic and try again." +
                        (f" (Answers within ±{CELLS_PER_TOLERANCE * question.step:g} count.)" if question.step else ""))
    return Feedback(question, False, 0, "Not the word we are looking for; reread the section and try again.")


def answer(question_id: str, value=None) -> None:
    """Grade an answer in code, print the feedback and save it to your progress.
    `answer("00.offline", "A")`; multiple choice: `answer("00.parts", ["A", "C"])`.
    An answer that cannot be graded prints what is wrong and raises nothing, so
    the answers after it in the same cell still count."""
    try:
        question = _find_question(question_id)
        if value is None or value is Ellipsis:
            print(f"… {question_id}: not answered yet.")
            return
        feedback = grade(question, value)
    except (AnswerError, QuizFormatError) as problem:
        print(f"⚠ {problem}")
        return
    progress.record(question.id, "quiz", feedback.points, question.points, answer=value)
    print(feedback)


def hand_in_line(question: Question, given) -> str:
    """What a widget's feedback says about handing in: the grader reads the
    answer(...) cell, and this is the line that holds the learner's answer."""
    return (f"Checking here is practice. To hand this answer in, put answer({question.id!r}, {given!r}) "
            "in the answer cell below the quiz and run it.").replace("'", '"')


def _find_question(question_id) -> Question:
    if not isinstance(question_id, str) or not re.fullmatch(r"\d\d\.[\w-]+", question_id):
        raise AnswerError(f"A question id looks like \"00.offline\" (lesson number, dot, name); got {question_id!r}.")
    quiz = load_quiz(question_id)
    if question_id not in quiz.questions:
        raise AnswerError(f"Quiz {quiz.lesson} has no question {question_id!r}. Its questions: {', '.join(quiz.questions)}.")
    return quiz.questions[question_id]


# --- showing a quiz --------------------------------------------------------------

def _kind(question: Question) -> str:
    return {"single": "one answer", "multiple": "one or more answers", "numeric": "a number", "text": "a word or two"}[question.type]


QUIZ_AS_TEXT_FOOTER = ('Hand in your answers in the cell below, e.g. answer("%s", ...). '
                       "In JupyterLab, run this cell to try each question with buttons first.")


def quiz_as_text(quiz: Quiz) -> str:
    lines = [f"Quiz {quiz.lesson} · {quiz.title} ({len(quiz.questions)} questions)"]
    for question in quiz.questions.values():
        lines += ["", f"{question.id}  ({question.points:g} point{'s' * (question.points != 1)}, {_kind(question)})",
                  *("  " + line for line in question.prompt.splitlines())]
        lines += [f"    {letter}) {option.text}" for letter, option in zip(question.letters, question.options)]
    # Shown where widgets cannot be (a headless run, a stored output, the website):
    # in JupyterLab, running the cell turns it into buttons.
    lines += ["", QUIZ_AS_TEXT_FOOTER % next(iter(quiz.questions))]
    return "\n".join(lines)


def show_quiz(lesson: str) -> None:
    """The lesson's quiz: widgets in JupyterLab, plain text in a headless run."""
    quiz = load_quiz(lesson)
    if not env.widgets_can_show():
        print(quiz_as_text(quiz))
        return
    import ipywidgets as widgets
    from IPython.display import display

    class QuizBox(widgets.VBox):
        """Widgets where a front end can draw them; the quiz as text wherever
        only text is kept (nbconvert, papermill: otherwise 'VBox(children=...)')."""

        def _repr_mimebundle_(self, **kwargs):
            return {**super()._repr_mimebundle_(**kwargs), "text/plain": quiz_as_text(quiz)}

    display(QuizBox([widgets.HTML(f"<h3>Quiz {quiz.lesson} · {html.escape(quiz.title)}</h3>")] +
                    [_question_widget(question) for question in quiz.questions.values()]))


def _question_widget(question: Question):
    import ipywidgets as widgets

    labels = [f"{letter}) {option.text}" for letter, option in zip(question.letters, question.options)]
    if question.type == "single":
        control = widgets.RadioButtons(options=labels, value=None, layout={"width": "max-content"})
        read = lambda: control.value and control.value[0]  # noqa: E731 (the letter)
    elif question.type == "multiple":
        boxes = [widgets.Checkbox(description=label, indent=False, layout={"width": "max-content"}) for label in labels]
        control = widgets.VBox(boxes)
        read = lambda: [label[0] for label, box in zip(labels, boxes) if box.value]  # noqa: E731
    else:
        control = widgets.Text(placeholder="a number" if question.type == "numeric" else "your answer")
        read = lambda: control.value  # noqa: E731
    button = widgets.Button(description="Check", button_style="primary")
    feedback = widgets.HTML()

    def on_check(_):
        try:
            result = grade(question, read())
        except AnswerError as error:
            feedback.value = f"<p style='color:#a15c00'>{html.escape(str(error))}</p>"
            return
        given = read()
        progress.record(question.id, progress.WIDGET_KIND, result.points, question.points, answer=given)
        colour = "#1a7f37" if result.correct else "#b42318"
        verdict = "✓ Correct" if result.correct else "✗ Not quite"
        feedback.value = (f"<p style='color:{colour}'><b>{verdict}</b> ({result.points:g}/{question.points:g})</p>"
                          f"<p>{html.escape(result.explanation).replace(chr(10), '<br>')}</p>"
                          f"<p style='color:#555'>{html.escape(hand_in_line(question, given))}</p>")

    button.on_click(on_check)
    header = widgets.HTML(f"<p><b>{html.escape(question.id)}</b> <i>({_kind(question)})</i><br>"
                          f"{html.escape(question.prompt).replace(chr(10), '<br>')}</p>")
    return widgets.VBox([header, control, button, feedback], layout={"margin": "0 0 1em 0"})
