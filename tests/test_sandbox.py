"""Hostile submissions, made here from the student release, graded in one
folder with honest ones: each hostile row must say what happened, each honest
notebook must get exactly the grade it gets when graded alone, and nothing
outside the gradebook and its feedback folder may change."""

import _socket
import csv
import os
import socket
import threading
from dataclasses import replace
from pathlib import Path

import jupytext
import nbformat
import pytest
import torch

from course_utils.classroom import grading, paths, remote, sandbox
from course_utils.classroom.grading import grade_folder
from course_utils.classroom.lessons import find_lessons
from course_utils.classroom.student import student_notebook

LESSON = find_lessons(["00"])[0]
AUTHORING_QUIZ = paths.QUIZZES / "00_setup.yaml"
BOUNDED = not sandbox.process_counter().startswith("none")
LIMITS = sandbox.Limits(seconds=30, memory_bytes=2 << 30)  # 2 GiB: lesson 00 needs under 1


def _reference():
    notebook = jupytext.read(LESSON.source)
    notebook.metadata["course"] = {"lesson": "00"}
    return notebook


def _release_with(source: str, last: bool = False):
    """The student release of lesson 00 with one cell added after its set-up
    cell, or (last=True) after all the others."""
    notebook = student_notebook(LESSON)
    first_code = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code")
    notebook.cells.insert(len(notebook.cells) if last else first_code + 1, nbformat.v4.new_code_cell(source))
    return notebook


def _answered_release():
    """The release with two quiz answers (one right, one wrong) and no exercise."""
    notebook = student_notebook(LESSON)
    for cell in notebook.cells:
        cell.source = cell.source.replace('answer("00.offline", None)', 'answer("00.offline", "A")')
        cell.source = cell.source.replace('answer("00.edit", None)', 'answer("00.edit", "A")')
    return notebook


def _honest(folder: Path) -> None:
    (folder / "alice").mkdir(parents=True)
    nbformat.write(_reference(), folder / "alice" / "00_setup.ipynb")
    nbformat.write(_answered_release(), folder / "bob.ipynb")
    nbformat.write(_reference(), folder / "zoe.ipynb")  # graded after every hostile notebook


def _host_address() -> str:
    """A non-loopback address of this machine: the one a UDP socket would send
    from (nothing is sent; the raw _socket, as the tests block connections)."""
    probe = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        return probe.getsockname()[0]
    finally:
        probe.close()


class _Listener:
    """Servers on this machine's own addresses that count who connects."""

    def __init__(self, *addresses):
        self.connections, self.sockets = 0, []
        for address in addresses:
            server = socket.create_server((address, 0))
            server.settimeout(0.2)
            self.sockets.append(server)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def addresses(self):
        return [server.getsockname() for server in self.sockets]

    def _serve(self):
        while self.running:
            for server in self.sockets:
                try:
                    server.accept()[0].close()
                    self.connections += 1
                except OSError:
                    pass

    def close(self):
        self.running = False
        self.thread.join()
        for server in self.sockets:
            server.close()


