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
# # 01 · Tokens and embeddings
#
# A transformer never sees letters. Before its first layer, text goes through
# three steps: it is cut into **tokens**, each token is replaced by its **id**
# (its row number in a fixed vocabulary), and each id is replaced by a learned
# vector, its **embedding**. This lesson takes those steps one at a time, on
# Shakespeare and with the real tokenizer and embedding matrix of the
# pretrained MiniLM encoder that later lessons open up.
#
# **In this lesson you will**
#
# - split text into words, and measure why a word vocabulary fails on plays it
#   has never read;
# - tokenize with the pretrained encoder's own WordPiece tokenizer: subwords,
#   `[CLS]` and `[SEP]`, padding, attention masks and truncation;
# - write byte-level BPE yourself, the loop that learns merges and the function
#   that applies them to a new word, check both against the `tokenizers`
#   library on Shakespeare, and measure how the size of the vocabulary trades
#   against the length of the sequences;
# - turn ids into one-hot vectors, and see that one-hot times a matrix is an
#   embedding lookup, exactly what `nn.Embedding` computes;
# - find the nearest neighbours of words in the pretrained encoder's embedding
#   matrix.

# %%
from course_utils import setup_notebook

device = setup_notebook(seed=0)

# %% [markdown]
# ## Words: the simplest tokens
#
# Lesson 00 measured the flaw of a word vocabulary: built from every word of
# the 34 training plays, it leaves 4.6% of the running words of the four
# held-out plays unknown, and the commonest of them are the names of the new
# plays' characters. Names are not all. The cell below rebuilds that
# vocabulary (the table at the end of this lesson compares it with subwords)
# and looks up a few ordinary words of *Macbeth*.

# %%
import collections

from course_utils import data

train_text, validation_text = data.shakespeare_splits()
train_counts = data.word_counts(train_text)
validation_words = data.words(validation_text)
unknown = collections.Counter(word for word in validation_words if word not in train_counts)
print(f"unknown: {unknown.total() / len(validation_words):.1%} of the validation plays' running words")
for word in ("cauldron", "nightgown", "equivocator"):
    print(f"{word:<12} in the validation plays {unknown[word]} times, in the training plays {train_counts[word]} times")

# %% [markdown]
# Every one of those words would become the same "unknown" token, and a name
# that carries the plot is exactly what a model should not lose. Words have a
# second flaw: splitting on letters throws away case, punctuation and line
# breaks, so the text cannot be written back from its tokens.
#
# The other extreme is characters: a tiny vocabulary and nothing is ever
# unknown, but every sequence becomes about five times longer, and attention's
# cost grows with the square of the length (lesson 11 measures it).

# %%
characters = sorted(set(train_text))
print(f"{len(characters)} distinct characters in the training plays")
print(f"characters of the validation plays that the training plays lack: {len(set(validation_text) - set(characters))}")
print(f"{len(validation_text) / len(validation_words):.2f} characters per word in the validation plays")

# %% [markdown]
# **Subword** tokenizers sit between the two. Frequent words get a token of
# their own; a rare word is cut into a few frequent pieces, so nothing is
# unknown and sequences stay short. Both tokenizers below learn their pieces
# from data: WordPiece (BERT's) and BPE (GPT's).
#
# ## WordPiece: the pretrained encoder's tokenizer
#
# The pretrained encoder of this course, all-MiniLM-L6-v2, is a small BERT. Its
# tokenizer is WordPiece with a vocabulary of 30,522 entries learned from
# English Wikipedia and books. It lower-cases the text, splits it on spaces and
# punctuation, then cuts each word greedily into the longest pieces that its
# vocabulary holds; a piece that continues a word starts with `##`.
# `load_encoder()` returns the tokenizer and the model, both read from the local
# package folder (we use the model at the end of the lesson).

# %%
from course_utils.pretrained import load_encoder

tokenizer, encoder = load_encoder()
print(f"WordPiece vocabulary: {tokenizer.vocab_size:,} entries, "
      f"{sum(token.startswith('##') for token in tokenizer.get_vocab()):,} of them start with ##")

line = "Double, double toil and trouble; Fire burn and cauldron bubble."
print(tokenizer.tokenize(line))

# %% [markdown]
# *Cauldron*, unknown to our word vocabulary, is now `ca ##uld ##ron`; *toil*
# is `to ##il`. Common words are whole, and punctuation marks are tokens of
# their own.
#
# Calling the tokenizer does the whole job: tokens become ids, and two special
# tokens are added. `[CLS]` (id 101) opens every sequence; in BERT's
# pre-training its output vector feeds the next-sentence prediction (lesson
# 08). `[SEP]` (id 102) closes the sequence, and separates the two sentences of
# a pair. Decoding the ids gives the text back, lower-cased: case was thrown
# away at the first step.

# %%
encoded = tokenizer("Out, damned spot!")
print("input_ids:", encoded["input_ids"])
print("tokens:   ", tokenizer.convert_ids_to_tokens(encoded["input_ids"]))
print("decoded:  ", tokenizer.decode(encoded["input_ids"]))

# %% [markdown]
# `[CLS]` is not where this particular encoder puts its summary, though. As a
# sentence encoder, all-MiniLM-L6-v2 makes one vector per sentence by
# averaging the output vectors of all real tokens (a *mean pool* that uses the
# attention mask, below, to skip padding). Its package says so in the pooling
# configuration that ships with the weights:

# %%
import json

pooling = json.loads((data.encoder_path() / "1_Pooling" / "config.json").read_text())
print({mode: on for mode, on in pooling.items() if mode.startswith("pooling_mode")})

