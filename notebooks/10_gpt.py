# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
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
# - train it on the CPU in about a minute, watching what it writes
#   improve, and score it in units that compare across tokenizers (bits
#   per character, perplexity) and against the 6·N·D compute rule;
# - generate with every usual rule: greedy, temperature, top-k, top-p
#   (you write top-p) and beam search, and measure what each does to the
#   text;
# - add a **KV cache**, check it changes nothing but the speed, and
#   **write the model's forward pass yourself**, cache and all: positions
#   that continue, the causal mask in the right corner;
# - move the weights into Hugging Face's `GPT2LMHeadModel` and back, save
#   the model with `save_pretrained`, and serve it with
#   `pipeline("text-generation")`.

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
# (8,000 pieces), a window of 64 tokens covers several times as much
# text, as many times as there are characters per token:

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
characters_per_token = len(sample_text) / len(bpe.encode(sample_text).ids)
print(f"characters per BPE token over 200,000 characters: {characters_per_token:.2f}")

# %% [markdown]
# 3.37 characters per token, so a BPE window sees 3.37 times as much
# text. Why characters here, then? The model's first and last layers are
# the token table: with 8,000 BPE pieces and width 128 that is 1.0M
# weights, more than the whole character-level GPT below, and each piece
# is seen far less often in a minute of training than each of 64
# characters. We keep the small table. Large GPTs use BPE (GPT-2's has
# 50,257 pieces): they have the data and the time to learn all those
# rows, and a longer reach for the same context. Which tokenizer makes
# the better model is a question of measurement, and it needs a unit in
# which both can be scored: bits per character, defined after training
# below (this lesson trains the character model only).
#
# ## The model: lesson 06's blocks under a causal mask
#
# `course_utils.gpt.GPT` is, from bottom to top:
#
# - token embedding + **learned** position embedding (one row per position,
#   up to `context`);
# - `layers` pre-LN blocks, lesson 06's `EncoderLayer` with
#   `norm="pre"`, each attention told `is_causal=True`;
# - a final LayerNorm (a pre-LN stack leaves its output un-normalised);
# - the **head**: logits = x · Eᵀ, where E is the token embedding table.
#
# This is GPT-2's layout (Radford et al., 2019). GPT-1 (Radford et al.,
# 2018) normalised after each sublayer, as the 2017 transformer did;
# GPT-2 moved the norm before each sublayer, added the final LayerNorm,
# and started the last layer of each residual branch (attention's output
# projection, the feed-forward network's second layer) smaller, by
# 1/√(2·layers): each block adds two branches to the residual stream, and
# their sum should not grow with depth. All other weights start at
# normal(0, 0.02). The default `GPTConfig` is the CPU recipe of nanoGPT,
# the best-known small GPT trainer: 4 layers, 4 heads, width 128, context
# 64. You will write its forward pass yourself, after the KV cache.

# %%
from course_utils.gpt import GPT, GPTConfig

config = GPTConfig(vocab_size=tokenizer.get_vocab_size())
torch.manual_seed(0)
model = GPT(config)
print(config)
print(f"{sum(p.numel() for p in model.parameters()):,} weights")
print(f"the token table, {tuple(model.token_embedding.weight.shape)}, is also the output layer: "
      f"{model.token_embedding.weight.numel():,} weights counted once")
