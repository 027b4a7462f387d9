"""The learner's code, called from the grader: checkers judge outside the sandbox.

When `course grade` has run a notebook's cells in the sandbox, the sandbox
keeps the learner's objects alive and waits. The grader then runs each of the
lesson's checkers in its own process, on the reviewed `course_utils`, and hands
it a `Remote` instead of the learner's function or class: calling it, reading
an attribute, indexing or taking its length is a request to the sandbox, which
does it there, on the learner's object, and answers with the result.

- A result made only of tensors, numbers, strings, None and lists, tuples,
  sets and dicts of those comes back as a copy (decoded with
  `torch.load(weights_only=True)`, which builds nothing else); anything else
  (a module, a bound method, a class) stays in the sandbox and comes back as
  another `Remote`. Reading a tensor attribute gives a copy: writing into it
  changes nothing in the sandbox (load weights with `load_state_dict`).
- Nothing the learner's code does reaches the grader's own objects: an
  argument travels as a copy, and what the learner's code writes into it stays
  in the sandbox. The reply only names the arguments it wrote into
  (`written()`), so that "did you write into my input?" can still be checked.
- A reply is decoded within bounds (`decode_value`): nesting, items and
  tensor sizes, so that no reply makes the grader recurse, hash or allocate
  without end.
- An exception in the learner's code is raised here as `LearnerError` (or
  `NotImplementedError` for a stub), with the learner's own line.
- While a checker runs, the sandbox watches for the course's own version of
  the exercise (`Checker(..., references=...)`): a reply says whether the
  learner's code ran it, so an answer that imports the reference is caught.

Both ends are the grader's code, but the sandbox end runs in the learner's
process, so a reply is only ever evidence: the checker judges it.
"""

import base64
import io
import pickle
import pickletools
import traceback
import zipfile

import torch

# While a checker runs (see `watching`): the course's own functions and
# classes that the learner's answer must not run, and those it ran.
_watching: "watching | None" = None
_written: tuple = ()  # the arguments that the last request's learner code wrote into, by position or name


class LearnerError(Exception):
    """An exception raised by the learner's code in the sandbox, or the
    sandbox's failure to answer (it crashed, or took too long)."""

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.where = where  # "in cell [5], at line 3: return q @ k.T" (where_it_failed)


class SessionEnded(LearnerError):
    """The sandbox stopped answering; every later request fails the same way."""


def where_raised(error: BaseException) -> str:
    """Where the learner's code raised `error` (where_it_failed); nothing for
    a failure in other processes, whose message says where."""
    return "" if isinstance(error, ProcessFailed) else where_it_failed(error.__traceback__)


def where_it_failed(trace) -> str:
    """The learner's line that an exception came through, as JupyterLab numbers
    cells: "in cell [5], at line 3: return q @ k.T"; the last line of a cell if
    any frame is in one, else the last frame's line."""
    frames = traceback.extract_tb(trace)
    if not frames:
        return ""
    try:
        from IPython import get_ipython

        cells = get_ipython().compile._filename_map  # a cell's file name -> its execution count
    except (ImportError, AttributeError):  # not in IPython: no cells to number
        cells = {}
    frame = next((frame for frame in reversed(frames) if frame.filename in cells), frames[-1])
    cell = f"in cell [{cells[frame.filename]}], " if frame.filename in cells else ""
    return f"{cell}at line {frame.lineno}: {frame.line}"


def reference_name(piece) -> str:
    """`module:qualname`, the name by which the sandbox finds a course piece."""
    return f"{piece.__module__}:{piece.__qualname__}"


class watching:
    """`with watching(pieces) as watch:` the sandbox reports whether the
    learner's code ran any of `pieces` (course functions or classes) while
    answering the requests made inside; `watch.seen` names those it ran."""

    def __init__(self, pieces):
        # The checkers' own code always: their helpers compute right answers too.
        self.names = (*(reference_name(piece) for piece in pieces), CHECKER_CODE)
        self.seen: set[str] = set()
        self.switched_off = False  # the learner's code removed the sandbox's watch while it answered

    def __enter__(self) -> "watching":
        global _watching
        self.before, _watching = _watching, self
        return self

    def __exit__(self, *exception) -> None:
        global _watching
        _watching = self.before


def watched() -> tuple[str, ...]:
    return _watching.names if _watching else ()


CHECKER_CODE = "course_utils.classroom.checks:*"  # watched: any function of the checkers' modules


def saw(names) -> None:
    """Note the watched pieces that a reply says ran."""
    if _watching and isinstance(names, list):
        _watching.seen.update(name for name in names if isinstance(name, str) and (
            name in _watching.names or name.startswith(CHECKER_CODE.partition(":")[0] + ".")))


