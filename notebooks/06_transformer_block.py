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
# # 06 · The transformer block
#
# Attention lets every token gather information from the others. A
# transformer layer wraps it with three more pieces: a **feed-forward
# network** that works on each token alone, **residual connections** that add
# each sublayer's input back to its output, and **layer normalisation**. This
# lesson builds each piece from its formula, puts them together in the three
# arrangements you will meet in papers and code, measures why the arrangement
# matters, and ends with the encoder and decoder layers of the original
# transformer, equal number for number to PyTorch's own.
#
# **In this lesson you will**
#
# - see the three uses of attention in an encoder-decoder: encoder
#   self-attention, masked decoder self-attention and cross-attention;
# - measure what a residual connection does for the gradient of a deep stack;
# - write layer normalisation from its formula and check it against `nn.LayerNorm`;
# - build the position-wise feed-forward network and see where dropout goes;
# - tell apart post-LN (the 2017 paper), pre-LN (GPT-2 and most models since)
#   and the "parallel" block, and measure their gradients at initialisation
#   and their training with and without learning-rate warm-up;
# - check our encoder and decoder layers, and the whole encoder-decoder,
#   against `nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer` and
#   `nn.Transformer`;
# - count the parameters of the paper's base model from its configuration;
# - wire a decoder layer yourself.

# %% [markdown]
# ## Set-up

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## The whole model on one page
#
# The transformer of *Attention Is All You Need* (Vaswani et al., 2017) is an
# encoder-decoder. The encoder reads the source sentence; the decoder writes
# the target one token at a time. Both are stacks of N identical layers, and
# attention appears in three roles:
#
# - **encoder self-attention**: every source token attends to every source
#   token (only padding is masked);
# - **masked self-attention** in the decoder: every target position attends to
#   itself and the positions before it, never after (the causal mask of
#   lesson 03), so that training on whole sentences cannot peek at the answer;
# - **cross-attention**: the decoder's positions ask the questions (queries)
#   and the encoder's output, the *memory*, gives the keys and values. This is
#   where the translation reads the source.
#
# Every sublayer sits inside "add & LayerNorm": its input is added back to its
# output (the grey arrows) and the sum is normalised.

# %%
import matplotlib.pyplot as plt

from course_utils import viz

viz.draw_encoder_decoder()
plt.show()

# %% [markdown]
# ## Residual connections
#
# A residual connection computes x + F(x) instead of F(x). The sublayer F
# only has to learn a *change* to its input, and, more important for a deep
# stack, the gradient has a path that skips F: the derivative of x + F(x)
# with respect to x is the identity plus F's own derivative. Without that
# path the gradient that reaches the first layer is a product of one factor
# per layer, and a product of many factors tends to shrink or explode.
#
# Here is the measurement. We stack feed-forward sublayers (Linear, ReLU,
# Linear, with PyTorch's default initialisation), feed a batch through, and
# look at the size of the gradient that reaches the input, with and without
# the residual connection, for stacks of 6, 12 and 24 sublayers.

# %%
import torch
from torch import nn


def input_gradient_norm(residual: bool, depth: int, width: int = 64) -> float:
    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(width, 4 * width), nn.ReLU(), nn.Linear(4 * width, width)) for _ in range(depth)]
    x = torch.randn(32, width, requires_grad=True)
    h = x
    for block in blocks:
        h = h + block(h) if residual else block(h)
    h.pow(2).mean().backward()
    return x.grad.norm().item()


print("sublayers   gradient at the input: with residuals   without")
for depth in [6, 12, 24]:
    print(f"{depth:>9}   {input_gradient_norm(True, depth):>36.1e}   {input_gradient_norm(False, depth):.1e}")
assert input_gradient_norm(False, 24) < 1e-10 * input_gradient_norm(True, 24)

