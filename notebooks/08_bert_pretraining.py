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
# # 08 · BERT pre-training: masked words and next sentences
#
# Lesson 07 trained the whole encoder-decoder on one task. BERT (Devlin et
# al., 2019) keeps only the **encoder** and trains it on text alone, with no
# labels written by anyone, on two made-up tasks:
#
# - **masked language modelling (MLM)**: hide some words of a passage and
#   predict them from the words on both sides;
# - **next-sentence prediction (NSP)**: given two segments A and B, say
#   whether B is the text that follows A or a segment from somewhere else.
#
# The encoder that comes out is then fine-tuned for real tasks (lesson 09).
# Here we pre-train a small BERT on Shakespeare, and measure what each task
# teaches it.
#
# **In this lesson you will**
#
# - meet **WordPiece**, BERT's tokenizer (the course trained one on
#   Shakespeare with the `tokenizers` library), and load it as any Hugging
#   Face tokenizer is loaded;
# - see why BERT must hide words at all, and write its **masking**: 80%
#   `[MASK]`, 10% a random word, 10% unchanged (exercise);
# - assemble BERT from lesson 06's encoder layers, and check it against
#   Hugging Face's `BertForPreTraining`, logit for logit;
# - pre-train it, and compare its MLM accuracy with a baseline that always
#   guesses the most frequent word;
# - measure NSP against the score of always giving one answer, with one
#   test of "above chance", and find out what the model really used;
# - build ALBERT's **sentence-order pairs**, which NSP's shortcut cannot
#   solve (exercise), and see why later models changed or dropped NSP;
# - serve our model with `pipeline("fill-mask")`.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## WordPiece: BERT's tokenizer
#
# BERT cuts text into **WordPieces**: whole words when they are common,
# pieces of words otherwise, a piece that continues a word marked `##`. The
# vocabulary is learned from the text much as lesson 01's BPE was (the
# `tokenizers` library's WordPiece trainer merges the most frequent pairs;
# Google's original chose the merges that most raise the likelihood of the
# text). What differs is how a word is cut: WordPiece takes the longest
# vocabulary piece that starts the word, then the longest that continues
# it, and so on. Like the *uncased* BERT, ours also lower-cases, and it
# splits off punctuation before it cuts words.
#
# `tokenization.shakespeare_wordpiece()` gives a 4,000-piece WordPiece
# trained on the 34 training plays with the `tokenizers` library, saved with
# `save_pretrained` and loaded back through `AutoTokenizer`, exactly as a
# tokenizer from the Hugging Face hub is loaded. (Its pieces come from a
# file that ships with the course: the trainer numbers its pieces in an
# order that changes from run to run, and where two pairs are equally
# frequent at the end it may keep either; a BERT trained on other numbers
# starts from other weights for each piece, and ends elsewhere. So
# `train_wordpiece` numbers them in sorted order, and the course keeps the
# 4,000 it learned.) Its five special tokens are
# BERT's: `[PAD]`, `[UNK]`, `[CLS]` (the start, whose vector the NSP head
# reads), `[SEP]` (the end of a segment) and `[MASK]`. The cell also counts
# the pieces that continue a word, marked `##`: we will draw random pieces
# from this vocabulary below.

# %%
from course_utils.tokenization import shakespeare_wordpiece

tokenizer = shakespeare_wordpiece()
print(type(tokenizer).__name__, f"with {len(tokenizer):,} pieces")
print("special tokens:", dict(sorted(zip(tokenizer.all_special_ids, tokenizer.all_special_tokens))))
print(tokenizer.tokenize("Hamlet: To be, or not to be, that is the question: whether 'tis nobler in the mind"))
first_word_id = max(tokenizer.all_special_ids) + 1  # the ids below are the special tokens
pieces = tokenizer.convert_ids_to_tokens(list(range(first_word_id, len(tokenizer))))
print(f"pieces that continue a word (##...): {sum(piece.startswith('##') for piece in pieces) / len(pieces):.1%} "
      f"of the {len(pieces):,} that are not special tokens")

# %% [markdown]
# Two segments go in as one sequence, `[CLS] A [SEP] B [SEP]`. The
# tokenizer also returns `token_type_ids`, the **segment** of each token (0
# for A, 1 for B), which BERT adds to the input as a third embedding, beside
# the token and its position:

# %%
pair = tokenizer("Who's there?", "Nay, answer me: stand, and unfold yourself.")
for token, segment in zip(tokenizer.convert_ids_to_tokens(pair["input_ids"]), pair["token_type_ids"]):
    print(f"{token:>10} {segment}")

# %% [markdown]
# ## Masked language modelling
#
# A left-to-right model (lesson 10's GPT) predicts each word from the words
# before it. BERT predicts words from **both sides**, which is what a
# reader of a whole sentence does. But an encoder lets every position
# attend to every position, its own included: asked to predict the word at
# each position, it would simply copy it from its input, and learn nothing
# (Devlin et al., 2019, §3.1: each word would "see itself"). So BERT hides
# some words and scores only those.
#
# The recipe (§3.1): choose 15% of the tokens at random; the model must
# predict the original token at those positions and nowhere else. Of the
# chosen tokens,
#
# - 80% are replaced by `[MASK]`;
# - 10% by a random word;
# - 10% are left as they are.
#
# Why not always `[MASK]`? Fine-tuning and real use never show `[MASK]`. If
# every chosen token were `[MASK]`, the model could learn that only `[MASK]`
# positions need thought, and that every word it can see is right. With 10%
# random words it cannot trust any word it sees, so it must build a good
# vector for every position; the 10% left unchanged tie those vectors to the
# word that is really there.
#
# The labels hold the original token where a position was chosen and -100
# everywhere else: -100 is the label `F.cross_entropy` skips
# (`ignore_index`), so only chosen positions are scored, whatever they now
# show. `[CLS]`, `[SEP]` and padding are never chosen. (BERT's own code
# draws the random words from the whole vocabulary, special tokens
# included; we leave the special tokens out, so that a random word is
# always a vocabulary piece, a `##` piece as often as its share above, and
# never a special token.) We mask each batch afresh as it is drawn, so the
# same line is masked differently every time it comes back: RoBERTa's
# *dynamic* masking (Liu et al., 2019, §4.1). BERT's data script masked
# ahead of training instead, in ten copies of the data masked differently
# (`dupe_factor=10`), so that, by RoBERTa's count, each sequence came back
# with the same mask four times over BERT's 40 epochs.
#
# ### Exercise: BERT's masking
#
# Write `mask_tokens(ids, special, mask_id, first_word_id, vocab_size,
# rate, generator)`. `special` is True where a token may not be chosen;
# random words are ids from `first_word_id` to `vocab_size - 1` (below are
# the special tokens). Every position is chosen by its own chance `rate`,
# and every chosen position gets its own 80/10/10 outcome. Draw every random
# number from `generator`, and return `(inputs, labels)`: new tensors on
# the device of `ids` (a GPU batch stays on the GPU; a generator makes
# tensors only on its own device), labels as int64, the class indices the
# loss takes; `ids` left as it was. The checker runs it on eight batches
# and compares the rates with BERT's, pooled, row by row and position by
# position; it then changes `rate`, the vocabulary, the seed, the default
# device (where a tensor made without `device=` lands) and the device of
# `ids`, and checks that your function follows each.

