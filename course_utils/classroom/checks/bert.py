"""Checkers for the exercises of BERT pre-training (lesson 08): BERT's
masking, and ALBERT's sentence-order pairs. Both are random, so both are
checked by statistics over many draws: rates within a tolerance, pooled and
also row by row and position by position (a coin per row, or one fate per
row, can give the right pooled shares), and rules that must hold in every
draw (a special token is never chosen, a label sits where and only where a
position was chosen). Each argument is checked by changing it: another
rate, another vocabulary, another seed, another default device and inputs
on another device."""

import random

import torch

from course_utils import bert
from course_utils.bert import IGNORE_INDEX, IS_NEXT, NOT_NEXT, segment_at
from . import Checker, _StopChecking

# --- masking -----------------------------------------------------------------------

MASK_ID, FIRST_WORD_ID, VOCAB_SIZE = 4, 5, 1000  # ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]
SMALL_FIRST_WORD_ID, SMALL_VOCAB_SIZE = 9, 40  # a second vocabulary: its random words must stay inside it
_SEEDS = range(8)
_MOST_DISPERSION = 1.3  # independent draws give about 1.0 (±0.05 here); a coin or a fate per row about 9 or more


def _masking_input(seed: int, first: int = FIRST_WORD_ID, vocab: int = VOCAB_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch laid out as BERT's: [CLS] A [SEP] B [SEP], then padding in a quarter of the rows."""
    ids = torch.randint(first, vocab, (256, 64), generator=torch.Generator().manual_seed(1000 + seed))
    ids[:, 0], ids[:, 30], ids[:, 63] = 2, 3, 3
    ids[:64, 48:] = 0
    ids[:64, 47] = 3
    return ids, ids < first


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.3f} ({part:,} of {whole:,})"


def _dispersion(counts: torch.Tensor, trials: torch.Tensor, p: float) -> float:
    """How much per-row counts vary, over what independent draws would give:
    Σ (count - trials·p)² / Σ trials·p·(1 - p). About 1 for independent
    draws (less for a fixed count per row); far above 1 when the draws of a
    row move together."""
    counts, trials = counts.double(), trials.double()
    return ((counts - trials * p) ** 2).sum().item() / max((trials * p * (1 - p)).sum().item(), 1e-9)