# %% [markdown]
# Without residuals the gradient shrinks by a roughly constant factor per
# sublayer, so exponentially with depth: after 24 sublayers almost nothing
# reaches the input, and the first layers cannot learn. With them, the
# identity path carries it through (here it even grows a little with depth,
# since each sublayer adds its own path). Normalisation inside the blocks,
# next, also keeps the signal's scale in check, but it is the residual path
# that lets transformers be 12, 24 or 96 layers deep.
#
# ## Layer normalisation
#
# Layer normalisation (Ba et al., 2016) rescales **each token's vector on its
# own**: over the D features of one position it subtracts their mean and
# divides by their standard deviation, then applies a learned scale γ and
# shift β (one number per feature):
#
# $$\text{LayerNorm}(x) = \gamma \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta,
# \qquad \mu = \frac{1}{D}\sum_i x_i,\quad \sigma^2 = \frac{1}{D}\sum_i (x_i - \mu)^2 .$$
#
# Note the variance divides by D, not D − 1, and ε (1e-5 in PyTorch, 1e-12 in
# BERT) keeps the division safe. Unlike batch normalisation, nothing is
# averaged across the batch or across positions, so a token's result does not
# depend on the other tokens or on the batch size, and training and inference
# compute the same thing. Here it is, written out, against `nn.LayerNorm`:

# %%
def layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # divided by D
    return gamma * (x - mean) / torch.sqrt(variance + eps) + beta


torch.manual_seed(0)
x = 3 + 5 * torch.randn(2, 4, 16)  # (batch, positions, width), far from mean 0 and variance 1
reference = nn.LayerNorm(16)
nn.init.normal_(reference.weight)
nn.init.normal_(reference.bias)
ours = layer_norm(x, reference.weight, reference.bias)
print("equal to nn.LayerNorm (max |difference| < 1e-5):", (ours - reference(x)).abs().max().item() < 1e-5)

plain = layer_norm(x, torch.ones(16), torch.zeros(16))  # γ = 1, β = 0
for name, values in [("before", x), ("after", plain)]:
    means, stds = values.mean(-1)[0], values.std(-1, unbiased=False)[0]
    print(f"{name:<6}  mean of each token: {means.abs().max():.1f} at most  std: {stds.min():.1f} to {stds.max():.1f}")

# %% [markdown]
# Every token now has mean 0 and standard deviation 1 (before γ and β). The
# reviewed version is `course_utils.transformer.LayerNorm`, a module with γ
# and β as parameters that hands the formula to PyTorch's fused kernel (one
# pass over the data instead of five: lesson 10 measures why that matters);
# unit tests check it against the formula and `nn.LayerNorm`.
#
# ## The feed-forward network
#
# The second sublayer is a small two-layer network applied to **each position
# separately and identically**: widen D to d_ff (4·D in the paper, 2048 for
# D = 512), apply a non-linearity (ReLU in the paper, GELU in BERT and GPT),
# narrow back to D:
#
# $$\text{FFN}(x) = \max(0,\, x W_1 + b_1)\, W_2 + b_2 .$$
#
# Attention mixes information *between* positions; the feed-forward network
# processes what each position has gathered. "Position-wise" is easy to check:
# the output at position 3 is the same whether we feed the whole sequence or
# position 3 alone.

# %%
from course_utils.transformer import FeedForward, TransformerConfig

small = TransformerConfig(d_model=64, num_heads=4, d_ff=256, dropout=0.1)
ffn = FeedForward(small).eval()
tokens = torch.randn(1, 10, 64)
alone = ffn(tokens[:, 3:4])[0, 0]
print("position 3, whole sequence vs alone, equal:", torch.allclose(ffn(tokens)[0, 3], alone, atol=1e-6))
ffn_parameters = sum(p.numel() for p in ffn.parameters())
print(f"feed-forward parameters: {ffn_parameters:,} = 2·D·d_ff + d_ff + D")

