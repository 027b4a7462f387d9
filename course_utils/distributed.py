"""Training past one process: data parallelism with `torch.distributed`.

Data parallelism runs N copies of the model, one per process. At every step
each process takes its own slice of the step's batch (`shard_of`), computes
the loss and the gradients on it, and then the processes average their
gradients (`all_reduce_gradients`, which DDP does for us while the backward
pass runs). Every copy then holds the gradient of the whole batch, takes the
same optimizer step, and stays equal to the others: N processes with batch
B/N each train as one process with batch B, up to the order of float sums.

The processes talk through a *process group*: "gloo" on CPUs, "nccl" between
GPUs. `torchrun` starts them and tells each its rank (0 to N-1) and the world
size N in environment variables; `launch` starts them from Python instead
(a notebook, a test), on this machine only.

How much memory each process needs, and how ZeRO and FSDP cut it by sharding
the optimizer's states, the gradients and the weights over the processes:
`memory_per_process` counts it, `fsdp_parameter_bytes` measures it.
"""

import functools
import os
import pickle
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import cloudpickle
import torch
import torch.distributed as dist
from torch import nn

# --- setting up and tearing down --------------------------------------------------------


def backend() -> str:
    """"nccl" where CUDA is available (GPUs talk to each other directly),
    else "gloo" (CPUs, over TCP sockets)."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes files."""
    return rank_and_world_size()[0] == 0


@contextmanager
def process_group(rank: int | None = None, world_size: int | None = None, init_method: str = "env://",
                  backend_name: str | None = None) -> Iterator[tuple[int, int]]:
    """Join the process group for the body of the `with`, and leave it
    however the body ends (an exception too): a group left open holds its
    sockets and may keep the other processes waiting.

    Without arguments, rank, world size and the address of rank 0 come from
    the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR,
    MASTER_PORT). backend_name: "gloo" or "nccl" (default: `backend()`).
    Yields (rank, world_size)."""
    backend_name = backend_name or backend()
    if backend_name == "nccl":  # one GPU per process: the one torchrun numbers for it on its machine
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank or 0)))
    given = {} if rank is None else {"rank": rank, "world_size": world_size}  # else env:// reads them
    dist.init_process_group(backend_name, init_method=init_method, **given)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


# --- the data: one shard of every batch per process ---------------------------------------


def shard_of(batch, rank: int, world_size: int):
    """This process's rows of a global batch: a tensor, or a tuple or list of
    tensors cut alike (inputs, targets). Rank r of N takes the r-th of N
    equal, consecutive slices: a batch of 12 on 2 processes is rows 0-5 and
    6-11, so together the processes see exactly the rows one process would."""
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard_of(part, rank, world_size) for part in batch)
    rows = batch.size(0)
    if rows % world_size:
        raise ValueError(f"a batch of {rows} rows does not split evenly over {world_size} processes: "
                         f"choose a batch size that is a multiple of the number of processes")
    size = rows // world_size
    return batch[rank * size:(rank + 1) * size]


# --- the gradients: averaged over the processes -------------------------------------------


def all_reduce_gradients(model: nn.Module) -> None:
    """Average every parameter's gradient over the processes, in place: what
    DistributedDataParallel does during the backward pass, written out.

    all_reduce sums a tensor over all processes and leaves the sum in every
    one of them; dividing by the world size makes it the mean. Each process's
    loss is the mean over its own equal shard, so the mean of their gradients
    is the gradient of the mean loss over the whole batch. (DDP does the same
    arithmetic, but in buckets of several gradients, each sent as soon as the
    backward pass has produced it, so that talking overlaps computing.)"""
    world_size = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= world_size


def data_parallel_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> float:
    """One training step of data parallelism, in one process of the group:
    this process's shard of the global `batch` (inputs, targets), the mean
    loss on it, its gradients, averaged over the processes only once the
    backward pass has made them all, and the optimizer's step. Returns the
    loss of this process's shard."""
    from .gpt import next_token_loss

    rank, world_size = rank_and_world_size()
    loss = next_token_loss(model, shard_of(batch, rank, world_size))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    all_reduce_gradients(model)
    optimizer.step()
    return loss.item()


