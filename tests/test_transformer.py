"""The transformer block and encoder-decoder equal PyTorch's, outputs and gradients."""

import pytest
import torch
from torch import nn

from course_utils.attention import causal_mask, padding_mask
from course_utils.transformer import (DecoderLayer, Encoder, EncoderDecoder, EncoderLayer, FeedForward, LayerNorm,
                                      TransformerConfig, load_torch_weights, parameter_counts, torch_name)

pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")

B, LS, LT, D, H, FF = 2, 7, 5, 32, 4, 64
SOURCE_TOKENS = torch.tensor([[1] * LS, [1] * 4 + [0] * (LS - 4)])  # the second source is padded
TARGET_TOKENS = torch.tensor([[1] * LT, [1] * 3 + [0] * (LT - 3)])


def _config(norm="post", activation="relu", layers=2):
    return TransformerConfig(d_model=D, num_heads=H, d_ff=FF, num_encoder_layers=layers, num_decoder_layers=layers,
                             dropout=0.0, activation=activation, norm=norm)


def _torch_kwargs(config):
    return dict(d_model=D, nhead=H, dim_feedforward=FF, dropout=0.0, batch_first=True,
                norm_first=config.norm == "pre", activation={"relu": "relu", "gelu": "gelu"}[config.activation])


def _inputs(*shapes):
    torch.manual_seed(0)
    return [torch.randn(*shape) for shape in shapes]


def _assert_same_outputs_and_gradients(ours, reference, run_ours, run_reference, inputs):
    """Both modules on copies of the same inputs: outputs, input gradients and
    every parameter's gradient within 1e-5 (gradients relative to their size:
    a norm's γ sums its gradient over every position and reaches ~100)."""
    mine = [x.clone().requires_grad_() for x in inputs]
    theirs = [x.clone().requires_grad_() for x in inputs]
    out, expected = run_ours(*mine), run_reference(*theirs)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    out.pow(2).sum().backward()
    expected.pow(2).sum().backward()
    for a, b in zip(mine, theirs):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)
    reference_parameters = dict(reference.named_parameters())
    for name, parameter in ours.named_parameters():
        torch.testing.assert_close(parameter.grad, reference_parameters[torch_name(name)].grad, atol=1e-5, rtol=1e-5,
                                   msg=f"gradient of {name}")


def test_layer_norm_equals_torch_forward_and_backward():
    torch.manual_seed(0)
    reference = nn.LayerNorm(D)
    nn.init.normal_(reference.weight)
    nn.init.normal_(reference.bias)
    ours = LayerNorm(D)
    ours.load_state_dict(reference.state_dict())
    (x,) = _inputs((B, LS, D))
    _assert_same_outputs_and_gradients(ours, reference, ours, reference, [x * 3 + 1])


def test_layer_norm_computes_its_formula():
    """The fused kernel computes lesson 06's formula, with the biased variance."""
    torch.manual_seed(0)
    ours = LayerNorm(D)
    nn.init.normal_(ours.weight)
    nn.init.normal_(ours.bias)
    (x,) = _inputs((B, LS, D))
    mean, variance = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
    formula = (x - mean) / torch.sqrt(variance + ours.eps) * ours.weight + ours.bias
    torch.testing.assert_close(ours(x), formula, atol=1e-5, rtol=1e-5)


def test_layer_norm_output_has_zero_mean_and_unit_variance_before_gamma_and_beta():
    (x,) = _inputs((B, LS, D))
    y = LayerNorm(D)(x * 5 + 2)
    torch.testing.assert_close(y.mean(-1), torch.zeros(B, LS), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(B, LS), atol=1e-3, rtol=0)


def test_feed_forward_acts_on_each_position_alone():
    ff = FeedForward(_config())
    (x,) = _inputs((1, LS, D))
    torch.testing.assert_close(ff(x)[0, 3], ff(x[:, 3:4])[0, 0])


