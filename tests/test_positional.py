"""Positions, checked against independent references: the paper's formula in
float64 with math.sin/math.cos, Hugging Face's Marian sinusoids, BERT's (MiniLM's)
learned positions, and Hugging Face's rotary implementations (RoFormer's
interleaved pairs and LLaMA's half-split `rotate_half`)."""

import math

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding
from transformers.models.roformer.modeling_roformer import (RoFormerSelfAttention,
                                                            RoFormerSinusoidalPositionalEmbedding)

from course_utils import positional
from course_utils.attention import scaled_dot_product_attention
from course_utils.positional import (POSITION_KINDS, LearnedPositionalEmbedding, RotaryEmbedding,
                                     SinusoidalPositionalEncoding, TinyPositionModel, apply_rotary,
                                     previous_token_batch, rotary_angles, shift_matrix, sinusoidal_encoding)

B, H, L, DH = 2, 3, 11, 16


def paper_formula(num_positions, d_model):
    """Vaswani et al. (2017), section 3.5, evaluated term by term in float64."""
    return [[math.sin(pos / 10000 ** (j / d_model)) if j % 2 == 0 else math.cos(pos / 10000 ** ((j - 1) / d_model))
             for j in range(d_model)] for pos in range(num_positions)]


def interleave(halves: torch.Tensor) -> torch.Tensor:
    """[a0 a1 ... | b0 b1 ...] -> [a0 b0 a1 b1 ...]: the half-split layout to ours."""
    first, second = halves.chunk(2, dim=-1)
    return torch.stack([first, second], dim=-1).flatten(-2)


# --- sinusoidal -----------------------------------------------------------------

@pytest.mark.parametrize("num_positions, d_model", [(1, 2), (50, 16), (512, 128), (7, 384)])
def test_sinusoidal_equals_the_paper_formula_in_float64(num_positions, d_model):
    ours = sinusoidal_encoding(num_positions, d_model)
    assert ours.shape == (num_positions, d_model) and ours.dtype == torch.float32
    expected = torch.tensor(paper_formula(num_positions, d_model), dtype=torch.float64)
    torch.testing.assert_close(ours.double(), expected, atol=1e-7, rtol=0)


@pytest.mark.parametrize("num_positions, d_model", [(64, 32), (512, 384)])
def test_sinusoidal_equals_hugging_face_marian_after_interleaving(num_positions, d_model):
    marian = MarianSinusoidalPositionalEmbedding(num_positions, d_model).create_weight()  # [sin | cos] halves
    torch.testing.assert_close(sinusoidal_encoding(num_positions, d_model), interleave(marian), atol=1e-6, rtol=0)
    # ... and the layouts really differ: the test would catch a concatenated version.
    assert not torch.allclose(sinusoidal_encoding(num_positions, d_model), marian, atol=1e-3)


def test_position_zero_is_sin_0_cos_0_and_values_are_bounded():
    encoding = sinusoidal_encoding(100, 64)
    assert encoding[0].tolist() == [0.0, 1.0] * 32
    assert encoding.abs().max() <= 1
    # Each pair lies on the unit circle: sin^2 + cos^2 = 1, so every row has norm sqrt(D/2).
    torch.testing.assert_close(encoding.norm(dim=-1), torch.full((100,), math.sqrt(32)))


def test_odd_width_is_refused():
    with pytest.raises(ValueError, match="must be even"):
        sinusoidal_encoding(10, 7)


@pytest.mark.parametrize("offset", [1, 5, 37, -3])
def test_shift_matrix_moves_every_position_by_the_offset(offset):
    d_model, encoding = 64, sinusoidal_encoding(200, 64)
    positions = torch.arange(max(0, -offset), 200 - max(0, offset))
    moved = encoding[positions] @ shift_matrix(offset, d_model).T  # M_k @ PE[pos], one row per pos
    torch.testing.assert_close(moved, encoding[positions + offset], atol=2e-5, rtol=0)


def test_shift_matrix_is_a_rotation_and_shifts_compose():
    m3, m4 = shift_matrix(3, 32), shift_matrix(4, 32)
    torch.testing.assert_close(m3 @ m3.T, torch.eye(32), atol=1e-6, rtol=0)  # orthogonal
    torch.testing.assert_close(m3 @ m4, shift_matrix(7, 32), atol=1e-6, rtol=0)
    torch.testing.assert_close(shift_matrix(0, 32), torch.eye(32))
    assert not torch.allclose(shift_matrix(1, 32), torch.eye(32), atol=1e-2)


