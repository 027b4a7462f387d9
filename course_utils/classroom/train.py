"""`course train`: the training runs that are longer than a lesson.

`course train bert`: lesson 08 trains a small BERT for a minute; this trains
the same recipe for longer, evaluates it on the held-out plays as it goes,
and writes the curve to a small JSON file that the lesson plots.

`course train gpt` and `course train modern`: lesson 10's GPT and lesson
12's modern decoder, trained by lesson 10's recipe (nanoGPT's 2,000 steps by
default) on the course's characters; the curve of losses goes to a JSON file
in the run's folder.

Every run is deterministic (each step's batch comes from the recipe and the
step number) and resumable: a checkpoint (`course_utils.checkpoint`) is
written at every evaluation, and running the command again continues from
the last one, exactly as if it had never stopped. The weights stay in the
cache folder; only lesson 08's curve is committed.
"""

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from course_utils.checkpoint import atomic_write, load_checkpoint, save_checkpoint

RESULTS = Path(__file__).resolve().parents[1] / "results"  # course_utils/results: shipped with the package
BERT_RESULTS = RESULTS / "bert_pretraining.json"
MODERN_VS_GPT_RESULTS = RESULTS / "modern_vs_gpt.json"  # lesson 12: benchmarks/modern_vs_gpt.py
SFT_RESULTS = RESULTS / "sft_plays.json"  # lesson 14: benchmarks/sft_plays.py
LORA_RESULTS = RESULTS / "lora_kinds.json"  # lesson 14: benchmarks/lora_kinds.py
LONG_RUN_STEPS = 4000


def run_folder(kind: str, settings: dict) -> Path:
    """Where a run's checkpoint lives: one folder per model kind and settings
    (`settings` as the checkpoint stores them)."""
    from course_utils.data import cache_dir

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "runs" / f"{kind}-{digest}"


def machine() -> str:
    """The machine a run took its time on, in one line."""
    return (f"{platform.machine()}, {os.cpu_count()} cores ({torch.get_num_threads()} thread(s) used), "
            f"torch {torch.__version__}")


def _write_results(report: dict, results: Path) -> None:
    atomic_write(results, lambda path: path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8"))
    print(f"Results: {results}")


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
    settings = dataclasses.asdict(recipe)
    checkpoint = run_folder("bert", settings) / "checkpoint.pt"
    done, curve, seconds, earlier_wall = 0, [], 0.0, 0.0
    run_wall = 0.0  # the run's wall time up to its last checkpoint
    if checkpoint.is_file() and not fresh:
        resumed = load_checkpoint(checkpoint, model, optimizer, settings)
        done = resumed.step
        curve, seconds, earlier_wall = (resumed.extra[key] for key in ("curve", "seconds", "wall_seconds"))
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
        save_checkpoint(checkpoint, model, optimizer, done, settings,
                        extra={"curve": curve, "seconds": seconds, "wall_seconds": run_wall})
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
              "machine": machine(), "curve": curve}
    _write_results(report, results)
    return report


def decoder_settings(config, recipe) -> dict:
    """What decides a `course train gpt` or `modern` run: the model's config and the recipe."""
    return {"config": dataclasses.asdict(config), "recipe": dataclasses.asdict(recipe)}


def train_decoder(kind: str, recipe=None, config=None, fresh: bool = False, results: Path | None = None,
                  progress: bool = True) -> dict:
    """Train lesson 10's GPT (kind "gpt") or lesson 12's ModernDecoder
    ("modern"), of `config` (default: the lesson's), on the course's
    characters by `recipe` (default: `gpt.TrainingRecipe()`, nanoGPT's);
    evaluate and save a checkpoint every recipe.eval_every steps and at the
    last; resume from the run's checkpoint unless `fresh`. Writes the results
    to `results` (default: results.json in the run's folder) and returns
    them; their `wall_seconds` adds up every resumed part of the run, up to
    its last checkpoint.

    Run in every process of a process group (`course train ... --processes
    N` starts them with torchrun), it trains data-parallel: each process on
    its shard of every batch (`distributed.train_gpt_data_parallel`), rank 0
    alone writing the checkpoints and the results. The checkpoint is the same
    whatever the number of processes, so a run may resume with another."""
    from course_utils import distributed, gpt, modern

    began = time.perf_counter()
    model_class, config_class = {"gpt": (gpt.GPT, gpt.GPTConfig),
                                 "modern": (modern.ModernDecoder, modern.ModernConfig)}[kind]
    recipe = recipe or gpt.TrainingRecipe()
    tokenizer, train_ids, validation_ids = gpt.character_data()
    config = config or config_class(vocab_size=tokenizer.get_vocab_size())
    settings = decoder_settings(config, recipe)
    folder = run_folder(kind, settings)
    checkpoint, results = folder / "checkpoint.pt", results or folder / "results.json"
    torch.manual_seed(recipe.seed)  # the same first weights on every fresh run (0 by default, as lessons 10 and 12 seed)
    model = model_class(config)
    optimizer = recipe.optimizer(model)
    run, earlier_wall = gpt.TrainingRun(), 0.0
    if checkpoint.is_file() and not fresh:
        resumed = load_checkpoint(checkpoint, model, optimizer, settings)
        run, earlier_wall = gpt.TrainingRun(**resumed.extra["run"]), resumed.extra["wall_seconds"]
        print(f"Resuming from step {resumed.step} of {recipe.steps} ({checkpoint})")
    run_wall = earlier_wall  # the run's wall time up to its last checkpoint

    def save(step: int) -> None:  # called in rank 0 only, when data-parallel
        nonlocal run_wall
        if step == 0:  # the evaluation before training: nothing to save yet
            return
        run_wall = earlier_wall + time.perf_counter() - began
        save_checkpoint(checkpoint, model, optimizer, step, settings,
                        extra={"run": dataclasses.asdict(run), "wall_seconds": run_wall})

    processes = distributed.rank_and_world_size()[1]
    train_gpt = distributed.train_gpt_data_parallel if processes > 1 else gpt.train_gpt
    train_gpt(model, train_ids, validation_ids, recipe, progress=progress, optimizer=optimizer, run=run,
              after_evaluation=save)
    curve = [{"step": step, "train_loss": train_loss, "validation_loss": validation_loss}
             for step, train_loss, validation_loss in run.evaluations]
    report = {"model": kind, "config": settings["config"], "recipe": settings["recipe"], "curve": curve,
              # a loss in nats per character, divided by ln 2: bits per character
              "bits_per_character": curve[-1]["validation_loss"] / math.log(2),
              "wall_seconds": round(run_wall), "machine": machine(),
              "processes": processes}  # of this part of the run: a resumed run may use another number
    if distributed.is_main_process():
        _write_results(report, results)
    return report