def _hostile(folder: Path, gradebook: Path, listener: _Listener) -> None:
    feedback = gradebook.parent / "grades-feedback"
    rows = {
        # Reads the answer keys it can find and tries every option against them.
        "keys": f"""
import course_utils, pathlib
from course_utils.classroom import quiz
print(sorted(str(p) for p in pathlib.Path(course_utils.__file__).parents[1].rglob("*.yaml")))
for qid, question in quiz.load_quiz("00").questions.items():
    for option in question.letters or ["1", "2", "3", "1000", "words"]:
        try:
            if quiz.grade(question, option).correct:
                quiz.answer(qid, option)
        except quiz.AnswerError:
            pass
print(open({str(AUTHORING_QUIZ)!r}).read())
""",
        # Forges results in its own progress log, and makes every checker pass.
        "forge": """
import json, os, time
from course_utils.classroom import checks
with open(os.environ["COURSE_PROGRESS_FILE"], "a") as log:
    for qid in ["00.offline", "00.edit", "00.checker", "00.rare-words", "00.first-cell", "00.words"]:
        log.write(json.dumps({"item": qid, "kind": "quiz", "points": 1, "max": 1, "time": time.time()}) + "\\n")
    log.write(json.dumps({"item": "00.count_words", "kind": "exercise", "points": 1, "max": 1}) + "\\n")
checks.Checker.passed = property(lambda self: True)
""",
        # Looks for the grader through /proc and rewrites the feedback it can find.
        "proc": f"""
import os, glob
found = []
for cwd in glob.glob("/proc/[0-9]*/cwd"):
    try:
        found.append(os.readlink(cwd))
    except OSError:
        pass
print("other processes' folders:", found)
for name in ["alice/00_setup.txt", "bob.txt"]:
    open(os.path.join({str(feedback)!r}, name), "w").write("you got 0")
""",
        # Plants modules where the grader or a later submission would import them.
        "plant": f"""
import os
for folder in [".", "/tmp", {os.getcwd()!r}, {str(folder)!r}]:
    for name in ["nbformat.py", "sitecustomize.py"]:
        try:
            open(os.path.join(folder, name), "w").write("raise SystemExit('planted')")
        except OSError as error:
            print(folder, error)
""",
        # Blocks the gradebook's temporary file with a folder of that name.
        "partial": f"import os\nos.mkdir({str(gradebook) + '.partial'!r})",
        # Leaves a child that ignores SIGTERM in a session of its own.
        "setsid": """
import ctypes, os, signal, time
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ctypes.CDLL(None).prctl(15, b"hostile-child")  # PR_SET_NAME, to be found afterwards
    time.sleep(3600)
    os._exit(0)
""",
        # A wrong answer, then 50 MB of output.
        "flood": 'from course_utils.classroom.quiz import answer\nanswer("00.offline", "B")\nprint("x" * 50_000_000)',
        # Connects out with raw sockets, and from a subprocess.
        "network": f"""
import _socket, subprocess, sys
code = "import _socket\\ns = _socket.socket()\\ns.settimeout(3)\\ns.connect({listener.addresses[0]!r})"
print(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr[-200:])
s = _socket.socket()
s.settimeout(3)
s.connect({listener.addresses[1]!r})
""",
        # A fork bomb: every child forks for ever.
        "forkbomb": """
import os, time
children = 0
while True:
    try:
        pid = os.fork()
    except OSError as error:
        print("fork refused after", children, "children:", error)
        break
    if pid == 0:
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.05)
    children += 1
""",
        "allocate": "import torch\nbig = torch.ones(2 << 30, dtype=torch.uint8)",
        "bigwrite": """
with open("/tmp/big", "wb") as file:
    for _ in range(1000):
        file.write(b"x" * (1 << 20))
""",
        # Deletes every file it can reach.
        "deleter": f"""
import os, sys
removed = 0
for top in ["/course", sys.prefix, {str(paths.COURSE_ROOT)!r}, {str(folder)!r}, {str(gradebook.parent)!r}, "/tmp", "/dev"]:
    for here, _, files in os.walk(top):
        for name in files:
            try:
                os.remove(os.path.join(here, name))
                removed += 1
            except OSError:
                pass
print("removed", removed)
""",
    }
    if not BOUNDED:
        del rows["forkbomb"]  # unbounded here, it would take the machine down: see test_a_fork_bomb_is_bounded
    for name, source in rows.items():
        nbformat.write(_release_with(source), folder / f"{name}.ipynb")
    # Answers the exercise with the course's own code, after the exercise's cells.
    reference = """
from course_utils import data
count_words = data.word_counts
def coverage(counts, n):
    return data.coverage(counts, n)
"""
    nbformat.write(_release_with(reference, last=True), folder / "reference.ipynb")
    (folder / "dan").mkdir()  # two notebooks whose feedback files once had one name
    nbformat.write(_answered_release(), folder / "dan" / "00_x.ipynb")
    nbformat.write(_reference(), folder / "dan__00_x.ipynb")
    (folder / "mallory.ipynb").symlink_to(AUTHORING_QUIZ)


def _snapshot(*roots: Path) -> dict:
    """Size and modification time of every file under the roots (top level of
    the course folder only: its .venv is large)."""
    files = {}
    for root in roots:
        walk = [(str(root), [], os.listdir(root))] if root == paths.COURSE_ROOT else os.walk(root)
        for here, _, names in walk:
            for name in names:
                path = Path(here, name)
                if path.is_file() and not path.is_symlink():
                    status = path.stat()
                    files[str(path)] = (status.st_size, status.st_mtime_ns)
    return files


