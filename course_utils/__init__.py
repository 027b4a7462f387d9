"""Helpers for the transformers course.

Each lesson builds a piece in its notebook; the reviewed version of that piece
lives here, so that later lessons import it instead of the learner's exercise.
The modules at this level are the ones a learner reads (set-up, data,
tokenization, attention, positional encodings, the transformer, training,
plots); the machinery that runs the course (quizzes, checkers, grading, the
`course` command) is in `classroom/`, which imports these and never the reverse.
"""

from .env import setup_notebook

__all__ = ["setup_notebook"]
