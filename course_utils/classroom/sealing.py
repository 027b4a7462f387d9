"""The reviewed answers to the exercises, sealed in the student release.

Later lessons are built on the reviewed version of each earlier exercise
(lesson 03 runs `attention.scaled_dot_product_attention` whatever state the
learner's own is in), so the release must run those pieces; but it must not
show them, or the answer to lesson 02's exercise is one click away.

So `course student` seals them. In the release's copy of, say,
`course_utils/attention.py`, each piece that answers an exercise keeps its
signature and docstring, and its body is gone:

    def scaled_dot_product_attention(q, k, v, mask=None):
        \"\"\"...\"\"\"
        ...  # sealed in the student release: the answer to exercises 02.attention and 03.masked_attention

    scaled_dot_product_attention = _sealed.reviewed(__name__, "scaled_dot_product_attention")

`_sealed.reviewed` then defines the piece from its statement, stored
compressed in `course_utils/reviewed.sealed` and compiled when the module is
imported, in the module's own namespace and at its own line numbers: it runs as
the reviewed version does, on whatever Python the learner has (bytecode would
tie the release to the Python that built it). No text file of the release
holds the answer, but a learner who decompresses the file can read it, so this
is a seal for a formative course, not a vault; the grader gives no points for
an answer that runs a reviewed piece (checks/).

Which pieces: the `references=` of every `Checker` (checks.exercise_references),
and the checkers' own helpers, which compute answers to compare with.
"""

import ast
import io
import json
import zlib
from pathlib import Path

from course_utils._sealed import SEALED_FILE


def seal_module(source: str, filename: str, module: str, pieces: dict[str, str]) -> tuple[str, dict[str, dict]]:
    """`source` of `module` with each top-level def or class named in `pieces`
    (name -> why it is sealed) replaced by its stub and `reviewed` call; also,
    by "module:name", each statement taken out: its source, file name and first
    line."""
    tree = ast.parse(source)
    nodes = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    missing = sorted(set(pieces) - set(nodes))
    if missing:
        raise ValueError(f"{filename}: no top-level def or class named {', '.join(missing)} to seal")
    lines = io.StringIO(source, newline="").readlines()  # line ends as ast counts them (not \f or \x85)
    codes = {}
    for name in sorted(pieces, key=lambda name: -nodes[name].lineno):  # from the bottom: earlier lines keep their numbers
        node = nodes[name]
        start = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list]) - 1
        codes[f"{module}:{name}"] = {"source": "".join(lines[start:node.end_lineno]), "filename": f"<sealed {filename}>",
                                     "line": start + 1}
        lines[start:node.end_lineno] = _stub(lines, node, pieces[name])
    if codes:
        first = _first_statement_line(tree)
        lines.insert(first, "\nfrom course_utils import _sealed  # this release's sealed pieces (see course_utils/classroom/sealing.py)\n")
    return "".join(lines), codes


def _stub(lines: list[str], node, why: str) -> list[str]:
    """The header and docstring of `node`'s def or class, a `...` body and the
    line that puts the reviewed piece in its place."""
    first = node.body[0]
    has_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    end = first.end_lineno if has_docstring else first.lineno - 1
    return [*lines[node.lineno - 1:end],
            f"    ...  # sealed in the student release: {why}\n",
            "\n\n",
            f'{node.name} = _sealed.reviewed(__name__, "{node.name}")\n']


def _first_statement_line(tree: ast.Module) -> int:
    """The index of the line after the module docstring and `from __future__` imports."""
    line = 0
    for node in tree.body:
        is_docstring = isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)
        if is_docstring or (isinstance(node, ast.ImportFrom) and node.module == "__future__"):
            line = node.end_lineno
        else:
            break
    return line


def sealed_pieces() -> dict[str, dict[str, str]]:
    """module -> {top-level name -> why it is sealed}: every course piece named
    in a checker's `references=`, and the checkers' own helpers (they compute
    what an answer, or an answer with a classic slip, returns)."""
    from . import checks
    from .checks import exercise_references

    answers: dict[str, dict[str, list[str]]] = {}
    for exercise, references in sorted(exercise_references().items()):
        for piece in references:
            module, name = piece.__module__, piece.__qualname__.split(".")[0]
            if module.startswith("course_utils.") and not module.startswith("course_utils.classroom"):
                answers.setdefault(module, {}).setdefault(name, []).append(exercise)
    pieces = {module: {name: f"the answer to exercise{'s' if len(ids) > 1 else ''} {' and '.join(ids)}"
                       for name, ids in named.items()} for module, named in answers.items()}
    for path in sorted(Path(checks.__file__).parent.glob("[!_]*.py")):
        helpers = [node.name for node in ast.parse(path.read_text(encoding="utf-8")).body
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_")]
        pieces[f"{checks.__name__}.{path.stem}"] = dict.fromkeys(helpers, "a checker's helper, which computes answers")
    return pieces


def seal_release(package: Path) -> list[str]:
    """Seal, in place, the copy of course_utils at `package` (a student
    release's); return the "module:name" of every piece sealed."""
    codes = {}
    for module, pieces in sealed_pieces().items():
        path = package.joinpath(*module.split(".")[1:]).with_suffix(".py")
        where = path.relative_to(package.parent).as_posix()
        source, sealed = seal_module(path.read_text(encoding="utf-8"), where, module, pieces)
        path.write_text(source, encoding="utf-8")
        codes.update(sealed)
    (package / SEALED_FILE).write_bytes(zlib.compress(json.dumps(codes).encode()))
    return sorted(codes)
