"""Probe inputs, belief targets and residual activations, collected through hook names only.

Rows are prefixes. A causal model's activation at position t depends only on the prefix x_0..x_t, so
when every sequence is enumerated the (sequence, position) rows that share a prefix are identical:
they are stored once, with weights that count them. This is exact (weighted least squares on the
collapsed rows equals least squares on all (sequence, position) rows) and cuts Mess3's 590,490 rows
to 88,572. Two weights per row and half of the sequence split:
  count  number of (sequence, position) rows of that half with this prefix (the unweighted scores);
  prob   summed probability of those sequences, i.e. the prefix probability restricted to the half
         (the probability-weighted scores; summing a sequence's probability over its continuations
         gives the probability of its prefix).
With a sample instead of the full enumeration each (sequence, position) is its own row with equal
weights, so the two scores coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hmm.errors import InvalidInput

MAX_ENUMERATED = 200_000
SAMPLE_SEQUENCES = 20_000


@dataclass
class ProbeInputs:
    """Inputs fed to the model and the rows the probes are fit and scored on.

    tokens (N, L) int64 input sequences; seq_probs (N,) their weight (exact probability, or 1/N
    for a sample); enumerated_total how many sequences the enumeration had (None: sampled; > N:
    a subset was kept); fit_sequences (N,) bool, the seeded half used for fitting; row_of (N, L)
    int64 the row of each (sequence, position); stored (N, L) bool where that row's activation is
    taken from (one True per row); beliefs (R, S) exact belief after each row's prefix;
    positions (R,) its last position t;
    fit_count, heldout_count, fit_prob, heldout_prob (R,) the row weights of each half (module doc);
    shuffled_beliefs (R, S) the control target of the fit rows (see `shuffled_row_beliefs`).
    """

    tokens: np.ndarray
    seq_probs: np.ndarray
    exact: bool
    enumerated_total: int | None
    fit_sequences: np.ndarray
    row_of: np.ndarray
    stored: np.ndarray
    beliefs: np.ndarray
    positions: np.ndarray
    fit_count: np.ndarray
    heldout_count: np.ndarray
    fit_prob: np.ndarray
    heldout_prob: np.ndarray
    shuffled_beliefs: np.ndarray

    @property
    def n_rows(self) -> int:
        return len(self.beliefs)

    @property
    def fit_rows(self) -> np.ndarray:
        """(R_fit,) indices of rows with any weight in the fit half."""
        return np.flatnonzero(self.fit_count > 0)

    @property
    def heldout_rows(self) -> np.ndarray:
        """(R_ho,) indices of rows with any weight in the held-out half."""
        return np.flatnonzero(self.heldout_count > 0)

    def summary(self) -> dict:
        """JSON-ready description of the inputs (for probes.json)."""
        return {
            "mode": "enumerated" if self.exact else "sampled",
            "sequences": int(len(self.tokens)),
            "enumerated_sequences": self.enumerated_total,
            "length": int(self.tokens.shape[1]),
            "rows": int(self.n_rows),
            "fit_sequences": int(self.fit_sequences.sum()),
            "heldout_sequences": int((~self.fit_sequences).sum()),
        }


def split_sequences(n: int, seed: int = 0) -> np.ndarray:
    """(n,) bool mask of the fit half: a seeded random floor(n/2) of the sequences."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return mask


def probe_inputs(
    process,
    length: int,
    seed: int = 0,
    max_enumerated: int = MAX_ENUMERATED,
    n_samples: int = SAMPLE_SEQUENCES,
    max_sequences: int | None = None,
) -> ProbeInputs:
    """All positive-probability sequences of `length` if V**length <= max_enumerated, else a sample.

    process: an hmm.HMM. The split into fit / held-out halves is by sequence, seeded by `seed` (the
    sample is seeded by `seed` too). max_sequences: keep a seeded uniform subset of that many
    enumerated sequences (weights stay their exact probabilities) — a cheaper, documented
    approximation for long checkpoint sweeps; None keeps all.
    """
    if length < 1:
        raise InvalidInput(f"probe sequence length must be >= 1, got {length}")
    if max_sequences is not None and max_sequences < 2:
        raise InvalidInput(f"max_sequences must be >= 2 (one per half), got {max_sequences}")
    exact = process.n_symbols**length <= max_enumerated
    if exact:
        tokens, probs = process.enumerate(length)
        probs = np.asarray(probs, dtype=np.float64)
        total = len(tokens)
        if max_sequences is not None and max_sequences < len(tokens):
            rng = np.random.default_rng(seed + 2)
            keep = np.sort(rng.choice(len(tokens), size=max_sequences, replace=False))
            tokens, probs = tokens[keep], probs[keep]
    else:
        tokens, _ = process.sample(n_samples, length, seed=seed)
        probs = np.full(len(tokens), 1.0 / len(tokens))
        total = None
    tokens = np.asarray(tokens, dtype=np.int64)
    n, length = tokens.shape
    fit = split_sequences(n, seed)
    beliefs = np.asarray(process.beliefs(tokens), dtype=np.float64)

    row_of = np.empty((n, length), dtype=np.int64)
    stored = np.zeros((n, length), dtype=bool)
    if exact:
        code = np.zeros(n, dtype=np.int64)
        offset = 0
        for t in range(length):
            code = code * process.n_symbols + tokens[:, t]
            _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
            row_of[:, t] = offset + inverse
            stored[first, t] = True
            offset += len(first)
    else:
        row_of[:] = np.arange(n * length).reshape(n, length)
        stored[:] = True
    n_rows = int(row_of.max()) + 1

    flat_rows = row_of.ravel()
    seq_of = np.repeat(np.arange(n), length)

    def per_row(values: np.ndarray) -> np.ndarray:
        return np.bincount(flat_rows, weights=values[seq_of], minlength=n_rows)

    order = np.argsort(row_of[stored])
    row_beliefs = beliefs[stored][order]
    fit_count = per_row(fit.astype(np.float64))
    return ProbeInputs(
        tokens=tokens,
        seq_probs=probs,
        exact=exact,
        enumerated_total=total,
        fit_sequences=fit,
        row_of=row_of,
        stored=stored,
        beliefs=row_beliefs,
        positions=np.nonzero(stored)[1][order],
        fit_count=fit_count,
        heldout_count=per_row((~fit).astype(np.float64)),
        fit_prob=per_row(np.where(fit, probs, 0.0)),
        heldout_prob=per_row(np.where(fit, 0.0, probs)),
        shuffled_beliefs=shuffled_row_beliefs(row_beliefs, row_of[fit], fit_count, seed),
    )


