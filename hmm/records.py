"""Typed records of the JSON files a run writes: one dataclass per file and per nested object, so
readers use attributes (`probes.headline.r2_heldout`) instead of string keys and `.get` chains.

A record type is a `@record` dataclass whose fields are the file's keys: plain values, nested
records, lists of records (`checkpoints[]`) and dicts of records or values keyed by a name that
depends on the run (`layers.<hook>`; the field's `keys` metadata names the placeholder); a nested
record written as null, or a list of them written empty, is declared `nullable` (the key is then a
leaf of its own). Every field
has a default, so `from_json` reads files that lack keys (older versions: their migration lives in
the file type's `migrate`, the one place that knows old formats); keys the type does not declare
are kept in `undeclared`, so a file written by a newer version still loads. `record_keys` lists
every key path a type declares in docs/run-files.md's notation, which tests/experiments/
test_docs.py compares with the documentation and with what a real run writes. A new key is one
field. Writers go through `write_record`, which refuses a key the type does not declare, so a file
cannot grow a key the types and docs/run-files.md do not know.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

from hmm.files import write_json

R = TypeVar("R", bound="Record")


@dataclasses.dataclass(kw_only=True)
class Record:
    """Base of the record dataclasses: from_json / to_json and the `undeclared` keys."""

    undeclared: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Older formats of this object, brought to the current one (the default: unchanged)."""
        return data

    @classmethod
    def from_json(cls: type[R], data: dict) -> R:
        """The record of a parsed JSON object; missing keys keep their defaults."""
        data = cls.migrate(dict(data))
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)} - {"undeclared"}
        values = {k: _convert(hints[k], v) for k, v in data.items() if k in known}
        record = cls(**values)
        record.undeclared = {k: v for k, v in data.items() if k not in known}
        record._given = frozenset(data)  # which keys the file had: to_json gives them back
        return record

    def to_json(self) -> dict:
        """The record as a JSON object: the keys it was read with (all non-None fields for a
        record built in code), then its undeclared keys; from_json(d).to_json() == d."""
        given = getattr(self, "_given", None)
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name != "undeclared"
               and (f.name in given if given is not None else getattr(self, f.name) is not None)}
        return {**out, **self.undeclared}


class UndeclaredKeys(ValueError):
    """A writer put keys in a run file that its record type does not declare (a bug, not input)."""


def checked(cls: type[Record], data: dict) -> dict:
    """`data` itself when every key in it, at any depth, is declared by `cls`; else UndeclaredKeys
    naming each (as docs/run-files.md writes them). No migration: a writer writes the current
    format."""
    found = undeclared_keys(cls, data)
    if found:
        raise UndeclaredKeys(
            f"keys not declared in {cls.__name__}: {', '.join(found)}; declare each as a field "
            "of its record type and a line in docs/run-files.md"
        )
    return data


def write_record(path: str | Path, cls: type[Record], data: dict) -> Path:
    """Write the JSON object `data` to `path` (atomically) once `checked` against `cls`."""
    return write_json(path, checked(cls, data))


def undeclared_keys(cls: type[Record], data: Any, prefix: str = "") -> list[str]:
    """Key paths of the JSON object `data` that `cls` does not declare, sorted: `a.b`, `a[].b`,
    `a.<name>.b` with the run's own name."""
    if not isinstance(data, dict):
        return []
    hints = _hints(cls)
    found: set[str] = set()
    for key, value in data.items():
        if key not in hints:
            found.add(f"{prefix}{key}")
        else:
            found.update(_undeclared_in(hints[key], value, f"{prefix}{key}"))
    return sorted(found)


def _undeclared_in(tp: Any, value: Any, path: str) -> list[str]:
    tp = _strip_optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_record(tp):
        return undeclared_keys(tp, value, f"{path}.")
    if origin is list and args and isinstance(value, list):
        return [p for v in value for p in _undeclared_in(args[0], v, f"{path}[]")]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return [p for k, v in value.items() for p in _undeclared_in(args[1], v, f"{path}.{k}")]
    return []


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """The declared fields of a record type and their types (`undeclared` is not a key)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "undeclared"}


def record(cls: type[R]) -> type[R]:
    """Make a Record subclass a dataclass with keyword-only fields (defaults in any order)."""
    return dataclasses.dataclass(kw_only=True)(cls)


def keyed(keys: str | list, only: str | None = None) -> Any:
    """A dict field keyed by a run-dependent name: a placeholder (`<hook>`, `<layer>`, `<k>`) or a
    list of names and placeholders, each optionally (name, architecture)."""
    return dataclasses.field(default_factory=dict, metadata={"keys": keys, "only": only})


def only(arch: str, default: Any = None) -> Any:
    """A field written for one architecture only, or by some commands only (`optional`)."""
    return dataclasses.field(default=default, metadata={"only": arch})


def nullable(arch: str | None = None) -> Any:
    """A nested record or list of records that a file may hold as null or [] (llc.json's
    `calibration` when settings were given, `stages.boundaries` when none was found): the key is
    then itself a leaf, so docs/run-files.md lists it beside its children."""
    return dataclasses.field(default=None, metadata={"only": arch, "nullable": True})


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _convert(tp: Any, value: Any) -> Any:
    tp = _strip_optional(tp)
    if value is None:
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_json(value) if isinstance(value, dict) else value
    if origin is list and args and isinstance(value, list):
        return [_convert(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _convert(args[1], v) for k, v in value.items()}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def record_keys(cls: type, prefix: str = "") -> list[tuple[str, str | None]]:
    """(key path, architecture or None) of every key `cls` declares, in docs/run-files.md's
    notation: `a.b`, `a[].b` for lists of objects, `a.<hook>.b` for keyed dicts."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, str | None]] = []
    for f in dataclasses.fields(cls):
        if f.name == "undeclared":
            continue
        path, tag = f"{prefix}{f.name}", f.metadata.get("only")
        if f.metadata.get("nullable"):
            out.append((path, tag))
        tp = _strip_optional(hints[f.name])
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is list and "keys" in f.metadata:  # a list of objects with free keys
            out += [(f"{path}[].{name}", tag or t) for name, t in _key_names(f.metadata["keys"])]
        elif origin is list and args and _is_record(args[0]):
            out += [(p, tag or t) for p, t in record_keys(args[0], f"{path}[].")]
        elif "keys" in f.metadata:
            inner = _strip_optional(args[1]) if len(args) == 2 else None
            for name, name_tag in _key_names(f.metadata["keys"]):
                keyed_path, keyed_tag = f"{path}.{name}", tag or name_tag
                if _is_record(inner):
                    out += [(p, keyed_tag or t) for p, t in record_keys(inner, f"{keyed_path}.")]
                else:
                    out.append((keyed_path, keyed_tag))
        elif _is_record(tp):
            out += [(p, tag or t) for p, t in record_keys(tp, f"{path}.")]
        else:
            out.append((path, tag))
    return out


def _key_names(keys: str | list) -> list[tuple[str, str | None]]:
    names = [keys] if isinstance(keys, str) else keys
    return [(k, None) if isinstance(k, str) else (k[0], k[1]) for k in names]


def _is_record(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Record)
