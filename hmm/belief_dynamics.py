"""The belief update as a dynamical system: its Jacobian on the simplex, one-step spectral radius
and largest Lyapunov exponent along stationary sequences.

The Bayesian filter (the chaos game of the mixed-state presentation; Shai et al. 2024, eq. 1)
maps a belief b (column vector, S states) and a symbol x to

    f_x(b) = A^T b / s,   A = T[x],  s = 1^T A^T b = P(x | b).

Its Jacobian is D_x(b) = (I - f_x(b) 1^T) A^T / s (S x S). Beliefs live on the simplex, so only
perturbations v with 1^T v = 0 (the tangent plane) matter, and f_x maps that plane into itself;
with Q (S x (S-1)) an orthonormal basis of the plane, the map on the simplex is the
(S-1) x (S-1) matrix M = Q^T D Q. (D kills the direction b itself: f_x is scale invariant.)

* one-step spectral radius: max |eigenvalue| of M at a (belief, symbol) pair. It can exceed 1 at
  some beliefs (a single update expands some perturbations) although the filter forgets on
  average.
* largest Lyapunov exponent: lim (1/n) log ||M_n ... M_1 v|| along a sequence sampled from the
  process (stationary hidden chain), evaluated at the exact beliefs; computed by renormalising
  one tangent vector every step (the one-vector case of the QR method; Benettin et al. 1980).
  Negative means the filter contracts (forgets its starting belief) at that rate in nats/token.
* finite-time exponent over a window of L symbols from the initial belief:
  (1/L) log sigma_max(M_L ... M_1), the most a perturbation of the starting belief can grow (or
  least it shrinks) per symbol within the window a network is trained on. It differs from the
  long-run exponent (early steps from the stationary belief contract differently), so a network
  is compared with the filter over the same window.

A GHMM (hmm.process) has the same update with the normaliser s = tau^T A^T eta: its states live
on the plane tau^T eta = 1, perturbations on {v : tau^T v = 0}, and D = (I - f tau^T) A^T / s;
every function below takes the process's tau, so the simplex is the case tau = 1.

`largest_lyapunov` and `finite_time_lyapunov` are the one home of these estimates, and
`quantile_summary` of the quantiles every per-step or per-unit distribution is reported with:
probes use them for the recurrent networks' step Jacobians and the units too. Pure numpy;
imports only hmm.
"""

from __future__ import annotations

import numpy as np

from hmm.errors import InvalidInput
from hmm.process import GHMM, HMM


def tangent_basis(n_states: int, right: np.ndarray | None = None) -> np.ndarray:
    """Orthonormal basis of the plane {v : right . v = 0}: (S, S-1), the same for every call.

    right None or all ones: the simplex's plane {sum v = 0} (Helmert contrasts); otherwise a GHMM's
    (the SVD complement of tau)."""
    if n_states < 2:
        raise InvalidInput(f"a simplex tangent plane needs >= 2 states, got {n_states}")
    if right is not None and not np.array_equal(right, np.ones(n_states)):
        _, _, vt = np.linalg.svd(np.asarray(right, dtype=np.float64)[None])
        return vt[1:].T
    # Helmert contrasts: column k = (1, ..., 1, -k, 0, ...) / norm, orthonormal and sum zero
    basis = np.zeros((n_states, n_states - 1))
    for k in range(1, n_states):
        basis[:k, k - 1] = 1.0
        basis[k, k - 1] = -float(k)
        basis[:, k - 1] /= np.sqrt(k * (k + 1))
    return basis