# %% [markdown]
# **Dropout** (probability 0.1 in the paper) is applied during training to
# the output of each sublayer before it is added to the residual, and to the
# sum of the embeddings and the positional encodings. Implementations such as
# PyTorch's (and ours) also drop inside the feed-forward network, after the
# non-linearity, and on the attention weights. In evaluation mode
# (`model.eval()`) dropout is switched off, and the same input gives the same
# output every time:

# %%
ffn.train()
print("training mode, two calls equal:", torch.equal(ffn(tokens), ffn(tokens)))
ffn.eval()
print("eval mode, two calls equal:    ", torch.equal(ffn(tokens), ffn(tokens)))

# %% [markdown]
# ## Where does the norm go? Three blocks
#
# With those pieces, an encoder layer is attention then feed-forward, each
# with its residual and its norm. The order of "add" and "norm" is the one
# real design choice, and three versions are in use:
#
# | name | one sublayer | where |
# |---|---|---|
# | **post-LN** | x ← LayerNorm(x + Sublayer(x)) | the 2017 paper, BERT |
# | **pre-LN** | x ← x + Sublayer(LayerNorm(x)) | GPT-2, GPT-3, Llama, most models since |
# | **parallel** | x ← LayerNorm(x + SelfAttention(x) + FeedForward(x)) | the formula some introductions give |
#
# The third deserves a word: some texts on transformers write the encoder
# layer as LayerNorm(x + SelfAttention(x) + FeedForward(x)). That is **not**
# the paper's block. In the paper the feed-forward network reads the output
# of the attention sublayer; here both read the same x, side by side, and
# one norm follows. Later models did adopt a parallel block (GPT-J, PaLM),
# in its pre-LN form x + SelfAttention(LN(x)) + FeedForward(LN(x)), because
# the two matrix multiplies can run at once.
#
# `course_utils.transformer.EncoderLayer` builds all three from one config
# field, `norm`. Here are the three written out with its sublayers, checked
# against the module:

# %%
from course_utils.transformer import EncoderLayer

torch.manual_seed(0)
x = torch.randn(2, 10, 64)
for norm in ["post", "pre", "parallel"]:
    layer = EncoderLayer(TransformerConfig(d_model=64, num_heads=4, d_ff=256, dropout=0.0, norm=norm)).eval()
    attention = lambda h: layer.self_attn(h)[0]
    if norm == "post":
        h = layer.norm1(x + attention(x))
        by_hand = layer.norm2(h + layer.feed_forward(h))
    elif norm == "pre":
        h = x + attention(layer.norm1(x))
        by_hand = h + layer.feed_forward(layer.norm2(h))
    else:
        by_hand = layer.norm1(x + attention(x) + layer.feed_forward(x))
    print(f"{norm:>8}: formula equals EncoderLayer(norm={norm!r}):", torch.allclose(by_hand, layer(x)[0], atol=1e-6))

# %% [markdown]
# One consequence is visible right away: a post-LN layer's output is always
# normalised, while a pre-LN layer adds to a residual stream that no norm
# touches. A pre-LN stack therefore ends with one extra LayerNorm (GPT-2's
# `ln_f`; `nn.Transformer` adds one to both stacks in either mode).
#
# ### Gradients at initialisation
#
# Xiong et al. (2020, *On Layer Normalization in the Transformer
# Architecture*) traced the need for warm-up to the gradients at
# initialisation: in a post-LN transformer the gradients of the parameters
# near the output are large, so a large learning rate makes the first steps
# unstable, and warm-up keeps those steps small until training has settled;
# in pre-LN the gradient is spread evenly over the layers. Let us measure it on a stack of 12 encoder
# layers with a causal mask, used as a character-level language model on a
# batch of Shakespeare: the gradient norm of each layer's parameters, at
# initialisation, for the three blocks.
#
# The small language model is defined here, in the notebook, because it is a
# tool for this experiment only: an embedding, learned positions, the stack,
# and a linear output layer.

# %%
import torch.nn.functional as F