def test_dot_product_of_two_positions_depends_on_their_offset_only():
    encoding = sinusoidal_encoding(300, 128).double()
    for offset in (0, 1, 10, 50):
        dots = torch.stack([encoding[pos] @ encoding[pos + offset] for pos in (0, 17, 120, 249)])
        expected = torch.cos(offset * positional.frequencies(128)).sum()  # sum_i cos(k theta_i)
        torch.testing.assert_close(dots, expected.expand(4), atol=1e-5, rtol=0)
    assert encoding[0] @ encoding[1] > encoding[0] @ encoding[10] > encoding[0] @ encoding[50]


def test_sinusoidal_module_adds_the_table_has_no_parameters_and_stays_out_of_the_state_dict():
    module = SinusoidalPositionalEncoding(32, max_len=64)
    x = torch.randn(B, L, 32)
    torch.testing.assert_close(module(x), x + sinusoidal_encoding(L, 32))
    torch.testing.assert_close(module(x[:, 5:6], offset=5), module(x)[:, 5:6])  # one token at a time
    assert list(module.parameters()) == [] and "encoding" not in module.state_dict()
    with pytest.raises(ValueError, match="max_len"):
        module(torch.zeros(1, 60, 32), offset=10)


# --- learned --------------------------------------------------------------------

def test_learned_module_is_an_embedding_lookup_of_positions():
    torch.manual_seed(0)
    module = LearnedPositionalEmbedding(max_len=16, d_model=8)
    x = torch.randn(B, 5, 8)
    torch.testing.assert_close(module(x), x + module.embedding.weight[:5])
    torch.testing.assert_close(module(x, offset=3), x + module.embedding.weight[3:8])
    assert 0.01 < module.embedding.weight.std().item() < 0.03  # initialised like BERT and GPT-2
    module(x).sum().backward()
    assert module.embedding.weight.grad[:5].abs().sum() > 0 and module.embedding.weight.grad[5:].abs().sum() == 0
    with pytest.raises(ValueError, match="knows 16 positions"):
        module(torch.zeros(1, 17, 8))


def test_learned_module_reproduces_bert_embeddings_of_the_pretrained_minilm():
    """BertEmbeddings = LayerNorm(word + position + token type): with MiniLM's own
    position table loaded, our module gives Hugging Face's output exactly."""
    from course_utils.pretrained import load_encoder

    tokenizer, model = load_encoder()
    ids = tokenizer("Brutus stabbed Caesar.", return_tensors="pt")["input_ids"]
    table = model.embeddings.position_embeddings.weight
    module = LearnedPositionalEmbedding(*table.shape)
    with torch.no_grad():
        module.embedding.weight.copy_(table)
        tokens = model.embeddings.word_embeddings(ids) + model.embeddings.token_type_embeddings(torch.zeros_like(ids))
        ours = model.embeddings.LayerNorm(module(tokens))
        expected = model.embeddings(input_ids=ids)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


# --- rotary ---------------------------------------------------------------------

@pytest.fixture
def qk():
    torch.manual_seed(0)
    return torch.randn(B, H, L, DH), torch.randn(B, H, L, DH)


def test_rotary_equals_hugging_face_roformer(qk):
    """RoFormer (Su et al.'s own model) rotates interleaved pairs, like ours."""
    q, k = qk
    table = RoFormerSinusoidalPositionalEmbedding(L, DH).create_weight()  # (L, DH): [sin | cos] of m * theta_i
    q_hf, k_hf = RoFormerSelfAttention.apply_rotary_position_embeddings(table[None, None], q, k)
    cos, sin = rotary_angles(L, DH)
    torch.testing.assert_close(apply_rotary(q, cos, sin), q_hf, atol=1e-5, rtol=0)
    torch.testing.assert_close(apply_rotary(k, cos, sin), k_hf, atol=1e-5, rtol=0)


