"""Our GPT equals Hugging Face's GPT2LMHeadModel with the same weights, both
ways, and is causal: no position sees the tokens after it."""

import pytest
import torch

from course_utils.gpt import GPT, GPTConfig, from_huggingface, to_huggingface

SMALL = GPTConfig(vocab_size=50, context=16, width=32, layers=2, heads=4)


def _model(seed=0):
    torch.manual_seed(seed)
    model = GPT(SMALL).eval()
    with torch.no_grad():  # non-zero biases and norms, so that a mis-mapped one shows
        for name, parameter in model.named_parameters():
            if "bias" in name or "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def test_logits_equal_gpt2_both_ways():
    model = _model()
    ids = torch.randint(0, SMALL.vocab_size, (3, SMALL.context))
    theirs = to_huggingface(model)
    with torch.no_grad():
        ours = model(ids)
        assert ours.shape == (3, SMALL.context, SMALL.vocab_size)
        assert (ours - theirs(ids).logits).abs().max() < 1e-5
        back = from_huggingface(theirs)
        assert (back(ids) - ours).abs().max() < 1e-5


def test_greedy_tokens_equal_huggingface_generate():
    model = _model(1)
    theirs = to_huggingface(model)
    prompt = torch.randint(0, SMALL.vocab_size, (1, 4))
    ids = prompt
    with torch.no_grad():
        for _ in range(8):
            ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
        generated = theirs.generate(prompt, max_new_tokens=8, do_sample=False, pad_token_id=0)
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
