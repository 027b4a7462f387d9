"""The program `course grade` starts inside the sandbox, once per submission.

It reads the submission's code cells (a JSON list of strings) from stdin,
runs them in order in one IPython shell, as JupyterLab's "Run All" would (a
failing cell is reported and the next ones still run), and writes JSON lines
to the stdout it was started with:

    {"start": 3}                                     cell [3] is about to run
    {"cell": 3, "error": "ZeroDivisionError: ...", "output": "...",
     "answers": {...}, "exercises": {...}}           cell [3] ran
    {"done": true}                                   every cell ran

Cells are numbered as JupyterLab numbers them after Run All: [1], [2], ...
over the code cells that are not empty. What a cell prints is kept up to
OUTPUT_KEPT characters (its start and its end). Each cell's line carries the
evidence so far, read from this run's progress log: the value of every quiz
answer and what each exercise checker reported; a run stopped at the time
limit is graded on what its finished cells gave.

None of this is trusted. The learner's code runs in this process and could
write any line; the grader outside treats every line as a claim to judge, and
a claim can only cost its author. Everything that could harm others (the
filesystem, the network, other processes, memory) is bounded by the sandbox
and the limits set here before the first cell runs.
"""

import io
import json
import os
import resource
import sys

OUTPUT_KEPT = 20_000  # characters of one cell's output: its first and last 10,000


class KeptOutput(io.TextIOBase):
    """A stream for sys.stdout and sys.stderr that keeps the start and the end
    of what is written, and counts what it drops in between."""

    def __init__(self, keep: int = OUTPUT_KEPT):
        self.half, self.head, self.tail, self.dropped = keep // 2, "", "", 0

    def writable(self) -> bool:
        return True

    def write(self, text) -> int:
        text = str(text)
        room = self.half - len(self.head)
        self.head += text[:room]
        rest = text[max(room, 0):]
        if rest:
            joined = self.tail + rest
            self.dropped += max(len(joined) - self.half, 0)
            self.tail = joined[-self.half:]
        return len(text)

    def text(self) -> str:
        if not self.dropped:
            return self.head + self.tail
        return f"{self.head}\n[… {self.dropped:,} characters of output left out …]\n{self.tail}"


def set_limits(limits: dict) -> None:
    """Soft and hard limits alike, so that the learner's code cannot raise them."""
    for name, value in limits.items():
        resource.setrlimit(getattr(resource, name), (value, value))


def evidence(log: str) -> dict:
    """The latest quiz answer (as a value) and exercise result of each item."""
    answers, exercises = {}, {}
    try:
        lines = open(log, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            entry = json.loads(line)
            if entry.get("kind") == "quiz" and "answer" in entry:
                answers[entry["item"]] = entry["answer"]
            elif entry.get("kind") == "exercise":
                exercises[entry["item"]] = entry["points"]
        except (ValueError, AttributeError, KeyError, TypeError):
            continue
    return {"answers": answers, "exercises": exercises}


def main() -> None:
    report = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    cells = json.loads(sys.stdin.read())
    # What the learner's code writes to the real file descriptors (a
    # subprocess, C code) goes nowhere; what it prints is kept per cell.
    quiet = os.open(os.devnull, os.O_RDWR)
    for descriptor in (0, 1, 2):
        os.dup2(quiet, descriptor)
    set_limits(json.loads(os.environ.pop("COURSE_GRADING_LIMITS", "{}")))

    def send(**message) -> None:
        report.write(json.dumps(message) + "\n")

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False  # no history database to write
    shell = InteractiveShell.instance(config=config, colors="NoColor")
    for source in cells:
        if not source.strip():
            continue  # JupyterLab gives an empty cell no number
        number = shell.execution_count
        send(start=number)
        kept = KeptOutput()
        sys.stdout = sys.stderr = kept
        try:
            result = shell.run_cell(source, store_history=True)
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        error = result.error_before_exec or result.error_in_exec
        send(cell=number, error=f"{type(error).__name__}: {error}"[:300] if error else None, output=kept.text(),
             **evidence(os.environ["COURSE_PROGRESS_FILE"]))
    send(done=True)


if __name__ == "__main__":
    main()