def test_rotary_equals_hugging_face_llama_with_its_half_split_layout(qk):
    """LLaMA pairs feature i with i + Dh/2 (`rotate_half`). Give it our
    features in that order and it must return our output in that order."""
    q, k = qk
    config = LlamaConfig(hidden_size=H * DH, num_attention_heads=H, head_dim=DH, max_position_embeddings=64,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    rope_hf = LlamaRotaryEmbedding(config)
    positions = torch.arange(L)[None].expand(B, L)
    cos_hf, sin_hf = rope_hf(q, positions)
    to_halves = torch.cat([torch.arange(0, DH, 2), torch.arange(1, DH, 2)])  # our layout -> LLaMA's
    q_hf, k_hf = apply_rotary_pos_emb(q[..., to_halves], k[..., to_halves], cos_hf, sin_hf)
    q_ours, k_ours = RotaryEmbedding(DH, max_len=64)(q, k)
    torch.testing.assert_close(q_ours[..., to_halves], q_hf, atol=1e-5, rtol=0)
    torch.testing.assert_close(k_ours[..., to_halves], k_hf, atol=1e-5, rtol=0)
    torch.testing.assert_close(interleave(q_hf), q_ours, atol=1e-5, rtol=0)


def test_rotary_scores_depend_on_the_relative_offset_only():
    torch.manual_seed(1)
    q, k = torch.randn(DH, dtype=torch.float64), torch.randn(DH, dtype=torch.float64)
    cos, sin = rotary_angles(300, DH)
    cos, sin = cos.double(), sin.double()

    def score(m, n):
        return apply_rotary(q[None], cos[m:m + 1], sin[m:m + 1])[0] @ apply_rotary(k[None], cos[n:n + 1], sin[n:n + 1])[0]

    for offset in (0, 1, 7, 100):
        scores = torch.stack([score(m + offset, m) for m in (0, 3, 50, 199)])
        torch.testing.assert_close(scores, scores[0].expand(4), atol=1e-5, rtol=0)
    assert not torch.isclose(score(5, 0), score(6, 0))  # a different offset, a different score


def test_rotary_preserves_norms_and_leaves_position_zero_alone(qk):
    q, _ = qk
    rotated, _ = RotaryEmbedding(DH, max_len=64)(q, q)
    torch.testing.assert_close(rotated.norm(dim=-1), q.norm(dim=-1))
    torch.testing.assert_close(rotated[..., 0, :], q[..., 0, :])
    assert not torch.allclose(rotated[..., 1:, :], q[..., 1:, :], atol=1e-3)


def test_rotary_rotation_is_the_transposed_shift_matrix():
    """RoPE rotates each pair by +m theta_i; the sinusoidal shift M_m rotates the
    (sin, cos) pairs by -m theta_i: for every vector, rope(x, m) = M_m^T x."""
    torch.manual_seed(2)
    x = torch.randn(5, DH)
    cos, sin = rotary_angles(10, DH)
    for m in (1, 4, 9):
        torch.testing.assert_close(apply_rotary(x, cos[m:m + 1], sin[m:m + 1]), x @ shift_matrix(m, DH), atol=1e-5, rtol=0)


def test_rotary_with_offset_matches_the_full_sequence(qk):
    """Generating token by token (a KV cache) rotates each new token by its own position."""
    q, k = qk
    rope = RotaryEmbedding(DH, max_len=64)
    q_all, k_all = rope(q, k)
    q_last, k_last = rope(q[..., 7:, :], k[..., 7:, :], offset=7)
    torch.testing.assert_close(q_last, q_all[..., 7:, :])
    torch.testing.assert_close(k_last, k_all[..., 7:, :])
    with pytest.raises(ValueError, match="same positions"):
        rope(q, k[..., :5, :])


def test_attention_with_rotary_is_invariant_to_shifting_the_whole_sequence(qk):
    """Only offsets matter: the same tokens placed 20 positions later get the
    same attention weights."""
    q, k = qk
    rope = RotaryEmbedding(DH, max_len=64)
    _, weights = scaled_dot_product_attention(*rope(q, k), k)
    _, shifted = scaled_dot_product_attention(*rope(q, k, offset=20), k)
    torch.testing.assert_close(shifted, weights, atol=1e-5, rtol=0)


# --- the tiny model of lesson 05's length experiment ------------------------------

def test_previous_token_batch_targets_are_the_tokens_one_step_back():
    ids, targets = previous_token_batch(3, 10, 16, torch.Generator().manual_seed(0))
    assert ids.shape == targets.shape == (3, 10) and int(ids.max()) < 16
    assert (targets[:, 0] == -100).all()
    torch.testing.assert_close(targets[:, 1:], ids[:, :-1])


@pytest.mark.parametrize("kind", POSITION_KINDS)
def test_tiny_model_sees_order_only_with_positions(kind):
    """Without positions the model is permutation-equivariant (lesson 05's first
    claim); each of the three ways of adding positions breaks that."""
    torch.manual_seed(0)
    model = TinyPositionModel(16, d_model=32, num_heads=2, positions=kind, max_len=32).eval()
    ids = torch.randint(0, 16, (2, 12))
    shuffle = torch.randperm(12)
    with torch.no_grad():
        logits, shuffled = model(ids), model(ids[:, shuffle])
    assert logits.shape == (2, 12, 16)
    equivariant = torch.allclose(shuffled, logits[:, shuffle], atol=1e-5)
    assert equivariant == (kind == "none")


def test_tiny_model_lengths_beyond_max_len():
    """Learned positions stop at max_len; the others run at any length."""
    ids = torch.zeros(1, 40, dtype=torch.long)
    for kind in POSITION_KINDS:
        model = TinyPositionModel(16, positions=kind, max_len=32)
        if kind == "learned":
            with pytest.raises(ValueError, match="do not fit"):
                model(ids)
        else:
            assert model(ids).shape == (1, 40, 16)
    with pytest.raises(ValueError, match="positions must be one of"):
        TinyPositionModel(16, positions="absolute")
