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
# # 10 · GPT: a decoder that writes Shakespeare
#
# BERT (lessons 08-09) reads a whole text at once and fills in its gaps.
# GPT does the other thing a transformer can do: it **writes**, one token
# after another, each chosen from what the model predicts should follow
# the text so far. It is the decoder of lesson 07 with the
# cross-attention taken out: a stack of lesson 06's pre-LN blocks under a
# causal mask, and nothing else.
#
# **In this lesson you will**
#
# - cut Shakespeare into (input, target) pairs for next-token prediction,
#   with characters and with lesson 01's BPE;
# - build GPT from lesson 06's blocks, check that no position sees the
#   future, and see why the output layer is the token table again;
# - train it on the CPU in under a minute, watching what it writes improve;
# - generate with every usual rule: greedy, temperature, top-k, top-p
#   (you write top-p) and beam search, and measure what each does to the
#   text;
# - add a **KV cache**, check it changes nothing but the speed, and watch
#   its memory grow;
# - move the weights into Hugging Face's `GPT2LMHeadModel`, save the model
#   with `save_pretrained`, and serve it with `pipeline("text-generation")`.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Next-token prediction, one character at a time
#
# The simplest tokenizer gives every distinct character an id. The text is
# the first 1,115,394 characters of the course's training plays (as many as
# the tiny-shakespeare file that small GPTs are usually trained on), split
# 90/10: the first 90% to train on, the rest to validate.

# %%
from course_utils.gpt import RECIPE_CHARACTERS, character_data

tokenizer, train_ids, validation_ids = character_data()
vocabulary = "".join(tokenizer.id_to_token(i) for i in range(tokenizer.get_vocab_size()))
print(f"{tokenizer.get_vocab_size()} characters: {vocabulary!r}")
print(f"{len(train_ids):,} characters to train on, {len(validation_ids):,} to validate")
print("the first line as ids:", train_ids[:20].tolist())

# %% [markdown]
# A language model learns from the text itself: every position is an
# example whose label is the next character. Cut a **window** of
# context + 1 characters anywhere in the text; the first `context` are
# the input, the same window shifted by one is the target. One window of
# 9 characters is 8 examples at once:

# %%
import torch

from course_utils.gpt import random_windows

window = train_ids[:9]
inputs, targets = window[:-1], window[1:]
for t in range(len(inputs)):
    seen = tokenizer.decode(inputs[:t + 1].tolist())
    print(f"after {seen!r:<12} comes {tokenizer.decode([targets[t].item()])!r}")
batch_inputs, batch_targets = random_windows(train_ids, 4, 64, torch.Generator().manual_seed(0))
print("a batch of windows at random starts:", tuple(batch_inputs.shape), tuple(batch_targets.shape))
assert torch.equal(batch_inputs[:, 1:], batch_targets[:, :-1])

# %% [markdown]
# `random_windows` draws such windows at random starts; the training loop
# below draws 12 of them, 64 characters each, for every step.
#
# The same cut works for any tokenizer. With lesson 01's byte-level BPE
# (8,000 pieces), a window of 64 tokens covers about four times as much
# text:

# %%
from course_utils.data import shakespeare_splits
from course_utils.tokenization import shakespeare_bpe

bpe = shakespeare_bpe()
line = "To be, or not to be, that is the question:"
pieces = bpe.encode(line)
print(pieces.tokens)
for t in range(4):
    print(f"after {bpe.decode(pieces.ids[:t + 1])!r:<14} comes {bpe.decode(pieces.ids[t + 1:t + 2])!r}")
sample_text = shakespeare_splits()[0][:RECIPE_CHARACTERS][:200_000]
print(f"characters per BPE token over 200,000 characters: {len(sample_text) / len(bpe.encode(sample_text).ids):.2f}")

