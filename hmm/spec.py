"""Process specifications: `load_process` (name, name:key=value, or JSON file) and the JSON schema.

Schema (documented with examples in docs/processes.md), by "kind":
- absent or "hmm": {"name", "states": [...], "symbols": [...], "transitions": {symbol:
  [[P(emit symbol, go to j | in i) for j] for i]}, "initial": null | [...]};
- "ghmm": the same keys, matrices may be negative (validity: hmm.validity);
- "mixture": {"components": [part, ...], "weights": [w, ...], "name"};
- "product": {"factors": [part, ...], "name"};
a part is a built-in name, "name:key=value", a spec file path, or a spec object (any kind).
Every matrix entry is a JSON number: booleans, strings and nulls are refused, naming the entry.
Floats are written with repr, so save -> load gives the identical tensor.
"""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from hmm.builtins import BUILTINS, build_builtin
from hmm.composite import Mixture, Product
from hmm.errors import InvalidInput
from hmm.files import read_json, write_json
from hmm.process import GHMM, HMM

KINDS = ("hmm", "ghmm", "mixture", "product")
MATRIX_KEYS = {"kind", "name", "states", "symbols", "transitions", "initial"}


def load_process(spec: str | Path | dict | GHMM) -> GHMM:
    """A process from a built-in name ("mess3"), "name:key=value,...", a JSON spec path or dict."""
    if isinstance(spec, GHMM):
        return spec
    if isinstance(spec, dict):
        return from_spec(spec)
    if isinstance(spec, Path):
        return _load_file(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInput(f"a process must be a name or a spec file path; got {spec!r}")
    text = spec.strip()
    name, _, params = text.partition(":")
    if name in BUILTINS:
        return build_builtin(name, _parse_params(name, params))
    path = Path(text)
    if path.suffix.lower() == ".json" or path.exists() or "/" in text:
        return _load_file(path)
    raise InvalidInput(
        f"unknown process {name!r}; built-ins are {', '.join(BUILTINS)} (see `beliefgeo "
        "processes`), "
        "or give the path of a JSON spec file"
    )


def _parse_params(name: str, text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise InvalidInput(
                f"{name}: parameter {item!r} must look like key=value, e.g. {name}:{_example(name)}"
            )
        out[key.strip()] = value.strip()
    return out


def _example(name: str) -> str:
    return ",".join(f"{k}={p.default:g}" for k, p in BUILTINS[name].params.items())


def _load_file(path: Path) -> GHMM:
    if not path.is_file():
        raise InvalidInput(
            f"process spec file {path} does not exist (built-ins: {', '.join(BUILTINS)})"
        )
    data = read_json(path)
    try:
        return from_spec(data, default_name=path.stem, base=path.parent)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc}") from None


def from_spec(data: Any, default_name: str | None = None, base: Path | None = None) -> GHMM:
    """Build a process from a JSON spec dict of any kind; errors name the offending field.

    base: the folder relative part paths of a mixture or product are read from (the spec file's).
    """
    if not isinstance(data, dict):
        raise InvalidInput(
            "a spec must be a JSON object with 'transitions' "
            "(and optional kind, name, states, symbols, initial), or of kind mixture / product"
        )
    kind = data.get("kind", "hmm")
    if kind not in KINDS:
        raise InvalidInput(
            f"unknown spec kind {kind!r}; kinds are {', '.join(KINDS)} (absent: hmm)"
        )
    if kind == "mixture":
        _check_keys(data, {"kind", "name", "components", "weights"}, "mixture")
        parts = _parts(data, "components", base)
        if "weights" not in data:
            raise InvalidInput(f"a mixture needs 'weights': {len(parts)} numbers summing to 1")
        return Mixture(parts, data["weights"], name=_name(data, default_name))
    if kind == "product":
        _check_keys(data, {"kind", "name", "factors"}, "product")
        return Product(_parts(data, "factors", base), name=_name(data, default_name))
    _check_keys(data, MATRIX_KEYS, kind)
    symbols, matrices = _matrices(data)
    states = data.get("states")
    if states is not None and not isinstance(states, list):
        raise InvalidInput("'states' must be a list of state names")
    initial = data.get("initial")
    if initial is not None:
        if not isinstance(initial, list):
            raise InvalidInput("'initial' must be null or a list of numbers, one per state")
        _check_numbers(initial, "initial")
    cls = HMM if kind == "hmm" else GHMM
    return cls(np.stack(matrices), name=str(data.get("name", default_name or "spec")),
               initial=initial, states=states, symbols=[str(s) for s in symbols])


def _check_keys(data: dict, allowed: set[str], kind: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise InvalidInput(
            f"unknown spec keys {sorted(unknown)} for kind {kind}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )


def _name(data: dict, default: str | None) -> str | None:
    name = data.get("name", default)
    return None if name is None else str(name)


def _parts(data: dict, key: str, base: Path | None) -> list[GHMM]:
    """The processes listed under `key`: names, name:key=value, file paths (relative ones from
    `base`) or spec objects."""
    items = data.get(key)
    if not isinstance(items, list) or not items:
        raise InvalidInput(
            f"'{key}' must be a non-empty list of built-in names, 'name:key=value' strings, spec "
            "file paths or spec objects"
        )
    parts = []
    for k, item in enumerate(items):
        try:
            builtin = isinstance(item, str) and item.partition(":")[0] in BUILTINS
            if isinstance(item, str) and base is not None and not builtin:
                item = base / item  # an absolute item stays itself
            parts.append(load_process(item) if isinstance(item, str | Path) else from_spec(item))
        except InvalidInput as exc:
            raise InvalidInput(f"{key}[{k}]: {exc}") from None
    return parts


def _matrices(data: dict) -> tuple[list, list[np.ndarray]]:
    """(symbols, one square matrix per symbol) from 'transitions', checked entry by entry."""
    transitions = data.get("transitions")
    if not isinstance(transitions, dict) or not transitions:
        raise InvalidInput(
            "'transitions' must be an object {symbol: [[P(emit symbol, go to j | in i)]]}"
        )
    symbols = data.get("symbols")
    if symbols is None:
        symbols = list(transitions)
    if not isinstance(symbols, list) or sorted(map(str, symbols)) != sorted(transitions):
        raise InvalidInput(
            f"'symbols' {symbols} must list exactly the keys of 'transitions' {list(transitions)}"
        )
    matrices = []
    for sym in symbols:
        m = transitions[str(sym)]
        if not isinstance(m, list) or not all(isinstance(r, list) for r in m):
            raise InvalidInput(
                f"transitions[{str(sym)!r}] must be a list of rows (a square matrix)"
            )
        for i, row in enumerate(m):
            _check_numbers(row, f"transitions[{str(sym)!r}][{i}]")
        try:
            arr = np.array(m, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"transitions[{str(sym)!r}] must contain only numbers, one row per state, rows of "
                "equal length"
            ) from None
        matrices.append(arr)
    shapes = {a.shape for a in matrices}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or len(set(next(iter(shapes)))) != 1:
        raise InvalidInput(
            f"every transitions matrix must be square with one row per state; got shapes "
            f"{ {str(s): a.shape for s, a in zip(symbols, matrices, strict=True)} }"
        )
    return symbols, matrices


def _check_numbers(values: list, where: str) -> None:
    """Every entry a JSON number: true/false would otherwise become 1.0/0.0, "0.5" a float."""
    for j, value in enumerate(values):
        if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
            shown = json.dumps(value) if isinstance(value, str | bool | None) else repr(value)
            raise InvalidInput(
                f"{where}[{j}] is {shown}, not a number; write probabilities as "
                "JSON numbers such as 0.5 (see docs/processes.md)"
            )


def to_spec(process: GHMM) -> dict:
    """The JSON-ready spec dict of `process` (kind absent for a classical HMM, as before kinds)."""
    if isinstance(process, Mixture):
        return {"kind": "mixture", "name": process.name,
                "components": [to_spec(c) for c in process.components],
                "weights": process.weights.tolist()}
    if isinstance(process, Product):
        return {"kind": "product", "name": process.name,
                "factors": [to_spec(f) for f in process.factors]}
    spec = {
        "name": process.name,
        "states": list(process.states),
        "symbols": list(process.symbols),
        "transitions": {s: process.T[x].tolist() for x, s in enumerate(process.symbols)},
        "initial": None if process._initial_given is None else process._initial_given.tolist(),
    }
    return spec if isinstance(process, HMM) else {"kind": "ghmm", **spec}


def save_process(process: GHMM, path: str | Path) -> Path:
    """Write `process` as a JSON spec file (loadable by `load_process(path)`)."""
    return write_json(path, to_spec(process))