def shuffled_row_beliefs(
    row_beliefs: np.ndarray, rows: np.ndarray, count: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Control targets: the (sequence, position) instances `rows` (any shape, row indices) get their
    beliefs permuted (seeded); each row's target is the mean over its instances -> (R, S).

    Least squares with weights `count` on these means equals least squares on the shuffled rows
    themselves (sum_i x_row(i) y_perm(i) = sum_r x_r * sum_{i in r} y_perm(i)), so the control is an
    exact row shuffle even though identical prefixes are stored once. Rows without instances: NaN.
    """
    flat = rows.ravel()
    permuted = row_beliefs[flat][np.random.default_rng(seed + 1).permutation(len(flat))]
    sums = np.stack(
        [np.bincount(flat, weights=permuted[:, k], minlength=len(row_beliefs))
         for k in range(row_beliefs.shape[1])],
        axis=1,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / count[:, None]


@dataclass
class Activations:
    """Per-row activations of one model: hooks {name: (R, d) float32} and next_token (R, V) float32
    probabilities (the model's next-token distribution per row)."""

    hooks: dict[str, np.ndarray]
    next_token: np.ndarray


def check_hooks(model, hooks: list[str]) -> None:
    """InvalidInput unless every name is a hook point of `model`."""
    known = set(model.hook_dict)
    missing = [name for name in hooks if name not in known]
    if missing:
        raise InvalidInput(
            f"unknown hook name(s) {', '.join(missing)}; this model's residual hooks are listed "
            "by models.residual_hooks (e.g. blocks.0.hook_resid_post)"
        )
    if not hooks:
        raise InvalidInput("no hooks to probe; give at least one hook name")


def collect_activations(
    model, inputs: ProbeInputs, hooks: list[str], batch_size: int = 2048
) -> Activations:
    """Run every input sequence through `model` in batches (no grad) and keep each row's activation.

    Only the requested hooks are cached (names_filter) and each batch is reduced to the rows it
    stores before the next one runs, so memory is R x (sum of hook widths) float32 plus one batch.
    """
    check_hooks(model, hooks)
    wanted = set(hooks)
    buffers: dict[str, np.ndarray] = {}
    next_token = None
    n_rows = inputs.n_rows
    with torch.no_grad():
        for start in range(0, len(inputs.tokens), batch_size):
            stop = min(start + batch_size, len(inputs.tokens))
            keep = inputs.stored[start:stop]
            if not keep.any():
                continue
            rows = inputs.row_of[start:stop][keep]
            logits, cache = model.run_with_cache(
                torch.from_numpy(inputs.tokens[start:stop]),
                names_filter=lambda name: name in wanted,
            )
            keep_t = torch.from_numpy(keep)
            for name in hooks:
                if cache[name].shape[:2] != keep.shape or cache[name].ndim != 3:
                    raise InvalidInput(
                        f"hook {name} gives activations of shape {tuple(cache[name].shape)}; "
                        "belief probes need (batch, position, width), e.g. a residual hook"
                    )
                act = cache[name][keep_t].float().numpy()
                if name not in buffers:
                    buffers[name] = np.empty((n_rows, act.shape[-1]), dtype=np.float32)
                buffers[name][rows] = act
            probs = torch.softmax(logits.float(), dim=-1)[keep_t].numpy()
            if next_token is None:
                next_token = np.empty((n_rows, probs.shape[-1]), dtype=np.float32)
            next_token[rows] = probs
            del cache, logits
    return Activations(hooks=buffers, next_token=next_token)
