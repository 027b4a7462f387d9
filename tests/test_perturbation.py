"""The notebook tests train as another CPU would: a last-bit nudge of the
weights after every optimizer step (course_utils/classroom/perturbation.py)."""

import os
import subprocess
import sys

import pytest
import torch
import torch.optim.optimizer as optimizer_hooks

from course_utils.classroom import perturbation


def test_a_nudge_changes_about_half_the_weights_by_one_unit_in_the_last_place():
    weights = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    nudged = weights.clone()
    perturbation.nudge_last_bits(nudged, 1)
    changed = nudged != weights
    assert 0.4 < changed.float().mean() < 0.6
    ulp = torch.nextafter(weights.abs(), torch.tensor(float("inf"))) - weights.abs()
    assert torch.all((nudged - weights).abs() <= ulp)
    again = weights.clone()
    perturbation.nudge_last_bits(again, 1)
    assert torch.equal(again, nudged), "the pattern depends on the values alone"
    other = weights.clone()
    perturbation.nudge_last_bits(other, 2)
    assert not torch.equal(other, nudged), "another variant is another machine"


def test_other_dtypes_and_variant_zero_are_left_alone():
    halves = torch.randn(100).half()
    before = halves.clone()
    perturbation.nudge_last_bits(halves, 1)
    floats = torch.randn(100)
    kept = floats.clone()
    perturbation.nudge_last_bits(floats, 0)
    assert torch.equal(halves, before) and torch.equal(floats, kept)


TRAIN_TWICE = """
import torch
from course_utils.classroom import perturbation
perturbation.install()
def trained():
    torch.manual_seed(0)
    model = torch.nn.Linear(16, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(50):
        optimizer.zero_grad()
        model(torch.ones(4, 16)).pow(2).sum().backward()
        optimizer.step()
    return model.weight.detach()
first, second = trained(), trained()
print(torch.equal(first, second), first.double().sum().item())
"""


def _train_twice(variant: str) -> tuple[str, float]:
    result = subprocess.run([sys.executable, "-c", TRAIN_TWICE], capture_output=True, text=True, check=True,
                            env={**os.environ, perturbation.VARIABLE: variant})
    same, total = result.stdout.split()
    return same, float(total)


def test_training_moves_under_each_variant_and_two_identical_runs_stay_identical():
    runs = {variant: _train_twice(variant) for variant in ("0", "1", "2")}
    assert all(same == "True" for same, _ in runs.values()), "a notebook that trains twice gets the same weights"
    totals = [total for _, total in runs.values()]
    assert len(set(totals)) == 3, f"each variant trains to other last digits: {totals}"
    assert max(totals) - min(totals) < 1e-3, "by a rounding difference, not a different model"


def test_only_what_a_step_changed_is_nudged(monkeypatch):
    """A row of an embedding that got no gradient is left exactly as it was,
    as on any CPU (lesson 01 counts such rows)."""
    monkeypatch.setenv(perturbation.VARIABLE, "1")
    monkeypatch.setattr(perturbation, "_installed", None)
    handles = []
    monkeypatch.setattr(perturbation, "register_optimizer_step_pre_hook", lambda hook: handles.append(
        optimizer_hooks.register_optimizer_step_pre_hook(hook)))
    monkeypatch.setattr(perturbation, "register_optimizer_step_post_hook", lambda hook: handles.append(
        optimizer_hooks.register_optimizer_step_post_hook(hook)))
    perturbation.install()
    try:
        torch.manual_seed(0)
        table = torch.nn.Embedding(100, 8)
        start = table.weight.detach().clone()
        optimizer = torch.optim.SGD(table.parameters(), lr=0.1)
        for _ in range(5):
            optimizer.zero_grad()
            table(torch.tensor([3, 7])).sum().backward()
            optimizer.step()
        untouched = torch.ones(100, dtype=torch.bool)
        untouched[[3, 7]] = False
        assert torch.equal(table.weight[untouched], start[untouched])
        plain = start[[3, 7]] - 0.5  # five steps of lr 0.1 on a gradient of ones
        assert not torch.equal(table.weight[[3, 7]].detach(), plain), "the rows it trained were nudged"
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("value", ["x", "-1", "23"])
def test_a_malformed_variant_is_refused_with_the_range(monkeypatch, value):
    monkeypatch.setenv(perturbation.VARIABLE, value)
    with pytest.raises(ValueError, match="from 0 .* to 22"):
        perturbation.variant()


def test_kernels_started_by_the_tests_train_perturbed(tmp_path):
    """The IPython profile that the plugin hands every kernel installs the
    nudge before the first cell, whatever the notebook does."""
    environment = {**os.environ, **perturbation.kernel_startup(tmp_path / "ipython"), perturbation.VARIABLE: "3"}
    shown = subprocess.run([sys.executable, "-m", "IPython", "-c",
                            "from course_utils.classroom import perturbation; print('bit', perturbation._installed)"],
                           capture_output=True, text=True, env=environment)
    assert "bit 3" in shown.stdout, shown.stdout + shown.stderr
