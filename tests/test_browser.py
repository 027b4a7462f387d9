"""A learner's view: JupyterLab on loopback, lesson 00 open in headless
Chromium, an answer clicked in the quiz widget and the feedback read back;
and a lesson saved and reopened, its quiz and its .py source intact."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from course_utils.classroom import paths, quiz
from course_utils.classroom.runner import KERNEL_NAME

CHROMIUM = Path("/usr/bin/chromium")
# Flags that keep a root, headless Chromium from reaching for the network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.browser


def _require_browser():
    from jupyter_client.kernelspec import KernelSpecManager

    missing = []
    if not CHROMIUM.exists():
        missing.append("Debian's chromium (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright (make setup)")
    if KERNEL_NAME not in KernelSpecManager().find_kernel_specs():
        missing.append(f"the '{KERNEL_NAME}' kernel (make setup)")
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test; missing: {', '.join(missing)} (.ci/run installs them)")
    if missing:
        pytest.skip(f"browser test needs {', '.join(missing)}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _serving(root: Path, tmp_path: Path):
    """A JupyterLab server on loopback serving `root`; yields its URL and token."""
    port, token = _free_port(), "course-browser-test"
    environment = {k: v for k, v in os.environ.items() if k != quiz.HEADLESS_VARIABLE}  # widgets, not text
    environment["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")  # no user settings leak in
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=None",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"],
        env=environment, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        yield url, token
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def jupyterlab(tmp_path, progress_file):
    """A JupyterLab server on loopback serving a copy of lesson 00."""
    _require_browser()
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(paths.NOTEBOOKS / "00_setup.ipynb", root)
    with _serving(root, tmp_path) as (url, token):
        yield f"{url}/lab/tree/00_setup.ipynb?token={token}"


def test_quiz_widget_gives_feedback_in_jupyterlab(jupyterlab, tmp_path, progress_file):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(jupyterlab)
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            try:  # JupyterLab asks which kernel to start, the notebook's own preselected
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=30_000)
            except PlaywrightTimeout:
                pass  # it started the notebook's kernel without asking
            expect(page.locator(".jp-Dialog")).to_have_count(0)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()

            offline = page.locator(".widget-vbox", has=page.get_by_text("00.offline", exact=True)).last
            offline.get_by_text("A) It loads the model if an earlier download left it in the local cache, and otherwise fails with an error").click(timeout=60_000)
            offline.get_by_role("button", name="Check").click()
            expect(offline.get_by_text("✓ Correct")).to_be_visible(timeout=30_000)
            expect(offline.get_by_text("Offline mode never opens a connection", exact=False)).to_be_visible()
            # Checking is practice: the feedback says how to hand the answer in.
            expect(offline.get_by_text('answer("00.offline", "A") in the answer cell', exact=False)).to_be_visible()

            edit = page.locator(".widget-vbox", has=page.get_by_text("00.edit", exact=True)).last
            edit.get_by_text("A) The fixed function, since the checker reads the code of the cell above it").click()
            edit.get_by_role("button", name="Check").click()
            expect(edit.get_by_text("✗ Not quite")).to_be_visible(timeout=30_000)
            offline.scroll_into_view_if_needed()
            page.screenshot(path=str(tmp_path / "quiz-feedback.png"))
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))  # what the learner would have seen
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()

    assert (tmp_path / "quiz-feedback.png").stat().st_size > 10_000
    clicks = [json.loads(line) for line in progress_file.read_text().splitlines()]
    assert {(c["item"], c["points"], c["kind"]) for c in clicks} >= {("00.offline", 1, "quiz-widget"),
                                                                      ("00.edit", 0, "quiz-widget")}


@pytest.fixture
def paired_lesson(tmp_path, progress_file):
    """A JupyterLab server on loopback serving lesson 00 as the course has it:
    the .py and .ipynb pair and jupytext.toml."""
    _require_browser()
    root = tmp_path / "lab"
    root.mkdir()
    for name in ("notebooks/00_setup.ipynb", "notebooks/00_setup.py", "jupytext.toml"):
        shutil.copy(paths.COURSE_ROOT / name, root)
    with _serving(root, tmp_path) as (url, token):
        yield root, f"{url}/lab/tree/00_setup.ipynb?token={token}"


def test_a_saved_and_reopened_lesson_keeps_its_quiz_and_its_py_source(paired_lesson, tmp_path):
    """Ctrl+S after running the lesson: the .py pair is unchanged, and on
    reopening, the quiz widgets still show (their state is saved)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    from course_utils.classroom.lab import SETTINGS

    overrides = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.is_file() and all(key in json.loads(overrides.read_text()) for key in SETTINGS), (
        "make setup writes JupyterLab's settings (python -m course_utils.classroom.lab)")
    root, url = paired_lesson
    source_before = (root / "00_setup.py").read_text()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            try:
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=30_000)
            except PlaywrightTimeout:
                pass
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            offline = page.locator(".widget-vbox", has=page.get_by_text("00.offline", exact=True)).last
            expect(offline.get_by_role("button", name="Check")).to_be_visible(timeout=90_000)
            page.locator(".jp-Notebook").click()
            page.keyboard.press("Control+s")
            expect(page.locator(".jp-mod-dirty")).to_have_count(0, timeout=30_000)
            page.reload()
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            try:
                page.locator(".jp-Dialog .jp-mod-accept").click(timeout=10_000)
            except PlaywrightTimeout:
                pass
            expect(page.get_by_text("00.offline", exact=True).last).to_be_visible(timeout=60_000)
            assert page.get_by_text("Error displaying widget").count() == 0
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
    assert (root / "00_setup.py").read_text() == source_before
    saved = json.loads((root / "00_setup.ipynb").read_text())
    assert saved["metadata"].get("widgets"), "the widgets' state is saved with the notebook"