# %%
import torch

from course_utils.bert import IGNORE_INDEX


def mask_tokens(ids, special, mask_id, first_word_id, vocab_size, rate=0.15, generator=None):
    # BEGIN SOLUTION
    home = ids.device if generator is None else generator.device  # where the generator can draw
    chosen = torch.rand(ids.shape, generator=generator, device=home).to(ids.device) < rate
    chosen &= ~special
    fate = torch.rand(ids.shape, generator=generator, device=home).to(ids.device)
    words = torch.randint(first_word_id, vocab_size, ids.shape, generator=generator, device=home)
    inputs = ids.masked_fill(chosen & (fate < 0.8), mask_id)
    inputs = torch.where(chosen & (fate >= 0.8) & (fate < 0.9), words.to(ids.device, ids.dtype), inputs)
    return inputs, ids.masked_fill(~chosen, IGNORE_INDEX).long()
    # END SOLUTION


# %%
from course_utils.classroom.checks.bert import check_mask_tokens

check_mask_tokens(mask_tokens)

# %% [markdown]
# Here is your masking on one line (or the course's, `bert.mask_tokens`,
# until yours passes), with a higher rate so that every outcome shows. The
# training batches below use the course's.

# %%
from course_utils import bert
from course_utils.classroom.checks import yours_if_passed

masking = yours_if_passed(mask_tokens, "08.mask_tokens", bert.mask_tokens)
encoded = tokenizer("O, that this too too solid flesh would melt, thaw and resolve itself into a dew!",
                    return_tensors="pt", return_special_tokens_mask=True)
inputs, labels = masking(encoded["input_ids"], encoded["special_tokens_mask"].bool(), tokenizer.mask_token_id,
                         first_word_id, len(tokenizer), 0.4, torch.Generator().manual_seed(11))
print(f"{'input':>10}  {'label':<10}")
for shown, label, original in zip(inputs[0], labels[0], encoded["input_ids"][0]):
    target = tokenizer.convert_ids_to_tokens(int(label)) if label != IGNORE_INDEX else "-"
    note = "" if label == IGNORE_INDEX else "  <- unchanged" if shown == original else "  <- random word" if shown != tokenizer.mask_token_id else ""
    print(f"{tokenizer.convert_ids_to_tokens(int(shown)):>10}  {target:<10}{note}")

# %% [markdown]
# ## Next-sentence prediction
#
# BERT's second task works on pairs of segments. Half the time B is the
# segment that really follows A (label 0, `IsNext`, in Hugging Face's
# convention); half the time B is a segment from another document (label 1,
# `NotNext`). The model reads the pair and answers from the vector of
# `[CLS]`. The idea is to teach the model how sentences relate, which tasks
# such as question answering and entailment need.
#
# Our documents are the plays, and a **segment** is a run of whole speeches,
# each led by its speaker's name, cut at 12 words: `bert.segment_at(speeches,
# start)` returns the segment that starts at speech `start` and the speech
# where the next segment begins. A segment always begins a speech, whether
# it is a true continuation or a negative, so where a segment begins gives
# nothing away. The cut falls at 12 words, wherever that is, and the rest
# of that speech is dropped: B begins with the *next* speech, so "B follows
# A" means "B's speech comes right after A's last one", not that the text
# runs on without a gap. (Below, A ends on the name Bernardo, and his line
# "Long live the king!" is not in either segment.)
#
# `bert.nsp_pair` draws one pair: a coin from its random generator picks
# the label, and a `NotNext` B comes from another play, or, with
# `negatives="same"`, from the same play, anywhere before or after A that
# shares no speech with A or with A's true continuation. The lesson trains
# with negatives from another play, as BERT takes them from another
# document, and measures both kinds.

# %%
training_speeches, held_out_speeches = bert.pretraining_speeches()
hamlet = training_speeches["hamlet"]
print(f"{len(training_speeches)} training plays, {sum(map(len, training_speeches.values())):,} speeches; "
      f"held out: {', '.join(held_out_speeches)}")
a, after = bert.segment_at(hamlet, 0, words=12)
b, _ = bert.segment_at(hamlet, after, words=12)
print("A:", a)
print("B:", b)

