"""From a language model to an assistant: special tokens, a chat template,
and labels that put the loss on the answers only.

A chat model reads a conversation as one text in which each turn is marked
by **special tokens**: `<|user|>`, `<|assistant|>`, `<|end|>` here. A special
token is split out of the text before any other rule of the tokenizer runs,
and never merged or split: it is always one id, which no ordinary word can
produce. The **chat template** says how the turns are laid out around them:
a Jinja template, stored with the tokenizer (`tokenizer_config.json`), that
`apply_chat_template` fills in, as every model on the Hugging Face hub does.

Supervised fine-tuning ("instruction tuning") then trains on such texts with
the loss on the assistant's tokens only: a label of -100 (PyTorch's
`ignore_index`) on the prompt and on padding, the token itself elsewhere,
the end-of-turn token included, so that the model learns to stop.
"""

import torch
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

IGNORE = -100  # the label cross_entropy skips (its default ignore_index)
USER, ASSISTANT, SYSTEM, END, PAD = "<|user|>", "<|assistant|>", "<|system|>", "<|end|>", "<|pad|>"
SPECIAL_TOKENS = (USER, ASSISTANT, SYSTEM, END, PAD)

# Each turn: its role's token, its text, <|end|>. The assistant's text and its
# <|end|> sit in a {% generation %} block: `apply_chat_template(...,
# return_assistant_tokens_mask=True)` marks those tokens, the ones to learn.
# With add_generation_prompt, the text ends with <|assistant|>: the model's turn.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>' }}{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}"
    "{%- elif message['role'] in ['user', 'system'] -%}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{%- else -%}"
    "{{ raise_exception('a role must be user, assistant or system, not ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>' }}{%- endif -%}"
)


def chat_tokenizer(base: Tokenizer) -> PreTrainedTokenizerFast:
    """`base` (e.g. lesson 10's characters) with the special tokens added
    after its own ids, and the chat template: a `transformers` tokenizer that
    `apply_chat_template`, `save_pretrained` and `AutoTokenizer.from_pretrained`
    handle as any other. `base` itself is left as it was."""
    tokenizer = Tokenizer.from_str(base.to_str())  # a copy
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, chat_template=CHAT_TEMPLATE, eos_token=END,
                                   pad_token=PAD, padding_side="right")


def sft_labels(input_ids: torch.Tensor, assistant_mask: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The labels of supervised fine-tuning for a batch of conversations
    (each (batch, length)): the token itself where the assistant speaks
    (its text and its end-of-turn token: `assistant_mask` is 1 there),
    IGNORE on every other token and on padding (`attention_mask` 0). Not
    shifted: as in Hugging Face's models, the loss pairs the logits at t
    with the label at t + 1 (`next_token_loss_on_labels`)."""
    learn = assistant_mask.bool() & attention_mask.bool()
    return torch.where(learn, input_ids, torch.full_like(input_ids, IGNORE))


def next_token_loss_on_labels(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of predicting labels[:, t + 1] from logits[:,
    t], over the labels that are not IGNORE: the loss of Hugging Face's
    causal language models (`labels=` in their forward) and of trl's SFT."""
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                             ignore_index=IGNORE)
