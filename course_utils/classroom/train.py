"""`course train bert`: the pre-training run that is longer than a lesson.

Lesson 08 trains a small BERT for a minute; this command trains the same
recipe for longer, evaluates it on the held-out plays as it goes, and writes
the curve to a small JSON file that the lesson plots. The run is
deterministic (each step's batch comes from the recipe and the step number)
and resumable: a checkpoint is written at every evaluation, and running the
command again continues from the last one, exactly as if it had never
stopped. The weights stay in the cache folder; only the curve is committed.
"""

import dataclasses
import hashlib
import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "results"  # course_utils/results: shipped with the package
BERT_RESULTS = RESULTS / "bert_pretraining.json"
LONG_RUN_STEPS = 4000


def _atomic_write(path: Path, write) -> None:
    """write(temporary path), then rename over `path` in one step: a reader
    (or a run killed mid-write) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    write(partial)
    os.replace(partial, path)


def run_folder(recipe) -> Path:
    """Where a recipe's checkpoint lives: one folder per recipe."""
    from course_utils.data import cache_dir

    digest = hashlib.sha256(json.dumps(dataclasses.asdict(recipe), sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "runs" / f"bert-{digest}"


def train_bert(recipe=None, eval_every: int = 250, fresh: bool = False, results: Path = BERT_RESULTS,
               held_out_pairs: int = 1900, progress: bool = True) -> dict:
    """Pre-train BERT by `recipe` (lesson 08's, for LONG_RUN_STEPS steps, by
    default), evaluating every `eval_every` steps; resume from the recipe's
    checkpoint unless `fresh`. Writes and returns the results, whose
    `wall_seconds` and `training_seconds` both add up over every resumed
    part of the run (the checkpoint keeps both), up to its last checkpoint;
    `final_nsp_right` holds the last model's right (1) and wrong (0) NSP
    answers, pair by pair, on each evaluation set."""
    from course_utils import bert
    from course_utils.tokenization import shakespeare_wordpiece

    began = time.perf_counter()
    recipe = recipe or bert.PretrainingRecipe(steps=LONG_RUN_STEPS)
    tokenizer = shakespeare_wordpiece()
    training, held_out = bert.pretraining_speeches(recipe.names)
    # NSP is scored on the pairs unmasked, as a reader sees them; MLM on the
    # "other" pairs, masked once with a fixed seed.
    evaluation = {negatives: recipe.held_out_batches(tokenizer, held_out, negatives, held_out_pairs)
                  for negatives in bert.NEGATIVES}
    # The same measures on training plays. Their true pairs were mostly seen in
    # training, so high accuracy there can be memory: of the pairs themselves
    # or of which play a text belongs to (then only "other play" scores high).
    for negatives in ("other", "same"):
        evaluation[f"train_{negatives}"] = recipe.held_out_batches(tokenizer, training, negatives, held_out_pairs)
    model = recipe.build_model(len(tokenizer))
    optimizer = bert.pretraining_optimizer(model, recipe)
    checkpoint = run_folder(recipe) / "checkpoint.pt"
    done, curve, seconds, earlier_wall = 0, [], 0.0, 0.0
    run_wall = 0.0  # the run's wall time up to its last checkpoint
    if checkpoint.is_file() and not fresh:
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done, curve, seconds = state["step"], json.loads(state["curve"]), state["seconds"]
        earlier_wall = state.get("wall_seconds", seconds)  # a checkpoint from before wall time was kept: a floor
        run_wall = earlier_wall
        print(f"Resuming from step {done} of {recipe.steps} ({checkpoint})")

    def wall() -> float:  # this invocation's time, plus the parts of the run before it
        return earlier_wall + time.perf_counter() - began

    while done < recipe.steps:
        stop = min(done + eval_every, recipe.steps)
        started = time.perf_counter()
        mlm_losses, nsp_losses = bert.pretrain(model, optimizer, recipe, tokenizer, training, first_step=done + 1,
                                               last_step=stop, progress=progress)
        seconds += time.perf_counter() - started
        point = {"step": stop, "train_mlm_loss": sum(mlm_losses) / len(mlm_losses),
                 "train_nsp_loss": sum(nsp_losses) / len(nsp_losses)}
        for negatives, batches in evaluation.items():
            accuracy = bert.pretraining_accuracy(model, batches, tokenizer.mask_token_id, nsp_input="unmasked")
            point[f"nsp_accuracy_{negatives}"] = accuracy["nsp"]
            if negatives == "other":
                point["held_out_mlm_accuracy"] = accuracy["mlm"]
        curve.append(point)
        done = stop
        run_wall = wall()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": done,
                 "curve": json.dumps(curve), "seconds": seconds, "wall_seconds": run_wall}
        _atomic_write(checkpoint, lambda path: torch.save(state, path))
        print(f"step {done:>5}: MLM loss {point['train_mlm_loss']:.2f}, held-out MLM accuracy "
              f"{point['held_out_mlm_accuracy']:.3f}; NSP accuracy, held out: {point['nsp_accuracy_other']:.3f} "
              f"(other play), {point['nsp_accuracy_same']:.3f} (same play), {point['nsp_accuracy_swapped']:.3f} "
              f"(swapped); training plays: {point['nsp_accuracy_train_other']:.3f}, "
              f"{point['nsp_accuracy_train_same']:.3f}", flush=True)

    # The last model's NSP answer on every pair, right (1) or wrong (0), in
    # the order of the recipe's held-out pairs: for paired tests against other
    # rules on the same pairs, and intervals that resample the plays.
    final_right = {negatives: "".join(str(int(right)) for right in bert.pretraining_accuracy(
        model, batches, tokenizer.mask_token_id, nsp_input="unmasked")["nsp_right"])
        for negatives, batches in evaluation.items()}
    report = {"command": f"course train bert --steps {recipe.steps}", "recipe": dataclasses.asdict(recipe),
              "held_out_pairs": held_out_pairs, "nsp_input": "unmasked", "training_seconds": round(seconds),
              "wall_seconds": round(run_wall), "final_nsp_right": final_right,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores ({torch.get_num_threads()} thread(s) used), "
                         f"torch {torch.__version__}", "curve": curve}
    _atomic_write(results, lambda path: path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8"))
    print(f"Results: {results}")
    return report


def load_results(path: Path = BERT_RESULTS) -> dict:
    """The stored results of `course train bert`, with the command that makes them if they are missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run `course train bert` (the stored run took 27 minutes "
                                "on one thread of a 2-core CPU) to make it")
    return json.loads(path.read_text(encoding="utf-8"))