def saw_watch_switched_off() -> None:
    if _watching:
        _watching.switched_off = True


def note_written(keys) -> None:
    """Note the arguments that a reply says the learner's code wrote into."""
    global _written
    _written = tuple(key for key in keys if isinstance(key, (int, str)))[:100] if isinstance(keys, list) else ()


def written() -> tuple:
    """The arguments (positions, or names of keyword arguments) that the
    learner's code wrote into during the last request."""
    return _written


def same_value(now, before) -> bool:
    """Equal values, tensors compared by shape, dtype and every element."""
    if isinstance(now, torch.Tensor) and isinstance(before, torch.Tensor):
        if "meta" in (now.device.type, before.device.type):  # shapes and dtypes only: no elements to compare
            return now.shape == before.shape and now.dtype == before.dtype and now.device == before.device
        return now.shape == before.shape and now.dtype == before.dtype and bool(torch.equal(now, before))
    try:
        return bool(now == before)
    except Exception:  # tensors inside containers: compare them one by one
        return type(now) is type(before) and len(now) == len(before) and all(
            same_value(a, b) for a, b in (zip(now.values(), before.values()) if isinstance(now, dict) else zip(now, before)))


class Remote:
    """A learner's object that lives in the sandbox (see the module docstring).
    `type(remote).__name__` is the name of the object's type in the sandbox."""

    _classes: dict[str, type] = {}

    def __new__(cls, session, handle: int, description: dict):
        name = str(description.get("type", "object"))[:60]
        if cls is Remote:  # a subclass per type name, so that messages say "Linear", not "Remote"
            cls = Remote._classes.setdefault(name, type(name if name.isidentifier() else "object", (Remote,), {}))
        return object.__new__(cls)

    def __init__(self, session, handle: int, description: dict):
        self._session, self._handle, self._description = session, handle, description

    def __call__(self, *args, **kwargs):
        return self._session.request("call", self._handle, args, kwargs)

    def __getattr__(self, name: str):
        if name == "__name__" and self._description.get("name"):
            return str(self._description["name"])
        if name.startswith("__"):
            raise AttributeError(name)
        return self._session.request("getattr", self._handle, (name,))

    def __getitem__(self, key):
        return self._session.request("getitem", self._handle, (key,))

    def __len__(self) -> int:
        length = self._session.request("len", self._handle)
        return length if isinstance(length, int) else 0

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    def __repr__(self) -> str:
        return str(self._description.get("repr", "?"))[:200]

    def is_instance(self, cls: type) -> bool:
        return qualified_name(cls) in self._description.get("types", [])

    def is_subclass(self, cls: type) -> bool:
        return qualified_name(cls) in self._description.get("classes", [])


def is_instance(value, cls: type) -> bool:
    """isinstance, for a local value or a Remote one."""
    return value.is_instance(cls) if isinstance(value, Remote) else isinstance(value, cls)


def is_subclass(value, cls: type) -> bool:
    """True if `value` is a class derived from `cls`, here or in the sandbox."""
    if isinstance(value, Remote):
        return value.is_subclass(cls)
    return isinstance(value, type) and issubclass(value, cls)


def qualified_name(cls: type) -> str:
    """module.Qualname of a class, the same on both sides of the sandbox."""
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', '?')}"


def gradient(function, args: tuple, wrt: int):
    """(output, d sum(output²) / d args[wrt], or None if none flows) of a call;
    of a function that returns a pair (output, weights), its output. Done in
    the sandbox when `function` is remote, as backward() cannot cross."""
    if isinstance(function, Remote):
        return function._session.request("gradient", function._handle, args, {"wrt": wrt})
    return local_gradient(function, args, wrt)


def local_gradient(function, args: tuple, wrt: int):
    args = list(args)
    args[wrt] = args[wrt].detach().clone().requires_grad_()
    output = function(*args)
    if isinstance(output, (tuple, list)) and output:  # (output, weights): the output
        output = output[0]
    if not (isinstance(output, torch.Tensor) and output.requires_grad):
        return output, None
    output.pow(2).sum().backward()
    return output.detach(), args[wrt].grad


def parameter_gradients(module, args: tuple):
    """({name: requires_grad}, {name: d sum(output²) / d parameter, or None
    if none flows}) of each parameter of the module, after one call on
    `args` from cleared gradients (cleared again after). Done in the sandbox
    when `module` is remote: a tensor comes back as a copy, without its
    `requires_grad` or `.grad`."""
    if isinstance(module, Remote):
        return module._session.request("parameter_gradients", module._handle, args, {})
    return local_parameter_gradients(module, args)