branch_ends = model.blocks[0].self_attn.out_proj.weight, model.blocks[0].feed_forward.linear2.weight
print(f"initial std: attention's input projection {model.blocks[0].self_attn.in_proj.weight.std():.4f}, "
      f"the branches' last layers {branch_ends[0].std():.4f} and {branch_ends[1].std():.4f} "
      f"(0.02 / √{2 * config.layers} = {0.02 / (2 * config.layers) ** 0.5:.4f})")

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
# AdamW (β₂ = 0.99), gradients clipped at 1, a learning rate that climbs
# for 100 steps and then falls along a cosine. Weight decay (0.1) pulls
# every tensor of two or more dimensions toward zero, the tied token
# table included, as nanoGPT does; the biases and the norms' gains are
# left alone, since pulling a gain toward 0 would shrink the signal
# rather than regularise a mapping. Its full run, 2,000 steps, takes
# 1.5-2 minutes here. The lesson runs `gpt.SHORT_RECIPE`: 1,200 steps, the
# peak rate five times higher (5e-3) after 50 warm-up steps, and a decay
# to 1e-5. Small models train well at high rates; over three seeds, it
# ended at validation losses of 1.85-1.88 on this CPU, where nanoGPT's
# own 2,000 steps, run on the same text by `benchmarks/nanogpt_race.py`,
# estimated 1.893. (The schedule was chosen on this validation split,
# so these losses flatter it a little; a test split would say by how
# much.) `train_gpt` is the course's training loop plus
# an evaluation every 250 steps and at the end, on the same 240 windows
# of each split each time, and a sample of what the model writes at that
# point.

# %%
# NBVAL_IGNORE_OUTPUT
# Training: the losses and samples differ in their last digits from one machine to another.
from course_utils.gpt import SHORT_RECIPE, generate, train_gpt
from course_utils.tokenization import encode_chars

recipe = SHORT_RECIPE
prompt = "Hamlet:\n"


def sample(model):
    ids = generate(model, encode_chars(tokenizer, prompt)[None], 80, temperature=0.8,
                   generator=torch.Generator().manual_seed(0))
    return tokenizer.decode(ids[0].tolist())


torch.manual_seed(0)
model = GPT(config)
run = train_gpt(model, train_ids, validation_ids, recipe, sample=sample)
final_step, final_train, final_validation = run.evaluations[-1]
assert 1.80 < final_validation < 1.96, f"validation loss {final_validation:.3f} outside the expected band"

# %% [markdown]
# At step 0 the model writes noise; by step 250 it has the look of a play
# (a capitalised word, a colon, line breaks, short words); by the end it
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
# ### Units that compare: bits per character and perplexity
#
# The loss is a cross-entropy in nats (natural logarithms) **per token**.
# Divided by ln 2 it is in bits: the average number of bits an ideal
# coder driven by the model would spend on each character of the
# validation text. e^loss is the **perplexity**: the model is as unsure
# as if it chose uniformly among that many characters. Both depend on
# what a token is, so to compare a character model with a BPE model,
# convert to bits per **character**: a BPE model's bits per token divided
# by its characters per token (3.37 here). A uniform guess already shows
# why: over 64 characters it costs log₂ 64 = 6 bits per character, over
# 8,000 BPE pieces log₂ 8000 / 3.37 = 3.85, although each single guess is
# far harder. The last line measures what a general-purpose compressor
# does with the same text: `lzma`, given the training text first, spends
# this many bits on each byte of the validation text (one byte per
# character, but for a few dozen em-dashes).

# %%
# NBVAL_IGNORE_OUTPUT
# The loss differs in its last digits from one machine to another (and lzma's size between library versions).
import lzma

corpus = shakespeare_splits()[0][:RECIPE_CHARACTERS].encode()
split = int(0.9 * len(corpus))
compressed_size = lambda data: len(lzma.compress(data, preset=9))
lzma_bits = (compressed_size(corpus) - compressed_size(corpus[:split])) * 8 / (len(corpus) - split)
bits = final_validation / math.log(2)
print(f"the GPT after {final_step} steps: {final_validation:.3f} nats = {bits:.2f} bits per character, "
      f"perplexity {math.exp(final_validation):.1f}")
print(f"a uniform guess over {config.vocab_size} characters: {math.log2(config.vocab_size):.2f} bits per character, "
      f"perplexity {config.vocab_size}")
print(f"a uniform guess over {bpe.get_vocab_size():,} BPE pieces: {math.log2(bpe.get_vocab_size()):.2f} bits per token "
      f"= {math.log2(bpe.get_vocab_size()) / characters_per_token:.2f} bits per character")
