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
# # 07 · The encoder-decoder, trained
#
# Lesson 06 built the encoder-decoder of *Attention Is All You Need* and
# checked it against PyTorch's. This lesson trains it. The task is small
# enough to learn in half a minute on a laptop CPU and exact enough to score
# without doubt: **reverse the words of a line of Shakespeare**. On the way
# you meet the ingredients of the paper's training recipe, and at the end
# we put the transformer's best-known claim to the test: that it overcomes
# the limits of the recurrent networks that came before it.
#
# **In this lesson you will**
#
# - build the task from real text, with a test set from plays the model
#   never sees;
# - see how **teacher forcing** trains every output position at once;
# - write the paper's **learning-rate schedule** (exercise) and plot it;
# - measure what **label smoothing** does to the targets and to the model's
#   confidence;
# - train the transformer to at least 99% exact match on held-out lines;
# - decode with **greedy search** and **beam search**, and compare them by
#   the probability the model gives their outputs;
# - draw the **cross-attention** as an alignment between source and target;
# - train the same model built from `nn.Transformer` and get the same loss;
# - race LSTM encoder-decoders, with and without attention, against the
#   transformer with the same number of parameters and the same training
#   steps, and compare what each step costs.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## The task: reverse a line
#
# The source is a line of verse, the target the same words in reverse order:
#
#     four nights will quickly dream away the time
#     time the away dream quickly will nights four
#
# Why this task? Its answer is exact, so "99% right" means 99% of lines
# reversed without a single wrong word. Its alignment is known: target word i
# is source word n - 1 - i, so when we draw what the decoder attends to we
# know what we should see. And it stretches every dependency to its limit:
# the last word out is the first word in, which a model reading left to
# right saw longest ago (Sutskever et al., 2014, reversed their *source*
# sentences for the opposite reason: to bring first words close together).
#
# Words are cut by `data.words` (lower case, apostrophes inside words kept),
# lines with 3 to 12 words are kept, and the vocabulary is the 1,000 most
# frequent words of the training plays plus four special tokens: `<pad>`,
# `<bos>` (begin), `<eos>` (end) and `<unk>` for every other word. The test
# lines come from the four held-out plays (`data.VALIDATION_PLAYS`), so a
# model can only score there by having learned to reverse, not by
# remembering lines.

# %%
import random

from course_utils import seq2seq
from course_utils.data import VALIDATION_PLAYS, shakespeare_splits

VOCAB_SIZE = 1000
train_text, held_out_text = shakespeare_splits()
train_lines = seq2seq.verse_lines(train_text)
vocab = seq2seq.Vocabulary(train_lines, VOCAB_SIZE)
train_pairs = seq2seq.reversal_pairs(train_lines, vocab)
held_out_pairs = seq2seq.reversal_pairs(seq2seq.verse_lines(held_out_text), vocab)
test_pairs = random.Random(0).sample(held_out_pairs, 2000)

print(f"training lines: {len(train_pairs):,}   held-out lines ({', '.join(VALIDATION_PLAYS)}): {len(held_out_pairs):,}")
print(f"vocabulary: {len(vocab):,} tokens; test set: {len(test_pairs):,} held-out lines")
words_seen = sum(len(source) for source, _ in train_pairs)
unknown = sum(source.count(seq2seq.UNK) for source, _ in train_pairs)
print(f"share of training words that are <unk>: {unknown / words_seen:.1%}")
for source, target in train_pairs[:3]:
    print(" ".join(vocab.decode(source)), "  ->  ", " ".join(vocab.decode(target)))

# %% [markdown]
# A fifth of the words are `<unk>`, and that is fine for this task: the model
# has to put the `<unk>` in the right place, like any other word. How long
# are the lines? The length matters later, when we ask which models cope
# with long ones.

# %%
import collections

import matplotlib.pyplot as plt

lengths = collections.Counter(len(source) for source, _ in train_pairs)
figure, ax = plt.subplots(figsize=(6, 2.5))
ax.bar(list(lengths), [lengths[n] / len(train_pairs) for n in lengths])
ax.set_xlabel("words in the line")
ax.set_ylabel("share of training lines")
plt.show()
print(f"lines of 11 or 12 words: {(lengths[11] + lengths[12]) / len(train_pairs):.1%} of the training set")

# %% [markdown]
# Most lines of blank verse have 7 to 10 words; the longest ones are rare,
# so there are few of them to learn from.
#
# ## Batches and teacher forcing
#
# `seq2seq.make_batch` pads a few pairs into two tensors. The source ends
# with `<eos>`, so that the encoder sees where the line ends. The target is
# `<bos>`, the reversed words, `<eos>`.
#
# Training uses **teacher forcing**: the decoder reads the *true* target,
# shifted right by one (`target[:, :-1]`), and at every position it is asked
# for the next true token (`target[:, 1:]`). The causal mask of lesson 03
# stops each position from seeing the token it must predict, so one forward
# pass trains every position of every line at once. At test time there is no
# true target to read: the decoder reads its own previous outputs, one token
# at a time.