# %% [markdown]
# ## BERT, from lesson 06's encoder layers
#
# `bert.Bert` is the transformer's encoder with three additions:
#
# - **embeddings**: token + position (learned, as BERT's) + segment, summed
#   and normalised;
# - an **MLM head**: a dense layer, GELU and LayerNorm, then a product with
#   the token embedding table itself (tied weights, as in lesson 07), giving
#   a score for every piece of the vocabulary at every position;
# - an **NSP head**: the `[CLS]` vector through a dense layer and tanh (the
#   "pooler"), then two scores, `IsNext` and `NotNext`.
#
# The layers are lesson 06's `EncoderLayer`, post-LN as in BERT, with GELU.
# Everything about a run is in one `PretrainingRecipe`: the model's shape,
# the data (12-word segments, negatives from another play), the batch size
# and the learning rate (a linear warm-up to 10⁻³, then a linear cool-down
# over the last 30% of the steps). The optimizer has BERT's settings:
# Adam with β = (0.9, 0.999), ε = 10⁻⁶, and weight decay 0.01, decoupled
# from the gradient as in AdamW, on the weight matrices and embedding
# tables but none on biases and LayerNorm parameters. Two differences.
# BERT's optimizer (`AdamWeightDecayOptimizer` in its `optimization.py`,
# `BertAdam` in early PyTorch ports) leaves out Adam's bias correction,
# which PyTorch's `AdamW` applies (Hugging Face's own `AdamW` had a
# `correct_bias=False` switch for exactly this), so BERT's first updates
# were larger than ours. And dropout is 0 here, where BERT used 0.1
# everywhere. We did not measure what either would change in runs this
# short.
# Ours is tiny next to BERT-base (12 layers of width 768, 110 million
# parameters):

# %%
recipe = bert.PretrainingRecipe()
model = recipe.build_model(len(tokenizer))
print(recipe)
parts = {"embeddings (token, position, segment)": [model.embeddings],
         "encoder layers": [model.layers],
         "MLM head (dense, norm; the output matrix is the token table)": [model.mlm_dense, model.mlm_norm],
         "MLM output bias (one per piece)": [model.mlm_bias],
         "pooler and NSP head": [model.pooler, model.nsp]}
sizes = {name: sum(p.numel() for part in parts for p in ([part] if isinstance(part, torch.nn.Parameter)
                                                        else part.parameters()))
         for name, parts in parts.items()}
for name, size in sizes.items():
    print(f"{size:>9,}  {name}")
total = sum(p.numel() for p in model.parameters())
print(f"{total:>9,}  in all")
assert sum(sizes.values()) == total, "the rows add up to the model's count"

# %% [markdown]
# `bert.to_huggingface` copies our weights into a `transformers.BertForPreTraining`
# of the same shape, name for name (our fused Q/K/V projection splits into
# its `query`, `key` and `value`). Both models read the same batch; their
# logits and their loss must agree. `pretraining_batch` names its tensors as
# Hugging Face's model names its arguments, so the batch goes straight in:

# %%
reference = bert.to_huggingface(model)
batch = recipe.batch_at(1, tokenizer, training_speeches)
with torch.no_grad():
    ours_mlm, ours_nsp = model(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
    theirs = reference(**batch)
    ours_loss = sum(bert.pretraining_losses(model, batch))
real = batch["attention_mask"].bool()  # padding positions are never used
mlm_gap = (ours_mlm[real] - theirs.prediction_logits[real]).abs().max().item()
nsp_gap = (ours_nsp - theirs.seq_relationship_logits).abs().max().item()
print(f"batch: {tuple(batch['input_ids'].shape)}; largest gap, MLM logits: {mlm_gap:.0e}, NSP logits: {nsp_gap:.0e}")
scored = (batch["labels"] != IGNORE_INDEX).sum().item()
print(f"positions the MLM loss scores: {scored} of {batch['labels'].numel():,} ({scored / batch['labels'].numel():.1%})")
print(f"loss (MLM + NSP): ours {ours_loss.item():.3f}; Hugging Face's differs by "
      f"{abs(ours_loss.item() - theirs.loss.item()):.0e}")
assert mlm_gap < 1e-5 and nsp_gap < 1e-5 and abs(ours_loss.item() - theirs.loss.item()) < 1e-5

# %% [markdown]
# At the start the MLM loss is about ln 4,000 ≈ 8.3, a uniform guess over
# the vocabulary, and the NSP loss about ln 2 ≈ 0.69, a coin toss.
#
# One saving: Hugging Face's model scores every position of the batch
# against all 4,000 pieces, then ignores those that were not chosen: padding
# is a position too, so the chosen ones are about a tenth of the batch (the
# cell's last line). `bert.pretraining_losses` runs the MLM head on the
# chosen positions only: the same loss (as the cell above shows) for about
# a tenth of the work of the output layer, the largest single cost of a
# model this small.
#
# ## Pre-training in the lesson
#
# About a minute of training: 600 steps of 64 pairs, MLM and NSP
# together, their losses added as in BERT. Each step's pairs are drawn from
# the 34 training plays with a seed made of the step number, so every
# machine trains on the same batches (the weights then agree up to
# floating-point rounding).

# %%
optimizer = bert.pretraining_optimizer(model, recipe)
mlm_losses, nsp_losses = bert.pretrain(model, optimizer, recipe, tokenizer, training_speeches)

# %% [markdown]
# Two lines help read the loss curves. A model that knows nothing guesses
# uniformly: ln 4,000 ≈ 8.3 for MLM, ln 2 ≈ 0.69 for NSP. A model that knows
# only how often each piece occurs, and nothing of context, scores the
# **unigram entropy** of the training text, −Σ p log p over the pieces'
# frequencies: the cell computes it from the counts of every piece of the
# 34 training plays. The curves are means over 25 steps, to smooth the
# noise of single batches.

# %%
import collections
import math

import matplotlib.pyplot as plt

from course_utils.training import smooth

counts = collections.Counter(piece for speeches in training_speeches.values()
                             for ids in tokenizer(speeches, add_special_tokens=False)["input_ids"] for piece in ids)
total = sum(counts.values())
unigram_entropy = -sum(n / total * math.log(n / total) for n in counts.values())

figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3))
window = 25
steps = range(window, len(mlm_losses) + 1)
left.plot(steps, smooth(mlm_losses, window))
left.axhline(math.log(len(tokenizer)), color="grey", linestyle=":", label="uniform guess, ln 4000")
left.axhline(unigram_entropy, color="grey", linestyle="--", label=f"unigram entropy, {unigram_entropy:.2f}")
left.set(title="MLM loss (mean of 25 steps)", xlabel="step")
left.legend()
right.plot(steps, smooth(nsp_losses, window))
right.axhline(math.log(2), color="grey", linestyle=":", label="coin toss, ln 2")
right.set(title="NSP loss (mean of 25 steps)", xlabel="step", ylim=(0.6, 0.8))  # a wide axis: noise stays small
right.legend()
plt.show()
print(f"unigram entropy of the training pieces: {unigram_entropy:.2f} nats")
# NBVAL_TOLERANCE ±0.08 "MLM loss": a margin; it moved 0.04 when the vocabulary was numbered otherwise (no longer)
print(f"mean of the last 100 steps: MLM loss {sum(mlm_losses[-100:]) / 100:.2f}, NSP loss {sum(nsp_losses[-100:]) / 100:.3f}")

