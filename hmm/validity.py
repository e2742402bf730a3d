"""Validity of a generalized HMM: its eigenvalue-1 vectors and its word probabilities.

A GHMM is a set of real matrices T[x] (V, d, d) whose entries may be negative. With T = sum_x T[x],
a right vector tau (T tau = tau) and a start vector eta_0 (eta_0 tau = 1), the probability of a
word w = x_1 ... x_L is P(w) = eta_0 T[x_1] ... T[x_L] tau, and the state after it is
eta_w = eta_0 T[w] / P(w) (Riechers, Elliott & Shai 2025, arXiv 2507.07432; Upper 1997). The
start vector is the stationary left vector pi (pi T = pi, pi tau = 1) unless one is given.

What `check_word_probabilities` guarantees: every word of length <= `check_depth(V)` has
P(w) >= 0 (up to rounding: a value below -1e-9 times the magnitude of the terms summed is negative),
and since T tau = tau the probabilities of each length sum to 1. What it does not: positivity of
longer words. Deciding it for every length is undecidable in general (a GHMM is a weighted
automaton; Denis & Esposito 2008), so a process that passes can still give a negative probability
beyond the checked depth; the filter, the sampler and the mixed-state tree then raise InvalidInput
naming the sequence instead of returning a wrong number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hmm.errors import InvalidInput

if TYPE_CHECKING:
    from hmm.process import GHMM

ROW_TOL = 1e-9  # rows of a stochastic matrix sum to 1 within this
EIG_TOL = 1e-10  # singular values of (T - I) below this (times max(1, d)) count as eigenvalue 1
VECTOR_TOL = 1e-9  # a given start vector must satisfy eta_0 tau = 1 within this
NEGATIVE_TOL = 1e-9  # relative to sum |eta_i| |T[x]_ij| |tau_j|, the size of rounding in P(w)
WORD_BUDGET = 2**16  # words checked per process (all words up to the largest length that fits)
MAX_CHECK_DEPTH = 12


def eigen_one(matrix: np.ndarray) -> np.ndarray:
    """Basis (k, d) of {v : matrix v = v}, each row scaled so its largest |entry| is +1."""
    d = matrix.shape[0]
    _, sv, vt = np.linalg.svd(matrix - np.eye(d))
    basis = vt[sv < EIG_TOL * max(1, d)]
    if len(basis) == 1:  # one refinement solve sharpens the SVD vector to machine precision
        k = int(np.argmax(np.abs(basis[0])))
        system = np.vstack([matrix - np.eye(d), np.eye(d)[k]])
        refined, *_ = np.linalg.lstsq(system, np.eye(d + 1)[d], rcond=None)
        if np.abs(refined * np.sign(basis[0, k]) - basis[0] / np.abs(basis[0, k])).max() < 1e-6:
            basis = refined[None]
    return basis / basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)][:, None]


def ghmm_vectors(
    T: np.ndarray, name: str, initial: Any = None, right: Any = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(stationary pi or None when not unique, right tau, the given start vector or None).

    tau is the unique right eigenvector of sum_x T[x] with eigenvalue 1 (largest |entry| +1) unless
    `right` is given; pi the unique left one, scaled to pi tau = 1. Raises InvalidInput when tau is
    not unique, or when no start vector is determined (pi not unique and no `initial`).
    """
    total, d = T.sum(axis=0), T.shape[1]
    if right is not None:
        right = _vector(right, d, "right", name)
        if np.abs(total @ right - right).max() > VECTOR_TOL:
            raise InvalidInput(f"{name}: the given right vector tau is not fixed by sum_x T[x]")
    elif np.abs(total.sum(axis=1) - 1.0).max() <= ROW_TOL:
        right = np.ones(d)  # rows sum to 1: the stochastic gauge, tau = 1 exactly
    else:
        rights = eigen_one(total)
        if len(rights) != 1:
            raise InvalidInput(_eigen_message(name, len(rights), "right", "T tau = tau"))
        right = rights[0]
    if (T >= 0).all() and np.array_equal(right, np.ones(d)):
        stationary = classical_stationary(total)  # HMM's routine: classical numbers stay identical
        lefts = eigen_one(total.T) if stationary is None else stationary[None]
    else:
        lefts = eigen_one(total.T)
        stationary = None
        if len(lefts) == 1 and abs(lefts[0] @ right) > VECTOR_TOL:
            stationary = lefts[0] / (lefts[0] @ right)
    if initial is None:
        if stationary is None:
            raise InvalidInput(_eigen_message(name, len(lefts), "left", "pi T = pi")
                               + "; or give an explicit 'initial' state")
        return stationary, right, None
    initial = _vector(initial, total.shape[0], "initial", name)
    if abs(initial @ right - 1.0) > VECTOR_TOL:
        raise InvalidInput(
            f"{name}: initial . tau = {initial @ right:.10g}; the start state must satisfy "
            "initial . tau = 1 (tau: the right eigenvector of sum_x T[x] with eigenvalue 1)"
        )
    return stationary, right, initial


