"""Helpers for the transformers course.

Each lesson builds a piece in its notebook; the reviewed version of that piece
lives here, so that later lessons import it instead of the learner's exercise.
"""

from .env import setup_notebook

__all__ = ["setup_notebook"]
