"""Our BERT (course_utils.bert) equals Hugging Face's BertForPreTraining with
the same weights, both heads, with padding and two segments, both ways; its
masking follows BERT's rates and never touches special tokens."""

import pytest
import torch

from course_utils.bert import IGNORE_INDEX, Bert, bert_config, from_huggingface, mask_tokens, to_huggingface

VOCAB, MAX_LEN = 60, 24


def inputs():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (3, 10), generator=generator)
    segments = torch.zeros_like(ids)
    segments[:, 5:] = 1  # a second segment after position 5
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 7:] = 0  # padding at the end of the second row
    attention_mask[2, 4:] = 0
    return ids, segments, attention_mask


def trained_looking_bert() -> Bert:
    """Random weights well away from their initial values, so that no part
    (a bias at zero, a norm at one) could be left out unnoticed."""
    torch.manual_seed(0)
    model = Bert(bert_config(d_model=32, num_heads=4, d_ff=64, num_layers=2, dropout=0.0), VOCAB, MAX_LEN).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def test_to_huggingface_gives_the_same_logits_of_both_heads():
    ours = trained_looking_bert()
    theirs = to_huggingface(ours)
    ids, segments, attention_mask = inputs()
    with torch.no_grad():
        mlm, nsp = ours(ids, segments, attention_mask)
        reference = theirs(input_ids=ids, token_type_ids=segments, attention_mask=attention_mask)
    real = attention_mask.bool()  # padded positions' outputs are not compared: they are not used
    assert torch.allclose(mlm[real], reference.prediction_logits[real], atol=1e-5)
    assert torch.allclose(nsp, reference.seq_relationship_logits, atol=1e-5)


def test_from_huggingface_round_trip_keeps_every_weight():
    ours = trained_looking_bert()
    back = from_huggingface(to_huggingface(ours))
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, back.state_dict()[name]), name


def test_from_a_fresh_huggingface_model_the_logits_agree():
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(1)
    theirs = BertForPreTraining(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                           intermediate_size=64, max_position_embeddings=MAX_LEN)).eval()
    ours = from_huggingface(theirs)
    ids, segments, attention_mask = inputs()
    with torch.no_grad():
        mlm, nsp = ours(ids, segments, attention_mask)
        reference = theirs(input_ids=ids, token_type_ids=segments, attention_mask=attention_mask)
    real = attention_mask.bool()
    assert torch.allclose(mlm[real], reference.prediction_logits[real], atol=1e-5)
    assert torch.allclose(nsp, reference.seq_relationship_logits, atol=1e-5)


def test_the_output_layer_is_the_token_embedding_table_on_both_sides():
    ours = trained_looking_bert()
    tables = [name for name, p in ours.named_parameters() if p.shape == (VOCAB, 32)]
    assert tables == ["embeddings.token.weight"]  # no separate output matrix
    theirs = to_huggingface(ours)
    assert theirs.cls.predictions.decoder.weight.data_ptr() == theirs.bert.embeddings.word_embeddings.weight.data_ptr()


def test_padding_does_not_change_real_positions():
    ours = trained_looking_bert()
    ids, segments, attention_mask = inputs()
    with torch.no_grad():
        full = ours.encode(ids[2:], segments[2:], attention_mask[2:])[0, :4]
        alone = ours.encode(ids[2:, :4], segments[2:, :4])[0]
    assert torch.allclose(full, alone, atol=1e-5)


def test_a_pre_ln_config_is_refused_with_a_reason():
    config = bert_config()
    config.norm = "pre"
    with pytest.raises(ValueError, match="post-LN"):
        Bert(config, VOCAB)


# --- masking --------------------------------------------------------------------------

MASK_ID, FIRST_WORD = 4, 5


