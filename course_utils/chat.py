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

import itertools
import random
import re

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


def sft_batch(prompts: list[list[int]], responses: list[list[int]], end_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A batch for supervised fine-tuning from token ids: each row is its
    prompt (ending with the assistant's role token), its response and the
    end-of-turn token `end_id`, right-padded with `pad_id` to the longest
    row. Returns {"input_ids", "attention_mask", "labels"}, each (rows,
    longest) int64: the mask 1 on tokens and 0 on padding, the labels
    IGNORE on the prompt and the padding and the token itself on the
    response and its end (not shifted: `next_token_loss_on_labels` pairs
    the logits at t with the label at t + 1). Lesson 14's exercise."""
    rows = [(list(prompt), list(response) + [end_id]) for prompt, response in zip(prompts, responses, strict=True)]
    if not rows:
        raise ValueError("sft_batch needs at least one prompt and its response")
    longest = max(len(prompt) + len(answer) for prompt, answer in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
    for row, (prompt, answer) in enumerate(rows):
        length = len(prompt) + len(answer)
        input_ids[row, :length] = torch.tensor(prompt + answer, dtype=torch.long)
        attention_mask[row, :length] = 1
        labels[row, len(prompt):length] = torch.tensor(answer, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --- instruction data from the plays ----------------------------------------------------

# Three tasks a model can answer for a line of a play it has never seen: say it
# in capitals, give its last word, tell the kind of play. (Which character
# speaks, or which play it is, could only be learned for the training plays.)
TASKS = {"shout": "Shout: ", "last word": "Last word: ", "kind": "Kind of play: "}


def instruction(task: str, line: str, kind: str) -> tuple[str, str]:
    """The (request, reply) of `task` for one spoken line of a play of `kind`."""
    if task == "shout":
        return TASKS[task] + line, line.upper()
    if task == "last word":
        return TASKS[task] + line, re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", line)[-1]
    return TASKS[task] + line, kind


def instruction_dataset(per_task: dict[str, int], seed: int = 0, context: int = 64,
                        alphabet: set[str] | None = None) -> dict[str, list[dict]]:
    """{"train", "validation", "test"}: rows {"task", "request", "reply",
    "play"}, from the spoken lines of the comedies, histories and tragedies,
    split by play as lesson 09 splits them (finetuning.TEST_PLAYS and
    VALIDATION_PLAYS held out whole). Each split holds per_task[split]
    rows of each task, drawn at random (by `seed` and the split's name
    alone, so that the test rows are the same whatever else is asked for), each task's lines as many from
    each kind of play, every conversation short enough for `context`
    tokens of one character each (a role token, the request, <|end|>,
    <|assistant|>, the reply, <|end|>) and, if `alphabet` is given,
    written in its characters only; lines of 8 to 24 characters are
    shouted, of 12 to 40 characters asked about."""
    from . import data
    from .finetuning import KINDS, TEST_PLAYS, VALIDATION_PLAYS, play_kind

    pools = {part: {(task, kind): [] for task in TASKS for kind in KINDS} for part in per_task}
    for play, text in data.plays().items():
        kind = play_kind(play)
        part = "test" if play in TEST_PLAYS else "validation" if play in VALIDATION_PLAYS else "train"
        if kind is None or part not in pools:
            continue
        for _, line in data.spoken_lines(text):
            for task in TASKS:
                shortest, longest = (8, 24) if task == "shout" else (12, 40)
                if shortest <= len(line) <= longest and re.search("[A-Za-z]", line):
                    request, reply = instruction(task, line, kind)
                    fits = len(request) + len(reply) + 4 <= context
                    if fits and (alphabet is None or set(request + reply) <= alphabet):
                        pools[part][task, kind].append({"task": task, "request": request, "reply": reply, "play": play})
    split = {}
    for part, count in per_task.items():
        rng = random.Random(f"{part} {seed}")  # each part its own draw: the test rows do not depend on the others
        rows = [row for task in TASKS for i, kind in enumerate(KINDS)
                for row in rng.sample(pools[part][task, kind], count // len(KINDS) + (i < count % len(KINDS)))]
        rng.shuffle(rows)
        split[part] = rows
    return split


def conversation(row: dict) -> list[dict]:
    """A row of `instruction_dataset` as the messages a chat template reads."""
    return [{"role": "user", "content": row["request"]}, {"role": "assistant", "content": row["reply"]}]


def prompt_and_reply_ids(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """The ids of a row's prompt (its request, formatted by the chat
    template up to the assistant's role token) and of its reply alone."""
    prompt = tokenizer.apply_chat_template(conversation(row)[:1], add_generation_prompt=True, tokenize=True,
                                           return_dict=False)
    return prompt, tokenizer(row["reply"], add_special_tokens=False)["input_ids"]


# --- fine-tuning lesson 10's GPT on conversations ----------------------------------------

def grow_vocabulary(model, vocab_size: int):
    """A copy of lesson 10's GPT `model` with a token table of `vocab_size`
    rows: the old rows as they were, each new one (a special token's) the
    mean of the old rows, so that the new tokens start where an average
    token is rather than at random (Hewitt 2021, "Initializing new word
    embeddings"; `resize_token_embeddings(..., mean_resizing=True)` in
    transformers). The head is tied to the table, so it grows too."""
    import dataclasses

    from .gpt import GPT

    grown = GPT(dataclasses.replace(model.config, vocab_size=vocab_size))
    state = model.state_dict()
    old = state["token_embedding.weight"]
    state["token_embedding.weight"] = torch.cat([old, old.mean(dim=0).expand(vocab_size - len(old), -1)])
    grown.load_state_dict(state)
    return grown


def sft_batches(tokenizer, rows: list[dict], batch_size: int, make_batch=sft_batch):
    """Batches of `batch_size` rows in the order of `rows`, from the first
    again when they run out, each made by `make_batch` (`sft_batch`, or the
    learner's) from the rows' prompt and reply ids; endless."""
    encoded = [prompt_and_reply_ids(tokenizer, row) for row in rows]
    end, pad = tokenizer.convert_tokens_to_ids([END, PAD])
    for start in itertools.count(0, batch_size):
        chosen = [encoded[(start + i) % len(encoded)] for i in range(batch_size)]
        yield make_batch([prompt for prompt, _ in chosen], [reply for _, reply in chosen], end, pad)


def fine_tune_on_replies(model, batches, steps: int, peak_lr: float = 3e-3, warmup_steps: int = 30,
                         progress: bool = True) -> list[float]:
    """Supervised fine-tuning: `steps` AdamW steps (no weight decay), the
    learning rate rising linearly over `warmup_steps` and falling linearly
    to 0 at `steps`, gradients clipped at norm 1, each on the next batch of
    `batches` (dicts with "input_ids" and "labels", as `sft_batch` makes
    them) with the loss on the labelled tokens only. Returns each step's loss."""
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup_steps, (steps - step) / (steps - warmup_steps)))
    model.train()
    losses = []
    for _, batch in zip(tqdm(range(steps), desc="fine-tuning", disable=not progress), batches):
        loss = next_token_loss_on_labels(model(batch["input_ids"]), batch["labels"])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def replies(model, tokenizer, rows: list[dict], max_new_tokens: int = 26) -> list[str]:
    """The model's greedy reply to each row's request, up to its first
    <|end|> (which is left out), with lesson 10's cached generation; rows
    with prompts of the same length share a batch."""
    from .gpt import generate

    end = tokenizer.convert_tokens_to_ids(END)
    prompts = [prompt_and_reply_ids(tokenizer, row)[0] for row in rows]
    answers = [""] * len(rows)
    for length in sorted({len(prompt) for prompt in prompts}):
        chosen = [i for i, prompt in enumerate(prompts) if len(prompt) == length]
        new = min(max_new_tokens, model.config.context - length)
        written = generate(model, torch.tensor([prompts[i] for i in chosen]), new, temperature=0)[:, length:]
        for i, ids in zip(chosen, written.tolist()):
            answers[i] = tokenizer.decode(ids[:ids.index(end)] if end in ids else ids)
    return answers


def scored_replies(model, tokenizer, rows: list[dict]) -> list[dict]:
    """Each row with the model's greedy reply ("answer"), whether it is
    exactly the wanted one ("right") and whether it has its task's form
    ("in_form")."""
    return [{**row, "answer": answer, "right": answer == row["reply"], "in_form": in_form(row["task"], answer)}
            for row, answer in zip(rows, replies(model, tokenizer, rows))]


def in_form(task: str, reply: str) -> bool:
    """Whether a reply has the form its task asks for, right or wrong:
    capitals only (shout), one word (last word), a kind of play (kind)."""
    from .finetuning import KINDS

    if task == "shout":
        return bool(re.search("[A-Z]", reply)) and reply == reply.upper()
    if task == "last word":
        return re.fullmatch(r"[A-Za-z]+(?:'[A-Za-z]+)*", reply) is not None
    return reply in KINDS
