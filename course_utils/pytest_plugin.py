"""The course's pytest plugin (loaded by `-p course_utils.pytest_plugin` in
pyproject.toml, so it applies to `pytest notebooks/NN.ipynb` too): every test
and every notebook kernel runs offline.

The kernels that nbval starts inherit this process's environment, so setting it
here gives them the same variables as `course run`: headless quizzes, offline
Hugging Face libraries, a throwaway progress file, and COURSE_BLOCK_NETWORK,
which makes `setup_notebook()` install the network guard in the kernel too.
"""

import os
import tempfile
from pathlib import Path

import pytest

from course_utils import env, runner

_scratch = tempfile.mkdtemp(prefix="course-tests-")
os.environ.update(runner.kernel_environment(Path(_scratch) / "progress.jsonl"))
env.block_network()


@pytest.fixture
def progress_file(tmp_path, monkeypatch):
    """A fresh progress log for one test."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv("COURSE_PROGRESS_FILE", str(path))
    return path
