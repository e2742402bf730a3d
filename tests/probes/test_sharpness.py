"""Sharpness against an explicitly computed Hessian, and the stability thresholds."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from models.loss import next_token_losses
from models.rnn import RNNConfig, build_rnn
from probes.sharpness import (
    adam_settled_step,
    effective_samples,
    hessian_operator,
    settled_samples,
    stability_threshold,
    top_hessian_eigenvalue,
)


@pytest.fixture(scope="module")
def tiny_rnn():
    return build_rnn(RNNConfig(hidden=3, act_fn="tanh", n_ctx=4, seed=0)).eval()


TOKENS = torch.tensor([[0, 1, 2, 1], [2, 0, 0, 1], [1, 1, 2, 0]])


def _explicit_hessian(model) -> torch.Tensor:
    """The full Hessian of the mean next-token loss by torch.autograd.functional.hessian over the
    flattened parameters (P x P), independent of the power iteration."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def loss(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = int(torch.Size(shape).numel())
            params[name] = theta[start : start + size].reshape(shape)
            start += size
        return next_token_losses(functional_call(model, params, (TOKENS,)), TOKENS).mean()

    return torch.autograd.functional.hessian(loss, flat)


def test_top_eigenvalue_matches_explicit_hessian(tiny_rnn):
    hessian = _explicit_hessian(tiny_rnn).double()
    expected = torch.linalg.eigvalsh(hessian).max().item()
    params = list(tiny_rnn.parameters())
    loss = next_token_losses(tiny_rnn(TOKENS), TOKENS).mean()
    found = top_hessian_eigenvalue(hessian_operator(loss, params), params, max_iter=500, tol=1e-7)
    assert found["converged"]
    assert found["value"] == pytest.approx(expected, rel=1e-3)


def test_preconditioned_eigenvalue_matches_scaled_hessian(tiny_rnn):
    hessian = _explicit_hessian(tiny_rnn).double()
    params = list(tiny_rnn.parameters())
    generator = torch.Generator().manual_seed(1)
    scale = [torch.rand(p.shape, generator=generator) + 0.5 for p in params]
    d = torch.cat([s.reshape(-1) for s in scale]).double()
    expected = torch.linalg.eigvalsh(d[:, None] * hessian * d[None, :]).max().item()
    loss = next_token_losses(tiny_rnn(TOKENS), TOKENS).mean()
    found = top_hessian_eigenvalue(
        hessian_operator(loss, params), params, scale=scale, max_iter=500, tol=1e-7
    )
    assert found["value"] == pytest.approx(expected, rel=1e-3)


def test_negative_dominant_spectrum_still_gives_the_largest_eigenvalue():
    x = torch.zeros(3, requires_grad=True)
    a = torch.tensor([-5.0, 1.0, 2.0])
    loss = 0.5 * (a * x * x).sum()  # Hessian diag(-5, 1, 2): largest magnitude -5, largest 2
    found = top_hessian_eigenvalue(hessian_operator(loss, [x]), [x], max_iter=300, tol=1e-9)
    assert found["value"] == pytest.approx(2.0, rel=1e-4)


def test_warm_start_needs_fewer_products_and_agrees():
    x = torch.zeros(300, requires_grad=True)
    curvature = torch.cat([torch.linspace(0.0, 6.0, 299), torch.tensor([7.0])])
    operator = hessian_operator(0.5 * (curvature * x * x).sum(), [x])
    cold = top_hessian_eigenvalue(operator, [x], max_iter=300, tol=1e-4)
    warm = top_hessian_eigenvalue(operator, [x], init=cold["vector"], max_iter=300, tol=1e-4)
    assert cold["converged"] and warm["converged"]
    assert cold["value"] == pytest.approx(7.0, rel=1e-4)
    assert warm["value"] == pytest.approx(7.0, rel=1e-4)
    assert warm["iterations"] < cold["iterations"]


def test_stability_thresholds():
    assert stability_threshold("sgd", 0.01)["threshold"] == pytest.approx(200.0)
    assert stability_threshold("sgd", 0.01, momentum=0.9)["threshold"] == pytest.approx(380.0)
    adam = stability_threshold("adamw", 1e-3, betas=(0.9, 0.999))
    assert adam["threshold"] == pytest.approx(38_000.0) and adam["compares"] == "preconditioned"
    assert stability_threshold("adamw", 0.0)["threshold"] is None


def test_effective_samples_of_adams_second_moment():
    """Kish's n_eff of the weights beta2^(t-s), s = 1..t, against the weights themselves."""
    for beta2, step in ((0.999, 1), (0.999, 40), (0.9, 7), (0.99, 3000)):
        weights = beta2 ** torch.arange(step, dtype=torch.float64)
        expected = float(weights.sum() ** 2 / (weights**2).sum())
        assert effective_samples(step, beta2) == pytest.approx(expected, rel=1e-9)
    assert effective_samples(0, 0.999) == 0


def test_settled_step_is_where_no_parameter_is_expected_far_below_its_second_moment():
    """Adam's bias-corrected v_hat on pure Gaussian gradients: before the settled step many of
    D parameters have v_hat < E[g^2] / 4 (P^-1 more than 2x too large), after it about none."""
    d = 10_000
    settled = adam_settled_step(0.999, d)
    assert settled_samples(d) == 24 and settled == 25  # n_eff(24) = 23.7: just below 24
    generator = torch.Generator().manual_seed(0)
    v = torch.zeros(d, dtype=torch.float64)
    below = {}
    for step in range(1, settled + 1):
        g = torch.randn(d, generator=generator, dtype=torch.float64)
        v = 0.999 * v + 0.001 * g**2
        below[step] = int((v / (1 - 0.999**step) < 0.25).sum())
    assert below[5] > 300 and below[settled] <= 3
    # a small beta2 never averages that many samples: settle at 90 % of its ceiling instead
    assert effective_samples(adam_settled_step(0.9, d), 0.9) >= 0.9 * 19
    assert adam_settled_step(0.999, 143_072) == 32  # the demo transformer (docs/phases.md)


def test_training_loss_picks_the_runs_loss():
    from hmm import load_process
    from probes.sharpness import training_loss

    mess3 = load_process("mess3")
    exact = training_loss(mess3, {}, 5)
    assert exact.kind == "exact" and exact.tokens.shape == (3**5, 5)
    assert float(exact.probs.sum()) == pytest.approx(1.0)
    batch = training_loss(mess3, {}, 10, exact_max=4096, batch_sequences=64)
    assert batch.kind == "batch" and batch.tokens.shape == (64, 11)
    assert "3**10 inputs" in batch.description
    finite = training_loss(mess3, {"train_sequences": 30, "seed": 2}, 10, max_sequences=25)
    assert finite.kind == "training_set" and finite.tokens.shape == (25, 11)
