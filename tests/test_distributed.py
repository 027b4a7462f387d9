"""course_utils.distributed: 2 processes with half the batch each train as 1
process with the whole batch; the hand-written gradient all-reduce equals
DDP's; a checkpoint of a 2-process run resumes in 1 process and back; FSDP
holds half the weights per process; the ZeRO paper's memory figures; and
every process started is ended, whatever happens.

The processes run on the loopback address, one thread each. Starting one
costs seconds (a fresh Python imports torch), so the 2-process scenarios run
in one launch (a module-scoped fixture) and the tests check its results."""

import os

import pytest
import torch
import torch.distributed as dist

from course_utils import distributed, gpt
from course_utils.classroom import train
from course_utils.classroom.pytest_plugin import processes_left
from course_utils.distributed import all_reduce_gradients, launch, memory_per_process, shard_of
from course_utils.gpt import GPT, GPTConfig, TrainingRecipe, next_token_loss, train_gpt

CONFIG = GPTConfig(vocab_size=12, context=16, width=32, layers=2, heads=2)
RECIPE = TrainingRecipe(batch_size=12, steps=20, warmup_steps=5, eval_every=10, eval_batches=1)
IDS = torch.randint(12, (3000,), generator=torch.Generator().manual_seed(0))
TRAIN_IDS, VALIDATION_IDS = IDS[:2700], IDS[2700:]
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # 20 steps of float sums in another order


def fresh_model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG)


def interrupt_at(step_to_stop: int):
    """Make every run stop (KeyboardInterrupt) when it asks for that step's batch."""
    real = gpt.TrainingRecipe.batch_at

    def batch_at(recipe, step, *args):
        if step == step_to_stop:
            raise KeyboardInterrupt
        return real(recipe, step, *args)
    gpt.TrainingRecipe.batch_at = batch_at
    return lambda: setattr(gpt.TrainingRecipe, "batch_at", real)


def decode(cache: str, fresh: bool = False):
    """`course train gpt`'s run, on the tiny data, its checkpoint in `cache`."""
    real_data, real_cache = gpt.character_data, os.environ.get("COURSE_CACHE_DIR")
    os.environ["COURSE_CACHE_DIR"] = str(cache)
    gpt.character_data = lambda: (None, TRAIN_IDS, VALIDATION_IDS)
    try:
        return train.train_decoder("gpt", RECIPE, CONFIG, fresh=fresh, progress=False)
    finally:
        gpt.character_data = real_data
        if real_cache is None:
            del os.environ["COURSE_CACHE_DIR"]
        else:
            os.environ["COURSE_CACHE_DIR"] = real_cache


def checkpoint_in(cache) -> str:
    return os.path.join(cache, "runs", train.run_folder("gpt", train.decoder_settings(CONFIG, RECIPE)).name,
                        "checkpoint.pt")