# %%
source, target = seq2seq.make_batch(train_pairs[:2])
print("source\n", source)
print("target\n", target)
print()
decoder_input, labels = target[0, :-1], target[0, 1:]
for read, predict in zip(vocab.decode(decoder_input.tolist()), vocab.decode(labels.tolist())):
    if predict != "<pad>":  # <pad> labels are not scored
        print(f"decoder reads {read:<10} is trained to output {predict}")

# %% [markdown]
# The loss is the cross-entropy of those predictions; `<pad>` labels are left
# out (`ignore_index`). That is all of `seq2seq.loss_of`.
#
# ## The model
#
# `seq2seq.TransformerSeq2Seq` wraps lesson 06's `EncoderDecoder`: one
# embedding table shared by source, target and output layer (the output
# logits are h · Eᵀ, as in the paper), multiplied by √d_model, plus the
# sinusoidal positions of lesson 05. Two departures from the paper: pre-LN
# instead of post-LN (lesson 06: it is the forgiving one), and no dropout
# (the paper used 0.1). Width 64, 4 heads, a feed-forward width of 128, two
# encoder layers and one decoder layer, and no dropout: the run below shows
# the model 64,000 lines, fewer than the training set's 96,907, so there is
# little to overfit.
#
# One detail matters more than it looks. `nn.Embedding` starts its weights
# at N(0, 1); times √64 = 8, a word vector would be about eleven times the size
# of the position vector added to it, and the model would barely see word
# order. The √d_model scale assumes embeddings that start small (the paper
# does not say how it initialised them; its tensor2tensor code draws them
# from N(0, 1/d_model)), so we start them there: times √d_model, a word
# vector and a position vector are of similar size. Measured:

# %%
import torch

from course_utils.transformer import TransformerConfig, parameter_counts

CONFIG = TransformerConfig(d_model=64, num_heads=4, d_ff=128, num_encoder_layers=2, num_decoder_layers=1,
                           dropout=0.0, norm="pre")
model = seq2seq.TransformerSeq2Seq(len(vocab), CONFIG).to(device)

position_size = model.positions[:12].norm(dim=-1).mean().item()
word_size = (model.embedding.weight * CONFIG.d_model ** 0.5).norm(dim=-1).mean().item()
default_size = (torch.nn.Embedding(len(vocab), CONFIG.d_model).weight * CONFIG.d_model ** 0.5).norm(dim=-1).mean().item()
print(f"size of a position vector: {position_size:.1f}")
print(f"size of a scaled word vector: {word_size:.1f} (ours), {default_size:.1f} (nn.Embedding's default)")

counted = sum(p.numel() for p in model.parameters())
print(f"\nparameters: {counted:,}")
for part, count in parameter_counts(CONFIG, len(vocab)).items():
    print(f"  {part:<36} {count:>8,}")
assert counted == parameter_counts(CONFIG, len(vocab))["total"]

# %% [markdown]
# The count from the configuration (lesson 06's `parameter_counts`) agrees
# with PyTorch's. (`benchmarks/seq2seq_ablations.py` trains this lesson's
# recipe with nn.Embedding's default initialisation instead: see the end of
# the training section for what it reached.)
#
# ## The learning-rate schedule
#
# The paper trained with Adam (β₁ = 0.9, β₂ = 0.98, ε = 10⁻⁹) and a learning
# rate that changes every step (§5.3):
#
# lr(step) = d_model^-0.5 · min(step^-0.5, step · warmup_steps^-1.5)
#
# For the first `warmup_steps` steps the second term is the smaller one and
# the rate climbs linearly (the warm-up of lesson 06); after that the first
# term is smaller and the rate decays as 1/√step. The factor d_model^-0.5
# makes wider models take smaller steps.
#
# ### Exercise: the schedule
#
# Write `transformer_lr(step, d_model, warmup_steps)`, the formula above, for
# steps counted from 1. The checker compares it with the course's version at
# steps on both sides of the warm-up, for the paper's base model and for
# ours, and names the classic slips.

# %%
def transformer_lr(step, d_model, warmup_steps):
    # BEGIN SOLUTION
    return d_model ** -0.5 * min(step ** -0.5, step * warmup_steps ** -1.5)
    # END SOLUTION


# %%
from course_utils.classroom.checks.seq2seq import check_transformer_lr

check_transformer_lr(transformer_lr)

