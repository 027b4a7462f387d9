"""Where the course's folders are, found from this package's own location."""

import os
from pathlib import Path

# course_utils is installed in editable mode, so the folder that holds it is the
# course root: this file is <root>/course_utils/classroom/paths.py.
# COURSE_ROOT points elsewhere, e.g. at a student release being executed.
COURSE_ROOT = Path(os.environ.get("COURSE_ROOT", Path(__file__).resolve().parents[2]))
NOTEBOOKS = COURSE_ROOT / "notebooks"
QUIZZES = COURSE_ROOT / "quizzes"
BUILD = COURSE_ROOT / "build"