class DataParallel(NamedTuple):
    """What `gpt.train_gpt` needs to train data-parallel: the model wrapped
    in DDP (its forward and backward passes average the gradients), and this
    process's place among the others."""

    module: nn.parallel.DistributedDataParallel
    rank: int
    world_size: int

    def shard(self, batch):
        return shard_of(batch, self.rank, self.world_size)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over the processes (a copy, outside the graph):
        the loss of the whole batch, for the record."""
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size


def data_parallel(model: nn.Module) -> DataParallel:
    """Wrap `model` in DistributedDataParallel for this process group. DDP
    copies rank 0's weights to every process as it wraps, so all copies start
    equal."""
    rank, world_size = rank_and_world_size()
    # A model on this process's GPU tells DDP which; a model on the CPU takes none.
    device = [torch.cuda.current_device()] if next(model.parameters()).is_cuda else None
    return DataParallel(nn.parallel.DistributedDataParallel(model, device_ids=device), rank, world_size)


def train_gpt_data_parallel(model: nn.Module, train_ids: torch.Tensor, validation_ids: torch.Tensor, recipe,
                            after_evaluation: Callable[[int], None] | None = None, progress: bool = True, **options):
    """`gpt.train_gpt` in every process of the group, each on its shard of
    every batch of `recipe` (whose batch_size is the global batch). Only rank
    0 shows progress and calls `after_evaluation` (to save a checkpoint: it
    saves `model`, the module inside DDP, whose state_dict has the same names
    as a one-process run's, so a checkpoint resumes with any number of
    processes). Every process evaluates, on the same batches, with the same
    weights, and so records the same losses."""
    from .gpt import train_gpt

    _, world_size = rank_and_world_size()
    if recipe.batch_size % world_size:
        raise ValueError(f"the batch size {recipe.batch_size} does not split evenly over {world_size} processes")
    main = is_main_process()
    return train_gpt(model, train_ids, validation_ids, recipe, progress=progress and main,
                     after_evaluation=after_evaluation if main else None, parallel=data_parallel(model), **options)


# --- starting processes from Python ------------------------------------------------------


def free_port() -> int:
    """A TCP port that no program listens on now, on the loopback address."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loopback_environment(threads: int = 1) -> dict[str, str]:
    """Environment variables that keep a process group on this machine and
    each process to `threads` threads (N processes on N cores, not N²)."""
    environment = {"MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": str(threads)}
    if "lo" in {name for _, name in socket.if_nameindex()}:  # gloo otherwise picks the interface of the host name
        environment["GLOO_SOCKET_IFNAME"] = "lo"
    return environment


def _run_rank(rank: int, world_size: int, port: int, threads: int, folder: str, work: bytes):
    """The body of each process `launch` starts: join the group, run
    function(rank, world_size, *args), leave its result (or its traceback) in `folder`."""
    os.environ.update(loopback_environment(threads), MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(threads)
    try:
        function, args = pickle.loads(work)
        with process_group(rank, world_size, backend_name="gloo"):  # see launch
            outcome = ("result", function(rank, world_size, *args))
    except BaseException:  # noqa: BLE001 -- any failure goes back to the parent, which raises it
        torch.save(("error", traceback.format_exc()), Path(folder) / f"{rank}.pt")
        sys.exit(1)  # a failure the parent sees at once, and ends the other processes
    torch.save(outcome, Path(folder) / f"{rank}.pt")


def launch(function: Callable, world_size: int, *args, timeout: float = 60.0, threads: int = 1) -> list:
    """Run function(rank, world_size, *args) in `world_size` new processes
    that form a process group on this machine (the loopback address, a free
    port), and return their results, by rank.

    The group's backend is gloo, even where there are GPUs: these are
    several processes on one machine, whose tensors are on the CPU (NCCL
    moves only GPU tensors, and a machine with one GPU cannot give each
    process its own).

    No process shares this one's objects (see `_start_method`): `function`
    and `args` travel to each pickled by cloudpickle, which carries a
    function defined in a notebook cell by value (its code), and one defined
    in a module by name. The results travel back through files
    (`torch.save`): tensors, numbers, strings and containers of them. If a
    process fails, the others are ended and its traceback raised in a
    ProcessesFailed (a RuntimeError); if they are not all done within
    `timeout` seconds, all are ended and TimeoutError raised. Every process
    has ended when `launch` returns or raises."""
    context = _start_method()
    port, work = free_port(), cloudpickle.dumps((function, args))
    with tempfile.TemporaryDirectory() as folder:
        processes = [context.Process(target=_run_rank, args=(rank, world_size, port, threads, folder, work),
                                     daemon=True) for rank in range(world_size)]
        try:
            for process in processes:
                process.start()
            deadline = time.monotonic() + timeout
            while any(process.is_alive() for process in processes):
                # A process that has failed cannot answer the others' all-reduce: they would wait forever.
                if any(process.exitcode not in (None, 0) for process in processes):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{world_size} processes running {function.__name__} did not end within "
                                       f"{timeout} s")
                time.sleep(0.05)
            outcomes = [_outcome(Path(folder) / f"{rank}.pt", process) for rank, process in enumerate(processes)]
        finally:
            for process in processes:  # end every process, whatever happened
                if process.is_alive():
                    process.kill()
                process.join(timeout=10)
    failures = {rank: value for rank, (kind, value) in enumerate(outcomes) if kind == "error"}
    if failures:
        raise ProcessesFailed(f"{function.__name__} failed in {len(failures)} of {world_size} processes:\n"
                              + "\n".join(f"rank {rank}:\n{trace}" for rank, trace in failures.items()), failures)
    return [value for _, value in outcomes]