print(f"lzma, after the training text: {lzma_bits:.2f} bits per byte of the validation text")
assert 2.55 < bits < 2.85 and 2.3 < lzma_bits < 2.9 and bits > lzma_bits

# %% [markdown]
# After a minute, the GPT spends about 2.7 bits per character: less than
# half of the uniform guess, and still more than `lzma`, which finds
# every long repeat in a megabyte of plays (about 2.6). Language models
# are compressors, and a better one wins this race: nanoGPT's GPU recipe
# (6 layers, width 384, context 256) reaches a validation loss of 1.47 on
# tiny-shakespeare, 2.1 bits per character (its README; another slice of
# Shakespeare than ours, so the comparison is rough).
#
# ### What a step costs: the 6·N·D rule
#
# Training a transformer costs about **6 FLOPs per weight per token**
# (Kaplan et al., 2020): each weight does one multiply-add (2 FLOPs) per
# token in the forward pass and two in the backward pass (the gradient of
# the input and of the weight). N counts the weights that multiply (the
# position table is only added); D is the tokens of a step, 12 windows of
# 64. PyTorch's `FlopCounterMode` counts every multiply it runs:

# %%
from course_utils.gpt import flops_per_step

tokens_per_step = recipe.batch_size * config.context
multiplying_weights = sum(p.numel() for p in model.parameters()) - model.position_embedding.weight.numel()
counted = flops_per_step(config, recipe.batch_size)
rule = 6 * multiplying_weights * tokens_per_step
attention_term = 6 * config.layers * config.context * config.width * tokens_per_step
print(f"counted by PyTorch:      {counted / 1e9:.2f} GFLOP per step")
print(f"6·N·D = 6 × {multiplying_weights:,} × {tokens_per_step}: {rule / 1e9:.2f} GFLOP per step")
print(f"attention's own products (6·layers·context·width per token): {attention_term / 1e9:.2f} GFLOP more")

# %% [markdown]
# The rule is within 1% of the count: the difference is the norms' and
# biases' few thousand weights, which are in N but do element-wise work
# (one multiply or add per token), which the counter skips.
# Attention's own products (queries with keys, weights with values) are
# not in 6·N; Kaplan et al. add them as a term that grows with the
# context, 4% here. PyTorch's counter does not see them either on the
# CPU: it counts the fused attention kernel as 0 FLOPs, so the figures
# below, taken from it, are the weights' multiplies only.

# %% [markdown]
# **How fast, and why.** `benchmarks/gpt_train.py` runs the full recipe
# and times what each choice is worth. On the 2-core CPU (AVX2), with
# `--ablation`, a plain loop of the same model took 52.5 ms a step. The
# fused layer norm brought that to 45.6 ms (lesson 06's formula written out
# launches an operation per step, each a pass over the data, and as many
# backward). Then `is_causal=True`
# changed nothing measurable at 64 positions, the fused AdamW gave
# 44.5 ms, and GELU's exact form (nanoGPT's choice, which PyTorch computes
# faster here than GPT-2's tanh approximation) gave 40.0 ms: about a
# quarter off the plain loop. What remains is mostly matrix multiplies:
# 3.66 GFLOP in 40 ms is 92 GFLOP/s, about half of what this CPU's float32
# multiply reaches on large matrices (the README's table: 40 ms a step,
# 51%). Lesson 11 measures what bf16 does, which depends on the CPU.
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
# - **top-p** (nucleus; Holtzman et al., 2020): sample among the smallest
#   set of most likely characters whose probabilities add up to at least p.
#
# Below, the top-k and top-p rows sample at temperature 1, so that each
# differs from the T = 1.0 row by its filter alone.

# %%
# NBVAL_IGNORE_OUTPUT
# Samples of a trained model: its last digits, and so its text, differ from one machine to another.
from course_utils import data

known_words = data.word_counts(shakespeare_splits()[0][:RECIPE_CHARACTERS])
rules = {"greedy": dict(temperature=0), "T = 0.5": dict(temperature=0.5), "T = 1.0": dict(temperature=1.0),
         "T = 1.5": dict(temperature=1.5), "top-k 10": dict(top_k=10), "top-p 0.9": dict(top_p=0.9)}