from course_utils import data
from course_utils.attention import causal_mask
from course_utils.transformer import LayerNorm

text = data.shakespeare_splits()[0]
characters = sorted(set(text))
encoded = torch.tensor([characters.index(c) for c in text[:400_000]])  # the first 400,000 characters
print(f"{len(characters)} different characters; {len(encoded):,} for training")

CONTEXT = 32


class CharacterModel(nn.Module):
    """A stack of encoder layers with a causal mask: predicts each next character."""

    def __init__(self, config: TransformerConfig, layers: int):
        super().__init__()
        self.embed = nn.Embedding(len(characters), config.d_model)
        self.positions = nn.Parameter(torch.zeros(CONTEXT, config.d_model))
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(layers))
        self.final_norm = LayerNorm(config.d_model) if config.norm == "pre" else nn.Identity()
        self.out = nn.Linear(config.d_model, len(characters))

    def forward(self, ids):
        h = self.embed(ids) + self.positions[: ids.size(1)]
        for layer in self.layers:
            h, _ = layer(h, causal_mask(ids.size(1)))
        return self.out(self.final_norm(h))


def batches(seed: int, batch_size: int = 16):
    """next_batch(step) for the training loop: random windows of the text and the same shifted by one."""
    generator = torch.Generator().manual_seed(seed)

    def next_batch(step):
        starts = torch.randint(len(encoded) - CONTEXT - 1, (batch_size,), generator=generator)
        windows = torch.stack([encoded[s: s + CONTEXT + 1] for s in starts])
        return windows[:, :-1], windows[:, 1:]

    return next_batch


def next_character_loss(model, batch):
    inputs, targets = batch
    return F.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def layer_gradient_norms(norm: str, layers: int = 12) -> list[float]:
    torch.manual_seed(0)
    model = CharacterModel(TransformerConfig(d_model=32, num_heads=4, d_ff=128, dropout=0.0, norm=norm), layers)
    next_character_loss(model, batches(seed=0, batch_size=64)(1)).backward()
    return [torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item() for layer in model.layers]


gradient_norms = {norm: layer_gradient_norms(norm) for norm in ["post", "pre", "parallel"]}
figure, ax = plt.subplots()
for norm, norms in gradient_norms.items():
    ax.plot(range(1, 13), norms, marker="o", label=f"{norm}-LN" if norm != "parallel" else "parallel")
ax.set_xlabel("layer (1 = next to the input)")
ax.set_ylabel("gradient norm of the layer's parameters")
ax.set_title("Gradients at initialisation, 12 layers")
ax.legend()
plt.show()
for norm, norms in gradient_norms.items():
    print(f"{norm:>8}: last layer / first layer = {norms[-1] / norms[0]:.1f}")

# %% [markdown]
# At this size the difference is mild: post-LN's gradients are flat, a
# little larger near the output, and pre-LN's fall slowly from the input to
# the output (its residual stream passes every gradient back unchanged, so
# the first layers receive the sum of everything above them). The parallel
# block, being post-LN, behaves like post-LN. Xiong et al. find the contrast
# growing with depth; at 12 narrow layers the gradients alone would not
# predict much. Training does:
#
# ### Training with and without warm-up
#
# The remedy the paper used is **learning-rate warm-up**: start with a tiny
# learning rate and raise it over the first steps. We train the 12-layer
# character model four times for 200 steps with Adam at a deliberately high
# learning rate, 1e-2: post-LN and pre-LN, each with a constant learning
# rate and with a linear warm-up over the first 100 steps. Same data, same
# initial weights for each block, same batches. (About 30 seconds on a laptop
# CPU; the training loop is `course_utils.training.train`.)

# %%
# NBVAL_IGNORE_OUTPUT
from course_utils.training import linear_warmup, smooth, train

