"""Checkers for the exercises of BERT pre-training (lesson 08): BERT's
masking, and next-sentence pairs. Both are random, so both are checked by
statistics over many draws: rates within a tolerance, and rules that must
hold in every draw (a special token is never chosen, a label sits where and
only where a position was chosen)."""

import random

import torch

from course_utils import bert
from course_utils.bert import IGNORE_INDEX, IS_NEXT, NOT_NEXT, segment_at
from . import Checker

# --- masking -----------------------------------------------------------------------

MASK_ID, FIRST_WORD_ID, VOCAB_SIZE = 4, 5, 1000  # ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK]
_SEEDS = range(8)


def _masking_input(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch laid out as BERT's: [CLS] A [SEP] B [SEP], then padding in a quarter of the rows."""
    ids = torch.randint(FIRST_WORD_ID, VOCAB_SIZE, (256, 64), generator=torch.Generator().manual_seed(1000 + seed))
    ids[:, 0], ids[:, 30], ids[:, 63] = 2, 3, 3
    ids[:64, 48:] = 0
    ids[:64, 47] = 3
    return ids, ids < FIRST_WORD_ID


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.3f} ({part:,} of {whole:,})"


def check_mask_tokens(mask_tokens) -> None:
    """Check a learner's `mask_tokens(ids, special, mask_id, first_word_id,
    vocab_size, rate, generator)` by the statistics of course_utils.bert.mask_tokens."""
    with Checker("08.mask_tokens", points=2, references=[bert.mask_tokens]) as check:
        draws, results, untouched = [], [], True
        for seed in _SEEDS:
            ids, special = _masking_input(seed)
            results.append(check.call(mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15,
                                      torch.Generator().manual_seed(seed)))
            untouched &= 0 not in check.wrote_into
            draws.append((ids, special))
        check.require("returns (inputs, labels), two tensors", all(
            isinstance(r, tuple) and len(r) == 2 and all(isinstance(t, torch.Tensor) for t in r) for r in results),
            expected="a tuple (inputs, labels) of tensors", actual=type(results[0]).__name__)
        shapes = {(tuple(inputs.shape), tuple(labels.shape)) for inputs, labels in results}
        check.require("inputs and labels have the shape of ids", shapes == {((256, 64), (256, 64))},
                      expected="(256, 64) twice, for ids of shape (256, 64)", actual=", ".join(map(str, shapes)))
        check.require("ids itself is left as it was", untouched, expected="ids unchanged",
                      actual="your function wrote into ids", hint="build the inputs in a new tensor (a copy), "
                      "so that the caller's batch keeps its original words for the labels")
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
                    "drawing once per position, so that the three outcomes do not overlap")
        check.that("of the chosen: 80% [MASK], 10% a random word, 10% unchanged",
                   picked > 0 and abs(masked / picked - 0.8) < 0.02 and abs(replaced / picked - 0.1 * (words - 1) / words) < 0.015
                   and abs(kept / picked - 0.1 - 0.1 / words) < 0.015, expected=expected, actual=shares, hint=hint)

        randoms = torch.cat([inputs[c & (inputs != MASK_ID) & (inputs != ids)] for c, (ids, _, inputs, _) in zip(chosen, draws)])
        if len(randoms):
            check.that("a random word is never a special token", bool((randoms >= FIRST_WORD_ID).all()),
                       expected=f"random ids from {FIRST_WORD_ID} to {VOCAB_SIZE - 1}",
                       actual=f"id {randoms.min().item()} drawn", hint="special tokens are not words: draw the "
                       "random words from first_word_id up to vocab_size, never below")
            check.that("random words are spread over the whole vocabulary",
                       randoms.unique().numel() > 0.4 * min(len(randoms), words) and randoms.max().item() > 0.9 * VOCAB_SIZE,
                       expected="ids spread from first_word_id to vocab_size - 1",
                       actual=f"{randoms.unique().numel()} distinct ids, the largest {randoms.max().item()}",
                       hint="each random word is drawn uniformly from the whole range of word ids")

        ids, special = _masking_input(0)
        again = check.call(mask_tokens, ids, special, MASK_ID, FIRST_WORD_ID, VOCAB_SIZE, 0.15, torch.Generator().manual_seed(0))
        check.that("the same generator seed gives the same masking",
                   torch.equal(again[0], draws[0][2]) and torch.equal(again[1], draws[0][3]),
                   expected="identical inputs and labels for generator seed 0, twice", actual="two different maskings",
                   hint="pass `generator` to every random draw, so that a batch can be rebuilt exactly")


# --- next-sentence pairs -----------------------------------------------------------

_WORDS = 6


def _checker_plays() -> dict[str, list[str]]:
    """Six small 'plays' whose every word says where it comes from: speech 7
    of play 'p2' is 'p2s7 p2s7 ...' (1 to 4 words), so a segment shows its
    play and first speech at a glance."""
    lengths = random.Random(8)
    return {f"p{p}": [" ".join([f"p{p}s{i}"] * lengths.randint(1, 4)) for i in range(60)] for p in range(6)}


