# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python (transformers course)
#     language: python
#     name: transformers-course
# ---

# %% [markdown]
# # 11 · Hugging Face in practice, and what attention costs
#
# This lesson does what a practitioner does with a transformer: take a
# pretrained model, fine-tune it for a task, feed it data with `datasets`,
# save it, load it back and serve it. Then it measures the transformer's
# best-known limit, attention's cost as texts grow, and the remedies that
# make training fit a machine.
#
# **In this lesson you will**
#
# - load models from a folder with the `Auto` classes, and see what the hub
#   would add;
# - build a token-classification task offline: find the characters' names
#   in Shakespeare's lines, labelled by the plays' own speaker names;
# - use `datasets` in depth: text files and generators, `map` (batched and
#   in several processes), `filter`, `train_test_split`, `set_format`, and
#   the cache behind them; and time the fast tokenizer against a loop;
# - align word labels to tokens (you write it), fine-tune MiniLM to tag
#   names with `Trainer`, compare it with a dictionary on unseen plays, and
#   score it word by word and entity by entity (BIO tags, as `seqeval`);
# - save and load model, tokenizer and config, and look inside a
#   `safetensors` file;
# - serve our models with `pipeline`: token classification, feature
#   extraction and text generation;
# - measure attention's time and memory up to 4,096 positions, and the
#   remedies on our GPT: gradient accumulation (and what padding does to
#   it), gradient checkpointing, bf16 autocast, fp16 with a gradient
#   scaler, the same remedies as `TrainingArguments`, and the KV cache.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Models from a folder: the `Auto` classes
#
# A Hugging Face model is a folder: a `config.json` that says which
# architecture and what sizes, the weights, and the tokenizer's files. The
# `Auto` classes read the config and build the right class:
# `AutoConfig`, `AutoTokenizer`, `AutoModel` (the bare encoder), and one
# `AutoModelFor...` per task, each the same body with a different head.
# All of them take a folder path. Here is MiniLM's, the encoder of lesson
# 09, installed by a Python package:

# %%
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer

from course_utils.data import encoder_path