# %% [markdown]
# The paper's base model (d_model = 512, 4,000 warm-up steps) peaks at a
# learning rate of 0.0007. Our model trains for 1,000 steps, so we warm up
# for 200. The formula already gives our narrower model and shorter warm-up
# a higher peak, 0.0088 (d_model^-0.5 and warmup^-0.5 both grow); we halve
# it with a `factor`, as most implementations of this schedule have, a
# value we chose by trying a few. One change more: after its peak the
# paper's rate decays slowly, as 1/√step, and at the end of our run it is
# still at 45% of its peak (√(200/1000)). We multiply it by a **cool-down**
# that falls linearly to zero over the last 30% of the steps
# (`training.with_cooldown`), so the run ends on small, careful steps.
#
# The plots use the course's own `training.transformer_schedule`, the same
# formula as your exercise, so they draw even before you have solved it.

# %%
from course_utils.training import transformer_schedule, with_cooldown

STEPS, WARMUP, LR_FACTOR = 1000, 200, 0.5
paper = transformer_schedule(512, 4000)
ours_scaled = transformer_schedule(CONFIG.d_model, WARMUP, LR_FACTOR)
schedule = with_cooldown(ours_scaled, STEPS, fraction=0.3)

figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.2))
paper_steps = range(1, 100_001)
left.plot(paper_steps, [paper(step) for step in paper_steps])
left.set_title("the paper's base model: d_model 512, warm-up 4,000")
our_steps = range(1, STEPS + 1)
right.plot(our_steps, [ours_scaled(step) for step in our_steps], ls="--", label="0.5 × the formula")
right.plot(our_steps, [schedule(step) for step in our_steps], label="with the cool-down (used)")
right.set_title("this lesson: d_model 64, warm-up 200")
right.legend()
for ax in (left, right):
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
plt.show()
print(f"peaks: base model {paper(4000):.5f}, ours {schedule(WARMUP):.5f}")

# %% [markdown]
# ## Label smoothing
#
# The paper trains with label smoothing ε = 0.1 (§5.4). Instead of asking for
# probability 1 on the right word, the target puts 1 - ε on it and spreads
# ε evenly over the whole vocabulary (the right word included). Here is the
# target for one position with a vocabulary of five words, and the loss it
# gives, computed by hand and by PyTorch's `label_smoothing` argument:

# %%
import torch.nn.functional as F

EPSILON = 0.1
toy_logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 1.0]])
right_word = torch.tensor([0])
smoothed_target = torch.full((5,), EPSILON / 5)
smoothed_target[right_word] += 1 - EPSILON
print("one-hot target: ", F.one_hot(right_word, 5)[0].tolist())
print("smoothed target:", [round(p, 3) for p in smoothed_target.tolist()])

by_hand = -(smoothed_target * toy_logits.log_softmax(dim=-1)).sum()
by_pytorch = F.cross_entropy(toy_logits, right_word, label_smoothing=EPSILON)
print(f"loss by hand {by_hand.item():.4f}, by F.cross_entropy {by_pytorch.item():.4f}")
assert torch.allclose(by_hand, by_pytorch)

# %% [markdown]
# The loss is lowest when the model's prediction *equals* the smoothed
# target. With our vocabulary of 1,004 tokens, the best the model can do is
# to give the right word 1 - ε + ε/1004 ≈ 0.90: any more confidence costs
# loss. Smoothing caps the confidence it is trained towards. The paper reports that this "hurts perplexity, as the
# model learns to be more unsure, but improves accuracy and BLEU score". We
# measure the cap on our model after training.
#
# ## Training
#
# Everything together: Adam as in the paper, the schedule above, label
# smoothing 0.1, batches of 64 training lines, 1,000 steps. The lines of a
# batch are drawn at random with a probability proportional to their
# length (`seq2seq.random_batches`), so that every word of the training text
# is equally likely to be trained on; drawn uniformly, the long lines, rare
# in verse, are seen too seldom to be learned as well as the rest. The
# course's one training loop, `training.train`, shows a progress bar and
# returns the loss of every step. (About 30 seconds on a 2-core laptop CPU.)

# %%
# NBVAL_IGNORE_OUTPUT
import time

from course_utils.training import smooth, train

BATCH_SIZE, LABEL_SMOOTHING = 64, 0.1


def smoothed_loss(model, batch):
    """The loss of a batch, moved to wherever the model is."""
    on = next(model.parameters()).device
    return seq2seq.loss_of(model, tuple(part.to(on) for part in batch), LABEL_SMOOTHING)


torch.manual_seed(0)
model = seq2seq.TransformerSeq2Seq(len(vocab), CONFIG).to(device)
optimizer = torch.optim.Adam(model.parameters(), betas=(0.9, 0.98), eps=1e-9)
start = time.perf_counter()
losses = train(model, seq2seq.random_batches(train_pairs, BATCH_SIZE), smoothed_loss, optimizer, STEPS,
               lr_at=schedule, desc="transformer")
