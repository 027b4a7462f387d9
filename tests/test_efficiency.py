"""Lesson 11's measurements: the saved-activation count agrees with the
tensors we know attention keeps, gradient checkpointing and gradient
accumulation change no gradient (accumulation with padding only when each
micro-batch is weighted by its tokens), the fitted exponent recovers a power,
and mixed precision trains, with fp16's small gradients lost without scaling."""

import torch
import torch.nn.functional as F

from course_utils.attention import scaled_dot_product_attention
from course_utils.efficiency import (IGNORE_INDEX, attention_costs, fitted_exponent, gradients, logit_gradient,
                                     peak_allocated_bytes, relative_difference, saved_activation_bytes, target_tokens,
                                     train_in_precision)
from course_utils.gpt import GPT, GPTConfig, next_token_loss

SMALL = GPTConfig(vocab_size=40, context=16, width=32, layers=2, heads=4)


def _batch(rows=8, seed=0):
    ids = torch.randint(0, SMALL.vocab_size, (rows, SMALL.context + 1), generator=torch.Generator().manual_seed(seed))
    return ids[:, :-1], ids[:, 1:]


def test_naive_attention_saves_the_score_matrix_and_the_fused_kernel_does_not():
    heads, length, width = 2, 512, 16
    q, k, v = (torch.randn(1, heads, length, width, requires_grad=True) for _ in range(3))
    _, naive = saved_activation_bytes(lambda: scaled_dot_product_attention(q, k, v))
    _, fused = saved_activation_bytes(lambda: F.scaled_dot_product_attention(q, k, v))
    score_matrix = heads * length * length * 4  # float32
    assert naive >= score_matrix  # the L x L weights, which the softmax and the product with v both save
    assert fused < score_matrix / 4  # q, k, v, the output and one number per row: linear in the length


def test_parameters_and_repeated_saves_are_counted_once_or_not_at_all():
    weight = torch.nn.Parameter(torch.randn(64, 64))
    x = torch.randn(4, 64, requires_grad=True)
    _, saved = saved_activation_bytes(lambda: (x @ weight @ weight).sum())
    assert saved == (4 * 64 + 4 * 64) * 4  # x and x @ weight; the parameter is not counted


def test_a_view_of_a_parameter_is_not_counted_as_an_activation():
    """F.linear saves weight.t(), a view: not a Parameter, but the parameter's storage."""
    layer = torch.nn.Linear(64, 32)
    x = torch.randn(4, 64, requires_grad=True)
    _, with_views = saved_activation_bytes(lambda: layer(x).relu().sum())
    _, saved = saved_activation_bytes(lambda: layer(x).relu().sum(), parameters=layer.parameters())
    assert saved == (4 * 64 + 4 * 32) * 4  # x and the linear's output (kept by relu)
    assert with_views == saved + 64 * 32 * 4, "without parameters=, the weight's view counts"


def test_the_peak_of_a_step_counts_what_is_alive_at_once():
    x = torch.randn(256, 256, requires_grad=True)
    matrix = 256 * 256 * 4

    def step():
        hidden = (x @ x).relu()
        (hidden @ hidden).sum().backward()  # hidden and hidden @ hidden are alive together

    peak = peak_allocated_bytes(step)
    assert 2 * matrix <= peak <= 8 * matrix
    x.grad = None
    assert peak_allocated_bytes(lambda: (x * 2).sum().backward()) < peak  # one matrix at a time


def test_attention_costs_grow_as_the_square_for_the_naive_memory():
    lengths = [64, 128, 256]
    costs = attention_costs(lengths, heads=2, head_dim=8, repeats=1)
    assert 1.8 < fitted_exponent(lengths, costs["naive"]["saved_bytes"]) < 2.1
    assert 0.9 < fitted_exponent(lengths, costs["fused"]["saved_bytes"]) < 1.1
    assert all(seconds > 0 for kind in costs.values() for seconds in kind["seconds"])


def test_fitted_exponent_recovers_a_power_law():
    lengths = [100, 200, 400, 800]
    assert abs(fitted_exponent(lengths, [3 * n ** 2.5 for n in lengths]) - 2.5) < 1e-9


