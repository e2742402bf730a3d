"""The data stream of a run: which n_ctx + 1 tokens update `step` trains on.

Fresh (the default): batch k is `process.sample(batch_size, n_ctx + 1, seed=data_seed(seed, k))`,
new sequences every step. Finite (`train_sequences` N): N sequences drawn once,
`process.sample(N, n_ctx + 1, seed=set_seed(seed, N))`, then visited epoch after epoch, each
epoch e in the seeded order `permutation(N)` of `default_rng(SeedSequence([seed, e, 2]))`; batch
k takes the rows k*batch_size .. (k+1)*batch_size - 1 of the epochs laid end to end (a batch may
straddle two epochs). Both are pure functions of (seed, step), so a resume needs no stream state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from hmm import HMM

MAX_TRAIN_TOKENS = 100_000_000  # train_sequences * (n_ctx + 1) held in memory at once


def data_seed(seed: int, step: int) -> int:
    """Seed of the batch for update `step`; distinct (seed, step) pairs give independent streams."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0])


def set_seed(seed: int, n_sequences: int) -> int:
    """Seed of a finite training set (three-word entropy: never equal to a data_seed)."""
    return int(np.random.SeedSequence([seed, n_sequences, 1]).generate_state(1, np.uint64)[0])


def training_batch(process: HMM, batch_size: int, n_ctx: int, seed: int, step: int) -> torch.Tensor:
    """The fresh batch for update `step`: (batch_size, n_ctx + 1) int64 — inputs x[:, :-1],
    targets x[:, 1:]."""
    tokens, _ = process.sample(batch_size, n_ctx + 1, seed=data_seed(seed, step))
    return torch.from_numpy(tokens)


def epoch_order(seed: int, epoch: int, n_sequences: int) -> np.ndarray:
    """The seeded order in which `epoch` visits a finite training set."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, 2])).permutation(n_sequences)


def finite_rows(
    seed: int,
    step: int,
    batch_size: int,
    n_sequences: int,
    order: Callable[[int, int, int], np.ndarray] = epoch_order,
) -> np.ndarray:
    """Rows of the finite training set that batch `step` takes: (batch_size,) int64.

    `order`: epoch_order or a cached copy of it."""
    flat = step * batch_size + np.arange(batch_size)
    epochs, slots = np.divmod(flat, n_sequences)
    rows = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        here = epochs == epoch
        rows[here] = order(seed, int(epoch), n_sequences)[slots[here]]
    return rows


class TrainingData:
    """The batches of one run (fresh or finite), on `device`: `batch(step)` -> (B, n_ctx + 1)."""

    def __init__(
        self,
        process: HMM,
        n_ctx: int,
        batch_size: int,
        seed: int,
        train_sequences: int | None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.process, self.n_ctx, self.batch_size, self.seed = process, n_ctx, batch_size, seed
        self.n_sequences, self.device = train_sequences, device
        self.fixed: torch.Tensor | None = None
        if train_sequences is not None:
            tokens, _ = process.sample(
                train_sequences, n_ctx + 1, seed=set_seed(seed, train_sequences)
            )
            self.fixed = torch.from_numpy(tokens)
        self._order = functools.lru_cache(maxsize=2)(epoch_order)  # the epochs in use

    def batch(self, step: int) -> torch.Tensor:
        if self.fixed is None:
            tokens = training_batch(self.process, self.batch_size, self.n_ctx, self.seed, step)
        else:
            rows = finite_rows(self.seed, step, self.batch_size, len(self.fixed), self._order)
            tokens = self.fixed[torch.from_numpy(rows)]
        return tokens.to(self.device)


def describe_stream(n_sequences: int | None) -> str:
    """The stream's recipe in words, for config.json."""
    if n_sequences is None:
        return (
            "x = process.sample(batch_size, n_ctx + 1, "
            "seed=SeedSequence([seed, step]).generate_state(1, uint64)[0])"
        )
    return (
        f"a fixed set X = process.sample({n_sequences}, n_ctx + 1, "
        f"seed=SeedSequence([seed, {n_sequences}, 1]).generate_state(1, uint64)[0]); epoch e "
        "visits X in the order permutation(N) of default_rng(SeedSequence([seed, e, 2])); "
        "batch k = rows k*batch_size..(k+1)*batch_size-1 of the epochs laid end to end"
    )
