"""The settings of one call, as every stage reads them: the validated options and the execution plan,
carried across each ``torch.library`` custom op of the pipeline as one record.

Stages read a setting by name, ``settings.options.tau`` or ``settings.plan.tile_rows``, so a new setting
is declared once (a field of ``LossOptions`` or ``ExecutionPlan``) and read by the stage that needs it;
nothing in between spells it out.

A custom op's arguments are tensors and scalars (torch 2.4 and later: int, float, bool, str, their
optionals and sequences), so the record crosses an op as two arguments, packed once by ``pack`` and
rebuilt by ``unpack``:

    text   every field that is not a size, as ``name=repr(value)`` joined by ";"   (str)
    sizes  the size fields, those declared ``int`` or ``tuple[int, int]``       (Sequence[int])

Sizes travel as ints because under ``torch.compile`` with dynamic shapes they are symbolic (SymInt, they
depend on the batch size n): written into the text they would specialize the graph to one n.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, NamedTuple

from .options import LossOptions
from .plan import ExecutionPlan

# How a size field's declared type is spelled, and how many ints it takes.
_SIZE_TYPES = {"int": 1, "tuple[int, int]": 2}


def _text_fields(record: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(record) if f.type not in _SIZE_TYPES)


def _size_fields(record: type) -> tuple[tuple[str, int], ...]:
    return tuple((f.name, _SIZE_TYPES[str(f.type)]) for f in fields(record) if f.type in _SIZE_TYPES)


_OPTION_TEXT, _PLAN_TEXT = _text_fields(LossOptions), _text_fields(ExecutionPlan)
_PLAN_SIZES = _size_fields(ExecutionPlan)
assert not _size_fields(LossOptions), "an option's value is known before the batch: it travels as text"


def _encode(record: object, names: tuple[str, ...]) -> str:
    return ";".join([f"{name}={getattr(record, name)!r}" for name in names])


@functools.lru_cache(maxsize=64)
def _decode(text: str) -> tuple[LossOptions, dict[str, Any]]:
    """The options and the plan's text fields written by ``Settings.pack`` (decoded once per distinct text)."""
    options_text, plan_text = text.split("|")
    values = [dict(item.split("=", 1) for item in part.split(";")) for part in (options_text, plan_text)]
    options, plan = ({name: ast.literal_eval(value) for name, value in part.items()} for part in values)
    return LossOptions(**options), plan


class Settings(NamedTuple):
    """The options and the plan of one call (module docstring)."""

    options: LossOptions
    plan: ExecutionPlan

    def pack(self) -> tuple[str, list[int]]:
        """(text, sizes): the arguments a custom op of the pipeline takes the settings as."""
        text = _encode(self.options, _OPTION_TEXT) + "|" + _encode(self.plan, _PLAN_TEXT)
        sizes: list[int] = []
        for name, count in _PLAN_SIZES:
            value = getattr(self.plan, name)
            sizes.extend(value if count > 1 else (value,))
        return text, sizes

    @staticmethod
    def unpack(text: str, sizes: Sequence[int]) -> Settings:
        """The settings ``pack`` wrote as (text, sizes)."""
        options, plan = _decode(text)
        values, position = dict(plan), 0
        for name, count in _PLAN_SIZES:
            taken = tuple(sizes[position : position + count])
            values[name] = taken if count > 1 else taken[0]
            position += count
        return Settings(options, ExecutionPlan(**values))