# %% [markdown]
# The MLM loss falls fast to the unigram entropy, 6.28 nats, and bends
# there, around step 80: the model first learns how often each piece
# occurs, the best it can do without context; only then does it begin to
# use the words around a `[MASK]`, and the loss goes on below that line, to
# about 5.0. The NSP loss never leaves ln 2: on an axis this wide its
# wiggles are the noise of 64-pair batches. In NSP the model has learned to
# answer 50/50, nothing more.

# %% [markdown]
# ## What MLM learned, on plays it never saw
#
# We score the model on 1,900 pairs from the four held-out plays, masked
# once with a fixed seed. MLM accuracy is the share of `[MASK]` positions
# where the model's top prediction is the original piece, as `fill-mask`
# would use it. (The chosen positions that show a word are left out: at the
# 10% that show their own word, the answer is in the input.) Against what?
# The simplest rule that uses no context at all, the **unigram baseline**:
# always guess the piece that is most frequent in the training plays.

# %%
held_out = {negatives: recipe.held_out_batches(tokenizer, held_out_speeches, negatives)
            for negatives in ("other", "same")}
commonest, _ = counts.most_common(1)[0]
labels = torch.cat([batch["labels"][(batch["labels"] != IGNORE_INDEX) & (batch["input_ids"] == tokenizer.mask_token_id)]
                    for batch in held_out["other"]])
baseline = (labels == commonest).float().mean().item()
short_run = bert.pretraining_accuracy(model, held_out["other"], tokenizer.mask_token_id)
print(f"held-out [MASK] positions: {short_run['mlm_count']:,}")
print(f"unigram baseline (always {tokenizer.convert_ids_to_tokens(commonest)!r}): {baseline:.3f}")
# NBVAL_TOLERANCE ±0.01 "our BERT": a margin; threads, other kernels and nudged weights did not move it
print(f"our BERT after {recipe.steps} steps:             {short_run['mlm']:.2f}")
assert 2.2 < short_run["mlm"] / baseline < 2.9, "about two and a half times the baseline, as the text says"

# %% [markdown]
# MLM works even in a minute: the model fills in about two and a half
# times as many `[MASK]` pieces as the unigram baseline, on plays it has
# never seen.
# The pipeline at the end of the lesson shows what it guesses.
#
# ## Next-sentence prediction, measured
#
# Now NSP, on the held-out plays, in both settings: negatives from another
# play (as BERT draws them, from another document) and from the same play
# (sharing no speech with A or its continuation; how far from A they lie,
# the cell below measures). The model reads the pairs unmasked, as a
# reader or a fine-tuned model would see them.
#
# `bert.held_out_pairs` builds each set so that it can be read plainly: the
# As are drawn without replacement from the plays cut into consecutive
# segments, so no A repeats and no two share a speech, and the labels
# alternate, so exactly half are `IsNext`. Always giving the same answer
# then scores exactly 0.5, the **majority rate**: that is chance here, and
# it is printed beside every result.
#
# How sure is a score? Two 95% intervals, printed side by side:
#
# - **over pairs**: score ± 1.96 · √(score · (1 − score) / n), the normal
#   approximation (`bert.interval95`). It treats the pairs as independent
#   draws. They are not quite: a true pair's B is often another pair's A
#   (consecutive segments), and the pairs come from only four plays, which
#   differ. So this interval is **optimistic**;
# - **over plays**: a cluster bootstrap (`bert.cluster_interval95`): draw
#   four plays with replacement, pool their pairs (each pair counts for
#   the play of its A), take the score, 10,000 times; the interval runs
#   from the 2.5th to the 97.5th percentile. It lets plays differ. With
#   four plays it is rough too (a bootstrap over a handful of clusters
#   tends to be too narrow), but it is the honest direction.
#
# One test decides "above chance" in this lesson, in the text as in the
# code: **both intervals lie wholly above the majority rate**. Neither
# says how a second training run would differ.

# %%
import random

from course_utils.bert import above_chance, cluster_interval95, interval95, lowest_above_chance

where = {"other": "another play", "same": "the same play"}


def report(name, right, plays, majority, verdict=True):
    """One row: the share of pairs right, its 95% intervals over pairs and over plays, and the verdict."""
    accuracy = right.float().mean().item()
    low, high = interval95(accuracy, len(right))
    play_low, play_high = cluster_interval95(right, plays)
    judged = ""
    if verdict:
        judged = "above chance" if above_chance(accuracy, len(right), majority) and play_low > majority else "not above chance"
    print(f"{name:<50} {accuracy:.3f}  pairs {low:.3f}-{high:.3f}  plays {play_low:.3f}-{play_high:.3f}  {judged}".rstrip())


def a_plays(speeches_by_play, negatives, count=1900):
    """The play of each held-out pair's A, in the pairs' order: the clusters of the bootstrap."""
    return [play for play, _ in recipe.held_out_starts(speeches_by_play, negatives, count)]


results = {negatives: bert.pretraining_accuracy(model, batches, tokenizer.mask_token_id)  # NSP on unmasked pairs
           for negatives, batches in held_out.items()}
