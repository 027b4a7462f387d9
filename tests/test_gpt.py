"""Our GPT equals Hugging Face's GPT2LMHeadModel with the same weights, both
ways, and is causal: no position sees the tokens after it."""

import dataclasses

import pytest
import torch

from course_utils.generation import beam_search, greedy, sequence_log_prob
from course_utils.gpt import (GPT, GPTConfig, TrainingRecipe, flops_per_step, forward_with_past, from_huggingface, generate,
                              next_token_log_probs, random_windows, to_huggingface, train_gpt)
from course_utils.tokenization import char_tokenizer, encode_chars

SMALL = GPTConfig(vocab_size=50, context=16, width=32, layers=2, heads=4)


def _model(seed=0, config=SMALL):
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():  # non-zero biases and norms, so that a mis-mapped one shows
        for name, parameter in model.named_parameters():
            if "bias" in name or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])  # nanoGPT's, GPT-2's
def test_logits_equal_gpt2_both_ways(activation):
    model = _model(config=dataclasses.replace(SMALL, activation=activation))
    ids = torch.randint(0, SMALL.vocab_size, (3, SMALL.context))
    theirs = to_huggingface(model)
    with torch.no_grad():
        ours = model(ids)
        assert ours.shape == (3, SMALL.context, SMALL.vocab_size)
        assert (ours - theirs(ids).logits).abs().max() < 1e-5
        back = from_huggingface(theirs)
        assert (back(ids) - ours).abs().max() < 1e-5


@pytest.mark.parametrize("field, value", [("n_inner", 3 * SMALL.width), ("layer_norm_epsilon", 1e-6),
                                          ("scale_attn_by_inverse_layer_idx", True), ("reorder_and_upcast_attn", True),
                                          ("scale_attn_weights", False), ("tie_word_embeddings", False)])
def test_a_gpt2_config_field_we_do_not_compute_raises(field, value):
    from transformers import GPT2LMHeadModel

    from course_utils.gpt import huggingface_config

    config = huggingface_config(SMALL)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        from_huggingface(GPT2LMHeadModel(config))


def test_greedy_tokens_equal_huggingface_generate():
    model = _model(1)
    theirs = to_huggingface(model)
    prompt = torch.randint(0, SMALL.vocab_size, (1, 4))
    ids = prompt
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
        generated = theirs.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0,
                                                   attention_mask=torch.ones_like(prompt))
    assert torch.equal(ids, generated)


def test_no_position_sees_the_future():
    model = _model(2)
    ids = torch.randint(0, SMALL.vocab_size, (1, 10))
    changed = ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % SMALL.vocab_size
    with torch.no_grad():
        assert torch.allclose(model(ids)[:, :6], model(changed)[:, :6], atol=1e-6)
        assert not torch.allclose(model(ids)[:, 6:], model(changed)[:, 6:], atol=1e-3)


def test_too_long_an_input_says_how_to_fix_it():
    with pytest.raises(ValueError, match="keep the last 16"):
        GPT(SMALL)(torch.zeros(1, 17, dtype=torch.long))


# --- the KV cache ---------------------------------------------------------------------

def test_cached_steps_give_the_logits_of_the_whole_sequence():
    """Prompt, then a chunk of three, then one token at a time: with the cache,
    each position's logits equal those of one pass over the whole sequence."""
    model = _model(3)
    ids = torch.randint(0, SMALL.vocab_size, (2, SMALL.context))
    with torch.no_grad():
        whole = model(ids)
        cache = model.new_cache()
        pieces = [model(ids[:, :5], cache), model(ids[:, 5:8], cache)]
        pieces += [model(ids[:, t:t + 1], cache) for t in range(8, SMALL.context)]
    assert len(cache[0]) == SMALL.context
    assert (torch.cat(pieces, dim=1) - whole).abs().max() < 1e-5