def local_parameter_gradients(module, args: tuple):
    module.zero_grad(set_to_none=True)
    output = module(*args)
    if isinstance(output, torch.Tensor) and output.requires_grad:
        output.pow(2).sum().backward()
    parameters = dict(module.named_parameters())
    flags = {name: parameter.requires_grad for name, parameter in parameters.items()}
    gradients = {name: None if parameter.grad is None else parameter.grad.detach().clone()
                 for name, parameter in parameters.items()}
    module.zero_grad(set_to_none=True)
    return flags, gradients


def call_on(device: str, function, args: tuple):
    """function(*args) with `device` as the default device (`with
    torch.device(device)`): where a tensor made without `device=` lands. Done
    in the sandbox when `function` is remote, as the default device is that
    process's own."""
    if isinstance(function, Remote):
        return function._session.request("call_on", function._handle, args, {"device": device})
    return local_call_on(device, function, args)


def local_call_on(device: str, function, args: tuple):
    with torch.device(device):
        return function(*args)


def in_processes(function, world_size: int, runner, *args, timeout: float = 60.0):
    """What `runner(rank, world_size, pickled, watched, *args)`, a checker's
    function, returns in each of `world_size` new processes that form a
    process group (`distributed.launch`), by rank. The runner calls the
    learner's `function` there: it gets it pickled by cloudpickle
    (`pickled`), to load once it is ready to watch what the function does,
    and the names of the course pieces to watch for (`watched`, see
    harness.Watch; none in the notebook). It returns {"value": ..., "used":
    [...], "unwatched": bool}. Done in the sandbox when `function` is
    remote: the processes are the sandbox's, and only their values (plain
    data) come back; what they saw the learner's code run is reported as
    any reply's is."""
    if isinstance(function, Remote):
        return function._session.request("in_processes", function._handle, (world_size, runner, *args),
                                         {"timeout": timeout})
    return local_in_processes(function, world_size, runner, args, timeout)[0]


class ProcessFailed(Exception):
    """The learner's code failed, or hung, in the processes of `in_processes`."""


def local_in_processes(function, world_size: int, runner, args: tuple, timeout: float,
                       watched: tuple = ()) -> tuple[list, set, bool]:
    """(the values by rank, the watched pieces any process ran, whether any
    process's watch was switched off)."""
    import cloudpickle

    from course_utils import distributed

    try:
        reports = distributed.launch(runner, world_size, cloudpickle.dumps(function), tuple(watched), *args,
                                     timeout=timeout)
    except TimeoutError:
        raise ProcessFailed(f"the {world_size} processes did not end within {timeout:.0f} s: one of them waits for "
                            "an all-reduce that another never makes (every process must make the same collective "
                            "calls, in the same order)") from None
    except distributed.ProcessesFailed as error:  # the first process that failed, in one line
        rank, trace = error.first
        said = trace.strip().splitlines()[-1]
        if said.startswith("NotImplementedError"):
            raise NotImplementedError(said) from None  # a stub: not attempted yet
        if distributed.lost_its_peer(said):
            said = ("it waited in a collective call (an all-reduce) that another process never made: every process "
                    "must make the same collective calls, in the same order")
        raise ProcessFailed(f"in process {rank} of {world_size}: {said}") from None
    used = {name for report in reports for name in report["used"]}
    return [report["value"] for report in reports], used, any(report["unwatched"] for report in reports)


# --- encoding: the grader's requests are pickled (the sandbox trusts the
# grader), the sandbox's replies are decoded with weights_only=True ---------

def _generator_from_state(state: torch.Tensor) -> torch.Generator:
    generator = torch.Generator()
    generator.set_state(state)
    return generator


class _RequestPickler(pickle.Pickler):
    def reducer_override(self, value):
        if isinstance(value, torch.Generator):  # a checker's seeded generator, in the state it has now
            return _generator_from_state, (value.get_state(),)
        if isinstance(value, Remote):
            return _Handle, (value._handle,)
        return NotImplemented


class _Handle:
    """A Remote passed back as an argument: the sandbox swaps in its object."""

    def __init__(self, handle: int):
        self.handle = handle


def encode_request(request: dict) -> bytes:
    buffer = io.BytesIO()
    _RequestPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(request)
    return base64.b64encode(buffer.getvalue()) + b"\n"


def decode_request(line: bytes) -> dict:
    return pickle.loads(base64.b64decode(line))


def encode_value(value) -> str:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


NUMPY_TAG = "__numpy_array__"  # {NUMPY_TAG: tensor} is a numpy array of numbers on its way out
MAX_NESTING = 64  # containers in containers: a checker's values nest a few deep
MAX_ITEMS = 10_000_000  # items of a value counted as a tree, a shared item once per place it appears
MAX_ENTRIES = 10_000  # files in the archive: one per tensor, and three more
HASH_SAFE_INT = 1 << 60  # a larger integer, or a float, can be chosen to share a hash with many others