pairs_count, majority = results["other"]["nsp_count"], results["other"]["nsp_majority"]
print(f"{pairs_count:,} held-out pairs in each setting, from {len(held_out_speeches)} plays; majority rate "
      f"{majority:.3f}; above chance over pairs from {lowest_above_chance(pairs_count, majority):.3f}")

# How far a same-play negative lies from its A, in speeches: B's start, found by B's text.
distances = []
for (play, start), (_, b, label) in zip(recipe.held_out_starts(held_out_speeches, "same"),
                                        recipe.held_out_pairs(held_out_speeches, "same")):
    if label == bert.NOT_NEXT:
        own = held_out_speeches[play]
        found = [far for far in range(len(own) - 2 * recipe.words) if bert.segment_at(own, far, recipe.words)[0] == b]
        distances.append(min(abs(far - start) for far in found))
distances = torch.tensor(distances, dtype=torch.float)
quartiles = torch.quantile(distances, torch.tensor([0.25, 0.5, 0.75])).tolist()
speeches_per_play = sum(map(len, held_out_speeches.values())) / len(held_out_speeches)
print(f"same-play negatives: {len(distances)}; speeches between A and B: quartiles {quartiles[0]:.0f}, "
      f"median {quartiles[1]:.0f}, {quartiles[2]:.0f} (plays of {speeches_per_play:.0f} speeches on average); "
      f"within 20 speeches: {(distances <= 20).float().mean().item():.1%}")

# %% [markdown]
# Same-play negatives lie far from their A: a median of 221 speeches away
# (half of them between 105 and 367), in plays of 738 speeches on average,
# and only 5.8% within 20 speeches. They share the play's people and
# words, rarely the moment.
#
# Our model's two scores come next. A trained model's score moves a little
# from machine to machine, so its rows carry no printed verdict that could
# flip; the text below judges them by the test above.

# %%
# NBVAL_IGNORE_OUTPUT
# The scores move by up to 0.02 from machine to machine; the assertion checks the band the text gives.
for negatives, result in results.items():
    report(f"our BERT, {recipe.steps} steps, {where[negatives]}", result["nsp_right"],
           a_plays(held_out_speeches, negatives), result["nsp_majority"], verdict=False)
    assert 0.46 < result["nsp"] < 0.55, "about 0.5, as the text says"

# %% [markdown]
# At or near chance in both settings (0.498 and 0.505 in the stored run;
# the assertion allows 0.46 to 0.55), well below the 0.56 to 0.78 that a
# rule counting shared pieces and MiniLM reach further down, as the loss
# curve said. Perhaps a minute is simply too short.
# `course train bert` trains the same model on the same data for 4,000
# steps (the stored run: 27 minutes on one thread of the 2-core CPU, while
# another job used the other core; 18 of them training, the rest setting
# up and evaluating five sets of 1,900 pairs every 250 steps). It shows a
# progress bar and, stopped, resumes from its last checkpoint, at most 250
# steps back, its times added up over every part. Its learning rate cools
# down over its own last 30%, so our lesson's run, which cooled down from
# step 420, is not a point on its path, only a comparison at the same step. The curve it stored,
# with the command that made it, ships with the course: the same held-out
# pairs, read the same way, and one more set, ALBERT's sentence-order
# pairs, which the end of the lesson explains.

# %%
from course_utils.classroom.train import load_results

long_run = load_results()
curve = long_run["curve"]
print(f"{long_run['command']}: {long_run['wall_seconds'] / 60:.0f} minutes, {long_run['training_seconds'] / 60:.0f} "
      f"of them training, on {long_run['machine']}")
steps_done = [point["step"] for point in curve]
figure, (left, right) = plt.subplots(1, 2, figsize=(13, 3.2))
left.plot(steps_done, [point["held_out_mlm_accuracy"] for point in curve], marker=".", label="course train bert")
left.plot([recipe.steps], [short_run["mlm"]], "o", label="this lesson's run")
left.axhline(baseline, color="grey", linestyle=":", label="unigram baseline")
left.set(title="MLM accuracy, held-out plays", xlabel="step")
left.legend()
right.axhline(0.5, color="grey", linestyle=":", label="majority rate")
right.axhline(lowest_above_chance(long_run["held_out_pairs"], 0.5), color="grey", linestyle="--",
              label="lowest score above chance")
for key, label, style in [("nsp_accuracy_train_other", "training plays, other play", "o--"),
                          ("nsp_accuracy_train_same", "training plays, same play", "s--"),
                          ("nsp_accuracy_other", "held out, other play", "o-"),
                          ("nsp_accuracy_same", "held out, same play", "s-"),
                          ("nsp_accuracy_swapped", "held out, swapped order", "x-")]:
    right.plot(steps_done, [point[key] for point in curve], style, markersize=4, label=label)
right.set(title="NSP accuracy (unmasked pairs)", xlabel="step", ylim=(0.4, 1.0))
right.legend(loc="upper left", bbox_to_anchor=(1.02, 1))  # beside the plot: the curves fill it
plt.show()
last = curve[-1]
print(f"after {last['step']} steps: held-out MLM accuracy {last['held_out_mlm_accuracy']:.3f}")
print(f"NSP accuracy, negatives from another play / the same play: held out {last['nsp_accuracy_other']:.3f} / "
      f"{last['nsp_accuracy_same']:.3f}; training plays {last['nsp_accuracy_train_other']:.3f} / "
      f"{last['nsp_accuracy_train_same']:.3f}; held out, swapped order {last['nsp_accuracy_swapped']:.3f}")
# The long run's last model, pair by pair (1 right, 0 wrong), in the order of the recipe's held-out pairs.
long_right = {negatives: torch.tensor([answer == "1" for answer in answers])
              for negatives, answers in long_run["final_nsp_right"].items()}
for negatives, right in long_right.items():
    assert right.sum().item() / len(right) == last[f"nsp_accuracy_{negatives}"], "the stored curve's last point"