def _grade(folder: Path, gradebook: Path):
    grades = grade_folder(folder, gradebook, lessons=["00"], limits=LIMITS, echo=lambda _: None)
    with gradebook.open() as file:
        return {grade.submission: grade for grade in grades}, {row["learner"]: row for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    folder = tmp_path_factory.mktemp("honest")
    _honest(folder)
    gradebook = tmp_path_factory.mktemp("alone") / "grades.csv"
    return _grade(folder, gradebook)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    gradebook = tmp_path_factory.mktemp("gradebook") / "grades.csv"
    listener = _Listener(_host_address(), "127.0.0.1")
    _honest(folder)
    _hostile(folder, gradebook, listener)
    watched = [folder, gradebook.parent, paths.QUIZZES, paths.COURSE_ROOT / "course_utils",
               paths.COURSE_ROOT / "notebooks", paths.COURSE_ROOT]
    before = _snapshot(*watched)
    try:
        grades, rows = _grade(folder, gradebook)
    finally:
        listener.close()
    after = _snapshot(*watched)
    # What grading writes: the gradebook, its records beside it, the feedback files.
    records = {str(gradebook), str(grading.grades_record(gradebook)), str(grading.grading_record(gradebook))}
    outputs = {path for path in set(before) | set(after)
               if path in records or path.startswith(str(gradebook.parent / "grades-feedback"))}
    changed = sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path) and path not in outputs)
    return grades, rows, gradebook, changed, listener.connections


def test_honest_notebooks_get_the_grade_they_get_alone(alone, hostile):
    alone_grades, alone_rows = alone
    grades, rows, gradebook, _, _ = hostile
    for learner in ("alice", "bob", "zoe"):
        assert rows[learner] == alone_rows[learner]
    assert rows["alice"]["total"] == rows["zoe"]["total"] == "9" and rows["bob"]["total"] == "1"
    feedback = gradebook.parent / "grades-feedback"
    assert (feedback / "alice" / "00_setup.txt").read_text().startswith("Learner: alice")
    assert "Score: 1 / 9" in (feedback / "bob.txt").read_text()


def test_nothing_outside_the_gradebook_and_its_feedback_changed(hostile):
    assert hostile[3] == []


def test_reading_for_keys_finds_none_and_earns_nothing(hostile):
    grades, rows = hostile[0], hostile[1]
    assert rows["keys"]["total"] == "0"
    assert "raised FileNotFoundError" in grades["keys.ipynb"].status  # the authoring quiz is not there
    assert "correct: true" not in (hostile[2].parent / "grades-feedback" / "keys.txt").read_text()


def test_forged_progress_records_earn_nothing(hostile):
    assert hostile[1]["forge"]["total"] == "0"
    assert hostile[0]["forge.ipynb"].status.startswith("finished")
    # Its own checker cell printed a pass; the grader's checker found the stub.
    assert "not attempted yet" in hostile[0]["forge.ipynb"].reports["00.count_words"]


def test_the_course_own_code_as_an_answer_earns_nothing(hostile):
    grade = hostile[0]["reference.ipynb"]
    assert grade.points["00.count_words"] == 0 and grade.status.startswith("finished")
    report = grade.reports["00.count_words"]
    assert "All 9 checks" not in report and "✓ case: 'To be or not to be'" in report  # right outputs, and still no point
    assert "runs the course's own course_utils.data.words" in report


def test_the_grader_and_other_feedback_are_out_of_sight(hostile):
    status = hostile[0]["proc.ipynb"].status
    assert "raised FileNotFoundError" in status  # the feedback folder does not exist in the sandbox


def test_planted_modules_and_a_blocking_folder_touch_only_their_own_run(hostile):
    assert hostile[0]["plant.ipynb"].status.startswith("finished")
    assert "raised FileNotFoundError" in hostile[0]["partial.ipynb"].status


def test_a_child_left_running_neither_delays_the_status_nor_outlives_grading(hostile):
    assert hostile[0]["setsid.ipynb"].status.startswith("finished")
    names = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            names.append(comm.read_text().strip())
        except OSError:
            pass
    assert "hostile-child" not in names


def test_two_notebooks_never_share_a_feedback_file(hostile):
    feedback = hostile[2].parent / "grades-feedback"
    assert "Learner: dan\n" in (feedback / "dan" / "00_x.txt").read_text()
    assert "Learner: dan__00_x\n" in (feedback / "dan__00_x.txt").read_text()


def test_a_flood_of_output_is_capped_in_the_feedback(hostile):
    assert (hostile[2].parent / "grades-feedback" / "flood.txt").stat().st_size < 50_000
    assert hostile[0]["flood.ipynb"].status.startswith("finished")


