"""Greedy decoding and beam search, by their defining properties, on models
whose probabilities we know."""

import itertools
import math

import pytest
import torch

from course_utils.generation import beam_search, greedy, sequence_log_prob, top_p_filter

END, START = 0, 3


def markov(table: torch.Tensor):
    """next_log_probs of a model whose next token depends only on the last one:
    table[last] holds the probabilities of the next token."""
    return lambda prefixes: table[prefixes[:, -1]].log()


# After START: token 1 (0.55) or 2 (0.45). After 1 the model hesitates; after
# 2 it ends almost surely. Greedy takes 1 and pays for it later.
TRAP = torch.tensor([
    [1.0, 0.0, 0.0, 0.0],  # after END: END
    [0.2, 0.4, 0.4, 0.0],  # after 1
    [0.95, 0.05, 0.0, 0.0],  # after 2
    [0.0, 0.55, 0.45, 0.0],  # after START
])


def _log_prob(model, sequence):
    return sequence_log_prob(model, sequence[None], 1, END).item()


def test_greedy_takes_the_most_likely_token_each_step_and_pads_finished_rows():
    model = markov(TRAP)
    out = greedy(model, torch.tensor([[START], [2]]), END, max_new_tokens=3)
    assert out[1].tolist() == [2, END, END, END]
    assert out[0, :2].tolist() == [START, 1]


def test_beam_search_escapes_the_trap_greedy_falls_into():
    model = markov(TRAP)
    best, log_prob = beam_search(model, torch.tensor([START]), END, max_new_tokens=6, beam_size=2)
    assert best.tolist() == [START, 2, END]
    assert log_prob == pytest.approx(math.log(0.45 * 0.95))
    greedy_sequence = greedy(model, torch.tensor([[START]]), END, max_new_tokens=6)[0]
    assert _log_prob(model, greedy_sequence) < log_prob


def test_beam_search_finds_the_exhaustive_best_with_a_wide_beam():
    torch.manual_seed(0)
    for _ in range(5):
        table = torch.rand(4, 4).softmax(-1)
        table[END] = torch.tensor([1.0, 0, 0, 0])
        model = markov(table)
        best_log_prob = -math.inf  # over every sequence of at most 3 tokens ending in END
        for length in range(1, 4):
            for middle in itertools.product([1, 2, 3], repeat=length - 1):
                sequence = torch.tensor([START, *middle, END])
                best_log_prob = max(best_log_prob, _log_prob(model, sequence))
        _, found = beam_search(model, torch.tensor([START]), END, max_new_tokens=3, beam_size=16)
        assert found == pytest.approx(best_log_prob, abs=1e-5)


def _random_models_on_which_greedy_finishes(count: int):
    """Random next-token tables (6 tokens) on which greedy reaches END within 8 tokens."""
    generator, models = torch.Generator().manual_seed(0), []
    for _ in range(200):
        model = markov(torch.rand(6, 6, generator=generator).pow(3).softmax(-1))
        sequence = greedy(model, torch.tensor([[START]]), END, max_new_tokens=8)[0]
        if END in sequence[1:].tolist():
            models.append((model, sequence))
        if len(models) == count:
            return models
    raise AssertionError("too few random models on which greedy finishes")


def test_beam_is_never_worse_than_greedy_on_random_models():
    for model, greedy_sequence in _random_models_on_which_greedy_finishes(20):
        _, beam_log_prob = beam_search(model, torch.tensor([START]), END, max_new_tokens=8, beam_size=4)
        assert beam_log_prob >= _log_prob(model, greedy_sequence) - 1e-6


def test_beam_of_one_is_greedy():
    model = markov(TRAP)
    best, _ = beam_search(model, torch.tensor([START]), END, max_new_tokens=6, beam_size=1)
    greedy_sequence = greedy(model, torch.tensor([[START]]), END, max_new_tokens=6)[0]
    assert best.tolist() == greedy_sequence[: len(best)].tolist()


def test_sequence_log_prob_stops_at_the_first_end():
    model = markov(TRAP)
    padded = torch.tensor([[START, 2, END, END, END]])
    assert sequence_log_prob(model, padded, 1, END).item() == pytest.approx(math.log(0.45 * 0.95))


def test_beam_search_keeps_open_beams_that_beat_the_finished_ones_at_the_length_limit():
    """START END is finished early (log 0.1); START 1 1 is still open when the
    limit stops the search, and far more likely (log 0.9 · 0.99)."""
    table = torch.tensor([
        [1.0, 0.0, 0.0, 0.0],  # after END
        [0.005, 0.99, 0.005, 0.0],  # after 1
        [1.0, 0.0, 0.0, 0.0],  # after 2
        [0.1, 0.9, 0.0, 0.0],  # after START
    ])
    best, log_prob = beam_search(markov(table), torch.tensor([START]), END, max_new_tokens=2, beam_size=2)
    assert best.tolist() == [START, 1, 1]
    assert log_prob == pytest.approx(math.log(0.9 * 0.99))


# --- sampling filters ------------------------------------------------------------------

def test_top_p_of_one_keeps_every_token_of_a_gpt2_wide_row():
    """A float32 running sum from the top reaches 1.0 thousands of tokens early
    (about 4,000 of these rows' tokens were dropped before the fix)."""
    logits = 3 * torch.randn(4, 50_257, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_of_one_keeps_the_tail_of_a_peaked_row():
    logits = torch.cat([torch.tensor([20.0]), torch.zeros(1000)])[None]
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_top_p_keeps_the_smallest_set_that_reaches_p_and_always_the_top_token():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert torch.isfinite(top_p_filter(logits, 0.6)).tolist() == [[True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.8 + 1e-3)).tolist() == [[True, True, True]]
    assert torch.isfinite(top_p_filter(logits, 1e-6)).tolist() == [[True, False, False]]


def test_top_p_leaves_masked_tokens_masked_and_rows_apart():
    logits = torch.tensor([[2.0, float("-inf"), 1.0, 0.0], [0.0, 0.0, 0.0, 5.0]])
    kept = torch.isfinite(top_p_filter(logits, 0.9))
    assert kept.tolist() == [[True, False, True, False], [False, False, False, True]]
