"""What every config is built of (pydantic v2): the base class of a section, the value types a YAML file or a
``KEY=VALUE`` option is read into, and validation errors worded as one plain line per problem, each with its
dotted path (``train.lr: must be > 0, got -1``), all of them at once.

PyYAML reads YAML 1.1, where yes, no, on and off are booleans and ``2e-4`` (no dot) is text. :func:`read_yaml`
takes only true and false as booleans (a ``yes`` where a boolean belongs is refused, and where text belongs it is
the text it reads), and the number types take numeric text.
"""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic_core import PydanticCustomError

from dermsynth.errors import ConfigError

MAX_SEED = 2**32 - 1
"""Largest seed any config or command takes: numpy's generators refuse seeds outside [0, 2**32 - 1]."""


class Section(BaseModel):
    """Base of every config section: checked when built, unknown options refused, each value taken only as its
    own type (not 1 for true, nor true for text), unchanged once built."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- Value types ----------------------------------------------------------------------------------------------


def _numeric_text(value: Any) -> Any:
    """YAML 1.1 reads 2e-4 and 1E3 (no dot, no exponent sign) as text: such text is the number it spells."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return int(value) if re.fullmatch(r"\s*[-+]?\d+\s*", value) else number


def _number(value: Any) -> Any:
    value = _numeric_text(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PydanticCustomError("number", "expected a number")
    return value


def _integral(value: Any) -> Any:
    value = _numeric_text(value)
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _path_text(value: Any) -> Any:
    if value == "":
        raise PydanticCustomError("path_type", "expected a path")
    return value


Number = Annotated[int | float, BeforeValidator(_number)]
"""A finite number, kept as written: an int stays an int, so saved configs and study keys stay as they were."""
Float = Annotated[float, BeforeValidator(_number)]
"""A finite number, as a float."""
Integer = Annotated[int, BeforeValidator(_integral)]
"""An integer: 3.0 and 1e2 are integers, 3.5 and true are not."""
Seed = Annotated[Integer, Field(ge=0, le=MAX_SEED)]
"""A seed numpy takes."""
FilePath = Annotated[Path, Strict(False), BeforeValidator(_path_text)]
"""A path, written as text."""
T = TypeVar("T")
Items = Annotated[tuple[T, ...], Strict(False)]
"""A YAML list, held as a tuple; each item typed strictly."""


# --- Reading values -------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, with only true and false as booleans (YAML 1.2): yes, no, on and off are text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def read_yaml(text: str) -> Any:
    """YAML text as plain values; only true and false are booleans. Raises yaml.YAMLError."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: no tag runs code


def _unwrap(kind: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None``."""
    while True:
        if typing.get_origin(kind) is Annotated:
            kind = typing.get_args(kind)[0]
            continue
        members = [m for m in typing.get_args(kind) if m is not type(None)]
        if typing.get_origin(kind) in (typing.Union, type(int | None)) and len(members) == 1:
            kind = members[0]
            continue
        return kind


def _optional(kind: Any) -> bool:
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    return type(None) in typing.get_args(kind)


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def annotation_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> Any:
    """The type at ``loc`` (``("train", "amp")``, ``("optim", "betas", 1)``) inside ``model``, None where the path
    leads nowhere."""
    kind: Any = model
    for part in loc:
        kind = _unwrap(kind)
        if _is_model(kind) and part in kind.model_fields:
            kind = kind.model_fields[part].annotation
        elif isinstance(part, int) and typing.get_origin(kind) is tuple:
            args = typing.get_args(kind)
            kind = args[0] if args[-1] is Ellipsis else args[part] if part < len(args) else None
        else:
            return None
    return kind


def takes_text(kind: Any) -> bool:
    """Whether a field of type ``kind`` holds text: a str, a path, or a choice among words."""
    kind = _unwrap(kind)
    if typing.get_origin(kind) is Literal:
        return all(isinstance(a, str) for a in typing.get_args(kind))
    return kind in (str, Path)


def option_value(text: str, kind: Any = None) -> Any:
    """The value of a ``KEY=VALUE`` option for a field of type ``kind``: the text read as YAML (booleans true or
    false only), except that a field holding text takes it as written (``amp=on`` is the text on, ``kind=1`` the
    text 1) and an optional one also takes null. Raises yaml.YAMLError."""
    if kind is None or not takes_text(kind):
        return read_yaml(text)
    try:
        value = read_yaml(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str) or (value is None and _optional(kind)) else text


# --- Errors as plain lines ------------------------------------------------------------------------------------


class Problems(ValueError):
    """What a check across fields found, each problem about one field (``"warmup_epochs"``, or a dotted name that
    reaches into a section): raised once with all of them, each is reported on its own line."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{field}: {message}" for field, message in found))
        self.found = found


def raise_problems(found: list[tuple[str, str]]) -> None:
    """Raise :class:`Problems` if a check found any."""
    if found:
        raise Problems(found)


_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a number",
    "number": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "text", "path_type": "a path", "is_instance_of": "a path",
    "tuple_type": "a list", "list_type": "a list",
    "model_type": "a mapping of options", "model_attributes_type": "a mapping of options",
    "dict_type": "a mapping of options",
}
_BOUNDS = {"greater_than": ("gt", ">"), "greater_than_equal": ("ge", ">="), "less_than": ("lt", "<"),
           "less_than_equal": ("le", "<=")}


def _path(loc: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _line(loc: tuple[str | int, ...], message: str) -> str:
    return f"{_path(loc)}: {message}" if loc else message


def _choices(kind: Any, ctx: dict) -> str:
    kind = _unwrap(kind)
    if typing.get_origin(kind) is Literal:
        return ", ".join(map(str, typing.get_args(kind)))
    return ctx.get("expected", "").replace("'", "")


def problems(error: ValidationError, model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[str]:
    """Every error of validating ``model`` as one plain line: its dotted path (under ``prefix``), what it must be
    and what was given."""
    lines = []
    for e in error.errors(include_url=False):
        loc, kind, ctx, given = tuple(e["loc"]), e["type"], e.get("ctx") or {}, e.get("input")
        where = (*prefix, *loc)
        if isinstance(ctx.get("error"), Problems):
            lines += [_line((*where, *field.split(".")) if field else where, message)
                      for field, message in ctx["error"].found]
        elif kind in ("value_error", "assertion_error"):
            lines.append(_line(where, str(ctx.get("error", e["msg"]))))
        elif kind == "extra_forbidden":
            parent = _unwrap(annotation_at(model, loc[:-1]))
            fields = parent.model_fields if _is_model(parent) else {}
            word = "section" if any(_is_model(_unwrap(f.annotation)) for f in fields.values()) else "option"
            lines.append(_line(where, f"unknown {word}" + (f" (known: {', '.join(fields)})" if fields else "")))
        elif kind == "missing" and loc and isinstance(loc[-1], int):  # a fixed-length list that is too short
            count = len(typing.get_args(_unwrap(annotation_at(model, loc[:-1]))))
            lines.append(_line(where[:-1], f"expected {count} items, got {given!r}"))
        elif kind == "missing":
            lines.append(_line(where, "required"))
        elif kind == "literal_error":
            choice = annotation_at(model, loc)
            null = ", or null" if _optional(choice) else ""
            lines.append(_line(where, f"expected one of {_choices(choice, ctx)}{null}, got {given!r}"))
        elif kind in _BOUNDS:
            bound, sign = _BOUNDS[kind]
            lines.append(_line(where, f"must be {sign} {ctx[bound]}, got {given!r}"))
        elif kind in ("too_short", "too_long"):
            count = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
            fixed = typing.get_args(_unwrap(annotation_at(model, loc)))
            least = "" if fixed and fixed[-1] is not Ellipsis else "at least " if kind == "too_short" else "at most "
            lines.append(_line(where, f"expected {least}{count} item{'s' * (count != 1)}, got {given!r}"))
        else:
            expected = _EXPECTED.get(kind) or e["msg"].removeprefix("expected ")
            null = " or null" if _optional(annotation_at(model, loc)) else ""
            lines.append(_line(where, f"expected {expected}{null}, got {given!r}"))
    return list(dict.fromkeys(lines))  # a list short of several items is named once


def validated(model: type[BaseModel], values: Any, header: str, prefix: tuple[str, ...] = (),
              context: dict | None = None) -> Any:
    """``model`` built from ``values``; a :class:`ConfigError` headed ``header`` lists every problem at once."""
    try:
        return model.model_validate(values, context=context)
    except ValidationError as e:
        raise ConfigError(f"{header}:\n  - " + "\n  - ".join(problems(e, model, prefix))) from None


def replaced(cfg: BaseModel, **changes: Any) -> Any:
    """``cfg`` with ``changes``, checked again as a whole (pydantic's model_copy checks nothing)."""
    return type(cfg).model_validate({**{name: getattr(cfg, name) for name in type(cfg).model_fields}, **changes})