minilm = encoder_path()
config = AutoConfig.from_pretrained(minilm)
print(type(config).__name__, {key: getattr(config, key) for key in
                              ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")})
print("files:", sorted(path.name for path in minilm.iterdir() if path.is_file()))
tokenizer = AutoTokenizer.from_pretrained(minilm)
encoder = AutoModel.from_pretrained(minilm)
print(type(tokenizer).__name__, "(fast:", f"{tokenizer.is_fast})", type(encoder).__name__,
      f"{sum(p.numel() for p in encoder.parameters()):,} weights")

# %% [markdown]
# ### What the hub would add
#
# Online, the usual line names a model on the Hugging Face hub instead of a
# folder:
#
# ```python
# model = AutoModel.from_pretrained("sentence-transformers/all-MiniLM-L6-v2")
# ```
#
# `from_pretrained` then downloads the same files into a cache
# (`~/.cache/huggingface/hub`) and loads them from there; `push_to_hub`
# uploads a folder. The hub adds discovery (well over a million models
# since September 2024, and datasets, with model cards) and versioning;
# what is loaded is a folder like this one. A folder can also hold Python
# code: a model whose architecture is not in `transformers` ships its own
# `modeling_*.py`, which `from_pretrained` runs only when told
# `trust_remote_code=True`, so loading a stranger's model is running a
# stranger's code (see the safety of the weights below). This course runs offline because a
# lesson must run the same on a laptop on a train, in a locked-down lab and
# in CI, with the same files every time; the course switches the libraries
# to offline mode, so a hub name fails at once and says so (unless a copy
# is already in the machine's Hugging Face cache, which this cell sets
# aside by pointing `cache_dir` at an empty folder):

# %%
import tempfile

try:
    AutoConfig.from_pretrained("sentence-transformers/all-MiniLM-L6-v2", cache_dir=tempfile.mkdtemp())
except OSError as error:
    print(type(error).__name__ + ":", str(error).splitlines()[0])

# %% [markdown]
# ## A task built offline: characters' names
#
# Named-entity recognition tags the words of a text that name something:
# people, places, organisations. It is **token classification**: one
# label per word, where text classification gives one per text. We build a
# version from the plays alone: every play lists who speaks, so a word of
# a speaker's name ("Macbeth", "Banquo", the "Toby" of "Sir Toby Belch")
# is a character's name, and every word of a line that is one of the play's
# names is labelled NAME. Words that Shakespeare also writes in lower case
# are left out ("Lady", "First", "Fool", and Justice "Shallow"), so the
# names are the words that are almost only ever names (at most 5% of
# their uses in lower case).
#
# Labels made by a rule are **silver** labels: right by construction most of
# the time, but a name nobody speaks under (Macbeth's "Graymalkin", the
# witches' cat) stays O. The model is scored against the same rule, so
# keep that in mind when it "errs".

# %%
from course_utils import ner

print("names in Macbeth:", ", ".join(sorted(ner.character_names("macbeth"))[:12]), "...")
words, labels = next(row for row in ner.tagged_lines("macbeth") if sum(row[1]) == 2)
print(" ".join(f"[{word}]" if label else word for word, label in zip(words, labels)))

# %% [markdown]
# `names_dataset` samples 2,000 training lines from 34 plays and 1,000
# test lines from the four held-out plays (Macbeth, Twelfth Night,
# Henry V, The Tempest), half of each with a name, so that a model that
# never says NAME cannot look good. Most of the names in the test lines
# never occur as a name in the 2,000 training lines (the count below): the
# test asks whether a model learned what a name looks like *in context*,
# not a list.

# %%
split = ner.names_dataset()
training_names = {w for row in split["train"] for w, label in zip(row["words"], row["labels"]) if label}
test_names = [w for row in split["test"] for w, label in zip(row["words"], row["labels"]) if label]
unseen = [name for name in test_names if name not in training_names]
print(f"{len(split['train']):,} training lines, {len(split['test']):,} test lines; "
      f"{len(test_names)} names in the test lines, {len(unseen)} of them never a name in the training lines")

# %% [markdown]
# ## `datasets` in depth
#
# `datasets` keeps a table on disk, in Apache Arrow files that are
# memory-mapped: a dataset larger than memory costs almost nothing to
# open, and every transformation is written to a new file that the next
# run can reuse. There are many ways in. From a **generator** of rows:

# %%
from datasets import Dataset, disable_progress_bars, load_dataset

from course_utils import efficiency

disable_progress_bars()  # a bar on a one-second `map` says nothing; the training cells keep theirs


def training_rows():
    yield from split["train"]


train_set = Dataset.from_generator(training_rows)
print(train_set)
print(train_set.features)

# %% [markdown]
# From **text files**, one row per line: here the held-out plays' lines,
# written to files first. (`load_dataset` also reads CSV, JSON lines and
# Parquet the same way.)

# %%
import tempfile

from course_utils import data

text_folder = Path(tempfile.mkdtemp(prefix="plays-as-text-"))
for play in data.VALIDATION_PLAYS:
    (text_folder / f"{play}.txt").write_text("\n".join(line for _, line in data.spoken_lines(data.plays()[play])))
held_out_text = load_dataset("text", data_files=sorted(str(path) for path in text_folder.glob("*.txt")),
                             split="train", cache_dir=str(text_folder / "cache"))
print(held_out_text)
print(held_out_text[:3])

# %% [markdown]
# **`map`** runs a function over the rows and adds what it returns as
# columns. With `batched=True` the function gets a thousand rows at a time
# (a dict of lists), which lets the tokenizer encode a whole batch in one
# call; `num_proc=2` splits the rows between two processes. Here `map`
# counts the words of each line:

# %%
def count_words(batch):
    return {"words": [len(line.split()) for line in batch["text"]]}


counted = held_out_text.map(count_words, batched=True, num_proc=2)
print(counted)
print("words per line, first five:", counted["words"][:5])

# %% [markdown]
# **`filter`** keeps the rows for which a function says True,
# **`train_test_split`** shuffles (with a seed) and cuts, and the result is
# a `DatasetDict` of splits:

# %%
long_lines = counted.filter(lambda row: row["words"] >= 8)
parts = long_lines.train_test_split(test_size=0.1, seed=0)
print(f"{len(long_lines):,} of {len(counted):,} lines have 8 words or more")
print(parts)

# %% [markdown]
# ### The cache and the fingerprint
#
# Every dataset carries a **fingerprint**, a hash of where it came from and
# of every transformation applied to it, the function's code included. A
# `map` whose fingerprint has a file already in the cache loads that file
# instead of computing again: re-running a notebook skips the work that has
# not changed, as long as the cache stays (by default under
# `~/.cache/huggingface/datasets`; this lesson writes into a fresh
# temporary folder at every run, so a rerun of the lesson starts over).
# Change the function, and the fingerprint changes with it:

# %%
def count_characters(batch):
    return {"words": [len(line) for line in batch["text"]]}


again = held_out_text.map(count_words, batched=True, num_proc=2)
changed = held_out_text.map(count_characters, batched=True, num_proc=2)
print("same function: same fingerprint", again._fingerprint == counted._fingerprint,
      "and the same cache files", again.cache_files == counted.cache_files)
print("another function: another fingerprint", changed._fingerprint != counted._fingerprint)
names = [Path(file["filename"]).name for file in counted.cache_files]
print(f"{len(names)} cache files (one per process), named after the fingerprint:",
      all(name.startswith(f"cache-{counted._fingerprint}") for name in names))

# %% [markdown]
# A dataset made from a generator is fingerprinted by the generator's code
# too; one made in memory (`Dataset.from_dict`, `from_list`) has no file
# behind it and is recomputed each time.
#
# ### The fast tokenizer against a loop
#
# `AutoTokenizer` loads a **fast** tokenizer: the `tokenizers` library,
# written in Rust. Called on a list, it encodes the whole batch in one trip
# from Python into Rust; called once per text from a Python loop, every
# text pays the trip there and back. (Rust can also spread a batch over
# the cores. A process forked after that, as `map(num_proc=2)` and
# data-loader workers fork, could deadlock, so `tokenizers` switches its
# parallelism off in the child and prints a warning; the course sets
# `TOKENIZERS_PARALLELISM=false` from the start, which keeps the
# warning away and makes the timing below one core's.)
# The best of three runs over the 10,366 lines of the held-out plays:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings depend on the machine.
lines = list(held_out_text["text"])
batch_seconds = efficiency.best_seconds(lambda: tokenizer(lines))
loop_seconds = efficiency.best_seconds(lambda: [tokenizer(line) for line in lines])
print(f"one call on {len(lines):,} lines: {batch_seconds:.2f} s; a loop of calls: {loop_seconds:.2f} s "
      f"({loop_seconds / batch_seconds:.1f}x longer)")
batched, looped = tokenizer(lines)["input_ids"], [tokenizer(line)["input_ids"] for line in lines]
assert batched == looped and batch_seconds < loop_seconds, "the same ids, and the batch faster"

# %% [markdown]
# ## Token classification: labels for pieces, not words
#
# The names task labels **words**, but the model sees **tokens**, and a
# rare word is cut into several WordPiece pieces. A fast tokenizer told
# that its input is already split into words (`is_split_into_words=True`)
# returns `word_ids()`: for every token, the index of the word it came from,
# or `None` for `[CLS]`, `[SEP]` and padding.

# %%
encoding = tokenizer(["Good", "morrow", ",", "Benvolio", "!"], is_split_into_words=True)
print(list(zip(encoding.tokens(), encoding.word_ids())))

# %% [markdown]
# ### Exercise: one label per token
#
# Write `token_labels(word_ids, word_labels)`: given `word_ids` (a list with
# one entry per token, a word index or `None`) and `word_labels` (one label
# per word), return a list with one label per token. The **first** token of
# each word gets the word's label; the later pieces of the word and the
# tokens with no word get `-100`, the label that PyTorch's cross-entropy
# (and so `Trainer`) skips. That way each word is scored exactly once, the
# way it is tested. Leave the inputs unchanged.
#
# Two details the checker tests. A word is a *run* of tokens with the same
# word id: when two texts share one input (a sentence pair, as for lesson
# 08's next-sentence prediction), `word_ids()` counts the words of each
# text from 0, so an id can come back after `[SEP]`, and there it starts a
# new word. And labels are class ids, so integers: cross-entropy refuses
# floating-point class ids (it reads a floating-point target only as
# probabilities over the classes, one row per token).

# %%
def token_labels(word_ids, word_labels):
    # BEGIN SOLUTION
    labels, previous = [], None
    for word in word_ids:
        labels.append(-100 if word is None or word == previous else word_labels[word])
        previous = word
    return labels
    # END SOLUTION


# %%
from course_utils.classroom.checks.ner import check_token_labels

check_token_labels(token_labels)

# %% [markdown]
# `ner.encode` does this for a batch: tokenise the words, then align the
# labels, here with your `token_labels` once it passes its checks (else
# with the reviewed `ner.token_labels`). `map` applies it to the training
# rows; `set_format("torch")` makes the rows come out as tensors.
# Lines have different lengths, so `DataCollatorForTokenClassification`
# pads each batch to its longest line, and pads the labels with -100.

# %%
import functools

from transformers import DataCollatorForTokenClassification

from course_utils.classroom.checks import yours_if_passed

label_tokens = yours_if_passed(token_labels, "11.token_labels", ner.token_labels)
encoded_train = train_set.map(functools.partial(ner.encode, tokenizer, label_tokens=label_tokens), batched=True,
                              remove_columns=["words", "play"])
encoded_train.set_format("torch")
print(encoded_train)
print("a row's labels:", encoded_train[0]["labels"].tolist())
collator = DataCollatorForTokenClassification(tokenizer)
batch = collator([encoded_train[i] for i in range(4)])
print({name: tuple(tensor.shape) for name, tensor in batch.items()})

# %% [markdown]
# ### Fine-tuning MiniLM to tag names
#
# `AutoModelForTokenClassification` puts a linear layer on MiniLM's last
# layer: 384 numbers in, one score per label out, at every token. Only that
# layer is new (`from_pretrained` lists it among the weights it had to
# initialise, a warning the course keeps quiet); the encoder starts
# from its pre-trained weights. `Trainer` runs the loop of lesson 09: 60
# steps of 32 lines, AdamW with a linear warm-up and decay.

# %%
from transformers import AutoModelForTokenClassification, Trainer, TrainingArguments

TAG_STEPS = 60
torch.manual_seed(0)
tagger = AutoModelForTokenClassification.from_pretrained(
    minilm, num_labels=len(ner.LABELS), id2label=dict(enumerate(ner.LABELS)),
    label2id={label: i for i, label in enumerate(ner.LABELS)})
arguments = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="minilm-names-run-"), max_steps=TAG_STEPS, per_device_train_batch_size=32,
    learning_rate=1e-4, lr_scheduler_type="linear", warmup_steps=TAG_STEPS // 10, weight_decay=0.0,
    seed=0, logging_steps=10, save_strategy="no", report_to="none", dataloader_pin_memory=False,
    use_cpu=True)  # the lesson's cells give the model CPU tensors; on a GPU or a Mac, Trainer would move it away