# %% [markdown]
# ## Batches: padding, attention masks and truncation
#
# A model processes many sequences at once, stacked into one tensor, and a
# tensor is a rectangle. `padding=True` fills the shorter sequences with
# `[PAD]` (id 0) up to the longest one. The tokenizer also returns an
# **attention mask**: 1 for a real token, 0 for padding. Attention will use it
# (lesson 03) so that no real token ever looks at padding, and the padded
# sequence gives the same result as the sequence alone.

# %%
lines = ["Out, damned spot!", "Is this a dagger which I see before me?", "Fair is foul, and foul is fair."]
batch = tokenizer(lines, padding=True, return_tensors="pt")
print("input_ids", tuple(batch["input_ids"].shape))
print(batch["input_ids"])
print("attention_mask")
print(batch["attention_mask"])

# %% [markdown]
# The same batch as a picture: each row is one line, each column a position.
# Blue cells are real tokens (mask 1), grey cells padding (mask 0).

# %%
import matplotlib.pyplot as plt

from matplotlib.colors import ListedColormap

mask = batch["attention_mask"]
fig, ax = plt.subplots(figsize=(10, 1.8))
ax.imshow(mask, cmap=ListedColormap(["#e6e6e6", "#9ecae1"]), vmin=0, vmax=1, aspect="auto")  # grey, light blue
for row, ids in enumerate(batch["input_ids"]):
    for column, token in enumerate(tokenizer.convert_ids_to_tokens(ids)):
        colour = "black" if mask[row, column] else "dimgrey"
        ax.text(column, row, token, ha="center", va="center", fontsize=9, color=colour)
ax.set_xticks(range(mask.shape[1]))
ax.set_yticks(range(len(lines)), [f"line {i}" for i in range(len(lines))])
ax.set_xlabel("position")
ax.set_title("A padded batch: real tokens (mask 1) in blue, [PAD] (mask 0) in grey")
ax.grid(False)
plt.show()

# %% [markdown]
# The other way round, **truncation** cuts sequences longer than a limit: BERT
# has learned positions for 512 tokens and no more (and sentence-transformers
# feeds this encoder at most 256). With `truncation=True` and `max_length`, the
# tokenizer keeps the first tokens and still closes the sequence with `[SEP]`.

# %%
long_line = "Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day"
print(tokenizer.convert_ids_to_tokens(tokenizer(long_line, truncation=True, max_length=8)["input_ids"]))
print(f"untruncated: {len(tokenizer(long_line)['input_ids'])} tokens")

# %% [markdown]
# ## BPE: learning subwords from Shakespeare
#
# **Byte-pair encoding** (Sennrich et al., 2016, who brought it from data
# compression to translation) builds its vocabulary from the bottom up. Start with
# single characters. Count every pair of neighbouring symbols in the training
# text, merge the most frequent pair into one new symbol everywhere, and
# repeat: each merge adds one entry to the vocabulary. Frequent words end up as
# one symbol; rare ones stay in pieces.
#
# We use the byte-level variant of GPT-2. The text is first cut into pieces:
# before spaces and punctuation (a space stays glued to the word after it), and
# before the English endings `'s`, `'t`, `'re`, `'ve`, `'m`, `'ll` and `'d`, so
# *Who's* becomes *Who* and *'s*. Each byte is written as one printable
# character: a space shows as `Ġ`, a line break as `Ċ`. Merges never cross
# these pieces. The endings are matched case-sensitively, as GPT-2's rule was
# written for modern English: in *'Tis* the `'T` is not one of them, so the
# apostrophe stands alone, while the lower-case *'tis* is cut into the ending
# `'t` and *is*, and *WHO'S* keeps `'` and `S` apart. Here is that
# pre-tokenizer on lines of *Hamlet*, which writes *'tis* more often than
# *'Tis*, and `tokenization.pre_tokenize` counting the pieces of the whole play.

# %%
import re

from course_utils import tokenization

print(tokenization.pieces("'Tis now struck twelve. Who's there? I'll go."))
print(tokenization.pieces("'tis bitter cold. WHO'S THERE?"))
hamlet = data.plays()["hamlet"]
print("in Hamlet: 'tis", len(re.findall(r"'tis\b", hamlet)), "times, 'Tis", len(re.findall(r"'Tis\b", hamlet)), "times")
hamlet_pieces = tokenization.pre_tokenize(hamlet)
print(f"{hamlet_pieces.total():,} pieces, {len(hamlet_pieces):,} distinct:", hamlet_pieces.most_common(8))

# %% [markdown]
# ## Exercise: learn BPE merges
#
# Now write the algorithm yourself. `learn_bpe(piece_counts, num_merges)`
# receives a table like the one above, each piece with how often it occurs,
# and returns the list of merges it learned, in order, each a pair of strings
# `(left, right)`. The steps:
#
# 1. Write every piece as a tuple of its characters: `"Ġthe"` is
#    `("Ġ", "t", "h", "e")`.
# 2. Count every pair of neighbouring symbols *inside* each piece. A piece that
#    occurs 900 times contributes 900 to each of its pairs.
# 3. Take the most frequent pair, append it to the merges, and rewrite every
#    piece with each occurrence of the pair (left to right) replaced by one
#    symbol: `("Ġ", "t", "h", "e")` becomes `("Ġt", "h", "e")` after `("Ġ", "t")`.
# 4. Repeat from step 2 until you have `num_merges` merges (or no pair is left).
#
# When two pairs are equally frequent, take either: the checker accepts any
# most frequent pair. It first runs your function on a small table, then on
# every fourth line of *Hamlet*, where it compares your 200 merges with those of
# the `tokenizers` library. It takes a few seconds.

