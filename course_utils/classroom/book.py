"""The course as a website (`make book`): every lesson with its stored outputs
and plots, built by Jupyter Book 1 (Sphinx and MyST-NB) without running a
cell and without the network.

`prepare` writes the book's sources from the stored notebooks: the lessons in
teaching order, each quiz as the text the lesson prints, and the worked
edition's answers (every `# BEGIN SOLUTION` cell) folded behind a click.
Jupyter Book lives in a virtual environment of its own (.venv-book), because
its Markdown parser pins versions that JupyterLab's do not accept.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat

from . import paths
from .lessons import Lesson, all_lessons

BOOK = paths.BUILD / "book"  # sources here; the site in BOOK / "_build" / "html"
SITE = BOOK / "_build" / "html"
TITLE = "Transformers, hands on"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Jupyter Book folds a cell with this tag behind a "Show code cell" button.
FOLDED = "hide-cell"

CONFIG = f"""\
# Written by course_utils/classroom/book.py; `make book` rewrites it.
title: "{TITLE}"
author: The transformers course
only_build_toc_files: true
execute:
  execute_notebooks: "off"   # the stored outputs are the lesson's record
html:
  home_page_in_navbar: true
  use_repository_button: false
sphinx:
  config:
    html_show_copyright: false
    html_last_updated_fmt: ""
    nb_merge_streams: true
    # MathJax 2 from the book's venv, copied beside the pages (not into _static,
    # whose every .js file Jupyter Book would load): equations render offline.
    html_extra_path: ["extra"]
    mathjax_path: "../mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
    mathjax2_config:
      HTML-CSS:  # STIX-Web is the only font jupyter-server-mathjax ships
        availableFonts: []
        webFont: STIX-Web
        imageFont: null
      tex2jax:  # MyST-NB marks a notebook's page "ignore" and its equations "math"
        processClass: math
        ignoreClass: tex2jax_ignore|mathjax_ignore
"""


# A quiz prints one question per line: wrap it rather than cut it at the column's edge.
STYLE = "div.cell_output pre { white-space: pre-wrap; overflow-wrap: anywhere; }\n"


def book_notebook(lesson: Lesson) -> nbformat.NotebookNode:
    """The stored notebook as the website shows it."""
    notebook = nbformat.read(lesson.notebook, as_version=4)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        # nbval's markers are for CI, not for a reader.
        cell.source = re.sub(r"^# NBVAL_[A-Z_]+[^\n]*\n?", "", cell.source, flags=re.MULTILINE)
        if "# BEGIN SOLUTION" in cell.source:
            tags = cell.metadata.setdefault("tags", [])
            if FOLDED not in tags:
                tags.append(FOLDED)
        # A progress bar's widget has no state in a static page: its text is the
        # bar at 0%, which would only mislead. The figures it led to follow.
        cell.outputs = [output for output in cell.outputs if WIDGET_VIEW not in output.get("data", {})]
    return notebook


def _front_page(lessons: list[Lesson]) -> str:
    rows = "\n".join(f"{int(lesson.number)}. [{lesson.title}]({lesson.name}.ipynb)" for lesson in lessons)
    return (f"# {TITLE}\n\n"
            "Every lesson of the course as it ran, with its outputs and plots. Quizzes are shown as the lesson "
            "prints them; each worked answer is folded under a *Show code cell content* button below its quiz or "
            "exercise, to try the question first.\n\n"
            "To run the lessons and answer them yourself, clone the course and start with `make practice` "
            "(see its README).\n\n"
            f"{rows}\n")


def prepare(out: Path = BOOK, lessons: list[Lesson] | None = None) -> list[Lesson]:
    """Write the book's sources into `out`: a front page, the table of contents
    in lesson order, the configuration, and one notebook per lesson."""
    lessons = all_lessons() if lessons is None else lessons
    if not lessons:
        raise SystemExit(f"No lessons in {paths.NOTEBOOKS}: nothing to put in the book.")
    missing = [lesson.notebook.name for lesson in lessons if not lesson.notebook.is_file()]
    if missing:
        raise SystemExit(f"These lessons have no stored notebook: {', '.join(missing)}. "
                         "Run `course run --in-place` for them first.")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.ipynb"):
        old.unlink()
    for lesson in lessons:
        nbformat.write(book_notebook(lesson), out / lesson.notebook.name)
    (out / "intro.md").write_text(_front_page(lessons), encoding="utf-8")
    toc = ["format: jb-book", "root: intro", "chapters:"] + [f"- file: {lesson.name}" for lesson in lessons]
    (out / "_toc.yml").write_text("\n".join(toc) + "\n", encoding="utf-8")
    (out / "_config.yml").write_text(CONFIG, encoding="utf-8")
    (out / "_static").mkdir(exist_ok=True)
    (out / "_static" / "course.css").write_text(STYLE, encoding="utf-8")  # Jupyter Book links every _static/*.css
    return lessons


def _mathjax(jupyter_book: str) -> Path:
    """MathJax's files as jupyter-server-mathjax ships them, in Jupyter Book's venv."""
    python = Path(shutil.which(jupyter_book)).parent / "python"
    found = subprocess.run([str(python), "-c", "import jupyter_server_mathjax as m, pathlib; "
                            "print(pathlib.Path(m.__file__).parent / 'static')"], capture_output=True, text=True)
    folder = Path(found.stdout.strip())
    if found.returncode or not (folder / "MathJax.js").is_file():
        raise SystemExit(f"No MathJax beside {jupyter_book}: `make book` installs jupyter-server-mathjax with it.")
    return folder


def build(jupyter_book: str, out: Path = BOOK) -> Path:
    """Prepare the sources and run Jupyter Book on them; returns the site's front page."""
    if not shutil.which(jupyter_book):
        raise SystemExit(f"No Jupyter Book at {jupyter_book!r}: `make book` installs it into .venv-book.")
    prepare(out)
    shutil.copytree(_mathjax(jupyter_book), out / "extra" / "mathjax", dirs_exist_ok=True)
    shutil.rmtree(out / "_build", ignore_errors=True)  # a lesson renamed leaves no stale page behind
    subprocess.run([jupyter_book, "build", "--quiet", str(out)], check=True)
    index = out / "_build" / "html" / "index.html"
    print(f"The course as a website: {index}")
    return index


def site_pages(site: Path = SITE) -> dict[str, Path]:
    """The built lesson pages, by lesson name (for tests and links)."""
    return {page.stem: page for page in sorted(site.glob("[0-9][0-9]_*.html"))}


if __name__ == "__main__":  # python -m course_utils.classroom.book: the sources only, as JSON of what was written
    print(json.dumps([lesson.name for lesson in prepare()]))