for negatives, speeches_by_play, name in [("other", held_out_speeches, "held out, another play"),
                                          ("same", held_out_speeches, "held out, the same play"),
                                          ("train_same", training_speeches, "training plays, the same play")]:
    report(f"long run, {name}", long_right[negatives], a_plays(speeches_by_play, negatives.removeprefix("train_")),
           0.5)

# %% [markdown]
# MLM keeps improving, more and more slowly. NSP sits at the majority rate
# for about 1,000 steps, then rises on every set of pairs at once, by very
# different amounts: by step 4,000, to 0.962 on the training plays with
# negatives from another play; on the held-out plays to 0.644 with
# negatives from another play and 0.585 with negatives from the same play;
# and to only 0.553 on the training plays with negatives from the same play.
# By the lesson's test (both intervals above 0.5) all four are above
# chance (the last three lines above), the last barely: over the 34
# training plays its interval starts at 0.522. With only four held-out
# plays, the interval over plays is itself noisy: wider than the one over
# pairs for same-play negatives here (0.546 to 0.626), narrower for some
# rows below, where the four plays happen to agree; the test takes the
# more cautious of the two. On ALBERT's swapped pairs it ends at 0.504, not
# above chance. So NSP *is* learnable at this scale, given time; our
# one-minute run stopped inside the flat part.
#
# What did it learn? The true pairs of the training plays were mostly seen
# in training (256,000 pairs drawn from about 28,000 starting speeches), so
# 0.962 could be memory of the pairs themselves. Yet on the very same
# plays, with negatives from the same play, it scores 0.553: it can barely
# tell a true continuation from another segment of the same play. That does
# not show that it memorised no pairs (it was never trained to reject a
# segment of the same play, so nothing pushed it to use what it may have
# stored); it shows what it mostly uses: *which play a text belongs to*,
# above all who is on stage. That cue carries over to new plays only
# partly (0.644 on held-out plays, whose characters it never met, against
# 0.962), and it says nothing about order: the swapped pairs, whose two
# segments come from the same place, leave it at chance.
#
# ### What is there to learn in a held-out pair?
#
# A rule that does not read at all can tell us how much the pairs give away:
# count the word pieces A and B share, and answer `IsNext` when the count
# reaches a threshold. The threshold is chosen on 2,000 pairs from the
# training plays; the rule is scored on the same held-out pairs as our BERT.
# We also try it with the speakers' names taken out of the text, cut into
# segments again (1,800 pairs: without the names a segment spans more
# speeches, so the plays hold fewer).

# %%
def fit_threshold(scores, is_next):
    """The threshold t for which "IsNext when score >= t" is right most often."""
    candidates = scores.unique()
    right = ((scores[None, :] >= candidates[:, None]) == is_next[None, :]).float().mean(dim=1)
    return candidates[right.argmax()]


def shared_pieces(pairs):
    return torch.tensor([float(len(set(tokenizer.tokenize(a)) & set(tokenizer.tokenize(b)))) for a, b, _ in pairs])


def is_next(pairs):
    return torch.tensor([label == bert.IS_NEXT for _, _, label in pairs])


def majority_rate(pairs):
    share = is_next(pairs).float().mean().item()
    return max(share, 1 - share)


rule_right = {}  # (names, negatives) -> right or wrong, pair by pair
for names in (True, False):
    training_plays, held_out_plays = bert.pretraining_speeches(names)
    for negatives in ("other", "same"):
        fit = bert.nsp_pairs(training_plays, 2000, random.Random(f"fit/{negatives}"), negatives, recipe.words)
        threshold = fit_threshold(shared_pieces(fit), is_next(fit))
        # Without the names, segments span more speeches: the held-out plays hold 1,803 of them, not 1,928.
        count = 1900 if names else 1800
        test = recipe.held_out_pairs(held_out_plays, negatives, count)
        rule_right[names, negatives] = (shared_pieces(test) >= threshold) == is_next(test)
        report(f"shared pieces >= {threshold:.0f}, {'with' if names else 'without'} names, {where[negatives]}",
               rule_right[names, negatives], a_plays(held_out_plays, negatives, count), majority_rate(test))

# %% [markdown]
# With the names, the rule reads the very pairs the long run's BERT was
# scored on (the same recipe, the same seeds), so the two can be compared
# pair by pair: McNemar's exact test (`finetuning.mcnemar`, lesson 09's),
# which looks only at the pairs where one is right and the other wrong.

# %%
from course_utils.finetuning import mcnemar

for negatives in ("other", "same"):
    only_rule, only_bert, p = mcnemar(rule_right[True, negatives], long_right[negatives])
    print(f"{where[negatives]:<14}: rule {rule_right[True, negatives].float().mean().item():.3f}, long run's BERT "
          f"{long_right[negatives].float().mean().item():.3f}; only the rule right on {only_rule}, only BERT on "
          f"{only_bert}: p = {p:.2g}")

# %% [markdown]
# Counting shared pieces does better on held-out plays than our BERT after
# 4,000 steps, on the very same pairs: with negatives from another play,
# 0.718 against 0.644, the rule alone right on 452 pairs and BERT alone on
# 312 (p = 4.6 · 10⁻⁷); with negatives from the same play, 0.614 against
# 0.585, 390 against 336 (p = 0.049: only just under 0.05, weak evidence).
# The rule also does better with negatives from another play than from the
# same play.
# Take the names out and the rule falls to 0.573 and 0.555, near each
# other: true neighbours share their speakers (a dialogue goes back and
# forth between the same people), a segment of another play almost never
# does. So, with negatives from another document, NSP here is mostly a test
# of **who is on stage**, and much less of whether B follows from A.
#
# A model that has already learned which words go together finds this cue
# at once. MiniLM's sentence vectors (mean-pooled, lesson 01) of A and B,
# compared by cosine, with one threshold fitted on training plays and no
# other training on our data. (MiniLM was itself fine-tuned on about a
# billion pairs of related texts, such as questions and answers, which is
# close to NSP.) Like the rule, it reads the pairs unmasked.

