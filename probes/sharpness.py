"""Sharpness: the top Hessian eigenvalue of the training loss, beside the stability threshold.

Which loss (`training_loss`, said in phases.json under `sharpness_loss`): the loss the run trains.
* finite data (`train_sequences` N): the mean next-token loss over the N training windows, the
  training objective itself ("training_set"; the first `max_sequences` of them when N is larger:
  the set is a random sample, so its first rows are one too);
* fresh data, every input enumerable (hmm.msp.enumerable) and V**positions <= `exact_max`: the
  exact population loss, every input of `positions` tokens weighted by its probability, each
  position scored against the true next-token distribution ("exact", as models.loss's
  ExactEvaluator);
* otherwise the mean loss on a fixed seeded batch of `batch_sequences` windows of positions + 1
  tokens ("batch"). Positions are the trained ones (models.checkpoints.trained_positions).

Lanczos iteration (a Krylov refinement of power iteration) on exact Hessian-vector products (double
backward: the gradient is built once with `create_graph=True`, then each product is one
`torch.autograd.grad` through it), on a fixed batch, stopped by the Lanczos residual bound at a
relative tolerance, with an optional warm start (the previous checkpoint's top eigenvector).
Double backward rather than
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

When Adam's P can be read (`adam_settled_step`). In the first updates v_hat is an average of
only a few squared gradients per parameter, so some of the many parameters get a v_hat far below
their typical second moment, P ~ eps there, and lambda_max(P^-1 H) is driven by those few
coordinates: the demo transformer read 9-65x above 38/lr at steps 3-9 and below it from step 13
on. v_hat after t updates (bias-corrected) weighs the squared gradients by beta2^(t-s), an average
over n_eff(t) = (1 - beta2^t)(1 + beta2) / ((1 - beta2)(1 + beta2^t)) samples (the Kish effective
sample size; ~t early, (1 + beta2) / (1 - beta2) late). For gradients dominated by noise each
v_hat / E[g^2] is ~ chi^2_n / n, n = n_eff; the preconditioned sharpness is shown once n_eff is
large enough that none of the model's D parameters is expected to have v_hat below a quarter of
its second moment (P^-1 at most 2x its settled value): D * P(chi^2_n / n < 1/4) < 1, n = 31 for
the demo's D = 143,072 (step 32 at beta2 = 0.999), capped at 90 % of the largest n_eff beta2
allows. Earlier checkpoints get no preconditioned value (null, `settled` false), never a
misleading one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hmm import HMM
from hmm.errors import InvalidInput
from hmm.msp import enumerable
from models.data import set_seed
from models.loss import ExactEvaluator, next_token_losses

Vector = list[Tensor]
SHARPNESS_SEED = 20240607


@dataclass
class TrainingLoss:
    """The loss whose Hessian is measured. kind "exact": tokens (N, P) every input, probs (N,),
    true_next (N, P, V); kinds "training_set" / "batch": tokens (N, P + 1) windows."""

    kind: str
    tokens: Tensor
    description: str
    probs: Tensor | None = None
    true_next: Tensor | None = None

    def __call__(self, model: torch.nn.Module) -> Tensor:
        """The scalar loss of `model`, attached to its parameters' graph."""
        if self.kind != "exact":
            return next_token_losses(model(self.tokens[:, :-1]), self.tokens).mean()
        logq = F.log_softmax(model(self.tokens).double(), dim=-1)
        p = self.true_next
        cross = -torch.where(p > 0, p * logq, torch.zeros_like(logq)).sum(-1)  # (N, P)
        return (self.probs @ cross).mean()

    def summary(self) -> dict:
        return {"kind": self.kind, "n_sequences": len(self.tokens), "description": self.description}


