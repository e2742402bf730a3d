"""Sharpness: the top Hessian eigenvalue of the training loss, beside the stability threshold.

Power iteration on exact Hessian-vector products (double backward: the gradient is built once with
`create_graph=True`, then each product is one `torch.autograd.grad` through it), on a fixed batch,
with a relative tolerance on the Rayleigh quotient and an optional warm start (the previous
checkpoint's eigenvector, which makes later checkpoints cheap). Double backward rather than
`torch.func.jvp(grad(...))`: `torch.func.functional_call` on a TransformerBridge (TransformerLens
4.3) leaves the swapped-in functorch tensors in the model's blocks instead of restoring its
parameters, which breaks every later transform on the same model.

Stability thresholds ("edge of stability"):
* SGD with heavy-ball momentum beta: gradient descent on a quadratic of curvature lambda diverges
  once lambda > (2 + 2 beta) / lr, i.e. 2 / lr without momentum (Cohen et al. 2021, "Gradient
  descent on neural networks typically occurs at the edge of stability"). Compared with raw
  sharpness.
* Adam / AdamW: the raw Hessian sharpness is *not* comparable with any lr threshold, because Adam
  divides each coordinate's step by P = sqrt(v_hat) + eps. The comparable quantity is the
  preconditioned sharpness lambda_max(P^-1 H) (computed here as the top eigenvalue of the symmetric
  P^-1/2 H P^-1/2), and its threshold is (2 + 2 beta1) / ((1 - beta1) lr) = 38 / lr for beta1 = 0.9
  (Cohen et al. 2022, "Adaptive gradient methods at the edge of stability"). P is frozen at the
  checkpoint's second-moment estimate; decoupled weight decay is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from hmm.errors import InvalidInput

Vector = list[Tensor]


def hessian_operator(loss: Tensor, params: list[Tensor]) -> Callable[[Vector], Vector]:
    """v -> H v, the exact Hessian of the scalar `loss` (still attached to its graph) at `params`.

    The gradient graph is built once here; each product is one backward pass through it.
    """
    grads = torch.autograd.grad(loss, params, create_graph=True)

    def product(v: Vector) -> Vector:
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        return [x.detach() for x in hv]

    return product


def top_hessian_eigenvalue(
    hessian: Callable[[Vector], Vector],
    like: list[Tensor],
    scale: Vector | None = None,
    init: Vector | None = None,
    max_iter: int = 30,
    tol: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Largest eigenvalue of H (from `hessian_operator`), or of D H D with D = `scale` > 0.

    like: tensors with the parameters' shapes and dtypes. Power iteration on v -> D H D v with
    Rayleigh quotient lambda_k = v_k . (D H D v_k); stops when |lambda_k - lambda_{k-1}| <= tol
    |lambda_k| or after max_iter products. Power iteration finds the eigenvalue of largest
    magnitude; if that is negative, a second run on (D H D - lambda I) finds the largest (most
    positive) one.
    Returns {"value", "iterations", "converged", "vector"}.
    """
    if init is not None and [v.shape for v in init] == [p.shape for p in like]:
        vector = [v.detach().clone() for v in init]
    else:
        generator = torch.Generator().manual_seed(seed)
        vector = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in like]

    def product(v: Vector) -> Vector:
        if scale is None:
            return hessian(v)
        hv = hessian([d * x for d, x in zip(scale, v, strict=True)])
        return [d * x for d, x in zip(scale, hv, strict=True)]

    (value, vector), iterations, converged = _power_iteration(product, vector, 0.0, max_iter, tol)
    if value < 0:
        (shifted, vector), more, converged = _power_iteration(product, vector, value, max_iter, tol)
        value, iterations = shifted + value, iterations + more
    return {"value": value, "iterations": iterations, "converged": converged, "vector": vector}


def _power_iteration(
    product: Callable[[Vector], Vector], vector: Vector, shift: float, max_iter: int, tol: float
) -> tuple[tuple[float, Vector], int, bool]:
    """Power iteration on (product - shift I) -> ((eigenvalue, unit vector), steps, converged)."""
    vector = _normalised(vector)
    value = float("nan")
    for step in range(1, max_iter + 1):
        image = product(vector)
        if shift:
            image = [y - shift * x for y, x in zip(image, vector, strict=True)]
        new_value = float(sum((y * x).sum() for y, x in zip(image, vector, strict=True)))
        if step > 1 and abs(new_value - value) <= tol * abs(new_value):
            return (new_value, vector), step, True
        value, vector = new_value, _normalised(image)
    return (value, vector), max_iter, False


def _normalised(vector: Vector) -> Vector:
    norm = torch.sqrt(sum((v * v).sum() for v in vector))
    if not float(norm) > 0:
        raise InvalidInput("power iteration hit a zero vector: the Hessian vanishes on this batch")
    return [v / norm for v in vector]


def stability_threshold(optimizer: str, lr: float | None, betas=(0.9, 0.999), momentum=0.0) -> dict:
    """The edge-of-stability threshold for the run's optimiser at learning rate `lr`.

    -> {"threshold": float | None (None when lr is 0 or unknown),
        "compares": "raw" | "preconditioned", "rule": text}. See the module doc for the sources.
    """
    if optimizer == "sgd":
        rule = f"SGD: raw sharpness vs (2 + 2 momentum) / lr = {2 + 2 * momentum:g} / lr"
        value = (2 + 2 * momentum) / lr if lr else None
        return {"threshold": value, "compares": "raw", "rule": rule}
    if optimizer in ("adam", "adamw"):
        beta1 = float(betas[0])
        factor = (2 + 2 * beta1) / (1 - beta1)
        rule = (
            f"Adam: preconditioned sharpness lambda_max(P^-1 H), P = sqrt(v_hat) + eps, vs "
            f"(2 + 2 beta1) / ((1 - beta1) lr) = {factor:g} / lr (Cohen et al. 2022); raw "
            "sharpness "
            "has no lr threshold under Adam"
        )
        return {
            "threshold": factor / lr if lr else None,
            "compares": "preconditioned",
            "rule": rule,
        }
    raise InvalidInput(
        f"no stability threshold known for optimizer {optimizer!r}; use sgd or adamw"
    )