def test_no_connection_leaves_the_sandbox(hostile):
    status = hostile[0]["network.ipynb"].status
    assert "raised ConnectionRefusedError" in status  # the sandbox's own loopback, where nothing listens
    assert hostile[4] == 0


def test_a_fork_bomb_is_bounded(hostile):
    assert BOUNDED, f"this machine cannot bound a fork bomb: {sandbox.process_counter()}"
    status = hostile[0]["forkbomb.ipynb"].status
    # Its own later cells may starve of processes and threads: that costs it alone.
    assert status.startswith(("finished", f"timed out after {LIMITS.seconds:g} s"))
    if sandbox.process_counter().startswith("a pids cgroup"):
        assert f"reached the limit of {LIMITS.processes} processes" in status


def test_memory_and_file_size_limits_stop_the_cell_not_the_grading(hostile):
    assert "can't allocate memory" in hostile[0]["allocate.ipynb"].status
    assert "raised OSError: [Errno 27] File too large" in hostile[0]["bigwrite.ipynb"].status


def test_a_link_to_a_course_file_is_not_followed(hostile):
    assert "symbolic link" in hostile[0]["mallory.ipynb"].status
    assert "correct: true" not in (hostile[2].parent / "grades-feedback" / "mallory.txt").read_text()


def test_a_notebook_that_deletes_what_it_can_reaches_only_its_own_files(hostile):
    assert hostile[0]["deleter.ipynb"].status.startswith("finished")


def test_kept_output_keeps_the_start_and_the_end_of_a_flood():
    from course_utils.classroom.harness import KeptOutput

    kept = KeptOutput(keep=10)
    for piece in ["abc", "defgh", "x" * 1000, "12345"]:
        kept.write(piece)
    assert kept.text() == "abcde\n[… 1,003 characters of output left out …]\n12345"
    small = KeptOutput(keep=10)
    small.write("short")
    assert small.text() == "short"


# --- no privilege inside, even for a grader running as root ------------------------------

ESCAPES = '''
import os, shutil, subprocess
print("uid", os.getuid(), "gid", os.getgid())
print("caps", [line.split()[1] for line in open("/proc/self/status") if line.startswith("CapEff")])
for command in (["mount", "-o", "remount,rw", "/course"], ["unshare", "--user", "--map-root-user", "true"]):
    if shutil.which(command[0]):
        print(command[0], "exit", subprocess.run(command, capture_output=True).returncode)
try:
    open("/course/course_utils/planted.py", "w")
    print("wrote into the release")
except OSError as error:
    print("release read-only:", type(error).__name__)
print("environment of pid 1:", open("/proc/1/environ").read().replace("\\0", " "))
'''


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from course_utils.classroom.student import build_release

    folder = tmp_path_factory.mktemp("sealed") / "release"
    build_release(folder, keys=False)
    return folder


def test_the_sandbox_has_no_privilege_and_none_of_the_grader_s_environment(release, monkeypatch):
    """Graded as root (as CI grades), bubblewrap once kept every capability in
    its user namespace: a notebook remounted the release writable and planted
    code that ran as root outside. And it read the grader's environment from
    /proc/1/environ, pid 1 being bubblewrap."""
    monkeypatch.setenv("GRADER_CLOUD_TOKEN", "s3cret-value")
    run = sandbox.run_submission([ESCAPES], release, LIMITS)
    output = run.cells[0]["output"]
    assert f"uid {sandbox.SANDBOX_ID} gid {sandbox.SANDBOX_ID}" in output, output
    assert "caps ['0000000000000000']" in output, output
    assert "mount exit 0" not in output and "unshare exit 0" not in output, output
    assert "mount exit" in output, "the remount was tried"
    assert "release read-only" in output and not (release / "course_utils" / "planted.py").exists()
    assert "s3cret" not in output and "GRADER_CLOUD_TOKEN" not in output, output


# --- the evidence channel, write-back and the course's own code ------------------------

QUICK = sandbox.Limits(seconds=60, memory_bytes=2 << 30, check_seconds=20)


def _judged(release, source: str, lesson: str = "02", limits: sandbox.Limits = QUICK):
    """Run one cell in the sandbox, then the lesson's checkers on what it defined."""
    import functools

    from course_utils.classroom.grading import check_exercises

    return sandbox.run_submission([source], release, limits, judge=functools.partial(check_exercises, lesson, seed=3))


RIGHT_ATTENTION = """
import math, torch
def attention(q, k, v):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1)
    return weights @ v, weights
"""