PEAK_LR, STEPS, WARMUP = 1e-2, 200, 100
curves = {}
for norm in ["post", "pre"]:
    for warmup in [False, True]:
        torch.manual_seed(0)
        model = CharacterModel(TransformerConfig(d_model=32, num_heads=4, d_ff=128, dropout=0.0, norm=norm), layers=12)
        optimizer = torch.optim.Adam(model.parameters(), lr=PEAK_LR, betas=(0.9, 0.98))
        name = f"{norm}-LN, " + ("warm-up" if warmup else "no warm-up")
        curves[name] = train(model, batches(seed=1), next_character_loss, optimizer, STEPS,
                             lr_at=linear_warmup(PEAK_LR, WARMUP) if warmup else None, desc=name)

final = {name: sum(losses[-25:]) / 25 for name, losses in curves.items()}
for name, loss in final.items():
    print(f"{name:<22} loss over the last 25 steps: {loss:.2f}")
assert final["post-LN, no warm-up"] > 3.0, "post-LN without warm-up should stay stuck near the unigram loss"
assert final["pre-LN, no warm-up"] < 2.7 and final["pre-LN, warm-up"] < 2.7, final

# %% [markdown]
# The curves, each point the mean loss of the 25 steps up to it. The dotted line is the loss of a model
# that ignores the context and predicts each character by its frequency in
# the text (the unigram entropy): a model at that line has learned nothing
# about sequences.

# %%
counts = torch.bincount(encoded, minlength=len(characters)).double()
frequencies = counts[counts > 0] / counts.sum()
unigram_loss = -(frequencies * frequencies.log()).sum().item()
print(f"unigram loss: {unigram_loss:.2f}")

figure, ax = plt.subplots()
for name, losses in curves.items():
    ax.plot(range(25, STEPS + 1), smooth(losses, window=25), label=name, ls="-" if "no warm-up" in name else "--")
ax.axhline(unigram_loss, color="gray", ls=":", label="unigram")
ax.set_xlabel("step")
ax.set_ylabel("training loss (smoothed)")
ax.set_title("12 layers, Adam at 1e-2")
ax.set_ylim(2.2, 4.5)
ax.legend()
plt.show()

# %% [markdown]
# What the four runs show:
#
# - **post-LN without warm-up** drops to the unigram loss within a few dozen
#   steps and stays there: it has learned how often each character occurs and
#   nothing about sequences. The large early steps pushed it into a state it
#   does not leave.
# - **post-LN with warm-up** starts slower and, in most runs, gets past that
#   plateau and learns. Not in every run: with other seeds (change the
#   `torch.manual_seed` and `batches` seeds) it sometimes stays stuck too at
#   this learning rate.
# - **pre-LN** learns with or without warm-up; here warm-up only costs it a
#   little time at the start.
#
# This is the practical reason most models since GPT-2 are pre-LN. It is not
# a law: at a lower learning rate post-LN trains without warm-up too (try
# 1e-3), and post-LN models such as BERT train well with warm-up. What
# generalises is the pairing: post-LN needs warm-up and a careful learning
# rate; pre-LN is forgiving.
#
# ## Encoder and decoder layers, equal to PyTorch's
#
# `course_utils.transformer` holds the reviewed layers that the next lessons
# build on: `EncoderLayer`, `DecoderLayer` (masked self-attention,
# cross-attention on the memory, feed-forward), the `Encoder` and `Decoder`
# stacks (each ending with a LayerNorm, as in PyTorch) and `EncoderDecoder`,
# the part of the model that `nn.Transformer` implements. Their weights are
# laid out so that `load_torch_weights` copies PyTorch's modules one to one.
# Here they are, compared with copied weights, with a padded source batch, a
# padded target batch and the causal mask, in both norm placements.
# (PyTorch's masks mean "True = masked out", the opposite of ours.)

# %%
import warnings

from course_utils.attention import padding_mask
from course_utils.transformer import DecoderLayer, EncoderDecoder, load_torch_weights