transformer_seconds = time.perf_counter() - start
final_loss = sum(losses[-50:]) / 50
print(f"trained in {transformer_seconds:.0f} s; mean loss of the last 50 steps: {final_loss:.3f}")
assert final_loss < 1.15, f"the loss should fall close to the smoothing floor (about 1.0), got {final_loss:.3f}"

# %% [markdown]
# The loss cannot reach zero: with smoothed targets its floor is the entropy
# of the smoothed target, the dotted line.

# %%
import math

right, wrong = 1 - EPSILON + EPSILON / len(vocab), EPSILON / len(vocab)  # the smoothed target
floor = -(right * math.log(right) + (len(vocab) - 1) * wrong * math.log(wrong))
print(f"lowest possible loss with ε = {EPSILON}: {floor:.3f}")

figure, ax = plt.subplots()
ax.plot(range(25, STEPS + 1), smooth(losses, window=25))
ax.axhline(floor, color="gray", ls=":", label="floor of the smoothed loss")
ax.set_xlabel("step")
ax.set_ylabel("training loss (mean of 25 steps)")
ax.legend()
plt.show()

# %% [markdown]
# ### Held-out exact match
#
# `seq2seq.exact_match` decodes every test line greedily (always the most
# likely next word, until `<eos>`) and counts the lines whose output is the
# reversal, word for word.

# %%
# NBVAL_IGNORE_OUTPUT
model = model.cpu()  # the evaluation below works on CPU tensors
accuracy, by_length = seq2seq.exact_match(model, test_pairs)
print(f"held-out exact match: {accuracy:.1%} of {len(test_pairs):,} lines")
print("by length:", {n: f"{share:.0%}" for n, share in by_length.items()})
assert accuracy >= 0.99, f"held-out exact match should be at least 99%, got {accuracy:.2%}"

outputs = seq2seq.greedy_reversals(model, test_pairs[:4])
for (source, target), output in zip(test_pairs[:4], outputs):
    print(f"\n{' '.join(vocab.decode(source))}\n  -> {' '.join(vocab.decode(output))}  {'✓' if output == target else '✗'}")

# %% [markdown]
# At least 99% of lines from plays the model has never seen come out exactly
# reversed. Where are the few errors? The line "by length" says; remember
# that the test set has only a few dozen lines of 12 words, so one error
# there moves its share by two or three points.
#
# How much did each choice of the recipe matter? `benchmarks/seq2seq_ablations.py`
# trains it again with one change at a time (same data, steps and seed; one
# run each on the 2-core CPU):
#
# | change to the recipe | held-out exact match |
# |---|---|
# | none (the recipe above) | 99.65% |
# | no cool-down (the paper's schedule alone) | 92.75% |
# | no label smoothing | 99.25% |
# | nn.Embedding's default initialisation, N(0, 1) | 0.05% (the loss never left 4.6) |
# | training lines drawn uniformly, not by length | 99.00% |
# | two decoder layers instead of one (30% slower) | 99.25% |
#
# Two choices decide the result: without the cool-down the run ends 7 points
# lower, and with the default initialisation the positions drown and nothing
# is learned. The others move a handful of the 2,000 test lines; with one
# run each, that is too little to tell from the luck of a seed.
#
# ### What label smoothing did to confidence
#
# With teacher forcing on the test lines, how much probability does the
# model give the word it would output? The cap computed above is 0.90. Then,
# for contrast, we continue training a copy for 100 steps *without*
# smoothing and measure again.

# %%
# NBVAL_IGNORE_OUTPUT
import copy


@torch.no_grad()
def confidence(model, pairs):
    """Mean probability of the top word, and the share of positions where it is right."""
    source, target = seq2seq.make_batch(pairs)
    probabilities = model(source, target[:, :-1]).softmax(dim=-1)
    real = target[:, 1:] != seq2seq.PAD
    top, predicted = probabilities.max(dim=-1)
    return top[real].mean().item(), (predicted == target[:, 1:])[real].float().mean().item()


smoothed_top, smoothed_right = confidence(model, test_pairs)
unsmoothed = copy.deepcopy(model)
train(unsmoothed, seq2seq.random_batches(train_pairs, BATCH_SIZE, seed=1), lambda m, b: seq2seq.loss_of(m, b),
      torch.optim.Adam(unsmoothed.parameters(), lr=3e-4, betas=(0.9, 0.98), eps=1e-9), 100, desc="no smoothing")