trainer = Trainer(model=tagger, args=arguments, train_dataset=encoded_train, data_collator=collator)

# %% [markdown]
# `trainer.train()` runs the 60 steps and logs the loss every 10; the
# cell keeps the logged losses and checks that they fell:

# %%
# NBVAL_IGNORE_OUTPUT
# The progress bar and the losses depend on the machine's timing and its float arithmetic.
trainer.train()
losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
print("training loss every 10 steps:", " ".join(f"{loss:.3f}" for loss in losses))
assert losses[-1] < 0.5 * losses[0], "the loss should fall by more than half"

# %% [markdown]
# On the held-out plays, word by word, against two dictionaries of names:
# the names in our 2,000 training lines, and every name in the 34 training
# plays. **Precision** is the share of the words a tagger calls NAME that
# are names; **recall** the share of the names that it finds.

# %%
# NBVAL_IGNORE_OUTPUT
# The model's scores depend on the trained weights' last digits; the asserts hold on every machine.
all_training_rows = [{"words": words, "labels": labels} for play in data.play_names()
                     if play not in data.VALIDATION_PLAYS for words, labels in ner.tagged_lines(play)]
minilm_tags = ner.predict_words(tagger, tokenizer, split["test"])
results = {"MiniLM fine-tuned, 60 steps": minilm_tags}
for name, rows in (("dictionary of the 2,000 lines", split["train"]),
                   ("dictionary of the 34 plays", all_training_rows)):
    known, tag = ner.dictionary_tagger(rows)
    results[f"{name} ({len(known)} names)"] = [tag(row) for row in split["test"]]
print(f"{'':45} precision  recall    F1")
for name, tags in results.items():
    score = ner.scores(tags, split["test"])
    print(f"{name:45} {score['precision']:9.2f} {score['recall']:7.2f} {score['f1']:5.2f}")
found_unseen = sum(1 for row, tags in zip(split["test"], minilm_tags) for word, label, tag
                   in zip(row["words"], row["labels"], tags) if label and tag and word not in training_names)
print(f"names never seen in the training lines that MiniLM finds: {found_unseen} of {len(unseen)}")
f1 = {name: ner.scores(tags, split["test"])["f1"] for name, tags in results.items()}
assert f1["MiniLM fine-tuned, 60 steps"] > max(list(f1.values())[1:]) + 0.15
assert found_unseen > 0.5 * len(unseen)

# %% [markdown]
# The dictionaries know the names they were given, and almost no name of a
# play they have not seen; a dictionary of every training play does only a
# little better than one of 2,000 lines, and still misses most held-out
# names. MiniLM, fine-tuned for about half a minute, finds most of the
# names it never saw as names: it tags from context ("good morrow, ___",
# "___, thou ...") and from what its pieces look like, and MiniLM is
# **uncased**, so it does this without the capital letters.
#
# ### Entities: BIO tags and exact spans
#
# Named-entity recognition is scored by **entity**, not by word: a name of
# two words ("Titus Lartius") is one entity, and a tagger that finds
# "Titus" alone has found no entity at all. To mark where an entity
# begins, the labels become **BIO** tags: `B-NAME` on an entity's first
# word, `I-NAME` inside it, `O` outside. Our labels have one type, and a
# run of NAME words reads as one entity (`ner.bio_tags`). The usual scorer,
# the `seqeval` package (which the Hugging Face course uses), reads the
# entities back as (type, first word, last word) and counts a predicted
# entity as right only when a true one has the same type and exactly the
# same span. `ner.entities` and `ner.entity_scores` compute the same
# numbers as `seqeval` (the course's tests compare them on hundreds of
# sequences), including its rule for broken tags: an `I-` with no `B-`
# before it still starts an entity, and a change of type ends one. A line
# of Coriolanus, and a guess that finds half of its two-word name:

# %%
words, labels = next(row for row in ner.tagged_lines("coriolanus") if "Lartius" in row[0] and len(row[0]) < 12)
tags = ner.bio_tags(labels)
print(" ".join(f"{word}/{tag}" for word, tag in zip(words, tags)))
print("entities (type, first word, last word):", sorted(ner.entities(tags)))
half = [int(word == "Titus") for word in words]
print("the guess:", " ".join(ner.bio_tags(half)), "->", sorted(ner.entities(ner.bio_tags(half))))
row = {"words": words, "labels": labels}
print("word by word:", {key: round(value, 2) for key, value in ner.scores([half], [row]).items()})
print("by entity:   ", {key: round(value, 2) for key, value in ner.entity_scores([ner.bio_tags(half)], [tags]).items()})
gold_entities = [ner.entities(ner.bio_tags(row["labels"])) for row in split["test"]]
print(f"in the test lines: {sum(map(len, gold_entities))} entities, "
      f"{sum(end > start for found in gold_entities for _, start, end in found)} of them longer than one word")
every_line = [row["labels"] for row in all_training_rows] + [labels for play in data.VALIDATION_PLAYS
                                                             for _, labels in ner.tagged_lines(play)]
every_entity = [entity for labels in every_line for entity in ner.entities(ner.bio_tags(labels))]
print(f"in every line of the {len(data.play_names())} plays: {len(every_entity):,} entities, "
      f"{sum(end > start for _, start, end in every_entity)} of them longer than one word")

# %% [markdown]
# Every name in our test lines is one word long, and names of two words
# are rare in the plays' lines (the last count). So here an entity is
# a word, and the two views can part only where a tagger joins
# neighbouring words into one name, which then counts as one wrong entity
# instead of one right word and one wrong one. The three taggers, both ways:

# %%
# NBVAL_IGNORE_OUTPUT
# The model's scores depend on the trained weights' last digits; the asserts hold on every machine.
true_tags = [ner.bio_tags(row["labels"]) for row in split["test"]]
print(f"{'':45} {'word by word':>19}   {'by entity':>19}   joined")
print(f"{'':45} {'P':>5} {'R':>6} {'F1':>6}   {'P':>5} {'R':>6} {'F1':>6}   names")
for name, tags in results.items():
    by_word = ner.scores(tags, split["test"])
    predicted = [ner.bio_tags(row_tags) for row_tags in tags]
    by_entity = ner.entity_scores(predicted, true_tags)
    joined = sum(end > start for row_tags in predicted for _, start, end in ner.entities(row_tags))
    print(f"{name:45} " + "   ".join(" ".join(f"{score[key]:5.2f} " for key in ("precision", "recall", "f1"))
                                     for score in (by_word, by_entity)) + f"  {joined:5}")
    assert by_entity["recall"] <= by_word["recall"] + 1e-12  # one-word names: an entity found is a word found
    assert abs(by_entity["f1"] - by_word["f1"]) < 0.05
entity_f1 = {name: ner.entity_scores([ner.bio_tags(t) for t in tags], true_tags)["f1"] for name, tags in results.items()}
assert entity_f1["MiniLM fine-tuned, 60 steps"] > max(list(entity_f1.values())[1:]) + 0.15