class ProcessesFailed(RuntimeError):
    """Raised by `launch` when a process failed: `failures` maps each failed
    rank to its traceback (or to why it has none: ended, or no report)."""

    def __init__(self, message: str, failures: dict[int, str]):
        super().__init__(message)
        self.failures = failures

    @property
    def first(self) -> tuple[int, str]:
        """(rank, traceback) of the process whose failure came first: one that
        raised, rather than one that lost its peer in a collective call
        (PEER_GONE) because of it, or one ended because another had failed."""
        def later(failure):
            trace = failure[1]
            return (not trace.startswith("Traceback"), lost_its_peer(trace))

        return min(self.failures.items(), key=later)


def lost_its_peer(trace: str) -> bool:
    """Whether a process failed because gloo's connection to another broke:
    that process failed, ended, or left a collective call the others are in."""
    return "gloo/transport" in trace


def _start_method():
    """Processes forked from a server process that has imported torch and
    this module once (`forkserver`): each then starts in a fraction of a
    second, where a fresh Python (`spawn`) takes one or two to import torch.
    The server runs no torch code, so what it forks has no threads to lose.
    Where there is no forkserver (Windows), spawn."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return torch.multiprocessing.get_context("spawn")
    context = torch.multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["course_utils.distributed", "course_utils.gpt"])
    return context


def _outcome(path: Path, process) -> tuple[str, object]:
    if path.is_file():
        return torch.load(path, weights_only=False)  # written a moment ago by our own process
    if process.is_alive():
        return "error", "still running when another process failed (ended)"
    return "error", f"the process ended with exit code {process.exitcode} before it could report"


def torchrun_command(processes: int, module: str, arguments: list[str]) -> list[str]:
    """The command that starts `processes` processes of `python -m module
    arguments` on this machine with torchrun, which gives each its RANK,
    WORLD_SIZE, MASTER_ADDR and MASTER_PORT: a rendezvous on the loopback
    address, at a free port. (Between machines, torchrun is run on each with
    --nnodes and a --rdzv-endpoint that all can reach: see the README.)"""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(processes),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "--local-addr", "127.0.0.1",
            "-m", module, *arguments]


def compare_with_ddp(step: Callable, world_size: int = 2, steps: int = 20) -> dict:
    """Train two copies of lesson 10's GPT (the same first weights) for
    `steps` steps of lesson 10's batches (12 windows) in `world_size`
    processes: one by `step(model, optimizer, batch)` (a data-parallel step
    written by hand, e.g. `data_parallel_step`), one wrapped in
    DistributedDataParallel, both with AdamW at a fixed learning rate of 1e-3.
    Returns, from rank 0: the largest difference between the two copies'
    gradients at the first step and between their weights after the last,
    and both copies' training losses, step by step (each process's loss
    averaged over the processes)."""
    return launch(_compare_with_ddp_rank, world_size, step, steps, timeout=300)[0]


def _compare_with_ddp_rank(rank: int, world_size: int, step: Callable, steps: int) -> dict:
    from .gpt import GPT, GPTConfig, TrainingRecipe, character_data, next_token_loss

    recipe, (_, train_ids, _) = TrainingRecipe(), character_data()
    copies = []
    for _ in range(2):
        torch.manual_seed(0)
        model = GPT(GPTConfig())
        copies.append((model, torch.optim.AdamW(model.parameters(), lr=1e-3)))
    (yours, your_optimizer), (theirs, their_optimizer) = copies
    ddp = data_parallel(theirs)
    handed = []  # your gradients, as your optimizer gets them at its first step
    your_optimizer.register_step_pre_hook(lambda *_: handed.append([p.grad.clone() for p in yours.parameters()]))
    losses = {"yours": [], "ddp": []}
    for number in range(1, steps + 1):
        batch = recipe.batch_at(number, train_ids, GPTConfig().context)
        loss = torch.as_tensor(float(step(yours, your_optimizer, batch)))
        losses["yours"].append(ddp.mean(loss).item())
        their_optimizer.zero_grad()
        loss = next_token_loss(ddp.module, ddp.shard(batch))
        loss.backward()  # DDP averages the gradients over the processes as backward makes them
        if number == 1:
            gradients = max((a - p.grad).abs().max().item() for a, p in zip(handed[0], theirs.parameters()))
        their_optimizer.step()
        losses["ddp"].append(ddp.mean(loss).item())
    weights = max((a - b).abs().max().item() for a, b in zip(yours.parameters(), theirs.parameters()))
    return {"first_step_gradients": gradients, "weights": weights, "losses": losses}


# --- speed: what a second process buys ---------------------------------------------------


def training_speed(processes: int, threads: int, steps: int = 30, warmup: int = 5, batch_size: int = 12) -> float:
    """Steps per second of lesson 10's recipe (its GPT, a global batch of
    `batch_size` windows of 64 characters, AdamW, clipping, through
    `training.train`) over `steps` steps after `warmup`, in `processes` new
    processes of `threads` threads each: data-parallel when more than one,
    each process on batch_size / processes windows. One process runs in a
    new process too, so that every figure is taken alike."""
    return launch(_speed_rank, processes, steps, warmup, batch_size, threads=threads, timeout=600)[0]


def _speed_rank(rank: int, world_size: int, steps: int, warmup: int, batch_size: int) -> float:
    import dataclasses

    from .gpt import GPT, GPTConfig, TrainingRecipe, next_token_loss
    from .training import train

    recipe, config = dataclasses.replace(TrainingRecipe(), batch_size=batch_size), GPTConfig()
    ids = torch.randint(config.vocab_size, (100_000,), generator=torch.Generator().manual_seed(0))  # which tokens does not matter
    torch.manual_seed(0)
    model = GPT(config)
    parallel = data_parallel(model) if world_size > 1 else None
    optimizer = recipe.optimizer(model)

    def batch_at(step: int):
        batch = recipe.batch_at(step, ids, config.context)
        return batch if parallel is None else parallel.shard(batch)

    def run(first: int, last: int) -> None:
        train(model if parallel is None else parallel.module, batch_at, next_token_loss, optimizer, last,
              recipe.lr_at(), recipe.clip_grad_norm, progress=False, first_step=first)

    run(1, warmup)
    dist.barrier()  # start the clock together
    started = time.perf_counter()
    run(warmup + 1, warmup + steps)
    return steps / (time.perf_counter() - started)


def all_reduce_milliseconds(repeats: int = 20) -> dict:
    """The time of one all-reduce of lesson 10's GPT's gradients between 2
    gloo processes of 1 thread (the median of `repeats`): tensor by tensor,
    as `all_reduce_gradients` does, and as one flat tensor, which DDP's
    buckets come closer to; with the number of tensors and their bytes."""
    return launch(_all_reduce_rank, 2, repeats, timeout=300)[0]


def _all_reduce_rank(rank: int, world_size: int, repeats: int) -> dict:
    import statistics

    from .gpt import GPT, GPTConfig

    model = GPT(GPTConfig())
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    flat = torch.cat([parameter.grad.flatten() for parameter in model.parameters()])
    timings = {}
    for name, reduce in [("per_tensor_ms", functools.partial(all_reduce_gradients, model)),
                         ("one_flat_tensor_ms", lambda: dist.all_reduce(flat))]:
        times = []
        for _ in range(repeats + 3):  # the first 3 set up the connections' buffers: not timed
            dist.barrier()
            started = time.perf_counter()
            reduce()
            times.append(time.perf_counter() - started)
        timings[name] = 1000 * statistics.median(times[3:])
    timings["tensors"] = len(list(model.parameters()))
    timings["bytes"] = flat.numel() * flat.element_size()
    return timings


# --- memory per process: the arithmetic of ZeRO ---------------------------------------------

# Bytes per parameter, as the ZeRO paper counts them (Rajbhandari et al., 2020, §3.1):
# "mixed": fp16 weights (2) and gradients (2) for the forward and backward
#   passes, and Adam's K = 12: an fp32 master copy of the weights (4),
#   momentum (4) and variance (4); 16 in all.
# "fp32": weights (4) and gradients (4) in fp32, and AdamW's two moments (8); 16 in all too.
PRECISIONS = {"fp32": (4, 4, 8), "mixed": (2, 2, 12)}  # (weights, gradients, optimizer states)
# What each strategy splits over the processes instead of copying into every one.
STRATEGIES = {"ddp": (), "zero1": ("optimizer",), "zero2": ("optimizer", "gradients"),
              "zero3": ("optimizer", "gradients", "weights"), "fsdp": ("optimizer", "gradients", "weights")}


class Memory(NamedTuple):
    """Bytes each process holds for the model's training state (activations not counted)."""

    weights: float
    gradients: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer


