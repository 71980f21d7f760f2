"""A chapter's parameters (``vggrepro book run -p name=value``): read from the command line, checked
against what the chapter declares, and only then written into its notebook.

A parameter is a value, never code. ``-p`` text is read as a Python literal (or kept as text), then
checked before any chapter runs: it must be one plain value (None, a bool, a whole number, a finite
number or a string; never a tuple or a list, which papermill would write into the notebook as an
unescaped string) of the type its chapter declares (:data:`DECLARED` for the book's parameters, the
type of the default in the parameters cell for any other), in its range (an index is not negative,
a count is positive). What papermill writes for it must read back as the very same value
(:func:`checked`), so no value can close a string and run the rest.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

from ..core.optional import book_tool


@dataclass(frozen=True)
class Declared:
    """What a parameter may be: whole numbers or any finite number, at least ``least``, maybe None."""

    kind: str  # "int" (a whole number) or "number" (int or float)
    least: float  # the smallest value allowed
    none: bool = False  # None (the profile's value) allowed
    above: bool = False  # ``least`` itself excluded (a width or an lr: > 0)
    what: str = ""  # the words of the error: "an index", "a count" ...

    def check(self, name: str, value) -> None:
        if value is None and self.none:
            return
        whole = isinstance(value, int) and not isinstance(value, bool)
        number = whole or (isinstance(value, float) and math.isfinite(value))
        fits = (whole if self.kind == "int" else number) and (value > self.least if self.above else value >= self.least)
        if not fits:
            kind = "a whole number" if self.kind == "int" else "a finite number"
            bound = f"> {self.least:g}" if self.above else f">= {self.least:g}"
            what = f" ({self.what})" if self.what else ""
            default = ", or None for the profile's" if self.none else ""
            raise ValueError(f"-p {name}={value!r}: give {kind} {bound}{what}{default}")


#: The book's chapter parameters and what each may be (tests/test_book.py checks that every
#: parameters cell declares only these, with defaults that pass).
DECLARED: dict[str, Declared] = {
    "width": Declared("number", 0, none=True, above=True, what="a fraction of the paper's channels"),
    "seed": Declared("int", 0, none=True, what="a seed"),
    "image_index": Declared("int", 0, none=True, what="an index into the validation images"),
    "timing_images": Declared("int", 1, what="a count of images"),
    "depth_chains": Declared("int", 1, what="a count of chains"),
    "epochs": Declared("int", 1, what="a count of epochs"),
    "lr": Declared("number", 0, none=True, above=True, what="a learning rate"),
    "drawn_images": Declared("int", 1, what="a count of images"),
}

#: Plain values, by the type of a default that no entry of DECLARED covers.
_LIKE = {bool: (bool,), int: (int,), float: (int, float), str: (str,)}


def parse_parameters(tokens: list[str]) -> dict:
    """``["width=0.0625", "seed", "3"]`` -> ``{"width": 0.0625, "seed": 3}``.

    Accepts ``key=value`` and papermill's ``key value``. A value that reads as a Python literal
    (a number, None, True, a list, a quoted string) is that literal; anything else is a string.
    Whether a chapter takes it is :func:`checked`'s to say.
    """
    params, i = {}, 0
    while i < len(tokens):
        token = tokens[i]
        if "=" in token:
            key, value = token.split("=", 1)
            i += 1
        elif i + 1 < len(tokens):
            key, value = token, tokens[i + 1]
            i += 2
        else:
            raise ValueError(f"-p {token}: a parameter needs a value; write -p {token}=VALUE")
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"-p {key}={value}: {key!r} is not a Python name; write -p name=value")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            params[key] = value
    return params


def declared_parameters(nb) -> dict[str, object]:
    """The names assigned in a notebook's cell tagged ``parameters``, with their default values
    (a default that is not a literal reads as None); empty when there is no such cell."""
    names: dict[str, object] = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            for node in ast.parse(cell.source).body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                for t in targets:
                    if isinstance(t, ast.Name):
                        names[t.id] = _literal(getattr(node, "value", None))
    return names


def _literal(node):
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return None


def checked(name: str, value, default=None):
    """``value`` if a chapter whose parameters cell sets ``name = default`` may take it, and if what
    papermill writes for it reads back as the same value; else a ValueError naming the parameter and
    what to give."""
    if not (value is None or isinstance(value, (bool, int, float, str))):
        raise ValueError(
            f"-p {name}={value!r}: a parameter is one value (a number, None, True/False or a text), "
            f"not a {type(value).__name__}"
        )
    if name in DECLARED:
        DECLARED[name].check(name, value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"-p {name}={value!r}: give a finite number")
    elif default is not None and value is not None and not _like(value, type(default)):
        raise ValueError(f"-p {name}={value!r}: give a {type(default).__name__}, as its default {default!r} is")
    written = book_tool("papermill.translators").PythonTranslator.translate(value)
    try:
        same = ast.literal_eval(written) == value and type(ast.literal_eval(written)) is type(value)
    except (ValueError, SyntaxError):
        same = False
    if not same:  # never write what would not read back as this one value
        raise ValueError(f"-p {name}={value!r} cannot be written into the notebook as that value; give a plain one")
    return value


def _like(value, kind: type) -> bool:
    allowed = _LIKE.get(kind)
    return allowed is None or (isinstance(value, allowed) and (kind is bool or not isinstance(value, bool)))