warnings.filterwarnings("ignore", message=".*enable_nested_tensor.*")
source_tokens = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])  # the second source sentence has 3 pads
target_tokens = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
source, target = torch.randn(2, 7, 64), torch.randn(2, 5, 64)
ours_masks = dict(source_mask=padding_mask(source_tokens), target_mask=causal_mask(5) & padding_mask(target_tokens),
                  memory_mask=padding_mask(source_tokens))
torch_masks = dict(src_key_padding_mask=source_tokens == 0, tgt_key_padding_mask=target_tokens == 0,
                   memory_key_padding_mask=source_tokens == 0, tgt_mask=~causal_mask(5))

for norm in ["post", "pre"]:
    config = TransformerConfig(d_model=64, num_heads=4, d_ff=256, num_encoder_layers=2, num_decoder_layers=2,
                               dropout=0.0, norm=norm)
    torch_kwargs = dict(d_model=64, nhead=4, dim_feedforward=256, dropout=0.0, batch_first=True, norm_first=norm == "pre")
    torch.manual_seed(1)
    torch_encoder_layer = nn.TransformerEncoderLayer(**torch_kwargs).train()  # train(): PyTorch's eval fast path zeroes pads
    torch_decoder_layer = nn.TransformerDecoderLayer(**torch_kwargs)
    torch_model = nn.Transformer(num_encoder_layers=2, num_decoder_layers=2, **torch_kwargs).train()
    encoder_layer = load_torch_weights(EncoderLayer(config), torch_encoder_layer)
    decoder_layer = load_torch_weights(DecoderLayer(config), torch_decoder_layer)
    model = load_torch_weights(EncoderDecoder(config), torch_model)
    with torch.no_grad():
        differences = {
            "EncoderLayer": encoder_layer(source, ours_masks["source_mask"])[0]
            - torch_encoder_layer(source, src_key_padding_mask=torch_masks["src_key_padding_mask"]),
            "DecoderLayer": decoder_layer(target, source, ours_masks["target_mask"], ours_masks["memory_mask"])[0]
            - torch_decoder_layer(target, source, tgt_mask=torch_masks["tgt_mask"],
                                  tgt_key_padding_mask=torch_masks["tgt_key_padding_mask"],
                                  memory_key_padding_mask=torch_masks["memory_key_padding_mask"]),
            "EncoderDecoder": model(source, target, **ours_masks) - torch_model(source, target, **torch_masks),
        }
    for name, difference in differences.items():
        print(f"{norm}-LN {name:<15} equals PyTorch's (max |difference| < 1e-5): {difference.abs().max().item() < 1e-5}")

# %% [markdown]
# The unit tests (`tests/test_transformer.py`) check the same equalities for
# the gradients of every parameter too.
#
# ## Counting parameters
#
# Every parameter of the model follows from its configuration. Per encoder
# layer: the attention has four D×D matrices and four biases, the
# feed-forward network 2·D·d_ff weights and d_ff + D biases, and each of the
# two LayerNorms 2·D (γ and β). A decoder layer has a second attention and a
# third norm. Here is the count for the paper's base model (D = 512, 8 heads,
# d_ff = 2048, 6 + 6 layers), with the shared source-target vocabulary of
# about 37,000 BPE tokens that the paper used for English-German (one
# embedding table, shared by both sides and by the output layer):

# %%
from course_utils.transformer import parameter_counts

base = TransformerConfig()  # the defaults are the paper's base model
for part, count in parameter_counts(base, vocab_size=37_000).items():
    print(f"{part:<38} {count:>12,}")
pytorch_count = sum(p.numel() for p in nn.Transformer(batch_first=True).parameters())
print(f"\nnn.Transformer() (no embeddings):      {pytorch_count:>12,}")
print("equal to our count without embeddings:", pytorch_count == parameter_counts(base)["total"])

