"""Sampling (course_utils.generation), each rule checked by its defining
property: top-k never samples outside the k most likely tokens; top-p keeps
the smallest set whose mass reaches p; a temperature near 0 is greedy."""

import pytest
import torch

from course_utils.generation import sample_next, top_k_filter, top_p_filter


def test_top_k_never_samples_outside_the_k_most_likely():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 30, generator=generator)
    allowed = logits.topk(5, dim=-1).indices
    for _ in range(200):
        token = sample_next(logits, top_k=5, generator=generator)
        assert all(token[row] in allowed[row] for row in range(4))


def test_top_p_keeps_the_smallest_set_whose_mass_reaches_p():
    probabilities = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probabilities.log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()
    assert kept(0.5) == [True, False, False, False]  # 0.5 reaches 0.5
    assert kept(0.6) == [True, True, False, False]  # the token that crosses p is kept
    assert kept(0.8) == [True, True, False, False]
    assert kept(0.81) == [True, True, True, False]
    assert kept(1.0) == [True, True, True, True]
    shuffled = logits[:, [2, 0, 3, 1]]  # the set does not depend on where the tokens sit
    assert torch.isfinite(top_p_filter(shuffled, 0.6))[0].tolist() == [False, True, False, True]


def test_top_p_renormalises_the_kept_tokens():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.allclose(top_p_filter(logits, 0.6).softmax(-1), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))


def test_temperature_zero_and_near_zero_are_greedy():
    logits = torch.randn(8, 40, generator=torch.Generator().manual_seed(1))
    assert torch.equal(sample_next(logits, temperature=0), logits.argmax(-1))
    near = sample_next(logits, temperature=1e-4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(near, logits.argmax(-1))


def test_a_seeded_generator_gives_the_same_samples():
    logits = torch.randn(3, 20)
    first = sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, sample_next(logits, top_p=0.9, generator=torch.Generator().manual_seed(5)))


def test_bad_settings_say_what_is_allowed():
    logits = torch.zeros(1, 5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        top_k_filter(logits, 0)
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\]"):
        top_p_filter(logits, 1.5)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        sample_next(logits, temperature=-1)