# A read-only folder of finished runs (as the cache's runs/ folder holds them)
# that `trained_decoder` reads before the cache: `course grade` shows the
# grader's own to each sandbox there, so that no submission trains lesson
# 14's base model again; a lab may point every learner at one the same way.
SHARED_RUNS_VARIABLE = "COURSE_SHARED_RUNS"


def trained_decoder(kind: str, recipe, config=None, progress: bool = True):
    """The model that `course train KIND` makes with `recipe` (and `config`,
    by default the lesson's), loaded from its checkpoint in the cache
    folder (or in COURSE_SHARED_RUNS, where it is finished there); the run
    is made (or finished) first if the checkpoint is missing or short of its
    last step. `make setup` makes lesson 14's this way, once (`course train
    gpt --recipe short`)."""
    from course_utils import gpt, modern
    from course_utils.checkpoint import CheckpointError

    model_class, config_class = {"gpt": (gpt.GPT, gpt.GPTConfig),
                                 "modern": (modern.ModernDecoder, modern.ModernConfig)}[kind]
    model = model_class(config or config_class(vocab_size=gpt.character_data()[0].get_vocab_size()))
    settings = decoder_settings(model.config, recipe)
    checkpoint = run_folder(kind, settings) / "checkpoint.pt"
    shared = os.environ.get(SHARED_RUNS_VARIABLE)
    if shared and (Path(shared) / checkpoint.parent.name / "checkpoint.pt").is_file():
        checkpoint = Path(shared) / checkpoint.parent.name / "checkpoint.pt"  # made once, read by every learner
    damaged = None
    try:
        done = load_checkpoint(checkpoint, model, recipe.optimizer(model), settings).step == recipe.steps
    except CheckpointError as error:  # none yet, or one that cannot be used: made again from the start
        done, damaged = False, error if checkpoint.is_file() else None
    if not done:
        checkpoint = run_folder(kind, settings) / "checkpoint.pt"  # a shared one is never written into
        print((f"{damaged}\n" if damaged else "") + f"Training the base model now (`course train {kind}`, "
              f"{recipe.steps} steps: about a minute on 2 cores); it is kept in {checkpoint.parent} for the next time.")
        train_decoder(kind, recipe, config, fresh=damaged is not None, progress=progress)
        load_checkpoint(checkpoint, model, recipe.optimizer(model), settings)
    return model.eval()


# The stored results each lesson reads, with what makes them again.
MADE_BY = {BERT_RESULTS.name: "run `course train bert` (the stored run took 27 minutes on one thread of a 2-core CPU)",
           MODERN_VS_GPT_RESULTS.name: "run `python benchmarks/modern_vs_gpt.py --threads 2` (about 20 minutes "
                                       "on a 2-core CPU)",
           SFT_RESULTS.name: "run `python benchmarks/sft_plays.py --threads 2` (about 10 minutes on a 2-core CPU)",
           LORA_RESULTS.name: "run `python benchmarks/lora_kinds.py --threads 2` (about 25 minutes on a 2-core CPU)"}


def load_results(path: Path = BERT_RESULTS) -> dict:
    """Stored results (by default those of `course train bert`), with the command that makes them if they are missing."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {MADE_BY.get(path.name, MADE_BY[BERT_RESULTS.name])} to make it")
    return json.loads(path.read_text(encoding="utf-8"))
