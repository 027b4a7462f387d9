"""Checkers for the exercises of lesson 09: a pretrained encoder in practice.

The expected values come from `course_utils.pretrained.mean_pool`: the mean
over the real tokens, which is how sentence-transformers pools this model
(its folder's 1_Pooling/config.json asks for mean pooling). tests/test_bert.py
checks that the same text gives the same vector alone and in a padded batch.
"""

import torch

from course_utils import pretrained
from . import Checker, seeded


def _padded_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Made-up token vectors for four texts of 5, 2, 3 and 3 real tokens,
    padded to 5 (the last one on the left, as some tokenizers pad), and
    their attention mask as a tokenizer returns it (integers). The
    padding's vectors are large, so that counting them in shows."""
    hidden = torch.randn(4, 5, 6, generator=generator)  # width 6, not 4: no accidental broadcast
    attention_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1]])
    hidden[attention_mask == 0] += 10
    return hidden, attention_mask


def check_mean_pool(mean_pool) -> None:
    """Check a learner's `mean_pool(hidden, attention_mask)`: on made-up
    vectors with padding, then on MiniLM's own output for a short line alone
    and padded beside a long one."""
    hidden, attention_mask = _padded_batch(torch.Generator().manual_seed(seeded(9)))
    real = attention_mask.unsqueeze(-1).float()
    mistakes = {
        "the mean over every position, padding included": hidden.mean(dim=1),
        "the sum over the real tokens, not divided by their number": (hidden * real).sum(dim=1),
        "the sum over the real tokens divided by the padded length": (hidden * real).sum(dim=1) / hidden.size(1),
        "the sum over every position divided by the number of real tokens": hidden.sum(dim=1) / real.sum(dim=1),
        "the sum over the real tokens divided by the real tokens of the whole batch": (hidden * real).sum(dim=1) / real.sum(),
        "the [CLS] vector (position 0) instead of a mean": hidden[:, 0],
        "the right mean, then normalised to unit length (that is a later step)":
            torch.nn.functional.normalize(pretrained.mean_pool(hidden, attention_mask), dim=-1),
    }
    with Checker("09.mean_pool", references=[pretrained.mean_pool]) as check:
        pooled = check.call(mean_pool, hidden, attention_mask)
        check.close("four texts of 5, 2, 3 and 3 real tokens, padded to 5 (the last on the left): "
                    "one mean vector per text, shape (4, 6)",
                    pooled, pretrained.mean_pool(hidden, attention_mask), mistakes=mistakes,
                    hint="multiply by the mask to zero the padding, and divide by the number of real tokens of each text")
        check.that("hidden and attention_mask are left as they were",
                   not check.wrote_into,
                   expected="inputs unchanged", actual="your function wrote into an input",
                   hint="build new tensors (hidden * mask, not hidden *= mask)")
        tokenizer, model = pretrained.load_encoder()
        short, long = "Brevity is the soul of wit.", "Neither a borrower nor a lender be; for loan oft loses both itself and friend."
        with torch.no_grad():
            alone = tokenizer([short], return_tensors="pt")
            batch = tokenizer([short, long], padding=True, return_tensors="pt")
            alone_vector = check.call(mean_pool, model(**alone).last_hidden_state, alone["attention_mask"])
            batch_vectors = check.call(mean_pool, model(**batch).last_hidden_state, batch["attention_mask"])
        check.close(f"MiniLM: {short!r} alone and padded beside a longer line give the same vector",
                    batch_vectors[:1] if isinstance(batch_vectors, torch.Tensor) else batch_vectors, alone_vector,
                    atol=1e-5, hint="the padded copy differs: padding still counts somewhere in your mean")