def memory_per_process(parameters: float, world_size: int, strategy: str = "ddp", precision: str = "fp32") -> Memory:
    """The bytes of weights, gradients and optimizer states (AdamW) in each
    of `world_size` processes training a model of `parameters` parameters.

    strategy: "ddp", plain data parallelism (every process holds all of it);
    "zero1", the optimizer states sharded (ZeRO stage 1, the paper's P_os);
    "zero2", the gradients too (P_os+g); "zero3" or "fsdp", the weights too
    (P_os+g+p). A sharded part costs each process 1/world_size of its bytes.
    precision: "fp32" or "mixed" (see PRECISIONS)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: choose one of {sorted(STRATEGIES)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: choose one of {sorted(PRECISIONS)}")
    sharded = STRATEGIES[strategy]
    return Memory(*(parameters * size / (world_size if part in sharded else 1)
                    for part, size in zip(("weights", "gradients", "optimizer"), PRECISIONS[precision])))


# --- FSDP, measured -------------------------------------------------------------------------


def _fsdp_rank(rank: int, world_size: int, config) -> dict:
    """One process of `fsdp_parameter_bytes`: build the model (the same
    weights in every process), shard it, take one training step."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from .gpt import GPT, next_token_loss, random_windows

    torch.manual_seed(0)
    model = GPT(config)
    full = sum(p.numel() * p.element_size() for p in model.parameters())
    mesh = init_device_mesh("cpu", (world_size,))
    for block in model.blocks:  # each block a unit: its weights are gathered only while it computes
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest: embeddings (and the tied head), the final norm
    # Each parameter is now a DTensor; to_local() is the slice of it that this process holds.
    local = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    # Plain AdamW: the recipe's fused kernel is not written for DTensors. Its moments take the
    # shape of the parameters, so they are sharded alike.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(config.vocab_size, (1000,), generator=torch.Generator().manual_seed(0))
    batch = shard_of(random_windows(ids, 2 * world_size, config.context, torch.Generator().manual_seed(1)),
                     rank, world_size)
    loss = next_token_loss(model, batch)
    loss.backward()
    optimizer.step()
    moments = sum(t.to_local().numel() * t.element_size() for state in optimizer.state.values()
                  for t in state.values() if hasattr(t, "to_local"))
    return {"full_parameter_bytes": full, "local_parameter_bytes": local, "local_optimizer_bytes": moments,
            "loss": loss.item()}


def fsdp_parameter_bytes(config=None, world_size: int = 2, timeout: float = 60.0) -> list[dict]:
    """Shard a GPT (lesson 10's config by default) with FSDP
    (`torch.distributed.fsdp.fully_shard`) over `world_size` CPU processes
    (gloo), take one AdamW step, and return, for each rank, the parameter
    bytes of the whole model, the parameter bytes that rank holds, and the
    bytes of AdamW's moments it holds: to set beside `memory_per_process`."""
    from .gpt import GPTConfig

    return launch(_fsdp_rank, world_size, config or GPTConfig(), timeout=timeout)
