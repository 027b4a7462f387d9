# The course's single entry point. Every target first makes sure .venv exists
# and holds the pinned packages; that step is skipped once done (the stamp file
# is newer than pyproject.toml), so everything after set-up works offline.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERNEL := transformers-course

PRACTICE := practice

.PHONY: setup lab practice run notebooks test bench doctor list clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "The course needs Python 3.11: run make PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# torch is pinned in pyproject.toml (2.13.0, the CPU build on course machines);
	@# an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (transformers course)"
	touch $(STAMP)

lab: $(STAMP)          ## set up, then open JupyterLab on the lessons
	$(BIN)/jupyter lab --notebook-dir=notebooks

practice: $(STAMP)     ## your own copy to work in: solutions stubbed, quiz answers sealed
	test -d $(PRACTICE) || $(BIN)/course student $(PRACTICE)
	COURSE_ROOT=$(CURDIR)/$(PRACTICE) $(BIN)/jupyter lab --notebook-dir=$(PRACTICE)/notebooks

run: $(STAMP)          ## execute every lesson headlessly into build/executed, with timings
	$(BIN)/course run

notebooks: $(STAMP)    ## re-execute the .py sources and store them as the .ipynb pairs
	$(BIN)/course run --in-place

test: $(STAMP)         ## unit tests, pair checks and nbval (strict) on every notebook
	@test -d tests || { echo "This is the student edition of the course: it has no tests."; exit 1; }
	$(BIN)/python -m pytest

bench: $(STAMP)        ## measure this machine (`course bench`): a table in build/bench/bench.md
	$(BIN)/course bench

doctor: $(STAMP)
	$(BIN)/course doctor

list: $(STAMP)
	$(BIN)/course list

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
