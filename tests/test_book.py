"""The course as a website (`make book`): its sources from the stored lessons,
and the built site read offline in headless Chromium: from the front page
through three lessons by their links, each lesson's plots, a worked answer
behind its click, and equations typeset."""

import contextlib
import functools
import http.server
import json
import os
import threading

import nbformat
import pytest

from course_utils.classroom import book, paths
from course_utils.classroom.lessons import all_lessons


def test_the_book_follows_the_lessons_and_folds_the_worked_answers(tmp_path):
    lessons = book.prepare(tmp_path)
    toc = (tmp_path / "_toc.yml").read_text().splitlines()
    assert toc[:3] == ["format: jb-book", "root: intro", "chapters:"]
    assert toc[3:] == [f"- file: {lesson.name}" for lesson in lessons] == [f"- file: {lesson.name}" for lesson in all_lessons()]
    front = (tmp_path / "intro.md").read_text()
    assert all(f"]({lesson.name}.ipynb)" in front for lesson in lessons)
    assert "execute_notebooks: \"off\"" in (tmp_path / "_config.yml").read_text()

    quiz_lesson = nbformat.read(tmp_path / "02_qkv_by_hand.ipynb", as_version=4)
    stored = nbformat.read(paths.NOTEBOOKS / "02_qkv_by_hand.ipynb", as_version=4)
    answers = [cell for cell in quiz_lesson.cells if 'answer("02.why-sqrt"' in cell.source]
    assert answers and all(book.FOLDED in cell.metadata.get("tags", []) for cell in answers)
    assert [cell.outputs for cell in quiz_lesson.cells if cell.cell_type == "code"] == [
        cell.outputs for cell in stored.cells if cell.cell_type == "code"], "lesson 02's outputs are the stored ones"
    for lesson in lessons:
        cells = nbformat.read(tmp_path / lesson.notebook.name, as_version=4).cells
        assert not any("NBVAL_" in cell.source for cell in cells), lesson.name
        assert not any(book.WIDGET_VIEW in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))
        unfolded = [cell for cell in cells if "# BEGIN SOLUTION" in cell.source and book.FOLDED not in cell.metadata.get("tags", [])]
        assert not unfolded, f"{lesson.name}: a worked answer shows unfolded"


def test_the_book_refuses_a_lesson_without_its_stored_notebook(tmp_path):
    lesson = all_lessons()[0]
    missing = type(lesson)(lesson.number, lesson.slug, lesson.title, tmp_path / lesson.source.name)
    with pytest.raises(SystemExit, match="no stored notebook.*course run --in-place"):
        book.prepare(tmp_path / "book", [missing])


@contextlib.contextmanager
def _static_server(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _stored_plots(lesson_name: str) -> int:
    notebook = json.loads((paths.NOTEBOOKS / f"{lesson_name}.ipynb").read_text())
    return sum("image/png" in output.get("data", {}) for cell in notebook["cells"] for output in cell.get("outputs", []))


@pytest.mark.browser
def test_the_built_site_reads_in_a_browser(tmp_path):
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

    _require_browser()
    if not (book.SITE / "index.html").is_file():
        message = f"no website in {book.SITE}: `make book` builds it"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI builds the website before the tests (.ci/run); {message}")
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    lessons = all_lessons()
    with _static_server(book.SITE) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # Read offline: any request that leaves this machine fails.
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(url) else route.abort())
        try:
            page.goto(f"{url}/index.html")
            # The front page links every lesson, in order; the first one opens lesson 00.
            page.locator("article").get_by_role("link", name=lessons[0].title).click()
            opened = [lessons[0]]
            for lesson in lessons[1:3]:  # then "next" from one lesson to the next
                expect(page.locator("h1").first).to_contain_text(opened[-1].title)
                page.locator("a.right-next").click()
                opened.append(lesson)
            expect(page.locator("h1").first).to_contain_text(opened[-1].title)
            for lesson in opened:
                page.goto(f"{url}/{lesson.name}.html")
                page.wait_for_load_state("load")
                plots = page.locator("article img")
                drawn = plots.evaluate_all("images => images.filter(i => i.complete && i.naturalWidth > 100).length")
                assert drawn == _stored_plots(lesson.name) > 0, f"{lesson.name}: {drawn} plots drawn"
            # A worked answer stays folded until the reader asks for it.
            page.goto(f"{url}/02_qkv_by_hand.html")
            worked = page.locator("details", has_text='answer("02.why-sqrt"')
            expect(worked.get_by_text('answer("02.why-sqrt", "B")')).to_be_hidden()
            worked.locator("summary").click()
            expect(worked.get_by_text('answer("02.why-sqrt", "B")')).to_be_visible()
            expect(page.get_by_text("02.why-sqrt  (1 point, one answer)", exact=False)).to_be_visible()
            # Equations are typeset by the site's own MathJax.
            page.goto(f"{url}/05_positional_encoding.html")
            equations = page.locator("div.math").count()
            expect(page.locator(".MathJax_Display")).to_have_count(equations, timeout=30_000)
            assert equations >= 3
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(f"screenshot of the failure: {tmp_path / 'failure.png'}")
            raise
        finally:
            browser.close()