def training_loss(
    process: HMM,
    train: dict,
    positions: int,
    exact_max: int = 256,
    max_sequences: int = 64,
    batch_sequences: int = 64,
) -> TrainingLoss:
    """The run's training loss for the Hessian (rules in the module doc). train: config.json's
    "train" dict; positions: trained input positions (n_ctx for current runs)."""
    n_set = train.get("train_sequences")
    if n_set:
        windows, _ = process.sample(
            n_set, positions + 1, seed=set_seed(train.get("seed", 0), n_set)
        )
        keep = min(n_set, max_sequences)
        what = f"the training set's {n_set} windows" + (f" (first {keep})" if keep < n_set else "")
        return TrainingLoss(
            "training_set", torch.from_numpy(windows[:keep]), f"mean loss over {what}"
        )
    if enumerable(process, positions) and process.n_symbols**positions <= exact_max:
        exact = ExactEvaluator(process, positions)
        return TrainingLoss(
            "exact",
            exact.tokens,
            f"exact population loss: all {len(exact.tokens)} inputs of {positions} tokens, "
            "probability-weighted, against the true next-token distributions",
            exact.probs,
            exact.true_next,
        )
    windows, _ = process.sample(batch_sequences, positions + 1, seed=SHARPNESS_SEED)
    why = (
        f"the exact loss has {process.n_symbols}**{positions} inputs, more than {exact_max}"
        if enumerable(process, positions)
        else "the inputs cannot be enumerated"
    )
    return TrainingLoss(
        "batch",
        torch.from_numpy(windows),
        f"mean loss on a fixed batch of {batch_sequences} sampled windows ({why})",
    )


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
    max_iter: int = 20,
    tol: float = 1e-2,
    seed: int = 0,
) -> dict:
    """Largest eigenvalue of H (from `hessian_operator`), or of D H D with D = `scale` > 0.

    like: tensors with the parameters' shapes. Lanczos iteration (full reorthogonalisation, float64)
    on v -> D H D v, one product per step, started from a seeded random vector (mixed with the
    warm start `init`, when given). After k steps the top Ritz value theta of the k x k tridiagonal
    matrix satisfies theta <= lambda_max (interlacing), and the Lanczos residual
    ||D H D y - theta y|| = |beta_k s_k| bounds its distance to an eigenvalue; iteration stops when
    that bound is <= tol |theta| (converged) or after max_iter products.
    Returns {"value", "iterations", "converged", "vector" (the Ritz vector, shaped like `like`)}.

    Lanczos rather than plain power iteration: with Adam's preconditioner the spectrum's top is
    clustered and power iteration crept for dozens of products and stopped early by a
    change-in-Rayleigh-quotient test up to 30 % low; Lanczos reaches the same 1 % in ~10.
    """
    shapes = [p.shape for p in like]
    sizes = [p.numel() for p in like]
    product = _flat_operator(hessian, shapes, sizes, scale)
    start = _start_vector(sum(sizes), shapes, init, seed)
    basis = [start / start.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    theta, ritz, converged = float("nan"), basis[0], False
    for _ in range(max_iter):
        w = product(basis[-1])
        alphas.append(float(w @ basis[-1]))
        stacked = torch.stack(basis)
        for _ in range(2):  # full reorthogonalisation, twice for stability
            w = w - stacked.T @ (stacked @ w)
        beta = float(w.norm())
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        values, vectors = torch.linalg.eigh(tridiagonal)
        theta, s = float(values[-1]), vectors[:, -1]
        ritz = stacked.T @ s
        if abs(beta * float(s[-1])) <= tol * abs(theta) or beta <= 1e-12 * max(abs(theta), 1.0):
            converged = True
            break
        betas.append(beta)
        basis.append(w / beta)
    vector = [c.reshape(shape).float() for c, shape in zip(ritz.split(sizes), shapes, strict=True)]
    return {"value": theta, "iterations": len(alphas), "converged": converged, "vector": vector}


def _flat_operator(
    hessian: Callable[[Vector], Vector], shapes: list, sizes: list[int], scale: Vector | None
) -> Callable[[Tensor], Tensor]:
    """x (P,) float64 -> D H D x (P,) float64, with the parameter shapes unflattened for H."""

    def product(x: Tensor) -> Tensor:
        parts = [c.reshape(shape).float() for c, shape in zip(x.split(sizes), shapes, strict=True)]
        if scale is not None:
            parts = [d * c for d, c in zip(scale, parts, strict=True)]
        image = hessian(parts)
        if scale is not None:
            image = [d * c for d, c in zip(scale, image, strict=True)]
        return torch.cat([c.reshape(-1) for c in image]).double()

    return product


def _start_vector(size: int, shapes: list, init: Vector | None, seed: int) -> Tensor:
    """A seeded random unit vector, mixed with the warm start `init` when given."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randn(size, generator=generator, dtype=torch.float64)
    start = start / start.norm()
    if init is not None and [v.shape for v in init] == shapes:
        warm = torch.cat([v.detach().reshape(-1) for v in init]).double()
        if float(warm.norm()) > 0:
            # mostly the last top direction, plus a random part so no direction is lost
            start = warm / warm.norm() + 0.3 * start
    if not float(start.norm()) > 0:
        raise InvalidInput("Lanczos needs a non-zero start vector")
    return start


def effective_samples(step: int, beta2: float) -> float:
    """n_eff of Adam's bias-corrected second-moment average after `step` updates (module doc)."""
    if step < 1:
        return 0.0
    if beta2 == 0:
        return 1.0
    decay = beta2**step
    return (1 - decay) * (1 + beta2) / ((1 - beta2) * (1 + decay))


def settled_samples(n_params: int) -> int:
    """The smallest n with n_params * P(chi^2_n / n < 1/4) < 1 (module doc)."""
    from scipy.stats import chi2

    n = 1
    while n_params * chi2.cdf(n / 4, n) >= 1:
        n += 1
    return n


def adam_settled_step(beta2: float, n_params: int) -> int:
    """First update count whose second-moment estimate is settled enough for the preconditioned
    sharpness: n_eff(step) >= min(settled_samples(n_params), 0.9 * the largest n_eff)."""
    ceiling = (1 + beta2) / (1 - beta2)
    needed = min(settled_samples(max(int(n_params), 1)), 0.9 * ceiling)
    step = 1
    while effective_samples(step, beta2) < needed:
        step += 1
    return step


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