prompts = encode_chars(tokenizer, "Cleopatra:\nWhat")[None].repeat(8, 1)
measures = {}
for name, settings in rules.items():
    written = generate(model, prompts, 200, generator=torch.Generator().manual_seed(0), **settings)
    texts = [tokenizer.decode(row[prompts.size(1):].tolist()) for row in written]
    words = [word for text in texts for word in data.words(text)]
    four_grams = [text[i:i + 4] for text in texts for i in range(len(text) - 3)]
    measures[name] = (sum(word in known_words for word in words) / len(words), len(set(four_grams)) / len(four_grams))
    print(f"--- {name}: {measures[name][0]:.0%} of the words exist, {measures[name][1]:.0%} of 4-grams distinct\n"
          f"Cleopatra:\nWhat{texts[0][:120]}\n")
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

# %% [markdown]
# ### Exercise: nucleus (top-p) filtering
#
# Write `top_p_filter(logits, p)`: for each row of `logits` (shape
# (rows, vocabulary)), keep the smallest set of most likely tokens whose
# probabilities add up to **at least** p, and set every other logit to
# `-inf` (a softmax then gives them probability 0 and renormalises the
# rest). The token whose probability carries the sum past p is kept.
# Return a new tensor of the logits' dtype; leave `logits` as it was. The
# logits are any real numbers, not log-probabilities, and every row has
# its own distribution. At p = 1 every token must stay, on GPT-2's 50,257
# too: in exact arithmetic the running sum reaches 1 only at the last
# token, but a float32 softmax's rounded probabilities can add up to a
# little more than 1, and then the last tokens already have a "mass
# before" of 1 (summing them in float64 does not undo the rounding).
#
# Hint: `sort(descending=True)` returns the sorted values and the indices
# they came from; `cumsum` gives running sums; `scatter` puts values back
# at given indices.

# %%
def top_p_filter(logits, p):
    # BEGIN SOLUTION
    if p >= 1:
        return logits.clone()
    probabilities, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
    mass_before = probabilities.cumsum(dim=-1) - probabilities
    drop = torch.zeros_like(mass_before, dtype=torch.bool).scatter(-1, order, mass_before >= p)
    return logits.masked_fill(drop, float("-inf"))
    # END SOLUTION


# %%
from course_utils.classroom.checks.gpt import check_top_p_filter

check_top_p_filter(top_p_filter)

# %% [markdown]
# **Why top-p adapts where top-k does not.** After "Cleopatra:\nWha" the
# model is sure of the next character ("t"); after a space it is not. A
# fixed k keeps k characters in both cases, so it either lets nonsense in
# where the model is sure, or cuts off good choices where it is not. A
# fixed p keeps as few characters as carry p of the mass, so the set is
# small where the model is sure and large where it is not. Measured on the
# validation text, at p = 0.9, with your `top_p_filter` once it passes its
# checks:

# %%
# NBVAL_IGNORE_OUTPUT
# The counts depend on the trained weights' last digits; the assert holds on every machine.
from course_utils import generation
from course_utils.classroom.checks import yours_if_passed

nucleus = yours_if_passed(top_p_filter, "10.top_p_filter", generation.top_p_filter)
with torch.no_grad():
    logits = model(validation_ids[:64][None])[0]
kept = torch.isfinite(nucleus(logits, 0.9)).sum(dim=-1)
confident = logits.softmax(-1).max(-1).values > 0.9
print(f"positions where the model gives > 90% to one character: {confident.sum().item()} of 64")
print(f"characters kept at p = 0.9 there: {kept[confident].float().mean():.1f} on average; "
      f"elsewhere: {kept[~confident].float().mean():.1f}")
assert kept[confident].float().mean() < kept[~confident].float().mean()

