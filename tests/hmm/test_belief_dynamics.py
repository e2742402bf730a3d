"""The belief update's Jacobian, spectral radius and Lyapunov exponent against independent
computations: finite differences of the exact filter, closed forms of an affine filter, and the
separation rate of two nearby filtered beliefs."""

from __future__ import annotations

import numpy as np
import pytest

from hmm import HMM, load_process
from hmm.belief_dynamics import (
    affine_filter_process,
    belief_path,
    belief_update_dynamics,
    finite_time_lyapunov,
    largest_lyapunov,
    simplex_jacobian,
    spectral_radius,
    tangent_basis,
    update_jacobian,
    window_lyapunov,
)
from hmm.errors import InvalidInput

MIXING = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])  # eigenvalues 1, 0.6, 0.5


def _filtered(process: HMM, belief: np.ndarray, symbol: int) -> np.ndarray:
    """The exact filter after one symbol from `belief` (HMM.beliefs of a process started there)."""
    started = HMM(process.T, initial=belief)
    return started.beliefs(np.array([[symbol]]))[0, 0]


@pytest.mark.parametrize("name", ["mess3", "rrxor"])
def test_jacobian_matches_finite_differences_of_the_filter(name):
    process = load_process(name)
    rng = np.random.default_rng(1)
    q = tangent_basis(process.n_states)
    for _ in range(4):
        belief = rng.dirichlet(np.ones(process.n_states))
        symbol = int(rng.integers(process.n_symbols))
        eps = 1e-6
        columns = [
            (
                _filtered(process, belief + eps * d, symbol)
                - _filtered(process, belief - eps * d, symbol)
            )
            / (2 * eps)
            for d in q.T
        ]
        expected = q.T @ np.stack(columns, axis=1)
        np.testing.assert_allclose(simplex_jacobian(process, belief, symbol), expected, atol=1e-6)
        ambient = update_jacobian(process, belief, symbol)
        np.testing.assert_allclose(ambient @ belief, 0.0, atol=1e-12)  # scale invariance
        np.testing.assert_allclose(ambient.sum(axis=0), 0.0, atol=1e-12)  # stays on the simplex


def test_tangent_basis_is_orthonormal_and_sum_free():
    q = tangent_basis(4)
    np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(q.sum(axis=0), 0.0, atol=1e-12)
    with pytest.raises(InvalidInput):
        tangent_basis(1)


def test_affine_filter_has_its_closed_form_jacobian_and_lyapunov():
    c = 0.4
    process = affine_filter_process(MIXING, c)
    tokens, before = belief_path(process, 3, 50, seed=2)
    q = tangent_basis(3)
    expected = c * q.T @ MIXING.T @ q
    np.testing.assert_allclose(
        simplex_jacobian(process, before, tokens),
        np.broadcast_to(expected, (3, 50, 2, 2)),
        atol=1e-12,
    )
    # the filter really is b' = c K^T b + (1 - c) e_x
    after = process.beliefs(tokens)
    np.testing.assert_allclose(
        after[:, 1:], c * before[:, 1:] @ MIXING + (1 - c) * np.eye(3)[tokens[:, 1:]], atol=1e-12
    )
    radius_k = np.sort(np.abs(np.linalg.eigvals(MIXING)))[-2]  # K's radius off the eigenvalue 1
    found = belief_update_dynamics(process, n_sequences=2, length=400, burn_in=50)
    assert found["lyapunov"] == pytest.approx(np.log(c * radius_k), abs=1e-3)
    assert found["spectral_radius_max"] == pytest.approx(c * radius_k, rel=1e-9)


def test_scalar_contraction_gives_log_c_exactly():
    process = affine_filter_process(np.eye(3), 0.3)
    found = belief_update_dynamics(process, n_sequences=2, length=20, burn_in=0)
    assert found["lyapunov"] == pytest.approx(np.log(0.3), abs=1e-12)
    assert found["lyapunov_sd"] == pytest.approx(0.0, abs=1e-12)


def test_lyapunov_of_mess3_matches_the_separation_of_two_filtered_beliefs():
    """Independent estimate: filter a belief and a copy displaced by 1e-7 along the same symbols
    (HMM.joint, the filter's home), log the distance growth, renormalise the displacement."""
    process = load_process("mess3")
    tokens, before = belief_path(process, 4, 1500, seed=5)
    delta, burn_in = 1e-7, 50
    b = before[:, 0]
    v = tangent_basis(3) @ np.array([1.0, 0.0])
    v = np.broadcast_to(v, b.shape).copy()
    total = np.zeros(4)
    rows = np.arange(4)
    for t in range(tokens.shape[1]):
        one = process.joint(b)[rows, tokens[:, t]]
        two = process.joint(b + delta * v)[rows, tokens[:, t]]
        one, two = one / one.sum(1, keepdims=True), two / two.sum(1, keepdims=True)
        grow = np.linalg.norm(two - one, axis=1) / delta
        if t >= burn_in:
            total += np.log(grow)
        v, b = (two - one) / (grow[:, None] * delta), one
    steps = simplex_jacobian(process, before, tokens)
    ours = largest_lyapunov(steps, burn_in=burn_in)
    np.testing.assert_allclose(ours, total / (tokens.shape[1] - burn_in), atol=2e-3)
    assert -1.7 < ours.mean() < -1.4  # the quoted value, about -1.5 nats/token


