"""The mixed-state presentation (MSP) as flat arrays, built level by level.

The MSP is the tree of beliefs reached from the initial belief by every positive-probability token
sequence (Shai et al. 2024, section 2; Crutchfield's mixed states). Nodes are stored breadth first:
node 0 is the root, then every depth-1 node, and so on; within a depth, sequences are in
lexicographic order. No per-node Python objects: one array per field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hmm.errors import InvalidInput

if TYPE_CHECKING:
    from hmm.process import GHMM

MAX_ENUMERATE = 20_000_000
# The one "every input can be enumerated" limit for studies: exact evaluation, probes and the
# Bayes-optimal references enumerate every sequence of a length when V**length is at most this.
ENUMERABLE_SEQUENCES = 200_000
# The one rounding at which two beliefs are the same mixed state (dedup, level merges of the exact
# losses, causal states, distinct-belief counts): far above float error (~1e-15 after many
# updates), far below any belief difference a study reads; a merge moves losses by < 1e-9.
BELIEF_DECIMALS = 9


def enumerable(process: GHMM, length: int) -> bool:
    """True when every sequence of `length` tokens can be enumerated (V**length <= the limit)."""
    return process.n_symbols**length <= ENUMERABLE_SEQUENCES


class Level(NamedTuple):
    """One expansion step: each surviving child's parent row, symbol, belief and probability."""

    parents: np.ndarray  # (m,) int64 rows of the parent level
    symbols: np.ndarray  # (m,) int64
    beliefs: np.ndarray  # (m, S)
    probs: np.ndarray  # (m,)


def expand_level(process: GHMM, beliefs: np.ndarray, probs: np.ndarray) -> Level:
    """Children of every node by every symbol, dropping zero-probability branches (for a GHMM:
    conditional probabilities <= process.zero_mass, the cancellation residue).

    beliefs (n, S), probs (n,) -> Level with m <= n V children, parent-major / symbol-minor order.
    """
    joint = process.joint(beliefs)  # (n, V, S)
    cond = process.mass(joint)  # (n, V) P(x | belief)
    if process.zero_mass:
        process.refuse_negative(cond.min(axis=1), "mixed-state tree")
    keep = cond > process.zero_mass
    if keep.all():  # no pruning: reshape instead of gathering (Mess3)
        n, V = cond.shape
        parents = np.repeat(np.arange(n), V)
        symbols = np.tile(np.arange(V), n)
        child = joint.reshape(n * V, -1)
        child /= cond.reshape(-1, 1)
        return Level(parents, symbols, child, (probs[:, None] * cond).reshape(-1))
    parents, symbols = np.nonzero(keep)
    child = joint[parents, symbols]
    child /= cond[parents, symbols][:, None]
    return Level(parents, symbols, child, probs[parents] * cond[parents, symbols])


class Unique(NamedTuple):
    beliefs: np.ndarray  # (K, S) one representative (the first) of each distinct belief
    probs: np.ndarray  # (K,) summed probability
    inverse: np.ndarray  # (N,) index into the K distinct beliefs