# %%
from course_utils.pretrained import sentence_embeddings

training_plays, held_out_plays = bert.pretraining_speeches()
for negatives in ("other", "same"):
    fit = bert.nsp_pairs(training_plays, 500, random.Random(f"fit/{negatives}"), negatives, recipe.words)
    test = recipe.held_out_pairs(held_out_plays, negatives, count=1000)
    cosines = {}
    for name, pairs in (("fit", fit), ("test", test)):
        vectors = sentence_embeddings([text for a, b, _ in pairs for text in (a, b)])
        cosines[name] = (vectors[0::2] * vectors[1::2]).sum(dim=-1)
    threshold = fit_threshold(cosines["fit"], is_next(fit))
    report(f"MiniLM cosine >= {threshold:.2f}, {where[negatives]}", (cosines["test"] >= threshold) == is_next(test),
           a_plays(held_out_plays, negatives, 1000), majority_rate(test))

# %% [markdown]
# ### What made NSP learnable here, and what later models did
#
# - **Time**: the plateau lasted about 1,000 steps of 64 pairs; the
#   lesson's own run of 600 steps ends inside it.
# - **Names**: with negatives from another play, the speakers' names give
#   much of the answer away, on the training plays especially. With
#   negatives from the same play the rule, MiniLM and our BERT all scored
#   lower; once the names are out, the rule scores nearly the same in both
#   settings.
# - **A pretrained encoder**: MiniLM's vectors carry the cue with no
#   training on our data.
#
# BERT itself, trained on 3.3 billion words with pairs of up to 512 tokens,
# reached 97-98% on NSP (Devlin et al., 2019, §3.1 and Appendix A.2), and
# the same argument applies: its negatives were segments drawn at random
# from the whole corpus (BooksCorpus and Wikipedia), usually from another
# document on another subject. Later models drew the conclusion:
#
# - **RoBERTa** (Liu et al., 2019, §4.2) compared, in a controlled
#   ablation, training with and without NSP. BERT's own ablation had found
#   that removing NSP hurt some tasks (QNLI, MNLI, SQuAD 1.1); RoBERTa
#   conjectured that BERT's ablation had kept the segment-pair input
#   format without the loss. Without NSP, packing each input with full
#   sentences up to 512 tokens, it matched or slightly beat the NSP models
#   on downstream tasks, and it dropped NSP. It also found that inputs made
#   of single short sentences hurt, even with NSP: our 12-word segments are
#   of that short kind.
# - **ALBERT** (Lan et al., 2020, §3.1 and §4) argued that NSP mixes topic
#   prediction, which is easy and overlaps with MLM, with coherence
#   prediction, which is what it was meant to teach. Its **sentence-order
#   prediction** (SOP) takes two consecutive segments and, for a negative,
#   swaps them: both classes then hold the same words and the same topic,
#   and only the order tells them apart. ALBERT reported that a model
#   trained on NSP scored about chance on SOP (52%), while a model trained
#   on SOP did fairly well on NSP too (78.9%).
#
# ### Exercise: ALBERT's sentence-order pairs
#
# Write `sop_pair(play_speeches, start, rng, words)`: one of ALBERT's
# examples from speech `start` of one play (its list of speeches), as
# `(first, second, label)`. What it must guarantee, not how:
#
# - a positive (`bert.IS_NEXT`) is NSP's positive: the segment at `start`,
#   then the segment that really follows it, both cut as NSP cuts them;
# - a negative (`bert.NOT_NEXT`) differs from a positive in the order and
#   in nothing else: shown the two segments without their order, no one,
#   and no rule, could tell which label the pair carries;
# - each pair is a positive or a negative with even chances, decided for
#   that pair alone; `rng` is the only randomness, so a seed rebuilds the
#   data; and the play is read, never changed.
#
# Which two segments a negative holds follows from the second point. The
# checker calls your function about 1,100 times on six small made-up plays
# whose words say where they come from, and checks each start's pairs as
# well as all of them together.

# %%
def sop_pair(play_speeches, start, rng, words=12):
    # BEGIN SOLUTION
    here, after = bert.segment_at(play_speeches, start, words)
    following = bert.segment_at(play_speeches, after, words)[0]
    if rng.random() < 0.5:
        return here, following, bert.IS_NEXT
    return following, here, bert.NOT_NEXT
    # END SOLUTION


# %%
from course_utils.classroom.checks.bert import check_sop_pair

check_sop_pair(sop_pair)

# %% [markdown]
# Your pairs (or the course's, until yours pass) on the held-out plays, one
# per segment start: the rule that counts shared pieces, fitted on pairs of
# the training plays. It gives a pair and its swap the same count, so the
# same answer: on a set holding every pair both ways it scores exactly 0.5,
# and on one way each it can only be lucky. The last line is the long run's
# BERT, trained on NSP, reading the held-out sentence-order pairs of
# `course train bert`.

# %%
ordered = yours_if_passed(sop_pair, "08.sop_pair", bert.sop_pair)


def order_pairs(speeches_by_play, count, seed):
    """`count` sentence-order pairs at segment starts drawn without replacement, and the play of each."""
    rng = random.Random(seed)
    starts = [(play, start) for play in sorted(speeches_by_play)
              for start in bert.segment_starts(speeches_by_play[play], recipe.words)]
    chosen = rng.sample(starts, count)
    return [ordered(speeches_by_play[play], start, rng, recipe.words) for play, start in chosen], [p for p, _ in chosen]


fit, _ = order_pairs(training_plays, 2000, "fit/order")
test, test_plays = order_pairs(held_out_plays, 1900, "test/order")
threshold = fit_threshold(shared_pieces(fit), is_next(fit))
report(f"shared pieces >= {threshold:.0f}, sentence order", (shared_pieces(test) >= threshold) == is_next(test),
       test_plays, majority_rate(test))
