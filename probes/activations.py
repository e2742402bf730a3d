"""Probe inputs, belief targets, the fit / held-out split and residual activations by hook name.

Rows are prefixes. A causal model's activation at position t depends only on the prefix x_0..x_t, so
when every sequence is enumerated the (sequence, position) rows that share a prefix are identical:
they are stored once, with weights that count them. This is exact (weighted least squares on the
collapsed rows equals least squares on all (sequence, position) rows) and cuts Mess3's 590,490 rows
to 88,572; the model runs one token step per row (models.prefix_forward, a KV cache over the
prefix tree) where it can, else one batched forward per sequence. Two weights per row and half:
  count  number of (sequence, position) rows of that half with this prefix (the unweighted scores);
  prob   summed probability of those sequences, i.e. the prefix probability restricted to the half
         (the probability-weighted scores).
With a sample instead of the full enumeration each (sequence, position) is its own row with equal
weights, so the two scores coincide.

Splits (by whole sequences, seeded):
  subtree  (default) the distinct first-m-token prefixes (m = prefix_len, default 2) are split in
           two and every sequence goes with its first m tokens, so a held-out prefix longer than m
           is never fitted: held-out scores measure generalisation to unseen branches of the tree.
  random   a random half of the sequences. Short prefixes are shared by both halves, so most of
           the held-out weight sits on prefixes that were also fitted (Mess3, 10 positions: ~0.87).
`shared_prefix_weight`: the held-out probability weight on prefixes that also occur in the fit half.

The fit half is cut the same way into CV_FOLDS folds, which choose each probe's ridge strength by
cross-validation: subtree splits by the fit sequences' first-j-token prefixes (the smallest j >= m
giving at least CV_FOLDS of them, dealt round-robin), random splits by random sequences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hmm.errors import InvalidInput
from hmm.msp import ENUMERABLE_SEQUENCES
from models.prefix_forward import prefix_activations

SAMPLE_SEQUENCES = 20_000
SPLITS = ("subtree", "random")
DEFAULT_SPLIT = "subtree"
DEFAULT_PREFIX_LEN = 2
CV_FOLDS = 5
BYTES_PER_ACTIVATION = 16  # float32 activations + float32 fit copy + float64 held-out copy
# readable probes: the fit half holds at least this many distinct prefixes per probe feature
ROWS_PER_FEATURE = 10


@dataclass
class ProbeInputs:
    """Inputs fed to the model and the rows the probes are fit and scored on.

    tokens (N, L) int64 input sequences; seq_probs (N,) their weight (exact probability, or 1/N
    for a sample); enumerated_total how many sequences the enumeration had (None: sampled; > N:
    a subset was kept); fit_sequences (N,) bool, the fit half; row_of (N, L) int64 the row of each
    (sequence, position); stored (N, L) bool where that row's activation is taken from (one True
    per row); beliefs (R, S) exact belief after each row's prefix; positions (R,) its last
    position t; last_token (R,) its last token; ancestors (R, L) ancestors[r, j] the row of its
    length-(j+1) prefix (j <= t); fit_count, heldout_count, fit_prob, heldout_prob (R,) the row
    weights of each half (module doc); shuffled_beliefs (R, S) the control target of the fit rows
    (see `shuffled_row_beliefs`); fold_count (K, R) the fit half's row weights fold by fold (they
    sum to fit_count; module doc); split {"kind", "prefix_len", "shared_prefix_weight", "seed"};
    targets {name: (R, k)} the process's probe targets beyond the belief (hmm probe_targets:
    "component" for a mixture, "factors" for a product; empty for a plain process).
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
    last_token: np.ndarray
    ancestors: np.ndarray
    fit_count: np.ndarray
    heldout_count: np.ndarray
    fit_prob: np.ndarray
    heldout_prob: np.ndarray
    shuffled_beliefs: np.ndarray
    fold_count: np.ndarray
    split: dict
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return len(self.beliefs)

    @property
    def every_input(self) -> bool:
        """Every input sequence is here (enumerated, no subset): cell means are exact."""
        return self.exact and self.enumerated_total == len(self.tokens)

    @property
    def fit_rows(self) -> np.ndarray:
        """(R_fit,) indices of rows with any weight in the fit half."""
        return np.flatnonzero(self.fit_count > 0)

    @property
    def heldout_rows(self) -> np.ndarray:
        """(R_ho,) indices of rows with any weight in the held-out half."""
        return np.flatnonzero(self.heldout_count > 0)

    @property
    def fit_prefixes(self) -> int:
        """Distinct prefixes (of any probed length) among the fit sequences: the rows a probe is
        really fit on (sampled rows repeat short prefixes)."""
        fit = self.tokens[self.fit_sequences]
        if self.exact:
            return int(len(self.fit_rows))
        return sum(len(np.unique(fit[:, : t + 1], axis=0)) for t in range(fit.shape[1]))

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
            "fit_prefixes": self.fit_prefixes,
        }