def _scenarios(rank: int, world_size: int, folder: str) -> dict:
    """Everything the tests need from 2 processes, in one launch."""
    results = {}
    # 1. Data-parallel training, batch 12 split over the processes.
    model = fresh_model()
    run = distributed.train_gpt_data_parallel(model, TRAIN_IDS, VALIDATION_IDS, RECIPE, progress=False)
    results["trained"] = (model.state_dict(), run.losses)

    # 2. The gradient of the first batch: by hand, and by DDP.
    batch = shard_of(RECIPE.batch_at(1, TRAIN_IDS, CONFIG.context), rank, world_size)
    by_hand = fresh_model()
    next_token_loss(by_hand, batch).backward()
    all_reduce_gradients(by_hand)
    by_ddp = distributed.data_parallel(fresh_model())
    next_token_loss(by_ddp.module, batch).backward()
    results["gradients"] = ({name: p.grad for name, p in by_hand.named_parameters()},
                            {name: p.grad for name, p in by_ddp.module.module.named_parameters()})

    # 3. Resume: a 2-process run stopped after its checkpoint of step 10 (the
    # parent resumes it in 1 process), and a 1-process run's checkpoint resumed here.
    restore = interrupt_at(15)
    try:
        decode(os.path.join(folder, "two-then-one"), fresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        restore()
    decode(os.path.join(folder, "one-then-two"))

    # 4. FSDP: the bytes of weights each process holds.
    results["fsdp"] = distributed._fsdp_rank(rank, world_size, CONFIG)
    return results


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed")
    one_process = str(folder / "one-then-two")
    restore = interrupt_at(15)  # the 1-process run that the 2 processes resume
    try:
        with pytest.raises(KeyboardInterrupt):
            decode(one_process, fresh=True)
    finally:
        restore()
    try:
        return folder, launch(_scenarios, 2, str(folder), timeout=120)
    finally:
        assert not processes_left()


def test_a_batch_is_split_into_consecutive_equal_shards():
    batch = (torch.arange(12), torch.arange(12) + 100)
    assert [shard_of(batch, rank, 2)[0].tolist() for rank in range(2)] == [list(range(6)), list(range(6, 12))]
    assert shard_of(batch, 1, 2)[1].tolist() == list(range(106, 112))
    with pytest.raises(ValueError, match="12 rows does not split evenly over 5 processes"):
        shard_of(batch, 0, 5)


def test_two_processes_with_half_the_batch_train_as_one_with_all_of_it(two_processes):
    model = fresh_model()
    run = train_gpt(model, TRAIN_IDS, VALIDATION_IDS, RECIPE, progress=False)
    (weights_0, losses_0), (weights_1, losses_1) = (results["trained"] for results in two_processes[1])
    assert len(losses_0) == 20 and losses_0 == losses_1  # the loss of the whole batch, in both
    torch.testing.assert_close(torch.tensor(losses_0), torch.tensor(run.losses), **TOLERANCE)
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights_0[name], weights_1[name]), name  # the copies stay equal
        torch.testing.assert_close(weights_0[name], tensor, **TOLERANCE, msg=name)


def test_the_hand_written_all_reduce_gives_ddps_gradients_and_the_whole_batchs(two_processes):
    model = fresh_model()
    next_token_loss(model, RECIPE.batch_at(1, TRAIN_IDS, CONFIG.context)).backward()
    for by_hand, by_ddp in (results["gradients"] for results in two_processes[1]):
        for name, parameter in model.named_parameters():
            assert (by_hand[name] - by_ddp[name]).abs().max() < 1e-6, name
            assert (by_hand[name] - parameter.grad).abs().max() < 1e-6, name


def test_a_checkpoint_resumes_from_two_processes_into_one_and_back(two_processes):
    folder = two_processes[0]
    whole = decode(str(folder / "whole"))
    # The 2-process run that stopped at step 15, resumed here in 1 process.
    resumed = decode(str(folder / "two-then-one"))
    assert resumed["curve"][-1]["step"] == 20
    final = torch.load(checkpoint_in(folder / "whole"), weights_only=True)
    for cache in ("two-then-one", "one-then-two"):
        state = torch.load(checkpoint_in(folder / cache), weights_only=True)
        assert state["step"] == 20
        for name, tensor in final["model"].items():
            torch.testing.assert_close(state["model"][name], tensor, **TOLERANCE, msg=f"{cache}: {name}")
        torch.testing.assert_close(torch.tensor(state["extra"]["run"]["losses"]),
                                   torch.tensor(final["extra"]["run"]["losses"]), **TOLERANCE)
    written = (folder / "one-then-two" / "runs").glob("*/results.json")
    assert '"processes": 2' in next(written).read_text()  # by rank 0 alone, at the end
    assert whole["processes"] == 1


def test_fsdp_holds_about_half_the_weights_in_each_of_two_processes(two_processes):
    reports = [results["fsdp"] for results in two_processes[1]]
    full = sum(p.numel() * 4 for p in fresh_model().parameters())
    for report in reports:
        assert report["full_parameter_bytes"] == full
        assert abs(report["local_parameter_bytes"] - full / 2) < 0.01 * full
        assert abs(report["local_optimizer_bytes"] - full) < 0.02 * full  # two moments, each half the weights
    assert sum(report["local_parameter_bytes"] for report in reports) >= full  # shards pad, never drop
    assert memory_per_process(full / 4, 2, "fsdp").weights == full / 2