def merge_beliefs(
    beliefs: np.ndarray, probs: np.ndarray, decimals: int = BELIEF_DECIMALS
) -> Unique:
    """Merge beliefs equal after rounding to `decimals`: (N, S), (N,) -> Unique with K <= N rows."""
    if len(beliefs) == 0:
        return Unique(beliefs, probs, np.zeros(0, dtype=np.int64))
    keys = np.round(beliefs, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    summed = np.bincount(inverse, weights=probs, minlength=len(first))
    return Unique(beliefs[first], summed, inverse)


@dataclass
class MixedStatePresentation:
    """The MSP to `depth`, N nodes breadth first.

    beliefs (N, S) float64, probs (N,) prefix probabilities (each depth sums to 1),
    depths (N,) int64, parents (N,) int64 (-1 for the root), symbols (N,) int64 (the token into
    each node; -1 for the root), offsets (depth + 2,) so depth d is rows offsets[d]:offsets[d+1].
    `sequences` (N, depth) int64 padded with -1 is built on first access (N * depth * 8 bytes).
    """

    beliefs: np.ndarray
    probs: np.ndarray
    depths: np.ndarray
    parents: np.ndarray
    symbols: np.ndarray
    offsets: np.ndarray
    depth: int
    _sequences: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_nodes(self) -> int:
        return len(self.probs)

    @property
    def sequences(self) -> np.ndarray:
        if self._sequences is None:
            seq = np.full((self.n_nodes, self.depth), -1, dtype=np.int64)
            for d in range(1, self.depth + 1):
                rows = slice(self.offsets[d], self.offsets[d + 1])
                seq[rows, : d - 1] = seq[self.parents[rows], : d - 1]
                seq[rows, d - 1] = self.symbols[rows]
            self._sequences = seq
        return self._sequences

    def level(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nodes at depth d: sequences (n_d, d) int64, beliefs (n_d, S), probs (n_d,)."""
        if not 0 <= d <= self.depth:
            raise InvalidInput(f"depth {d} is outside this MSP (0..{self.depth})")
        rows = slice(self.offsets[d], self.offsets[d + 1])
        return self.sequences[rows, :d], self.beliefs[rows], self.probs[rows]

    def unique(self, decimals: int = BELIEF_DECIMALS, depth: int | None = None) -> Unique:
        """Distinct beliefs (rounded to `decimals`) with summed probabilities.

        Over all nodes by default (probabilities then sum to depth + 1), or at one `depth` (sum 1).
        """
        if depth is None:
            return merge_beliefs(self.beliefs, self.probs, decimals)
        _, beliefs, probs = self.level(depth)
        return merge_beliefs(beliefs, probs, decimals)


def build_msp(process: GHMM, depth: int) -> MixedStatePresentation:
    """All beliefs reached by positive-probability sequences of length <= depth, as arrays."""
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise InvalidInput(f"depth must be a non-negative integer; got {depth!r}")
    S = process.n_states
    beliefs = [process.initial.reshape(1, S).copy()]
    probs = [np.ones(1)]
    parents = [np.full(1, -1, dtype=np.int64)]
    symbols = [np.full(1, -1, dtype=np.int64)]
    sizes = [1]
    offset = 0
    for _ in range(depth):
        level = expand_level(process, beliefs[-1], probs[-1])
        parents.append(level.parents + offset)
        offset += sizes[-1]
        symbols.append(level.symbols)
        beliefs.append(level.beliefs)
        probs.append(level.probs)
        sizes.append(len(level.probs))
        del level  # keep no second reference to the level's arrays, so _concat can free them
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    depths = np.repeat(np.arange(depth + 1, dtype=np.int64), sizes)
    return MixedStatePresentation(
        beliefs=_concat(beliefs),
        probs=_concat(probs),
        depths=depths,
        parents=_concat(parents),
        symbols=_concat(symbols),
        offsets=offsets,
        depth=int(depth),
    )


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate and free the parts as we go, keeping peak memory near one copy."""
    total = sum(len(p) for p in parts)
    out = np.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
    start = 0
    while parts:
        part = parts.pop(0)
        out[start : start + len(part)] = part
        start += len(part)
        del part
    return out


def enumerate_sequences(process: GHMM, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Every positive-probability sequence of `length` tokens with its exact probability.

    -> tokens (N, length) int64 in lexicographic order, probs (N,) summing to 1.
    """
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
        raise InvalidInput(f"length must be a non-negative integer; got {length!r}")
    tokens = np.zeros((1, 0), dtype=np.int64)
    beliefs = process.initial.reshape(1, -1).copy()
    probs = np.ones(1)
    for t in range(length):
        if len(probs) * process.n_symbols > MAX_ENUMERATE:
            raise InvalidInput(
                f"enumerating {process.name} to length {length} needs more than {MAX_ENUMERATE:,} "
                f"sequences (already {len(probs):,} at length {t}); use a shorter length or sample"
            )
        level = expand_level(process, beliefs, probs)
        tokens = np.concatenate([tokens[level.parents], level.symbols[:, None]], axis=1)
        beliefs, probs = level.beliefs, level.probs
    return tokens, probs
