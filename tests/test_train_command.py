"""`course train bert` on a tiny recipe: it writes the curve, and a run
interrupted and resumed from its checkpoint ends with exactly the weights
and the curve of a run that never stopped."""

import json

import pytest
import torch

from course_utils import bert
from course_utils.classroom import cli, train

TINY = bert.PretrainingRecipe(d_model=16, num_heads=2, d_ff=32, num_layers=1, words=6, batch_size=8, warmup_steps=2,
                              steps=6)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache for checkpoints; the tokenizer and plays come from the real one."""
    from course_utils import data, tokenization

    tokenizer = tokenization.shakespeare_wordpiece()
    plays = data.plays()
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tokenization, "shakespeare_wordpiece", lambda: tokenizer)
    monkeypatch.setattr(data, "plays", lambda: plays)
    return tmp_path


def run(results, **kwargs):
    return train.train_bert(TINY, eval_every=3, results=results, held_out_pairs=40, progress=False, **kwargs)


def final_weights():
    return torch.load(train.run_folder(TINY) / "checkpoint.pt", weights_only=True)["model"]


def test_a_resumed_run_equals_an_uninterrupted_one(cache, monkeypatch, capsys):
    whole = run(cache / "whole.json")
    weights = final_weights()
    assert [point["step"] for point in whole["curve"]] == [3, 6]
    assert json.loads((cache / "whole.json").read_text())["curve"] == whole["curve"]

    calls = []
    real_pretrain = bert.pretrain

    def interrupted(*args, **kwargs):  # Ctrl-C during the second stretch of steps
        calls.append(kwargs["first_step"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_pretrain(*args, **kwargs)

    monkeypatch.setattr(bert, "pretrain", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cache / "resumed.json", fresh=True)
    assert not (cache / "resumed.json").exists()
    monkeypatch.setattr(bert, "pretrain", real_pretrain)
    resumed = run(cache / "resumed.json")
    assert "Resuming from step 3 of 6" in capsys.readouterr().out
    assert resumed["curve"] == whole["curve"]
    for name, tensor in final_weights().items():
        assert torch.equal(tensor, weights[name]), name
    assert resumed["final_nsp_right"] == whole["final_nsp_right"]


def test_the_last_models_answers_are_stored_pair_by_pair_and_agree_with_the_curve(cache):
    report = run(cache / "whole.json")
    again = run(cache / "again.json")  # nothing left to train: the same answers, the same run time
    assert again["final_nsp_right"] == report["final_nsp_right"] and again["wall_seconds"] == report["wall_seconds"]
    for negatives, answers in report["final_nsp_right"].items():
        assert len(answers) == 40 and set(answers) <= {"0", "1"}
        assert answers.count("1") / 40 == report["curve"][-1][f"nsp_accuracy_{negatives}"]


def test_the_command_line_runs_the_recipe_it_is_given(cache, monkeypatch):
    seen = {}
    monkeypatch.setattr(train, "train_bert", lambda recipe, fresh, results: seen.update(recipe=recipe, fresh=fresh))
    assert cli.main(["train", "bert", "--steps", "12", "--fresh"]) == 0
    assert seen == {"recipe": bert.PretrainingRecipe(steps=12), "fresh": True}


def test_missing_results_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="course train bert"):
        train.load_results(tmp_path / "absent.json")


def test_wall_time_adds_up_over_resumes_and_is_never_below_training_time(cache, monkeypatch):
    whole = run(cache / "whole.json")
    assert whole["wall_seconds"] >= whole["training_seconds"]
    assert set(whole["curve"][-1]) >= {"nsp_accuracy_other", "nsp_accuracy_same", "nsp_accuracy_swapped"}
    state = torch.load(train.run_folder(TINY) / "checkpoint.pt", weights_only=True)
    state["step"], state["curve"] = 3, json.dumps(whole["curve"][:1])
    state["seconds"], state["wall_seconds"] = 1000.0, 1500.0  # the first part of a long run, stopped at step 3
    torch.save(state, train.run_folder(TINY) / "checkpoint.pt")
    resumed = run(cache / "resumed.json")
    assert resumed["training_seconds"] >= 1000 and resumed["wall_seconds"] >= 1500  # the earlier part is counted
    assert resumed["wall_seconds"] >= resumed["training_seconds"]