unsmoothed_top, unsmoothed_right = confidence(unsmoothed, test_pairs)
print(f"trained with ε = 0.1:       mean top probability {smoothed_top:.3f}, top word right {smoothed_right:.2%}")
print(f"then 100 steps with ε = 0:  mean top probability {unsmoothed_top:.3f}, top word right {unsmoothed_right:.2%}")
assert 0.85 < smoothed_top < 0.91 and unsmoothed_top > 0.97, (smoothed_top, unsmoothed_top)

# %% [markdown]
# Trained with smoothing, the model gives its top word about 0.89, just
# under the cap, although that word is right far more often than 90% of the
# time: smoothing makes a model *under*-confident by design. A hundred
# steps without smoothing, and the same words get almost all the probability.
# Smoothing changed what the probabilities mean; here the top word was
# right equally often with and without it. The paper found that
# it improved accuracy and BLEU; on this task, the table above shows what
# it did to the held-out exact match.
#
# ## Greedy decoding and beam search
#
# Greedy decoding takes the most likely word at each step. That is not the
# same as the most likely *line*: a slightly less likely word now can lead to
# a much more likely continuation. **Beam search** keeps the `beam_size`
# best partial lines at every step and returns the best finished one
# (`generation.beam_search`, written once for every model through
# `next_log_probs_for`).
#
# Does beam search ever find something better than greedy here? We score
# both outputs of the 100 longest test lines, the longest first, by the
# log-probability the model gives them (`generation.sequence_log_prob`).

# %%
# NBVAL_IGNORE_OUTPUT
from course_utils.generation import beam_search, sequence_log_prob

longest_first = sorted(test_pairs, key=lambda pair: -len(pair[0]))[:100]
greedy_outputs = seq2seq.greedy_reversals(model, longest_first)
better, beam_right, greedy_right = 0, 0, 0
for (source, target), greedy_output in zip(longest_first, greedy_outputs):
    source_ids, _ = seq2seq.make_batch([(source, target)])
    next_log_probs = model.next_log_probs_for(source_ids)
    beam, beam_log_prob = beam_search(next_log_probs, torch.tensor([seq2seq.BOS]), seq2seq.EOS,
                                      max_new_tokens=len(source) + 2, beam_size=4)
    greedy_ids = torch.tensor([[seq2seq.BOS] + greedy_output + [seq2seq.EOS]])
    greedy_log_prob = sequence_log_prob(next_log_probs, greedy_ids, 1, seq2seq.EOS).item()
    assert beam_log_prob >= greedy_log_prob - 1e-4, "here beam search scored below greedy: possible, but worth a look"
    better += beam_log_prob > greedy_log_prob + 1e-4
    beam_right += beam[1:-1].tolist() == target
    greedy_right += greedy_output == target
print(f"lines where beam search found a more probable output: {better} of {len(longest_first)}")
print(f"exact match on these long lines: greedy {greedy_right}, beam {beam_right}")

# %% [markdown]
# Beam search never scored below greedy on these lines (the assertion checks
# every one; it is not guaranteed in general, see the quiz). On a task this certain the two mostly agree: when the model
# puts about 0.9 on one word at every step, there is little for a wider
# search to find. And where beam search does find a more probable output,
# it is not always a right one (compare the two counts above): it finds what
# the model prefers, which is only as good as the model. Beam search earns
# its cost where many outputs are plausible, as in translation and in the
# text generation of lesson 10.
#
# ## Cross-attention is the alignment
#
# In the decoder's cross-attention, each target position (a row) spreads its
# attention over the source words (the columns). For the reversal, target
# word i should read source word n - 1 - i: an anti-diagonal. Here are the
# four heads' weights, averaged, for three held-out lines.

# %%
from course_utils import viz


@torch.no_grad()
def cross_attention(model, pairs):
    """Head-averaged cross-attention of the decoder layer while it reads the
    true targets: (lines, target positions, source positions)."""
    source, target = seq2seq.make_batch(pairs)
    memory, memory_mask = model.encode(source)
    _, maps = model.decode(target[:, :-1], memory, memory_mask, need_weights=True)
    return maps[-1].mean(dim=1)


examples = [pair for pair in test_pairs if 6 <= len(pair[0]) <= 9][:3]
figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
for ax, (source, target), weights in zip(axes, examples, cross_attention(model, examples)):
    n = len(source)
    viz.plot_attention(weights[:n + 1, :n + 1], ["<bos>"] + vocab.decode(target), vocab.decode(source) + ["<eos>"], ax=ax)
    ax.set_ylabel("decoder reads")
    ax.set_xlabel("source")
plt.tight_layout()
plt.show()

# %% [markdown]
# The row of the decoder that has just read target word i - 1 (or `<bos>`)
# must output word i, and it looks at source word n - 1 - i. How often is
# the brightest cell of a row exactly that word, over all the test lines?