# %% [markdown]
# So why characters here? The model's first and last layers are the token
# table: with 8,000 BPE pieces and width 128 that is 1.0M weights, more
# than the whole character-level GPT below, and each piece is seen far
# less often in one minute of training. On this budget, 64 characters
# learn faster. Large GPTs use BPE (GPT-2's has 50,257 pieces) because
# they have the data and time to learn all those rows.
#
# ## The model: lesson 06's blocks under a causal mask
#
# `course_utils.gpt.GPT` is short enough to read in one screen:
#
# - token embedding + **learned** position embedding (one row per position,
#   up to `context`);
# - `layers` pre-LN blocks, lesson 06's `EncoderLayer` with
#   `norm="pre"`, each attention told `is_causal=True`;
# - a final LayerNorm (a pre-LN stack leaves its output un-normalised);
# - the **head**: logits = x · Eᵀ, where E is the token embedding table.
#
# The default `GPTConfig` is the CPU recipe of nanoGPT, the best-known
# small GPT trainer: 4 layers, 4 heads, width 128, context 64.

# %%
from course_utils.gpt import GPT, GPTConfig

config = GPTConfig(vocab_size=tokenizer.get_vocab_size())
torch.manual_seed(0)
model = GPT(config)
print(config)
print(f"{sum(p.numel() for p in model.parameters()):,} weights")
print(f"the token table, {tuple(model.token_embedding.weight.shape)}, is also the output layer: "
      f"{model.token_embedding.weight.numel():,} weights counted once")

# %% [markdown]
# **Why tie the head to the token table?** The input table turns a
# token into a vector; the output layer scores every token against a
# vector. Both hold one row per token, and a token that is used like
# another should look like it in both. Sharing them (Press & Wolf, 2017)
# saves a vocab × width matrix, and each row learns from both ends. Here
# that is 8,192 weights; with GPT-2's 50,257 tokens at width 768, it is
# 38.6M, about a third of the smallest GPT-2.
#
# **Causal**: the prediction at position t may use tokens 0..t only,
# otherwise training would teach it to copy the answer from the next
# position. Measured: change the last 20 characters of a window, and the
# logits of the first 44 positions do not move.

# %%
text_ids = train_ids[:64][None]
changed = text_ids.clone()
changed[0, 44:] = (changed[0, 44:] + 1) % config.vocab_size
model.eval()
with torch.no_grad():
    before, after = model(text_ids), model(changed)
print("largest change in positions 0-43 < 1e-6:", (before[0, :44] - after[0, :44]).abs().max().item() < 1e-6)
print("largest change in positions 44-63 > 0.01:", (before[0, 44:] - after[0, 44:]).abs().max().item() > 0.01)

# %% [markdown]
# Before training, every character should be about equally likely, so
# the loss (the cross-entropy of the right next character) should be
# about ln 64 = 4.16:

# %%
import math

from course_utils.gpt import next_token_loss

with torch.no_grad():
    start_loss = next_token_loss(model, random_windows(validation_ids, 64, 64, torch.Generator().manual_seed(1))).item()
print(f"loss before training {start_loss:.2f}, ln {config.vocab_size} = {math.log(config.vocab_size):.2f}")

# %% [markdown]
# ## Training on the CPU
#
# `gpt.TrainingRecipe` is nanoGPT's CPU recipe: batches of 12 windows,
# AdamW (β₂ = 0.99, weight decay 0.1 on the weight matrices), gradients
# clipped at 1, a learning rate that climbs for 100 steps and then falls
# along a cosine. Its full run, 2,000 steps, takes 1.5-2 minutes here; the
# lesson runs half of it with twice the peak rate, which gets most of the
# way. `train_gpt` is the course's training loop plus an evaluation every
# 250 steps, on the same 240 windows of each split each time, and a sample
# of what the model writes at that point.

# %%
# NBVAL_IGNORE_OUTPUT
# Training: the losses and samples differ in their last digits from one machine to another.
from course_utils.gpt import TrainingRecipe, generate, train_gpt
from course_utils.tokenization import encode_chars

recipe = TrainingRecipe(steps=1000, peak_lr=2e-3)
prompt = "ROMEO:\n"


def sample(model):
    ids = generate(model, encode_chars(tokenizer, prompt)[None], 80, temperature=0.8,
                   generator=torch.Generator().manual_seed(0))
    return tokenizer.decode(ids[0].tolist())