def check_mask_tokens(mask_tokens) -> None:
    """Check a learner's `mask_tokens(ids, special, mask_id, first_word_id,
    vocab_size, rate, generator)` by the statistics of course_utils.bert.mask_tokens."""
    with Checker("08.mask_tokens", points=2, references=[bert.mask_tokens]) as check:
        draws, results, untouched = [], [], True
        for seed in _SEEDS:
            ids, special = _masking_input(seed)
            results.append(check.call(mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15,
                                      torch.Generator().manual_seed(seed)))
            untouched &= not check.wrote_into
            draws.append((ids, special))
        check.require("returns (inputs, labels), two tensors", all(
            isinstance(r, tuple) and len(r) == 2 and all(isinstance(t, torch.Tensor) for t in r) for r in results),
            expected="a tuple (inputs, labels) of tensors", actual=type(results[0]).__name__)
        shapes = {(tuple(inputs.shape), tuple(labels.shape)) for inputs, labels in results}
        check.require("inputs and labels have the shape of ids", shapes == {((256, 64), (256, 64))},
                      expected="(256, 64) twice, for ids of shape (256, 64)", actual=", ".join(map(str, shapes)))
        check.that("ids and special are left as they were", untouched, expected="both unchanged",
                   actual="your function wrote into its arguments", hint="build the inputs in a new tensor, "
                   "so that the caller's batch keeps its original words for the labels")
        dtypes = {(inputs.dtype, labels.dtype) for inputs, labels in results}
        check.that("labels are int64 (long), the class indices F.cross_entropy takes",
                   all(labels == torch.long for _, labels in dtypes), expected="torch.int64",
                   actual=", ".join(sorted({str(labels) for _, labels in dtypes})),
                   hint="a float (or bool) anywhere in the expression that builds the labels changes their dtype; "
                        "the loss needs the integer ids")
        check.that("inputs keep the dtype of ids", all(inputs == torch.long for inputs, _ in dtypes),
                   expected="torch.int64, as ids", actual=", ".join(sorted({str(inputs) for inputs, _ in dtypes})),
                   hint="the embedding layer looks ids up: they must stay integers")
        draws = [(ids, special, inputs.long(), labels.long()) for (ids, special), (inputs, labels) in zip(draws, results)]

        chosen = [labels != IGNORE_INDEX for _, _, _, labels in draws]
        changed = [inputs != ids for ids, _, inputs, _ in draws]
        allowed = sum((~special).sum().item() for _, special, _, _ in draws)
        picked = sum(c.sum().item() for c in chosen)
        positions = sum(ids.numel() for ids, _, _, _ in draws)

        check.require("labels are IGNORE_INDEX (-100) where a position was not chosen",
                      picked < 0.5 * positions, expected="about 15% of positions labelled, the rest -100",
                      actual=f"{_share(picked, positions)} of positions labelled",
                      hint="a label at every position scores the model on words it can see; "
                           "only the chosen positions get their original id as a label")
        check.that("no special token or padding is ever chosen",
                   all(not (c & special).any() for c, (_, special, _, _) in zip(chosen, draws)),
                   expected="labels -100 wherever special is True", actual="a label on a special position",
                   hint="choose among the positions where `special` is False only")
        check.that("special tokens and padding reach the inputs unchanged",
                   all(torch.equal(inputs[special], ids[special]) for ids, special, inputs, _ in draws),
                   expected="inputs == ids wherever special is True", actual="a special position was changed")
        check.that("every position whose input changed has a label",
                   all(not (ch & ~c).any() for ch, c in zip(changed, chosen)),
                   expected="no change without a label", actual="an input changed where the label is -100",
                   hint="the 10% replaced by a random word are chosen positions too: they need their label")
        check.require("a label is the original word, not what the input now shows",
                      all(torch.equal(labels[c], ids[c]) for c, (ids, _, _, labels) in zip(chosen, draws)),
                      expected="labels == ids at chosen positions", actual="another id in a label",
                      hint="the model must recover the word that was there before masking")

        check.that("about 15% of the allowed positions are chosen", abs(picked / allowed - 0.15) < 0.01,
                   expected="0.150 ± 0.010 of the positions where special is False", actual=_share(picked, allowed),
                   hint="`rate` is the chance that an allowed position is chosen")
        # Row by row: a coin per row (the whole row chosen, or none of it) gives
        # 15% pooled, and rows that hold 0% or 100%.
        row_counts = torch.cat([c.sum(dim=1) for c in chosen])
        row_allowed = torch.cat([(~special).sum(dim=1) for _, special, _, _ in draws])
        spread = _dispersion(row_counts, row_allowed, 0.15)
        check.that("each row's positions are chosen one by one, not the row as a whole",
                   spread < _MOST_DISPERSION, expected=f"rows vary as independent draws do (dispersion about 1, "
                   f"below {_MOST_DISPERSION})", actual=f"dispersion {spread:.1f}; rows with no chosen position: "
                   f"{(row_counts == 0).sum().item()} of {len(row_counts)}",
                   hint="draw one number per position of every row, not one per row")
        # Position by position: one pattern for the whole batch (a draw per
        # column, shared by the rows) also gives 15% pooled.
        column_chosen = sum(c.sum(dim=0) for c in chosen).double()
        column_allowed = sum((~special).sum(dim=0) for _, special, _, _ in draws).double()
        shares = column_chosen[column_allowed > 0] / column_allowed[column_allowed > 0]
        same_pattern = any(bool(((c.sum(dim=0)[(~special).any(dim=0)] == 0)
                                 | (c.sum(dim=0) == (~special).sum(dim=0))[(~special).any(dim=0)]).all())
                           for c, (_, special, _, _) in zip(chosen, draws))  # a batch whose rows share one pattern
        check.that("every position of a row can be chosen, at the rate, in every column",
                   bool(((shares - 0.15).abs() < 0.05).all()), expected="0.15 ± 0.05 in each column",
                   actual=f"from {shares.min().item():.2f} to {shares.max().item():.2f} across columns",
                   hint=("every row was chosen at the same positions: draw one number per position of every row"
                         if same_pattern else "the chance of being chosen must not depend on where a position is"))

        masked = sum((inputs[c] == MASK_ID).sum().item() for c, (_, _, inputs, _) in zip(chosen, draws))
        kept = sum((inputs[c] == ids[c]).sum().item() for c, (ids, _, inputs, _) in zip(chosen, draws))
        replaced = picked - masked - kept
        words = VOCAB_SIZE - FIRST_WORD_ID  # a random word is the original one 1 time in `words`
        shares = (f"[MASK] {masked / max(picked, 1):.3f}, a random word {replaced / max(picked, 1):.3f}, "
                  f"unchanged {kept / max(picked, 1):.3f}")
        expected = f"[MASK] 0.800, a random word {0.1 * (words - 1) / words:.3f}, unchanged {0.1 + 0.1 / words:.3f}"
        hint = "of the chosen positions, 80% become [MASK], 10% a random word and 10% stay as they are"
        if picked and masked == picked:
            hint = ("every chosen position became [MASK]: BERT also replaces 10% by a random word and keeps 10%, "
                    "so that the model must judge every word it sees, not only [MASK]")
        elif picked and abs(masked / picked - 0.1) < 0.03 and abs(replaced / picked - 0.8) < 0.03:
            hint = "your shares of [MASK] and random words are swapped: [MASK] is the common case"
        elif picked and abs(masked / picked - 0.8) < 0.02:
            hint = ("the random-word and unchanged shares are off: split the 20% left by [MASK] in two halves, "
                    "so that the three outcomes do not overlap")
        check.that("of the chosen: 80% [MASK], 10% a random word, 10% unchanged",
                   picked > 0 and abs(masked / picked - 0.8) < 0.02 and abs(replaced / picked - 0.1 * (words - 1) / words) < 0.015
                   and abs(kept / picked - 0.1 - 0.1 / words) < 0.015, expected=expected, actual=shares, hint=hint)
        # Row by row again: one 80/10/10 draw per row gives the right pooled
        # shares, and rows whose chosen positions all share one fate.
        mask_counts = torch.cat([((inputs == MASK_ID) & c).sum(dim=1) for c, (_, _, inputs, _) in zip(chosen, draws)])
        spread = _dispersion(mask_counts, row_counts, 0.8)
        check.that("each chosen position draws its own fate ([MASK], random, unchanged)", spread < _MOST_DISPERSION,
                   expected=f"[MASK] counts per row vary as independent draws do (dispersion below {_MOST_DISPERSION})",
                   actual=f"dispersion {spread:.1f}", hint="one draw per row gives all the chosen positions of that "
                   "row the same fate: draw per position")

        randoms = torch.cat([inputs[c & (inputs != MASK_ID) & (inputs != ids)] for c, (ids, _, inputs, _) in zip(chosen, draws)])
        if len(randoms):
            check.that("a random word is never a special token", bool((randoms >= FIRST_WORD_ID).all()),
                       expected=f"random ids from {FIRST_WORD_ID} to {VOCAB_SIZE - 1}",
                       actual=f"id {randoms.min().item()} drawn", hint="special tokens are not words: draw the "
                       "random words from first_word_id up, never below")
            check.that("random words are spread over the whole vocabulary",
                       randoms.unique().numel() > 0.4 * min(len(randoms), words) and randoms.max().item() > 0.9 * VOCAB_SIZE,
                       expected="ids spread from first_word_id to vocab_size - 1",
                       actual=f"{randoms.unique().numel()} distinct ids, the largest {randoms.max().item()}",
                       hint="each random word is drawn uniformly from the whole range of word ids")

        _check_arguments(check, mask_tokens, draws, chosen)


