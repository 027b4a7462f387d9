"""The reference attention equals PyTorch's, numerically."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.attention import MultiHeadAttention, causal_mask, padding_mask, scaled_dot_product_attention

B, H, L, D = 2, 4, 7, 32


@pytest.fixture
def qkv():
    torch.manual_seed(0)
    return torch.randn(B, H, L, D // H), torch.randn(B, H, L, D // H), torch.randn(B, H, L, D // H)


def _tokenizer_mask():
    return torch.tensor([[1] * L, [1] * 4 + [0] * (L - 4)])  # the second sequence is padded


@pytest.mark.parametrize("mask", [None, "causal", "padding", "both"])
def test_equals_torch_sdpa(qkv, mask):
    masks = {None: None, "causal": causal_mask(L), "padding": padding_mask(_tokenizer_mask()),
             "both": causal_mask(L) & padding_mask(_tokenizer_mask())}
    out, weights = scaled_dot_product_attention(*qkv, mask=masks[mask])
    expected = F.scaled_dot_product_attention(*qkv, attn_mask=masks[mask])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, H, L))


def test_masked_positions_get_exactly_zero_weight(qkv):
    _, weights = scaled_dot_product_attention(*qkv, mask=causal_mask(L) & padding_mask(_tokenizer_mask()))
    assert (weights[..., causal_mask(L).logical_not()] == 0).all(), "no query sees the future"
    assert (weights[1, :, :, 4:] == 0).all(), "no query attends to padding"


def test_causal_mask_is_lower_triangular():
    assert causal_mask(3).tolist() == [[True, False, False], [True, True, False], [True, True, True]]


def test_split_and_merge_heads_are_inverse_and_slice_the_width():
    mha = MultiHeadAttention(D, H)
    x = torch.randn(B, L, D)
    heads = mha.split_heads(x)
    assert heads.shape == (B, H, L, D // H)
    torch.testing.assert_close(heads[:, 1, 3], x[:, 3, D // H: 2 * D // H])  # head 1 = second slice of the width
    torch.testing.assert_close(mha.merge_heads(heads), x)


def _pair(bias=True):
    torch.manual_seed(1)
    reference = nn.MultiheadAttention(D, H, batch_first=True, bias=bias)
    return MultiHeadAttention(D, H, bias=bias).load_from_torch(reference), reference


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("masks", ["none", "padding", "causal", "both"])
def test_multi_head_equals_torch_outputs_and_gradients(need_weights, masks):
    ours, reference = _pair()
    x = torch.randn(B, L, D)
    key_padding = _tokenizer_mask() == 0  # PyTorch: True = ignore this key
    causal = ~causal_mask(L)  # PyTorch: True = may not attend
    kwargs = {"none": {}, "padding": {"key_padding_mask": key_padding}, "causal": {"attn_mask": causal},
              "both": {"key_padding_mask": key_padding, "attn_mask": causal}}[masks]
    mask = {"none": None, "padding": padding_mask(_tokenizer_mask()), "causal": causal_mask(L),
            "both": padding_mask(_tokenizer_mask()) & causal_mask(L)}[masks]

    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, weights = ours(x_ours, mask=mask, need_weights=need_weights)
    expected, expected_weights = reference(x_ref, x_ref, x_ref, need_weights=True, average_attn_weights=False, **kwargs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    if need_weights:
        torch.testing.assert_close(weights, expected_weights, atol=1e-5, rtol=0)

    out.pow(2).sum().backward()
    expected.pow(2).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.in_proj.weight.grad, reference.in_proj_weight.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.out_proj.weight.grad, reference.out_proj.weight.grad, atol=1e-5, rtol=0)


def test_cross_attention_with_different_lengths_equals_torch():
    ours, reference = _pair()
    queries, memory = torch.randn(B, 3, D), torch.randn(B, L, D)
    out, _ = ours(queries, memory, memory)
    expected, _ = reference(queries, memory, memory)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_without_bias_equals_torch():
    ours, reference = _pair(bias=False)
    x = torch.randn(B, L, D)
    torch.testing.assert_close(ours(x)[0], reference(x, x, x)[0], atol=1e-5, rtol=0)


def test_width_must_divide_into_heads():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(30, 4)


# --- queries with nothing to attend to ----------------------------------------------------------
# Left padding under a causal mask: the first queries of a left-padded sequence
# may see only pads and themselves-as-pads, so every key of their row is masked.

def _left_padded_causal_mask():
    left_padded = torch.tensor([[1] * L, [0] * 3 + [1] * (L - 3)])  # the second sequence starts with 3 pads
    return padding_mask(left_padded) & causal_mask(L)


def test_fully_masked_rows_give_zeros_like_torch_forward_and_backward(qkv):
    mask = _left_padded_causal_mask()
    assert not mask[1, 0, 0].any(), "the set-up really has queries with no key to attend to"
    ours = [t.clone().requires_grad_() for t in qkv]
    torchs = [t.clone().requires_grad_() for t in qkv]
    out, weights = scaled_dot_product_attention(*ours, mask=mask)
    expected = F.scaled_dot_product_attention(*torchs, attn_mask=mask)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert (weights[1, :, :3] == 0).all() and (out[1, :, :3] == 0).all(), "nothing to attend to: zeros, not NaN"
    torch.testing.assert_close(weights[1, :, 3:].sum(-1), torch.ones(H, L - 3))

    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    expected.backward(grad_out)
    for name, mine, theirs in zip("qkv", ours, torchs):
        assert torch.isfinite(mine.grad).all(), f"NaN in the gradient of {name}"
        torch.testing.assert_close(mine.grad, theirs.grad, atol=1e-5, rtol=0, msg=f"gradient of {name}")


def test_both_multi_head_paths_agree_with_left_padding_and_no_nan_reaches_the_weights():
    mask = _left_padded_causal_mask()
    real_queries = mask.any(-1).squeeze(1)  # (B, L): queries that attend to something
    x = torch.randn(B, L, D)
    outputs, gradients = [], []
    for need_weights in (True, False):
        torch.manual_seed(1)
        mha = MultiHeadAttention(D, H)
        out, _ = mha(x, mask=mask, need_weights=need_weights)
        out[real_queries].pow(2).sum().backward()  # a loss that skips the padded queries
        outputs.append(out)
        gradients.append({name: p.grad for name, p in mha.named_parameters()})
        assert all(torch.isfinite(g).all() for g in gradients[-1].values()), f"NaN gradient (need_weights={need_weights})"
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=0)
    for name in gradients[0]:
        torch.testing.assert_close(gradients[0][name], gradients[1][name], atol=1e-5, rtol=0, msg=name)


def test_a_causal_mask_after_cached_positions_lets_each_query_see_its_past():
    mask = causal_mask(2, past=3)
    assert mask.tolist() == [[True, True, True, True, False], [True, True, True, True, True]]


def test_a_mask_and_is_causal_together_are_refused():
    attention = MultiHeadAttention(8, 2)
    x = torch.randn(1, 3, 8)
    with pytest.raises(ValueError, match="not both"):
        attention(x, mask=causal_mask(3), is_causal=True)


def test_is_causal_equals_the_causal_mask_on_both_paths():
    torch.manual_seed(0)
    attention = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    masked, weights = attention(x, mask=causal_mask(5), need_weights=True)
    for need_weights in (False, True):
        out, _ = attention(x, is_causal=True, need_weights=need_weights)
        torch.testing.assert_close(out, masked, atol=1e-6, rtol=1e-5)
    assert torch.equal(attention(x, is_causal=True, need_weights=True)[1] > 0, causal_mask(5).expand(2, 2, 5, 5))