torch.manual_seed(0)
model = GPT(config)
run = train_gpt(model, train_ids, validation_ids, recipe, sample=sample)
final_step, final_train, final_validation = run.evaluations[-1]
assert 1.8 < final_validation < 2.05, f"validation loss {final_validation:.3f} outside the expected band"

# %% [markdown]
# At step 0 the model writes noise; by step 250 it has the look of a play
# (names in capitals, a colon, line breaks, short words); by the end it
# writes English-like words and Shakespeare's rhythm, with many words that
# do not exist. The training loss and the validation loss stay close: with
# 0.8M weights and a million characters, the model is far from memorising.

# %%
import matplotlib.pyplot as plt

from course_utils.training import smooth

steps, train_losses, validation_losses = zip(*run.evaluations)
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.plot(range(25, len(run.losses) + 1), smooth(run.losses), color="#BBBBBB", label="training batches (mean of 25)")
ax.plot(steps, train_losses, "o-", label="training split")
ax.plot(steps, validation_losses, "o-", label="validation split")
ax.axhline(math.log(config.vocab_size), color="gray", linestyle=":", label="uniform guess")
ax.set_xlabel("step")
ax.set_ylabel("loss (nats per character)")
ax.legend()
plt.show()

# %% [markdown]
# **How fast, and why.** `benchmarks/gpt_train.py` runs the full recipe
# and times what each choice is worth. On the 2-core CPU it reached a
# validation loss of 1.85 after 2,000 steps (target: 1.90) in 100 s, 49 ms
# a step with its evaluations. With `--ablation`, a plain loop of the same
# model took 52.5 ms a step. The fused layer norm brought that to 45.6 ms
# (lesson 06's formula takes five passes over the data, and as many
# backward). Then `is_causal=True` changed nothing measurable at 64
# positions, the fused AdamW gave 44.5 ms, and GELU's exact form
# (nanoGPT's choice, which PyTorch computes faster here than GPT-2's tanh
# approximation) gave 40.0 ms: 0.76x the plain loop. What remains is mostly
# matrix multiplies. One step is 3.66 GFLOP, and this CPU's float32
# multiply peaks near 170 GFLOP/s, so even at peak a step would take
# 22 ms; training reaches about 45% of that. bf16 would help on a CPU with
# AMX units, but this one has none: bf16 multiplies run at about
# 1 GFLOP/s here, over 100x slower (the script measures both).
#
# ## Writing: from logits to text
#
# The model gives a distribution over the next character; a **decoding
# rule** picks one, appends it, and asks again. `course_utils.generation`
# has the rules, `gpt.generate` the loop. Every sample below uses a seeded
# generator, so a rerun writes the same text.
#
# - **greedy** (temperature 0): always the most likely character;
# - **temperature** T: sample from softmax(logits / T); T < 1 sharpens the
#   distribution, T > 1 flattens it;
# - **top-k**: sample only among the k most likely;
# - **top-p** (nucleus): sample among the smallest set of most likely
#   characters whose probabilities add up to at least p.

# %%
# NBVAL_IGNORE_OUTPUT
# Samples of a trained model: its last digits, and so its text, differ from one machine to another.
from course_utils import data

known_words = data.word_counts(shakespeare_splits()[0][:RECIPE_CHARACTERS])
rules = {"greedy": dict(temperature=0), "T = 0.5": dict(temperature=0.5), "T = 1.0": dict(temperature=1.0),
         "T = 1.5": dict(temperature=1.5), "top-k 10": dict(top_k=10), "top-p 0.9": dict(top_p=0.9)}
prompts = encode_chars(tokenizer, "KING HENRY:\nWhat")[None].repeat(8, 1)
measures = {}
for name, settings in rules.items():
    written = generate(model, prompts, 200, generator=torch.Generator().manual_seed(0), **settings)
    texts = [tokenizer.decode(row[prompts.size(1):].tolist()) for row in written]
    words = [word for text in texts for word in data.words(text)]
    four_grams = [text[i:i + 4] for text in texts for i in range(len(text) - 3)]
    measures[name] = (sum(word in known_words for word in words) / len(words), len(set(four_grams)) / len(four_grams))
    print(f"--- {name}: {measures[name][0]:.0%} of the words exist, {measures[name][1]:.0%} of 4-grams distinct\n"
          f"KING HENRY:\nWhat{texts[0][:120]}\n")
