"""Quantum instruments as generalized HMMs, in a Hermitian operator basis.

A d-level system measured repeatedly: symbol x occurs with probability tr(sum_r K_xr rho K_xr^+)
and leaves the state sum_r K_xr rho K_xr^+ / P(x) (an instrument: Kraus operators K_xr per
symbol with sum_{x,r} K_xr^+ K_xr = I; Nielsen & Chuang 2010, sec. 8.2). In the Hermitian basis
P_0 = I, P_1..P_{d^2-1} with tr(P_a P_b) = d delta_ab (the Pauli matrices for a qubit) a density
matrix is rho = (1/d) sum_a v_a P_a with real coordinates v_a = tr(P_a rho), and the instrument
is the GHMM

    T[x][a, b] = (1/d) sum_r tr(P_b K_xr P_a K_xr^+),    tau = e_0 (v_0 = tr rho = 1),

acting on row vectors as every process here does (Riechers, Elliott & Shai 2025, arXiv
2507.07432, where such processes are "nominally quantum"). A qubit's state is then
(1, r_x, r_y, r_z): its Bloch vector. `instrument_ghmm` keeps only the coordinates the process
reaches (the Bloch walk never leaves the x-z plane, so its states are (1, r_x, r_z)), and labels
them with the basis names, which hmm.plots reads to draw Bloch coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hmm.errors import InvalidInput
from hmm.process import GHMM
from hmm.validity import eigen_one

PAULI = {
    "I": np.eye(2, dtype=complex),
    "X": np.array([[0, 1], [1, 0]], dtype=complex),
    "Y": np.array([[0, -1j], [1j, 0]]),
    "Z": np.array([[1, 0], [0, -1]], dtype=complex),
}
COMPLETENESS_TOL = 1e-9


def hermitian_basis(d: int) -> tuple[np.ndarray, list[str]]:
    """(basis (d^2, d, d) complex, labels): P_0 = I and Hermitian P_a with tr(P_a P_b) = d delta_ab.

    d = 2: I, X, Y, Z (Pauli). d > 2: sqrt(d/2) times the generalized Gell-Mann matrices, labelled
    S{j}{k} (symmetric), A{j}{k} (antisymmetric) and D{k} (diagonal).
    """
    if d == 2:
        return np.stack(list(PAULI.values())), list(PAULI)
    basis, labels = [np.eye(d, dtype=complex)], ["I"]
    for j in range(d):
        for k in range(j + 1, d):
            sym, anti = np.zeros((d, d), complex), np.zeros((d, d), complex)
            sym[j, k] = sym[k, j] = 1
            anti[j, k], anti[k, j] = -1j, 1j
            basis += [sym, anti]
            labels += [f"S{j}{k}", f"A{j}{k}"]
    for k in range(1, d):
        diag = np.zeros((d, d), complex)
        diag[np.arange(k), np.arange(k)] = 1
        diag[k, k] = -k
        basis.append(diag * np.sqrt(2 / (k * (k + 1))))
        labels.append(f"D{k}")
    out = np.stack(basis)
    out[1:] *= np.sqrt(d / 2)  # Gell-Mann normalisation tr = 2 delta -> tr = d delta
    return out, labels


def instrument_matrices(kraus: np.ndarray) -> np.ndarray:
    """The GHMM of an instrument in the basis of `hermitian_basis`: kraus (V, r, d, d) complex
    (r Kraus operators per symbol) -> T (V, d^2, d^2) real, T[x][a, b] as in the module doc."""
    kraus = _check_instrument(kraus)
    d = kraus.shape[-1]
    basis, _ = hermitian_basis(d)
    # T[x, a, b] = sum_r tr(P_b K P_a K^+) / d
    T = np.einsum("bpq,xrqs,ast,xrpt->xab", basis, kraus, basis, kraus.conj()) / d
    return np.ascontiguousarray(T.real)


def instrument_ghmm(
    kraus: np.ndarray, name: str, symbols: Sequence[str] | None = None
) -> GHMM:
    """A validated GHMM of the instrument `kraus` (V, r, d, d) or (V, d, d), restricted to the
    basis coordinates its states reach from the stationary state (labelled by basis name)."""
    T = instrument_matrices(kraus)
    _, labels = hermitian_basis(int(np.sqrt(T.shape[1])))
    keep = reached_coordinates(T)
    trace = np.eye(len(keep))[0]  # tau = e_0 exactly: P(w) = tr(rho_w), no eigen-solve residue
    return GHMM(T[:, keep][:, :, keep], name=name, states=[labels[a] for a in keep],
                symbols=symbols, right=trace)


def reached_coordinates(T: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Indices of the coordinates not identically zero on the span of the states reached from the
    stationary state (all of them when that state is not unique; GHMM then says why).

    Restricting T to them is exact: the reached span is invariant under every T[x]."""
    lefts = eigen_one(T.sum(axis=0).T)
    if len(lefts) != 1:
        return np.arange(T.shape[1])
    span = _orthonormal(lefts)
    while True:
        grown = _orthonormal(np.vstack([span, *(span @ T[x] for x in range(len(T)))]))
        if len(grown) == len(span):
            break
        span = grown
    keep = np.abs(span).max(axis=0) > tol
    keep[0] = True  # the trace coordinate carries tau
    return np.flatnonzero(keep)


