"""Built-in processes: constructors, parameters with defaults and ranges, one-line descriptions.

BUILTINS is the single list of built-in names (used by `load_process` and `beliefgeo processes`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hmm.errors import InvalidInput
from hmm.process import HMM


@dataclass(frozen=True)
class Param:
    default: float | int
    low: float
    high: float
    kind: type = float
    help: str = ""


@dataclass(frozen=True)
class Builtin:
    build: Callable[..., HMM]
    params: dict[str, Param]
    description: str


def mess3(x: float = 0.05, a: float = 0.85) -> HMM:
    """Mess3 (Marzen & Crutchfield 2017; Shai et al. 2024): 3 states, 3 symbols, fractal beliefs."""
    b, y = (1 - a) / 2, 1 - 2 * x
    T = np.array([
        [[a * y, b * x, b * x], [a * x, b * y, b * x], [a * x, b * x, b * y]],
        [[b * y, a * x, b * x], [b * x, a * y, b * x], [b * x, a * x, b * y]],
        [[b * y, b * x, a * x], [b * x, b * y, a * x], [b * x, b * x, a * y]],
    ])
    return HMM(T, name=f"mess3(x={x:g},a={a:g})", states=["A", "B", "C"])


def rrxor(pR1: float = 0.5, pR2: float = 0.5) -> HMM:
    """Random-Random-XOR: two random bits (P(0) = pR1, pR2), then their XOR; 5 states."""
    S, Z, One, Tt, F = range(5)  # start, first bit 0, first bit 1, xor will be 1, xor will be 0
    T = np.zeros((2, 5, 5))
    T[0, S, Z], T[1, S, One] = pR1, 1 - pR1
    T[0, Z, F], T[1, Z, Tt] = pR2, 1 - pR2
    T[0, One, Tt], T[1, One, F] = pR2, 1 - pR2
    T[1, Tt, S] = 1.0
    T[0, F, S] = 1.0
    return HMM(T, name=f"rrxor(pR1={pR1:g},pR2={pR2:g})", states=["S", "0", "1", "T", "F"])


def z1r(p: float = 0.5) -> HMM:
    """Zero-One-Random: emits 0, 1, then a random bit (P(0) = p), period 3."""
    T = np.zeros((2, 3, 3))
    T[0, 0, 1] = 1.0
    T[1, 1, 2] = 1.0
    T[0, 2, 0], T[1, 2, 0] = p, 1 - p
    return HMM(T, name=f"z1r(p={p:g})", states=["Z", "O", "R"])


def even(p: float = 0.5) -> HMM:
    """Even process: blocks of 1s have even length; 0 with probability p between blocks."""
    T = np.zeros((2, 2, 2))
    T[0, 0, 0], T[1, 0, 1] = p, 1 - p
    T[1, 1, 0] = 1.0
    return HMM(T, name=f"even(p={p:g})", states=["E", "O"])


def golden_mean(p: float = 0.5) -> HMM:
    """Golden mean: no two 0s in a row; after a 1, a 0 with probability p."""
    T = np.zeros((2, 2, 2))
    T[1, 0, 0], T[0, 0, 1] = 1 - p, p
    T[1, 1, 0] = 1.0
    return HMM(T, name=f"golden_mean(p={p:g})", states=["A", "B"])


def random_hmm(states: int = 3, symbols: int = 2, seed: int = 0, sparsity: float = 0.0) -> HMM:
    """A seeded random ergodic HMM: Dirichlet(1) rows, a fraction `sparsity` of entries zeroed.

    A cycle 0 -> 1 -> ... -> S-1 -> 0 on a random symbol is always kept, so the chain is irreducible
    and the stationary distribution unique.
    """
    rng = np.random.default_rng(seed)
    T = rng.dirichlet(np.ones(symbols * states), size=states).reshape(states, symbols, states)
    T = T.transpose(1, 0, 2).copy()  # (V, S, S)
    if sparsity > 0:
        T[rng.random(T.shape) < sparsity] = 0.0
    cycle = rng.integers(symbols, size=states)
    for i in range(states):
        T[cycle[i], i, (i + 1) % states] += rng.uniform(0.05, 1.0)
    T /= T.sum(axis=(0, 2), keepdims=True)
    name = f"random(states={states},symbols={symbols},seed={seed},sparsity={sparsity:g})"
    return HMM(T, name=name)


BUILTINS: dict[str, Builtin] = {
    "mess3": Builtin(
        mess3,
        {"x": Param(0.05, 0.0, 0.5, help="mixing"),
         "a": Param(0.85, 0.0, 1.0, help="emission bias")},
        "3 states, 3 symbols; non-unifilar, infinitely many beliefs forming a Sierpinski-like "
        "fractal",
    ),
    "rrxor": Builtin(
        rrxor,
        {"pR1": Param(0.5, 0.0, 1.0, help="P(first bit = 0)"),
         "pR2": Param(0.5, 0.0, 1.0, help="P(second bit = 0)")},
        "5 states, 2 symbols; random bit, random bit, their XOR; 36 distinct beliefs",
    ),
    "z1r": Builtin(z1r, {"p": Param(0.5, 0.0, 1.0, help="P(random bit = 0)")},
                   "3 states, 2 symbols; 0, 1, random bit, repeating (period 3)"),
    "even": Builtin(even, {"p": Param(0.5, 0.0, 1.0, help="P(0) between blocks of 1s")},
                    "2 states, 2 symbols; blocks of 1s of even length (infinite Markov order)"),
    "golden_mean": Builtin(golden_mean, {"p": Param(0.5, 0.0, 1.0, help="P(0) after a 1")},
                           "2 states, 2 symbols; never two 0s in a row (Markov order 1)"),
    "random": Builtin(
        random_hmm,
        {"states": Param(3, 1, 64, int, "hidden states"),
         "symbols": Param(2, 1, 64, int, "symbols"),
         "seed": Param(0, 0, 2**32 - 1, int, "generator seed"),
         "sparsity": Param(0.0, 0.0, 0.95, help="fraction of zeroed entries")},
        "a seeded random ergodic HMM, for probing new geometries and for tests",
    ),
}


def build_builtin(name: str, overrides: dict[str, str]) -> HMM:
    """Build built-in `name` with string parameter overrides, validating names, types and ranges."""
    entry = BUILTINS[name]
    values: dict[str, float | int] = {}
    for key, text in overrides.items():
        if key not in entry.params:
            raise InvalidInput(
                f"{name} has no parameter {key!r}; it takes "
                f"{describe_params(name) or 'no parameters'}"
            )
        spec = entry.params[key]
        try:
            value = spec.kind(text) if spec.kind is float else _parse_int(text)
        except (ValueError, OverflowError):
            what = "an integer" if spec.kind is int else "a number"
            raise InvalidInput(f"{name}: {key}={text!r} is not {what}") from None
        if not np.isfinite(value) or not spec.low <= value <= spec.high:
            raise InvalidInput(
                f"{name}: {key}={text} is out of range; {key} must be in "
                f"[{spec.low:g}, {spec.high:g}]"
            )
        values[key] = value
    try:
        return entry.build(**values)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{name} with {values} is not a valid ergodic HMM ({exc}); change the parameters"
        ) from None


def describe_params(name: str) -> str:
    """'x=0.05 (mixing), a=0.85 (emission bias)' for built-in `name`."""
    return ", ".join(f"{k}={p.default:g} ({p.help})" for k, p in BUILTINS[name].params.items())


def _parse_int(text: str) -> int:
    value = float(text)
    if value != int(value):
        raise ValueError(text)
    return int(value)