# %% [markdown]
# On this task the two views agree to within a few hundredths, and the
# ranking is the same: the dictionaries look each word up alone and
# almost never tag two neighbours, and MiniLM joined only a few (the last
# column: 11 of its names in the stored output).
# Where entities are longer (CoNLL-2003's "New York", "European Union"),
# a tagger that finds part of a name earns credit word by word and none by
# entity; NER is reported by entity, exact spans only, since the CoNLL
# shared tasks scored it that way (Tjong Kim Sang and De Meulder, 2003),
# and `seqeval` reimplements their scorer.
#
# Its "mistakes" are worth reading, because the labels come from a rule.
# MiniLM never sees capital letters, so capitals are a clue it did not
# use. How good a clue, in these labels? Shakespeare capitalises the first
# word of a sentence, "I", and many a noun ("Heaven", "Lord"), so count
# only the words capitalised mid-sentence: not first in the line, not
# after a full stop, "!", "?", ":" or ";", and not "I".

# %%
import collections


def capitalised_mid_sentence(words, position):
    return (position > 0 and words[position][0].isupper() and words[position] != "I"
            and words[position - 1] not in (".", "!", "?", ":", ";"))


capitalised_labels = collections.Counter()
capitalised_others = collections.Counter()
for row in split["test"]:
    for position, (word, label) in enumerate(zip(row["words"], row["labels"])):
        if capitalised_mid_sentence(row["words"], position):
            capitalised_labels[label] += 1
            capitalised_others[word] += not label
share = capitalised_labels[1] / sum(capitalised_labels.values())
print(f"words capitalised mid-sentence in the test lines: {sum(capitalised_labels.values())}, "
      f"{share:.0%} of them labelled NAME")
print("the commonest of the others:", ", ".join(word for word, _ in capitalised_others.most_common(10)))

# %% [markdown]
# Two in three: a clue, not a rule. Now the words on which MiniLM and the
# labels disagree, and how many of its extra names are capitalised
# mid-sentence:

# %%
# NBVAL_IGNORE_OUTPUT
# Which words are tagged depends on the trained weights; the assert holds on every machine.
false_names, missed = [], collections.Counter()
for row, tags in zip(split["test"], minilm_tags):
    for position, (word, label, tag) in enumerate(zip(row["words"], row["labels"], tags)):
        if tag and not label:
            false_names.append((word, capitalised_mid_sentence(row["words"], position)))
        elif label and not tag:
            missed[word] += 1
capitalised = sum(mid_sentence for _, mid_sentence in false_names)
print(f"tagged NAME, labelled O: {len(false_names)} words, {capitalised} of them capitalised mid-sentence:",
      ", ".join(word for word, _ in false_names[:20]))
print(f"labelled NAME, missed: {sum(missed.values())} words, the commonest:", missed.most_common(8))
assert capitalised > 0.5 * len(false_names)

# %% [markdown]
# More than half of the words tagged NAME against the labels are
# capitalised mid-sentence (the cell checks it). In the stored output,
# most of the twenty shown are names the rule could not know: people who never speak in
# that play (Agamemnon, Pharamond) and places (Birnam, Dunsinane). Some
# are not names at all: adjectives made from names (Salique, Norweyan)
# and a French word (Ciel). Many of the misses are the other way round: "France" and
# "French" are labelled names because a King of France speaks in the plays,
# and the model, having learned mostly people's names, leaves countries
# out. Silver labels measure a tagger only up to the rule that made them.
#
# ## Save and load: what each file holds
#
# `save_pretrained` (or `trainer.save_model`) writes the model, the
# tokenizer writes its own files beside it, and `from_pretrained` on the
# folder rebuilds both:

# %%
import json

tagger_folder = Path(tempfile.mkdtemp(prefix="minilm-names-"))
trainer.save_model(str(tagger_folder))
tokenizer.save_pretrained(tagger_folder)
for path in sorted(tagger_folder.iterdir()):
    print(f"{path.name:26} {path.stat().st_size / 1e6:7.2f} MB")
saved_config = json.loads((tagger_folder / "config.json").read_text())
print({key: saved_config[key] for key in ("architectures", "id2label", "hidden_size", "num_hidden_layers")})

# %% [markdown]
# - `config.json`: the architecture's class and every size; with it,
#   `from_pretrained` builds an empty model of the right shape. Our labels
#   are in it (`id2label`), so a pipeline can name them.
# - `model.safetensors`: the weights, and nothing else.
# - `tokenizer.json`: the whole fast tokenizer (vocabulary, normalisation,
#   pre-tokenisation, post-processing with `[CLS]` and `[SEP]`);
#   `tokenizer_config.json`: the class to load and the special tokens.
# - `training_args.bin`: the `TrainingArguments`, which `Trainer` saves
#   with the model (a pickle: see below).
#
# ### Inside a `safetensors` file
#
# A `safetensors` file is an 8-byte length, a JSON header that gives each
# tensor's name, dtype, shape and byte offsets, then the raw numbers. It
# can be read by hand:

# %%
import struct

raw = (tagger_folder / "model.safetensors").read_bytes()
header_length = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + header_length])
print(f"header: {header_length:,} bytes for {len(header) - 1} tensors")  # one entry is __metadata__
for name in ("bert.embeddings.word_embeddings.weight", "classifier.weight", "classifier.bias"):
    print(f"  {name}: {header[name]}")

# %% [markdown]
# Opening it runs no code: the header is data, and the numbers are copied
# (or memory-mapped) straight into tensors. PyTorch's own format,
# `torch.save`, is a zip archive of raw tensor bytes whose index,
# `data.pkl`, is a **pickle**, and unpickling can call any function the
# file names. Two lines show it; a hostile model file could run anything
# this way, which is why the hub moved to `safetensors` and why
# `torch.load` now refuses such files unless told `weights_only=False`.

# %%
import pickle


class NotJustWeights:
    def __reduce__(self):  # pickle's recipe to rebuild this object: "call print with these arguments"
        return print, ("this line ran while the file was being loaded",)


pickle.loads(pickle.dumps(NotJustWeights()))

# %% [markdown]
# The round trip is exact: the weights read back from `model.safetensors`
# are the trained ones bit for bit, and the model rebuilt from the folder
# gives the same scores.

# %%
from safetensors.torch import load_file

stored = load_file(tagger_folder / "model.safetensors")
trained = tagger.state_dict()
print("every stored tensor equals the trained one:", all(torch.equal(stored[name], trained[name]) for name in stored))
reloaded = AutoModelForTokenClassification.from_pretrained(tagger_folder).eval()
inputs = AutoTokenizer.from_pretrained(tagger_folder)("Banquo, thy soul's flight", return_tensors="pt")
with torch.no_grad():
    print("same logits after the round trip:", torch.equal(reloaded(**inputs).logits, tagger.eval()(**inputs).logits))

# %% [markdown]
# ## Pipelines: a folder in, a task out
#
# A `pipeline` is a tokenizer, a model and the post-processing of a task:
# from text in to readable answers out. Each course model is a folder, so
# each is a pipeline away. **Token classification**, with
# `aggregation_strategy="first"` to merge a word's pieces (the label of its
# first piece, as we trained):

# %%
# NBVAL_IGNORE_OUTPUT
# Which words are found depends on the trained weights.
from transformers import pipeline

find_names = pipeline("token-classification", model=str(tagger_folder), aggregation_strategy="first", device=device)
for line in ["Where hast thou been, Sebastian? And where is Ferdinand?",
             "Good Banquo, Fleance and Macduff are gone to Inverness.",
             "Come, Cesario, I would speak with Olivia."]:
    print(line, "->", [(entity["word"], round(float(entity["score"]), 2)) for entity in find_names(line)])

# %% [markdown]
# **Feature extraction** returns the last layer's token vectors: the input
# of lesson 09's mean pooling.

# %%
extract = pipeline("feature-extraction", model=str(minilm), device=device)
features = torch.tensor(extract("Once more unto the breach, dear friends"))
with torch.no_grad():
    direct = encoder(**tokenizer("Once more unto the breach, dear friends", return_tensors="pt")).last_hidden_state
