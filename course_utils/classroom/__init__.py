"""The machinery that runs the course, kept apart from the models a learner
reads in `course_utils/`: quizzes, the exercise checkers (`checks/`, one module
per lesson topic), the progress log and scores, the student release, batch
grading, the headless runner, lesson discovery, `course doctor`, the `course`
command (`cli`) and the pytest plugin.

Imports go one way: this package imports the models to compute expected
answers; the models never import it.

What a notebook needs from here is short:

    from course_utils.classroom import answer, show_quiz
    from course_utils.classroom.checks.attention import check_attention
"""

from .quiz import answer, show_quiz

__all__ = ["answer", "show_quiz"]