def test_accumulated_micro_batches_give_the_gradient_of_the_whole_batch():
    torch.manual_seed(0)
    model = GPT(SMALL)
    inputs, targets = _batch(rows=8)
    whole = gradients(model, next_token_loss, [(inputs, targets)])
    accumulated = gradients(model, next_token_loss, [(inputs[i:i + 2], targets[i:i + 2]) for i in range(0, 8, 2)])
    for name, gradient in whole.items():
        assert torch.allclose(accumulated[name], gradient, atol=1e-6, rtol=1e-4), name


def test_gradient_checkpointing_keeps_the_gradients_and_saves_less():
    torch.manual_seed(0)
    model = GPT(SMALL)
    batch = _batch()
    plain = gradients(model, next_token_loss, [batch])
    _, plain_bytes = saved_activation_bytes(lambda: next_token_loss(model, batch))
    model.gradient_checkpointing = True
    checkpointed = gradients(model, next_token_loss, [batch])
    _, checkpointed_bytes = saved_activation_bytes(lambda: next_token_loss(model, batch))
    for name, gradient in plain.items():
        assert torch.allclose(checkpointed[name], gradient, atol=1e-6, rtol=1e-5), name
    assert checkpointed_bytes < plain_bytes / 2
    with torch.no_grad():  # no graph, nothing to recompute: the same logits either way
        assert torch.equal(model(batch[0]), (setattr(model, "gradient_checkpointing", False), model(batch[0]))[1])


def test_with_padding_a_mean_of_means_is_not_the_token_mean_and_weighting_by_tokens_is():
    torch.manual_seed(0)
    model = GPT(SMALL)
    inputs, targets = _batch(rows=8)
    targets = targets.clone()
    for row, length in enumerate([16, 3, 16, 5, 9, 16, 2, 12]):  # texts of different lengths, padded
        targets[row, length:] = IGNORE_INDEX
    micro = [(inputs[i:i + 2], targets[i:i + 2]) for i in range(0, 8, 2)]
    assert [target_tokens(batch) for batch in micro] == [19, 21, 25, 14]
    whole = gradients(model, next_token_loss, [(inputs, targets)])
    by_tokens = gradients(model, next_token_loss, micro, by_tokens=True)
    mean_of_means = gradients(model, next_token_loss, micro)
    assert relative_difference(by_tokens, whole) < 1e-5
    assert relative_difference(mean_of_means, whole) > 1e-2
    assert relative_difference(whole, whole) == 0


def test_mixed_precision_runs_train_and_the_scaler_reports_its_scale():
    def next_batch(step):
        return _batch(rows=4, seed=step % 2)

    runs = {}
    for name, dtype, scaler in [("float32", None, False), ("bf16", torch.bfloat16, False), ("fp16", torch.float16, True)]:
        torch.manual_seed(0)
        runs[name] = train_in_precision(GPT(SMALL), next_batch, next_token_loss, steps=6, dtype=dtype, scaler=scaler)
        assert len(runs[name]["losses"]) == len(runs[name]["seconds"]) == 6
        assert runs[name]["losses"][-1] < runs[name]["losses"][0]
    assert runs["float32"]["scale"] is None and runs["fp16"]["scale"] <= 2.0 ** 16
    assert abs(runs["bf16"]["losses"][0] - runs["float32"]["losses"][0]) < 0.05  # the same model, rounded


def test_fp16_rounds_small_gradients_to_zero_unless_the_loss_is_scaled():
    torch.manual_seed(0)
    model = GPT(SMALL)
    batch = _batch(rows=8)
    plain = logit_gradient(model, batch)
    assert plain.dtype == torch.float16 and plain.shape == (8, SMALL.context, SMALL.vocab_size)
    assert not (plain == 0).any()  # about 1/40 / 128 tokens: fp16 holds it
    tiny = logit_gradient(model, batch, scale=2.0 ** -20)  # a loss 2^20 times smaller: its gradient underflows
    assert (tiny == 0).float().mean() > 0.5
    assert not (logit_gradient(model, batch, scale=2.0 ** -20 * 2.0 ** 16) == 0).any()  # scaled back up: kept