print("shape", tuple(features.shape), "equal to AutoModel's output:", torch.allclose(features, direct, atol=1e-5))

# %% [markdown]
# **Fill-mask** and **text classification** served our BERT (lesson 08)
# and our fine-tuned classifier (lesson 09) the same way, from folders
# those lessons wrote. **Text generation** serves our GPT, which the next
# section trains.
#
# ## The cost of attention, measured
#
# Every position attends to every position: for a text of L tokens,
# attention computes an L x L matrix of scores per head. Lesson 02's
# formula builds that matrix; PyTorch's `F.scaled_dot_product_attention`
# computes the same output in blocks, with a running softmax, and never
# keeps the whole matrix. `efficiency.attention_costs` times one forward
# pass of each (4 heads of width 32, lengths 256 to 4,096) and counts the
# bytes that each keeps for the backward pass: during training, those
# bytes stay in memory until the backward pass uses them.

# %%
LENGTHS = [256, 512, 1024, 2048, 4096]
LONG = LENGTHS[2:]  # the exponents are fitted from 1,024 up, where the L x L terms dominate
costs = efficiency.attention_costs(LENGTHS)
print(f"{'length':>8} {'naive saves':>14} {'fused saves':>14}")
for i, length in enumerate(LENGTHS):
    print(f"{length:8,} {costs['naive']['saved_bytes'][i] / 2**20:11.1f} MiB {costs['fused']['saved_bytes'][i] / 2**20:11.2f} MiB")
for kind in costs:
    print(f"{kind}: memory grows as length^{efficiency.fitted_exponent(LONG, costs[kind]['saved_bytes'][2:]):.2f}")

# %% [markdown]
# The same measurements as a picture, on log-log axes where a power of the
# length is a straight line of that slope: time on the left, with the
# exponent fitted from 1,024 positions up in the legend, memory on the right.

# %%
# NBVAL_IGNORE_OUTPUT
# Timings depend on the machine.
import matplotlib.pyplot as plt

time_exponents = {kind: efficiency.fitted_exponent(LONG, costs[kind]["seconds"][2:]) for kind in costs}
figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
for kind in costs:
    left.loglog(LENGTHS, [1e3 * s for s in costs[kind]["seconds"]], "o-", label=f"{kind} (length^{time_exponents[kind]:.1f})")
    right.loglog(LENGTHS, [b / 2**20 for b in costs[kind]["saved_bytes"]], "o-", label=kind)
left.set(xlabel="sequence length", ylabel="ms per forward pass", title="time")
right.set(xlabel="sequence length", ylabel="MiB kept for backward", title="memory")
for axis in (left, right):
    axis.minorticks_off()
    axis.set_xticks(LENGTHS, [f"{length:,}" for length in LENGTHS])
    axis.legend()
plt.tight_layout()
plt.show()
print({kind: f"{1e3 * costs[kind]['seconds'][-1]:.0f} ms at 4,096, time ~ length^{time_exponents[kind]:.1f}" for kind in costs})
assert costs["naive"]["seconds"][-1] > 4 * costs["naive"]["seconds"][2], "4x the length should take far more than 4x the time"

# %% [markdown]
# Memory: the naive attention keeps the 4 x L x L weights, 256 MiB at
# 4,096 positions for a single text and a single layer, and doubling the
# length multiplies it by four (exponent 2); the fused kernel keeps only
# its inputs, output and one number per row, linear in the length. Time:
# the fused kernel's grows about as the square (the legend gives the
# exponents fitted on this machine); it does the same arithmetic, it only
# avoids writing the matrix out and reading it back. The naive one's grew
# faster than the square on the machines we measured (the printed
# exponent): its L × L matrices, 64 MiB at 2,048 positions,
# no longer fit the processor's caches, so every entry travels to memory
# and back. FlashAttention (Dao et al., 2022) is this fused idea on a GPU:
# exact attention in blocks with a running ("online") softmax, and a
# backward pass that recomputes the scores instead of storing them, the
# trade that gradient checkpointing makes below. Making attention itself cheaper than
# L x L needs another model (sparse, local or linear attention), not
# another kernel.
#
# ## Remedies, measured on our GPT
#
# First, a GPT to measure: lesson 10's model, trained again on a shorter
# schedule than lesson 10's (1,000 steps of nanoGPT's recipe at twice its
# peak rate, which is enough for what follows; lessons do not share files,
# so each one that needs a model trains it).

# %%
import dataclasses

from course_utils.gpt import GPT, GPTConfig, TrainingRecipe, character_data, next_token_loss, train_gpt

characters, train_ids, validation_ids = character_data()
recipe = dataclasses.replace(TrainingRecipe(), steps=1000, peak_lr=2e-3)
torch.manual_seed(0)
gpt = GPT(GPTConfig(vocab_size=characters.get_vocab_size()))

# %% [markdown]
# `train_gpt` runs the recipe and measures the validation loss every 250
# steps; the cell checks that it ends below 2.05 nats per character.

# %%
# NBVAL_IGNORE_OUTPUT
# The losses depend on the machine's float arithmetic; the assert holds on every machine.
run = train_gpt(gpt, train_ids, validation_ids, recipe)
print("validation loss at steps", ", ".join(f"{step}: {validation:.2f}" for step, _, validation in run.evaluations))
assert run.evaluations[-1][2] < 2.05

# %% [markdown]
# ### Gradient accumulation
#
# When a batch does not fit in memory, split it into micro-batches, run
# the backward pass of each (its loss divided by their number) and let the
# gradients add up in `.grad` before one optimiser step. Here every
# micro-batch holds the same number of target tokens (3 windows of 64
# characters), and the result is the gradient of the whole batch, up to
# rounding:

# %%
inputs, targets = recipe.batch_at(0, train_ids, gpt.config.context)
whole = efficiency.gradients(gpt, next_token_loss, [(inputs, targets)])
four = efficiency.gradients(gpt, next_token_loss, [(inputs[i:i + 3], targets[i:i + 3]) for i in range(0, 12, 3)])
largest = max(whole[name].abs().max().item() for name in whole)
difference = max((whole[name] - four[name]).abs().max().item() for name in whole)
print("batch of 12 against 4 micro-batches of 3: largest difference < 1e-6:", difference < 1e-6,
      "| largest gradient > 0.01:", largest > 0.01)

# %% [markdown]
# That equality needs micro-batches of equal size. The loss is a mean over
# target tokens, and padded texts make micro-batches hold different
# numbers of them (a padded position's target is -100, which the loss
# skips). A mean of the micro-batches' means then weighs a token of a short
# micro-batch more than a token of a long one: it is not the batch's loss.
# Hugging Face's `Trainer` accumulated that way until October 2024, so
# that training with accumulation did not match training on the whole
# batch ("Fixing Gradient Accumulation", Hugging Face blog, October 2024);
# it now counts the labelled tokens of all the micro-batches of a step
# (`num_items_in_batch`) and divides by that count. The same 12 windows,
# with their targets cut at random lengths as padding would cut them
# (`efficiency.gradients` weighs each micro-batch by its tokens when told
# `by_tokens=True`):

# %%
# NBVAL_IGNORE_OUTPUT
# The differences' last digits depend on the trained weights; the assert holds on every machine.
lengths = torch.randint(8, gpt.config.context + 1, (12,), generator=torch.Generator().manual_seed(0))
padded = targets.masked_fill(torch.arange(gpt.config.context) >= lengths[:, None], efficiency.IGNORE_INDEX)
micro = [(inputs[i:i + 3], padded[i:i + 3]) for i in range(0, 12, 3)]
padded_whole = efficiency.gradients(gpt, next_token_loss, [(inputs, padded)])
mean_of_means = efficiency.relative_difference(efficiency.gradients(gpt, next_token_loss, micro), padded_whole)
by_tokens = efficiency.relative_difference(efficiency.gradients(gpt, next_token_loss, micro, by_tokens=True),
                                           padded_whole)