def _origin(segment: str) -> tuple[str, int]:
    play, speech = segment.split()[0].split("s")
    return play, int(speech)


def check_nsp_pair(nsp_pair) -> None:
    """Check a learner's `nsp_pair(speeches_by_play, play, start, rng, words)`
    (negatives from another play) against course_utils.bert.nsp_pair."""
    with Checker("08.nsp_pair", points=2, references=[bert.nsp_pair]) as check:
        plays = _checker_plays()
        draws = []
        for seed in range(600):
            play, start = f"p{seed % 6}", seed % 30
            draws.append((play, start, check.call(nsp_pair, plays, play, start, random.Random(seed), words=_WORDS)))
        odd = next((result for *_, result in draws if not (
            isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], str) and isinstance(result[1], str)
            and result[2] in (IS_NEXT, NOT_NEXT))), None)
        check.require("returns (a, b, label): two strings and an int", odd is None,
                      expected=f"(str, str, {IS_NEXT} or {NOT_NEXT})", actual=repr(odd)[:80])
        draws = [(play, start, *result) for play, start, result in draws]
        wrong_a = [a for play, start, a, _, _ in draws if a != segment_at(plays[play], start, _WORDS)[0]]
        check.require("A is the segment that starts at `start`", not wrong_a,
                      expected="the segment that begins at speech `start` of A's play",
                      actual=repr(wrong_a[0]) if wrong_a else None)
        true_next = {(play, start): segment_at(plays[play], segment_at(plays[play], start, _WORDS)[1], _WORDS)[0]
                     for play, start, *_ in draws}
        follows = [b == true_next[play, start] for play, start, _, b, _ in draws]
        labels = [label for *_, label in draws]
        if all(label == (NOT_NEXT if f else IS_NEXT) for f, label in zip(follows, labels)):
            check.fail("labels follow Hugging Face's convention", expected=f"IS_NEXT = {IS_NEXT} when B follows A",
                       actual=f"{NOT_NEXT} when B follows A", hint="the labels are swapped: "
                       "BertForPreTraining's next_sentence_label is 0 for 'B follows A'")
            return
        share = labels.count(IS_NEXT) / len(labels)
        check.that("half the pairs are IsNext", abs(share - 0.5) < 0.06, expected="0.50 ± 0.06 over 600 pairs",
                   actual=f"{share:.3f}", hint="one fair coin per pair decides between the true next segment and a negative")
        wrong_next = [(play, start, b) for (play, start, _, b, label), f in zip(draws, follows) if label == IS_NEXT and not f]
        overlap = [b for play, start, b in wrong_next if b == segment_at(plays[play], start + 1, _WORDS)[0]]
        check.that("an IsNext B is the segment that begins where A ends", not wrong_next,
                   expected="the segment that begins with the speech after A's last one",
                   actual=f"{len(wrong_next)} of {labels.count(IS_NEXT)} IsNext pairs start elsewhere",
                   hint=("B started one speech after A's start, but A may hold several speeches: use the second value "
                         "segment_at returns" if overlap else "B must continue the play right where A stops"))

        negatives = [(play, b) for play, _, _, b, label in draws if label == NOT_NEXT]
        own = sum(_origin(b)[0] == play for play, b in negatives)
        check.that("a NotNext B comes from another play", own == 0,
                   expected="never A's own play", actual=f"{own} of {len(negatives)} from A's own play",
                   hint="choose among the plays other than `play`: with A's play among the choices, some negatives "
                        "are other scenes of the same play")
        sources = {_origin(b)[0] for _, b in negatives}
        check.that("NotNext Bs come from every other play", len(sources) == 6,
                   expected="all 6 plays among 300 negatives", actual=f"{sorted(sources)}",
                   hint="pick the other play at random, with `rng`")
        short = [b for _, b in negatives if len(b.split()) != _WORDS]
        check.that("a NotNext B is a full segment that begins a speech", not short,
                   expected=f"{_WORDS} words, from random_start(...)", actual=f"{short[0]!r}" if short else None,
                   hint="start the negative with random_start, which leaves room for a whole segment")
        # Twenty seeds again: a function that ignores `rng` can repeat one pair
        # by chance (an IsNext pair is fixed by A), but not twenty.
        again = [check.call(nsp_pair, plays, play, start, random.Random(seed), words=_WORDS) == tuple(result)
                 for seed, (play, start, *result) in enumerate(draws[:20])]
        check.that("the same rng seed gives the same pair", all(again),
                   expected="equal results for the same random.Random(seed), twice",
                   actual=f"{again.count(False)} of 20 seeds gave another pair",
                   hint="draw every random choice from `rng`, so that the data can be rebuilt exactly")