assert measures["greedy"][1] < measures["T = 1.0"][1], "greedy repeats itself more than sampling"
assert measures["T = 0.5"][0] > measures["T = 1.5"][0], "a low temperature writes more real words"

# %% [markdown]
# Eight continuations of 200 characters per rule, measured two ways: the
# share of words that exist in the training text (a rough "is it
# English?") and the share of distinct 4-character pieces (low means it
# repeats itself). Greedy decoding loops: once a phrase is the most likely
# continuation of itself, it comes back forever. Sampling breaks the
# loops, and the temperature trades one for the other: T = 0.5 writes
# real words, T = 1.5 invents most of them. Top-k and top-p cut off the
# unlikely tail (where the invented words come from) while still
# sampling.
#
# **Why top-p adapts where top-k does not.** After "KING HENRY:\nWha" the
# model is sure of the next character ("t"); after a space it is not. A
# fixed k keeps k characters in both cases, so it either lets nonsense in
# where the model is sure, or cuts off good choices where it is not. A
# fixed p keeps as few characters as carry p of the mass, so the set is
# small where the model is sure and large where it is not. Measured on the
# validation text, at p = 0.9:

# %%
# NBVAL_IGNORE_OUTPUT
# The counts depend on the trained weights' last digits; the assert holds on every machine.
from course_utils.generation import top_p_filter

with torch.no_grad():
    logits = model(validation_ids[:64][None])[0]
kept = torch.isfinite(top_p_filter(logits, 0.9)).sum(dim=-1)
confident = logits.softmax(-1).max(-1).values > 0.9
print(f"positions where the model gives > 90% to one character: {confident.sum().item()} of 64")
print(f"characters kept at p = 0.9 there: {kept[confident].float().mean():.1f} on average; "
      f"elsewhere: {kept[~confident].float().mean():.1f}")
assert kept[confident].float().mean() < kept[~confident].float().mean()

# %% [markdown]
# ### Exercise: nucleus (top-p) filtering
#
# Write `top_p_filter(logits, p)`: for each row of `logits` (shape
# (rows, vocabulary)), keep the smallest set of most likely tokens whose
# probabilities add up to **at least** p, and set every other logit to
# `-inf` (a softmax then gives them probability 0 and renormalises the
# rest). The token whose probability carries the sum past p is kept.
# Return a new tensor; leave `logits` as it was.
#
# Hint: `sort(descending=True)` returns the sorted values and the indices
# they came from; `cumsum` gives running sums; `scatter` puts values back
# at given indices.

# %%
def top_p_filter(logits, p):
    # BEGIN SOLUTION
    probabilities, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    mass_before = probabilities.cumsum(dim=-1) - probabilities
    drop = torch.zeros_like(mass_before, dtype=torch.bool).scatter(-1, order, mass_before >= p)
    return logits.masked_fill(drop, float("-inf"))
    # END SOLUTION


# %%
from course_utils.classroom.checks.gpt import check_top_p_filter

check_top_p_filter(top_p_filter)

# %% [markdown]
# ### Beam search
#
# Sampling picks one character at a time. **Beam search** (lesson 07)
# keeps the `beam_size` most likely partial texts at each step, and
# finds a continuation at least as likely as greedy's, usually more.
# `gpt.next_token_log_probs(model)` turns our GPT into the callable that
# lesson 07's `beam_search` takes; a newline ends a line.

# %%
# NBVAL_IGNORE_OUTPUT
# The lines depend on the trained weights' last digits.
from course_utils.generation import beam_search, greedy, sequence_log_prob
from course_utils.gpt import next_token_log_probs

