"""Typed records of the JSON files a run writes: one dataclass per file and per nested object, so
readers use attributes (`probes.headline.r2_heldout`) instead of string keys and `.get` chains.

A record type is a `@record` dataclass whose fields are the file's keys: plain values, nested
records, lists of records (`checkpoints[]`) and dicts of records or values keyed by a name that
depends on the run (`layers.<hook>`; the field's `keys` metadata names the placeholder). Every field
has a default, so `from_json` reads files that lack keys (older versions: their migration lives in
the file type's `migrate`, the one place that knows old formats); keys the type does not declare
are kept in `undeclared`, so a file written by a newer version still loads. `record_keys` lists
every key path a type declares in docs/run-files.md's notation, which tests/experiments/
test_docs.py compares with the documentation and with what a real run writes. A new key is one
field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union

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