# %%
def learn_bpe(piece_counts, num_merges):
    """The first `num_merges` BPE merges of {piece: count}, as (left, right) pairs, in order."""
    # BEGIN SOLUTION
    def merge(symbols, pair):
        merged, i = [], 0
        while i < len(symbols):
            if symbols[i:i + 2] == pair:
                merged.append(pair[0] + pair[1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        return tuple(merged)

    words = {tuple(piece): count for piece, count in piece_counts.items()}
    merges = []
    while len(merges) < num_merges:
        pairs = collections.Counter()
        for symbols, count in words.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] += count
        if not pairs:
            break
        best = max(pairs, key=pairs.get)
        merges.append(best)
        words = {merge(symbols, best): count for symbols, count in words.items()}
    return merges
    # END SOLUTION


# %%
from course_utils.classroom.checks.tokens import check_embed, check_encode, check_learn_bpe, check_one_hot

check_learn_bpe(learn_bpe)

# %% [markdown]
# Twelve merges on the whole of *Hamlet*, learned by your `learn_bpe` once it
# passes its checks, and until then by the reviewed `tokenization.learn_bpe`
# (`yours_if_passed` chooses, and says which): the first joins a space and a t (`Ġ t`, how every word that starts with
# t begins), the second `h e`, and the eleventh joins those two into `Ġthe`,
# the commonest word of English. The `tokenizers` library does the same in
# Rust, much faster. `tokenization.train_bpe` sets it up (byte-level pieces,
# five special tokens, all 256 bytes in the starting vocabulary), so a
# vocabulary of 256 + 5 + 12 entries means twelve merges. They are the same
# twelve, in the same order. The library breaks ties in a fixed way (single
# characters rank by code point, merged symbols by the order they were made,
# and the pair of lower-ranked symbols wins), as the reviewed
# `tokenization.learn_bpe` does, which a unit test checks over 150 merges on
# two plays. Your checker accepts any most frequent pair at a tie, so where
# yours breaks ties another way, the line below can say False: look at the
# first merge where the two lists differ.

# %%
from course_utils.classroom.checks import yours_if_passed

merges = yours_if_passed(learn_bpe, "01.learn_bpe", tokenization.learn_bpe)(hamlet_pieces, 12)
print(merges)
library = tokenization.train_bpe([data.plays()["hamlet"]], vocab_size=256 + 5 + 12)
print("the same as the tokenizers library:", tokenization.bpe_merges(library) == merges)

# %% [markdown]
# ## Exercise: cut a new word with the merges
#
# Learning is half of BPE; the other half cuts text it has never seen. Write
# `encode(piece, merges)`: start from the characters of `piece`, then, as long
# as some neighbouring pair is one of the `merges`, merge the pair that was
# learned **first** (the lowest position in `merges`), every occurrence of it,
# and look again. Return the list of symbols. How often a pair occurs in this
# piece does not matter, only its rank. For example, with the merges
# `[("a", "r"), ("b", "ar"), ("o", "u"), ("ou", "s")]`, `"barbarous"` gives
# `["bar", "bar", "ous"]`.
#
# The checker compares your pieces with the `tokenizers` library's on 400
# pieces of *Macbeth* that the sample of *Hamlet* never contains.

# %%
def encode(piece, merges):
    """The symbols of `piece` after applying the learned `merges` (a list of pairs, in learned order)."""
    # BEGIN SOLUTION
    rank = {pair: number for number, pair in enumerate(merges)}
    symbols = list(piece)
    while True:
        learned = [pair for pair in zip(symbols, symbols[1:]) if pair in rank]
        if not learned:
            return symbols
        first = min(learned, key=rank.get)
        merged, i = [], 0
        while i < len(symbols):
            if tuple(symbols[i:i + 2]) == first:
                merged.append(first[0] + first[1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    # END SOLUTION


# %%
check_encode(encode)

# %% [markdown]
# A word of *Macbeth* that *Hamlet* never uses, cut with the first merges
# learned on *Hamlet* (2,000 of them, by the library, for speed), by your
# `encode` once it passes (else by its reviewed twin, `tokenization.apply_bpe`).
# The more merges, the longer the pieces; the word is never unknown.

# %%
cut = yours_if_passed(encode, "01.encode", tokenization.apply_bpe)
hamlet_merges = tokenization.bpe_merges(tokenization.train_bpe([data.plays()["hamlet"]], vocab_size=256 + 5 + 2000))
for count in (0, 12, 100, 500, 2000):
    print(f"{count:>5,} merges: {cut('Ġequivocator', hamlet_merges[:count])}")

# %% [markdown]
# Now the real thing: a BPE with 8,000 tokens trained on all 34 training
# plays. Training takes a few seconds; `shakespeare_bpe()` caches the result in
# a file, so from the second run on it loads in milliseconds. Its first five
# ids are special tokens for later lessons: `[PAD]`, `[CLS]`, `[SEP]` and
# `[MASK]` for BERT, `<|endoftext|>` for GPT.

# %%
bpe = tokenization.shakespeare_bpe(vocab_size=8000)
print(f"vocabulary: {bpe.get_vocab_size():,} tokens; special: {[bpe.id_to_token(i) for i in range(5)]}")
print(bpe.encode(line).tokens)

# %% [markdown]
# Compare with WordPiece on the same line. BPE keeps case and spaces, so
# `Double` at the start of a line (no space, capital D) is a different and
# rarer string than `Ġdouble`, and comes out in pieces. Trained on
# Shakespeare, it knows `Ġtoil` as one token, where WordPiece needed two. And
# since it throws nothing away, decoding gives back the exact text, line
# breaks included, which is what a model that writes text (GPT, lesson 10)
# needs.

# %%
speech = data.plays()["macbeth"][:300]
ids = bpe.encode(speech).ids
print(f"{len(speech)} characters -> {len(ids)} tokens; decode(encode(text)) == text: {bpe.decode(ids) == speech}")
print(f"WordPiece gives back: {tokenizer.decode(tokenizer(speech)['input_ids'], skip_special_tokens=True)[:70]!r}...")

# %% [markdown]
# ### How WordPiece learns its pieces
#
# WordPiece learns its vocabulary by merging pairs too, but the papers that
# introduced it (Schuster & Nakajima, 2012; Wu et al., 2016, for Google's
# translation system) merge the pair whose merge most raises the likelihood
# of the training text under a unigram model (every piece drawn on its own,
# with its frequency as probability), not simply the most frequent pair. The
# Hugging Face course (chapter 6) teaches a shortcut for that rule, the score
# count(ab) / (count(a) · count(b)), which favours two symbols that are rare
# apart but often together. We compare the three rules on the course's five
# words (`##` marks a piece inside a word): for every pair, its count, the
# shortcut's score, and the exact gain in log-likelihood, measured by making
# the merge and counting again. Then we ask the `tokenizers` library's
# `WordPieceTrainer`, the one lesson 08 trains BERT's vocabulary with, which
# pair it merges first.

# %%
import math

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

toy_words = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
toy_symbols = {word: [word[0]] + ["##" + letter for letter in word[1:]] for word in toy_words}


def symbol_counts(symbols):
    """How often each piece occurs, over all the words (each word weighted by its count)."""
    counts = collections.Counter()
    for word, count in toy_words.items():
        for symbol in symbols[word]:
            counts[symbol] += count
    return counts


def log_likelihood(symbols):
    """The training words' log-likelihood under a unigram model of their pieces."""
    counts = symbol_counts(symbols)
    total = sum(counts.values())
    return sum(count * math.log(count / total) for count in counts.values())


def merge_pair(symbols, pair):
    """Every word's pieces with each occurrence of `pair` joined into one."""
    merged = {}
    for word, pieces in symbols.items():
        joined = []
        for piece in pieces:
            if joined and (joined[-1], piece) == pair:
                joined[-1] += piece.removeprefix("##")
            else:
                joined.append(piece)
        merged[word] = joined
    return merged


pair_counts = collections.Counter()
for word, count in toy_words.items():
    for pair in zip(toy_symbols[word], toy_symbols[word][1:]):
        pair_counts[pair] += count
single = symbol_counts(toy_symbols)
print(f"{'pair':<16} {'count':>5} {'HF course score':>16} {'likelihood gain':>16}")
for pair, count in pair_counts.most_common():
    gain = log_likelihood(merge_pair(toy_symbols, pair)) - log_likelihood(toy_symbols)
    print(f"{' '.join(pair):<16} {count:>5} {count / (single[pair[0]] * single[pair[1]]):>16.4f} {gain:>16.2f}")


def library_vocabulary(size):
    """The pieces that the library's WordPieceTrainer keeps, at most `size` of them."""
    toy_tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    toy_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    toy_tokenizer.train_from_iterator([word for word, count in toy_words.items() for _ in range(count)],
                                      trainers.WordPieceTrainer(vocab_size=size, special_tokens=["[UNK]"], show_progress=False))
    return set(toy_tokenizer.get_vocab())


alphabet = library_vocabulary(1)  # a trainer never goes below [UNK] and the letters, with and without ##
print("the tokenizers library's WordPieceTrainer merges first:", library_vocabulary(len(alphabet) + 1) - alphabet)

# %% [markdown]
# The likelihood rule and BPE agree here: `##u ##g` is both the most frequent
# pair (20 times) and the one whose merge raises the log-likelihood most
# (28.0). The shortcut disagrees: it ties every pair that contains `##u`
# (at 0.0278) and picks `##g ##s` (0.05, since the only `s` follows a `g`),
# whose merge gains the second least (9.2). So the score in the Hugging Face
# course is a shortcut, not the papers' rule, and on other words the three
# rules can disagree in other ways. The library merges `##u ##g` first too:
# its `WordPieceTrainer` counts pairs as BPE does (it is built on its BPE
# trainer) and only writes the result in WordPiece's format. Google never
# published its own training code, as the Hugging Face course notes. What
# makes a tokenizer
# WordPiece in practice is how it *cuts* a word, greedily into the longest
# pieces it knows (above), rather than how its pieces were learned.
#
# ## Comparing the tokenizers
#
# On the validation plays, which neither the word vocabulary nor our BPE has
# seen: how many tokens does a word cost on average, and how much is lost? The
# counts include punctuation. BPE also spends tokens on line breaks, which
# WordPiece drops (and so cannot restore); the table shows that share
# separately. WordPiece's count is taken line by line, as the encoder reads
# lines, not whole plays.

# %%
bpe_ids = bpe.encode(validation_text).ids
whitespace_ids = {i for token, i in bpe.get_vocab().items() if set(token) <= {"Ġ", "Ċ", "ĉ"}}
wordpiece_ids = tokenizer(validation_text.splitlines(), add_special_tokens=False)["input_ids"]
wordpiece_count = sum(map(len, wordpiece_ids))
unk_count = sum(ids.count(tokenizer.unk_token_id) for ids in wordpiece_ids)
n_words = len(validation_words)

rows = [  # name, vocabulary size, tokens, unknown tokens, exact text back
    ("words", len(train_counts), n_words, unknown.total(), "no"),
    ("characters", len(characters), len(validation_text), 0, "yes"),
    ("WordPiece (MiniLM)", tokenizer.vocab_size, wordpiece_count, unk_count, "no (lower case, no line breaks)"),
    ("BPE (Shakespeare)", bpe.get_vocab_size(), len(bpe_ids), 0, "yes"),
]
print(f"{'tokenizer':<18}{'vocabulary':>11}{'tokens/word':>13}{'unknown':>9}  exact text back")
for name, vocabulary_size, tokens, unknown_tokens, exact in rows:
    print(f"{name:<18}{vocabulary_size:>11,}{tokens / n_words:>13.2f}{unknown_tokens / n_words:>9.1%}  {exact}")
whitespace = sum(i in whitespace_ids for i in bpe_ids)
print(f"   of which spaces and line breaks: {whitespace / n_words:.2f} tokens per word")

# %% [markdown]
# How does each tokenizer cut the words that the training plays never
# contained? BPE has never seen them either, and both tokenizers still cut them
# into known pieces. WordPiece, trained on far more English, often finds longer
# pieces.

# %%
rare = ["cauldron", "incarnadine", "equivocator", "nightgown", "housekeeper", "avarice", "macbeth", "thane"]
print(f"{'word':<13}{'WordPiece':<32}BPE (with its leading space)")
for word in rare:
    print(f"{word:<13}{' '.join(tokenizer.tokenize(word)):<32}{' '.join(bpe.encode(' ' + word).tokens)}")

# %% [markdown]
# This is Zipf's law at work. Group the words of the validation plays by how
# often they occur in the training plays, and count the pieces per word: the
# thousand commonest words, three running words in four, cost about one token
# each; the long tail is cut into two or three pieces.

# %%
top_thousand = {word for word, _ in train_counts.most_common(1000)}
validation_counts = data.word_counts(validation_text)
bands = {
    "1,000 most frequent": [w for w in validation_counts if w in top_thousand],
    "seen once in training": [w for w in validation_counts if train_counts[w] == 1],
    "never seen in training": [w for w in validation_counts if w not in train_counts],
}


def pieces_per_word(split, words):
    """The average number of pieces, over the running words of the validation plays."""
    return sum(len(split(w)) * validation_counts[w] for w in words) / sum(validation_counts[w] for w in words)


print(f"{'words of the validation plays':<30}{'share':>7}{'WordPiece':>11}{'BPE':>6}   tokens per word")
for band, words in bands.items():
    share = sum(validation_counts[w] for w in words) / n_words
    wordpiece = pieces_per_word(tokenizer.tokenize, words)
    bpe_pieces = pieces_per_word(lambda w: bpe.encode(" " + w).ids, words)
    print(f"{band:<30}{share:>7.1%}{wordpiece:>11.2f}{bpe_pieces:>6.2f}")

# %% [markdown]
# ## Vocabulary size against sequence length
#
# The vocabulary size is a dial. More merges make longer tokens and shorter
# sequences, but every token needs its own row in the embedding matrix (and, in
# a model that writes text, its own output score), and rare tokens are seen too
# seldom to learn good vectors. The cell trains our BPE at eight sizes, from
# 261 (the 256 bytes and 5 special tokens, no merge at all) to 32,000, and
# measures tokens per word on the validation plays. Each size is cached after
# its first training (about two seconds each).

# %%
sizes = [261, 500, 1000, 2000, 4000, 8000, 16000, 32000]
tokens_per_word = [len(tokenization.shakespeare_bpe(size).encode(validation_text).ids) / n_words for size in sizes]
for size, value in zip(sizes, tokens_per_word):
    print(f"vocabulary {size:>6,}: {value:.2f} tokens per word")

# %% [markdown]
# The first merges pay the most: going from bytes to 1,000 tokens more than
# halves the length of every sequence; going from 8,000 to 32,000, four times
# the vocabulary, saves only about 8% more. That flattening is why 8,000 is
# plenty for one author, and why BERT (about 30,000 tokens) and GPT-2 (about
# 50,000) stopped there for English. Today's large models read many languages
# and code, and use about 100,000 to 260,000 tokens (GPT-4's tokenizer about
# 100,000, Llama 3's 128,000, Gemma's 256,000): for them the embedding matrix
# is a small part of the model, and shorter sequences are worth it.

# %%
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.semilogx(sizes, tokens_per_word, "o-", color="#4C72B0", label="BPE trained on Shakespeare")
ax.semilogx([tokenizer.vocab_size], [wordpiece_count / n_words], "s", color="#C44E52",
            label="WordPiece of MiniLM (no line breaks)")
ax.axhline(1, color="grey", linestyle="--", linewidth=1, label="one token per word")
ax.set_xlabel("vocabulary size (log scale)")
ax.set_ylabel("tokens per word\n(validation plays)")
ax.set_title("A bigger vocabulary gives shorter sequences, with diminishing returns")
ax.legend()
plt.show()

# %% [markdown]
# ## From ids to vectors: one-hot
#
# An id is a name, not a quantity: `love` is id 2293 and `data` id 2951, but
# that says nothing about either word, and a model that multiplied ids would be
# computing nonsense. The first honest numeric form of an id is a **one-hot
# vector**: as long as the vocabulary, all zeros except a 1 at the position of
# the id. All one-hot vectors are equally far apart; they carry identity and
# nothing else.
#
# ## Exercise: one-hot vectors
#
# Write `one_hot(ids, vocab_size)`: for a tensor of integer ids of any shape, it
# returns a **float** tensor with one more dimension, of size `vocab_size`,
# holding one-hot vectors. For `ids = torch.tensor([2, 0, 1])` and
# `vocab_size=5`, the result has shape `(3, 5)` and row 0 is
# `[0., 0., 1., 0., 0.]`.
#
# Think of it as a comparison: entry j of the one-hot vector of id i is 1
# exactly where j equals i, and broadcasting lets one comparison build every
# vector at once. (PyTorch also has a ready-made function; if you use it, read
# what dtype it returns and how it chooses the size.) The checker tries ids of
# other shapes and sizes than these, and names the usual slips.

# %%
import torch
import torch.nn.functional as F


def one_hot(ids, vocab_size):
    """(...) integer ids -> (..., vocab_size) float one-hot vectors."""
    # BEGIN SOLUTION
    return F.one_hot(ids, vocab_size).float()
    # END SOLUTION


# %%
check_one_hot(one_hot)

# %% [markdown]
# ## One-hot times a matrix is a lookup: "I love data science"
#
# Now the central trick of this lesson, small enough to do by hand. The
# sentence *I love data science* has four words. Number them in alphabetical
# order (`data`=0, `I`=1, `love`=2, `science`=3): a vocabulary's order is
# arbitrary, and rarely that of a sentence. The sentence is the ids
# `[1, 2, 0, 3]`. Give each word two numbers: that is a
# 4×2 matrix W, one row per word of the vocabulary, with small values to make
# the arithmetic easy. (From here on the lesson runs your `one_hot` once it
# passes its checks, and the reviewed `tokenization.one_hot` until then.)

# %%
to_one_hot = yours_if_passed(one_hot, "01.one_hot", tokenization.one_hot)
vocabulary = ["data", "I", "love", "science"]
sentence_ids = torch.tensor([vocabulary.index(word) for word in "I love data science".split()])
W = torch.tensor([[0.9, 0.1],   # data
                  [0.1, 0.8],   # I
                  [0.2, 0.9],   # love
                  [0.8, 0.3]])  # science
X = to_one_hot(sentence_ids, len(vocabulary))
print("ids:", sentence_ids.tolist())
print("one-hot X (4 words x 4 vocabulary entries):")
print(X)

# %% [markdown]
# Multiply X (4×4) by W (4×2). Row *i* of the product is the one-hot row *i*
# times W: a sum of the rows of W weighted by 0, 0, 1, 0, which leaves exactly
# one row of W. Written out for *love* (one-hot `[0, 0, 1, 0]`):

# %%
def show(row):
    return "[" + ", ".join(f"{value:.1f}" for value in row.tolist()) + "]"


terms = " + ".join(f"{X[1, j]:.0f}·{show(W[j])}" for j in range(4))
print(f"love: {terms} = {show(X[1] @ W)}")
print("X @ W =")
print(X @ W)

# %% [markdown]
# Each row of `X @ W` is simply the row of W that the id points to: the product
# *looks up* rows. That is all an embedding layer is. `nn.Embedding(4, 2)`
# stores the same kind of 4×2 table and, given ids, returns `weight[ids]`
# without multiplying anything. With W copied in, it gives the identical result:
# equal bit for bit, since a 1 times a number plus zeros is exact.

# %%
from torch import nn

embedding = nn.Embedding(num_embeddings=4, embedding_dim=2)
with torch.no_grad():
    embedding.weight.copy_(W)
print(embedding(sentence_ids))
print("identical to one-hot @ W:", torch.equal(embedding(sentence_ids), X @ W))

# %% [markdown]
# In two dimensions the embeddings can be drawn. We chose these numbers so
# that *data* and *science* lie close together, as do *I* and *love*. A real
# model chooses its numbers itself: the table is a weight like any other,
# changed by training until words that behave alike get similar rows.

# %%
fig, ax = plt.subplots(figsize=(4, 3.5))
ax.scatter(W[:, 0], W[:, 1], color="#4C72B0")
for word, (x, y) in zip(vocabulary, W.tolist()):
    ax.annotate(word, (x, y), textcoords="offset points", xytext=(6, 4))
ax.set_xlim(0, 1.1)
ax.set_ylim(0, 1.1)
ax.set_xlabel("dimension 0")
ax.set_ylabel("dimension 1")
ax.set_title("The four rows of W: one 2-D vector per word")
plt.show()

# %% [markdown]
# Two errors you will meet, both about types. Ids must be integers: an
# embedding refuses float ids, because a row number like 2.0 is a quantity in
# disguise. And a one-hot made by `F.one_hot` holds integers, which PyTorch will
# not multiply with a float matrix until you convert it.

# %%
for attempt, compute in [("nn.Embedding with float ids", lambda: embedding(sentence_ids.float())),
                         ("integer one-hot @ float W", lambda: F.one_hot(sentence_ids, 4) @ W)]:
    try:
        compute()
    except RuntimeError as error:
        print(f"{attempt}: RuntimeError: {str(error).splitlines()[0]}")

# %% [markdown]
# ## Warm-up exercise: embed with a one-hot product
#
# A short one: it is the product of the cells above, made general. Write
# `embed(ids, weight)`: the embeddings of `ids` (any shape) computed as
# one-hot vectors times `weight`, a `(vocab_size, d)` matrix, so that the
# result has shape `(*ids.shape, d)` and equals `nn.Embedding`'s. Take the
# vocabulary size from the weight, and keep the computation in PyTorch so that
# gradients reach `weight`: the checker also compares your gradient with
# `nn.Embedding`'s. You may use your `one_hot` from above.

# %%
def embed(ids, weight):
    """Embeddings of `ids` as one_hot(ids) @ weight; weight is (vocab_size, d)."""
    # BEGIN SOLUTION
    return one_hot(ids, weight.shape[0]) @ weight
    # END SOLUTION


# %%
check_embed(embed)

# %% [markdown]
# The gradient check shows the practical side of the lookup: the gradient of the
# loss with respect to the table is zero in every row whose id was not in the
# batch. Whether a training step then changes only those rows depends on the
# optimizer. Plain SGD subtracts the learning rate times the gradient, so a zero
# gradient leaves a row alone. Adam keeps a running average of past gradients
# (its *moments*), so a row seen at one step keeps moving at the next steps,
# seen or not. AdamW, the usual choice for transformers, also shrinks every
# weight a little at every step (*weight decay*, 0.01 by default), so it
# changes every row. The cell measures it: a table of 1,000 rows, a first step
# on a batch of 8 ids, then a second step on 8 other ids, counting the rows
# that changed.

# %%
first_batch, second_batch = torch.arange(0, 8), torch.arange(8, 16)
print(f"{'optimizer':<32}{'rows changed':>14}{'by step 2':>11}{'of them not in batch 2':>24}")
for name, make_optimizer in [("SGD", lambda p: torch.optim.SGD(p, lr=0.1)),
                             ("Adam (no weight decay)", lambda p: torch.optim.Adam(p, lr=1e-3)),
                             ("AdamW (weight decay 0.01)", lambda p: torch.optim.AdamW(p, lr=1e-3))]:
    embedding_table = nn.Embedding(1000, 16)
    optimizer = make_optimizer(embedding_table.parameters())
    changed = []
    for batch_ids in (first_batch, second_batch):
        before = embedding_table.weight.detach().clone()
        optimizer.zero_grad()
        embedding_table(batch_ids).pow(2).sum().backward()
        optimizer.step()
        changed.append((embedding_table.weight.detach() != before).any(dim=1))
    outside = changed[1].clone()
    outside[second_batch] = False
    print(f"{name:<32}{int(changed[0].sum()):>14}{int(changed[1].sum()):>11}{int(outside.sum()):>24}")

# %% [markdown]
# SGD touches the 8 rows of each batch and no other. Adam moves the 8 rows of
# the first batch again at the second step, though their gradient is now zero:
# their moments carry them. AdamW moves all 1,000 rows at every step. So "only
# the rows it saw" is a property of SGD, not of embeddings.
#
# The product and the lookup give the same numbers, but not at the same cost.
# For the real encoder's vocabulary of 30,522 entries and width 384, a one-hot
# product does 30,522 multiply-adds for each number it returns; the lookup,
# `table[ids]` (what `nn.Embedding` does), copies that number. The timing below
# depends on your machine, so its output is not compared in the course's
# tests; the assertion is.

# %%
# NBVAL_IGNORE_OUTPUT
import time

table = torch.randn(30522, 384)
many_ids = torch.randint(0, 30522, (256,))


def seconds(function, repeat=5):
    """The fastest of `repeat` runs, in seconds (the least disturbed by other programs)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


product = seconds(lambda: to_one_hot(many_ids, 30522) @ table)
lookup = seconds(lambda: table[many_ids])
print(f"256 tokens: one-hot product {product * 1000:.1f} ms, lookup {lookup * 1000:.3f} ms "
      f"(the lookup is {product / lookup:,.0f} times faster)")
assert product > 3 * lookup  # far more in a quiet machine; other programs can slow both

# %% [markdown]
# ## The pretrained encoder's embedding matrix
#
# The first layer of the pretrained encoder is such a table:
# `encoder.embeddings.word_embeddings`, one row of 384 numbers for each of the
# 30,522 WordPiece tokens, learned during pre-training. Your `embed` (once it
# passes its checks; the reviewed `tokenization.embed` until then) computes
# exactly its output. (BERT then adds
# a position vector, lesson 05, and a segment vector to each token's vector,
# and normalizes the sum.)

# %%
word_embeddings = encoder.embeddings.word_embeddings
print(word_embeddings)
print(f"{word_embeddings.weight.numel():,} parameters: "
      f"{word_embeddings.weight.numel() / sum(p.numel() for p in encoder.parameters()):.0%} of the whole encoder")

look_up = yours_if_passed(embed, "01.embed", tokenization.embed)
ids = tokenizer("Fair is foul, and foul is fair.", return_tensors="pt")["input_ids"]
with torch.no_grad():
    print("one-hot product equals the encoder's lookup:", torch.equal(look_up(ids, word_embeddings.weight), word_embeddings(ids)))

# %% [markdown]
# What did pre-training put in those rows? Compare two rows by their **cosine
# similarity**, the cosine of the angle between the vectors:
# cos(a, b) = a·b / (|a| |b|), 1 for the same direction, near 0 for unrelated
# directions. It compares directions only, whatever the lengths of the vectors.
# `tokenization.nearest_neighbours` ranks all 30,522 rows against one.

# %%
weight = word_embeddings.weight.detach()
for word in ["king", "sword", "night", "love", "thou"]:
    neighbour_ids, similarities = tokenization.nearest_neighbours(weight, tokenizer.convert_tokens_to_ids(word), k=5)
    neighbours = ", ".join(f"{token} {similarity:.2f}" for token, similarity
                           in zip(tokenizer.convert_ids_to_tokens(neighbour_ids), similarities.tolist()))
    print(f"{word:<6} -> {neighbours}")

# %% [markdown]
# The neighbours make sense: plural and other forms of the word first, then
# words of the same kind (*queen*, *monarch*; *weapon*, *blade*; *evening*).
# *Thou* sits next to *thee* and *thy*: archaic English is rare on Wikipedia,
# but rare is not absent. Nobody wrote these similarities down; they come out
# of training. This encoder was not trained the BERT way, by filling in masked
# words (lesson 08): its starting point, MiniLM, was *distilled*, trained to
# imitate a larger pretrained model, and it was then fine-tuned
# *contrastively* on more than a billion pairs of related sentences (a question
# and its answer, a title and its abstract), so that the vectors of the two
# sentences of a pair come out close and those of unrelated sentences apart
# (its model card, in the package folder, describes the contrastive fine-tuning;
# MiniLM's own card describes the distillation).
#
# A picture of 384 dimensions has to flatten them. The plot projects thirty
# words from five groups onto the two directions along which those vectors
# vary most (principal component analysis, computed with an SVD). Royalty and
# the times of day each form a cluster of their own; weapons, feelings and
# body parts share one region, each still nearest its own kind. Two directions
# out of 384 cannot separate everything.

# %%
groups = {
    "royalty": ["king", "queen", "prince", "duke", "crown", "throne"],
    "weapons": ["sword", "dagger", "spear", "shield", "arrow", "armour"],
    "time of day": ["night", "day", "morning", "evening", "dawn", "midnight"],
    "feelings": ["love", "hate", "fear", "joy", "grief", "anger"],
    "body": ["hand", "eye", "heart", "head", "tongue", "blood"],
}
words = [word for group in groups.values() for word in group]
vectors = weight[tokenizer.convert_tokens_to_ids(words)]
centred = vectors - vectors.mean(dim=0)
_, _, directions = torch.linalg.svd(centred, full_matrices=False)
points = centred @ directions[:2].T

fig, ax = plt.subplots(figsize=(8, 5.5))
for number, (group, members) in enumerate(groups.items()):
    start = 6 * number
    ax.scatter(points[start:start + 6, 0], points[start:start + 6, 1], label=group)
    for index, (word, (x, y)) in enumerate(zip(members, points[start:start + 6].tolist())):
        # labels alternate above and below their points, so close neighbours stay readable
        ax.annotate(word, (x, y), textcoords="offset points", xytext=(4, 4 if index % 2 else -10), fontsize=8)
ax.set_xlabel("first principal direction")
ax.set_ylabel("second principal direction")
ax.set_title("Thirty MiniLM token embeddings, projected from 384 to 2 dimensions")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# One limit to keep in mind: this table gives *bank* one vector, whether the
# sentence is about a river or about money. Telling the two apart needs the
# other words of the sentence, and that is the job of attention, from lesson 02
# on.
#
# ## Quiz
#
# Seven questions on this lesson. In JupyterLab, pick an answer and press
# **Check**; the cell after the quiz holds your graded answers, one
# `answer(...)` call per question.

# %%
from course_utils.classroom import answer, show_quiz

show_quiz("01")

# %%
# BEGIN SOLUTION
answer("01.unseen-word", "B")
answer("01.batch", ["A", "C", "D"])
answer("01.bpe-merge", "C")
answer("01.lookup", "A")
answer("01.embedding-parameters", 11720448)
answer("01.sgd-rows", "2, 5")
answer("01.vocabulary-size", ["B", "D"])
# END SOLUTION

# %% [markdown]
# ## Summary
#
# - Words make a poor vocabulary: trained on 34 plays, a word vocabulary of
#   about 24,000 entries misses 4.6% of the running words of the four others,
#   and loses case, punctuation and line breaks. Characters miss nothing but
#   make sequences five times longer.
# - Subword tokenizers split rare words into frequent pieces. WordPiece (the
#   MiniLM encoder's, 30,522 entries) lower-cases and marks continuations with
#   `##`; the tokenizer adds `[CLS]` and `[SEP]`, pads batches with `[PAD]` and
#   returns an attention mask (1 = real token, 0 = padding), and truncates to a
#   `max_length`.
# - BPE learns its vocabulary by merging the most frequent pair of symbols inside
#   the pieces of the text, weighted by how often each piece occurs, again and
#   again; it cuts a new word by applying the merges in the order they were
#   learned. Your `learn_bpe` and `encode` agree with the `tokenizers` library.
#   Byte-level BPE has no unknown token and gives back the exact text. A bigger
#   vocabulary means shorter sequences, with quickly diminishing returns.
# - An id is a name, not a number: as a one-hot vector times the embedding
#   matrix it selects one row, which is exactly what `nn.Embedding` computes
#   with a lookup, and the gradient reaches only the rows that were used. With
#   plain SGD only those rows change; Adam's moments and AdamW's weight decay
#   move the others too.
# - The embeddings of a pretrained model place related words close together
#   (by cosine similarity), but give each token a single vector whatever its
#   context: the next lessons add attention, which mixes in the context.
# - Later lessons import the reviewed versions from `course_utils.tokenization`:
#   `learn_bpe`, `apply_bpe`, `shakespeare_bpe()` (trained once, then cached),
#   `one_hot`, `embed` and `nearest_neighbours`.