def _check_arguments(check: Checker, mask_tokens, draws, chosen) -> None:
    """The rate, the vocabulary, the generator and the device, each changed."""
    # Another rate.
    rate_picked = rate_allowed = 0
    for seed in (100, 101):
        ids, special = _masking_input(seed)
        _, labels = check.call(mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.4,
                               torch.Generator().manual_seed(seed))
        rate_picked += ((labels != IGNORE_INDEX) & ~special).sum().item()
        rate_allowed += (~special).sum().item()
    check.that("the `rate` argument is honoured", abs(rate_picked / rate_allowed - 0.4) < 0.02,
               expected="0.400 ± 0.020 of the allowed positions chosen at rate=0.4",
               actual=_share(rate_picked, rate_allowed), hint="the share chosen must follow `rate`, whatever it is")

    # Another vocabulary: random words stay inside it and reach both its ends.
    randoms = []
    for seed in (200, 201):
        ids, special = _masking_input(seed, SMALL_FIRST_WORD_ID, SMALL_VOCAB_SIZE)
        inputs, labels = check.call(mask_tokens, ids, special, MASK_ID, SMALL_FIRST_WORD_ID, SMALL_VOCAB_SIZE, 0.15,
                                    torch.Generator().manual_seed(seed))
        inputs = inputs.long()
        randoms.append(inputs[(labels != IGNORE_INDEX) & (inputs != MASK_ID) & (inputs != ids)])
    randoms = torch.cat(randoms)
    low, high = (randoms.min().item(), randoms.max().item()) if len(randoms) else (None, None)
    inside = bool(len(randoms)) and low >= SMALL_FIRST_WORD_ID and high < SMALL_VOCAB_SIZE
    check.that("random words stay inside the vocabulary given", inside,
               expected=f"ids from {SMALL_FIRST_WORD_ID} to {SMALL_VOCAB_SIZE - 1} for first_word_id="
                        f"{SMALL_FIRST_WORD_ID}, vocab_size={SMALL_VOCAB_SIZE}", actual=f"from {low} to {high}",
               hint=("an id at or past vocab_size has no embedding: the vocabulary is the one passed in, not a fixed size"
                     if high is not None and high >= SMALL_VOCAB_SIZE else
                     "draw the random words between first_word_id and vocab_size, both from the arguments"))
    check.that("random words reach both ends of the vocabulary", inside and low == SMALL_FIRST_WORD_ID
               and high == SMALL_VOCAB_SIZE - 1, expected=f"{SMALL_FIRST_WORD_ID} and {SMALL_VOCAB_SIZE - 1} among "
               f"{len(randoms)} random words", actual=f"from {low} to {high}",
               hint="vocab_size - 1 is a word too: only vocab_size itself lies outside")

    # The generator: the same seed gives the same masking, another seed another one.
    ids, special = _masking_input(0)
    again = check.call(mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15, torch.Generator().manual_seed(0))
    check.that("the same generator seed gives the same masking",
               torch.equal(again[0].long(), draws[0][2]) and torch.equal(again[1].long(), draws[0][3]),
               expected="identical inputs and labels for generator seed 0, twice", actual="two different maskings",
               hint="pass `generator` to every random draw, so that a batch can be rebuilt exactly")
    check.that("another generator seed gives another masking", not torch.equal(chosen[0], chosen[1]),
               expected="other positions chosen for generator seeds 0 and 1",
               actual="the same positions chosen for both seeds",
               hint="the randomness must come from `generator` alone: seeding the global generator inside the "
                    "function makes every batch alike")

    # The device, twice. No second real device is needed to see whether new
    # tensors follow the devices given: make another device the default one.
    # With "meta" as the default, ids and the generator on the CPU, a tensor
    # made without `device=` lands on meta (no data), as on a GPU machine a
    # draw without `device=` lands on the CPU, not with a GPU generator: the
    # answer breaks or returns meta tensors; a right one gives the very
    # masking of a plain call. (Not checked: a draw on the device of ids with
    # a generator on another device, which a GPU refuses but meta allows.)
    ids, special = _masking_input(0)
    hint = ("a tensor made without `device=` lands on the default device, which need not be the generator's "
            "or that of ids: draw on the generator's device (it makes tensors there only), then move what it drew "
            "to the device of ids")
    before, status = len(check.results), check.status
    try:
        out = check.call_on("meta", mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15,
                            torch.Generator().manual_seed(0))
        devices = [str(t.device) for t in out] if isinstance(out, tuple) else [type(out).__name__]
    except _StopChecking:
        said = check.results[before][2] if len(check.results) > before else "it raised an error"
        del check.results[before:]
        check.status = status
        out, devices = None, [said]
    same = devices == ["cpu", "cpu"] and torch.equal(out[0].long(), draws[0][2]) and torch.equal(out[1].long(), draws[0][3])
    check.that("new tensors follow the devices given, not the default device", same,
               expected="with meta as the default device, ids and the generator on the CPU: the CPU masking of a "
                        "plain call", actual=None if same else ", ".join(devices) if devices != ["cpu", "cpu"]
               else "CPU tensors, but another masking", hint=hint)
    # Then ids on meta (shapes and dtypes, no data): the results must land
    # there, as a batch on the GPU must stay there. The meta device cannot run
    # everything a GPU can (a boolean index, .item()): only an error about
    # mixed devices counts against the answer.
    name, expected = "results land on the device of ids", "inputs and labels on the device of ids (meta, here)"
    before, status = len(check.results), check.status
    try:
        out = check.call(mask_tokens, ids.to("meta"), special.to("meta"), MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15,
                         torch.Generator().manual_seed(0))
    except _StopChecking:
        said = check.results[before][2].removeprefix("it raised ") if len(check.results) > before else ""
        del check.results[before:]
        check.status = status
        mixed = any(words in said for words in ("expected device", "same device", "device type"))
        check.that(name, not mixed, expected=expected, actual=f"it raised {said}", hint=hint)
        return
    devices = [str(t.device) for t in out] if isinstance(out, tuple) else [type(out).__name__]
    check.that(name, devices == ["meta", "meta"], expected=expected, actual=", ".join(devices), hint=hint)