class Unreadable(ValueError):
    """A value from the sandbox that the grader will not decode."""


def decode_value(text: str, max_bytes: int = 64 << 20):
    """The sandbox's value: only tensors and plain Python containers can come
    out (weights_only loading builds nothing else), within bounds: the pickle is
    read for its shape before it is loaded, so that a structure nested
    thousands deep (whose hashing recurses in C and crashes the grader) or a
    small pickle that shares one item into an exponential tree is refused
    unbuilt; and no tensor may claim more elements than its bytes hold."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) > max_bytes:
        raise Unreadable(f"more than {max_bytes >> 20} MB")
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = archive.infolist()
        # torch.save stores every file as it is: a compressed one could inflate
        # a few kilobytes into gigabytes, before any other bound is checked.
        if len(entries) > MAX_ENTRIES or any(entry.compress_type != zipfile.ZIP_STORED
                                             or entry.file_size != entry.compress_size for entry in entries):
            raise Unreadable("not a value saved by torch.save (compressed, or too many files)")
        if sum(entry.file_size for entry in entries) > max_bytes:
            raise Unreadable(f"more than {max_bytes >> 20} MB")
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise Unreadable("not a value saved by torch.save")
        _bounded_pickle(archive.read(pickles[0]))
    value = torch.load(io.BytesIO(raw), weights_only=True)
    _bounded_tensors(value, max_bytes)
    return _with_numpy(value)


def _bounded_pickle(data: bytes) -> None:
    """Follow the pickle's stack without building anything: every entry is
    [nesting, items, whether a hash of it can be chosen], shared through the
    memo as the real objects would be. Dict keys and set members must hash
    unpredictably (strings, bytes: Python salts their hashes) or distinctly
    (integers below 2^60): many keys made to share one hash would make
    building the dict quadratic."""
    stack, marks, memo = [], [], {}
    in_place = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"}
    keyed = {"SETITEM": slice(1, None, 2), "SETITEMS": slice(1, None, 2), "ADDITEMS": slice(1, None), "FROZENSET": slice(None)}
    for opcode, argument, _ in pickletools.genops(data):
        name = opcode.name
        if name == "MARK":
            marks.append(stack)
            stack = []
            continue
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            memo[len(memo) if name == "MEMOIZE" else argument] = stack[-1]
            continue
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[argument])
            continue
        if name == "DUP":
            stack.append(stack[-1])
            continue
        taken = []
        if pickletools.stackslice in opcode.stack_before:  # everything down to the last MARK
            taken, stack = stack, marks.pop()
        for _ in range(len([kind for kind in opcode.stack_before if kind not in (pickletools.markobject, pickletools.stackslice)])):
            taken.insert(0, stack.pop())
        if name in keyed and any(entry[2] for entry in taken[keyed[name]]):
            raise Unreadable("a dict key or set member that is a float or an integer past 2^60")
        if name in in_place:  # items go into the container below them, the same object
            container, items = taken[0], taken[1:]
            container[0] = max([container[0], *(item[0] + 1 for item in items)])
            container[1] = min(container[1] + sum(item[1] for item in items), MAX_ITEMS + 1)
            container[2] = container[2] or any(item[2] for item in items)
            made = [container]
        else:
            chosen_hash = (name in ("BINFLOAT", "FLOAT") or (isinstance(argument, int) and abs(argument) >= HASH_SAFE_INT)
                           or any(item[2] for item in taken))
            made = [[1 + max((item[0] for item in taken), default=0),
                     min(1 + sum(item[1] for item in taken), MAX_ITEMS + 1), chosen_hash] for _ in opcode.stack_after]
        for entry in made:
            if entry[0] > MAX_NESTING:
                raise Unreadable(f"nested more than {MAX_NESTING} deep")
            if entry[1] > MAX_ITEMS:
                raise Unreadable(f"more than {MAX_ITEMS:,} items")
        stack.extend(made)


def _bounded_tensors(value, max_bytes: int) -> None:
    if isinstance(value, torch.Tensor):
        claimed = value.numel() * value.element_size()
        if value.layout != torch.strided or claimed > max_bytes or claimed > value.untyped_storage().nbytes():
            raise Unreadable("a tensor that claims more elements than it holds (a strided view, or not a plain tensor)")
    elif isinstance(value, dict):
        for key, item in value.items():
            _bounded_tensors(key, max_bytes)
            _bounded_tensors(item, max_bytes)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            _bounded_tensors(item, max_bytes)


def _with_numpy(value):
    if isinstance(value, dict):
        if set(value) == {NUMPY_TAG} and isinstance(value[NUMPY_TAG], torch.Tensor):
            return value[NUMPY_TAG].numpy()
        return {key: _with_numpy(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_with_numpy(item) for item in value)
    return value