# %%
# NBVAL_IGNORE_OUTPUT
aligned = total = 0
for (source, _), weights in zip(test_pairs, cross_attention(model, test_pairs)):
    n = len(source)
    looks_at = weights[:n].argmax(dim=-1)  # the rows that output the n words (not the final <eos>)
    aligned += (looks_at == torch.arange(n - 1, -1, -1)).sum().item()
    total += n
print(f"rows whose strongest cross-attention is on the aligned source word: {aligned / total:.1%}")
assert aligned / total > 0.9

# %% [markdown]
# Nobody told the model about alignment: the anti-diagonal is what it found
# to be useful for lowering the loss. This is the picture that made
# attention famous in translation (Bahdanau, Cho and Bengio, 2014), where
# the alignment between two languages is mostly diagonal with local swaps.
#
# ## The same model from `nn.Transformer`
#
# Many tutorials build this model around PyTorch's `nn.Transformer`.
# `seq2seq.TorchTransformerSeq2Seq` does that, with the same embeddings and
# output layer. We copy its weights into ours (lesson 06's
# `load_torch_weights`, through `seq2seq.copy_weights_from_torch`), check
# that the two compute the same logits, and train both for 60 steps on the
# same batches.

# %%
torch.manual_seed(0)
theirs = seq2seq.TorchTransformerSeq2Seq(len(vocab), CONFIG)
ours = seq2seq.copy_weights_from_torch(seq2seq.TransformerSeq2Seq(len(vocab), CONFIG), theirs)
source, target = seq2seq.make_batch(test_pairs[:32])
ours.eval()
theirs.eval()
with torch.no_grad():
    gap = (ours(source, target[:, :-1]) - theirs(source, target[:, :-1])).abs().max().item()
print(f"largest logit difference before training: {gap:.1e}")
assert gap < 1e-5

both = {}
for name, copy_of_model in [("ours", ours), ("nn.Transformer", theirs)]:
    adam = torch.optim.Adam(copy_of_model.parameters(), betas=(0.9, 0.98), eps=1e-9)
    both[name] = train(copy_of_model, seq2seq.random_batches(train_pairs, BATCH_SIZE, seed=2), smoothed_loss, adam, 60,
                       lr_at=transformer_schedule(CONFIG.d_model, WARMUP, LR_FACTOR), progress=False)
drift = max(abs(a - b) for a, b in zip(both["ours"], both["nn.Transformer"]))
print(f"loss at step 60: ours {both['ours'][-1]:.3f}, nn.Transformer {both['nn.Transformer'][-1]:.3f}")
print(f"largest difference between the two loss curves: {'below 1e-3' if drift < 1e-3 else f'{drift:.1e}'}")
assert drift < 1e-3

# %% [markdown]
# Same losses, step for step, to within rounding: the two are the same
# model. The differences that remain come from the same sums computed in
# another order (PyTorch packs the three input projections into one matrix
# multiply, for one).
#
# ## Did the transformer beat the LSTM?
#
# The course's sources say that transformers overcome the limits of
# recurrent networks: an LSTM must squeeze the whole source into one vector,
# and it reads one word after another, so it cannot spread the positions of
# a sentence over parallel hardware.
# Both halves are claims we can measure.
#
# Our challengers (`seq2seq.LSTMSeq2Seq`): a bidirectional LSTM encoder and
# an LSTM decoder, with the same shared, tied embedding table, in two
# versions:
#
# - **without attention**, the decoder starts from the encoder's final states
#   and never sees the source again: everything must pass through one pair of
#   vectors (the design of Sutskever et al., 2014, here with a bidirectional
#   encoder);
# - **with attention**, every decoder state scores all encoder outputs and
#   reads their weighted sum (Luong et al., 2015), the idea the transformer
#   kept while dropping the recurrence.
#
# Each gets as many parameters as the transformer, within 1% (hidden sizes
# 45 and 50), and the **same training**: the transformer's 1,000 steps, on
# the same batches. A budget in steps rather than in seconds keeps what each
# model learns the same on any machine, however fast or busy; the seconds
# each run took are printed beside it, and turned into the cost of an epoch
# after the plots.

# %%
LSTM_HIDDEN = {"LSTM + attention": 45, "LSTM, no attention": 50}
torch.manual_seed(0)
challengers = {name: seq2seq.LSTMSeq2Seq(len(vocab), CONFIG.d_model, hidden, attention="+ attention" in name)
               for name, hidden in LSTM_HIDDEN.items()}
print(f"{'transformer':<20} {sum(p.numel() for p in model.parameters()):>9,} parameters")
for name, challenger in challengers.items():
    print(f"{name:<20} {sum(p.numel() for p in challenger.parameters()):>9,} parameters")