def test_dynamics_are_reproducible_from_the_seed():
    process = load_process("mess3")
    one = belief_update_dynamics(process, n_sequences=2, length=300, seed=3)
    assert one == belief_update_dynamics(process, n_sequences=2, length=300, seed=3)
    assert one != belief_update_dynamics(process, n_sequences=2, length=300, seed=4)


def test_radius_matches_numpy_eigenvalues_and_synchronising_process_is_minus_inf():
    process = load_process("mess3")
    tokens, before = belief_path(process, 2, 30, seed=0)
    steps = simplex_jacobian(process, before, tokens)
    expected = [[max(abs(np.linalg.eigvals(m))) for m in row] for row in steps]
    np.testing.assert_allclose(spectral_radius(steps), expected, rtol=1e-12)
    z1r = load_process("z1r")  # the filter synchronises: the product hits 0
    tokens, before = belief_path(z1r, 2, 60, seed=0)
    assert np.all(largest_lyapunov(simplex_jacobian(z1r, before, tokens)) == -np.inf)


def test_bad_shapes_are_invalid_input():
    with pytest.raises(InvalidInput):
        largest_lyapunov(np.zeros((2, 3, 3)))
    with pytest.raises(InvalidInput):
        largest_lyapunov(np.zeros((2, 3, 2, 2)), burn_in=3)
    with pytest.raises(InvalidInput):
        affine_filter_process(np.eye(3), 1.0)


def test_finite_time_exponent_is_the_top_singular_value_of_the_product():
    rng = np.random.default_rng(0)
    jacobians = rng.normal(0, 0.6, (3, 7, 4, 4))
    found = finite_time_lyapunov(jacobians)
    for i in range(3):
        product = np.eye(4)
        for t in range(7):
            product = jacobians[i, t] @ product
        expected = np.log(np.linalg.svd(product, compute_uv=False)[0]) / 7
        assert found[i] == pytest.approx(expected, rel=1e-10)
    # long windows do not underflow: 2000 steps of 0.01 I give log(0.01) exactly
    tiny = np.broadcast_to(0.01 * np.eye(2), (1, 2000, 2, 2))
    assert finite_time_lyapunov(tiny)[0] == pytest.approx(np.log(0.01))


def test_window_exponent_of_an_affine_filter_is_closed_form():
    """b' = c K^T b + (1 - c) e_x: every step's simplex Jacobian is M = c Q^T K^T Q, so the window
    exponent is (1/L) log sigma_max(M^L), whatever the symbols."""
    process = affine_filter_process(MIXING, 0.4)
    tokens, _ = process.sample(5, 6, seed=0)
    found = window_lyapunov(process, tokens)
    q = tangent_basis(3)
    step = 0.4 * q.T @ MIXING.T @ q
    expected = np.log(np.linalg.svd(np.linalg.matrix_power(step, 6), compute_uv=False)[0]) / 6
    assert found["lyapunov_window"] == pytest.approx(expected, rel=1e-9)
    assert found["window"] == 6 and found["lyapunov_window_sd"] == pytest.approx(0, abs=1e-12)


def test_radius_quantiles_show_mess3s_bimodal_steps():
    found = belief_update_dynamics(load_process("mess3"), n_sequences=2, length=2000, burn_in=50)
    quantiles = found["spectral_radius_quantiles"]
    assert quantiles["q50"] < 0.5 < found["spectral_radius_mean"] < quantiles["q90"]

def test_ghmm_update_jacobian_is_the_derivative_on_the_state_plane():
    from hmm import load_process
    from hmm.belief_dynamics import simplex_jacobian, tangent_basis, update_jacobian

    p = load_process("moon")  # tau is not 1: states live on eta . tau = 1
    q = tangent_basis(p.n_states, p.right)
    np.testing.assert_allclose(q.T @ q, np.eye(p.n_states - 1), atol=1e-12)
    np.testing.assert_allclose(p.right @ q, 0.0, atol=1e-12)
    assert np.array_equal(tangent_basis(3, np.ones(3)), tangent_basis(3))  # classical: Helmert
    tokens, _ = p.sample(1, 6, seed=2)
    eta = p.beliefs(tokens)[0, -1]

    def update(state, x):
        v = state @ p.T[x]
        return v / (v @ p.right)

    for x in range(p.n_symbols):
        step = 1e-6
        numeric = np.stack([(update(eta + step * q[:, k], x) - update(eta - step * q[:, k], x))
                            / (2 * step) for k in range(p.n_states - 1)], axis=1)
        np.testing.assert_allclose(update_jacobian(p, eta, x) @ q, numeric, atol=1e-6)
        np.testing.assert_allclose(simplex_jacobian(p, eta, x), q.T @ numeric, atol=1e-6)
