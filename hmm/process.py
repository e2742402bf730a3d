"""The HMM: validation at the boundary, sampling, exact Bayesian filtering, exact log-probabilities.

Convention: T[x, i, j] = P(emit x, go to j | in i), shape (V symbols, S states, S states). A belief
is the distribution over the hidden state *after* the tokens seen so far, so the belief after token
x from belief b is  b' = b T[x] / (b T[x] 1)  (Shai et al. 2024, "Transformers represent belief
state geometry in their residual stream", eq. 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from hmm.errors import InvalidInput

ROW_TOL = 1e-9


class HMM:
    """A validated edge-emitting hidden Markov model.

    Attributes: T (V, S, S) float64, n_symbols V, n_states S, name, states / symbols (labels),
    stationary (S,) (None when the chain has several stationary distributions and `initial` was
    given), initial (S,) the distribution at t=0 (`initial` if given, else `stationary`).
    """

    def __init__(
        self,
        T: Any,
        name: str = "hmm",
        initial: Any = None,
        states: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
    ) -> None:
        T = _as_tensor(T)
        n_symbols, n_states = T.shape[0], T.shape[1]
        self.name = str(name)
        self.states = _labels(states, n_states, "states")
        self.symbols = _labels(symbols, n_symbols, "symbols")
        _check_rows(T, self.symbols, self.states)
        self.T = T
        self.T.setflags(write=False)
        self.stationary = _stationary(T.sum(axis=0))
        if initial is None:
            if self.stationary is None:
                raise InvalidInput(
                    f"{self.name}: the state chain sum_x T[x] has more than one stationary "
                    "distribution "
                    "(it is not irreducible); make every state reachable from every other, or give "
                    "an "
                    "explicit 'initial' distribution"
                )
            self._initial_given = None
            self.initial = self.stationary
        else:
            self._initial_given = _check_initial(initial, self.states)
            self.initial = self._initial_given
        self._cache: dict[str, Any] = {}
        # joint-update matrix: b (n,S) @ _flat (S, V*S) = P(x, next state | b), unnormalised over x
        self._flat = np.ascontiguousarray(
            T.transpose(1, 0, 2).reshape(n_states, n_symbols * n_states)
        )

    @property
    def n_symbols(self) -> int:
        return self.T.shape[0]

    @property
    def n_states(self) -> int:
        return self.T.shape[1]

    def __repr__(self) -> str:
        return f"HMM(name={self.name!r}, states={self.n_states}, symbols={self.n_symbols})"

    # ---- the belief update (its single home) -------------------------------------------------
    def joint(self, beliefs: np.ndarray) -> np.ndarray:
        """P(next symbol x, next state j | belief): (..., S) -> (..., V, S)."""
        beliefs = np.asarray(beliefs, dtype=np.float64)
        # einsum's own loop, not BLAS: threaded BLAS on (n, 3) @ (3, 9) is 10x slower on a busy CPU
        flat = np.einsum("ns,sk->nk", beliefs.reshape(-1, self.n_states), self._flat)
        return flat.reshape(*beliefs.shape[:-1], self.n_symbols, self.n_states)

    def predictive(self, beliefs: np.ndarray) -> np.ndarray:
        """Next-symbol distribution given belief(s): (..., S) -> (..., V)."""
        return self.joint(beliefs).sum(axis=-1)

    # ---- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Draw n sequences: tokens (n, length) int64 and hidden states (n, length + 1) int64.

        states[:, 0] ~ initial; (tokens[:, t], states[:, t+1]) ~ T[:, states[:, t], :].
        Vectorised over sequences; reproducible from `seed`.
        """
        n, length = _count(n, "n"), _count(length, "length")
        rng = np.random.default_rng(seed)
        V, S = self.n_symbols, self.n_states
        cum = _cumulative(self.T.transpose(1, 0, 2).reshape(S, V * S))
        cum_init = _cumulative(self.initial[None])[0]
        states = np.empty((n, length + 1), dtype=np.int64)
        tokens = np.empty((n, length), dtype=np.int64)
        # u in (0, 1]: the first index with cum >= u always has positive probability
        states[:, 0] = np.minimum(np.searchsorted(cum_init, 1.0 - rng.random(n)), S - 1)
        for t in range(length):
            u = 1.0 - rng.random(n)
            idx = np.minimum((cum[states[:, t]] < u[:, None]).sum(axis=1), V * S - 1)
            tokens[:, t], states[:, t + 1] = np.divmod(idx, S)
        return tokens, states

    # ---- exact filtering -----------------------------------------------------------------------
    def beliefs(
        self, tokens: Any, on_zero: Literal["raise", "nan"] = "raise"
    ) -> np.ndarray:
        """Exact belief after each token: tokens (n, L) -> (n, L, S) float64.

        Normalised at every step, so 10,000-token sequences do not underflow. A sequence of
        probability zero raises InvalidInput naming it, or (on_zero="nan") gets NaN rows from the
        first impossible position on.
        """
        return self._filter(tokens, on_zero, keep_beliefs=True)[0]

    def log_prob(self, tokens: Any) -> np.ndarray:
        """Exact natural-log probability of each sequence (from `initial`): (n, L) -> (n,).

        Sum of the per-step log normalisers; -inf for a sequence of probability zero.
        """
        return self._filter(tokens, "nan", keep_beliefs=False)[1]

    def _filter(
        self, tokens: Any, on_zero: str, keep_beliefs: bool
    ) -> tuple[np.ndarray | None, np.ndarray]:
        if on_zero not in ("raise", "nan"):
            raise InvalidInput(f"on_zero must be 'raise' or 'nan', not {on_zero!r}")
        tokens = self.check_tokens(tokens)
        n, length = tokens.shape
        rows = np.arange(n)
        belief = np.broadcast_to(self.initial, (n, self.n_states))
        log_p = np.zeros(n)
        out = np.empty((n, length, self.n_states)) if keep_beliefs else None
        with np.errstate(divide="ignore", invalid="ignore"):
            for t in range(length):
                step = self.joint(belief)[rows, tokens[:, t]]
                norm = step.sum(axis=1)
                dead = ~(norm > 0)  # NaN (already dead) or exactly zero
                if dead.any():
                    if on_zero == "raise":
                        i = int(np.flatnonzero(dead)[0])
                        raise InvalidInput(
                            f"sequence {i} has probability zero at position {t} (token "
                            f"{tokens[i, t]}): no hidden-state path emits tokens[{i}, :{t + 1}] "
                            f"under {self.name}; pass on_zero='nan' to get NaN rows instead, or "
                            "drop the sequence"
                        )
                    norm = np.where(dead, np.nan, norm)
                    log_p += np.log(np.where(dead, 0.0, norm))
                else:
                    log_p += np.log(norm)
                belief = step / norm[:, None]
                if keep_beliefs:
                    out[:, t] = belief
        return out, log_p

    def check_tokens(self, tokens: Any) -> np.ndarray:
        """Validate a token array: (n, L) integers in [0, V) -> int64 array."""
        arr = np.asarray(tokens)
        if arr.ndim != 2:
            raise InvalidInput(f"tokens must have shape (n, L); got shape {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.equal(np.mod(arr, 1), 0)):
                raise InvalidInput(f"tokens must be integers; got dtype {arr.dtype}")
        arr = arr.astype(np.int64, copy=False)
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_symbols):
            bad = np.argwhere((arr < 0) | (arr >= self.n_symbols))[0]
            raise InvalidInput(
                f"token {arr[tuple(bad)]} at sequence {bad[0]}, position {bad[1]} is not a symbol "
                "of "
                f"{self.name}; symbols are 0..{self.n_symbols - 1}"
            )
        return arr

    # ---- exact sequence-level quantities (homes in msp.py / information.py / fractal.py) --------
    def enumerate(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Every positive-probability sequence of `length` tokens and its probability.

        -> tokens (N, length) int64, probs (N,).
        """
        from hmm.msp import enumerate_sequences

        return enumerate_sequences(self, length)

    def msp(self, depth: int):  # -> MixedStatePresentation
        """The mixed-state presentation to `depth` as arrays; see hmm.msp.MixedStatePresentation."""
        from hmm.msp import build_msp

        return build_msp(self, depth)

    def optimal_loss(self, length: int) -> np.ndarray:
        """Bayes-optimal next-token cross-entropy (nats) at positions 0..length-1: (length,)."""
        from hmm.information import optimal_loss

        return optimal_loss(self, length)

    def entropy_rate(self) -> float:
        """Entropy rate h (nats/symbol); see hmm.information.entropy_rate."""
        from hmm.information import entropy_rate

        if "entropy_rate" not in self._cache:  # T is read-only, so the value never goes stale
            self._cache["entropy_rate"] = entropy_rate(self)
        return self._cache["entropy_rate"]

    def statistical_complexity(self, depth: int = 64):  # -> CausalStates
        """Statistical complexity from the deduplicated MSP; see hmm.information."""
        from hmm.information import statistical_complexity

        return statistical_complexity(self, depth=depth)

    def chaos_game(self, n_points: int, seed: int = 0) -> np.ndarray:
        """Beliefs on the attractor by the chaos game: (n_points, S); see hmm.fractal."""
        from hmm.fractal import chaos_game

        return chaos_game(self, n_points, seed=seed)

    def is_unifilar(self) -> bool:
        """True when each (state, symbol) has at most one successor state."""
        return bool(((self.T > 0).sum(axis=2) <= 1).all())

    def to_spec(self) -> dict:
        """The JSON spec (docs/processes.md); floats survive a JSON round trip exactly."""
        from hmm.spec import to_spec

        return to_spec(self)


# ---- validation helpers (the one place input tensors are checked) ------------------------------
def _as_tensor(T: Any) -> np.ndarray:
    try:
        raw = np.asarray(T) if isinstance(T, np.ndarray | list | tuple) else None
        arr = np.array(T, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"T must be a numeric array of shape (symbols, states, states) ({exc})"
        ) from None
    if raw is not None and raw.dtype.kind not in "iuf":  # bools would pass as 1.0 / 0.0
        raise InvalidInput(f"T must hold numbers (probabilities); got dtype {raw.dtype}")
    if arr.ndim != 3 or arr.shape[1] != arr.shape[2] or 0 in arr.shape:
        raise InvalidInput(
            f"T must have shape (symbols V, states S, states S) with V, S >= 1; got {arr.shape}"
        )
    return arr


def _labels(labels: Sequence[str] | None, n: int, what: str) -> list[str]:
    if labels is None:
        return [str(k) for k in range(n)]
    labels = [str(x) for x in labels]
    if len(labels) != n:
        raise InvalidInput(f"{len(labels)} {what} names given but T has {n} {what}")
    if len(set(labels)) != n:
        raise InvalidInput(f"{what} names must be distinct; got {labels}")
    return labels


def _check_rows(T: np.ndarray, symbols: list[str], states: list[str]) -> None:
    bad = np.argwhere(~np.isfinite(T))
    if bad.size:
        x, i, j = bad[0]
        raise InvalidInput(
            f"T[{x}][{i}][{j}] (symbol {symbols[x]!r}, from state {states[i]!r} to {states[j]!r}) "
            "is "
            f"{T[x, i, j]}; every entry must be a finite probability"
        )
    bad = np.argwhere(T < 0)
    if bad.size:
        x, i, j = bad[0]
        raise InvalidInput(
            f"T[{x}][{i}][{j}] (symbol {symbols[x]!r}, from state {states[i]!r} to {states[j]!r}) "
            "= "
            f"{T[x, i, j]:g} is negative; probabilities must be >= 0"
        )
    sums = T.sum(axis=(0, 2))
    for i in np.flatnonzero(np.abs(sums - 1.0) > ROW_TOL):
        per_symbol = ", ".join(f"T[{x}] {T[x, i].sum():.6g}" for x in range(T.shape[0]))
        raise InvalidInput(
            f"row {i} (state {states[i]!r}) sums to {sums[i]:.10g} over all symbols and targets "
            f"({per_symbol}); each row must sum to 1 (tolerance {ROW_TOL:g}): P(emit x, go to j | "
            f"in {states[i]!r}) summed over x and j"
        )


def _stationary(A: np.ndarray) -> np.ndarray | None:
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


def _check_initial(initial: Any, states: list[str]) -> np.ndarray:
    try:
        arr = np.array(initial, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInput(f"initial must be a list of {len(states)} probabilities") from None
    if arr.shape != (len(states),):
        raise InvalidInput(
            f"initial must have one probability per state ({len(states)}); got shape {arr.shape}"
        )
    if not np.isfinite(arr).all() or (arr < 0).any():
        k = int(np.flatnonzero(~np.isfinite(arr) | (arr < 0))[0])
        raise InvalidInput(f"initial[{k}] (state {states[k]!r}) = {arr[k]} is not a probability")
    if abs(arr.sum() - 1.0) > ROW_TOL:
        raise InvalidInput(f"initial sums to {arr.sum():.10g}; it must sum to 1")
    return arr


def _cumulative(probs: np.ndarray) -> np.ndarray:
    """Row-wise CDF (n, K) -> (n, K), exactly 1.0 from each row's last positive entry on.

    So inverse-CDF sampling with u in (0, 1] never lands on a zero-probability entry by rounding.
    """
    cum = np.cumsum(probs, axis=1) / probs.sum(axis=1, keepdims=True)
    last_positive = probs.shape[1] - 1 - np.argmax(probs[:, ::-1] > 0, axis=1)
    cum[np.arange(probs.shape[1]) >= last_positive[:, None]] = 1.0
    return cum


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer; got {value!r}")
    return int(value)
