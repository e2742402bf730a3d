"""Quantum instruments as GHMMs: word probabilities equal a Born-rule density-matrix simulation."""

import itertools

import numpy as np
import pytest

from hmm import InvalidInput, load_process
from hmm.quantum import bloch_walk_kraus, hermitian_basis, instrument_ghmm


def born_rule(kraus: np.ndarray, rho: np.ndarray, word) -> tuple[float, np.ndarray]:
    """P(word) = tr(K_w rho K_w^+) and the post-measurement density matrix, by matrix products."""
    for x in word:
        rho = sum(k @ rho @ k.conj().T for k in kraus[x])
    prob = float(np.trace(rho).real)
    return prob, rho / prob


def channel_fixed_point(kraus: np.ndarray) -> np.ndarray:
    """The stationary density matrix: the channel sum_x,r K rho K^+ iterated from I/d."""
    d = kraus.shape[-1]
    rho = np.eye(d, dtype=complex) / d
    for _ in range(5000):
        rho = sum(k @ rho @ k.conj().T for ks in kraus for k in ks)
    return rho


def random_instrument(d: int, symbols: int, per_symbol: int, seed: int) -> np.ndarray:
    """Kraus operators (V, r, d, d) with sum K^+ K = I: blocks of a random isometry."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((symbols * per_symbol * d, d)) + 1j * rng.standard_normal(
        (symbols * per_symbol * d, d))
    q, _ = np.linalg.qr(m)  # q^+ q = I
    return q.reshape(symbols, per_symbol, d, d)


@pytest.mark.parametrize("kraus", [
    bloch_walk_kraus(1.0, 4.3)[:, None],
    bloch_walk_kraus(2.0, 0.7)[:, None],
    random_instrument(3, 2, 2, seed=0),  # a qutrit, two Kraus operators per symbol
])
def test_word_probabilities_equal_the_born_rule(kraus):
    p = instrument_ghmm(kraus, "q")
    rho0 = channel_fixed_point(kraus)
    length = 4 if p.n_symbols > 2 else 6
    words = np.array(list(itertools.product(range(p.n_symbols), repeat=length)))
    born = np.array([born_rule(kraus, rho0, w)[0] for w in words])
    np.testing.assert_allclose(np.exp(p.log_prob(words)), born, rtol=1e-9, atol=1e-15)
    # the state after a word is the post-measurement density matrix in the Hermitian basis
    basis, labels = hermitian_basis(kraus.shape[-1])
    keep = [labels.index(s) for s in p.states]
    states = p.beliefs(words[:20])
    for i, w in enumerate(words[:20]):
        rho = born_rule(kraus, rho0, w)[1]
        coords = np.einsum("aij,ji->a", basis, rho).real  # v_a = tr(P_a rho)
        np.testing.assert_allclose(states[i, -1], coords[keep], atol=1e-9)
        assert np.abs(np.delete(coords, keep)).sum() < 1e-9  # dropped coordinates stay zero


def test_the_bloch_walk_is_tom_quantum_in_bloch_coordinates():
    """tom_quantum(alpha, beta) of the authors' code (Astera-org/simplexity), written out."""
    alpha, beta = 1.0, 4.3
    g2 = 1 / (4 * (alpha**2 + beta**2))
    c, m, o = 0.25, (alpha**2 - beta**2) * g2, 2 * alpha * beta * g2
    tom = np.array([[[c, 0, o], [0, m, 0], [o, 0, c]], [[c, 0, -o], [0, m, 0], [-o, 0, c]],
                    [[c, o, 0], [o, c, 0], [0, 0, m]], [[c, -o, 0], [-o, c, 0], [0, 0, m]]])
    p = load_process("bloch_walk")
    assert p.states == ["I", "X", "Z"] and p.symbols == ["z+", "z-", "x+", "x-"]
    np.testing.assert_allclose(p.T, tom, atol=1e-15)
    np.testing.assert_allclose(p.right, [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(p.stationary, [1, 0, 0], atol=1e-15)  # the fully mixed qubit
    states = p.chaos_game(2000, seed=0)
    assert np.linalg.norm(states[:, 1:], axis=1).max() <= 1 + 1e-9  # inside the Bloch disk


def test_the_hermitian_basis_is_orthogonal_with_the_identity_first():
    for d in (2, 3, 4):
        basis, labels = hermitian_basis(d)
        gram = np.einsum("aij,bji->ab", basis, basis)
        np.testing.assert_allclose(gram, d * np.eye(d * d), atol=1e-12)
        assert np.allclose(basis, basis.conj().transpose(0, 2, 1)) and labels[0] == "I"


def test_kraus_operators_that_are_not_an_instrument_are_refused():
    with pytest.raises(InvalidInput, match="not an instrument: sum_x K_x\\^\\+ K_x differs"):
        instrument_ghmm(bloch_walk_kraus(1.0, 4.3) * 1.1, "q")
    with pytest.raises(InvalidInput, match="alpha, beta >= 0, not both 0"):
        load_process("bloch_walk:alpha=0,beta=0")