def test_the_zero_papers_figure_1():
    """7.5B parameters on 64 GPUs in mixed precision: 120 GB, 31.4, 16.6 and 1.9 GB per GPU."""
    figures = {"ddp": 120, "zero1": 31.4, "zero2": 16.6, "zero3": 1.9}
    for strategy, gigabytes in figures.items():
        total = memory_per_process(7.5e9, 64, strategy, precision="mixed").total / 1e9
        assert round(total, 1) == gigabytes, strategy
    assert memory_per_process(7.5e9, 64, "fsdp", "mixed") == memory_per_process(7.5e9, 64, "zero3", "mixed")
    assert memory_per_process(1e6, 4, "ddp") == (4e6, 4e6, 8e6)  # fp32 AdamW: 4 + 4 + 8 bytes
    assert memory_per_process(1e6, 4, "zero2") == (4e6, 1e6, 2e6)
    with pytest.raises(ValueError, match="unknown strategy 'zero4'"):
        memory_per_process(1e6, 4, "zero4")


def _fail_in_rank_1(rank: int, world_size: int):
    if rank == 1:
        raise ValueError("rank 1 gives up")
    torch.distributed.barrier()  # waits for rank 1, which never comes (until gloo sees it gone, or launch ends it)


def test_a_failing_or_slow_process_ends_them_all_and_says_why():
    with pytest.raises(RuntimeError, match="(?s)rank 1:.*ValueError: rank 1 gives up"):
        launch(_fail_in_rank_1, 2, timeout=60)
    assert not processes_left()
    with pytest.raises(TimeoutError, match="did not end within 0.5 s"):
        launch(_fail_in_rank_1, 2, timeout=0.5)  # ended before they even start
    assert not processes_left()


def test_the_command_line_starts_torchrun_on_the_loopback_address(monkeypatch, capsys):
    import subprocess

    from course_utils.classroom import cli  # here: it imports much that the processes started need not

    seen = {}
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setattr(subprocess, "run", lambda command, env: seen.update(command=command, env=env)
                        or subprocess.CompletedProcess(command, 0))
    assert cli.main(["train", "gpt", "--processes", "2", "--steps", "40", "--fresh"]) == 0
    command = seen["command"]
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node" in command
    assert command[command.index("--rdzv-endpoint") + 1].startswith("127.0.0.1:")
    assert command[command.index("-m", 3):] == ["-m", "course_utils.classroom.cli", "train", "gpt", "--processes",
                                                 "2", "--checkpoint-every", "250", "--steps", "40", "--fresh"]
    assert seen["env"]["MASTER_ADDR"] == "127.0.0.1"
    for arguments, message in [(["gpt", "--processes", "5"], "12 windows cannot be split evenly over 5"),
                               (["modern", "--processes", "24"], "over 24 processes"),
                               (["bert", "--processes", "2"], "--processes is for gpt and modern")]:
        assert cli.main(["train", *arguments]) == 2
        assert message in capsys.readouterr().err


def test_no_process_is_left_behind():
    assert not processes_left()



def test_launch_uses_gloo_and_a_cuda_machine_would_not_change_it(monkeypatch):
    """launch's processes hold CPU tensors: their group is gloo's even where
    CUDA is present (NCCL moves GPU tensors only). No GPU here: the choice is
    checked in this process, with CUDA faked, on a group of one."""
    assert launch(_backend_of_the_group, 2) == ["gloo", "gloo"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.backend() == "nccl"  # what a `course train` process would pick
    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: chosen.append(device))
    with distributed.process_group(0, 1, init_method=f"tcp://127.0.0.1:{distributed.free_port()}",
                                   backend_name="gloo"):
        assert dist.get_backend() == "gloo"
    assert chosen == [], "a gloo group picks no GPU"


def _backend_of_the_group(rank, world_size):
    return dist.get_backend()
