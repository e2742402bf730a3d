"""Processes: the generalized HMM (the general class, the one home of the state update) and the
classical HMM (its special case). Validation at the boundary, sampling, exact filtering, exact
log-probabilities.

Convention: T[x, i, j] (V symbols, d states, d states). A state is a row vector eta; after token x
it becomes eta' = eta T[x] / (eta T[x] tau), and P(x | eta) = eta T[x] tau, where tau is the right
eigenvector of T = sum_x T[x] with eigenvalue 1 (hmm.validity). For a classical HMM
T[x, i, j] = P(emit x, go to j | in i) >= 0, rows sum to 1 over (x, j), tau = 1, and eta is the
belief (the distribution over the hidden state after the tokens seen so far; Shai et al. 2024,
"Transformers represent belief state geometry in their residual stream", eq. 1). For a GHMM the
entries may be negative and eta is a quasi-probability vector (Riechers, Elliott & Shai 2025,
arXiv 2507.07432): the same update, the same method names, the same numbers when the matrices are
classical.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from hmm.errors import InvalidInput
from hmm.validity import (
    ROW_TOL,
    check_depth,
    check_word_probabilities,
    classical_stationary,
    ghmm_vectors,
)

# A GHMM's conditional probabilities at or below this are zero: cancellation leaves rounding
# residue (1e-17) where a classical HMM gives an exact 0, and dividing by it would be garbage.
ZERO_MASS = 1e-12


class GHMM:
    """A validated generalized hidden Markov model (hmm.validity says what "valid" checks).

    Attributes: T (V, d, d) float64, n_symbols V, n_states d, name, states / symbols (labels),
    right tau (d,) (T tau = tau), stationary pi (d,) (pi T = pi, pi tau = 1; None when not unique
    and `initial` was given), initial (d,) the state at t=0 (`initial` if given, else pi).
    `right` may be given by composites that know it (a mixture's is not unique).
    """

    kind = "ghmm"
    is_classical = False  # non-negative, row-stochastic, tau = 1: hidden states exist
    zero_mass = ZERO_MASS

    def __init__(
        self,
        T: Any,
        name: str = "ghmm",
        initial: Any = None,
        states: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        right: Any = None,
    ) -> None:
        T = _as_tensor(T)
        states = _labels(states, T.shape[1], "states")
        symbols = _labels(symbols, T.shape[0], "symbols")
        _check_finite(T, symbols, states)
        stationary, right, given = ghmm_vectors(T, str(name), initial, right)
        self._set(T, name, states, symbols, stationary, right, given)
        if self._words_need_check():
            check_word_probabilities(self)

    def _set(self, T: np.ndarray, name: str, states: Sequence[str] | None,
             symbols: Sequence[str] | None, stationary: np.ndarray | None, right: np.ndarray,
             initial_given: np.ndarray | None) -> None:
        """Store validated parts and prepare the update (composites call this directly: they know
        their vectors, and a large product's eigen-solve would cost minutes)."""
        self.name = str(name)
        self.states = _labels(states, T.shape[1], "states")
        self.symbols = _labels(symbols, T.shape[0], "symbols")
        self.T, self.right, self.stationary = T, right, stationary
        self._initial_given = initial_given
        self.initial = stationary if initial_given is None else initial_given
        self._prepare()

    def _words_need_check(self) -> bool:
        """Negative word probabilities are possible only with negative entries somewhere."""
        return bool((self.T < 0).any() or (self.initial < 0).any() or (self.right < 0).any())

    def _prepare(self) -> None:
        """Read-only arrays and the matrices the update uses (after T, right, initial are set)."""
        for arr in (self.T, self.right, self.initial):
            arr.setflags(write=False)
        V, d = self.T.shape[:2]
        self._ones = bool(np.array_equal(self.right, np.ones(d)))
        # joint-update matrix: eta (n,d) @ _flat (d, V*d) = eta T[x] for every x, unnormalised
        self._flat = np.ascontiguousarray(self.T.transpose(1, 0, 2).reshape(d, V * d))
        self._emission = np.ascontiguousarray((self.T @ self.right).T)  # (d, V): P(x | e_i)
        self._cache: dict[str, Any] = {}

    @property
    def n_symbols(self) -> int:
        return self.T.shape[0]

    @property
    def n_states(self) -> int:
        return self.T.shape[1]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, states={self.n_states}, "
                f"symbols={self.n_symbols})")

    # ---- the state update (its single home) ----------------------------------------------------
    def joint(self, states: np.ndarray) -> np.ndarray:
        """Unnormalised next state eta T[x] for every symbol x: (..., d) -> (..., V, d).

        For a classical HMM: P(next symbol x, next state j | belief)."""
        states = np.asarray(states, dtype=np.float64)
        # einsum's own loop, not BLAS: threaded BLAS on (n, 3) @ (3, 9) is 10x slower on a busy CPU
        flat = np.einsum("ns,sk->nk", states.reshape(-1, self.n_states), self._flat)
        return flat.reshape(*states.shape[:-1], self.n_symbols, self.n_states)

    def mass(self, vectors: np.ndarray) -> np.ndarray:
        """Probability carried by unnormalised states: v tau, (..., d) -> (...).

        For tau = 1 this is the plain sum (bit-identical to the classical filter)."""
        return vectors.sum(axis=-1) if self._ones else vectors @ self.right

    def predictive(self, states: np.ndarray) -> np.ndarray:
        """Next-symbol distribution P(x | eta) = eta T[x] tau: (..., d) -> (..., V)."""
        if self._ones:
            return self.joint(states).sum(axis=-1)
        return np.asarray(states, dtype=np.float64) @ self._emission

    def refuse_negative(self, mass: np.ndarray, where: str, tokens: np.ndarray | None = None
                        ) -> None:
        """Raise InvalidInput if a conditional probability is negative beyond rounding (a GHMM is
        valid only to its checked word length; hmm.validity). mass (n,); tokens (n, t): the
        prefix of each row, named in the message when given."""
        bad = np.flatnonzero(mass < -self.zero_mass)
        if bad.size:
            i = int(bad[0])
            after = "" if tokens is None else f" after tokens {tokens[i].tolist()}"
            raise InvalidInput(
                f"{where}: {self.name} gives probability {mass[i]:.3g} < 0 to a symbol{after}: "
                "the process is not valid beyond the checked word length "
                f"{check_depth(self.n_symbols)} (docs/processes.md, validity)"
            )

    # ---- sampling ------------------------------------------------------------------------------
    def sample(self, n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Draw n sequences: tokens (n, length) int64, and None for the states.

        Sequential conditionals x_t ~ P(x | eta_t) from the exact state, vectorised over sequences;
        reproducible from `seed`. A GHMM has no hidden states to draw (its states are the exact
        `beliefs(tokens)`), hence None; classical HMMs and composites of them return hidden
        states (HMM.sample).
        """
        n, length = _count(n, "n"), _count(length, "length")
        rng = np.random.default_rng(seed)
        rows = np.arange(n)
        state = np.broadcast_to(self.initial, (n, self.n_states))
        tokens = np.empty((n, length), dtype=np.int64)
        for t in range(length):
            children = self.joint(state)  # (n, V, d)
            probs = self.mass(children)
            self.refuse_negative(probs.min(axis=1), "sample", tokens[:, :t])
            probs = np.where(probs > self.zero_mass, probs, 0.0)
            u = 1.0 - rng.random(n)  # u in (0, 1]: never lands on a zero-probability symbol
            x = np.minimum((_cumulative(probs) < u[:, None]).sum(axis=1), self.n_symbols - 1)
            tokens[:, t] = x
            state = children[rows, x] / probs[rows, x][:, None]
        return tokens, None

    # ---- exact filtering -----------------------------------------------------------------------
    def beliefs(
        self, tokens: Any, on_zero: Literal["raise", "nan"] = "raise"
    ) -> np.ndarray:
        """Exact state after each token: tokens (n, L) -> (n, L, d) float64 (the belief for an HMM).

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
                norm = self.mass(step)
                if self.zero_mass:
                    self.refuse_negative(norm, "beliefs", tokens[:, :t])
                dead = ~(norm > self.zero_mass)  # NaN (already dead) or zero
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
        """States on the attractor by the chaos game: (n_points, d); see hmm.fractal."""
        from hmm.fractal import chaos_game

        return chaos_game(self, n_points, seed=seed)

    def is_unifilar(self) -> bool:
        """False: unifilarity is a property of hidden states, which a GHMM does not have (the
        entropy rate then comes from the mixed states; HMM.is_unifilar is the classical test)."""
        return False

    # ---- probe targets as data -------------------------------------------------------------------
    def probe_targets(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """The exact quantities a probe can read, named, from states (..., d) (from `beliefs` or
        an MSP): {"belief": the state itself}. Mixtures add "component" (the posterior over
        components), products "factors" (the factor states side by side). Each value is (..., k).
        """
        return {"belief": np.asarray(states, dtype=np.float64)}

    def target_groups(self) -> dict[str, dict[str, slice]]:
        """Named column groups of each target, for subspace analyses: {target: {group: slice}}.
        None for a plain process; a mixture's belief splits by component, a product's "factors"
        by factor."""
        return {}

    def to_spec(self) -> dict:
        """The JSON spec (docs/processes.md); floats survive a JSON round trip exactly."""
        from hmm.spec import to_spec

        return to_spec(self)


class HMM(GHMM):
    """A validated edge-emitting hidden Markov model: the classical GHMM.

    T[x, i, j] = P(emit x, go to j | in i): finite, non-negative, each row summing to 1 over
    (x, j); right = 1; stationary (S,) the unique stationary distribution (None when the chain has
    several and `initial` was given). Everything else is GHMM's, so a classical process run as a
    GHMM gives the identical beliefs, losses and mixed states (tests/hmm/test_ghmm.py).
    """

    kind = "hmm"
    is_classical = True
    zero_mass = 0.0  # no cancellation: an impossible symbol has probability exactly 0

    def __init__(
        self,
        T: Any,
        name: str = "hmm",
        initial: Any = None,
        states: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
    ) -> None:
        T = _as_tensor(T)
        states = _labels(states, T.shape[1], "states")
        symbols = _labels(symbols, T.shape[0], "symbols")
        _check_rows(T, symbols, states)
        stationary = classical_stationary(T.sum(axis=0))
        if initial is None and stationary is None:
            raise InvalidInput(
                f"{name}: the state chain sum_x T[x] has more than one stationary distribution "
                "(it is not irreducible); make every state reachable from every other, or give an "
                "explicit 'initial' distribution"
            )
        given = None if initial is None else _check_initial(initial, states)
        self._set(T, name, states, symbols, stationary, np.ones(T.shape[1]), given)

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

    def is_unifilar(self) -> bool:
        """True when each (state, symbol) has at most one successor state."""
        return bool(((self.T > 0).sum(axis=2) <= 1).all())


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


def _check_finite(T: np.ndarray, symbols: list[str], states: list[str]) -> None:
    bad = np.argwhere(~np.isfinite(T))
    if bad.size:
        x, i, j = bad[0]
        raise InvalidInput(
            f"T[{x}][{i}][{j}] (symbol {symbols[x]!r}, from state {states[i]!r} to {states[j]!r}) "
            f"is {T[x, i, j]}; every entry must be a finite number"
        )


def _check_rows(T: np.ndarray, symbols: list[str], states: list[str]) -> None:
    _check_finite(T, symbols, states)
    bad = np.argwhere(T < 0)
    if bad.size:
        x, i, j = bad[0]
        raise InvalidInput(
            f"T[{x}][{i}][{j}] (symbol {symbols[x]!r}, from state {states[i]!r} to {states[j]!r}) "
            "= "
            f"{T[x, i, j]:g} is negative; probabilities must be >= 0 (a spec of kind 'ghmm' "
            "allows negative entries)"
        )
    sums = T.sum(axis=(0, 2))
    for i in np.flatnonzero(np.abs(sums - 1.0) > ROW_TOL):
        per_symbol = ", ".join(f"T[{x}] {T[x, i].sum():.6g}" for x in range(T.shape[0]))
        raise InvalidInput(
            f"row {i} (state {states[i]!r}) sums to {sums[i]:.10g} over all symbols and targets "
            f"({per_symbol}); each row must sum to 1 (tolerance {ROW_TOL:g}): P(emit x, go to j | "
            f"in {states[i]!r}) summed over x and j"
        )


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