def update_jacobian(process: GHMM, beliefs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """D_x(b) = d f_x(b) / d b in the ambient coordinates: beliefs (..., S), symbols (...) ->
    (..., S, S), D[..., i, j] = d f_x(b)_i / d b_j. Symbols of probability zero at b -> NaN."""
    beliefs = np.asarray(beliefs, dtype=np.float64)
    symbols = np.asarray(symbols, dtype=np.int64)
    a_t = np.swapaxes(process.T[symbols], -1, -2)  # (..., S, S) = A^T
    g = np.einsum("...ij,...j->...i", a_t, beliefs)  # A^T b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = process.mass(g)
        f = g / s[..., None]
        centre = np.eye(process.n_states) - f[..., :, None] * process.right  # (I - f tau^T)
        return centre @ a_t / s[..., None, None]


def simplex_jacobian(process: GHMM, beliefs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """M = Q^T D_x(b) Q, the Jacobian on the simplex (a GHMM's state plane): (..., S), (...) ->
    (..., S-1, S-1)."""
    q = tangent_basis(process.n_states, process.right)
    return q.T @ update_jacobian(process, beliefs, symbols) @ q


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def quantile_summary(values) -> dict[str, float]:
    """{"q10", "q25", "q50", "q75", "q90"} of the values (any array-like, flattened)."""
    found = np.quantile(np.asarray(values, dtype=np.float64).reshape(-1), QUANTILES)
    return {f"q{round(100 * q)}": float(v) for q, v in zip(QUANTILES, found, strict=True)}


def spectral_radius(matrices: np.ndarray) -> np.ndarray:
    """max |eigenvalue| of each square matrix: (..., d, d) -> (...)."""
    return np.abs(np.linalg.eigvals(matrices)).max(axis=-1)


def largest_lyapunov(jacobians: np.ndarray, burn_in: int = 0, seed: int = 0) -> np.ndarray:
    """Largest Lyapunov exponent of each sequence of step Jacobians, nats per step.

    jacobians (n, L, d, d): jacobians[i, t] maps a perturbation of the state before step t to
    after it. A seeded random unit vector per sequence is pushed through every step and
    renormalised; the exponent is the mean log growth over steps burn_in..L-1 (the first steps
    let the vector align with the most expanding direction). -> (n,); -inf for a sequence whose
    product becomes exactly 0 (a process that synchronises to a state forgets in finite time).
    """
    jacobians = np.asarray(jacobians, dtype=np.float64)
    if jacobians.ndim != 4 or jacobians.shape[-1] != jacobians.shape[-2]:
        raise InvalidInput(f"jacobians need shape (n, L, d, d), got {jacobians.shape}")
    n, length = jacobians.shape[:2]
    if not 0 <= burn_in < length:
        raise InvalidInput(f"burn_in must be in [0, {length}), got {burn_in}")
    v = np.random.default_rng(seed).standard_normal((n, jacobians.shape[-1]))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    total = np.zeros(n)
    for t in range(length):
        v = np.einsum("nij,nj->ni", jacobians[:, t], v)
        grow = np.linalg.norm(v, axis=1)
        if t >= burn_in:
            with np.errstate(divide="ignore"):
                total += np.log(grow)  # -inf once a step maps the vector to 0 (synchronised)
        v = np.where(grow[:, None] > 0, v / np.where(grow > 0, grow, 1.0)[:, None], v)
    return total / (length - burn_in)


def finite_time_lyapunov(jacobians: np.ndarray) -> np.ndarray:
    """(1/L) log sigma_max(J_(L-1) ... J_0) of each sequence of step Jacobians (n, L, d, d) -> (n,),
    nats per step: the largest growth of any perturbation of the state before step 0 over the
    whole window (no burn-in, no random vector). The product is renormalised every step so long
    windows do not underflow; -inf where it becomes exactly 0."""
    jacobians = np.asarray(jacobians, dtype=np.float64)
    if jacobians.ndim != 4 or jacobians.shape[-1] != jacobians.shape[-2]:
        raise InvalidInput(f"jacobians need shape (n, L, d, d), got {jacobians.shape}")
    n, length, d = jacobians.shape[:3]
    product = np.broadcast_to(np.eye(d), (n, d, d)).copy()
    log_scale = np.zeros(n)
    for t in range(length):
        product = jacobians[:, t] @ product
        scale = np.linalg.norm(product, axis=(1, 2))
        with np.errstate(divide="ignore"):
            log_scale += np.log(scale)
        product /= np.where(scale > 0, scale, 1.0)[:, None, None]
    top = np.linalg.norm(product, ord=2, axis=(1, 2))
    with np.errstate(divide="ignore"):
        return (log_scale + np.log(top)) / length


def belief_path(
    process: GHMM, n_sequences: int, length: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sampled symbols (n, L) and the exact belief *before* each of them (n, L, S): the initial
    (stationary) belief, then the belief after each earlier symbol."""
    tokens, _ = process.sample(n_sequences, length, seed=seed)
    after = process.beliefs(tokens)
    start = np.broadcast_to(process.initial, (n_sequences, 1, process.n_states))
    return tokens, np.concatenate([start, after[:, :-1]], axis=1)


def belief_update_dynamics(
    process: GHMM,
    n_sequences: int = 8,
    length: int = 4000,
    burn_in: int = 100,
    seed: int = 0,
) -> dict:
    """The belief update's one-step spectral radius and largest Lyapunov exponent along stationary
    sequences sampled from `process` (reproducible from `seed`).

    -> {"spectral_radius_mean", "spectral_radius_max", "spectral_radius_quantiles",
    "frac_radius_above_1" (over the visited (belief, symbol) pairs after burn-in), "lyapunov"
    (mean over sequences, nats/token), "lyapunov_sd" (between sequences), "n_sequences",
    "length", "burn_in", "seed"}.
    """
    tokens, before = belief_path(process, n_sequences, length, seed)
    steps = simplex_jacobian(process, before, tokens)  # (n, L, S-1, S-1)
    radius = spectral_radius(steps[:, burn_in:])
    exponents = largest_lyapunov(steps, burn_in=burn_in, seed=seed)
    return {
        "spectral_radius_mean": float(radius.mean()),
        "spectral_radius_max": float(radius.max()),
        "spectral_radius_quantiles": quantile_summary(radius),
        "frac_radius_above_1": float((radius > 1).mean()),
        "lyapunov": float(exponents.mean()),
        "lyapunov_sd": float(exponents.std(ddof=1)) if n_sequences > 1 else 0.0,
        "n_sequences": int(n_sequences),
        "length": int(length),
        "burn_in": int(burn_in),
        "seed": int(seed),
    }


def window_lyapunov(process: GHMM, tokens: np.ndarray) -> dict:
    """The filter's finite-time exponent over windows tokens (n, L) from the initial belief: the
    window a network is trained on. -> {"lyapunov_window" (mean over sequences, nats/token;
    null when the filter synchronises, -inf), "lyapunov_window_sd", "window" (L),
    "window_sequences" (n)}."""
    tokens = np.asarray(tokens)
    after = process.beliefs(tokens)
    start = np.broadcast_to(process.initial, (len(tokens), 1, process.n_states))
    before = np.concatenate([start, after[:, :-1]], axis=1)
    exponents = finite_time_lyapunov(simplex_jacobian(process, before, tokens))
    finite = bool(np.isfinite(exponents).all())
    return {
        "lyapunov_window": float(exponents.mean()) if finite else None,
        "lyapunov_window_sd": float(exponents.std(ddof=1)) if finite and len(tokens) > 1 else None,
        "window": int(tokens.shape[1]),
        "window_sequences": int(len(tokens)),
    }


def affine_filter_process(
    mixing: np.ndarray, contraction: float, probs: np.ndarray | None = None
) -> HMM:
    """A process whose belief update is affine, so its dynamics are known in closed form.

    T[x] = p_x (c K + (1 - c) 1 e_x^T) with K (S x S) row-stochastic, 0 < c < 1 and p_x the
    symbol probabilities (default uniform, V = S). Every state emits x with probability p_x, so
    P(x | b) = p_x and the filter is b' = c K^T b + (1 - c) e_x (a chaos game towards vertex x):
    its Jacobian on the simplex is c Q^T K^T Q at every belief, and its Lyapunov exponent is
    log(c * radius of K on the tangent plane).
    """
    mixing = np.asarray(mixing, dtype=np.float64)
    n = mixing.shape[0]
    probs = np.full(n, 1.0 / n) if probs is None else np.asarray(probs, dtype=np.float64)
    if not 0 < contraction < 1:
        raise InvalidInput(f"contraction must be in (0, 1), got {contraction}")
    towards = np.eye(n)[:, None, :].repeat(n, axis=1)  # towards[x] = 1 e_x^T
    T = probs[:, None, None] * (contraction * mixing[None] + (1 - contraction) * towards)
    return HMM(T, name=f"affine_filter(c={contraction:g})")
