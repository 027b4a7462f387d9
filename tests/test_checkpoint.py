"""course_utils.checkpoint: a run saved half way and resumed in freshly built
objects ends bit for bit where the run that never stopped ends, for lesson
10's GPT (with dropout) and lesson 12's modern decoder; without the random
state it does not; a file that cannot be resumed is refused by name."""

import dataclasses
import random

import numpy as np
import pytest
import torch

from course_utils import checkpoint
from course_utils.checkpoint import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from course_utils.gpt import GPT, GPTConfig, TrainingRecipe, TrainingRun, next_token_loss, random_windows, train_gpt
from course_utils.modern import ModernConfig, ModernDecoder
from course_utils.training import train

RECIPE = TrainingRecipe(batch_size=4, steps=200, warmup_steps=10)
MODELS = {"gpt": lambda: GPT(GPTConfig(vocab_size=12, context=16, width=32, layers=2, heads=2, dropout=0.2)),
          "modern": lambda: ModernDecoder(ModernConfig(vocab_size=12, context=16, width=32, layers=2, heads=4,
                                                       kv_heads=2, ffn_width=64))}
IDS = torch.randint(12, (3000,), generator=torch.Generator().manual_seed(0))
SETTINGS = {"recipe": {"steps": 200, "betas": (0.9, 0.99)}}


def fresh_run(kind):
    """A model, its optimizer and the generator that draws the order of the data, as a run starts."""
    torch.manual_seed(0)
    model = MODELS[kind]()
    return model, RECIPE.optimizer(model), torch.Generator().manual_seed(1)


def take_steps(run, first, last):
    model, optimizer, data_order = run
    train(model, lambda step: random_windows(IDS, RECIPE.batch_size, 16, data_order), next_token_loss, optimizer,
          last, RECIPE.lr_at(), RECIPE.clip_grad_norm, progress=False, first_step=first)


def same_state(one, other) -> bool:
    """The weights and the optimizer's every tensor equal, bit for bit."""
    (model, optimizer, _), (model_2, optimizer_2, _) = one, other
    weights = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model_2.state_dict().values()))
    moments = optimizer.state_dict()["state"], optimizer_2.state_dict()["state"]
    return weights and moments[0].keys() == moments[1].keys() and all(
        torch.equal(moments[0][i][name], moments[1][i][name]) for i in moments[0] for name in moments[0][i])


def resumed_half_way(kind, path, keep_generators=True):
    """100 steps, a checkpoint, other random draws in between, then 100 more in objects built anew."""
    run = fresh_run(kind)
    take_steps(run, 1, 100)
    generators = {"data order": run[2]} if keep_generators else None
    save_checkpoint(path, run[0], run[1], 100, SETTINGS, generators=generators, extra={"losses": [1.5, 2.0]})
    torch.rand(1000)  # the interrupted process drew more numbers before it stopped
    resumed = fresh_run(kind)
    generators = {"data order": resumed[2]} if keep_generators else None
    step, extra = load_checkpoint(path, resumed[0], resumed[1], SETTINGS, generators=generators)
    assert (step, extra) == (100, {"losses": [1.5, 2.0]})
    take_steps(resumed, step + 1, 200)
    return resumed


@pytest.mark.parametrize("kind", ["gpt", "modern"])
def test_a_run_resumed_half_way_ends_bit_for_bit_where_an_uninterrupted_one_ends(kind, tmp_path):
    straight = fresh_run(kind)
    take_steps(straight, 1, 200)
    assert same_state(straight, resumed_half_way(kind, tmp_path / "checkpoint.pt"))


def test_without_the_random_states_the_resumed_run_differs(tmp_path, monkeypatch):
    """The test above can fail: dropout needs PyTorch's generator back, the batches the data-order generator."""
    straight = fresh_run("gpt")
    take_steps(straight, 1, 200)
    assert not same_state(straight, resumed_half_way("gpt", tmp_path / "data.pt", keep_generators=False))
    monkeypatch.setattr(checkpoint.torch, "set_rng_state", lambda state: None)
    assert not same_state(straight, resumed_half_way("gpt", tmp_path / "dropout.pt"))


