"""Information measures: optimal loss by position, entropy rate, statistical complexity.

All in nats. The Bayes-optimal next-token loss at position t is the conditional block entropy
H(X_t | X_<t) = sum over depth-t MSP nodes of P(prefix) H(predictive(belief)) (Crutchfield & Feldman
2003, "Regularities unseen, randomness observed", h_mu(L)); it decreases to the entropy rate.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hmm.errors import InvalidInput
from hmm.msp import BELIEF_DECIMALS, expand_level, merge_beliefs

if TYPE_CHECKING:
    from hmm.process import GHMM

MAX_LEVEL_NODES = 2_000_000  # exact level-by-level work stops here (Mess3: depth 13)
ALWAYS_MERGE = 50_000  # levels up to this size are always de-duplicated (cheap); larger ones only
# while de-duplication keeps paying (>= 10 % fewer rows), since sorting 10^6 rows costs seconds


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats over the last axis, with 0 log 0 = 0: (..., K) -> (...)."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, -probs * np.log(probs), 0.0)
    return terms.sum(axis=-1)


def _conditional_entropy_levels(
    process: GHMM, start: np.ndarray, max_nodes: int = MAX_LEVEL_NODES
) -> Iterator[float]:
    """Yield H(X_t | X_<t) for t = 0, 1, ... from belief `start` until a level exceeds max_nodes.

    Identical beliefs (to msp.BELIEF_DECIMALS) are merged at each level (see ALWAYS_MERGE), so
    processes with finitely many mixed states stay small at any depth and the generator never
    stops.
    """
    beliefs, probs = start.reshape(1, -1).copy(), np.ones(1)
    merge = True
    while True:
        yield float(probs @ entropy(process.predictive(beliefs)))
        if len(probs) * process.n_symbols > max_nodes:
            return
        level = expand_level(process, beliefs, probs)
        beliefs, probs = level.beliefs, level.probs
        if merge or len(probs) <= ALWAYS_MERGE:
            merged = merge_beliefs(beliefs, probs)
            merge = len(merged.probs) < 0.9 * len(probs)
            beliefs, probs = merged.beliefs, merged.probs


def conditional_entropies(process: GHMM, length: int) -> tuple[np.ndarray, int]:
    """H(X_t | X_<t) from `process.initial` for t = 0..length-1: (values (length,), exact_depth).

    Positions >= exact_depth (where a level would exceed MAX_LEVEL_NODES distinct beliefs) repeat
    the last exact value; for a stationary start the sequence is non-increasing, so that is an
    upper bound.
    """
    values = np.fromiter(
        itertools.islice(_conditional_entropy_levels(process, process.initial), length), float
    )
    exact = len(values)
    return np.concatenate([values, np.full(length - exact, values[-1] if exact else 0.0)]), exact


def optimal_loss(process: GHMM, length: int) -> np.ndarray:
    """Exact expected -log P(x_t | x_<t) under the process, t = 0..length-1: (length,) nats.

    Position 0 is the entropy of the initial predictive. Exact (up to float rounding) while the
    distinct beliefs at a depth number at most MAX_LEVEL_NODES (Mess3: positions 0..13); later
    positions repeat the last exact value, with a RuntimeWarning if it had not yet converged (last
    change > 1e-6 nats; Mess3's is 2e-8 at position 13).
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise InvalidInput(f"length must be a non-negative integer; got {length!r}")
    values, exact = conditional_entropies(process, int(length))
    change = abs(values[exact - 1] - values[exact - 2]) if exact >= 2 else 0.0
    if exact < length and change > 1e-6:
        warnings.warn(
            f"{process.name}: optimal_loss is exact for positions < {exact}; later positions "
            f"repeat position {exact - 1} (last change {change:.2g} nats)",
            RuntimeWarning,
            stacklevel=3,
        )
    return values


def entropy_rate(process: GHMM, tol: float = 1e-12, max_depth: int = 200,
                 patience: int = 3) -> float:
    """Entropy rate h (nats/symbol).

    Unifilar presentations: exactly sum_i pi_i H(X | state i). A finite mixed-state chain (the
    recurrent causal states of `statistical_complexity`, for any GHMM): exactly the same sum over
    causal states. Otherwise: H(X_t | X_<t) from the stationary start at the deepest t computed
    (until `patience` successive values differ by < tol, since a plateau can be transient (RRXOR:
    ln 2 twice, then 0.46), or a level exceeds MAX_LEVEL_NODES); this is an upper bound that
    converges to h from above (Mess3: depth 13, within ~1e-8 of h).
    """
    pi = process.stationary if process.stationary is not None else process.initial
    if process.is_unifilar():
        emissions = process.T.sum(axis=2).T  # (S, V) P(x | state)
        return float(pi @ entropy(emissions))
    causal = statistical_complexity(process)
    if causal.finite:
        return float(causal.probs @ entropy(process.predictive(causal.beliefs)))
    previous, flat = np.inf, 0
    for value in itertools.islice(_conditional_entropy_levels(process, pi), max_depth + 1):
        flat = flat + 1 if abs(previous - value) < tol else 0
        if flat >= patience:
            break
        previous = value
    return value


@dataclass
class CausalStates:
    """Outcome of the statistical-complexity computation from the deduplicated MSP.

    finite: the distinct beliefs closed under the belief update within `depth` levels.
    value: C_mu = H(stationary distribution over the recurrent distinct beliefs), nats; None if not
    finite. beliefs (K, S) / probs (K,): the recurrent mixed states (causal states) and their
    stationary probabilities. n_transient: distinct beliefs visited only transiently. note: a
    sentence for people.
    """

    finite: bool
    value: float | None
    beliefs: np.ndarray | None
    probs: np.ndarray | None
    n_transient: int | None
    depth: int
    note: str


def statistical_complexity(
    process: GHMM, depth: int = 64, decimals: int = BELIEF_DECIMALS, max_states: int = 10_000
) -> CausalStates:
    """C_mu from the mixed states reached from the stationary belief, when they are finitely many.

    Breadth-first over distinct beliefs (rounded to `decimals`); if no new belief appears within
    `depth` levels, the mixed-state chain is finite: its recurrent class is the set of causal states
    and C_mu is the entropy of its stationary distribution (Crutchfield 1994; Riechers & Crutchfield
    2018). Otherwise reports that the MSP does not close at that depth (Mess3 never does).
    """
    pi = process.stationary if process.stationary is not None else process.initial
    known = np.round(pi, decimals).reshape(1, -1) + 0.0
    reps = [pi.reshape(1, -1)]
    edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (from, to, prob)
    frontier_idx = np.array([0])
    frontier = pi.reshape(1, -1)
    for level_no in range(depth + 1):
        if len(frontier) == 0:
            break
        if level_no == depth or len(known) > max_states:
            return CausalStates(
                False, None, None, None, None, level_no,
                f"{process.name}: the mixed-state presentation is not finite at depth {level_no}: "
                f"{len(known):,} distinct beliefs so far and {len(frontier):,} new ones at the "
                "last depth; statistical complexity is not available from a finite MSP",
            )
        edge, frontier, frontier_idx = _msp_level(process, known, frontier, frontier_idx, decimals)
        edges.append(edge)
        known = np.concatenate([known, np.round(frontier, decimals) + 0.0])
        reps.append(frontier)
    return _finite_causal_states(process, edges, np.concatenate(reps), level_no)


def _msp_level(
    process: GHMM, known: np.ndarray, frontier: np.ndarray, frontier_idx: np.ndarray, decimals: int
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
    """One breadth-first level of the mixed-state tree, deduplicated against the `known` rounded
    beliefs (K, S): the edges (from, to, prob) out of `frontier` (n, S), and the beliefs not seen
    before (m, S) with their new state indices (m,), numbered after the known ones."""
    joint = process.joint(frontier)  # (n, V, S)
    cond = process.mass(joint)
    parents, symbols = np.nonzero(cond > process.zero_mass)
    children = joint[parents, symbols] / cond[parents, symbols][:, None]
    keys = np.round(children, decimals) + 0.0
    n_known = len(known)
    _, first, inverse = np.unique(
        np.concatenate([known, keys]), axis=0, return_index=True, return_inverse=True
    )
    inverse = inverse.reshape(-1)
    # each unique key to a known state (known rows are distinct and come first) or a new one
    owner = np.full(len(first), -1, dtype=np.int64)
    is_old = first < n_known
    owner[is_old] = first[is_old]
    new_keys = np.flatnonzero(~is_old)
    owner[new_keys] = n_known + np.arange(len(new_keys))
    edge = (frontier_idx[parents], owner[inverse[n_known:]], cond[parents, symbols])
    return edge, children[first[new_keys] - n_known], owner[new_keys]


def _finite_causal_states(
    process: GHMM,
    edges: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    beliefs: np.ndarray,
    level_no: int,
) -> CausalStates:
    """C_mu of a closed MSP: the entropy of the stationary distribution of its mixed-state chain,
    whose recurrent states (K beliefs in `beliefs` (K, S), numbered as in `edges`) are causal."""
    K = len(beliefs)
    M = np.zeros((K, K))
    for src, dst, prob in edges:
        np.add.at(M, (src, dst), prob)
    stationary = _chain_stationary(M)
    recurrent = stationary > 1e-12
    value = float(entropy(stationary[recurrent]))
    return CausalStates(
        True, value, beliefs[recurrent], stationary[recurrent], int((~recurrent).sum()), level_no,
        f"{process.name}: finite mixed-state presentation with {int(recurrent.sum())} causal "
        f"states and {int((~recurrent).sum())} transient mixed states; C_mu = {value:.6f} nats",
    )


def _chain_stationary(M: np.ndarray) -> np.ndarray:
    """Stationary distribution of a row-stochastic M reached from state 0 (Cesaro limit)."""
    K = len(M)
    A = np.vstack([M.T - np.eye(K), np.ones((1, K))])
    rhs = np.zeros(K + 1)
    rhs[-1] = 1.0
    pi, *_ = np.linalg.lstsq(A, rhs, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()