# %% [markdown]
# ### Beam search
#
# Sampling picks one character at a time. **Beam search** (lesson 07)
# keeps the `beam_size` most likely partial texts at each step.
# `gpt.next_token_log_probs(model)` turns our GPT into the callable that
# lesson 07's `beam_search` takes; a newline ends a line. Each rule below
# continues two openings; each line printed gives the log-probability the
# model assigns to the continuation, its length, the log-probability per
# character, and whether the line ended (with a newline) within 60
# characters. The last rule ranks the beams by log-probability divided by
# length^α, a **length penalty**, with α = 1 (the simple form that Hugging
# Face's `generate` uses; Wu et al., 2016, divide by ((5 + length) / 6)^α).

# %%
# NBVAL_IGNORE_OUTPUT
# The lines depend on the trained weights' last digits.
from course_utils.generation import beam_search, greedy, sequence_log_prob
from course_utils.gpt import next_token_log_probs

score = next_token_log_probs(model)
newline = tokenizer.token_to_id("\n")
for start in ["Rosalind:\nO", "Hamlet:\nThe"]:
    start_ids = encode_chars(tokenizer, start)
    with torch.no_grad():
        greedy_ids = greedy(score, start_ids[None], newline, max_new_tokens=60)
        found = {"greedy": (greedy_ids[0], sequence_log_prob(score, greedy_ids, len(start_ids), newline).item()),
                 "beam 5": beam_search(score, start_ids, newline, max_new_tokens=60, beam_size=5),
                 "beam 5, α = 1": beam_search(score, start_ids, newline, max_new_tokens=60, beam_size=5,
                                              length_penalty=1.0)}
    for rule, (ids, log_prob) in found.items():
        line = tokenizer.decode(ids[len(start_ids):].tolist())
        ended = "ended" if line.endswith("\n") else "open"
        print(f"{rule:<14}{log_prob:7.2f} over {len(line):2} characters ({log_prob / len(line):5.2f} each, {ended}): "
              f"{start + line!r}")
    print()

# %% [markdown]
# Beam search usually finds a line the model rates more likely than
# greedy's, but not always: greedy's line can drop out of the beam when
# its first characters are not among the `beam_size` best. What the
# search finds is short. Every character costs log-probability, so the
# likeliest line is one that ends soon, and a line that is still open
# after 60 characters, as greedy's often is, has paid for all 60: raw
# log-probabilities of lines of different lengths do not compare. The
# length penalty ranks by log-probability per character instead, and
# lets longer lines win (Hugging Face's beam search does so by default:
# its `length_penalty` is 1.0). Either way, the lines read no better: the
# likeliest text of a language model is its most common words, over and
# over. Holtzman et al. (2020) measured this "degeneration" in GPT-2's
# beam-search text, and proposed nucleus sampling in its place. Beam
# search suits translation (lesson 07), where the likely answer is the
# right one; writing uses sampling. (Against greedy loops, `generate` also
# offers blunter remedies: `repetition_penalty` lowers the logits of
# tokens already written, `no_repeat_ngram_size` forbids repeating any
# n-gram.)
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
# Only keys and values are kept: a query is used once, by its own
# position, so the newest token's query is all a step needs. A served
# model works in two phases: **prefill** runs the prompt through in one
# pass, filling the cache (one large, efficient multiply per layer), and
# **decode** then adds one token per step, each step small and limited by
# reading the weights and the cache from memory.
#
# What it trades: memory for time. Every layer keeps a key and a value
# of `width` numbers per position, for every text of the batch:

# %%
cache = model.new_cache()
cache_kib = []
with torch.no_grad():
    for t in range(64):
        model(ids[:, t:t + 1], cache)
        cache_kib.append(sum(layer.nbytes for layer in cache) / 2 ** 10)