# Writes to every pipe it holds (the harness's report among them) replies for
# the first thousand request numbers, made in advance, and one whose value is a
# dict keyed by a tuple nested 200,000 deep (hashing it recursed in C and
# crashed the grader); then makes the harness send that value for real requests.
FORGED_REPLIES = RIGHT_ATTENTION + '''
import base64, io, json, os, stat, zipfile
import torch
from course_utils.classroom import remote

def bomb():
    buffer = io.BytesIO()
    torch.save({}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    pickle = b"\\x80\\x02}K\\x01" + b"\\x85" * 200_000 + b"K\\x00s."  # {((((1,),),)...): 0}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in source.namelist():
            archive.writestr(name, pickle if name.endswith("data.pkl") else source.read(name))
    return base64.b64encode(out.getvalue()).decode()

value = bomb()
forged = "".join(json.dumps({"reply": n, "value": remote.encode_value(((torch.zeros(2, 5, 8), torch.zeros(2, 5, 5))))}) + "\\n"
                 for n in range(1, 1000))
for name in os.listdir("/proc/self/fd"):
    try:
        if stat.S_ISFIFO(os.fstat(int(name)).st_mode):
            os.write(int(name), forged.encode())
    except OSError:
        pass
'''


def test_replies_written_in_advance_answer_nothing(release):
    run = _judged(release, FORGED_REPLIES)
    earned, report, _ = run.judged["02.attention"]
    assert earned == 1, report  # the real answers were read, not the zeros written before any request


def test_a_reply_nested_past_any_limit_costs_only_its_item(release):
    run = _judged(release, FORGED_REPLIES + "\nremote.encode_value = lambda _: value\n")
    earned, report, _ = run.judged["02.attention"]
    assert earned == 0 and "could not be read" in report, report


def test_a_sandbox_that_stops_reading_cannot_hold_the_grader(release):
    import time

    silent = RIGHT_ATTENTION + "\nimport time\nimport course_utils.classroom.harness as harness\n" \
                               "harness.serve = lambda *_: time.sleep(3600)\n"
    started = time.monotonic()
    limits = replace(QUICK, check_seconds=3)

    def judge(session):  # a request far larger than a pipe holds
        try:
            session.lookup("attention")(torch.zeros(1 << 22), torch.zeros(1), torch.zeros(1))
        except remote.SessionEnded as ended:
            return str(ended)

    said = sandbox.run_submission([silent], release, limits, judge=judge).judged
    assert "stopped reading" in said or "timed out" in said, said
    assert time.monotonic() - started < 45


def test_zeroing_the_grader_s_inputs_earns_nothing(release):
    """The answer for all-zero inputs, after zeroing them: once written back
    into the grader's tensors, the checker compared it with attention of zeros."""
    zeroing = """
import torch
def attention(q, k, v):
    for tensor in (q, k, v):
        tensor.zero_()
    weights = torch.full(q.shape[:-1] + k.shape[-2:-1], 1 / k.size(-2))
    return weights @ v, weights
"""
    earned, report, _ = _judged(release, zeroing).judged["02.attention"]
    assert earned == 0 and "✗" in report, report


@pytest.mark.parametrize("disguise", [
    "threading",  # from a thread of its own
    "profile",  # the profiler switched off first
    "copy",  # a renamed copy of the code object
    "helper",  # a checker's helper, which computes the slips: the slip "no scaling" of q / √d_k is the answer
    "process",  # a process forked in an earlier cell, which answers through pipes
])
def test_the_course_s_own_attention_in_disguise_earns_nothing(release, disguise):
    calls = {
        "threading": "box = []\n    thread = threading.Thread(target=lambda: box.append(sdpa(q, k, v)))\n"
                     "    thread.start()\n    thread.join()\n    return box[0]",
        "profile": "sys.setprofile(None)\n    return sdpa(q, k, v)",
        "copy": "return copied(q, k, v)",
        "process": "os.write(ask, pickle.dumps((q, k, v)))\n    return pickle.loads(os.read(answers, 1 << 20))",
        "helper": "weights, outputs = _attention_mistakes(q / q.size(-1) ** 0.5, k, v)\n"
                  "    slip = next(name for name in weights if name.startswith('no 1/'))\n"
                  "    return outputs[slip], weights[slip]",
    }
    source = f"""
import sys, threading, types
from course_utils.attention import scaled_dot_product_attention as sdpa
from course_utils.classroom.checks.attention import _attention_mistakes
copied = types.FunctionType(sdpa.__code__.replace(co_name="mine", co_firstlineno=1), sdpa.__globals__, "mine",
                            sdpa.__defaults__)
if {disguise!r} == "process":  # the helper waits for inputs and answers with the course's code
    import os, pickle
    (questions, ask), (answers, tell) = os.pipe(), os.pipe()
    if os.fork() == 0:
        while True:
            os.write(tell, pickle.dumps(sdpa(*pickle.loads(os.read(questions, 1 << 20)))))
def attention(q, k, v):
    {calls[disguise]}
"""
    earned, report, _ = _judged(release, source).judged["02.attention"]
    assert earned == 0, report
    if disguise == "process":  # killed before the checkers call in: the answer waits for it in vain
        assert "the sandbox stopped answering" in report, report
    else:
        assert "course's own" in report or "switched off the profiler" in report, report