# --- sentence-order pairs -------------------------------------------------------------

_WORDS = 6


def _checker_plays() -> dict[str, list[str]]:
    """Six small 'plays' whose every word says where it comes from: speech 7
    of play 'p2' is 'p2s7 p2s7 ...' (1 to 4 words), so a segment shows its
    play and first speech at a glance."""
    lengths = random.Random(8)
    return {f"p{p}": [" ".join([f"p{p}s{i}"] * lengths.randint(1, 4)) for i in range(60)] for p in range(6)}


def check_sop_pair(sop_pair) -> None:
    """Check a learner's `sop_pair(play_speeches, start, rng, words)`
    against course_utils.bert.sop_pair: every pair holds a segment and its
    continuation, in order (IS_NEXT) or swapped (NOT_NEXT), by a fair coin
    per pair drawn from `rng`."""
    with Checker("08.sop_pair", points=2, references=[bert.sop_pair, bert.labelled_pair]) as check:
        plays = _checker_plays()
        draws, untouched = [], True
        for seed in range(600):
            play, start = f"p{seed % 6}", seed % 30
            draws.append((play, start, check.call(sop_pair, plays[play], start, random.Random(seed), _WORDS)))
            untouched &= not check.wrote_into
        odd = next((result for *_, result in draws if not (
            isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], str) and isinstance(result[1], str)
            and isinstance(result[2], int))), None)
        check.require("returns (first, second, label): two strings and an int", odd is None,
                      expected=f"(str, str, {IS_NEXT} or {NOT_NEXT})", actual=repr(odd)[:80])
        flags = [result[2] for *_, result in draws if type(result[2]) is bool]
        check.require("a label is an int, not a bool", not flags, expected=f"bert.IS_NEXT ({IS_NEXT}) or bert.NOT_NEXT "
                      f"({NOT_NEXT})", actual=f"{flags[0]!r}" if flags else None,
                      hint="the loss and the batch take class ids: return the label constants themselves")
        strays = [result[2] for *_, result in draws if result[2] not in (IS_NEXT, NOT_NEXT)]
        check.require("the label is bert.IS_NEXT or bert.NOT_NEXT", not strays,
                      expected=f"{IS_NEXT} or {NOT_NEXT}", actual=repr(strays[0]) if strays else None)
        check.that("the speeches are left as they were", untouched, expected="play_speeches unchanged",
                   actual="your function wrote into play_speeches",
                   hint="the list is the play itself, shared by every later pair: read it, never change it")

        rows = []  # (play, start, first, second, label, segment A, its continuation B)
        for play, start, (first, second, label) in draws:
            a, after = segment_at(plays[play], start, _WORDS)
            rows.append((play, start, first, second, label, a, segment_at(plays[play], after, _WORDS)[0]))
        in_order = [(first, second) == (a, b) for _, _, first, second, _, a, b in rows]
        swapped = [(first, second) == (b, a) for _, _, first, second, _, a, b in rows]
        labels = [label for _, _, _, _, label, _, _ in rows]
        if (all(o or s for o, s in zip(in_order, swapped))
                and all(label == (NOT_NEXT if o else IS_NEXT) for o, label in zip(in_order, labels))):
            check.fail("labels follow the order", expected=f"IS_NEXT ({IS_NEXT}) for the segments in their order",
                       actual=f"{NOT_NEXT} for the segments in their order", hint="the labels are swapped: "
                       "IS_NEXT, 0, says the second segment comes after the first, as in the play")
            return
        wrong_next = [row for row, o, label in zip(rows, in_order, labels) if label == IS_NEXT and not o]
        overlap = [row for row in wrong_next if row[3] == segment_at(plays[row[0]], row[1] + 1, _WORDS)[0]]
        check.that("an IsNext pair is the segment at `start`, then the segment that follows it", not wrong_next,
                   expected="A, then the segment that begins with the speech after A's last one",
                   actual=f"{len(wrong_next)} of {labels.count(IS_NEXT)} IsNext pairs differ, e.g. "
                          f"{wrong_next[0][2]!r} / {wrong_next[0][3]!r}" if wrong_next else None,
                   hint=("the second segment began one speech after A's start, but A may hold several speeches: "
                         "segment_at says where the next segment begins" if overlap else
                         "the positive is the play's own order: A, then its continuation"))
        wrong_swap = [row for row, s, label in zip(rows, swapped, labels) if label == NOT_NEXT and not s]
        elsewhere = [row for row in wrong_swap if row[2] == row[5]]  # A first, B from somewhere else: NSP's negative
        check.that("a NotNext pair is the same two segments, swapped", not wrong_swap,
                   expected="A's continuation first, then A",
                   actual=f"{len(wrong_swap)} of {labels.count(NOT_NEXT)} NotNext pairs differ, e.g. "
                          f"{wrong_swap[0][2]!r} / {wrong_swap[0][3]!r}" if wrong_swap else None,
                   hint=("a second segment from elsewhere brings other words and people with it, which a model can "
                         "spot without reading the order (NSP's weakness): keep A and its continuation, and change "
                         "only which comes first" if elsewhere else
                         "both classes must hold the very same two segments; only their order differs"))

        share = labels.count(NOT_NEXT) / len(labels)
        check.that("half the pairs are swapped", abs(share - 0.5) < 0.07, expected="0.50 ± 0.07 over 600 pairs",
                   actual=f"{share:.3f}", hint="one fair coin per pair decides the order")
        # Start by start: a coin must be drawn for each pair, not fixed by
        # where A starts or what it says.
        lopsided = []
        for start in range(12):
            orders = [check.call(sop_pair, plays["p1"], start, random.Random(5000 + 40 * start + k), _WORDS)[2]
                      for k in range(40)]
            if not 0.15 <= orders.count(NOT_NEXT) / 40 <= 0.85:
                lopsided.append((start, orders.count(NOT_NEXT)))
        check.that("every start gets its own coin, pair by pair", not lopsided,
                   expected="each start swapped in about half of 40 pairs drawn with 40 seeds",
                   actual=", ".join(f"start {start}: {count} of 40 swapped" for start, count in lopsided[:3]) or None,
                   hint="the order must come from `rng`, afresh for every pair, not from the start or the text")
        # Twenty seeds again: a function that ignores `rng` can repeat a pair by
        # chance, but not twenty in a row.
        again = [check.call(sop_pair, plays[play], start, random.Random(seed), _WORDS) == tuple(result)
                 for seed, (play, start, result) in enumerate(draws[:20])]
        check.that("the same rng seed gives the same pair", all(again),
                   expected="equal results for the same random.Random(seed), twice",
                   actual=f"{again.count(False)} of 20 seeds gave another pair",
                   hint="draw every random choice from `rng`, so that the data can be rebuilt exactly")