score = next_token_log_probs(model)
newline = tokenizer.token_to_id("\n")
for start in ["JULIET:\nO", "HAMLET:\nThe"]:
    start_ids = encode_chars(tokenizer, start)
    with torch.no_grad():
        greedy_ids = greedy(score, start_ids[None], newline, max_new_tokens=60)
        greedy_log_prob = sequence_log_prob(score, greedy_ids, len(start_ids), newline).item()
        best, best_log_prob = beam_search(score, start_ids, newline, max_new_tokens=60, beam_size=5)
    print(f"greedy ({greedy_log_prob:6.2f}): {tokenizer.decode(greedy_ids[0].tolist())!r}")
    print(f"beam 5 ({best_log_prob:6.2f}): {tokenizer.decode(best.tolist())!r}\n")
    assert best_log_prob >= greedy_log_prob - 1e-4

# %% [markdown]
# The numbers are the log-probabilities of the continuations. Beam
# search finds lines the model rates far more likely than greedy's, and
# they read no better: the likeliest text of a small language model is
# its most common words, over and over. Beam search suits translation
# (lesson 07), where the likely answer is the right one; writing uses
# sampling.
#
# ## The KV cache
#
# To write token t + 1, the model runs all t tokens through every layer,
# although the keys and values of the first t - 1 have not changed since
# the step before: under a causal mask, a position never sees the ones
# after it, so nothing later revises it. The **KV cache** keeps each
# layer's keys and values, and each step computes those of the newest
# token only: its query attends to all the cached keys. First, it changes
# nothing but the work done:

# %%
ids = validation_ids[:64][None]
cache = model.new_cache()
with torch.no_grad():
    whole = model(ids)
    step_by_step = torch.cat([model(ids[:, :16], cache)] + [model(ids[:, t:t + 1], cache) for t in range(16, 64)], dim=1)
print("largest difference between one pass and a 16-token prompt + 48 cached steps < 1e-5:",
      (whole - step_by_step).abs().max().item() < 1e-5)
with_cache = generate(model, ids[:, :16], 48, temperature=0)
without_cache = generate(model, ids[:, :16], 48, temperature=0, use_cache=False)
print("the same 48 greedy characters with and without the cache:", torch.equal(with_cache, without_cache))

# %% [markdown]
# What it trades: memory for time. Every layer keeps a key and a value
# of `width` numbers per position, for every text of the batch:

# %%
cache = model.new_cache()
sizes = []
with torch.no_grad():
    model(ids[:, :1], cache)
    sizes.append((len(cache[0]), sum(layer.nbytes for layer in cache)))
    for t in range(1, 64):
        model(ids[:, t:t + 1], cache)
        sizes.append((len(cache[0]), sum(layer.nbytes for layer in cache)))
per_position = sizes[-1][1] // sizes[-1][0]
print(f"{per_position:,} bytes per position = {config.layers} layers x (key + value) x {config.width} numbers x 4 bytes")
print(f"at {sizes[-1][0]} positions: {sizes[-1][1]:,} bytes")
gpt2_xl = 48 * 2 * 1600 * 2 * 1024
print(f"GPT-2 XL (48 layers, width 1,600, 16-bit numbers) at 1,024 positions: {gpt2_xl / 2 ** 20:.0f} MiB per text")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(*zip(*sizes))
ax.set_xlabel("positions in the cache")
ax.set_ylabel("bytes")
ax.set_title("the KV cache grows linearly with the text")
plt.show()

# %% [markdown]
# With learned **absolute** positions, the cache has a limit: once the
# text is longer than the context (64 here), the model must see a window
# of the last 64 tokens, and at each step every token in the window moves
# to a new position, so every cached key is stale. `gpt.generate` then
# runs the whole window at each step, as without a cache. Models with
# relative positions (rotary, lesson 05) can slide a cache instead.
#
# How much time it saves, measured on a GPT whose context holds a
# 64-token prompt and 256 new tokens (`benchmarks/generation.py`, 2-core
# CPU, greedy): 1.24 s without the cache, 0.35 s with it (3.5x), and
# Hugging Face's `generate` on the same weights 0.58 s.
# The lesson's own model is small and its context short, so here the
# gain is smaller:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings.
import time