def test_the_sandbox_s_processes_share_one_memory_bound(release):
    """Three processes of 1 GiB each and 600 MB in /tmp: each within its own
    address-space limit, together past the sandbox's memory cgroup."""
    if not sandbox.memory_bound().startswith("a memory cgroup") and not os.environ.get("CI"):  # CI runs as root
        pytest.skip(f"no memory cgroup can be made here: {sandbox.memory_bound()}")
    hog = """
import os, time
for part in range(3):  # each file within the limit on one file's size
    with open(f"/tmp/fill{part}", "wb") as file:
        file.write(b"x" * (200 << 20))
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        try:
            block = bytearray(1 << 30)
            for i in range(0, len(block), 4096):
                block[i] = 1
            time.sleep(5)
        finally:
            os._exit(0)
    children.append(pid)
print([os.waitpid(pid, 0)[1] for pid in children])
"""
    limits = replace(LIMITS, memory_bytes=4 << 30, sandbox_memory_bytes=2 << 30, tmp_bytes=1 << 30)
    run = sandbox.run_submission([hog], release, limits)
    assert "reached the memory limit of 2 GiB" in run.status, run.status


RIGHT_DATA_PARALLEL_STEP = """
import torch.distributed as dist
from course_utils import distributed
from course_utils.gpt import next_token_loss
def data_parallel_step(model, optimizer, batch):
    loss = next_token_loss(model, distributed.shard_of(batch, dist.get_rank(), dist.get_world_size()))
    optimizer.zero_grad()
    loss.backward()
    for parameter in model.parameters():
        dist.all_reduce(parameter.grad)
        parameter.grad /= dist.get_world_size()
    optimizer.step()
    return loss.item()
"""


def test_a_data_parallel_step_is_judged_in_processes_inside_the_sandbox(release):
    """Lesson 13's checker starts the learner's step in 2 and 3 processes:
    in the sandbox, with its loopback network, and they end with it. The
    course's own all-reduce, run in those processes, is seen there."""
    earned, report, _ = _judged(release, RIGHT_DATA_PARALLEL_STEP, lesson="13").judged["13.data_parallel_step"]
    assert earned == 1, report
    borrowed = RIGHT_DATA_PARALLEL_STEP.replace(
        "    for parameter in model.parameters():\n        dist.all_reduce(parameter.grad)\n"
        "        parameter.grad /= dist.get_world_size()\n", "    distributed.all_reduce_gradients(model)\n")
    earned, report, _ = _judged(release, borrowed, lesson="13").judged["13.data_parallel_step"]
    assert earned == 0 and "course_utils.distributed.all_reduce_gradients" in report, report


SHARED_RUNS = """
import os, pathlib
shared = pathlib.Path(os.environ["COURSE_SHARED_RUNS"])
print("runs:", sorted(path.name for path in shared.iterdir()))
try:
    (shared / "planted").write_text("x")
except OSError as error:
    print("runs read-only:", type(error).__name__)
"""


def test_the_grader_s_finished_runs_are_shown_read_only(release, tmp_path, monkeypatch):
    """Lesson 14's base model, made once by the grader, is read from there, not trained in every submission."""
    (tmp_path / "runs" / "gpt-0123456789ab").mkdir(parents=True)
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    output = sandbox.run_submission([SHARED_RUNS], release, LIMITS).cells[0]["output"]
    assert "runs: ['gpt-0123456789ab']" in output and "runs read-only: OSError" in output, output
    assert not (tmp_path / "runs" / "planted").exists()