# %% [markdown]
# The LSTMs are trained with the same loss, label smoothing and batches,
# with Adam at a constant 0.003 after 100 warm-up steps, the same cool-down,
# and gradient clipping at norm 1 (the usual guard against exploding
# gradients in recurrent networks). These are common settings for LSTMs,
# tried once; the transformer's recipe was tuned more, which favours it.

# %%
# NBVAL_IGNORE_OUTPUT
from course_utils.training import linear_warmup

lstm_results, curves = {}, {"transformer": (losses, transformer_seconds)}
for name, challenger in challengers.items():
    challenger.to(device)
    adam = torch.optim.Adam(challenger.parameters(), betas=(0.9, 0.98), eps=1e-9)
    start = time.perf_counter()
    lstm_losses = train(challenger, seq2seq.random_batches(train_pairs, BATCH_SIZE), smoothed_loss, adam, STEPS,
                        lr_at=with_cooldown(linear_warmup(3e-3, 100), STEPS, fraction=0.3), clip_grad_norm=1.0, desc=name)
    seconds = time.perf_counter() - start
    curves[name] = (lstm_losses, seconds)
    lstm_results[name] = seq2seq.exact_match(challenger.cpu(), test_pairs)
    print(f"{name}: {STEPS} steps in {seconds:.0f} s (transformer: {transformer_seconds:.0f} s); "
          f"held-out exact match {lstm_results[name][0]:.1%}")

with_attention, without = lstm_results["LSTM + attention"], lstm_results["LSTM, no attention"]
assert with_attention[0] >= 0.98, "the LSTM with attention should learn the task in these steps"
assert without[0] < with_attention[0] - 0.3, "without attention, the LSTM should be far behind after these steps"
assert without[1][3] > without[1][12], "without attention, short lines should come out right more often than long ones"

# %% [markdown]
# The three training curves against the clock (left), and held-out accuracy
# against the length of the line (right). Below them, what one epoch (one
# pass over the 96,907 training lines, in batches of 64) costs each model at
# its measured speed.

# %%
# NBVAL_IGNORE_OUTPUT
figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
for name, (curve, seconds) in curves.items():
    per_step = seconds / len(curve)
    left.plot([per_step * (step + 25) for step in range(len(curve) - 24)], smooth(curve, window=25), label=name)
left.axhline(floor, color="gray", ls=":", label="floor of the smoothed loss")
left.set_xlabel("seconds of training")
left.set_ylabel("training loss (mean of 25 steps)")
left.legend()
for name, (overall, shares) in {"transformer": (accuracy, by_length), **lstm_results}.items():
    right.plot(list(shares), list(shares.values()), marker="o", label=f"{name} ({overall:.1%})")
    print(f"{name:<20}", "  ".join(f"{n}: {share:.0%}" for n, share in shares.items()))
right.set_xlabel("words in the line")
right.set_ylabel("held-out exact match")
right.set_ylim(-0.02, 1.02)
right.legend()
plt.show()

steps_per_epoch = math.ceil(len(train_pairs) / BATCH_SIZE)
for name, (curve, seconds) in curves.items():
    print(f"{name:<20} {1000 * seconds / len(curve):.0f} ms a step, "
          f"{steps_per_epoch * seconds / len(curve):.0f} s an epoch ({steps_per_epoch:,} steps)")

# %% [markdown]
# What the race shows, on this task and this machine:
#
# - **Without attention, the LSTM did not learn the task in 1,000 steps**, and
#   it got fewer lines right the longer they were: what it knows of the
#   source must pass through one fixed-size state. That part of the claim
#   holds here. Given four times the steps (`benchmarks/seq2seq_ablations.py`,
#   about two and a half minutes), it reached 77%: 81-94% on lines of 3 to
#   8 words, then 69%, 59%, 38% and 16% for 9 to 12 words. The bottleneck
#   slows learning, and it bites hardest on the longest lines.
# - **With attention, the LSTM holds up**: in the same steps and with the
#   same parameter budget it learned the task as well as the transformer,
#   and on the 2-core CPU a step of it costs about what a transformer step
#   costs (the table above). The cure for the bottleneck is attention, and a
#   recurrent network can have it; Bahdanau, Cho and Bengio added it to a
#   recurrent encoder-decoder in 2014, three years before the transformer.
#
# So where is the transformer's advantage? In the other half of the claim:
# **parallelism**. An LSTM must compute position t before position t + 1;
# the transformer computes all positions of a layer in one matrix multiply.
# We time one training step (forward, backward and Adam update, a batch of
# 32) on random sequences of growing length:

