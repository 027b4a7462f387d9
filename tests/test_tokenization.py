"""course_utils.tokenization against its references: one-hot products equal
nn.Embedding, the from-scratch BPE learns the merges of `tokenizers`, and the
trained Shakespeare BPE round-trips text, is deterministic and is cached."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import data, tokenization
from course_utils.tokenization import (SPECIAL_TOKENS, apply_bpe, embed, learn_bpe, nearest_neighbours, one_hot,
                                       pre_tokenize)

# --- one-hot vectors and embeddings --------------------------------------------------


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_one_hot_equals_torch_one_hot_as_floats(shape):
    ids = torch.randint(0, 11, shape, generator=torch.Generator().manual_seed(0))
    vectors = one_hot(ids, 11)
    assert vectors.dtype == torch.float32 and vectors.shape == (*shape, 11)
    assert torch.equal(vectors, F.one_hot(ids, 11).float())
    assert torch.equal(vectors.sum(-1), torch.ones(shape)), "exactly one 1 per id"


def test_one_hot_accepts_int32_and_refuses_float_ids():
    assert torch.equal(one_hot(torch.tensor([2, 0], dtype=torch.int32), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))
    with pytest.raises(TypeError, match="ids must be integers"):
        one_hot(torch.tensor([1.0, 2.0]), 3)


@pytest.mark.parametrize("ids_shape", [(6,), (4, 9)])
def test_one_hot_times_weight_equals_nn_embedding_and_its_gradient(ids_shape):
    torch.manual_seed(0)
    reference = nn.Embedding(40, 16)
    ids = torch.randint(0, 40, ids_shape)
    weight = reference.weight.detach().clone().requires_grad_()

    ours = one_hot(ids, 40) @ weight
    torch.testing.assert_close(ours, reference(ids), atol=0, rtol=0)  # a 1 times a row, plus zeros: exact
    torch.testing.assert_close(embed(ids, weight), F.embedding(ids, weight), atol=0, rtol=0)

    ours.pow(3).sum().backward()
    reference(ids).pow(3).sum().backward()
    torch.testing.assert_close(weight.grad, reference.weight.grad)
    unused = torch.ones(40, dtype=torch.bool)
    unused[ids.flatten()] = False
    assert (weight.grad[unused] == 0).all() and (weight.grad[~unused] != 0).any()


def test_embed_keeps_the_weight_dtype():
    weight = torch.randn(5, 3, dtype=torch.float64)
    assert embed(torch.tensor([4, 1]), weight).dtype == torch.float64


def test_embed_is_the_first_step_of_the_pretrained_encoder():
    from course_utils.pretrained import load_encoder

    tokenizer, model = load_encoder()
    ids = tokenizer("Wherefore art thou Romeo?", return_tensors="pt")["input_ids"]
    table = model.embeddings.word_embeddings
    with torch.no_grad():
        torch.testing.assert_close(embed(ids, table.weight), table(ids), atol=0, rtol=0)


def test_nearest_neighbours_is_brute_force_cosine_without_itself():
    weight = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    weight[7] = 5 * weight[3]  # same direction, five times longer: cosine 1
    ids, similarities = nearest_neighbours(weight, 3, k=4)
    brute = F.cosine_similarity(weight, weight[3:4], dim=-1)
    brute[3] = -float("inf")
    torch.testing.assert_close(similarities, brute.topk(4).values)
    assert ids.tolist() == brute.topk(4).indices.tolist() and ids[0] == 7 and 3 not in ids.tolist()
    assert similarities[0].item() == pytest.approx(1.0)


# --- BPE -----------------------------------------------------------------------------

ROUND_TRIP = [
    "Wherefore art thou Romeo?\nDeny thy father and refuse thy name;",
    "  leading spaces, trailing spaces  \n\n\ttabs\tand  double  spaces ",
    "Accents and symbols: café, naïve, Æthelred, €20, ★, 𝔘, 漢字, 🙂",
    "",
]


@pytest.fixture(scope="module")
def bpe():
    return tokenization.shakespeare_bpe()


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_bpe_round_trips_any_text(bpe, text):
    ids = bpe.encode(text).ids
    assert bpe.decode(ids) == text
    assert bpe.token_to_id("[UNK]") is None, "byte-level BPE has no unknown token"


def test_bpe_round_trips_the_validation_plays(bpe):
    _, validation = data.shakespeare_splits()
    assert bpe.decode(bpe.encode(validation).ids) == validation


def test_bpe_vocabulary_special_tokens_and_frequent_words(bpe):
    assert bpe.get_vocab_size() == tokenization.DEFAULT_VOCAB_SIZE
    assert [bpe.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))
    for word in (" the", " thou", " king", " love"):
        assert len(bpe.encode(word).ids) == 1, f"{word!r} is frequent in Shakespeare: one token"
    assert len(bpe.encode(" honorificabilitudinitatibus").ids) > 5, "a word seen once splits into many pieces"
    assert bpe.encode("To be").tokens == ["To", "Ġbe"]


def test_bpe_from_the_cache_is_what_training_gives(bpe):
    train, _ = data.shakespeare_splits()
    assert tokenization.train_bpe([train], tokenization.DEFAULT_VOCAB_SIZE).to_str() == bpe.to_str()


def test_bpe_training_is_deterministic():
    text = data.plays()["hamlet"]
    first, second = (tokenization.train_bpe([text], 700).to_str() for _ in range(2))
    assert first == second


def test_bpe_cache_is_written_once_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    path = tokenization.bpe_cache_path(400)
    assert path.parent == tmp_path and "400" in path.name
    trained = tokenization.shakespeare_bpe(400)
    assert path.is_file() and trained.get_vocab_size() == 400
    assert not list(tmp_path.glob("*.partial")), "no half-written file is left behind"

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    monkeypatch.setattr(tokenization, "train_bpe", no_training)
    again = tokenization.shakespeare_bpe(400)
    assert again.to_str() == trained.to_str()
    assert again is not trained, "a fresh object each call: settings never leak between callers"
    with pytest.raises(AssertionError, match="trained again"):
        tokenization.shakespeare_bpe(401)  # another size is another file


@pytest.mark.parametrize("play", ["the-tempest", "macbeth"])
def test_learn_bpe_from_scratch_learns_the_merges_of_tokenizers(play):
    text = data.plays()[play]
    num_merges = 150
    ours = learn_bpe(pre_tokenize(text), num_merges)
    library = tokenization.train_bpe([text], 256 + len(SPECIAL_TOKENS) + num_merges)
    assert len(ours) == num_merges and ours == tokenization.bpe_merges(library)


def test_learn_bpe_on_a_sample_of_lines_and_apply_bpe_on_held_out_words_match_tokenizers():
    # What lesson 01's checker does: a sample of lines, a few hundred merges,
    # then words of the validation plays that the sample never contained.
    sample = "\n".join(data.plays()["hamlet"].splitlines()[::4])
    num_merges = 200
    sample_pieces = pre_tokenize(sample)
    ours = learn_bpe(sample_pieces, num_merges)
    library = tokenization.train_bpe([sample], 256 + len(SPECIAL_TOKENS) + num_merges)
    assert ours == tokenization.bpe_merges(library)
    _, validation = data.shakespeare_splits()
    held_out = [piece for piece in pre_tokenize(validation) if piece not in sample_pieces]
    assert len(held_out) > 1000
    for piece in held_out:
        assert apply_bpe(piece, ours) == tuple(token.value for token in library.model.tokenize(piece)), piece


def test_apply_bpe_with_the_8000_token_shakespeare_bpe_matches_the_library(bpe):
    merges = tokenization.bpe_merges(bpe)
    for piece in pre_tokenize(data.plays()["macbeth"]):
        assert apply_bpe(piece, merges) == tuple(token.value for token in bpe.model.tokenize(piece)), piece


def test_apply_bpe_by_hand():
    merges = [("a", "r"), ("b", "ar"), ("o", "u"), ("ou", "s")]
    assert apply_bpe("barbarous", merges) == ("bar", "bar", "ous"), "every occurrence of a pair is merged"
    assert apply_bpe("xyz", merges) == ("x", "y", "z") and apply_bpe("", merges) == ()
    # "b b" occurs twice in "abbb" and "a b" once, but "a b" was learned first: rank decides
    assert apply_bpe("abbb", [("a", "b"), ("b", "b")]) == ("ab", "bb")


def test_learn_bpe_by_hand():
    # "low" x5, "lower" x2, "newest" x6, "widest" x3 (the textbook example):
    # "es" (9) is merged first, then "est" (9), then the ties: older symbols first.
    merges = learn_bpe({"low": 5, "lower": 2, "newest": 6, "widest": 3}, 4)
    assert merges[:2] == [("e", "s"), ("es", "t")]
    assert merges[2:] == [("l", "o"), ("lo", "w")]
    assert learn_bpe({"a": 3}, 5) == [], "nothing to merge in single characters"


def test_as_transformers_encodes_the_same_and_saves(bpe, tmp_path):
    from transformers import AutoTokenizer

    wrapped = tokenization.as_transformers(bpe)
    text = "Good night, sweet prince:\nAnd flights of angels sing thee to thy rest!"
    assert wrapped(text)["input_ids"] == bpe.encode(text).ids
    assert (wrapped.pad_token_id, wrapped.mask_token_id, wrapped.eos_token_id) == (0, 3, 4)
    wrapped.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text)["input_ids"] == bpe.encode(text).ids and reloaded.decode(reloaded(text)["input_ids"]) == text



def test_lesson_08_reads_the_shipped_wordpiece_vocabulary():
    shipped = tokenization.SHAKESPEARE_WORDPIECE.read_text(encoding="utf-8").splitlines()
    vocab = tokenization.shakespeare_wordpiece().get_vocab()
    assert len(shipped) == tokenization.WORDPIECE_VOCAB_SIZE == len(vocab)
    assert vocab == {piece: i for i, piece in enumerate(shipped)}


def test_training_again_learns_the_shipped_pieces_numbered_in_sorted_order():
    """The `tokenizers` trainer numbers its pieces in another order in each
    process and may keep either of two equally frequent pairs at the end, so
    the pieces are renumbered and the vocabulary is shipped; training again
    still learns it, but for such ties."""
    train_text, _ = data.shakespeare_splits()
    trained = tokenization.train_wordpiece(train_text.split("\n")).get_vocab()
    pieces = sorted(trained, key=trained.get)
    assert pieces[:5] == list(tokenization.WORDPIECE_SPECIALS) and pieces[5:] == sorted(pieces[5:])
    shipped = set(tokenization.SHAKESPEARE_WORDPIECE.read_text(encoding="utf-8").splitlines())
    assert len(shipped & set(trained)) >= 3990, sorted(shipped ^ set(trained))