def classical_stationary(A: np.ndarray) -> np.ndarray | None:
    """The unique stationary distribution of the row-stochastic A (S, S), or None if not unique."""
    S = A.shape[0]
    _, sv, vt = np.linalg.svd(A.T - np.eye(S))
    if (sv < 1e-10 * max(1, S)).sum() != 1:
        return None
    pi = vt[-1]
    pi = pi / pi.sum()
    if pi.min() < -1e-9:
        return None
    pi = np.clip(pi, 0.0, None)
    # one refinement solve sharpens the SVD vector to machine precision
    M = np.vstack([A.T - np.eye(S), np.ones((1, S))])
    rhs = np.zeros(S + 1)
    rhs[-1] = 1.0
    refined, *_ = np.linalg.lstsq(M, rhs, rcond=None)
    if np.abs(refined - pi).max() < 1e-6:
        pi = np.clip(refined, 0.0, None)
    return pi / pi.sum()



def _eigen_message(name: str, count: int, side: str, equation: str) -> str:
    what = "no eigenvalue 1" if count == 0 else f"{count} independent {side} eigenvectors"
    return (
        f"{name}: sum_x T[x] has {what} for eigenvalue 1 ({equation}); a generalized HMM needs "
        "exactly one (an ergodic process). Scale the matrices so that the sum has eigenvalue 1, or "
        "merge the disconnected parts (a mixture of processes is a spec of kind 'mixture')"
    )


def _vector(values: Any, size: int, what: str, name: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}: {what} must be a list of {size} numbers") from None
    if arr.shape != (size,) or not np.isfinite(arr).all():
        raise InvalidInput(f"{name}: {what} must be {size} finite numbers, one per state")
    return arr


def check_depth(n_symbols: int) -> int:
    """The word length checked: the largest L <= 12 with V^L <= 65,536 (binary 12, ternary 10,
    four symbols 8, 27 symbols 3); at least 1."""
    if n_symbols <= 1:
        return MAX_CHECK_DEPTH
    return max(1, min(MAX_CHECK_DEPTH, int(np.log(WORD_BUDGET) / np.log(n_symbols) + 1e-9)))


def check_word_probabilities(process: GHMM, depth: int | None = None) -> None:
    """Raise InvalidInput naming the shortest (then lexicographically first) word of length
    <= depth (default `check_depth`) whose probability from `process.initial` is negative.

    Breadth first over words with unnormalised states rescaled by positive factors (so a word of
    probability zero keeps its state and its children are checked too).
    """
    T, tau = process.T, process.right
    depth = check_depth(process.n_symbols) if depth is None else depth
    magnitude = np.abs(T) @ np.abs(tau)  # (V, d): sum_j |T[x]_ij| |tau_j|
    vectors, log_scale = process.initial[None].copy(), np.zeros(1)
    levels: list[np.ndarray] = []  # per length: the kept children's flat (parent * V + symbol)
    for length in range(1, depth + 1):
        children = np.einsum("nd,xde->nxe", vectors, T)  # (n, V, d)
        probs = children @ tau
        bad = probs < -NEGATIVE_TOL * (np.abs(vectors) @ magnitude.T)
        if bad.any():
            row, x = np.argwhere(bad)[0]
            word = _word(levels, int(row), T.shape[0]) + [int(x)]
            value = probs[row, x] * np.exp(log_scale[row])
            shown = " ".join(process.symbols[s] for s in word)
            raise InvalidInput(
                f"{process.name} is not a valid process: the word '{shown}' (length {length}) "
                f"has probability {value:.3g} < 0; every word up to length {depth} must have "
                "probability >= 0 (see docs/processes.md, validity)"
            )
        flat = children.reshape(-1, T.shape[1])
        norms = np.abs(flat).max(axis=1)
        keep = np.flatnonzero(norms > 0)
        levels.append(keep)
        log_scale = np.repeat(log_scale, T.shape[0])[keep] + np.log(norms[keep])
        vectors = flat[keep] / norms[keep, None]


def _word(levels: list[np.ndarray], row: int, n_symbols: int) -> list[int]:
    """Symbols of the word at `row` of the deepest level in `levels`."""
    word: list[int] = []
    for keep in reversed(levels):
        parent, symbol = divmod(int(keep[row]), n_symbols)
        word.append(symbol)
        row = parent
    return word[::-1]