for use_cache in (False, True):
    begin = time.perf_counter()
    generate(model, ids[:, :8], 56, temperature=0, use_cache=use_cache)
    print(f"56 characters {'with' if use_cache else 'without'} the cache: {time.perf_counter() - begin:.3f} s")

# %% [markdown]
# ## The Hugging Face bridge
#
# Our weights map one to one onto `transformers.GPT2LMHeadModel` (its
# linear layers are `Conv1D`s that store the weight transposed, which
# `gpt.to_huggingface` undoes). The same weights give the same logits:

# %%
from course_utils.gpt import to_huggingface

theirs = to_huggingface(model)
with torch.no_grad():
    difference = (theirs(ids).logits - model(ids)).abs().max().item()
print(type(theirs).__name__, f"{sum(p.numel() for p in theirs.parameters()):,} weights")
print("largest logit difference < 1e-5:", difference < 1e-5)

# %% [markdown]
# Saved with `save_pretrained`, with the character tokenizer wrapped as a
# Hugging Face tokenizer beside it, the folder is a model like any on the
# hub, and `pipeline("text-generation")` serves it. With sampling off it
# writes what our greedy decoding writes. (Hugging Face's GPT-2 has no
# sliding window: prompt and new tokens must fit the 64 positions.)

# %%
import tempfile
from pathlib import Path

from transformers import PreTrainedTokenizerFast, pipeline

folder = tempfile.mkdtemp(prefix="shakespeare-gpt-")
theirs.save_pretrained(folder)
PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)
print(sorted(path.name for path in Path(folder).iterdir()))
write = pipeline("text-generation", model=folder, device=device)
served = write("ROMEO:\n", max_new_tokens=56, do_sample=False, pad_token_id=0)[0]["generated_text"]
ours = tokenizer.decode(generate(model, encode_chars(tokenizer, "ROMEO:\n")[None], 56, temperature=0)[0].tolist())
print("the pipeline writes what our greedy decoding writes:", served == ours)

# %%
# NBVAL_IGNORE_OUTPUT
# The text depends on the trained weights' last digits.
print(served)

# %% [markdown]
# ## Try it: temperature, top-k and top-p
#
# Drag the sliders to rewrite the continuation (the seed is fixed, so the
# same settings always give the same text). Top-k 0 and top-p 1 switch
# those filters off; temperature 0 is greedy. In a headless run only the
# default settings' text is shown.

# %%
# NBVAL_IGNORE_OUTPUT
# The text depends on the trained weights' last digits.
from course_utils.widgets import sampling_explorer

sampling_explorer(model, tokenizer, "KING RICHARD:\n", new_tokens=200, temperature=0.8, top_p=0.9)

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("10")

# %%
# BEGIN SOLUTION
answer("10.causal", "C")
answer("10.nucleus", "B")
answer("10.cache-trade", "A")
answer("10.tied-head", "D")
answer("10.stale-cache", "B")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A GPT is lesson 06's pre-LN blocks under a **causal mask**, between
#   token + position embeddings and a head **tied** to the token table. It
#   learns from raw text: every position predicts the next token.
# - Trained for 1,000 steps on the CPU, it went from noise (loss ln 64)
#   to Shakespeare-like lines; fused kernels (layer norm, attention with
#   `is_causal`, AdamW) are what make that fit in a minute.
# - **Decoding** is a choice: greedy repeats itself, temperature trades
#   correctness for variety, top-k and top-p cut the unlikely tail, and
#   top-p adapts to how sure the model is; beam search finds likely,
#   short, safe lines.
# - The **KV cache** computes each token's keys and values once: the same
#   logits, several times faster, at a memory cost that grows linearly
#   with the text; absolute positions stop it at the context length.
# - Our GPT **is** a `GPT2LMHeadModel`: the weights convert both ways,
#   `save_pretrained` writes a folder, and `pipeline("text-generation")`
#   serves it.
#
# Lesson 11 turns to Hugging Face in practice and measures what
# attention costs as texts grow.
