"""Models whose learning coefficient is known in closed form: the LLC estimator's test cases.

* Regular: full-rank linear regression y = W x (N × M weights, d = NM), loss ½|y - Wx|² per example,
  at the least-squares solution of noisy data. λ = d/2. With localization γ, inverse temperature
  nβ and SGLD step ε the estimator's own expectation is known too: along a Hessian eigendirection
  of curvature h the Euler-discretised Ornstein-Uhlenbeck chain has stationary variance
  1 / (a (1 - ε a / 4)) with a = nβ h + γ, so E[λ̂] = ½ Σ_h nβ h / (a (1 - ε a / 4))
  (`regular_expected_llc`), which tends to d/2 as γ / (nβ h) and ε a go to 0.
* Singular: reduced-rank regression y = B A x (A: H × M, B: N × H) realising a true map of rank
  r, on noise-free data, at its most singular true parameter (the rank-r factorisation, the other
  H - r rows of A and columns of B zero). λ is Aoyagi & Watanabe's (2005, "Stochastic
  complexities of reduced rank regression in Bayesian estimation", Neural Networks 18(7),
  Main Theorem; `aoyagi_rrr_lambda`). Noise-free data make L_n(w) = ½ tr((BA - C)Σ̂(BA - C)ᵀ), the
  population K(w) up to a linear change of input coordinates, which leaves λ unchanged.

Each case returns the model at w*, the windows (n, 2) int64 that index its examples (the
estimator's data are windows; column 0 is the example's row) and the per-example loss.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class KnownCase:
    """model at w*, windows (n, 2), loss (model, windows) -> (b, 1), lambda_ (the known λ),
    hessian (eigenvalues of the Hessian of L_n at w*, regular case only)."""

    model: nn.Module
    windows: Tensor
    loss: Callable[[nn.Module, Tensor], Tensor]
    lambda_: float
    hessian: np.ndarray | None = None


def aoyagi_rrr_lambda(m: int, h: int, n: int, r: int) -> float:
    """λ of reduced-rank regression: input m, hidden (model rank) h, output n, true rank r <= h
    (Aoyagi & Watanabe 2005, Main Theorem)."""
    if not 0 <= r <= h:
        raise ValueError(f"need 0 <= r <= h, got r {r}, h {h}")
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    if m + n < h + r:
        return m * n / 2
    value = 2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2
    return (value + (m + h + n + r) % 2) / 8


def regular_expected_llc(
    hessian: np.ndarray, n_beta: float, localization: float, lr: float
) -> float:
    """E[λ̂] of SGLD on a quadratic loss with Hessian eigenvalues `hessian` (see module doc)."""
    a = n_beta * np.asarray(hessian, float) + localization
    if np.any(lr * a >= 4):
        return float("inf")  # the discretised chain diverges along that direction
    return float(0.5 * np.sum(n_beta * np.asarray(hessian) / (a * (1 - lr * a / 4))))


def _squared_error(x: Tensor, y: Tensor) -> Callable[[nn.Module, Tensor], Tensor]:
    def loss(model: nn.Module, windows: Tensor) -> Tensor:
        rows = windows[:, 0]
        return 0.5 * (model(x[rows]) - y[rows]).pow(2).sum(-1, keepdim=True)

    return loss


def _windows(n: int) -> Tensor:
    return torch.arange(n, dtype=torch.int64)[:, None].repeat(1, 2)


def linear_regression_case(
    m: int = 4, n: int = 3, examples: int = 2048, noise: float = 0.1, seed: int = 0
) -> KnownCase:
    """Full-rank y = W x + noise at the least-squares W: λ = mn / 2; Hessian = Σ̂x ⊗ I_n."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, m, generator=g, dtype=torch.float64)
    y = x @ torch.randn(n, m, generator=g, dtype=torch.float64).T
    y = y + noise * torch.randn(examples, n, generator=g, dtype=torch.float64)
    w = torch.linalg.lstsq(x, y).solution.T
    model = nn.Linear(m, n, bias=False)
    with torch.no_grad():
        model.weight.copy_(w.float())
    cov = (x.T @ x / examples).numpy()
    hessian = np.repeat(np.linalg.eigvalsh(cov), n)
    return KnownCase(model, _windows(examples), _squared_error(x.float(), y.float()), m * n / 2,
                     hessian)  # fmt: skip


def reduced_rank_case(
    m: int = 2, h: int = 3, n: int = 6, r: int = 1, examples: int = 2048, seed: int = 0
) -> KnownCase:
    """y = B A x realising a rank-r map C exactly (noise-free, unit singular values), at the
    rank-r factorisation of C padded with zeros: λ = aoyagi_rrr_lambda(m, h, n, r)."""
    g = torch.Generator().manual_seed(seed)
    u, _, vt = torch.linalg.svd(torch.randn(n, m, generator=g, dtype=torch.float64))
    a = torch.zeros(h, m, dtype=torch.float64)
    b = torch.zeros(n, h, dtype=torch.float64)
    a[:r] = vt[:r]  # C = u_r v_rᵀ: unit singular values keep every curvature near 1, so one
    b[:, :r] = u[:, :r]  # step size suits all directions (SGLD's bias grows with ε nβ h)
    x = torch.randn(examples, m, generator=g, dtype=torch.float64)
    y = x @ (b @ a).T
    model = nn.Sequential(nn.Linear(m, h, bias=False), nn.Linear(h, n, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(a.float())
        model[1].weight.copy_(b.float())
    return KnownCase(model, _windows(examples), _squared_error(x.float(), y.float()),
                     aoyagi_rrr_lambda(m, h, n, r))  # fmt: skip