# %%
# NBVAL_IGNORE_OUTPUT
LENGTHS = [8, 16, 32, 64, 128]
racers = {"transformer": model, **challengers}
step_ms = {name: [] for name in racers}
for length in LENGTHS:
    generator = torch.Generator().manual_seed(length)
    words = torch.randint(len(seq2seq.SPECIALS), len(vocab), (32, length), generator=generator)
    source = torch.cat([words, torch.full((32, 1), seq2seq.EOS)], dim=1)
    target = torch.cat([torch.full((32, 1), seq2seq.BOS), words.flip(1), torch.full((32, 1), seq2seq.EOS)], dim=1)
    for name, racer in racers.items():
        batch = (source.to(device), target.to(device))
        step_ms[name].append(1000 * seq2seq.seconds_per_step(racer.to(device), batch, repeats=3))
        racer.cpu()

figure, ax = plt.subplots()
for name, times in step_ms.items():
    ax.plot(LENGTHS, times, marker="o", label=name)
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("sequence length")
ax.set_ylabel("ms per training step (batch 32)")
ax.legend()
plt.show()
for name, times in step_ms.items():
    print(f"{name:<20}", "  ".join(f"{length}: {ms:.0f} ms" for length, ms in zip(LENGTHS, times)))
growth = {name: times[-1] / times[0] for name, times in step_ms.items()}
print("time at length 128 / time at length 8:", {name: f"{g:.0f}x" for name, g in growth.items()})
against_transformer = [lstm / transformer for name, times in step_ms.items() if name != "transformer"
                       for lstm, transformer in zip(times, step_ms["transformer"])]
print(f"an LSTM step / a transformer step: from {min(against_transformer):.1f} to {max(against_transformer):.1f}")

# %% [markdown]
# On the 2-core CPU this course is built on, the transformer is **not**
# clearly the faster one. In the runs made while writing this lesson, an
# LSTM step cost between about half and one and a half transformer steps
# (the last line printed), the LSTM the cheaper at short lengths, and all
# three slowed down several times over from length 8 to 128. Timings move
# from run to run on a shared machine, so read them to within a factor,
# not a digit. A CPU with two cores has little parallel hardware to fill,
# and PyTorch runs the LSTM's loop over positions in C++, one small matrix
# multiply after another.
# The transformer's advantage is where the hardware is wide: a GPU has
# thousands of arithmetic units, which one position at a time leaves idle
# and a whole sequence in one matrix multiply keeps busy. That, more than
# accuracy on short lines, is a main reason the transformer replaced the
# LSTM for training large models on large data. (The cell above times on
# the device `setup_notebook` picked: run the lesson on a GPU to see it
# there.)
#
# So, measured rather than asserted: attention beat the bottleneck, whether
# the model around it is recurrent or not; the transformer's own gain is
# speed on parallel hardware, and at this size, on this CPU, the LSTM with
# attention was as accurate and about as cheap per step.
#
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("07")

# %%
# BEGIN SOLUTION
answer("07.teacher-forcing", "B")
answer("07.schedule-decay", 0.5)
answer("07.smoothing-cap", "C")
answer("07.beam", "A")
answer("07.alignment", "D")
answer("07.lstm", ["A", "C"])
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - **The task**: reverse the words of Shakespeare's lines; trained on 34
#   plays, tested on four others; exact, with a known anti-diagonal alignment.
# - **Teacher forcing**: the decoder reads the true target shifted right, and
#   the causal mask lets one pass train every position; at test time it reads
#   its own outputs.
# - **The paper's recipe**: Adam (0.9, 0.98, 10⁻⁹); the learning rate
#   d_model^-0.5 · min(step^-0.5, step · warmup^-1.5), here scaled by 0.5 and
#   ended with a linear cool-down; label smoothing 0.1; shared, tied
#   embeddings scaled by √d_model, which must start small (N(0, 1/d_model))
#   or they drown the positions.
# - **Label smoothing** caps the probability of the right word near 1 - ε
#   (about 0.89 measured, against a cap of 0.90); the top word was right as
#   often as without it: the model is under-confident by design.
# - **Greedy and beam search** agree on almost every line of a task this
#   certain; beam search never scored below greedy on the 100 longest test
#   lines.
# - **Cross-attention is the alignment**: the row that outputs word i looks
#   hardest at source word n - 1 - i, learned from the loss alone.
# - Built from `nn.Transformer`, the same model trains to the same losses
#   with copied weights.
# - **Transformer against LSTM**, same parameters, same steps: without
#   attention the LSTM did not learn the task in those steps, worse on longer
#   lines; with attention it learned it as well as the transformer.
#   Attention removes the bottleneck; the transformer's own gain is parallel
#   speed, which a 2-core CPU does not show.
#
# Lessons 08 to 10 take the two halves apart: BERT is the encoder alone,
# GPT the decoder alone.
