"""`course bench`: every stage measured (--tiny), a failing lesson reported
without stopping the rest, and clear errors before anything is measured."""

import json
import re
import shutil

import jupytext
import nbformat
import pytest

from course_utils.classroom import cli, lessons, paths, runner


@pytest.fixture
def lesson_folder(tmp_path, monkeypatch):
    """Lesson 00 and a lesson that fails, in a folder of their own; timings kept out of build/."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(paths.NOTEBOOKS / "00_setup.py", folder)
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 01 · A lesson that fails"),
                                          nbformat.v4.new_code_cell("1 / 0")])
    jupytext.write(bad, folder / "01_bad.py", fmt="py:percent")
    monkeypatch.setattr(paths, "NOTEBOOKS", folder)
    monkeypatch.setattr(lessons, "TIMINGS", tmp_path / "timings.json")
    monkeypatch.setattr(runner, "TIMINGS", tmp_path / "timings.json")
    return folder


def test_tiny_bench_measures_every_stage_and_reports_a_failing_lesson(lesson_folder, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli.main(["bench", "--tiny", "--device", "cpu", "--out", str(out), "--lessons", "00", "01"]) == 1

    report = json.loads((out / "bench.json").read_text())
    stages = {stage["stage"]: stage for stage in report["stages"]}
    assert list(stages) == ["1. Machine", "2. GPT training", "3. Generation", "4. Multi-head attention", "5. Lessons"]
    assert [stage["status"] for stage in stages.values()] == ["ok"] * 4 + ["failed"]
    figures = {figure["name"]: figure["value"] for stage in report["stages"] for figure in stage["figures"]}
    assert 1 < figures["float32 matmul, 1024³"] < 1e6  # GFLOP/s: a laptop core to a large GPU
    assert figures["threads"] >= 1 and figures["torch"] and figures["device"].startswith("cpu: ")
    assert 0.1 < figures["ms per step"] < 30_000 and figures["tokens per second"] > 0  # a busy CPU is slow
    assert 3 < figures["FLOPs per step"] < 4.5  # GFLOP: the recipe's model and batch, whatever the machine
    assert 0 < figures["share of the float32 matmul"] < 500  # %: above 100 only if the load changed between them
    for name in ("ours, no cache", "ours, KV cache", "Hugging Face generate", "KV cache speed-up",
                 "ours against Hugging Face", "ours (need_weights=False)", "torch, default (need_weights=True)",
                 "speed-up over the default call", "00_setup", "total"):
        assert figures[name] > 0, name
    bad = next(figure for figure in stages["5. Lessons"]["figures"] if figure["name"] == "01_bad")
    assert bad["failed"] and bad["value"] is None and bad["note"] == "ZeroDivisionError: division by zero"
    assert report["options"]["tiny"] and report["options"]["lessons"] == ["00_setup", "01_bad"]
    assert report["machine"]["torch"] and report["total_seconds"] > 0

    table = (out / "bench.md").read_text()
    for row in ("| **1. Machine**", "| **5. Lessons** FAILED", "| float32 matmul, 1024³", "| ms per step",
                "| KV cache speed-up", "| speed-up over the default call", "| 00_setup"):
        assert row in table, row
    assert re.search(r"\| 01_bad +\| +FAILED \| s +\| ZeroDivisionError: division by zero", table)
    printed = capsys.readouterr().out
    assert "| ms per step" in printed and "FAILED: 5. Lessons" in printed and str(out / "bench.json") in printed
    assert (out / "lessons" / "00_setup.ipynb").exists()


def test_an_unknown_lesson_is_refused_before_anything_is_measured(tmp_path):
    with pytest.raises(SystemExit, match="No lesson '99'. The lessons are: 00_setup"):
        cli.main(["bench", "--tiny", "--out", str(tmp_path), "--lessons", "99"])
    assert not (tmp_path / "bench.json").exists()


def test_without_benchmarks_it_says_why_and_measures_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paths, "COURSE_ROOT", tmp_path)  # as in the student release: no benchmarks/
    assert cli.main(["bench", "--tiny", "--no-lessons", "--out", str(tmp_path / "bench")]) == 2
    assert "The student edition (`course student`) ships without them" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()


def test_cuda_asked_for_where_there_is_none_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert cli.main(["bench", "--device", "cuda", "--no-lessons", "--out", str(tmp_path)]) == 2
    assert "sees no CUDA GPU. Use --device cpu" in capsys.readouterr().err


def test_the_nanogpt_race_writes_the_data_files_of_nanogpts_shakespeare_char(tmp_path):
    """benchmarks/nanogpt_race.py: train.bin and val.bin hold the ids as uint16,
    and meta.pkl the vocabulary, as nanoGPT's data/shakespeare_char/prepare.py writes them."""
    import pickle

    import numpy as np
    import torch

    from course_utils.classroom.bench import benchmark

    race = benchmark("nanogpt_race")
    stoi = {"\n": 0, " ": 1, "a": 2, "b": 3}
    train_ids, validation_ids = torch.tensor([2, 3, 1, 0, 3, 2]), torch.tensor([1, 2, 3])
    folder = race.write_nanogpt_data(tmp_path / "data", stoi, train_ids, validation_ids)

    for name, ids in (("train.bin", train_ids), ("val.bin", validation_ids)):
        assert (folder / name).stat().st_size == 2 * len(ids)  # two bytes an id
        assert np.memmap(folder / name, dtype=np.uint16, mode="r").tolist() == ids.tolist()  # as train.py reads it
    meta = pickle.loads((folder / "meta.pkl").read_bytes())
    assert meta == {"vocab_size": 4, "stoi": stoi, "itos": {0: "\n", 1: " ", 2: "a", 3: "b"}}
