"""The course's training loop learns, follows its schedule, and the schedules
have the shapes their formulas promise."""

import pytest
import torch

from course_utils.training import linear_warmup, smooth, train, transformer_schedule, warmup_cosine


def _regression():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    model = torch.nn.Linear(4, 1)
    return model, (lambda step: (x, y)), (lambda m, batch: (m(batch[0]).squeeze(-1) - batch[1]).pow(2).mean())


def test_train_learns_and_returns_every_loss():
    model, next_batch, loss_of = _regression()
    losses = train(model, next_batch, loss_of, torch.optim.SGD(model.parameters(), lr=0.1), steps=100, progress=False)
    assert len(losses) == 100 and losses[-1] < 1e-3 < losses[0]
    assert not model.training, "the model is left in eval mode"


def test_train_sets_the_learning_rate_of_each_step_from_one():
    model, next_batch, loss_of = _regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    seen = []
    train(model, lambda step: seen.append(optimizer.param_groups[0]["lr"]) or next_batch(step), loss_of, optimizer,
          steps=3, lr_at=lambda step: step / 10, progress=False)
    assert seen == [0.1, 0.2, 0.3]


def test_clipping_bounds_the_gradient_norm():
    model, next_batch, loss_of = _regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train(model, next_batch, loss_of, optimizer, steps=1, clip_grad_norm=0.5, progress=False)
    norm = torch.norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm == pytest.approx(0.5, rel=1e-4)


def test_transformer_schedule_climbs_to_its_peak_at_warmup_then_decays():
    lr = transformer_schedule(d_model=512, warmup_steps=4000)
    rates = [lr(step) for step in range(1, 20001)]
    assert max(range(len(rates)), key=rates.__getitem__) + 1 == 4000
    assert rates[3999] == pytest.approx(512 ** -0.5 * 4000 ** -0.5)
    assert rates[1999] == pytest.approx(rates[3999] / 2), "linear during warm-up"
    assert rates[15999] == pytest.approx(rates[3999] / 2), "1/sqrt(step) after it"


def test_linear_warmup_and_smooth():
    lr = linear_warmup(1e-3, 10)
    assert [lr(1), lr(5), lr(10), lr(50)] == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3])
    assert smooth([1, 2, 3, 4], window=2) == [1.5, 2.5, 3.5]
    assert smooth([1.0] * 10, window=25) == []


def test_warmup_cosine_climbs_then_falls_to_its_final_rate():
    lr = warmup_cosine(1e-3, warmup_steps=100, total_steps=2000, final_lr=1e-4)
    assert [lr(1), lr(50), lr(100)] == pytest.approx([1e-5, 5e-4, 1e-3])
    assert lr(1050) == pytest.approx((1e-3 + 1e-4) / 2), "half way down the cosine, half way between the rates"
    assert lr(2000) == pytest.approx(1e-4) and lr(2500) == pytest.approx(1e-4)
    assert all(lr(step) >= lr(step + 1) for step in range(100, 2000))


def test_after_step_runs_after_every_step_and_training_goes_on_in_train_mode():
    model, next_batch, loss_of = _regression()
    seen = []

    def evaluate(step):
        model.eval()
        seen.append(step)

    train(model, lambda step: seen.append(("batch", model.training)) or next_batch(step), loss_of,
          torch.optim.SGD(model.parameters(), lr=0.1), steps=3, progress=False, after_step=evaluate)
    assert seen == [("batch", True), 1, ("batch", True), 2, ("batch", True), 3]