def _orthonormal(rows: np.ndarray) -> np.ndarray:
    _, sv, vt = np.linalg.svd(rows, full_matrices=False)
    return vt[sv > 1e-10 * max(1.0, sv.max())]


def _check_instrument(kraus: np.ndarray) -> np.ndarray:
    kraus = np.asarray(kraus, dtype=complex)
    if kraus.ndim == 3:
        kraus = kraus[:, None]
    if kraus.ndim != 4 or kraus.shape[-1] != kraus.shape[-2] or kraus.shape[-1] < 2:
        raise InvalidInput(
            f"Kraus operators must have shape (symbols, [per symbol,] d, d) with d >= 2; "
            f"got {kraus.shape}"
        )
    total = np.einsum("xrpa,xrpb->ab", kraus.conj(), kraus)
    error = np.abs(total - np.eye(kraus.shape[-1])).max()
    if error > COMPLETENESS_TOL:
        raise InvalidInput(
            f"the Kraus operators are not an instrument: sum_x K_x^+ K_x differs from the "
            f"identity by {error:.3g}; the outcome probabilities would not sum to 1"
        )
    return kraus


def bloch_walk_kraus(alpha: float, beta: float) -> np.ndarray:
    """Kraus operators (4, 2, 2) of the Bloch walk: K_{a,+-} = (alpha I +- beta sigma_a) /
    (2 sqrt(alpha^2 + beta^2)), a = z then x; symbols z+, z-, x+, x-.

    Each step measures the qubit weakly along z or x (probability 1/2 each), with strength
    2 alpha beta / (alpha^2 + beta^2) and transverse factor (alpha^2 - beta^2) / (alpha^2 + beta^2)
    (negative when beta > alpha: the Kraus operator also flips the transverse axis). Its GHMM in
    (I, X, Z) coordinates equals `tom_quantum(alpha, beta)` of the authors' code (Astera-org/
    simplexity, generative_processes/transition_matrices.py), tested in tests/hmm/test_quantum.py.
    """
    if alpha < 0 or beta < 0 or alpha + beta == 0:
        raise InvalidInput(f"bloch_walk needs alpha, beta >= 0, not both 0; got {alpha}, {beta}")
    scale = 2 * np.sqrt(alpha**2 + beta**2)
    return np.stack([(alpha * PAULI["I"] + sign * beta * PAULI[axis]) / scale
                     for axis in ("Z", "X") for sign in (1, -1)])
