"""Nothing in the course reaches the network, and the guard proves it."""

import socket

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from course_utils import env
from course_utils.classroom.runner import execute

OUTSIDE = ("192.0.2.1", 80)  # TEST-NET-1: never routed, so never a real host


def test_the_test_process_refuses_outbound_connections():
    with pytest.raises(env.NetworkBlockedError, match="runs offline"):
        socket.create_connection(OUTSIDE, timeout=1)


def test_loopback_stays_open():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname(), timeout=5)
    client.close()
    server.close()


def test_hugging_face_is_offline():
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    from transformers import AutoTokenizer

    with pytest.raises(OSError):
        AutoTokenizer.from_pretrained("some-hub-name/not-on-this-machine")


def test_a_lesson_kernel_refuses_outbound_connections(tmp_path):
    """A kernel started like nbval's and `course run`'s installs the guard in
    its first cell, so a hidden download fails the notebook."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from course_utils import setup_notebook\nsetup_notebook()"),
        nbformat.v4.new_code_cell("import socket\nsocket.create_connection(('192.0.2.1', 80), timeout=1)"),
    ])
    with pytest.raises(CellExecutionError, match="NetworkBlockedError"):
        execute(notebook, tmp_path, "guard")
