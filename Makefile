# The course's single entry point. Every target first makes sure .venv exists
# and holds the pinned packages; that step is skipped once done (the stamp file
# is newer than pyproject.toml), so everything after set-up works offline.

# Every Python the pinned packages have wheels for (pyproject.toml's
# requires-python; tests/test_packaging.py keeps the two in step). Without
# PYTHON=..., the newest of them that runs here; stored outputs are made with
# 3.11, CI's.
SUPPORTED_PYTHONS := 3.14 3.13 3.12 3.11
# A candidate must run and have venv (Debian splits it off); pyenv's shims for
# versions not selected exist but fail, and are passed over. Probed once.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell for candidate in $(addprefix python,$(SUPPORTED_PYTHONS)) python3; do \
	$$candidate -c 'import sys, venv, ensurepip; sys.exit(f"{sys.version_info[0]}.{sys.version_info[1]}" not in "$(SUPPORTED_PYTHONS)".split())' \
	2>/dev/null && { echo $$candidate; exit 0; }; done)
endif
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := transformers-course

PRACTICE := practice
# JupyterLab refuses to start as root (containers, Binder, many lab servers)
# unless told it may; LAB_ARGS passes more, e.g. for a remote machine:
#   make lab LAB_ARGS="--no-browser --ip=127.0.0.1 --port=8888"
ROOT_FLAG := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
LAB_ARGS ?=

.PHONY: setup lab practice run notebooks test book bench doctor list clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python $(SUPPORTED_PYTHONS) with venv found (as python3.14 ... python3.11, or python3). Install one (python.org, your package manager, pyenv; on Debian/Ubuntu also python3.X-venv), or name it: make PYTHON=/path/to/python3.12"; exit 1; }
	@$(PYTHON) -c 'import sys; ok = f"{sys.version_info[0]}.{sys.version_info[1]}" in "$(SUPPORTED_PYTHONS)".split(); sys.exit(0 if ok else f"{sys.executable} is Python {sys.version.split()[0]}; the course supports $(SUPPORTED_PYTHONS): make PYTHON=/path/to/python3.12")'
	@$(PYTHON) -c 'import sys; print(f"Setting up .venv with Python {sys.version.split()[0]} ({sys.executable}); make PYTHON=... picks another")'
	@# Only for Python 3.11 do course machines keep a CPU build of torch on disk;
	@# for any other, Linux x86_64 takes PyPI's, a CUDA build of a few GB.
	$(PYTHON) -m venv $(VENV)
	@echo "Installing the pinned packages into .venv: about 2 minutes the first time, quietly."
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch is pinned in pyproject.toml (2.13.0, the CPU build on course machines);
	@# an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (transformers course)"
	$(BIN)/python -m course_utils.classroom.lab
	@# Lesson 14 fine-tunes this model; made once here, kept in the cache folder.
	@echo "Training lesson 14's base model once (course train gpt --recipe short): about a minute on 2 cores."
	$(BIN)/course train gpt --recipe short
	touch $(STAMP)

lab: $(STAMP)          ## set up, then open JupyterLab on the lessons
	$(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) --notebook-dir=notebooks

practice: $(STAMP)     ## your own copy to work in: solutions stubbed, quiz answers sealed
	@# Built once; then brought up to the course at each start (after a git pull,
	@# say), keeping everything you wrote. The kernel imports the practice copy's
	@# own course_utils, whose reviewed answers are sealed.
	if test -d $(PRACTICE); then $(BIN)/course student --update $(PRACTICE); else $(BIN)/course student $(PRACTICE); fi
	PYTHONPATH=$(CURDIR)/$(PRACTICE) COURSE_ROOT=$(CURDIR)/$(PRACTICE) $(BIN)/jupyter lab $(ROOT_FLAG) $(LAB_ARGS) --notebook-dir=$(PRACTICE)/notebooks

run: $(STAMP)          ## execute every lesson headlessly into build/executed, with timings
	$(BIN)/course run

notebooks: $(STAMP)    ## re-execute the .py sources and store them as the .ipynb pairs
	$(BIN)/course run --in-place

test: $(STAMP)         ## unit tests, pair checks and nbval (strict) on every notebook
	@test -d tests || { echo "This is the student edition of the course: it has no tests."; exit 1; }
	$(BIN)/python -m pytest

# Jupyter Book in a venv of its own: its Markdown parser pins versions that
# JupyterLab's cannot use. Pure Python, about 30 s to install; MathJax comes
# with jupyter-server-mathjax, so that equations show offline.
BOOK_VENV := .venv-book
JUPYTER_BOOK := jupyter-book==1.0.4.post1 jupyter-server-mathjax==0.2.6

$(BOOK_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(BOOK_VENV)
	$(BOOK_VENV)/bin/python -m pip install --quiet $(JUPYTER_BOOK)
	touch $@

book: $(STAMP) $(BOOK_VENV)/.installed  ## the course as a website: build/book/_build/html/index.html
	$(BIN)/course book --jupyter-book $(BOOK_VENV)/bin/jupyter-book

bench: $(STAMP)        ## measure this machine (`course bench`): a table in build/bench/bench.md
	$(BIN)/course bench

doctor: $(STAMP)
	$(BIN)/course doctor

list: $(STAMP)
	$(BIN)/course list

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) $(BOOK_VENV) *.egg-info