@pytest.mark.parametrize("norm", ["post", "pre"])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_equals_torch_with_padding(norm, activation):
    config = _config(norm, activation)
    torch.manual_seed(1)
    reference = nn.TransformerEncoderLayer(**_torch_kwargs(config))
    ours = load_torch_weights(EncoderLayer(config), reference)
    (x,) = _inputs((B, LS, D))
    _assert_same_outputs_and_gradients(
        ours, reference,
        lambda x: ours(x, mask=padding_mask(SOURCE_TOKENS))[0],
        lambda x: reference(x, src_key_padding_mask=SOURCE_TOKENS == 0), [x])


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_decoder_layer_equals_torch_with_causal_and_padding_masks(norm):
    config = _config(norm)
    torch.manual_seed(2)
    reference = nn.TransformerDecoderLayer(**_torch_kwargs(config))
    ours = load_torch_weights(DecoderLayer(config), reference)
    target, memory = _inputs((B, LT, D), (B, LS, D))
    self_mask = causal_mask(LT) & padding_mask(TARGET_TOKENS)
    _assert_same_outputs_and_gradients(
        ours, reference,
        lambda y, m: ours(y, m, self_mask=self_mask, memory_mask=padding_mask(SOURCE_TOKENS))[0],
        lambda y, m: reference(y, m, tgt_mask=~causal_mask(LT), tgt_key_padding_mask=TARGET_TOKENS == 0,
                               memory_key_padding_mask=SOURCE_TOKENS == 0),
        [target, memory])


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_encoder_decoder_equals_nn_transformer(norm):
    config = _config(norm)
    torch.manual_seed(3)
    kwargs = _torch_kwargs(config)
    reference = nn.Transformer(num_encoder_layers=2, num_decoder_layers=2, **kwargs)
    ours = load_torch_weights(EncoderDecoder(config), reference)
    source, target = _inputs((B, LS, D), (B, LT, D))
    _assert_same_outputs_and_gradients(
        ours, reference,
        lambda s, t: ours(s, t, source_mask=padding_mask(SOURCE_TOKENS),
                          target_mask=causal_mask(LT) & padding_mask(TARGET_TOKENS),
                          memory_mask=padding_mask(SOURCE_TOKENS)),
        lambda s, t: reference(s, t, tgt_mask=~causal_mask(LT), src_key_padding_mask=SOURCE_TOKENS == 0,
                               tgt_key_padding_mask=TARGET_TOKENS == 0, memory_key_padding_mask=SOURCE_TOKENS == 0),
        [source, target])


def test_parallel_block_is_gpt_j_and_palm_s_one_norm_read_by_both_sublayers():
    layer = EncoderLayer(_config("parallel"))
    (x,) = _inputs((B, LS, D))
    normalised = layer.norm1(x)
    expected = x + layer.self_attn(normalised)[0] + layer.feed_forward(normalised)
    torch.testing.assert_close(layer(x)[0], expected)
    assert layer.norm2 is None


def test_decoder_returns_cross_attention_over_the_source_only_where_unpadded():
    config = _config()
    model = EncoderDecoder(config)
    source, target = _inputs((B, LS, D), (B, LT, D))
    memory = model.encoder(source, padding_mask(SOURCE_TOKENS))
    _, maps = model.decoder(target, memory, causal_mask(LT), padding_mask(SOURCE_TOKENS), need_weights=True)
    assert len(maps) == 2 and maps[0].shape == (B, H, LT, LS)
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(B, H, LT))
    assert (maps[0][1, :, :, 4:] == 0).all(), "no attention on the padded source positions"


def test_parameter_counts_match_pytorch_and_the_paper_base_model():
    config = TransformerConfig()  # the paper's base model
    counted = parameter_counts(config)["total"]
    assert counted == sum(p.numel() for p in nn.Transformer(batch_first=True).parameters())
    assert counted == sum(p.numel() for p in EncoderDecoder(config).parameters())
    # With the paper's shared source-target vocabulary of about 37,000 BPE
    # tokens, about 63M: the paper's Table 3 says 65M.
    assert 60e6 < parameter_counts(config, vocab_size=37_000)["total"] < 66e6


@pytest.mark.parametrize("norm", ["post", "pre", "parallel"])
def test_parameter_counts_of_an_encoder_alone_match_the_modules_in_every_block(norm):
    config = TransformerConfig(d_model=64, num_heads=4, d_ff=256, num_encoder_layers=3, num_decoder_layers=0, norm=norm)
    assert parameter_counts(config)["total"] == sum(p.numel() for p in Encoder(config).parameters())


def test_parameter_counts_refuse_a_parallel_decoder():
    with pytest.raises(ValueError, match="encoder layers only"):
        parameter_counts(TransformerConfig(norm="parallel"))


def test_unknown_settings_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerConfig(norm="middle")
    with pytest.raises(ValueError, match="activation must be one of"):
        TransformerConfig(activation="swish")
    with pytest.raises(ValueError, match="encoder layers only"):
        DecoderLayer(_config("parallel"))


def test_loading_weights_from_a_mismatched_module_fails_loudly():
    torch.manual_seed(0)
    with pytest.raises((KeyError, ValueError, RuntimeError)):
        load_torch_weights(EncoderLayer(_config()), nn.TransformerDecoderLayer(**_torch_kwargs(_config())))


def test_parallel_block_has_no_unused_parameters():
    layer = EncoderLayer(_config("parallel"))
    (x,) = _inputs((B, LS, D))
    layer(x)[0].sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