def masking_sample(seed: int, rows: int = 64, length: int = 50):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(FIRST_WORD, VOCAB, (rows, length), generator=generator)
    ids[:, 0], ids[:, 25] = 1, 2  # [CLS] and [SEP]
    ids[: rows // 4, 40:] = 0  # padding
    special = ids < FIRST_WORD
    inputs, labels = mask_tokens(ids, special, MASK_ID, FIRST_WORD, VOCAB, generator=generator)
    return ids, special, inputs, labels


def test_masking_rates_are_bert_s_over_many_seeds():
    chosen = allowed = masked = replaced = kept = 0
    for seed in range(20):
        ids, special, inputs, labels = masking_sample(seed)
        picked = labels != IGNORE_INDEX
        chosen += picked.sum().item()
        allowed += (~special).sum().item()
        masked += (inputs[picked] == MASK_ID).sum().item()
        kept += (inputs[picked] == ids[picked]).sum().item()
        replaced += ((inputs[picked] != ids[picked]) & (inputs[picked] != MASK_ID)).sum().item()
    assert abs(chosen / allowed - 0.15) < 0.01
    assert abs(masked / chosen - 0.8) < 0.02
    # A random word is the original one 1 time in 55: "kept" gains that share of the 10%.
    assert abs(replaced / chosen - 0.1 * 54 / 55) < 0.015
    assert abs(kept / chosen - (0.1 + 0.1 / 55)) < 0.015


def test_masking_never_touches_special_tokens_and_labels_only_chosen_positions():
    for seed in range(5):
        ids, special, inputs, labels = masking_sample(seed)
        assert torch.equal(inputs[special], ids[special])  # [CLS], [SEP], padding as they were
        assert (labels[special] == IGNORE_INDEX).all()
        picked = labels != IGNORE_INDEX
        assert torch.equal(labels[picked], ids[picked])  # the label is the original word
        assert torch.equal(inputs[~picked], ids[~picked])  # nothing else changes
        assert (inputs[picked & (inputs != MASK_ID)] >= FIRST_WORD).all()  # random words are words


# --- the WordPiece tokenizer and the Hugging Face bridge --------------------------------

def test_wordpiece_has_bert_s_special_tokens_and_pair_layout():
    from course_utils.tokenization import WORDPIECE_SPECIALS, shakespeare_wordpiece

    tokenizer = shakespeare_wordpiece()
    assert tokenizer.convert_tokens_to_ids(list(WORDPIECE_SPECIALS)) == [0, 1, 2, 3, 4]
    encoded = tokenizer("To be, or not to be", "that is the question")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    first_sep = tokens.index("[SEP]")
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens[1:3] == ["to", "be"]
    assert encoded["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert "##" in "".join(tokenizer.convert_ids_to_tokens(tokenizer("whether tis nobler")["input_ids"]))


def test_a_saved_model_and_tokenizer_serve_pipeline_fill_mask_with_our_probabilities(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

    from course_utils.tokenization import shakespeare_wordpiece

    tokenizer = shakespeare_wordpiece()
    torch.manual_seed(0)
    ours = Bert(bert_config(d_model=32, num_heads=4, d_ff=64, num_layers=2, dropout=0.0), len(tokenizer), 64).eval()
    to_huggingface(ours).save_pretrained(tmp_path)  # the MLM head and encoder load as BertForMaskedLM
    tokenizer.save_pretrained(tmp_path)
    fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(tmp_path),
                    tokenizer=AutoTokenizer.from_pretrained(tmp_path), top_k=3)
    predictions = fill("to be or not to [MASK]")

    encoded = tokenizer("to be or not to [MASK]", return_tensors="pt")
    with torch.no_grad():
        mlm, _ = ours(encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"])
    where = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero().item()
    top = mlm[0, where].softmax(dim=-1).topk(3)
    assert [p["token"] for p in predictions] == top.indices.tolist()
    assert all(abs(p["score"] - score) < 1e-5 for p, score in zip(predictions, top.values.tolist()))


# --- next-sentence prediction data and the pre-training loss ---------------------------

def toy_plays() -> dict[str, list[str]]:
    """Three 'plays' whose speeches say where they come from: 'p1s7: w w w'."""
    return {f"p{p}": [f"p{p}s{i}: " + " ".join(["w"] * (i % 3)) for i in range(80)] for p in range(3)}


def test_a_segment_is_whole_speeches_cut_at_the_word_budget():
    from course_utils.bert import segment_at

    play = ["Hamlet: to be", "Horatio: my lord", "Hamlet: or not to be"]
    assert segment_at(play, 0, words=5) == ("Hamlet: to be Horatio: my", 2)
    assert segment_at(play, 2, words=3) == ("Hamlet: or not", 3)


def test_nsp_pairs_are_half_true_continuations_and_negatives_come_from_where_asked():
    import random

    from course_utils.bert import IS_NEXT, NOT_NEXT, nsp_pairs, segment_at

    plays = toy_plays()
    for negatives in ("other", "same", "swapped"):
        pairs = nsp_pairs(plays, 2000, random.Random(0), negatives, words=4)
        assert abs(sum(label == IS_NEXT for *_, label in pairs) / len(pairs) - 0.5) < 0.04
        for a, b, label in pairs:
            play, start = a.split("s")[0], int(a.split("s")[1].split(":")[0])
            b_play, b_start = b.split("s")[0], int(b.split("s")[1].split(":")[0])
            if label == IS_NEXT or negatives == "swapped":
                first, second = ((play, start), (b_play, b_start))[:: 1 if label == IS_NEXT else -1]
                assert second == (first[0], segment_at(plays[first[0]], first[1], 4)[1])
            else:
                assert label == NOT_NEXT and (b_play != play) == (negatives == "other")
                if negatives == "same":  # no speech shared with A or with A's continuation
                    after = segment_at(plays[play], start, 4)[1]
                    taken = set(range(start, segment_at(plays[play], after, 4)[1]))
                    assert not taken & set(range(b_start, segment_at(plays[play], b_start, 4)[1]))


def test_same_play_negatives_come_from_before_a_as_well_as_after():
    import random

    from course_utils.bert import NOT_NEXT, nsp_pairs

    pairs = nsp_pairs(toy_plays(), 1000, random.Random(1), "same", words=4)
    sides = {int(b.split("s")[1].split(":")[0]) < int(a.split("s")[1].split(":")[0])
             for a, b, label in pairs if label == NOT_NEXT}
    assert sides == {True, False}  # a negative's place in the play gives nothing away


def test_nsp_pair_refuses_an_unknown_kind_of_negative():
    import random

    from course_utils.bert import nsp_pair

    with pytest.raises(ValueError, match="'other', 'same' or 'swapped'"):
        nsp_pair(toy_plays(), "p0", 0, random.Random(), negatives="another")


def test_sop_pair_holds_a_segment_and_its_continuation_in_either_order():
    import random

    from course_utils.bert import IS_NEXT, segment_at, sop_pair

    play = toy_plays()["p1"]
    orders = []
    for seed in range(200):
        first, second, label = sop_pair(play, 10, random.Random(seed), words=4)
        a, after = segment_at(play, 10, 4)
        b = segment_at(play, after, 4)[0]
        assert (first, second) == ((a, b) if label == IS_NEXT else (b, a)) and type(label) is int
        orders.append(label)
    assert 70 < orders.count(IS_NEXT) < 130


def test_held_out_pairs_are_balanced_without_repeats_and_share_no_speech_between_as():
    import random

    from course_utils.bert import IS_NEXT, held_out_pairs, segment_at, segment_starts

    plays = toy_plays()
    for negatives in ("other", "same", "swapped"):
        pairs = held_out_pairs(plays, 60, random.Random(0), negatives, words=4)
        labels = [label for *_, label in pairs]
        assert labels.count(IS_NEXT) == 30  # exactly half: a constant answer scores 0.5
        firsts = [a if label == IS_NEXT or negatives != "swapped" else b for a, b, label in pairs]
        assert len(set(firsts)) == 60  # no A twice
    for play in plays.values():  # the segments held-out As are drawn from are disjoint
        starts = segment_starts(play, 4)
        assert all(segment_at(play, s, 4)[1] <= t for s, t in zip(starts, starts[1:]))
    assert held_out_pairs(plays, 60, random.Random(0), words=4) == held_out_pairs(plays, 60, random.Random(0), words=4)
    with pytest.raises(ValueError, match="even"):
        held_out_pairs(plays, 61, random.Random(0), words=4)
    with pytest.raises(ValueError, match="at most"):
        held_out_pairs(plays, 10_000, random.Random(0), words=4)


def test_held_out_starts_are_the_as_of_the_held_out_pairs():
    import random

    from course_utils.bert import IS_NEXT, PretrainingRecipe, segment_at

    plays, recipe = toy_plays(), PretrainingRecipe(words=4)
    for negatives in ("other", "same"):  # A comes first in these pairs
        starts = recipe.held_out_starts(plays, negatives, 60)
        pairs = recipe.held_out_pairs(plays, negatives, 60)
        assert [a for a, _, _ in pairs] == [segment_at(plays[play], start, 4)[0] for play, start in starts]
    starts = recipe.held_out_starts(plays, "swapped", 60)
    pairs = recipe.held_out_pairs(plays, "swapped", 60)
    assert all((a if label == IS_NEXT else b) == segment_at(plays[play], start, 4)[0]
               for (play, start), (a, b, label) in zip(starts, pairs))


def test_the_cluster_interval_resamples_whole_clusters():
    from course_utils.bert import cluster_interval95, interval95

    # Two plays of 100 pairs, 40% and 80% right: a resample holds one of them twice, or both.
    right = torch.tensor([True] * 40 + [False] * 60 + [True] * 80 + [False] * 20)
    plays = ["a"] * 100 + ["b"] * 100
    assert cluster_interval95(right, plays) == pytest.approx((0.4, 0.8))
    # Plays that do not differ: about the interval over pairs.
    generator = torch.Generator().manual_seed(0)
    right = torch.rand(4000, generator=generator) < 0.6
    plays = [f"p{i % 40}" for i in range(4000)]
    low, high = cluster_interval95(right, plays)
    expected_low, expected_high = interval95(right.float().mean().item(), 4000)
    assert abs((high - low) - (expected_high - expected_low)) < 0.01


def test_above_chance_is_one_test_and_its_threshold_agrees():
    from course_utils.bert import above_chance, interval95, lowest_above_chance

    assert not above_chance(0.52, 2000, 0.5) and above_chance(0.53, 2000, 0.5)
    assert not above_chance(0.53, 2000, 0.52)  # against the majority rate, not against 0.5
    lowest = lowest_above_chance(1900, 0.5)
    assert above_chance(lowest, 1900, 0.5) and not above_chance(lowest - 1 / 1900, 1900, 0.5)
    assert interval95(lowest, 1900)[0] > 0.5 and 0.52 < lowest < 0.525


def test_pretraining_accuracy_reads_nsp_unmasked_or_masked_as_asked():
    import random

    from course_utils.bert import nsp_pairs, pretraining_accuracy, pretraining_batch, speeches, unmasked
    from course_utils.data import plays
    from course_utils.tokenization import shakespeare_wordpiece

    tokenizer = shakespeare_wordpiece()
    two = {name: speeches(plays()[name]) for name in ("hamlet", "othello")}
    raw = tokenizer([a for a, _, _ in nsp_pairs(two, 16, random.Random(0))],
                    [b for _, b, _ in nsp_pairs(two, 16, random.Random(0))], padding="longest", return_tensors="pt")
    batch = pretraining_batch(tokenizer, nsp_pairs(two, 16, random.Random(0)), torch.Generator().manual_seed(0))
    assert torch.equal(unmasked(batch), raw["input_ids"])  # the labels give the masked pieces back
    torch.manual_seed(0)
    model = Bert(bert_config(d_model=32, num_heads=4, d_ff=64, num_layers=2, dropout=0.0), len(tokenizer), 96).eval()
    seen = []
    real_encode = model.encode
    model.encode = lambda ids, *rest: seen.append(ids.clone()) or real_encode(ids, *rest)
    clean = pretraining_accuracy(model, [batch], tokenizer.mask_token_id)
    assert torch.equal(seen[-1], raw["input_ids"])  # NSP read the text as it was
    masked = pretraining_accuracy(model, [batch], tokenizer.mask_token_id, nsp_input="masked")
    assert torch.equal(seen[-1], batch["input_ids"])
    assert clean["mlm"] == masked["mlm"] and clean["nsp_count"] == 16
    labels = batch["next_sentence_label"]
    assert clean["nsp_majority"] == max((labels == 0).sum().item(), (labels == 1).sum().item()) / 16
    with pytest.raises(ValueError, match="unmasked"):
        pretraining_accuracy(model, [batch], tokenizer.mask_token_id, nsp_input="clean")


def test_the_optimizer_decays_weight_matrices_only_as_bert_s_code_does():
    from course_utils.bert import PretrainingRecipe, pretraining_optimizer

    model = trained_looking_bert()
    optimizer = pretraining_optimizer(model, PretrainingRecipe())
    decayed, kept = ({id(p) for p in group["params"]} for group in optimizer.param_groups)
    names = {id(p): name for name, p in model.named_parameters()}
    assert {names[i] for i in kept} >= {"mlm_bias", "embeddings.norm.weight", "layers.0.norm1.bias", "pooler.bias"}
    assert {names[i] for i in decayed} >= {"embeddings.token.weight", "layers.1.feed_forward.linear1.weight"}
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.01, 0.0]
    assert optimizer.defaults["eps"] == 1e-6


def test_masking_keeps_the_device_and_dtype_of_ids():
    ids = torch.randint(FIRST_WORD, VOCAB, (4, 12))
    special = torch.zeros_like(ids, dtype=torch.bool)
    inputs, labels = mask_tokens(ids.to("meta"), special.to("meta"), MASK_ID, FIRST_WORD, VOCAB,
                                 generator=torch.Generator().manual_seed(0))
    assert (inputs.device.type, labels.device.type) == ("meta", "meta")
    assert (inputs.dtype, labels.dtype) == (torch.long, torch.long)


def test_our_pretraining_loss_is_hugging_face_s_on_the_same_batch():
    import random

    from course_utils.bert import nsp_pairs, pretraining_batch, pretraining_losses, speeches
    from course_utils.data import plays
    from course_utils.tokenization import shakespeare_wordpiece

    tokenizer = shakespeare_wordpiece()
    hamlet = {name: speeches(plays()[name]) for name in ("hamlet", "othello")}
    batch = pretraining_batch(tokenizer, nsp_pairs(hamlet, 8, random.Random(0)), torch.Generator().manual_seed(0))
    assert batch["input_ids"].shape[1] <= 96
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    torch.manual_seed(0)
    ours = Bert(bert_config(d_model=32, num_heads=4, d_ff=64, num_layers=2, dropout=0.0), len(tokenizer), 96).eval()
    with torch.no_grad():
        mlm, nsp = pretraining_losses(ours, batch)
        theirs = to_huggingface(ours)(**batch).loss
    assert abs((mlm + nsp).item() - theirs.item()) < 1e-5


def test_sentence_embeddings_ignore_padding_and_are_unit_length():
    from course_utils.pretrained import sentence_embeddings

    short, long = "Out, damned spot!", "Is this a dagger which I see before me, the handle toward my hand?"
    together = sentence_embeddings([short, long])  # the short line is padded to the long one's length
    alone = sentence_embeddings([short])
    assert torch.allclose(together[0], alone[0], atol=1e-5)
    assert torch.allclose(together.norm(dim=-1), torch.ones(2), atol=1e-5)
    similar = sentence_embeddings(["The king is dead.", "The monarch has died.", "I like green apples."])
    assert similar[0] @ similar[1] > similar[0] @ similar[2] + 0.2


def test_wilson_interval_is_scipy_s_and_sensible_at_the_ends():
    from scipy.stats import binomtest

    from course_utils.bert import wilson_interval95

    for right, count in ((0, 150), (3, 150), (135, 150), (150, 150), (7, 12)):
        expected = binomtest(right, count).proportion_ci(method="wilson")
        assert wilson_interval95(right, count) == pytest.approx((expected.low, expected.high), abs=1e-9)
    assert wilson_interval95(0, 150)[0] == 0.0 and wilson_interval95(150, 150)[1] == 1.0
