"""Processes built from processes: non-ergodic mixtures and independent products.

Mixture (Riechers, Bigelow, Alt & Shai 2025, arXiv 2505.18373): a sequence comes from component k
with prior probability w_k. As a GHMM it is block diagonal: T[x] = diag(T_k[x]), tau = (tau_k),
initial = (w_k eta_k), so its state after w is (P(k | w) eta_k(w))_k, a belief over (component,
state), and the component posterior P(k | w) = eta[block k] . tau_k is its own probe target.
Components with fewer symbols never emit the higher ones (symbol x means x in every component).
The exact optimal loss by position is the in-context-learning curve: it starts at the mixture's
predictive entropy and falls towards sum_k w_k h_k as the posterior concentrates.

Product (Shai et al. 2026, arXiv 2602.02385, "factored" processes): independent factors emit one
symbol each per step; the token is the tuple (x_1, ..., x_K), numbered in C order (factor 1 most
significant: token = ((x_1 V_2 + x_2) V_3 + x_3) ...; `factor_tokens` / `joint_tokens`), states
likewise. T[token] = T_1[x_1] kron ... kron T_K[x_K], so the joint state is the outer product of
the factor states, and the optimal loss and entropy rate are the factors' sums, exact at every
position without enumerating joint sequences. The joint tensor is built (and refused before
allocation when it cannot fit in memory: hmm.memory).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from hmm.errors import InvalidInput
from hmm.memory import check_fits
from hmm.process import GHMM, ZERO_MASS

WEIGHT_TOL = 1e-9


class Mixture(GHMM):
    """A non-ergodic mixture of `components` with prior `weights` (module doc).

    Extra attributes: components (list of GHMM), weights (K,), blocks (list of slices of the
    state, one per component).
    """

    kind = "mixture"

    def __init__(self, components: Sequence[GHMM], weights: Any, name: str | None = None) -> None:
        components = list(components)
        if not components:
            raise InvalidInput("a mixture needs at least one component")
        self.components, self.weights = components, _weights(weights, len(components))
        V = max(c.n_symbols for c in components)
        sizes = np.array([c.n_states for c in components])
        edges = np.concatenate([[0], np.cumsum(sizes)])
        self.blocks = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        T = np.zeros((V, edges[-1], edges[-1]))
        for c, block in zip(components, self.blocks, strict=True):
            T[: c.n_symbols, block, block] = c.T
        widest = max(components, key=lambda c: c.n_symbols)
        self.zero_mass = 0.0 if self.is_classical else ZERO_MASS
        stationary = None
        if all(c.stationary is not None for c in components):
            stationary = np.concatenate([w * c.stationary for w, c in zip(self.weights,
                                                                          components, strict=True)])
        initial = np.concatenate([w * c.initial for w, c in zip(self.weights, components,
                                                                strict=True)])
        default = "mixture(" + ", ".join(f"{w:g} {c.name}" for w, c in
                                         zip(self.weights, components, strict=True)) + ")"
        self._set(T, name or default, [f"{k}:{s}" for k, c in enumerate(components)
                                       for s in c.states], widest.symbols, stationary,
                  np.concatenate([c.right for c in components]), initial)

    @property
    def is_classical(self) -> bool:
        return all(c.is_classical for c in self.components)

    def sample(self, n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Each sequence from one component drawn with the prior weights: tokens (n, length) and
        states (n, length + 1) indexing (component, state) as the blocks do, or None unless every
        component has hidden states. Reproducible from `seed`."""
        rng = np.random.default_rng(seed)
        seeds = rng.integers(0, 2**63 - 1, size=len(self.components))
        which = rng.choice(len(self.components), size=int(n), p=self.weights)
        tokens = np.empty((int(n), int(length)), dtype=np.int64)
        states = np.empty((int(n), int(length) + 1), dtype=np.int64)
        hidden = True
        for k, (c, block) in enumerate(zip(self.components, self.blocks, strict=True)):
            rows = np.flatnonzero(which == k)
            part, part_states = c.sample(len(rows), length, seed=int(seeds[k]))
            tokens[rows] = part
            hidden = hidden and part_states is not None
            if hidden:
                states[rows] = part_states + block.start
        return tokens, states if hidden else None

    def component_posterior(self, states: np.ndarray) -> np.ndarray:
        """P(component | tokens so far) from mixture states: (..., d) -> (..., K)."""
        states = np.asarray(states, dtype=np.float64)
        return np.stack([c.mass(states[..., b]) for c, b in zip(self.components, self.blocks,
                                                                 strict=True)], axis=-1)

    def entropy_rate(self) -> float:
        """sum_k w_k h_k: the limit of H(X_t | X_<t) once the component is known."""
        return float(sum(w * c.entropy_rate() for w, c in zip(self.weights, self.components,
                                                               strict=True)))

    def probe_targets(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """{"belief": the state over (component, state) (..., d), "component": (..., K)}."""
        return {**super().probe_targets(states), "component": self.component_posterior(states)}

    def target_groups(self) -> dict[str, dict[str, slice]]:
        """The belief's columns by component."""
        return {"belief": {f"component {k}: {c.name}": b for k, (c, b) in
                           enumerate(zip(self.components, self.blocks, strict=True))}}

    def _words_need_check(self) -> bool:
        return False  # convex combinations of the components' (each checked) probabilities


class Product(GHMM):
    """Independent `factors` emitting together, token = tuple of factor symbols (module doc).

    Extra attributes: factors (list of GHMM), symbol_shape (V_1, ..., V_K), state_shape
    (d_1, ..., d_K).
    """

    kind = "product"

    def __init__(self, factors: Sequence[GHMM], name: str | None = None) -> None:
        factors = list(factors)
        if not factors:
            raise InvalidInput("a product needs at least one factor")
        self.factors = factors
        self.symbol_shape = tuple(f.n_symbols for f in factors)
        self.state_shape = tuple(f.n_states for f in factors)
        V, d = int(np.prod(self.symbol_shape)), int(np.prod(self.state_shape))
        check_fits(
            3 * V * d * d * 8,  # the joint tensor, its update matrix and one build intermediate
            f"a product of {len(factors)} factors ({V:,} joint symbols, {d:,} joint states; its "
            "tensor has symbols x states^2 entries)",
            "fewer or smaller factors (or probe the factors one by one)",
        )
        T = factors[0].T
        for f in factors[1:]:
            T = np.einsum("xij,ykl->xyikjl", T, f.T).reshape(
                T.shape[0] * f.n_symbols, T.shape[1] * f.n_states, T.shape[2] * f.n_states)
        self.zero_mass = 0.0 if self.is_classical else ZERO_MASS
        stationary = None
        if all(f.stationary is not None for f in factors):
            stationary = _kron([f.stationary for f in factors])
        initial = _kron([f.initial for f in factors])
        self._set(np.ascontiguousarray(T), name or "product(" + " x ".join(f.name for f in factors)
                  + ")", _tuples([f.states for f in factors]), _tuples([f.symbols for f in
                                                                        factors]),
                  stationary, _kron([f.right for f in factors]), initial)

    @property
    def is_classical(self) -> bool:
        return all(f.is_classical for f in self.factors)

    def factor_tokens(self, tokens: np.ndarray) -> tuple[np.ndarray, ...]:
        """Joint tokens (...) -> one array of factor symbols per factor (C order, module doc)."""
        return np.unravel_index(np.asarray(tokens, dtype=np.int64), self.symbol_shape)

    def joint_tokens(self, factor_tokens: Sequence[np.ndarray]) -> np.ndarray:
        """One array of symbols per factor -> joint tokens int64 (inverse of factor_tokens)."""
        return np.ravel_multi_index(tuple(factor_tokens), self.symbol_shape).astype(np.int64)

    def factor_states(self, states: np.ndarray) -> list[np.ndarray]:
        """Joint states (..., d) -> each factor's state (..., d_k): the other factors' axes
        contracted with their tau (their marginal, for beliefs)."""
        states = np.asarray(states, dtype=np.float64)
        lead = states.shape[:-1]
        grid = states.reshape(*lead, *self.state_shape)
        out = []
        for k in range(len(self.factors)):
            part = grid
            for j in reversed(range(len(self.factors))):  # last axis first keeps indices valid
                if j != k:
                    part = np.tensordot(part, self.factors[j].right, axes=([len(lead) + j], [0]))
            out.append(part)
        return out

    def sample(self, n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
        """Each factor sampled independently (seeds drawn from `seed`): joint tokens (n, length),
        joint hidden states (n, length + 1) in C order, or None unless every factor has them."""
        seeds = np.random.default_rng(seed).integers(0, 2**63 - 1, size=len(self.factors))
        parts = [f.sample(n, length, seed=int(s)) for f, s in zip(self.factors, seeds,
                                                                  strict=True)]
        tokens = self.joint_tokens([p[0] for p in parts])
        if any(p[1] is None for p in parts):
            return tokens, None
        return tokens, np.ravel_multi_index(tuple(p[1] for p in parts),
                                            self.state_shape).astype(np.int64)

    def optimal_loss(self, length: int) -> np.ndarray:
        """Sum of the factors' exact optimal losses: (length,) nats."""
        return np.sum([f.optimal_loss(length) for f in self.factors], axis=0)

    def entropy_rate(self) -> float:
        """Sum of the factors' entropy rates."""
        return float(sum(f.entropy_rate() for f in self.factors))

    def probe_targets(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """{"belief": the joint state (..., prod d_k), "factors": the factor states side by side
        (..., sum d_k)}."""
        return {**super().probe_targets(states),
                "factors": np.concatenate(self.factor_states(states), axis=-1)}

    def target_groups(self) -> dict[str, dict[str, slice]]:
        """The "factors" target's columns by factor."""
        edges = np.concatenate([[0], np.cumsum(self.state_shape)])
        return {"factors": {f"factor {k}: {f.name}": slice(int(edges[k]), int(edges[k + 1]))
                            for k, f in enumerate(self.factors)}}

    def _words_need_check(self) -> bool:
        return False  # products of the factors' (each checked) probabilities


def _weights(weights: Any, count: int) -> np.ndarray:
    try:
        arr = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.full(0, np.nan)
    if arr.shape != (count,) or not np.isfinite(arr).all() or (arr < 0).any():
        raise InvalidInput(
            f"mixture weights {weights!r} must be {count} non-negative numbers, one per component"
        )
    if abs(arr.sum() - 1.0) > WEIGHT_TOL:
        raise InvalidInput(
            f"mixture weights {arr.tolist()} sum to {arr.sum():.10g}; they must sum to 1 "
            f"(tolerance {WEIGHT_TOL:g})"
        )
    return arr


def _kron(vectors: Sequence[np.ndarray]) -> np.ndarray:
    out = np.ones(1)
    for v in vectors:
        out = np.kron(out, v)
    return out


def _tuples(labels: Sequence[Sequence[str]]) -> list[str]:
    return ["(" + ",".join(parts) + ")" for parts in itertools.product(*labels)]
