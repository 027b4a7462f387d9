"""The lesson 10 checker passes the reference and another correct way of
writing it, names each classic slip of nucleus filtering, and never crashes."""

import json

import torch.nn.functional as F

import pytest
import torch

from course_utils.classroom.checks.gpt import check_gpt_forward, check_top_p_filter
from course_utils.generation import top_p_filter

pytestmark = pytest.mark.usefixtures("both_sides")  # each test also as `course grade` runs it


def run(function, capsys):
    check_top_p_filter(function)
    return capsys.readouterr().out


def test_reference_passes_and_is_recorded(capsys, progress_file):
    out = run(top_p_filter, capsys)
    assert "checks passed" in out and "✗" not in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"], entry["max"]) == ("10.top_p_filter", 1, 1)


def test_a_loop_over_rows_passes(capsys):
    def by_rows(logits, p):
        out = logits.clone()
        if p >= 1:  # float32 probabilities need not sum to exactly 1
            return out
        for row in out:
            probabilities, order = row.softmax(-1).sort(descending=True)
            total = 0.0
            for probability, index in zip(probabilities.tolist(), order.tolist()):
                if total >= p:
                    row[index] = float("-inf")
                total += probability
        return out

    assert "✗" not in run(by_rows, capsys)


def _slip(kind):
    def answer(logits, p):
        if kind == "exp":
            probabilities, order = logits.exp().sort(dim=-1, descending=True)
        elif kind == "rows":
            probabilities, order = logits.softmax(0).sort(dim=-1, descending=True)
        else:
            probabilities, order = logits.softmax(-1).sort(dim=-1, descending=kind != "ascending")
        running = probabilities.cumsum(-1)
        if kind == "crossing":
            drop = running > p
        elif kind == "at most p, top kept":
            drop = running > p
            drop[..., 0] = False
        else:
            drop = running - probabilities >= p
        if kind == "unsorted":
            return logits.masked_fill(drop, float("-inf"))
        drop = torch.zeros_like(drop).scatter(-1, order, drop)
        if kind == "probabilities":
            kept = logits.softmax(-1).masked_fill(drop, 0)
            return kept / kept.sum(-1, keepdim=True)
        if kind == "first row's count":
            count = int((~drop[0]).sum())
            drop = torch.zeros_like(drop).scatter(-1, order, torch.arange(drop.size(-1)).expand_as(drop) >= count)
            return logits.masked_fill(drop, float("-inf"))
        if kind == "nan":
            return logits + torch.where(drop, float("-inf"), 0.0) * 0
        if kind == "in place":
            return logits.masked_fill_(drop, float("-inf"))
        return logits.masked_fill(drop, float("-inf"))
    return answer


def test_each_classic_slip_is_named(capsys):
    assert "dropping the token that crosses p" in run(_slip("crossing"), capsys)
    assert "sorting from least to most likely" in run(_slip("ascending"), capsys)
    assert "keeping the mask in sorted order" in run(_slip("unsorted"), capsys)
    assert "wrote into its input" in run(_slip("in place"), capsys)
    out = run(_slip("probabilities"), capsys)
    assert "returning probabilities (dropped ones at 0)" in out
    assert "exponentiating the logits without normalising them" in run(_slip("exp"), capsys)
    assert "a softmax over the rows (dim=0)" in run(_slip("rows"), capsys)
    assert "counting the tokens to keep on the first row" in run(_slip("first row's count"), capsys)
    assert "dropping the token that crosses p" in run(_slip("at most p, top kept"), capsys)
    assert "NaN at" in run(_slip("nan"), capsys)


def test_a_float32_running_sum_fails_at_p_1_on_a_large_vocabulary(capsys):
    out = run(_slip("plain"), capsys)  # right on every small row, in float32
    assert "✓ p = 0.85" in out and "✓ 5 random rows of 200 logits" in out, out
    # Whether the 50,257 random logits trip a float32 running sum depends on their draw (the grader's seed
    # moves it) and on the order the CPU's kernel adds in; the row with one token at 99.9998% trips it on
    # every CPU and seed tried, so the slip never passes.
    assert "✗ p = 1 keeps all 1,001 tokens" in out and "a float32 softmax's rounded" in out, out


def test_the_count_may_not_come_from_one_row_only(capsys):
    """The rows differ: with a count from row 0 the small rows already fail."""
    out = run(_slip("first row's count"), capsys)
    assert "✗ p = 0.6" in out, out


def test_a_float64_answer_keeps_its_dtype_and_a_float32_one_must_too(capsys):
    out = run(lambda logits, p: top_p_filter(logits.float(), p) if p < 1 else logits.float(), capsys)
    assert "✗ float64 logits come back as float64" in out, out


def test_a_stub_a_crash_and_a_non_function_are_reported(capsys, progress_file):
    def stub(logits, p):
        raise NotImplementedError

    assert "not attempted" in run(stub, capsys).lower()
    assert "ZeroDivisionError" in run(lambda logits, p: 1 / 0, capsys)
    assert "a function" in run(42, capsys)
    assert "shape" in run(lambda logits, p: logits[0], capsys)


