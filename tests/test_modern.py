"""Lesson 12's modern decoder, piece by piece against its reference: RMSNorm
against PyTorch's and Llama's, SwiGLU against LlamaMLP, rotary at given
positions against lesson 05's and Llama's, repeat_kv against Llama's, and the
whole model against Hugging Face's `LlamaForCausalLM` with the same weights
(logits, the KV cache, greedy generation, left padding)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import (LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding,
                                                      apply_rotary_pos_emb)
from transformers.models.llama.modeling_llama import repeat_kv as llama_repeat_kv

from course_utils.attention import attend, causal_mask
from course_utils.gpt import generate
from course_utils.modern import (ModernConfig, ModernDecoder, RMSNorm, SwiGLU, from_huggingface, huggingface_config,
                                 kv_cache_bytes_per_token, repeat_kv, rms_norm, swiglu, to_half_split_rows,
                                 to_huggingface, to_interleaved_rows)
from course_utils.positional import RotaryEmbedding, rotate_at

SMALL = ModernConfig(vocab_size=50, context=16, width=32, layers=2, heads=4, kv_heads=2, ffn_width=96)
KINDS = [(2, False), (1, True), (4, False), (2, True)]  # (kv_heads, tied): grouped-query, multi-query, multi-head
PAD = 0


def _model(kv_heads=2, tied=False, seed=0):
    torch.manual_seed(seed)
    model = ModernDecoder(dataclasses.replace(SMALL, kv_heads=kv_heads, tie_embeddings=tied)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:  # gains away from 1, so that a mis-mapped one shows
                parameter.add_(0.1 * torch.randn_like(parameter))
            if "q_proj" in name or "k_proj" in name:
                # At std 0.02 the scores are all near 0 and rotating queries and
                # keys hardly changes them: larger ones make rotary matter.
                parameter.mul_(10)
    return model


def _to_halves(head_dim):
    """Our feature order -> Llama's: the pairs' first features, then their second ones."""
    return torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])


def _left_padded(prompts):
    """A batch of prompts of different lengths, left-padded, and its attention_mask."""
    longest = max(len(prompt) for prompt in prompts)
    ids = torch.tensor([[PAD] * (longest - len(prompt)) + prompt for prompt in prompts])
    mask = torch.tensor([[0] * (longest - len(prompt)) + [1] * len(prompt) for prompt in prompts])
    return ids, mask


# --- the pieces ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(16,), (3, 5, 16), (2, 3, 4, 16)])
def test_rms_norm_equals_torch_and_llama(dtype, shape):
    torch.manual_seed(0)
    x = 3 * torch.randn(shape, dtype=dtype) + 1
    ours = RMSNorm(16, eps=1e-5).to(dtype)
    torch_norm = torch.nn.RMSNorm(16, eps=1e-5, dtype=dtype)
    llama = LlamaRMSNorm(16, eps=1e-5).to(dtype)
    with torch.no_grad():
        gain = 1 + 0.3 * torch.randn(16, dtype=dtype)
        for norm in (ours, torch_norm, llama):
            norm.weight.copy_(gain)
        result = ours(x)
        assert result.dtype == dtype
        torch.testing.assert_close(result, rms_norm(x, gain, 1e-5), atol=0, rtol=0)
        torch.testing.assert_close(result, torch_norm(x))
        # Llama computes in float32 whatever the input: a float64 input agrees to float32's precision.
        torch.testing.assert_close(result, llama(x), atol=1e-6, rtol=1e-6)


def test_rms_norm_is_layer_norm_without_centring_only_at_zero_mean():
    torch.manual_seed(0)
    x = torch.randn(4, 32) + 0.5
    layer_norm = F.layer_norm(x, (32,), eps=1e-5)
    assert (rms_norm(x, torch.ones(32)) - layer_norm).abs().max() > 0.1
    centred = x - x.mean(dim=-1, keepdim=True)  # mean 0: mean(x²) is the (biased) variance LayerNorm uses
    torch.testing.assert_close(rms_norm(centred, torch.ones(32)), F.layer_norm(centred, (32,), eps=1e-5))


def test_swiglu_equals_llama_mlp():
    torch.manual_seed(0)
    ours, theirs = SwiGLU(32, 96), LlamaMLP(huggingface_config(SMALL))
    with torch.no_grad():
        for our_linear, their_linear in [(ours.gate, theirs.gate_proj), (ours.up, theirs.up_proj),
                                         (ours.down, theirs.down_proj)]:
            their_linear.weight.copy_(our_linear.weight)
        x = torch.randn(3, 5, 32)
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=0)
        assert torch.equal(ours(x), swiglu(x, ours.gate.weight, ours.up.weight, ours.down.weight))


B, H, L, DH = 2, 3, 7, 16


def test_rotate_at_equals_lesson_05_rotary_with_an_offset():
    torch.manual_seed(0)
    q, k = torch.randn(B, H, L, DH), torch.randn(B, H, L, DH)
    q_05, k_05 = RotaryEmbedding(DH, max_len=64)(q, k, offset=5)
    positions = torch.arange(5, 5 + L)
    torch.testing.assert_close(rotate_at(q, positions), q_05, atol=1e-6, rtol=0)
    torch.testing.assert_close(rotate_at(k, positions), k_05, atol=1e-6, rtol=0)


def test_rotate_at_with_a_row_of_positions_per_sequence():
    torch.manual_seed(0)
    x = torch.randn(B, H, L, DH)
    positions = torch.stack([torch.arange(L), torch.tensor([0, 0, 0, 0, 1, 2, 3])])  # the second left-padded
    rotated = rotate_at(x, positions)
    for row in range(B):
        torch.testing.assert_close(rotated[row:row + 1], rotate_at(x[row:row + 1], positions[row]), atol=0, rtol=0)


def test_rotary_equals_llama_after_permuting_the_projection_rows():
    """Llama's rotation of rows permuted by `to_half_split_rows` is ours in
    Llama's feature order, and the attention scores are the same."""
    torch.manual_seed(0)
    config = huggingface_config(dataclasses.replace(SMALL, width=H * DH, heads=H, kv_heads=H))
    x, w_q, w_k = torch.randn(B, L, H * DH), torch.randn(H * DH, H * DH), torch.randn(H * DH, H * DH)
    positions = torch.stack([torch.arange(3, 3 + L), torch.tensor([0, 0, 0, 0, 1, 2, 3])])

    def heads(weight):  # (B, L, H · DH) -> (B, H, L, DH)
        return F.linear(x, weight).view(B, L, H, DH).transpose(1, 2)

    q, k = rotate_at(heads(w_q), positions), rotate_at(heads(w_k), positions)
    cos, sin = LlamaRotaryEmbedding(config)(x, positions)
    q_hf, k_hf = apply_rotary_pos_emb(heads(to_half_split_rows(w_q, H)), heads(to_half_split_rows(w_k, H)), cos, sin)
    torch.testing.assert_close(q_hf, q[..., _to_halves(DH)], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(q_hf @ k_hf.transpose(-2, -1), q @ k.transpose(-2, -1), atol=1e-3, rtol=1e-5)
    assert torch.equal(to_interleaved_rows(to_half_split_rows(w_q, H), H), w_q)


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_repeat_kv_equals_llama(groups):
    x = torch.randn(2, 2, 5, 4)
    assert torch.equal(repeat_kv(x, groups), llama_repeat_kv(x, groups))
    assert torch.equal(repeat_kv(x, groups)[:, groups + groups // 2], x[:, 1])  # query head h meets kv head h // groups


# --- the whole model against LlamaForCausalLM -------------------------------------

@pytest.mark.parametrize("kv_heads, tied", KINDS)
def test_logits_equal_llama_both_ways(kv_heads, tied):
    model = _model(kv_heads, tied)
    theirs = to_huggingface(model)
    assert (theirs.lm_head.weight is theirs.model.embed_tokens.weight) == tied
    ids = torch.randint(0, SMALL.vocab_size, (3, SMALL.context))
    with torch.no_grad():
        ours = model(ids)
        assert ours.shape == (3, SMALL.context, SMALL.vocab_size)
        assert (ours - theirs(ids).logits).abs().max() < 1e-5
        back = from_huggingface(theirs)
        assert back.config == model.config
        assert all(torch.equal(back.state_dict()[name], tensor) for name, tensor in model.state_dict().items())
        assert torch.equal(back(ids), ours)


def test_without_the_row_permutation_the_logits_differ():
    model = _model()
    ids = torch.randint(0, SMALL.vocab_size, (3, SMALL.context))
    with torch.no_grad():
        assert (model(ids) - to_huggingface(model, reorder_rotary_rows=False)(ids).logits).abs().max() > 1e-3


@pytest.mark.parametrize("field, value", [("hidden_act", "gelu"), ("attention_bias", True), ("mlp_bias", True),
                                          ("head_dim", 16)])
def test_a_llama_config_field_we_do_not_compute_raises(field, value):
    from transformers import LlamaForCausalLM

    config = huggingface_config(SMALL)
    setattr(config, field, value)
    with pytest.raises(ValueError, match=f"{field}={value!r}"):
        from_huggingface(LlamaForCausalLM(config))


@pytest.mark.parametrize("kv_heads, tied", KINDS)
def test_cached_steps_equal_llama_with_past_key_values(kv_heads, tied):
    model = _model(kv_heads, tied, seed=1)
    theirs = to_huggingface(model)
    ids = torch.randint(0, SMALL.vocab_size, (2, 12))
    cache = model.new_cache()
    with torch.no_grad():
        whole = model(ids)
        ours, their_step = model(ids[:, :6], cache), theirs(ids[:, :6], use_cache=True)
        assert (ours - their_step.logits).abs().max() < 1e-5
        for t in range(6, 12):
            ours = model(ids[:, t:t + 1], cache)
            their_step = theirs(ids[:, t:t + 1], past_key_values=their_step.past_key_values, use_cache=True)
            assert (ours - their_step.logits).abs().max() < 1e-5
            assert (ours - whole[:, t:t + 1]).abs().max() < 1e-5
        their_keys = their_step.past_key_values.layers[0].keys
    our_keys, _ = cache[0].held()
    assert our_keys.shape == their_keys.shape == (2, kv_heads, 12, SMALL.head_dim)
    torch.testing.assert_close(our_keys[..., _to_halves(SMALL.head_dim)], their_keys, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kv_heads, tied", KINDS)
def test_greedy_tokens_equal_llama_generate(kv_heads, tied):
    model = _model(kv_heads, tied, seed=2)
    prompt = torch.randint(0, SMALL.vocab_size, (2, 4))
    ours = generate(model, prompt, 10, temperature=0)
    with torch.no_grad():  # the config has no eos_token_id: Hugging Face cannot stop early
        theirs = to_huggingface(model).generate(prompt, max_new_tokens=10, do_sample=False, pad_token_id=PAD,
                                                attention_mask=torch.ones_like(prompt))
    assert torch.equal(ours, theirs)
    assert torch.equal(generate(model, prompt, 10, temperature=0, use_cache=False), ours)


# --- left padding -------------------------------------------------------------------

PROMPTS = [[5, 9, 2, 7, 1, 3, 8], [4, 6, 11, 12], [13]]


def test_each_left_padded_row_gets_the_logits_it_gets_alone_here_and_in_llama():
    model = _model(seed=3)
    ids, mask = _left_padded(PROMPTS)
    with torch.no_grad():
        batch = model(ids, attention_mask=mask)
        theirs = to_huggingface(model)(ids, attention_mask=mask,
                                       position_ids=(mask.cumsum(dim=-1) - 1).clamp(min=0)).logits
        for row, prompt in enumerate(PROMPTS):
            alone = model(torch.tensor([prompt]))[0]
            assert (batch[row, -len(prompt):] - alone).abs().max() < 1e-5
            assert (theirs[row, -len(prompt):] - alone).abs().max() < 1e-5


def test_generate_on_a_left_padded_batch_writes_what_each_row_writes_alone_and_what_llama_writes():
    model = _model(seed=4)
    ids, mask = _left_padded(PROMPTS)
    new = 8
    batch = generate(model, ids, new, temperature=0, attention_mask=mask)
    for row, prompt in enumerate(PROMPTS):
        alone = generate(model, torch.tensor([prompt]), new, temperature=0)
        assert torch.equal(batch[row, -new:], alone[0, -new:])
    assert torch.equal(generate(model, ids, new, temperature=0, attention_mask=mask, use_cache=False), batch)
    with torch.no_grad():
        theirs = to_huggingface(model).generate(ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                                                pad_token_id=PAD)
    assert torch.equal(theirs, batch)


# --- the cache's size, the config's checks ------------------------------------------

@pytest.mark.parametrize("kv_heads", [1, 2, 4])
def test_the_cache_holds_kv_heads_heads(kv_heads):
    model = _model(kv_heads)
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.randint(0, SMALL.vocab_size, (1, 10)), cache)
    assert cache[0].held()[0].shape == (1, kv_heads, 10, SMALL.head_dim)
    per_token = sum(layer.nbytes for layer in cache) / 10
    assert per_token == kv_cache_bytes_per_token(SMALL.layers, kv_heads, SMALL.head_dim, 4)  # float32


def test_kv_cache_bytes_of_llama_3_8b():
    assert kv_cache_bytes_per_token(32, 8, 128, 2) == 128 * 1024  # 8 key-value heads, bfloat16: 128 KiB a token
    assert kv_cache_bytes_per_token(32, 32, 128, 2) == 512 * 1024  # a key-value head per query head: 4 times more


def test_heads_must_be_a_multiple_of_kv_heads():
    with pytest.raises(ValueError, match=r"heads \(4\) must be a multiple of kv_heads \(3\)"):
        ModernConfig(heads=4, kv_heads=3)


def test_too_long_an_input_says_how_to_fix_it():
    model = _model()
    with pytest.raises(ValueError, match=r"17 tokens do not fit a context of 16: keep the last 16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    cache = model.new_cache()
    with torch.no_grad():
        model(torch.zeros(1, 10, dtype=torch.long), cache)
    with pytest.raises(ValueError, match=r"the cache holds 10 positions and 7 tokens do not fit"):
        model(torch.zeros(1, 7, dtype=torch.long), cache)


# --- attention.attend, which both decoders' attention runs through -----------------

@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("masking", [None, "causal", "mask"])
def test_attend_equals_torch_sdpa(masking, need_weights):
    torch.manual_seed(0)
    q, k, v = torch.randn(B, H, L, DH), torch.randn(B, H, L, DH), torch.randn(B, H, L, DH)
    mask = torch.rand(B, 1, L, L) > 0.5
    mask[..., 0] = True  # every query may attend to something
    given = mask if masking == "mask" else None
    out, weights = attend(q, k, v, given, is_causal=masking == "causal", need_weights=need_weights)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=given, is_causal=masking == "causal")
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert (weights is not None) == need_weights


@pytest.mark.parametrize("need_weights", [False, True])
def test_attend_causal_after_cached_positions_equals_the_explicit_mask(need_weights):
    torch.manual_seed(0)
    past = 5
    q, k, v = torch.randn(B, H, 3, DH), torch.randn(B, H, past + 3, DH), torch.randn(B, H, past + 3, DH)
    out, _ = attend(q, k, v, is_causal=True, need_weights=need_weights)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(3, past=past))
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out, attend(q, k, v, causal_mask(3, past=past))[0], atol=1e-6, rtol=0)