print("target tokens per micro-batch:", [efficiency.target_tokens(batch) for batch in micro])
print(f"distance from the whole batch's gradient: mean of means {mean_of_means:.1%}, "
      f"weighted by tokens {by_tokens:.0e}")
assert mean_of_means > 0.01 and by_tokens < 1e-4

# %% [markdown]
# With padding, the mean of means is a different gradient (11.6% away in
# the stored output), while weighting by tokens gives the whole batch's up
# to rounding.
#
# What accumulation buys is memory, and it may cost time. The peak memory
# of a step on one micro-batch of 3 windows against the whole batch of 12,
# and the time of the whole batch against four micro-batches one after the
# other:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings and the matrix-multiply library's buffers depend on the machine; the assert holds everywhere.


def one_step(*micro_batches):
    for micro_batch in micro_batches:
        next_token_loss(gpt, micro_batch).backward()


whole_batch, quarters = (inputs, targets), [(inputs[i:i + 3], targets[i:i + 3]) for i in range(0, 12, 3)]
gpt.zero_grad(set_to_none=True)
whole_peak = efficiency.peak_allocated_bytes(lambda: one_step(whole_batch))
gpt.zero_grad(set_to_none=True)
quarter_peak = efficiency.peak_allocated_bytes(lambda: one_step(quarters[0]))
whole_seconds = efficiency.best_seconds(lambda: one_step(whole_batch), repeats=5)
accumulated_seconds = efficiency.best_seconds(lambda: one_step(*quarters), repeats=5)
gpt.zero_grad(set_to_none=True)
print(f"peak: {whole_peak / 2**20:.1f} MiB for 12 windows, {quarter_peak / 2**20:.1f} MiB for 3 "
      f"({whole_peak / quarter_peak:.1f}x less)")
print(f"CPU instructions: {torch.backends.cpu.get_cpu_capability()}; forward + backward: "
      f"{1e3 * whole_seconds:.0f} ms for 12 windows at once, {1e3 * accumulated_seconds:.0f} ms as 4 x 3 "
      f"({accumulated_seconds / whole_seconds:.2f}x)")
assert quarter_peak < whole_peak

# %% [markdown]
# The peak fell about as much as the micro-batch (the printed peaks, for a
# batch 4 times smaller). The time is the printed ratio: four
# micro-batches in a row usually take longer than the whole batch at once, as each
# multiplies smaller matrices.
#
# ### Gradient checkpointing
#
# Training keeps every block's intermediate results for the backward pass.
# With **gradient checkpointing** (`gpt.gradient_checkpointing = True`, in
# Hugging Face `model.activation_checkpointing_enable()`, formerly
# `gradient_checkpointing_enable()`; Chen et al., 2016),
# each block keeps only its input; the backward pass runs the block's
# forward again to get the rest. First the memory kept for the backward
# pass, counted as above (the parameters left out: they are there anyway),
# and whether the gradients stay the same:

# %%
batch = (inputs, targets)
_, plain_bytes = efficiency.saved_activation_bytes(lambda: next_token_loss(gpt, batch), gpt.parameters())
gpt.gradient_checkpointing = True
_, checkpointed_bytes = efficiency.saved_activation_bytes(lambda: next_token_loss(gpt, batch), gpt.parameters())
recomputed = efficiency.gradients(gpt, next_token_loss, [batch])
gpt.gradient_checkpointing = False
print(f"kept for backward: {plain_bytes / 2**20:.1f} MiB plain, {checkpointed_bytes / 2**20:.1f} MiB checkpointed "
      f"({plain_bytes / checkpointed_bytes:.0f}x less)")
print("same gradients:", all(torch.allclose(recomputed[name], whole[name], atol=1e-6, rtol=1e-4) for name in whole))

# %% [markdown]
# What is kept is not what a step needs at its worst moment: the backward
# pass rebuilds one block's insides at a time and holds them while it
# works through that block, beside the gradients it is writing. What
# decides whether a step fits is the **peak**: the most memory its tensors
# hold at once, which PyTorch's profiler measures
# (`efficiency.peak_allocated_bytes`).

# %%
# NBVAL_IGNORE_OUTPUT
# The peak includes the buffers of the machine's matrix-multiply library; the assert holds everywhere.


def peak_of_a_step():
    gpt.zero_grad(set_to_none=True)
    return efficiency.peak_allocated_bytes(lambda: next_token_loss(gpt, batch).backward())


plain_peak = peak_of_a_step()
gpt.gradient_checkpointing = True
checkpointed_peak = peak_of_a_step()
gpt.gradient_checkpointing = False
print(f"peak of forward + backward: {plain_peak / 2**20:.1f} MiB plain, {checkpointed_peak / 2**20:.1f} MiB "
      f"checkpointed ({plain_peak / checkpointed_peak:.1f}x less)")
assert 1.5 < plain_peak / checkpointed_peak < plain_bytes / checkpointed_bytes

# %% [markdown]
# And the time per step:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings depend on the machine.


def step_seconds(loss_of=next_token_loss):
    return efficiency.best_seconds(lambda: loss_of(gpt, batch).backward(), repeats=5)


plain_seconds = step_seconds()
gpt.gradient_checkpointing = True
checkpointed_seconds = step_seconds()
gpt.gradient_checkpointing = False
print(f"forward + backward: {1e3 * plain_seconds:.0f} ms plain, {1e3 * checkpointed_seconds:.0f} ms checkpointed "
      f"({checkpointed_seconds / plain_seconds:.2f}x)")
gpt.zero_grad(set_to_none=True)

# %% [markdown]
# The trade is the one the name promises: memory for time. The forward
# pass runs twice, and one forward is roughly a third of a step, so a step
# costs about a third more, plus some overhead (the timing above; it
# varies from run to run). What it saves is smaller than the count of
# kept tensors suggests: the peak fell about 3 times (2.8 in the stored
# output), not 10, because the backward pass still holds one block's
# rebuilt insides and the gradients at its worst moment. It pays when
# memory, not speed, limits the batch or the length.
#
# ### bf16 autocast
#
# **Mixed precision** runs the matrix multiplies in a 16-bit format while
# the weights stay in float32. bfloat16 keeps float32's 8 exponent bits, so
# its range, and stores 7 bits of mantissa (8 bits of precision with the
# implicit leading one): neighbouring numbers near 1 are 2⁻⁷ apart, about 2.4
# significant decimal digits. float16 stores 10 mantissa bits but only 5
# exponent bits: its smallest positive number is about 6·10⁻⁸, and
# smaller values, small gradients among them, round to 0. Training in
# float16 therefore scales the loss up before the
# backward pass and the gradients down after it (`torch.amp.GradScaler`;
# Micikevicius et al., 2018). `torch.finfo` gives each format's spacing at 1
# and smallest positive number:

# %%
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    info = torch.finfo(dtype)
    print(f"{str(dtype):<15} spacing at 1: {info.eps:.1e}   smallest positive: {info.smallest_normal * info.eps:.1e}")

# %% [markdown]
# `torch.autocast` switches each operation to bf16 where that is safe. What
# it changes in the loss, on the validation text:

# %%
# NBVAL_IGNORE_OUTPUT
# The losses depend on the trained weights; the assert holds on every machine.
from course_utils.gpt import random_windows