# --- 10.gpt_forward -------------------------------------------------------------------

def _forward(slip=None):
    """A learner's gpt_forward, written as the lesson asks, with one slip."""
    import torch.nn.functional as F

    def gpt_forward(model, ids, past=None):
        start = 0 if past is None or slip in ("restart", "ignore past") else past[0][0].size(2)
        positions = torch.arange(start, start + ids.size(1))
        x = model.token_embedding(ids) + model.position_embedding(positions)
        present = []
        for i, block in enumerate(model.blocks):
            attention = block.self_attn
            q, k, v = attention.in_proj(block.norm1(x)).chunk(3, dim=-1)
            q, k, v = attention.split_heads(q), attention.split_heads(k), attention.split_heads(v)
            if past is not None and slip != "ignore past":
                if slip == "in place":
                    past[i][0].zero_()
                k = torch.cat([past[i][0], k], dim=2)
                v = torch.cat([past[i][1], v], dim=2)
            present.append((k, v) if slip != "swapped" else (v, k))
            scores = q @ k.transpose(-2, -1) / (attention.d_model if slip == "width" else attention.head_dim) ** 0.5
            if slip == "top-left":
                allowed = torch.tril(torch.ones(q.size(2), k.size(2), dtype=torch.bool))
            else:
                allowed = torch.tril(torch.ones(q.size(2), k.size(2), dtype=torch.bool), diagonal=k.size(2) - q.size(2))
            weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            x = x + attention.out_proj(attention.merge_heads(weights @ v))
            x = x + block.feed_forward(block.norm2(x))
        logits = F.linear(model.final_norm(x) if slip != "no final norm" else x, model.token_embedding.weight)
        return (logits.float() if slip == "float32 logits" else logits), present

    return gpt_forward


def run_forward(function, capsys):
    check_gpt_forward(function)
    return capsys.readouterr().out


def test_a_right_gpt_forward_passes(capsys, progress_file):
    out = run_forward(_forward(), capsys)
    assert "checks passed" in out and "✗" not in out, out
    entry = json.loads(progress_file.read_text())
    assert (entry["item"], entry["points"]) == ("10.gpt_forward", 1), entry


def test_each_gpt_forward_slip_is_named(capsys):
    assert "positions that restart at 0 after the cache" in run_forward(_forward("restart"), capsys)
    assert "a causal mask in the top-left corner" in run_forward(_forward("top-left"), capsys)
    assert "the past ignored" in run_forward(_forward("ignore past"), capsys)
    assert "no final LayerNorm" in run_forward(_forward("no final norm"), capsys)
    assert "square root of the model's width" in run_forward(_forward("width"), capsys)
    assert "wrote into its input" in run_forward(_forward("in place"), capsys)
    out = run_forward(_forward("swapped"), capsys)
    assert "✗ 4 new tokens after 5 in the past: present holds" in out or "✗ a text of 7 tokens, no past: present holds" in out, out
    assert "✗ a float64 model gives float64 logits" in run_forward(_forward("float32 logits"), capsys)


def test_an_answer_that_calls_the_blocks_does_not_pass(capsys, request):
    """In the notebook, a hook sees the block called; graded, the sandbox's watch does (tests/test_sandbox.py)."""
    from course_utils.attention import KVCache

    def by_blocks(model, ids, past=None):
        start = 0 if past is None else past[0][0].size(2)
        x = model.token_embedding(ids) + model.position_embedding(torch.arange(start, start + ids.size(1)))
        caches = []
        for layer, block in enumerate(model.blocks):
            cache = KVCache(model.config.context)
            if past is not None:
                cache.append(*past[layer])
            x, _ = block(x, is_causal=True, cache=cache)
            caches.append(cache.held())
        return F.linear(model.final_norm(x), model.token_embedding.weight), caches

    out = run_forward(by_blocks, capsys)
    if request.node.callspec.params["both_sides"] == "in the notebook":
        assert "your code called EncoderLayer, MultiHeadAttention" in out, out


def test_minus_a_billion_is_not_minus_infinity(capsys):
    def almost(logits, p):
        return top_p_filter(logits, p).nan_to_num(neginf=-1e9)

    assert "✗ p = 0.6: dropped tokens at -inf" in run(almost, capsys)


def test_the_model_called_whole_does_not_pass(capsys):
    """Running the model itself is seen (graded, the sandbox's watch sees it too: tests/test_sandbox.py)."""
    out = run_forward(lambda model, ids, past=None: (model(ids), []), capsys)
    assert "✗" in out and "GPT" in out, out


def test_a_stub_of_gpt_forward_is_not_attempted(capsys):
    def stub(model, ids, past=None):
        raise NotImplementedError

    assert "not attempted" in run_forward(stub, capsys).lower()
