"""Where the course's folders are.

The course root is, in this order: $COURSE_ROOT (`make practice` sets it for
JupyterLab; a grading sandbox sets it to the release); else the copy of the
course that holds the current folder, so that `course progress` typed in a
practice copy reads that copy's log; else the folder that holds this package
(installed in editable mode: this file is <root>/course_utils/classroom/paths.py).
"""

import os
from pathlib import Path

from course_utils._sealed import SEALED_FILE

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def is_course_copy(folder: Path) -> bool:
    """A copy of the course: the authoring one, or a student release."""
    return (folder / "notebooks").is_dir() and (folder / "quizzes").is_dir() and (folder / "course_utils").is_dir()


def _course_root() -> Path:
    if os.environ.get("COURSE_ROOT"):
        return Path(os.environ["COURSE_ROOT"])
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted
        return PACKAGE_ROOT
    return next((folder for folder in (here, *here.parents) if is_course_copy(folder)), PACKAGE_ROOT)


COURSE_ROOT = _course_root()
NOTEBOOKS = COURSE_ROOT / "notebooks"
QUIZZES = COURSE_ROOT / "quizzes"
BUILD = COURSE_ROOT / "build"


def is_student_release(root: Path = COURSE_ROOT) -> bool:
    """A release made by `course student` (it has sealed pieces, and no answer keys)."""
    return (root / "course_utils" / SEALED_FILE).is_file()
