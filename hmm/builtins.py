"""Built-in processes: constructors, parameters with defaults and ranges, one-line descriptions.

BUILTINS is the single list of built-in names (used by `load_process` and `beliefgeo processes`).
Classical HMMs first, then the generalized ones of Riechers, Elliott & Shai 2025 (arXiv
2507.07432): the quantum Bloch walk and the post-quantum Fanizza and Moon processes, with the
parameters of the authors' public reference tests (Astera-org/simplexity); docs/processes.md
gives every definition and source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hmm.errors import InvalidInput
from hmm.process import GHMM, HMM
from hmm.quantum import bloch_walk_kraus, instrument_ghmm


@dataclass(frozen=True)
class Param:
    default: float | int
    low: float
    high: float
    kind: type = float
    help: str = ""


@dataclass(frozen=True)
class Builtin:
    build: Callable[..., GHMM]
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


def bloch_walk(alpha: float = 1.0, beta: float = 4.3) -> GHMM:
    """The Bloch walk (tom_quantum): a qubit weakly measured along z or x at random each step;
    4 symbols (z+, z-, x+, x-), states (1, r_x, r_z) in the Bloch disk (hmm.quantum)."""
    return instrument_ghmm(bloch_walk_kraus(alpha, beta), f"bloch_walk(alpha={alpha:g},"
                           f"beta={beta:g})", symbols=["z+", "z-", "x+", "x-"])


def fanizza(alpha: float = 2000.0, lamb: float = 0.49) -> GHMM:
    """The Fanizza process (Fanizza, Lumbreras & Winter 2024): symbol a resets the 4-dim state to
    pi0 with weight eta . w, symbol b rotates two coordinates by alpha and contracts by lamb; no
    finite-dimensional quantum model generates it (for alpha / pi irrational)."""
    c, s = np.cos(alpha), np.sin(alpha)
    den = 1 - 2 * lamb * c + lamb**2
    a_la, b_la = (1 - lamb * c + lamb * s) / den, (1 - lamb * c - lamb * s) / den
    pi0 = np.array([1 - (2 / (1 - lamb) - a_la - b_la) / 4, 1 / (2 * (1 - lamb)),
                    -a_la / 4, -b_la / 4])
    w = np.array([1, 1 - lamb, 1 + lamb * (s - c), 1 - lamb * (s + c)])
    rotate = lamb * np.array([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, c, -s], [0, 0, s, c]])
    return GHMM(np.stack([np.outer(w, pi0), rotate]),
                name=f"fanizza(alpha={alpha:g},lamb={lamb:g})", symbols=["a", "b"])


def moon(alpha: float = 2.7, beta: float = 0.5) -> GHMM:
    """The Moon process (post_quantum in the authors' code; named for its crescent of states): a
    hidden x > 0 reset to 1 with weight x - 1 - ln x, or multiplied by alpha or beta, encoded
    linearly as eta(x) = (x, -1 - ln x, -1); matrices scaled so sum_x T[x] has spectral radius 1.
    Needs alpha > 1 > beta > 0, alpha + beta != 2 (and ln alpha / ln beta irrational, which no
    float can show)."""
    if not alpha > 1 > beta > 0 or abs(alpha + beta - 2) < 1e-12:
        raise InvalidInput(f"needs alpha > 1 > beta > 0 and alpha + beta != 2 (got {alpha:g}, "
                           f"{beta:g})")
    reset = np.outer([1.0, 1.0, 0.0], [1.0, -1.0, -1.0])  # eta(x) @ reset = (x - 1 - ln x) eta(1)

    def scale_by(m: float) -> np.ndarray:  # eta(x) @ scale_by(m) = eta(m x)
        return np.array([[m, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, np.log(m), 1.0]])

    T = np.stack([reset, scale_by(alpha), scale_by(beta)])
    T /= np.abs(np.linalg.eigvals(T.sum(axis=0))).max()
    return GHMM(T, name=f"moon(alpha={alpha:g},beta={beta:g})", states=["x", "-1-ln x", "-1"],
                symbols=["reset", "alpha", "beta"])


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
    "bloch_walk": Builtin(
        bloch_walk,
        {"alpha": Param(1.0, 0.0, 1000.0, help="identity weight of the Kraus operators"),
         "beta": Param(4.3, 0.0, 1000.0, help="Pauli weight (measurement strength)")},
        "quantum (a.k.a. tom_quantum): a qubit measured weakly along z or x; 4 symbols, states in "
        "the Bloch disk (1, r_x, r_z)",
    ),
    "fanizza": Builtin(
        fanizza,
        {"alpha": Param(2000.0, -1e6, 1e6, help="rotation angle, radians"),
         "lamb": Param(0.49, 0.0, 0.99, help="contraction per b")},
        "post-quantum: 2 symbols, 4-dim states; no finite quantum model (Fanizza et al. 2024)",
    ),
    "moon": Builtin(
        moon,
        {"alpha": Param(2.7, 1.0, 1000.0, help="growth factor (> 1)"),
         "beta": Param(0.5, 0.0, 1.0, help="shrink factor (in (0, 1))")},
        "post-quantum: 3 symbols, 3-dim states on a crescent (post_quantum in the authors' code)",
    ),
}


CLASSICAL = ("mess3", "rrxor", "z1r", "even", "golden_mean", "random")


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
        if name not in CLASSICAL:  # the GHMM's own message names the process and the word
            raise InvalidInput(f"{name}: {exc}; change the parameters") from None
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
