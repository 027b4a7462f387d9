"""Checkers for the exercises of the trained encoder-decoder (lesson 07):
greedy decoding and the teacher-forcing loss.

Both run the learner's function on a small random `TransformerSeq2Seq` of
the checker's own (another width, vocabulary and depth than the lesson's),
on batch sizes and lengths the lesson never uses, with padded sources and
targets, and compare with `seq2seq.greedy_decode` and `seq2seq.loss_of`.
Each classic slip is computed on the same inputs, so that a wrong answer is
named by what went wrong."""

import torch
import torch.nn.functional as F

from course_utils.generation import greedy
from course_utils.seq2seq import BOS, EOS, PAD, TransformerSeq2Seq, greedy_decode, greedy_reversals, loss_of, pad
from course_utils.transformer import TransformerConfig
from . import Checker, remote, seeded

_VOCAB = 13  # the four special tokens, then 9 words


def _test_model(dtype: torch.dtype = torch.float32, trained: bool = False) -> TransformerSeq2Seq:
    """A model unlike the lesson's (width 16, 2 heads, one layer each side,
    13 tokens), from its own seed, leaving the lesson's random state as it
    was. `trained`: after 120 steps of reversing random words (under a
    second), so that its rows end at different steps, some of them wrongly."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2024)
        config = TransformerConfig(d_model=16, num_heads=2, d_ff=24, num_encoder_layers=1, num_decoder_layers=1,
                                   dropout=0.0, norm="pre")
        model = TransformerSeq2Seq(_VOCAB, config, max_len=32)
    if trained:
        model.load_state_dict(_trained_weights())
    return model.to(dtype).eval()


_trained = {}  # the test model's trained weights, computed once per process


def _trained_weights() -> dict:
    if not _trained:
        with torch.random.fork_rng(devices=[]), torch.enable_grad():
            model = _test_model()
            model.train()
            generator = torch.Generator().manual_seed(1)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(120):
                lengths = torch.randint(1, 8, (32,), generator=generator).tolist()
                words = [torch.randint(4, _VOCAB, (n,), generator=generator).tolist() for n in lengths]
                optimizer.zero_grad()
                loss_of(model, (pad([w + [EOS] for w in words]), pad([[BOS] + w[::-1] + [EOS] for w in words]))).backward()
                optimizer.step()
        _trained.update(model.state_dict())
    return _trained


# --- greedy decoding ------------------------------------------------------------

GREEDY_SLIPS = {
    "no early stop": "decoding all max_new_tokens steps after every row has already produced <eos>",
    # A trained model often writes <eos> again after <eos>: the two slips then give the same output.
    "eos fill": "a finished row not padded (after its <eos> it must hold <pad>, not more <eos> or words)",
    "no pad": "a finished row not padded (after its <eos> it must hold <pad>, not more <eos> or words)",
    "first position": "the first position's logits, not the last position's",
    "wrong dim": "the argmax over the positions (dim 1) instead of over the vocabulary",
    "last token only": "the decoder reading only the last token written, not the whole prefix",
    "no bos": "an output that leaves out the leading <bos>",
    "start from pad": "decoding started from <pad> instead of <bos>",
    "no memory mask": "the source's padding left unmasked (no memory mask given to the decoder)",
}


@torch.no_grad()
def _slipped_greedy(model, source, max_new_tokens: int, slip: str) -> torch.Tensor:
    """What greedy decoding gives with one classic slip (GREEDY_SLIPS)."""
    memory, memory_mask = model.encode(source)
    if slip == "no memory mask":
        memory_mask = None
    prefix = torch.full((len(source), 1), PAD if slip == "start from pad" else BOS, dtype=torch.long)
    finished = torch.zeros(len(source), dtype=torch.bool)
    for _ in range(max_new_tokens):
        logits, _ = model.decode(prefix[:, -1:] if slip == "last token only" else prefix, memory, memory_mask)
        if slip == "first position":
            token = logits[:, 0].argmax(dim=-1)
        elif slip == "wrong dim":
            token = logits.argmax(dim=1)[:, -1]
        else:
            token = logits[:, -1].argmax(dim=-1)
        if slip != "no pad":
            token = token.masked_fill(finished, EOS if slip == "eos fill" else PAD)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        finished |= token == EOS
        if finished.all() and slip != "no early stop":
            break
    return prefix[:, 1:] if slip == "no bos" else prefix


def _end_steps(generated: torch.Tensor) -> list:
    """The step (1, 2, ...) at which each row wrote its <eos>, or None."""
    return [row.index(EOS) if EOS in row else None for row in generated.tolist()]


def _greedy_cases():
    """(what, source, max_new_tokens) for the checks: sources of several
    lengths, padded, whose rows end at different steps, drawn from the
    checker's seed, and chosen with the course's decoder on the test model."""
    model = _test_model(trained=True)
    generator = torch.Generator().manual_seed(seeded(707))
    lengths = torch.randint(2, 8, (400,), generator=generator).tolist()
    rows = [torch.randint(4, _VOCAB, (n,), generator=generator).tolist() + [EOS] for n in lengths]
    ends = _end_steps(greedy_decode(model, pad(rows), 10))
    by_end = {}
    for row, end in zip(rows, ends):
        by_end.setdefault(end, []).append(row)
    finishing = sorted(end for end in by_end if end is not None)
    # Five rows that end at five different steps (or as many as there are), of several lengths.
    varied = [by_end[end][0] for end in finishing[:5]]
    # A row that ends within 2 steps beside rows that do not: cut off at max_new_tokens=2.
    early, late = by_end[finishing[0]][-1], [row for row, end in zip(rows, ends) if end is None or end > 2][:2]
    middle = by_end[finishing[len(finishing) // 2]][-1]
    # The names say nothing that depends on the test model's training, so that a report reads the same on any CPU.
    cases = [("padded sources whose rows end at different steps", pad(varied), 12),
             ("max_new_tokens=2, one row ended within it and the others cut off", pad([early] + late), 2),
             ("a single source", pad([middle]), 9)]
    return model, cases



class _encoder_calls:
    """`with _encoder_calls(model) as calls:` how often the model's encoder ran
    (a global hook, in the notebook only: a graded answer runs elsewhere)."""

    def __init__(self, model):
        self.encoder, self.calls = model.transformer.encoder, [0]

    def __enter__(self) -> list:
        def count(module, args):
            self.calls[0] += module is self.encoder

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(count)
        return self.calls

    def __exit__(self, *exception) -> None:
        self.handle.remove()


def _first_difference(actual: torch.Tensor, expected: torch.Tensor) -> str:
    if actual.shape != expected.shape:
        return f"shape {tuple(actual.shape)}"
    row, step = torch.nonzero(actual != expected)[0].tolist()
    return f"row {row}, position {step}: token {actual[row, step].item()} (expected {expected[row, step].item()})"


def check_greedy_decode(greedy_decode_answer) -> None:
    """Check a learner's `greedy_decode(model, source, max_new_tokens)`
    against `seq2seq.greedy_decode`, on a random model of the checker's own."""
    with Checker("07.greedy_decode", references=[greedy_decode, greedy_reversals, greedy]) as check:
        model, cases = _greedy_cases()
        for what, source, max_new_tokens in cases:
            with _encoder_calls(model) as encodes:
                out = check.call(greedy_decode_answer, model, source, max_new_tokens)
            expected = greedy_decode(model, source, max_new_tokens)
            check.require(f"{what}: returns a tensor of token ids", isinstance(out, torch.Tensor) and not
                          out.is_floating_point() and not out.is_complex(), "a LongTensor",
                          f"{getattr(out, 'dtype', type(out).__name__)}", "return the ids themselves, not logits or a list")
            if not check.that(f"{what}: the source left as it was", not check.wrote_into, "source unchanged",
                              "your function wrote into its input", "build new tensors; never edit the source"):
                return
            if not torch.equal(out.cpu().long(), expected):
                slipped = next((name for key, name in GREEDY_SLIPS.items()
                                if torch.equal(out.cpu().long(), _slipped_greedy(model, source, max_new_tokens, key))), None)
                check.fail(f"{what}: the tokens", f"shape {tuple(expected.shape)}, the course's greedy_decode's tokens",
                           _first_difference(out.cpu().long(), expected),
                           f"your output is exactly what {slipped} gives" if slipped else
                           "print your output beside the stopping rule: a row's first <eos>, <pad> after it, "
                           "and no step once every row has ended")
                return
            check.that(f"{what}: the tokens", True)
            if encodes[0] > 1:  # right, but worth knowing
                check.that(f"{what}: right, though the source was encoded {encodes[0]} times "
                           "(once is enough: the memory does not change while decoding)", True)
        check.that("the result is int64 on the source's device", out.dtype == torch.long and out.device == source.device,
                   f"torch.int64 on {source.device}", f"{out.dtype} on {out.device}",
                   "build new tensors with the source's dtype and device")