per_position = sum(layer.nbytes for layer in cache) // len(cache[0])
weights_kib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2 ** 10
print(f"{per_position:,} bytes per position = {config.layers} layers x (key + value) x {config.width} numbers x 4 bytes")
print(f"at 64 positions: {cache_kib[-1]:.0f} KiB per text, {cache_kib[-1] / weights_kib:.0%} of the model's "
      f"{weights_kib:,.0f} KiB of weights")
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(range(1, 65), cache_kib)
ax.axhline(weights_kib / 10, color="gray", linestyle=":", label="a tenth of the weights")
ax.set_xlabel("positions in the cache")
ax.set_ylabel("KiB per text")
ax.set_title(f"the KV cache grows by {per_position // 2 ** 10} KiB a position")
ax.legend()
plt.show()

# %% [markdown]
# The plot counts what the cache holds. `KVCache` reserves room for the
# whole context at its first step (256 KiB here) and fills it in place,
# which saves copying; servers that hold many texts of unknown lengths
# allocate the cache in small blocks as it grows instead (paged
# attention; Kwon et al., 2023).
#
# A key and a value of `width` numbers per layer and position is the
# cost of **multi-head** attention, where every head has its own keys and
# values. Models made for long texts share them: in **grouped-query
# attention** (Ainslie et al., 2023) each group of query heads reads one
# key/value head. Llama 3 8B has 32 layers, 32 query heads and 8
# key/value heads, each 128 wide (its published config). In 16-bit
# numbers:

# %%
def kv_bytes_per_position(layers, key_value_heads, head_width, bytes_per_number=2):
    return layers * 2 * key_value_heads * head_width * bytes_per_number  # 2: a key and a value


gpt2_xl = kv_bytes_per_position(48, 25, 64)  # 25 heads of 64 = width 1,600, one key/value head each
llama3_8b = kv_bytes_per_position(32, 8, 128)
llama3_8b_without_groups = kv_bytes_per_position(32, 32, 128)
print(f"GPT-2 XL:   {gpt2_xl / 2 ** 10:.0f} KiB per position; at 1,024 positions {1024 * gpt2_xl / 2 ** 20:.0f} MiB "
      f"per text, {1024 * gpt2_xl / (1.558e9 * 2):.0%} of its 1.56B weights")
print(f"Llama 3 8B: {llama3_8b / 2 ** 10:.0f} KiB per position ({llama3_8b_without_groups / 2 ** 10:.0f} KiB with a "
      f"key/value head per query head); at 8,192 positions {8192 * llama3_8b / 2 ** 30:.0f} GiB per text "
      f"(else {8192 * llama3_8b_without_groups / 2 ** 30:.0f} GiB)")

# %% [markdown]
# A server that holds many texts at once is limited by this memory more
# than by the weights, which all texts share: grouped-query attention
# cuts it by the number of query heads per key/value head, 4 here.
#
# With learned **absolute** positions, the cache has a limit: once the
# text is longer than the context (64 here), the model must see a window
# of the last 64 tokens, and at each step every token in the window moves
# to a new position, so every cached key is stale. `gpt.generate` then
# runs the whole window at each step, as without a cache. Relative
# positions (rotary, lesson 05) do not make a slid cache right either:
# in layers 2 and up, a cached key was computed from a hidden state that
# saw tokens since dropped from the window, so it differs from the key
# that re-running the window would give. Sliding is exact only for
# models trained with sliding-window attention (Mistral 7B; Jiang et al.,
# 2023), and a full-attention model whose cache simply slides writes
# nonsense unless it keeps its first tokens' keys, the "attention sinks"
# of StreamingLLM (Xiao et al., 2024).
#
# `gpt.generate` is the plain loop of a teaching model: every prompt of a
# batch must have the same length (no padding and no attention mask;
# Hugging Face pads on the left for this), and it stops after
# `max_new_tokens`, with no end-of-text token to stop at.
#
# How much time the cache saves, measured on a GPT whose context holds a
# 64-token prompt and 256 new tokens (`benchmarks/generation.py`, 2-core
# CPU, greedy; the README's table): 204 tokens a second without the
# cache, 694 with it (3.4x), and Hugging Face's `generate` on the same
# weights 435. The lesson's own model is small and its context short, so
# here the gain is smaller:

# %%
# NBVAL_IGNORE_OUTPUT
# Timings.
import time

