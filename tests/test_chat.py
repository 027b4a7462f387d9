"""Special tokens, the chat template and the labels of supervised fine-tuning
(course_utils/chat.py), against what `transformers` and `trl` do with them:
a special token is one id wherever it stands, and text that spells it can be
kept apart; the template survives save_pretrained and AutoTokenizer; the
assistant's tokens (its end-of-turn included) are the ones learned; and the
labels and the loss are trl's SFTTrainer's on the same batch. Also the
instruction data of lesson 14, and fine-tuning lesson 10's GPT on it."""

import collections

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from course_utils import chat
from course_utils.tokenization import char_tokenizer

CONVERSATIONS = [[{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
                 for question, reply in [("Who speaks? To be, or not to be", "HAMLET"),
                                         ("Which play? Get thee to a nunnery", "Hamlet"),
                                         ("Who speaks? Out, damned spot", "LADY MACBETH"),
                                         ("Continue: Friends, Romans", " countrymen, lend me your ears")]]
# The characters of the texts, those of trl's probe ("dummy"), and those that spell the special tokens.
TEXT = "dummy <|>" + "".join(message["content"] for conversation in CONVERSATIONS for message in conversation)


def tokenizer():
    return chat.chat_tokenizer(char_tokenizer(TEXT))


def test_a_special_token_is_one_id_and_text_spelling_it_can_be_kept_apart():
    base = char_tokenizer(TEXT)
    tok = chat.chat_tokenizer(base)
    assert base.get_vocab_size() == len(set(TEXT)), "the base tokenizer is left as it was"
    assert len(tok) == base.get_vocab_size() + len(chat.SPECIAL_TOKENS)
    ids = tok("To be<|end|>", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tok.convert_tokens_to_ids(chat.END) and len(ids) == len("To be") + 1
    # A learner's text that happens to spell a special token: split into its characters, it stays text.
    spelled = tok("<|end|>", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert len(spelled) == len("<|end|>") and tok.convert_tokens_to_ids(chat.END) not in spelled


def test_the_template_lays_out_the_turns():
    tok = tokenizer()
    text = tok.apply_chat_template(CONVERSATIONS[0], tokenize=False)
    assert text == "<|user|>Who speaks? To be, or not to be<|end|><|assistant|>HAMLET<|end|>"
    prompt = tok.apply_chat_template(CONVERSATIONS[0][:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|user|>Who speaks? To be, or not to be<|end|><|assistant|>"
    with pytest.raises(Exception, match="a role must be user, assistant or system, not narrator"):
        tok.apply_chat_template([{"role": "narrator", "content": "dummy"}], tokenize=False)


def test_the_template_survives_save_pretrained_and_auto_tokenizer(tmp_path):
    tok = tokenizer()
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back.chat_template == chat.CHAT_TEMPLATE
    for conversation in CONVERSATIONS:
        assert back.apply_chat_template(conversation) == tok.apply_chat_template(conversation)
    assert (back.eos_token, back.pad_token) == (chat.END, chat.PAD)


def test_the_assistant_s_tokens_and_its_end_of_turn_are_the_ones_learned():
    tok = tokenizer()
    batch = tok.apply_chat_template(CONVERSATIONS, return_dict=True, return_assistant_tokens_mask=True,
                                    padding=True, return_tensors="pt")
    labels = chat.sft_labels(batch["input_ids"], batch["assistant_masks"], batch["attention_mask"])
    for row, conversation in enumerate(CONVERSATIONS):
        learned = tok.decode(labels[row][labels[row] != chat.IGNORE])
        assert learned == conversation[1]["content"] + chat.END
    assert (labels[batch["attention_mask"] == 0] == chat.IGNORE).all(), "padding is never learned"


def test_labels_and_loss_are_trl_s_on_the_same_batch(tmp_path):
    tok = tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                         max_position_embeddings=64, pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id, bos_token_id=None)).eval()
    config = SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, per_device_train_batch_size=4,
                       max_steps=1, report_to=[], use_cpu=True, logging_strategy="no", save_strategy="no")
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_dict({"messages": CONVERSATIONS}),
                         processing_class=tok)
    theirs = next(iter(trainer.get_train_dataloader()))
    ours = tok.apply_chat_template(CONVERSATIONS, return_dict=True, return_assistant_tokens_mask=True,
                                   padding=True, return_tensors="pt")
    labels = chat.sft_labels(ours["input_ids"], ours["assistant_masks"], ours["attention_mask"])
    # trl draws the batch's rows in its own order and pads with -100: compare row by row, as sets.
    assert sorted(map(tuple, theirs["labels"].tolist())) == sorted(map(tuple, labels.tolist()))
    with torch.no_grad():
        expected = trainer.compute_loss(model, theirs)
        loss = chat.next_token_loss_on_labels(model(input_ids=ours["input_ids"],
                                                    attention_mask=ours["attention_mask"]).logits, labels)
    assert torch.allclose(loss, expected, atol=1e-6), (loss, expected)


def test_sft_batch_gives_the_template_s_labels_and_masks():
    tok = tokenizer()
    rows = [{"request": c[0]["content"], "reply": c[1]["content"]} for c in CONVERSATIONS]
    pairs = [chat.prompt_and_reply_ids(tok, row) for row in rows]
    end, pad = tok.convert_tokens_to_ids([chat.END, chat.PAD])
    batch = chat.sft_batch([p for p, _ in pairs], [r for _, r in pairs], end, pad)
    templated = tok.apply_chat_template(CONVERSATIONS, return_dict=True, return_assistant_tokens_mask=True,
                                        padding=True, return_tensors="pt")
    assert torch.equal(batch["input_ids"], templated["input_ids"])
    assert torch.equal(batch["attention_mask"], templated["attention_mask"])
    assert torch.equal(batch["labels"], chat.sft_labels(templated["input_ids"], templated["assistant_masks"],
                                                        templated["attention_mask"]))
    assert all(tensor.dtype == torch.long for tensor in batch.values())


@pytest.fixture(scope="module")
def instructions():
    from course_utils.gpt import character_data

    alphabet = set(character_data()[0].get_vocab())
    return alphabet, chat.instruction_dataset({"train": 300, "validation": 30, "test": 60}, alphabet=alphabet)


def test_the_instruction_data_holds_out_whole_plays_and_balances_the_kinds(instructions):
    from course_utils.finetuning import KINDS, TEST_PLAYS, VALIDATION_PLAYS, play_kind

    alphabet, split = instructions
    assert {row["play"] for row in split["test"]} <= set(TEST_PLAYS)
    assert {row["play"] for row in split["validation"]} <= set(VALIDATION_PLAYS)
    assert not {row["play"] for row in split["train"]} & (set(TEST_PLAYS) | set(VALIDATION_PLAYS))
    for part, per_task in (("train", 300), ("validation", 30), ("test", 60)):
        for task in chat.TASKS:
            rows = [row for row in split[part] if row["task"] == task]
            assert len(rows) == per_task
            assert sorted(collections.Counter(play_kind(row["play"]) for row in rows).values()) == [per_task // 3] * 3
    for row in split["train"]:
        line = row["request"].removeprefix(chat.TASKS[row["task"]])
        assert len(row["request"]) + len(row["reply"]) + 4 <= 64 and set(row["request"] + row["reply"]) <= alphabet
        expected = {"shout": line.upper(), "kind": play_kind(row["play"])}.get(row["task"])
        assert row["reply"] == expected if expected else line.rstrip(" .,;:!?'\"-—").endswith(row["reply"])
        assert chat.in_form(row["task"], row["reply"]) and row["reply"] in KINDS or row["task"] != "kind"
    again = chat.instruction_dataset({"test": 60}, alphabet=alphabet)["test"]
    assert again == split["test"], "the same seed draws the same rows"


def test_in_form_tells_the_form_of_a_reply_from_its_truth():
    assert chat.in_form("shout", "WHAT, HO!") and not chat.in_form("shout", "What, ho!") and not chat.in_form("shout", "!")
    assert chat.in_form("last word", "o'er") and not chat.in_form("last word", "two words")
    assert chat.in_form("kind", "tragedy") and not chat.in_form("kind", "tragedy.")


def test_a_grown_vocabulary_keeps_the_model_and_starts_new_tokens_at_the_mean():
    from course_utils.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=10, context=16, width=16, layers=1, heads=2)).eval()
    grown = chat.grow_vocabulary(model, 13).eval()
    table = grown.token_embedding.weight
    assert torch.equal(table[:10], model.token_embedding.weight)
    assert torch.allclose(table[10:], model.token_embedding.weight.mean(dim=0).expand(3, -1))
    ids = torch.randint(0, 10, (2, 16))
    with torch.no_grad():
        assert torch.allclose(grown(ids)[..., :10], model(ids), atol=1e-6)
    assert model.token_embedding.weight.shape == (10, 16), "the model given is left as it was"


def test_fine_tuning_on_replies_learns_a_reply_and_generation_stops_at_its_end():
    from course_utils.gpt import GPT, GPTConfig

    tok = tokenizer()
    rows = [{"task": "shout", "request": "Who speaks?", "reply": "HAMLET"}] * 4
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(tok), context=64, width=32, layers=1, heads=2))
    losses = chat.fine_tune_on_replies(model, chat.sft_batches(tok, rows, 4), steps=60, peak_lr=1e-2,
                                       warmup_steps=5, progress=False)
    assert losses[-1] < losses[0] / 20
    assert chat.replies(model, tok, rows[:1]) == ["HAMLET"], "greedy, cut at <|end|>"