# --- the teacher-forcing loss ---------------------------------------------------

LOSS_SLIPS = {
    "not shifted": "labels not shifted: each position scored on the token it reads",
    "whole target": "the decoder reading the whole target and scored on it (no shift)",
    "pads scored": "<pad> labels scored (no ignore_index)",
    "mean over pads": "<pad> losses left out of the sum but counted in the mean",
    "smoothing twice": "label smoothing applied twice (smoothed targets and label_smoothing together)",
    "no smoothing": "label_smoothing not applied",
    "other words only": "ε spread over the wrong words only (PyTorch's target, like Szegedy et al.'s, spreads it over all)",
    "sum": "the sum over positions, not the mean",
    "kl divergence": "the KL divergence from the smoothed target instead of the cross-entropy "
                     "(smaller by the target's own entropy: the same gradient, another number)",
    "annotated": "The Annotated Transformer's smoothing (ε over the V - 2 words that are neither right nor <pad>, "
                 "scored by KL divergence): a variant, not PyTorch's and the paper's even spread",
}


def _slipped_loss(model, source, target, label_smoothing: float, slip: str) -> torch.Tensor:
    """What the teacher-forcing loss gives with one classic slip (LOSS_SLIPS)."""
    reads, labels = (target, target) if slip == "whole target" else (target[:, :-1], target[:, 1:])
    if slip == "not shifted":
        labels = target[:, :-1]
    logits = model(source, reads).flatten(0, 1)
    labels = labels.flatten()
    if slip == "pads scored":
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if slip in ("mean over pads", "sum"):
        each = F.cross_entropy(logits, labels, ignore_index=PAD, label_smoothing=label_smoothing, reduction="none")
        return each.sum() / (len(labels) if slip == "mean over pads" else 1)
    if slip in ("kl divergence", "annotated"):
        vocab, real = logits.size(-1), labels != PAD
        if slip == "kl divergence":
            wanted = F.one_hot(labels, vocab) * (1 - label_smoothing) + label_smoothing / vocab
        else:
            wanted = torch.full((len(labels), vocab), label_smoothing / (vocab - 2))
            wanted[:, PAD] = 0
            wanted.scatter_(1, labels[:, None], 1 - label_smoothing)
        wanted = wanted[real].to(logits.dtype)
        return F.kl_div(logits[real].log_softmax(-1), wanted, reduction="sum") / real.sum()
    if slip in ("smoothing twice", "other words only"):
        vocab, real = logits.size(-1), labels != PAD
        if slip == "smoothing twice":
            wanted = F.one_hot(labels, vocab) * (1 - label_smoothing) + label_smoothing / vocab
            return F.cross_entropy(logits[real], wanted[real].to(logits.dtype), label_smoothing=label_smoothing)
        wanted = F.one_hot(labels, vocab) * (1 - label_smoothing - label_smoothing / (vocab - 1)) + label_smoothing / (vocab - 1)
        return F.cross_entropy(logits[real], wanted[real].to(logits.dtype))
    return F.cross_entropy(logits, labels, ignore_index=PAD, label_smoothing=0.0 if slip == "no smoothing" else label_smoothing)


