"""`course train` on tiny recipes: it writes the curve, and a run
interrupted and resumed from its checkpoint ends with exactly the weights
and the curve of a run that never stopped; a checkpoint that cannot be
resumed is refused, and kept, unless the run starts again."""

import dataclasses
import json
import math
import shutil

import pytest
import torch

from course_utils import bert, gpt, modern
from course_utils.checkpoint import CheckpointError
from course_utils.classroom import cli, train

TINY = bert.PretrainingRecipe(d_model=16, num_heads=2, d_ff=32, num_layers=1, words=6, batch_size=8, warmup_steps=2,
                              steps=6)


TINY_GPT = gpt.TrainingRecipe(batch_size=4, steps=20, eval_every=10, eval_batches=2, warmup_steps=2)
TINY_CONFIGS = {"gpt": gpt.GPTConfig(context=16, width=16, layers=1, heads=2, dropout=0.1),
                "modern": modern.ModernConfig(context=16, width=16, layers=1, heads=2, kv_heads=1, ffn_width=32)}
CHARACTERS = {}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache for checkpoints; the tokenizer, plays and characters come from the real one."""
    from course_utils import data, tokenization

    tokenizer = tokenization.shakespeare_wordpiece()
    plays = data.plays()
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(tokenization, "shakespeare_wordpiece", lambda: tokenizer)
    monkeypatch.setattr(data, "plays", lambda: plays)
    if not CHARACTERS:  # encoded once for the whole file
        CHARACTERS["data"] = gpt.character_data()
    monkeypatch.setattr(gpt, "character_data", lambda: CHARACTERS["data"])
    return tmp_path


def run(results, **kwargs):
    return train.train_bert(TINY, eval_every=3, results=results, held_out_pairs=40, progress=False, **kwargs)


def bert_checkpoint():
    return train.run_folder("bert", dataclasses.asdict(TINY)) / "checkpoint.pt"


def final_weights(path=None):
    return torch.load(path or bert_checkpoint(), weights_only=True)["model"]


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
    monkeypatch.setattr(train, "train_bert", lambda recipe, **options: seen.update(recipe=recipe, **options))
    assert cli.main(["train", "bert", "--steps", "12", "--fresh"]) == 0
    assert seen == {"recipe": bert.PretrainingRecipe(steps=12), "fresh": True, "eval_every": 250,
                    "results": train.BERT_RESULTS}
    monkeypatch.setattr(train, "train_decoder", lambda kind, recipe, **options: seen.update(kind=kind, recipe=recipe,
                                                                                            **options))
    assert cli.main(["train", "modern", "--recipe", "short", "--steps", "300", "--checkpoint-every", "100"]) == 0
    assert seen["kind"] == "modern" and seen["recipe"] == dataclasses.replace(gpt.SHORT_RECIPE, steps=300,
                                                                                eval_every=100)
    assert seen["fresh"] is False and seen["results"] is None  # None: in the run's folder
    assert cli.main(["train", "gpt"]) == 0
    assert seen["kind"] == "gpt" and seen["recipe"] == gpt.TrainingRecipe()
    assert cli.main(["train", "bert", "--recipe", "short"]) == 2


def test_missing_results_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="course train bert"):
        train.load_results(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="benchmarks/modern_vs_gpt.py"):
        train.load_results(tmp_path / train.MODERN_VS_GPT_RESULTS.name)


def test_wall_time_adds_up_over_resumes_and_is_never_below_training_time(cache, monkeypatch):
    whole = run(cache / "whole.json")
    assert whole["wall_seconds"] >= whole["training_seconds"]
    assert set(whole["curve"][-1]) >= {"nsp_accuracy_other", "nsp_accuracy_same", "nsp_accuracy_swapped"}
    state = torch.load(bert_checkpoint(), weights_only=True)
    state["step"], state["extra"]["curve"] = 3, whole["curve"][:1]
    state["extra"]["seconds"], state["extra"]["wall_seconds"] = 1000.0, 1500.0  # a long run's first part, to step 3
    torch.save(state, bert_checkpoint())
    resumed = run(cache / "resumed.json")
    assert resumed["training_seconds"] >= 1000 and resumed["wall_seconds"] >= 1500  # the earlier part is counted
    assert resumed["wall_seconds"] >= resumed["training_seconds"]


def test_an_old_bert_checkpoint_is_refused_with_what_to_do(cache, capsys):
    bert_checkpoint().parent.mkdir(parents=True)
    torch.save({"model": {}, "optimizer": {}, "step": 3, "curve": "[]", "seconds": 1.0}, bert_checkpoint())
    with pytest.raises(CheckpointError, match="earlier version of the course.*--fresh"):
        run(cache / "results.json")
    assert run(cache / "results.json", fresh=True)["curve"][-1]["step"] == 6


# --- course train gpt, course train modern ---------------------------------------------

def decode(kind, **options):
    return train.train_decoder(kind, TINY_GPT, TINY_CONFIGS[kind], progress=False, **options)


def decoder_checkpoint(kind, recipe=TINY_GPT):
    return train.run_folder(kind, train.decoder_settings(TINY_CONFIGS[kind], recipe)) / "checkpoint.pt"


def without_time(report):
    return {key: value for key, value in report.items() if key != "wall_seconds"}


@pytest.mark.parametrize("kind", ["gpt", "modern"])
def test_an_interrupted_decoder_run_resumes_to_the_weights_and_results_of_an_uninterrupted_one(
        kind, cache, monkeypatch, capsys):
    whole = decode(kind)
    weights = final_weights(decoder_checkpoint(kind))
    assert [point["step"] for point in whole["curve"]] == [0, 10, 20]
    assert whole["bits_per_character"] == pytest.approx(whole["curve"][-1]["validation_loss"] / math.log(2))
    stored = decoder_checkpoint(kind).parent / "results.json"  # by default, beside the checkpoint in the cache
    assert json.loads(stored.read_text()) == json.loads(json.dumps(whole))  # the recipe's tuple is a list there

    real_batch_at = gpt.TrainingRecipe.batch_at

    def interrupted(recipe, step, *args):  # Ctrl-C at step 15, after the checkpoint of step 10
        if step == 15:
            raise KeyboardInterrupt
        return real_batch_at(recipe, step, *args)

    monkeypatch.setattr(gpt.TrainingRecipe, "batch_at", interrupted)
    with pytest.raises(KeyboardInterrupt):
        decode(kind, fresh=True, results=cache / "resumed.json")
    assert not (cache / "resumed.json").exists()
    monkeypatch.setattr(gpt.TrainingRecipe, "batch_at", real_batch_at)
    resumed = decode(kind, results=cache / "resumed.json")
    assert f"Resuming from step 10 of 20 ({decoder_checkpoint(kind)})" in capsys.readouterr().out
    assert without_time(resumed) == without_time(whole)
    for name, tensor in final_weights(decoder_checkpoint(kind)).items():
        assert torch.equal(tensor, weights[name]), name


def test_a_damaged_checkpoint_is_refused_and_kept_unless_the_run_starts_afresh(cache, capsys):
    path = decoder_checkpoint("gpt")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a checkpo")
    with pytest.raises(CheckpointError, match=f"{path} is not a checkpoint that can be read.*--fresh"):
        decode("gpt")
    assert path.read_bytes() == b"half a checkpo"
    decode("gpt", fresh=True)
    assert final_weights(path)

    # The command line says the same, and stops with status 2, on lesson 10's model and recipe.
    recipe = dataclasses.replace(gpt.TrainingRecipe(), steps=20, eval_every=10)
    config = gpt.GPTConfig(vocab_size=CHARACTERS["data"][0].get_vocab_size())
    real = train.run_folder("gpt", train.decoder_settings(config, recipe)) / "checkpoint.pt"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"garbage")
    assert cli.main(["train", "gpt", "--steps", "20", "--checkpoint-every", "10"]) == 2
    assert f"course train: {real} is not a checkpoint that can be read" in capsys.readouterr().err
    assert real.read_bytes() == b"garbage"


def test_a_checkpoint_of_another_recipe_is_refused(cache):
    decode("modern")
    longer = dataclasses.replace(TINY_GPT, steps=30)
    decoder_checkpoint("modern", longer).parent.mkdir(parents=True)
    decoder_checkpoint("modern").rename(decoder_checkpoint("modern", longer))
    with pytest.raises(CheckpointError, match=r"another run.*recipe.steps: 20 in the checkpoint, 30 here"):
        train.train_decoder("modern", longer, TINY_CONFIGS["modern"], progress=False)


def test_trained_decoder_makes_the_run_once_then_loads_it_and_remakes_a_damaged_one(cache, capsys):
    config = TINY_CONFIGS["gpt"]
    model = train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    assert "Training the base model now" in capsys.readouterr().out and not model.training
    checkpoint = train.run_folder("gpt", train.decoder_settings(model.config, TINY_GPT)) / "checkpoint.pt"
    again = train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    assert capsys.readouterr().out == "", "loaded, not trained again"
    for (name, mine), theirs in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(mine, theirs), name
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    remade = train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    said = capsys.readouterr().out
    assert "damaged or cut short" in said and "Training the base model now" in said
    assert all(torch.equal(a, b) for a, b in zip(remade.state_dict().values(), model.state_dict().values()))


def test_trained_decoder_reads_a_shared_folder_of_runs_first_and_never_writes_it(cache, monkeypatch, capsys):
    """As `course grade` shows the grader's runs to each sandbox: read-only, read before the learner's cache."""
    config = TINY_CONFIGS["gpt"]
    made = train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    folder = train.run_folder("gpt", train.decoder_settings(config, TINY_GPT))
    shared = cache / "shared"
    shutil.copytree(folder, shared / folder.name)
    shutil.rmtree(folder)
    monkeypatch.setenv(train.SHARED_RUNS_VARIABLE, str(shared))
    capsys.readouterr()
    loaded = train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    assert capsys.readouterr().out == "" and not folder.exists(), "loaded from the shared folder, nothing trained"
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), made.state_dict().values()))
    monkeypatch.setenv(train.SHARED_RUNS_VARIABLE, str(cache / "elsewhere"))  # a shared folder without this run
    train.trained_decoder("gpt", TINY_GPT, config, progress=False)
    assert "Training the base model now" in capsys.readouterr().out and (folder / "checkpoint.pt").is_file()