def test_pythons_numpys_and_the_schedulers_states_come_back(tmp_path):
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    save_checkpoint(tmp_path / "c.pt", model, optimizer, 3, SETTINGS, scheduler=scheduler)
    drawn = random.random(), np.random.rand()
    fresh_optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh_optimizer, step_size=2, gamma=0.5)
    load_checkpoint(tmp_path / "c.pt", model, fresh_optimizer, SETTINGS, scheduler=fresh_scheduler)
    assert (random.random(), np.random.rand()) == drawn
    assert fresh_scheduler.state_dict() == scheduler.state_dict() and fresh_optimizer.param_groups[0]["lr"] == 0.5


def test_a_missing_damaged_cut_short_or_foreign_file_is_refused_by_name(tmp_path):
    model, optimizer, _ = fresh_run("modern")
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="no checkpoint at .*checkpoint.pt"):
        load_checkpoint(path, model, optimizer, SETTINGS)
    save_checkpoint(path, model, optimizer, 1, SETTINGS)
    whole = path.read_bytes()
    for damaged in (b"not a checkpoint", whole[:len(whole) // 2]):
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError, match=f"{path} is not a checkpoint that can be read.*--fresh"):
            load_checkpoint(path, model, optimizer, SETTINGS)
    torch.save({"model": model.state_dict(), "step": 3}, path)  # the layout `course train bert` used to write
    with pytest.raises(CheckpointError, match="it lacks format, settings, optimizer.*earlier version"):
        load_checkpoint(path, model, optimizer, SETTINGS)


def test_a_checkpoint_of_other_settings_is_refused_naming_each_difference(tmp_path):
    model, optimizer, data_order = fresh_run("gpt")
    saved = {"recipe": {"steps": 100, "seed": 0}, "width": 32}
    save_checkpoint(tmp_path / "c.pt", model, optimizer, 5, saved)
    torch.nn.init.zeros_(model.token_embedding.weight)
    with pytest.raises(CheckpointError, match=r"another run.*heads: only here; recipe.steps: 100 in the "
                                              r"checkpoint, 200 here; width: only in the checkpoint.*--fresh"):
        load_checkpoint(tmp_path / "c.pt", model, optimizer, {"recipe": {"steps": 200, "seed": 0}, "heads": 2})
    assert not model.token_embedding.weight.any(), "a refused checkpoint changes nothing"
    with pytest.raises(CheckpointError, match=r"holds the generators \[\], but \['data order'\] were given"):
        load_checkpoint(tmp_path / "c.pt", model, optimizer, saved, generators={"data order": data_order})


def test_an_atomic_write_that_fails_leaves_the_old_file_whole_and_no_half_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("old")

    def dies_half_way(partial):
        partial.write_text("half of the ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, dies_half_way)
    assert path.read_text() == "old" and [file.name for file in tmp_path.iterdir()] == ["results.json"]
    atomic_write(path, lambda partial: partial.write_text("new"))
    assert path.read_text() == "new"


def test_train_gpt_stopped_at_a_step_saved_and_resumed_equals_one_straight_run(tmp_path):
    recipe = TrainingRecipe(batch_size=4, steps=40, warmup_steps=5, eval_every=20, eval_batches=1)
    straight = fresh_run("gpt")
    whole = train_gpt(straight[0], IDS, IDS, recipe, progress=False, optimizer=straight[1])
    model, optimizer, _ = fresh_run("gpt")
    first = train_gpt(model, IDS, IDS, recipe, progress=False, optimizer=optimizer, last_step=30)
    assert len(first.losses) == 30 and [step for step, _, _ in first.evaluations] == [0, 20]
    save_checkpoint(tmp_path / "c.pt", model, optimizer, 30, SETTINGS, extra={"run": dataclasses.asdict(first)})
    model, optimizer, _ = fresh_run("gpt")
    step, extra = load_checkpoint(tmp_path / "c.pt", model, optimizer, SETTINGS)
    rest = train_gpt(model, IDS, IDS, recipe, progress=False, optimizer=optimizer, run=TrainingRun(**extra["run"]))
    assert rest == whole
    assert same_state(straight, (model, optimizer, None))