both_ways = test + [(b, a, bert.NOT_NEXT if label == bert.IS_NEXT else bert.IS_NEXT) for a, b, label in test]
accuracy = ((shared_pieces(both_ways) >= threshold) == is_next(both_ways)).float().mean().item()
# No interval: a pair and its swap get the same count, so the rule is right on exactly one of the two.
print(f"{'the same rule, every pair both ways':<50} {accuracy:.3f}  exactly, by construction: no interval")
assert accuracy == 0.5
report("long run's BERT (NSP-trained), swapped order", long_right["swapped"], a_plays(held_out_speeches, "swapped"),
       0.5)

# %% [markdown]
# The rule that read 0.718 of the NSP pairs right reads 0.496 of ALBERT's:
# not above chance, and exactly 0.5 once every pair comes both ways. That
# 0.5 carries no interval: it is not an estimate that other pairs could
# move, but the rule's answer on a pair and on its swap, right for exactly
# one of the two. The
# long run's BERT, which learned NSP's shortcut, is at chance on them too
# (0.504), as ALBERT found for its NSP-trained models. To do better, a model
# must learn how one speech follows another: which is what NSP was meant
# to teach.
#
# MLM, on the other hand, stayed: RoBERTa, ALBERT and most encoders since
# keep it. XLNet replaced it with a permutation language model, and
# ELECTRA with replaced-token detection: its encoder tells, at every
# position, whether a piece was put there by a small generator, and that
# generator is itself trained with MLM. It is the task that carries
# pre-training.

# %% [markdown]
# ## Our BERT, served by Hugging Face's `pipeline`
#
# Converted to `BertForPreTraining` and saved with `save_pretrained`, our
# model is a Hugging Face model folder like any other: `config.json`, the
# weights in `model.safetensors`, and the tokenizer's files beside them.
# `AutoModelForMaskedLM` loads its encoder and MLM head (the pooler and
# the NSP head are not part of a masked-LM model, and are left out), and
# `pipeline("fill-mask")`
# fills the `[MASK]` of lines from the held-out plays. We print its best
# guess and, with the pipeline's `targets` argument, the probability it
# gives the true word. (What a minute of training guesses is the kind of
# result that changes from one machine to the next, so the notebook tests
# do not compare this cell's text; its assertion checks the claim below.)

# %%
# NBVAL_IGNORE_OUTPUT
# A minute's guesses are not compared word for word; the assertion checks what the text claims.
import tempfile

from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

folder = tempfile.mkdtemp(prefix="bert-shakespeare-")
bert.to_huggingface(model).save_pretrained(folder)
tokenizer.save_pretrained(folder)
fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(folder),
                tokenizer=AutoTokenizer.from_pretrained(folder), top_k=1)
lines = {"Macbeth: Is this a dagger which I see before [MASK]?": "me",
         "Orsino: If music be the [MASK] of love, play on": "food",
         "Prospero: We are such stuff as dreams are made [MASK]": "on",
         "King Henry: Once more unto the breach, dear [MASK], once more": "friends"}
guesses = []
for line, truth in lines.items():
    best = fill(line)[0]
    true = fill(line, targets=[truth])[0]  # the score of the true word, wherever it ranks
    print(f"{line}\n    best guess {best['token_str']!r} ({best['score']:.2f}); "
          f"the true word {truth!r} ({true['score']:.3f})")
    guesses.append(best["token"])
commonest_30 = {piece for piece, _ in counts.most_common(30)}
assert sum(guess in commonest_30 for guess in guesses) >= 3, "most guesses are among the 30 commonest pieces"

# %% [markdown]
# After a minute of training, the model's guesses are mostly punctuation
# and the commonest pieces, which are the safest bets for a model that gets
# 13% of `[MASK]` pieces right; the model of `course train bert` gets 26%.
# The pipeline does not care how good the model is: a folder with a config,
# weights and a tokenizer is all it needs.
#
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("08")

# %%
# BEGIN SOLUTION
answer("08.mlm-vs-nsp", "B")
answer("08.eighty-ten-ten", "C")
answer("08.mask-share", 12)
answer("08.labelled-positions", 480)
answer("08.nsp-shortcut", "A")
answer("08.order-blind", "D")
answer("08.tied-head", "C")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - **WordPiece**, trained on the training plays with `tokenizers`, loads
#   through `AutoTokenizer` like any hub tokenizer; pairs are
#   `[CLS] A [SEP] B [SEP]` with segment ids 0 and 1.
# - **MLM**: an encoder sees every word, its own included, so BERT hides
#   15% of the non-special positions and scores only those; of them 80%
#   `[MASK]`, 10% a random piece, 10% unchanged; labels are the original
#   ids there and -100 everywhere else.
# - **BERT** is the encoder with token + position + segment embeddings, an
#   MLM head tied to the token table and an NSP head on `[CLS]`; ours equals
#   Hugging Face's `BertForPreTraining` with the same weights, and runs in
#   `pipeline("fill-mask")`.
# - **MLM works** at this scale: two and a half times the unigram
#   baseline in a minute, about twice that after 4,000 steps, and still
#   climbing; its loss first drops to the unigram entropy (word
#   frequencies), then below it (context).
# - **NSP**, measured on balanced held-out pairs against the majority rate,
#   with intervals over pairs and over plays (both must lie above it),
#   stayed at chance for about 1,000 steps, then rose to
#   0.96 on the training plays but 0.64 on held-out plays (negatives from
#   another play), 0.59 with negatives from the same play, and stayed at
#   chance on swapped pairs: mostly which play a text belongs to, who is
#   on stage, not which pairs are true. A rule counting shared pieces
#   (better than the long run's BERT on the same pairs, by McNemar's test)
#   and MiniLM's sentence vectors show how much the names and words give
#   away.
# - **Later models** dropped NSP (RoBERTa) or replaced it with
#   sentence-order prediction (ALBERT), whose two classes hold the same
#   text: a rule that ignores the order scores exactly chance on them.
#
# Lesson 09 takes a pretrained BERT (MiniLM) and puts it to work:
# contextual embeddings, semantic search and fine-tuning.