def fit_rows_needed(features: int) -> int:
    """Distinct fit-half prefixes a probe with `features` inputs (plus intercept) needs to be
    read: ROWS_PER_FEATURE per parameter."""
    return ROWS_PER_FEATURE * (features + 1)


def sample_sequences(width: int, length: int) -> int:
    """Sampled inputs (when the sequences cannot be enumerated): SAMPLE_SEQUENCES, or more if
    half of them (the fit half), length positions each, falls short of fit_rows_needed(width)."""
    return max(SAMPLE_SEQUENCES, -(-2 * fit_rows_needed(width) // max(length, 1)))


def split_sequences(n: int, seed: int = 0) -> np.ndarray:
    """(n,) bool mask of the fit half: a seeded random floor(n/2) of the sequences."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[: n // 2]] = True
    return mask


def split_subtrees(tokens: np.ndarray, prefix_len: int, seed: int = 0) -> np.ndarray:
    """(N,) bool fit mask: sequences whose first `prefix_len` tokens are in a seeded half
    (ceil(K/2) of the K distinct prefixes present) fit, the others are held out."""
    if not 1 <= prefix_len <= tokens.shape[1]:
        raise InvalidInput(
            f"split prefix length must be between 1 and the probed length {tokens.shape[1]}, "
            f"got {prefix_len}"
        )
    prefixes, which = np.unique(tokens[:, :prefix_len], axis=0, return_inverse=True)
    if len(prefixes) < 2:
        raise InvalidInput(
            f"only one distinct first-{prefix_len}-token prefix occurs, so a split by prefix "
            "subtree has no held-out half; use a longer split prefix or the random split"
        )
    order = np.random.default_rng(seed).permutation(len(prefixes))
    fit_prefixes = order[: len(prefixes) - len(prefixes) // 2]
    return np.isin(which.ravel(), fit_prefixes)


def fit_folds(
    tokens: np.ndarray, fit: np.ndarray, split: str, prefix_len: int, seed: int = 0
) -> np.ndarray:
    """(N,) int fold of each fit sequence, -1 for held-out ones (module doc)."""
    folds = np.full(len(tokens), -1, dtype=np.int64)
    members = np.flatnonzero(fit)
    if split == "random":
        order = np.random.default_rng(seed + 3).permutation(len(members))
        folds[members[order]] = np.arange(len(members)) % CV_FOLDS
        return folds
    for j in range(prefix_len, tokens.shape[1] + 1):
        _, group = np.unique(tokens[members, :j], axis=0, return_inverse=True)
        if group.max() + 1 >= CV_FOLDS or j == tokens.shape[1]:
            break
    folds[members] = group.ravel() % CV_FOLDS
    return folds


def probe_inputs(
    process,
    length: int,
    seed: int = 0,
    max_enumerated: int = ENUMERABLE_SEQUENCES,
    n_samples: int = SAMPLE_SEQUENCES,
    max_sequences: int | None = None,
    split: str = DEFAULT_SPLIT,
    prefix_len: int = DEFAULT_PREFIX_LEN,
) -> ProbeInputs:
    """All positive-probability sequences of `length` if V**length <= max_enumerated, else a sample.

    process: an hmm.HMM; length: the probed positions 0..length-1 (only trained ones). The split
    (module doc) is seeded by `seed`, as is the sample. max_sequences: keep a seeded uniform subset
    of that many enumerated sequences (weights stay their exact probabilities), a cheaper,
    documented approximation; None keeps all.
    """
    _check_probe_args(length, max_sequences, split)
    tokens, probs, total = _sequences(process, length, seed, max_enumerated, n_samples,
                                      max_sequences)
    if split == "random":
        fit = split_sequences(len(tokens), seed)
    else:
        fit = split_subtrees(tokens, prefix_len, seed)
    beliefs = np.asarray(process.beliefs(tokens), dtype=np.float64)
    row_of, stored = _prefix_rows(tokens, process.n_symbols, total is not None)
    seqs, ts = np.nonzero(stored)
    rows = row_of[seqs, ts]
    order = np.argsort(rows)
    ancestors = np.empty((int(row_of.max()) + 1, tokens.shape[1]), dtype=np.int64)
    ancestors[rows] = row_of[seqs]
    fit_count = _per_row(row_of, fit.astype(np.float64))
    heldout_prob = _per_row(row_of, np.where(fit, 0.0, probs))
    shared = heldout_prob[fit_count > 0].sum() / max(heldout_prob.sum(), np.finfo(float).tiny)
    folds = fit_folds(tokens, fit, split, prefix_len, seed)
    fold_count = np.stack([_per_row(row_of, (folds == f).astype(float))
                           for f in range(folds.max() + 1)])
    row_beliefs = beliefs[seqs, ts][order]
    return ProbeInputs(
        tokens=tokens, seq_probs=probs, exact=total is not None, enumerated_total=total,
        fit_sequences=fit, row_of=row_of, stored=stored,
        beliefs=row_beliefs, positions=ts[order], last_token=tokens[seqs, ts][order],
        ancestors=ancestors, fit_count=fit_count,
        heldout_count=_per_row(row_of, (~fit).astype(np.float64)),
        fit_prob=_per_row(row_of, np.where(fit, probs, 0.0)), heldout_prob=heldout_prob,
        shuffled_beliefs=shuffled_row_beliefs(row_beliefs, row_of[fit], fit_count, seed),
        fold_count=fold_count,
        split={"kind": split, "prefix_len": prefix_len if split == "subtree" else None,
               "seed": seed, "shared_prefix_weight": float(shared)},
        targets=extra_targets(process, row_beliefs),
    )


def _check_probe_args(length: int, max_sequences: int | None, split: str) -> None:
    """probe_inputs' arguments, refused with a message before any work."""
    if length < 1:
        raise InvalidInput(f"probe sequence length must be >= 1, got {length}")
    if max_sequences is not None and max_sequences < 2:
        raise InvalidInput(f"max_sequences must be >= 2 (one per half), got {max_sequences}")
    if split not in SPLITS:
        raise InvalidInput(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")


def _per_row(row_of: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per-sequence values (N,) summed into the prefix rows (n_rows,) the sequences pass through."""
    return np.bincount(row_of.ravel(), weights=np.repeat(values, row_of.shape[1]),
                       minlength=int(row_of.max()) + 1)


def extra_targets(process, beliefs: np.ndarray) -> dict[str, np.ndarray]:
    """The process's probe targets other than "belief" for rows of beliefs (R, S), float64
    (hmm probe_targets); empty for a plain process, so it costs nothing there."""
    targets = getattr(process, "probe_targets", None)
    if targets is None:
        return {}
    return {name: np.asarray(Y, dtype=np.float64) for name, Y in targets(beliefs).items()
            if name != "belief"}


def _sequences(process, length, seed, max_enumerated, n_samples, max_sequences):
    """(tokens (N, L) int64, weights (N,), enumerated total or None for a sample)."""
    if process.n_symbols**length <= max_enumerated:
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
    return np.asarray(tokens, dtype=np.int64), probs, total


def _prefix_rows(tokens: np.ndarray, n_symbols: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """row_of (N, L), stored (N, L): one row per distinct prefix (enumerated) or per (seq, t),
    numbered level by level (every row of position t before any of t + 1)."""
    n, length = tokens.shape
    row_of = np.empty((n, length), dtype=np.int64)
    stored = np.zeros((n, length), dtype=bool)
    if not exact:
        row_of[:] = np.arange(n * length).reshape(length, n).T  # level by level
        stored[:] = True
        return row_of, stored
    code = np.zeros(n, dtype=np.int64)
    offset = 0
    for t in range(length):
        code = code * n_symbols + tokens[:, t]
        _, first, inverse = np.unique(code, return_index=True, return_inverse=True)
        row_of[:, t] = offset + inverse
        stored[first, t] = True
        offset += len(first)
    return row_of, stored


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


def kgram_cells(inputs: ProbeInputs, k: int) -> np.ndarray:
    """(R,) int64 cell of each row for a lookup of its last k tokens, truncated at the sequence
    start: rows share a cell iff their last min(t + 1, k) tokens (and that length) agree."""
    if k < 1:
        raise InvalidInput(f"k-gram length must be >= 1, got {k}")
    t = inputs.positions
    base = int(inputs.last_token.max(initial=0)) + 2  # digit 0 = before the sequence start
    if base**k >= 2**62:
        raise InvalidInput(f"a {k}-gram over {base - 1} symbols is too large to key")
    code = np.zeros(inputs.n_rows, dtype=np.int64)
    for back in range(k):  # digit `back` = the token `back` steps before the last one, plus 1
        has = t >= back
        digit = np.zeros(inputs.n_rows, dtype=np.int64)
        digit[has] = 1 + inputs.last_token[inputs.ancestors[np.flatnonzero(has), t[has] - back]]
        code = code * base + digit
    return np.unique(code, return_inverse=True)[1].ravel().astype(np.int64)


@dataclass
class Activations:
    """Per-row activations of one model: hooks {name: (R, d) float32} and next_token (R, V) float32
    probabilities (the model's next-token distribution per row)."""

    hooks: dict[str, np.ndarray]
    next_token: np.ndarray


def check_hooks(model, hooks: list[str], run: str | Path = "RUN") -> None:
    """InvalidInput unless every name is a hook point of `model` (of run folder `run`)."""
    known = set(model.hook_dict)
    missing = [name for name in hooks if name not in known]
    if missing:
        raise InvalidInput(
            f"unknown hook name(s) {', '.join(missing)}; `beliefgeo hooks {run}` lists this "
            "model's hooks (e.g. blocks.0.hook_resid_post)"
        )
    if not hooks:
        raise InvalidInput("no hooks to probe; give at least one hook name")


def check_memory(inputs: ProbeInputs, width: int) -> None:
    """InvalidInput before allocating R x width activations (and the probe's copies) that do not
    fit in memory; says how many sequences would (hmm.memory.check_fits)."""
    from hmm.memory import check_fits

    per_sequence = BYTES_PER_ACTIVATION * width * inputs.n_rows / max(len(inputs.tokens), 1)
    check_fits(
        int(BYTES_PER_ACTIVATION * width * inputs.n_rows),
        f"probing {inputs.n_rows:,} prefixes x {width} activation columns",
        lambda available: f"--max-sequences {int(available // max(per_sequence, 1))}",
    )


def collect_activations(
    model, inputs: ProbeInputs, hooks: list[str], batch_size: int = 2048
) -> Activations:
    """Every row's activation at each hook (no grad): one token step per prefix through
    models.prefix_forward when it covers the model, else batched run_with_cache per sequence,
    keeping only the rows each batch stores. Memory: R x (sum of hook widths) float32."""
    check_hooks(model, hooks)
    _check_shapes(model, inputs, hooks)
    fast = prefix_activations(
        model, inputs.last_token, inputs.positions, inputs.ancestors, hooks
    )
    if fast is not None:
        acts, logits = fast
        return Activations(
            hooks={h: acts[h].numpy() for h in hooks},
            next_token=torch.softmax(logits, dim=-1).numpy(),
        )
    return _collect_by_sequence(model, inputs, hooks, batch_size)


def _check_shapes(model, inputs: ProbeInputs, hooks: list[str]) -> None:
    """One sequence through run_with_cache: every hook is (batch, position, width); memory fits."""
    wanted = set(hooks)
    with torch.no_grad():
        _, cache = model.run_with_cache(
            torch.from_numpy(inputs.tokens[:1]), names_filter=lambda name: name in wanted
        )
    for name in hooks:
        if cache[name].ndim != 3 or cache[name].shape[:2] != inputs.tokens[:1].shape:
            raise InvalidInput(
                f"hook {name} gives activations of shape {tuple(cache[name].shape)}; "
                "belief probes need (batch, position, width), e.g. a residual hook"
            )
    check_memory(inputs, sum(int(cache[name].shape[-1]) for name in hooks))


def _collect_by_sequence(model, inputs: ProbeInputs, hooks: list[str], batch_size: int):
    wanted = set(hooks)
    buffers: dict[str, np.ndarray] = {}
    next_token = None
    with torch.no_grad():
        for start in range(0, len(inputs.tokens), batch_size):
            keep = inputs.stored[start : start + batch_size]
            if not keep.any():
                continue
            rows = inputs.row_of[start : start + batch_size][keep]
            logits, cache = model.run_with_cache(
                torch.from_numpy(inputs.tokens[start : start + batch_size]),
                names_filter=lambda name: name in wanted,
            )
            keep_t = torch.from_numpy(keep)
            for name in hooks:
                act = cache[name][keep_t].float().numpy()
                if name not in buffers:
                    buffers[name] = np.empty((inputs.n_rows, act.shape[-1]), dtype=np.float32)
                buffers[name][rows] = act
            probs = torch.softmax(logits.float(), dim=-1)[keep_t].numpy()
            if next_token is None:
                next_token = np.empty((inputs.n_rows, probs.shape[-1]), dtype=np.float32)
            next_token[rows] = probs
            del cache, logits
    return Activations(hooks=buffers, next_token=next_token)
