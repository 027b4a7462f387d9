"""Special tokens, the chat template and the labels of supervised fine-tuning
(course_utils/chat.py), against what `transformers` and `trl` do with them:
a special token is one id wherever it stands, and text that spells it can be
kept apart; the template survives save_pretrained and AutoTokenizer; the
assistant's tokens (its end-of-turn included) are the ones learned; and the
labels and the loss are trl's SFTTrainer's on the same batch."""

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