validation_batch = random_windows(validation_ids, 64, gpt.config.context, torch.Generator().manual_seed(0))
with torch.no_grad():
    full = next_token_loss(gpt, validation_batch).item()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        half = next_token_loss(gpt, validation_batch).item()
print(f"validation loss: float32 {full:.4f}, bf16 autocast {half:.4f} (difference {abs(full - half):.4f})")
assert abs(full - half) < 0.02

# %% [markdown]
# And its speed, which depends on the hardware: a CPU with AMX or AVX-512
# BF16 instructions, or a GPU with bf16 tensor cores (NVIDIA's since the
# A100), multiplies large bf16 matrices several times faster than float32;
# a CPU without them runs bf16 through slower general-purpose kernels, and
# bf16 is then *slower*. On this machine:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings and the CPU's instruction set depend on the machine.


def autocast_loss(model, batch):
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        return next_token_loss(model, batch)


bf16_seconds = efficiency.best_seconds(lambda: autocast_loss(gpt, batch).backward(), repeats=2)
gpt.zero_grad(set_to_none=True)
print(f"CPU instructions: {torch.backends.cpu.get_cpu_capability()}; forward + backward: "
      f"float32 {1e3 * plain_seconds:.0f} ms, bf16 autocast {1e3 * bf16_seconds:.0f} ms "
      f"({plain_seconds / bf16_seconds:.2f}x the speed)")

# %% [markdown]
# On the 2-core CPU this course was built on (AVX2, no bf16 instructions)
# a bf16 step took over 20 times as long as a float32 one. We do not claim
# the opposite for a GPU at this size: a model of width 128 leaves a GPU
# waiting on kernel launches more than on arithmetic. The loss itself barely
# moved (in the fourth decimal, here). Precision matters more in training: an update
# much smaller than a weight is lost when added to it in bf16, which is
# why autocast leaves the weights and the optimiser in float32.
#
# ### fp16 and the gradient scaler
#
# fp16 has three more mantissa bits than bf16 but only 5 exponent bits
# (the table above): a gradient under half its smallest positive number,
# 6·10⁻⁸, rounds to 0, and one under 6·10⁻⁵, the smallest *normal* fp16
# number, keeps fewer bits of precision the smaller it is.
# Gradients of a trained model are small: at the output, the gradient of
# the mean cross-entropy for a wrong character is its probability divided
# by the number of targets (768 in a batch of 12 × 64). Under fp16
# autocast the logits come out of the last matrix multiply in fp16, so
# their gradient is rounded to fp16 there (`efficiency.logit_gradient`).
# On our trained GPT, without scaling and with the scale a `GradScaler`
# starts from, 2¹⁶:

# %%
# NBVAL_IGNORE_OUTPUT
# The shares depend on the trained weights; the asserts hold on every machine.
SMALLEST_NORMAL_FP16 = torch.finfo(torch.float16).smallest_normal
for scale in (1.0, 2.0 ** 16):
    gradient = efficiency.logit_gradient(gpt, batch, torch.float16, scale=scale)
    zero, subnormal = (gradient == 0).float().mean().item(), (gradient.abs() < SMALLEST_NORMAL_FP16).float().mean().item()
    print(f"loss scaled by {scale:>7,.0f}: {zero:6.1%} of the logits' gradient is 0 in fp16, "
          f"{subnormal:6.1%} below the smallest normal fp16 number")
    if scale == 1.0:
        assert subnormal > 0.5, "most of the unscaled gradient lies where fp16 loses precision"
    else:
        assert zero < 1e-3, "scaled by 2^16, almost nothing underflows"

# %% [markdown]
# Without scaling, most of the gradient at the model's output lies where
# fp16 keeps only a few bits, and a part of it is lost outright (the
# printed shares); every layer below receives it so. `torch.amp.GradScaler`
# multiplies the loss by a large scale before the backward pass, so the
# gradients are that much larger while in fp16, and divides them again, in
# float32, before the optimiser step; when a gradient overflows to inf it
# skips that step and halves the scale (Micikevicius et al., 2018). bf16
# needs no scaler: it has float32's exponent range.
#
# A short training run in each format: a small GPT (2 layers, width 64)
# for 30 steps of 8 windows, from the same initial weights, on the same
# batches. The losses, the scaler's verdict, and the time of a step on
# this machine:

# %%
# NBVAL_IGNORE_OUTPUT
# Losses depend on the machine's float arithmetic and timings on the machine; the asserts hold on every machine.
small_config = GPTConfig(vocab_size=characters.get_vocab_size(), context=32, width=64, layers=2, heads=4)


def small_batch(step):
    return random_windows(train_ids, 8, small_config.context, torch.Generator().manual_seed(step))


precision_runs = {}
for name, dtype, scaler in [("float32", None, False), ("bf16 autocast", torch.bfloat16, False),
                            ("fp16 autocast + GradScaler", torch.float16, True)]:
    torch.manual_seed(0)
    precision_runs[name] = efficiency.train_in_precision(GPT(small_config), small_batch, next_token_loss, steps=30,
                                                         dtype=dtype, scaler=scaler)
print(f"CPU instructions: {torch.backends.cpu.get_cpu_capability()}")
print(f"{'':28} loss at step 1, 10, 20, 30     ms per step (median)")
for name, run in precision_runs.items():
    milliseconds = sorted(run["seconds"])[len(run["seconds"]) // 2] * 1e3
    print(f"{name:28} " + " ".join(f"{run['losses'][i]:.3f}" for i in (0, 9, 19, 29)) + f"   {milliseconds:8.0f}")
fp16_run = precision_runs["fp16 autocast + GradScaler"]
print(f"GradScaler: scale {fp16_run['scale']:,.0f} at the end, {fp16_run['skipped']} step(s) skipped for inf gradients")
final = {name: run["losses"][-1] for name, run in precision_runs.items()}
assert all(loss < run["losses"][0] - 0.8 for loss, run in zip(final.values(), precision_runs.values()))
assert max(final.values()) - min(final.values()) < 0.25

# %% [markdown]
# The three runs learn alike: at step 1 the losses agree to the third
# decimal, and after 30 steps they differ in the second, as rounding in
# 16 bits sends the runs slightly different ways. The scaler starts at
# 2¹⁶; a step whose scaled gradient overflows fp16 (largest number 65,504)
# is skipped and the scale halved, which is what its count reports. What
# does not carry over from here is speed. Mixed precision is fast only on
# hardware that multiplies 16-bit numbers natively: NVIDIA's tensor cores
# take fp16 since the V100 (Volta, 2017) and bf16 since the A100 (Ampere,
# 2020), each several times float32's rate (NVIDIA's V100 and A100 data
# sheets); among CPUs, AMX and AVX512-BF16 multiply bf16 (the course's
# reference measurements, 2 cores: 1.1-1.6 TFLOP/s with AMX, against
# 165-380 GFLOP/s in float32). On the AVX2 CPU of the stored output both
# 16-bit runs were slower than float32, as the ms column shows.
#
# ### The same remedies in `Trainer`
#
# With Hugging Face's `Trainer`, each remedy is one training argument:
# `gradient_accumulation_steps` (micro-batches per optimiser step, each of
# `per_device_train_batch_size` rows), `activation_checkpointing` (called
# `gradient_checkpointing` before; the old name still works in this
# version, with a warning that it goes in v6), and `bf16=True` or
# `fp16=True` (autocast, and for fp16 a gradient scaler, through
# `accelerate`; on a CPU, `bf16` also needs `use_cpu=True`). One step of
# a one-layer model built from MiniLM's config, watched from inside:

# %%
import contextlib
import io

remedies = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="remedies-"), max_steps=1, per_device_train_batch_size=8,
    gradient_accumulation_steps=4, activation_checkpointing=True, bf16=True, use_cpu=True,
    save_strategy="no", report_to="none", disable_tqdm=True, dataloader_pin_memory=False)