# %% [markdown]
# About 63 million. The paper's Table 3 gives 65 million for the base model;
# the gap is within what the paper leaves unsaid (its exact vocabulary size
# and what it counted). Two things stand out: the decoder layer is a third
# larger than the encoder layer (its second attention), and the feed-forward
# network holds two thirds of an encoder layer's weights (half of a decoder
# layer's). The embedding table alone is 30% of the model; the paper shares
# one table between the source side, the target side and the output layer
# (after Press and Wolf, 2017), which saves two more tables of that size.
#
# ## Exercise: wire a decoder layer
#
# The sublayers are given in `__init__`: `self_attn` and `cross_attn` are
# `course_utils.attention.MultiHeadAttention` modules (call them as
# `attn(query, key, value, mask=...)`; they return `(output, weights)`, and
# with key and value left out they attend over the query itself),
# `feed_forward` is the position-wise network and `norm1` to `norm3` are the
# LayerNorms. Write `forward(x, memory, self_mask, memory_mask)` for the
# **post-LN** decoder layer of the paper:
#
# 1. masked self-attention over x, with `self_mask`;
# 2. cross-attention in which the decoder asks and the encoder's output
#    (`memory`) answers, with `memory_mask`;
# 3. the feed-forward network;
#
# each wrapped as LayerNorm(x + sublayer(x)). Return the new x, shaped like
# the input x. The checker copies the reviewed layer's weights into yours, and
# if your output is wrong it tells you which classic slip it matches.

# %%
from course_utils.attention import MultiHeadAttention


class MyDecoderLayer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.self_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.cross_attn = MultiHeadAttention(config.d_model, config.num_heads)
        self.feed_forward = FeedForward(config)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(config.d_model) for _ in range(3))

    def forward(self, x, memory, self_mask=None, memory_mask=None):
        # BEGIN SOLUTION
        x = self.norm1(x + self.self_attn(x, mask=self_mask)[0])
        x = self.norm2(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm3(x + self.feed_forward(x))
        # END SOLUTION


# %%
from course_utils.classroom.checks.transformer import check_decoder_layer

check_decoder_layer(MyDecoderLayer)

# %% [markdown]
# ## Quiz
#
# Interactive in JupyterLab; your graded answers go in the cell below it.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("06")

# %%
# BEGIN SOLUTION
answer("06.cross-attention", "C")
answer("06.norm-count", 80)
answer("06.pre-ln", ["A", "B"])
answer("06.ffn-parameters", 2099712)
answer("06.no-causal-mask", "B")
answer("06.swap-tokens", "A")
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - A transformer layer is sublayers in residual wrappers: attention mixes
#   information between positions, the **feed-forward network** processes each
#   position alone (two thirds of an encoder layer's weights), and every sublayer's
#   input is **added back** to its output.
# - **Residual connections** give the gradient a path around each sublayer:
#   through 24 plain sublayers without them, the gradient reaching the input
#   shrank by a constant factor per sublayer, to almost nothing.
# - **LayerNorm** normalises each token's vector over its D features (variance
#   divided by D), then scales by γ and shifts by β; nothing is averaged over
#   the batch.
# - **Post-LN** (the paper, BERT) normalises after the residual sum; **pre-LN**
#   (GPT-2 and most models since) normalises the sublayer's input and needs a
#   final norm; the "parallel" formula LayerNorm(x + Attention(x) + FFN(x)) is
#   a different block, not the paper's. In our 12-layer runs at a high
#   learning rate, post-LN without warm-up stayed stuck at the unigram loss,
#   warm-up usually rescued it, and pre-LN learned either way.
# - The three attentions of the encoder-decoder: encoder self-attention,
#   masked decoder self-attention, and cross-attention (queries from the
#   decoder, keys and values from the encoder's output).
# - Our layers equal `nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer`
#   and `nn.Transformer` with copied weights; the paper's base model has about
#   63 million parameters by our count. Lesson 07 trains the whole
#   encoder-decoder.
