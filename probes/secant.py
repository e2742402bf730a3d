"""Secant test: does a recurrent network forget its past at the filter's rate, on the manifold?

A network that carries the filter — its state h = phi(b) for some smooth injective phi of the
exact belief b on every reachable state — need not have the filter's Jacobian in any fixed
coordinates (the old W J W^+ projection fails even on such a network: W^+ points along directions
in which beliefs never vary), and its unrestricted Lyapunov exponent may differ from the filter's
(directions off the manifold of reachable states can do anything). What it cannot escape is this:
two reachable states fed the same future tokens stay images of two beliefs fed the same symbols,
so their separation shrinks at the belief's rate, up to the distortion of phi.

Pairs. Two windows of the trained length L share every token from `split` on and differ before
it (both prefixes sampled from the process; a pair whose shared future is impossible after one
prefix, or whose prefixes reach the same belief, is dropped). Separation at horizon k = 0..K
(K = L - split) is the Euclidean distance after token split - 1 + k, for the network state, the
probe read-out and the exact belief. The secant rate of each is the mean over pairs of
(log d_K - log d_0) / K, nats per token: the contraction of finite differences between reachable
states, the secant counterpart of a Lyapunov exponent.

Pass. If phi's secant stretch |phi(b) - phi(b')| / |b - b'| lies in [s_lo, s_hi] on reachable
pairs, each pair's g_k = log(d^state_k / d^belief_k) stays in [log s_lo, log s_hi] at every
horizon, so its rate differs from the belief's by at most log(s_hi / s_lo) / K. The distortion
log(s_hi / s_lo) is estimated from the pairs themselves at horizon 0 (where the two states are
unrelated reachable states, before any shared token acted) as the 5-95 % range of g_0. The test
passes when

    |rate_state - rate_belief| <= (q95(g_0) - q05(g_0)) / K + 2 SE,

SE the standard error of the per-pair rate difference over pairs. A network whose state keeps
(or loses) differences the belief has lost (or keeps) beyond what phi's distortion explains fails.
Passing is necessary, not sufficient, for carrying the filter: the probe's R² says whether the
belief can be read out at all. The read-out (the least-squares probe state -> belief) is held to
the same rule; its separations stop tracking the belief's once those fall below the probe's own
error (`readout_error_rms`), which is where "below the probe's resolution" starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hmm import HMM
from hmm.errors import InvalidInput

SEPARATION_FLOOR = 1e-13  # distances below this are "equal" in float64 (relative to O(1) states)
DISTORTION_QUANTILES = (0.05, 0.95)
NO_VERDICT = dict.fromkeys(("rate_gap", "tolerance", "distortion", "se", "passes"))


@dataclass
class SecantPairs:
    """Pairs of windows (n, L) sharing tokens from `split` on; their exact beliefs (n, L, S)."""

    first: np.ndarray
    second: np.ndarray
    beliefs_first: np.ndarray
    beliefs_second: np.ndarray
    split: int
    dropped: int

    @property
    def horizon(self) -> int:
        return self.first.shape[1] - self.split


def default_split(length: int) -> int:
    """Where pairs stop differing: a third into the window (1 for short windows), so the pairs
    start from many distinct reachable beliefs and still share most of the window."""
    return max(1, length // 3)


def secant_pairs(
    process: HMM, n_pairs: int, length: int, split: int | None = None, seed: int = 0
) -> SecantPairs:
    """Up to n_pairs pairs of windows of `length` tokens, sampled from `process` (seeded): the
    second window is another sampled prefix of `split` tokens followed by the first window's
    tokens from `split` on. Pairs whose shared future has probability zero after the second
    prefix, or whose prefixes end in the same belief, are dropped (counted in `dropped`)."""
    split = default_split(length) if split is None else int(split)
    if not 1 <= split < length:
        raise InvalidInput(f"the secant split must be in 1..{length - 1}, got {split}")
    windows, _ = process.sample(2 * n_pairs, length, seed=seed)
    first = windows[:n_pairs]
    second = np.concatenate([windows[n_pairs:, :split], first[:, split:]], axis=1)
    beliefs_first = process.beliefs(first)
    beliefs_second = process.beliefs(second, on_zero="nan")
    start = np.linalg.norm(beliefs_first[:, split - 1] - beliefs_second[:, split - 1], axis=-1)
    keep = np.isfinite(beliefs_second).all(axis=(1, 2)) & (start > SEPARATION_FLOOR)
    return SecantPairs(
        first[keep],
        second[keep],
        beliefs_first[keep],
        beliefs_second[keep],
        split,
        int((~keep).sum()),
    )


def log_separation(first: np.ndarray, second: np.ndarray, split: int) -> np.ndarray:
    """log |first - second| after tokens split-1 .. L-1: (n, L, D) twice -> (n, K + 1); distances
    below SEPARATION_FLOOR are floored there (a state that forgets in finite time)."""
    distance = np.linalg.norm(np.asarray(first) - np.asarray(second), axis=-1)[:, split - 1 :]
    return np.log(np.maximum(distance, SEPARATION_FLOOR))


def compare_rates(log_state: np.ndarray, log_belief: np.ndarray) -> dict:
    """The pass rule of the module doc for one separation (state or read-out) against the belief's:
    log separations (n, K + 1) each -> {"rate_gap", "tolerance", "distortion", "se", "passes"}."""
    n, horizon = log_state.shape[0], log_state.shape[1] - 1
    g = log_state - log_belief
    per_pair = (g[:, -1] - g[:, 0]) / horizon
    gap = float(per_pair.mean())
    se = float(per_pair.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    low, high = np.quantile(g[:, 0], DISTORTION_QUANTILES)
    distortion = float(high - low)
    tolerance = distortion / horizon + 2 * se
    return {
        "rate_gap": gap,
        "tolerance": tolerance,
        "distortion": distortion,
        "se": se,
        "passes": bool(abs(gap) <= tolerance + 1e-12),
    }


def secant_test(
    pairs: SecantPairs,
    states: tuple[np.ndarray, np.ndarray],
    readouts: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Secant rates of the network state, the probe read-out and the exact belief on `pairs`.

    states: the state after every token of pairs.first and pairs.second, (n, L, D) each (float64:
    separations reach 1e-7 of the state within a window); readouts: the probe's belief estimate
    from those states, (n, L, S) each. -> {"split", "horizon", "pairs", "dropped_pairs",
    "synchronised_pairs", "rate_state", "rate_readout", "rate_belief", "log_separation": {"state",
    "readout", "belief"} (mean over pairs at each horizon 0..K), "state_vs_belief",
    "readout_vs_belief" (compare_rates), "readout_error_rms"}; rates and verdicts null when
    fewer than two pairs are left (a filter that synchronises every pair).
    """
    split, horizon = pairs.split, pairs.horizon
    log_belief = log_separation(pairs.beliefs_first, pairs.beliefs_second, split)
    # a filter that synchronises (beliefs become equal) has no finite rate for that pair
    live = (log_belief > np.log(SEPARATION_FLOOR)).all(axis=1)
    parts = {"belief": log_belief, "state": log_separation(*states, split)}
    if readouts is not None:
        parts["readout"] = log_separation(*readouts, split)
    out: dict = {
        "split": split,
        "horizon": horizon,
        "pairs": int(live.sum()),
        "dropped_pairs": pairs.dropped,
        "synchronised_pairs": int((~live).sum()),
    }
    enough = live.sum() >= 2
    for name in ("state", "readout", "belief"):
        part = parts.get(name)
        usable = part is not None and enough
        out[f"rate_{name}"] = (
            float((part[live, -1] - part[live, 0]).mean() / horizon) if usable else None
        )
    out["log_separation"] = {
        name: part[live].mean(axis=0).tolist() if enough else None for name, part in parts.items()
    }
    for name in ("state", "readout"):
        if name in parts:
            out[f"{name}_vs_belief"] = (
                compare_rates(parts[name][live], log_belief[live]) if enough else dict(NO_VERDICT)
            )
    if readouts is not None:
        both = np.concatenate([readouts[0], readouts[1]])
        truth = np.concatenate([pairs.beliefs_first, pairs.beliefs_second])
        out["readout_error_rms"] = float(np.sqrt(((both - truth) ** 2).sum(-1).mean()))
    return out