for use_cache in (False, True):
    begin = time.perf_counter()
    generate(model, ids[:, :8], 56, temperature=0, use_cache=use_cache)
    print(f"56 characters {'with' if use_cache else 'without'} the cache: {time.perf_counter() - begin:.3f} s")

# %% [markdown]
# ### Exercise: the forward pass, cache and all
#
# Write `gpt_forward(model, ids, past=None)`, the GPT's whole forward
# pass, with its attention written out and its cache passed in and out as
# tensors, in the legacy form of Hugging Face's `past_key_values` (today
# `transformers` wraps the same tensors in a `Cache` object, one layer
# each):
#
# - `past` is None or a list with one pair `(keys, values)` per layer,
#   each of shape (batch, heads, positions so far, head width);
# - `ids` (batch, L) are the tokens **after** those positions;
# - return `(logits, present)`: the logits (batch, L, vocabulary), and
#   `present`, the same list with the new positions' keys and values
#   appended to each layer's past.
#
# Use the model's own pieces: `model.token_embedding`,
# `model.position_embedding`, and in each of `model.blocks`, `norm1`,
# `self_attn.in_proj` (queries, keys and values stacked, in that order),
# `self_attn.split_heads` and `merge_heads`, `self_attn.out_proj`, `norm2`
# and `feed_forward`; then `model.final_norm` and the tied head. Write the
# attention yourself (do not call a block, the attention module or the
# model): that is where the two things a cache changes live. Work them out
# before you write: at which positions do the new tokens sit, and which of
# the past + L keys may each of the L new queries see? Leave `ids` and
# `past` as they were.

# %%
import torch.nn.functional as F


def gpt_forward(model, ids, past=None):
    # BEGIN SOLUTION
    start = 0 if past is None else past[0][0].size(2)
    x = model.token_embedding(ids) + model.position_embedding(torch.arange(start, start + ids.size(1)))
    present = []
    for layer, block in enumerate(model.blocks):
        attention = block.self_attn
        q, k, v = (attention.split_heads(t) for t in attention.in_proj(block.norm1(x)).chunk(3, dim=-1))
        if past is not None:
            k, v = torch.cat([past[layer][0], k], dim=2), torch.cat([past[layer][1], v], dim=2)
        present.append((k, v))
        scores = q @ k.transpose(-2, -1) / attention.head_dim ** 0.5
        allowed = torch.ones(q.size(2), k.size(2), dtype=torch.bool).tril(diagonal=k.size(2) - q.size(2))
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        x = x + attention.out_proj(attention.merge_heads(weights @ v))
        x = x + block.feed_forward(block.norm2(x))
    return F.linear(model.final_norm(x), model.token_embedding.weight), present
    # END SOLUTION


# %%
from course_utils.classroom.checks.gpt import check_gpt_forward

check_gpt_forward(gpt_forward)

# %% [markdown]
# Now the lesson runs your forward pass twice. First along the
# validation text: the 16-character prompt once, then one character per
# call, each call handing back the `present` it got as the next call's
# `past`; the logits must be those of one pass of the model over all 64.
# Then it writes: 48 greedy characters, which must be `generate`'s. If the
# exercise is not done yet, `gpt.forward_with_past` (the course's, built
# on the model's own cache) stands in.

# %%
from course_utils.classroom.checks import yours_if_passed
from course_utils.gpt import forward_with_past

forward = yours_if_passed(gpt_forward, "10.gpt_forward", forward_with_past)
with torch.no_grad():
    logits, past = forward(model, ids[:, :16])
    pieces = [logits]
    for t in range(16, 64):
        logits, past = forward(model, ids[:, t:t + 1], past)
        pieces.append(logits)
    print("one character per call gives the logits of one pass, within 1e-5:",
          (torch.cat(pieces, dim=1) - model(ids)).abs().max().item() < 1e-5)
    logits, past = forward(model, ids[:, :16])
    written = ids[:, :16]
    for _ in range(48):
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
        written = torch.cat([written, next_id], dim=1)
        logits, past = forward(model, next_id, past)