def _loss_cases():
    """(what, source, target, ε): padded sources and targets of lengths and
    batch sizes the lesson never uses, drawn from the checker's seed."""
    generator = torch.Generator().manual_seed(seeded(717))

    def pairs(batch: int):
        lengths = torch.randint(2, 9, (batch,), generator=generator).tolist()
        lengths[0], lengths[-1] = 2, 8  # so that both sides are padded
        words = [torch.randint(4, _VOCAB, (n,), generator=generator).tolist() for n in lengths]
        return pad([w + [EOS] for w in words]), pad([[BOS] + w[::-1] + [EOS] for w in words])

    return [("a batch of 3, padded, ε = 0.1", *pairs(3), 0.1),
            ("a batch of 6, padded, ε = 0.3", *pairs(6), 0.3),
            ("a batch of 2, padded, ε = 0 (no smoothing)", *pairs(2), 0.0)]


def check_teacher_forcing_loss(teacher_forcing_loss_answer) -> None:
    """Check a learner's `teacher_forcing_loss(model, batch, label_smoothing)`,
    batch = (source, target), against `seq2seq.loss_of`, on a random model of
    the checker's own, and with a float64 model."""
    with Checker("07.teacher_forcing_loss", references=[loss_of, F.cross_entropy, F.nll_loss]) as check:
        model = _test_model()
        for what, source, target, label_smoothing in _loss_cases():
            out = check.call(teacher_forcing_loss_answer, model, (source, target), label_smoothing)
            check.require(f"{what}: returns one number, as a tensor", isinstance(out, torch.Tensor) and out.numel() == 1,
                          "a tensor with one element", f"{getattr(out, 'shape', type(out).__name__)}",
                          "return the mean loss as a tensor (not .item(): the optimiser needs its gradient)")
            if not check.that(f"{what}: source and target left as they were", not check.wrote_into, "inputs unchanged",
                              "your function wrote into its input", "slice and build new tensors; never edit the batch"):
                return
            with torch.no_grad():
                expected = loss_of(model, (source, target), label_smoothing)
                mistakes = {name: _slipped_loss(model, source, target, label_smoothing, key) for key, name in LOSS_SLIPS.items()}
            if not check.close(f"{what}: the loss", out.detach().reshape(()), expected, atol=1e-5, rtol=1e-5,
                               mistakes=mistakes, hint="compare, position by position, what the decoder reads with "
                                                       "what it is scored on, and which labels count"):
                return
            if not isinstance(teacher_forcing_loss_answer, remote.Remote):  # a reply from the sandbox carries no graph
                check.that(f"{what}: the loss carries its gradient", out.requires_grad, "a loss that can be backpropagated",
                           "a tensor without a gradient", "keep the computation in torch, inside the autograd graph")
        _, source, target, label_smoothing = _loss_cases()[0]
        out = check.call(teacher_forcing_loss_answer, _test_model(torch.float64), (source, target), label_smoothing)
        check.that("a float64 model gives a float64 loss", isinstance(out, torch.Tensor) and out.dtype == torch.float64,
                   "torch.float64", f"{getattr(out, 'dtype', type(out).__name__)}", "build no tensor of your own in float32")