def test_the_past_as_tensors_gives_the_logits_and_the_keys_of_hugging_face():
    """forward_with_past, the form of Hugging Face's past_key_values: chunks
    passed with the past give one pass's logits, and the present holds the
    same keys and values as GPT2LMHeadModel's cache (its (B, heads, positions,
    head width) layout)."""
    model = _model(6)
    ids = torch.randint(0, SMALL.vocab_size, (2, 9))
    with torch.no_grad():
        first, past = forward_with_past(model, ids[:, :5])
        second, present = forward_with_past(model, ids[:, 5:], past)
        theirs = to_huggingface(model)(ids, use_cache=True).past_key_values
    assert (torch.cat([first, second], dim=1) - model(ids)).abs().max() < 1e-5
    assert len(present) == SMALL.layers and present[0][0].shape == (2, SMALL.heads, 9, SMALL.width // SMALL.heads)
    for layer, (keys, values) in enumerate(present):
        their_keys, their_values = theirs[layer] if isinstance(theirs, (tuple, list)) else (
            theirs.layers[layer].keys, theirs.layers[layer].values)
        assert (keys - their_keys).abs().max() < 1e-5 and (values - their_values).abs().max() < 1e-5


def test_flops_per_step_agrees_with_the_six_n_d_rule():
    """Kaplan et al.'s 6·N·D, N the weights that multiply: within 2% of what
    PyTorch counts (the norms' and biases' weights multiply nothing)."""
    config = GPTConfig(vocab_size=64)
    model = GPT(config)
    multiplying = sum(p.numel() for p in model.parameters()) - model.position_embedding.weight.numel()
    counted, rule = flops_per_step(config, 12), 6 * multiplying * 12 * config.context
    assert 0.98 < counted / rule <= 1.0


def test_the_cache_grows_by_one_position_per_token_in_every_layer():
    model = _model(4)
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.zeros(1, 3, dtype=torch.long), cache)
        sizes = [cache[0].nbytes]
        for _ in range(2):
            model(torch.zeros(1, 1, dtype=torch.long), cache)
            sizes.append(cache[0].nbytes)
    per_position = 2 * SMALL.width * 4  # a key and a value per layer, float32
    assert sizes == [3 * per_position, 4 * per_position, 5 * per_position]
    assert len(cache) == SMALL.layers and all(len(layer) == 5 for layer in cache)


def test_a_full_cache_says_how_to_go_on():
    model = _model(5)
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.zeros(1, SMALL.context, dtype=torch.long), cache)
        with pytest.raises(ValueError, match="the cache holds 16 positions .* start a new cache"):
            model(torch.zeros(1, 1, dtype=torch.long), cache)


@pytest.mark.parametrize("new_tokens", [8, 30])  # inside the context, and sliding past it
def test_generation_with_and_without_the_cache_gives_the_same_tokens(new_tokens):
    model = _model(6)
    prompt = torch.randint(0, SMALL.vocab_size, (2, 5))
    runs = [generate(model, prompt, new_tokens, temperature=1.0, top_k=10, use_cache=use_cache,
                     generator=torch.Generator().manual_seed(0)) for use_cache in (True, False)]
    assert runs[0].shape == (2, 5 + new_tokens)
    assert torch.equal(runs[0], runs[1])


def test_greedy_generation_is_temperature_zero_and_equals_huggingface():
    model = _model(7)
    prompt = torch.randint(0, SMALL.vocab_size, (1, 4))
    ours = generate(model, prompt, 10, temperature=0)
    with torch.no_grad():
        theirs = to_huggingface(model).generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=0,
                                                   attention_mask=torch.ones_like(prompt))
    assert torch.equal(ours, theirs)


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy():
    model = _model(8)
    score = next_token_log_probs(model)
    no_end = -1  # never produced: every hypothesis runs the full length
    for seed in range(3):
        start = torch.randint(0, SMALL.vocab_size, (4,), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            greedy_ids = greedy(score, start[None], no_end, max_new_tokens=10)
            greedy_log_prob = sequence_log_prob(score, greedy_ids, 4, no_end).item()
            best, best_log_prob = beam_search(score, start, no_end, max_new_tokens=10, beam_size=4)
            assert abs(sequence_log_prob(score, best[None], 4, no_end).item() - best_log_prob) < 1e-4
        assert best_log_prob >= greedy_log_prob - 1e-5


# --- data and training ----------------------------------------------------------------

def test_windows_pair_each_input_with_the_token_after_it():
    ids = torch.arange(100)
    inputs, targets = random_windows(ids, 5, 8, torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (5, 8)
    assert torch.equal(targets, inputs + 1), "target t is the token after input t"
    assert int(inputs.max()) + 1 <= 99


def test_the_character_tokenizer_round_trips_and_names_unknown_characters():
    tokenizer = char_tokenizer("To be,\nor not")
    ids = encode_chars(tokenizer, "not to be")
    assert tokenizer.decode(ids.tolist()) == "not to be"
    with pytest.raises(ValueError, match=r"no id for the characters \['!', 'x'\]"):
        encode_chars(tokenizer, "x!")


def test_train_gpt_learns_a_repeating_text_and_evaluates_on_schedule():
    ids = torch.tensor([0, 1, 2, 3, 4, 5] * 200)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=6, context=8, width=16, layers=1, heads=2))
    recipe = TrainingRecipe(batch_size=8, steps=60, peak_lr=1e-2, warmup_steps=5, eval_every=20, eval_batches=2)
    run = train_gpt(model, ids, ids, recipe, sample=lambda model: "text", progress=False)
    assert [step for step, _, _ in run.evaluations] == [0, 20, 40, 60]
    assert run.evaluations[0][2] > 1.5 and run.evaluations[-1][2] < 0.2, run.evaluations
    assert len(run.losses) == 60 and [step for step, _ in run.samples] == [0, 20, 40, 60]