print("48 greedy characters, the same as generate's:", torch.equal(written, generate(model, ids[:, :16], 48, temperature=0)))
print(f"the past after them: {len(past)} pairs, keys of shape {tuple(past[0][0].shape)}")

# %% [markdown]
# ## The Hugging Face bridge
#
# Our weights map one to one onto `transformers.GPT2LMHeadModel` (its
# linear layers are `Conv1D`s that store the weight transposed, which
# `gpt.to_huggingface` undoes). The same weights give the same logits.
# `gpt.from_huggingface` goes the other way, and refuses a config whose
# arithmetic ours does not follow (another layer-norm epsilon, an untied
# head, attention scaled by the layer's index) rather than ignore it:

# %%
from course_utils.gpt import from_huggingface, to_huggingface

theirs = to_huggingface(model)
back = from_huggingface(theirs)
with torch.no_grad():
    difference = (theirs(ids).logits - model(ids)).abs().max().item()
    round_trip = (back(ids) - model(ids)).abs().max().item()
print(type(theirs).__name__, f"{sum(p.numel() for p in theirs.parameters()):,} weights")
print("largest logit difference < 1e-5:", difference < 1e-5)
print("ours -> Hugging Face -> ours gives the same logits:", round_trip == 0.0)
theirs.config.scale_attn_by_inverse_layer_idx = True
try:
    from_huggingface(theirs)
except ValueError as refused:
    print("refused:", refused)
theirs.config.scale_attn_by_inverse_layer_idx = False

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
write = pipeline("text-generation", model=folder, device="cpu")  # where our model runs: their greedy choices must match
served = write("Hamlet:\n", max_new_tokens=56, do_sample=False, pad_token_id=0)[0]["generated_text"]
ours = tokenizer.decode(generate(model, encode_chars(tokenizer, "Hamlet:\n")[None], 56, temperature=0)[0].tolist())
print("the pipeline writes what our greedy decoding writes:", served == ours)

# %% [markdown]
# What the pipeline wrote, greedily:

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

sampling_explorer(model, tokenizer, "Coriolanus:\n", new_tokens=200, temperature=0.8, top_p=0.9)

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("10")

# %%
# BEGIN SOLUTION
answer("10.causal", "D")
answer("10.nucleus-keeps", "C")
answer("10.nucleus", "A")
answer("10.cache-positions", "D")
answer("10.kv-bytes", "B")
answer("10.tied-head", "C")
answer("10.stale-cache", "A")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A GPT is lesson 06's pre-LN blocks under a **causal mask**, between
#   token + position embeddings and a head **tied** to the token table. It
#   learns from raw text: every position predicts the next token.
# - Trained for 1,200 steps on the CPU, it went from noise (the uniform
#   guess, 6 bits per character) to Shakespeare-like lines at about 2.7
#   bits per character; bits per character compare across tokenizers, and
#   a step costs what the 6·N·D rule says. Fused kernels (layer norm,
#   AdamW) and the exact GELU cut a step by about a quarter.
# - **Decoding** is a choice: greedy repeats itself, temperature trades
#   correctness for variety, top-k and top-p cut the unlikely tail, and
#   top-p adapts to how sure the model is; beam search finds likely,
#   short, safe lines, and a length penalty lets longer ones compete.
# - The **KV cache** computes each token's keys and values once: the same
#   logits, faster (3.4x for 256 tokens in the README's benchmark, less
#   on the lesson's small model), at a memory cost that grows linearly
#   with the text (grouped-query attention divides it). With a cache, the
#   positions continue and the causal mask sits in the bottom-right
#   corner: you wrote that forward pass. Absolute positions stop the
#   cache at the context length.
# - Our GPT **is** a `GPT2LMHeadModel`: the weights convert both ways,
#   `save_pretrained` writes a folder, and `pipeline("text-generation")`
#   serves it.
#
# Lesson 11 turns to Hugging Face in practice and measures what
# attention costs as texts grow.