torch.manual_seed(0)
one_layer = AutoModelForTokenClassification.from_config(AutoConfig.from_pretrained(
    minilm, num_hidden_layers=1, num_labels=len(ner.LABELS)))
passes, output_dtypes = [], set()  # each forward pass: (labelled tokens, num_items_in_batch, its loss)
one_layer.register_forward_hook(lambda module, args, kwargs, output: passes.append(
    (int(kwargs["labels"].ne(-100).sum()), kwargs.get("num_items_in_batch"), output.loss.item())), with_kwargs=True)
one_layer.classifier.register_forward_hook(lambda module, args, output: output_dtypes.add(output.dtype))
remedies_trainer = Trainer(model=one_layer, args=remedies, train_dataset=encoded_train, data_collator=collator)
with contextlib.redirect_stdout(io.StringIO()):  # the end-of-training summary, with its timings
    remedies_trainer.train()
tokens = [count for count, _, _ in passes]
print("optimiser steps:", remedies_trainer.state.global_step, "| forward passes:", len(passes))
print("labelled tokens per micro-batch:", tokens, "| num_items_in_batch given to each:",
      {int(items) for _, items, _ in passes}, f"(their sum: {sum(tokens)})")
print("classifier output:", output_dtypes, "| accelerate's mixed precision:",
      remedies_trainer.accelerator.mixed_precision, "| checkpointing on:", one_layer.is_activation_checkpointing)
token_mean = sum(count * loss for count, _, loss in passes) / sum(tokens)
logged = remedies_trainer.state.log_history[-1]["train_loss"]
print(f"the loss Trainer logged, over the token mean of the four micro-batches: {logged / token_mean:.1f}")
assert 3.5 < logged / token_mean < 4.5

# %% [markdown]
# One optimiser step ran four forward passes of 8 lines; autocast made
# the classifier's output bf16; checkpointing was switched on in the model.
# `Trainer` counted the labelled tokens of all four micro-batches and
# handed the count, `num_items_in_batch`, to every forward pass: the 2024
# fix, for the model to divide its summed loss by. But the loss it logged
# is four times the token mean. In this version of `transformers` (5.23),
# `BertForTokenClassification` accepts `num_items_in_batch` among its
# keyword arguments and ignores it: it averages over its own micro-batch.
# `Trainer`, seeing a model that accepts the count, trusts it to have
# divided and no longer divides by the number of micro-batches itself. The
# backward pass starts from that loss, so the accumulated gradient is the
# *sum* of four means. AdamW hardly notices a constant factor (it divides
# each update by the gradient's running size); gradient clipping at
# `max_grad_norm` does. Check what your model's loss does with
# `num_items_in_batch` before you trust accumulation to equal the batch.
#
# ### The KV cache, and serving our GPT
#
# Lesson 10's cache computes each generated token's keys and values once.
# The same tokens, faster, after a speaker's name as the plays write it:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings depend on the machine; the tokens are equal on every machine.
from course_utils.gpt import generate
from course_utils.tokenization import encode_chars

prompt = encode_chars(characters, "Cleopatra:\n")[None]
cached_seconds = efficiency.best_seconds(lambda: generate(gpt, prompt, 50, temperature=0), repeats=2)
uncached_seconds = efficiency.best_seconds(lambda: generate(gpt, prompt, 50, temperature=0, use_cache=False), repeats=2)
same = torch.equal(generate(gpt, prompt, 50, temperature=0), generate(gpt, prompt, 50, temperature=0, use_cache=False))
print(f"50 tokens: {1e3 * uncached_seconds:.0f} ms without the cache, {1e3 * cached_seconds:.0f} ms with it; "
      f"same tokens: {same}")
assert same

# %% [markdown]
# And **text generation** as a pipeline: the GPT converted to
# `GPT2LMHeadModel` (lesson 10), saved with the character tokenizer beside
# it. With sampling off it writes what our greedy decoding writes.

# %%
from transformers import PreTrainedTokenizerFast

from course_utils.gpt import to_huggingface

gpt_folder = Path(tempfile.mkdtemp(prefix="shakespeare-gpt-"))
to_huggingface(gpt).save_pretrained(gpt_folder)
PreTrainedTokenizerFast(tokenizer_object=characters).save_pretrained(gpt_folder)
write = pipeline("text-generation", model=str(gpt_folder), device=device)
served = write("Cleopatra:\n", max_new_tokens=50, do_sample=False, pad_token_id=0)[0]["generated_text"]
ours = characters.decode(generate(gpt, prompt, 50, temperature=0)[0].tolist())
print("the pipeline writes what our greedy decoding writes:", served == ours)

# %% [markdown]
# Greedy decoding soon loops, as lesson 10 measured; sampled with
# temperature 0.8 and top-p 0.9, the model writes what follows. The
# pipeline's `generate` fills in a default for every setting left out, and
# its default top-k is 50, so we pass `top_k=0` to switch top-k off, as our
# own sampling does.

# %%
# NBVAL_IGNORE_OUTPUT
# The text depends on the trained weights' last digits.
torch.manual_seed(0)
print(served, "...", sep="")
print(write("Cleopatra:\n", max_new_tokens=50, do_sample=True, temperature=0.8, top_p=0.9, top_k=0,
            pad_token_id=0)[0]["generated_text"])

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("11")

# %%
# BEGIN SOLUTION
answer("11.first-piece", "B")
answer("11.fingerprint", "C")
answer("11.fused-cost", "A")
answer("11.checkpointing", "D")
answer("11.safetensors", "B")
answer("11.entity-f1", 0.5)
answer("11.token-mean", 1.25)
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A Hugging Face model is a **folder**: `config.json`, the weights in
#   `model.safetensors`, the tokenizer's files. The `Auto` classes build
#   the right class from it; the hub only adds a way to find and download
#   folders.
# - **Token classification** gives one label per word; a fast tokenizer's
#   `word_ids()` maps labels onto pieces, the first piece scored, the rest
#   `-100`; in a sentence pair the word ids start again after `[SEP]`.
#   Fine-tuned for half a minute, MiniLM found characters' names it had
#   never seen, where dictionaries could not. NER is scored by **entity**
#   (BIO tags, exact spans, as `seqeval`); with our one-word names the
#   entity scores agreed with the word scores within a few hundredths.
# - **`datasets`** stores tables in Arrow files, transforms them with
#   `map` and `filter` (batched, in several processes) and reuses work by
#   **fingerprint**; the fast tokenizer encodes a batch in one call.
# - `safetensors` holds weights and nothing else: loading it runs no code.
# - Attention's **memory** grows as L² when the score matrix is built and
#   linearly when a fused kernel avoids it; its **arithmetic** grows as L²
#   either way, and the naive kernel's time grew faster, as its matrices
#   left the caches. Gradient accumulation gives a large batch in the memory of a small
#   one, equal to the batch only when the micro-batches are weighted by
#   their tokens; checkpointing trades time for memory; bf16 and fp16 trade
#   precision for speed where the hardware multiplies them natively, fp16
#   only with a gradient scaler; `TrainingArguments` switches each on; and
#   the KV cache trades memory for generation speed.
#
# That closes the path from embeddings and Q·K to models trained,
# measured and served. `course bench` measures its figures on your machine.
