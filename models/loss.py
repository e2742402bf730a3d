"""The next-token loss, per position, and its exact expectation over every sequence of a process.

The training loss (models/training.py) and the exact evaluation score the same positions: for a
window x of n_ctx + 1 tokens, the logits at input positions 0..n_ctx-1 (inputs x[:, :-1])
against the targets x[:, 1:].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from hmm import HMM
from hmm.msp import expand_level
from models.prefix_forward import prefix_activations


def next_token_losses(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each logit position against the token after it, nats.

    logits (n, L, V). tokens (n, L + 1), the training window (inputs tokens[:, :-1]): every
    position 0..L-1 is scored against tokens[:, 1:] -> (n, L). tokens (n, L), the inputs only:
    the last position has no target, so positions 0..L-2 are scored -> (n, L - 1).
    """
    n, length, vocab = logits.shape
    if tokens.shape[1] == length:
        logits = logits[:, :-1]
    elif tokens.shape[1] != length + 1:
        raise ValueError(f"tokens {tuple(tokens.shape)} do not fit logits {tuple(logits.shape)}")
    return F.cross_entropy(
        logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1), reduction="none"
    ).view(n, -1)


class ExactEvaluator:
    """Exact expected next-token loss of a model over every sequence of a process.

    The positions are the training loss's: logits at input positions 0..n_ctx-1 against tokens
    1..n_ctx of every length-(n_ctx+1) sequence. By causality the logits at position t depend on
    tokens 0..t only, so the n_ctx-token inputs with their exact probabilities P(input) and true
    next-token distributions P(. | input_{0..t}) = process.predictive(belief_t) give that
    expectation exactly (V**n_ctx forward rows instead of V**(n_ctx+1)):
    sum_input P(input) mean_t sum_x P(x | input_{<=t}) (-log q(x | input_{<=t})).
    Given the model on the CPU, a LayerNorm transformer runs each distinct prefix once instead
    (models.prefix_forward: Mess3 at n_ctx 10, 88,572 token steps instead of 590,490), the same
    sum grouped by prefix: mean_t sum_{prefix of length t+1} P(prefix) CE(prefix).
    """

    def __init__(
        self, process: HMM, n_ctx: int, batch: int = 2048, optimal: list[float] | None = None
    ) -> None:
        """`optimal`: the optimal loss by position if the caller has it (computed otherwise)."""
        tokens, probs = process.enumerate(n_ctx)
        self.tokens = torch.from_numpy(tokens)
        self.probs = torch.from_numpy(probs)
        beliefs = process.beliefs(tokens)
        self.true_next = torch.from_numpy(process.predictive(beliefs))  # (N, n_ctx, V)
        self.optimal = (
            process.optimal_loss(n_ctx + 1)[1:] if optimal is None else np.asarray(optimal, float)
        )
        self.batch = batch
        self.process, self.tree = process, None

    @torch.inference_mode()
    def __call__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        model: torch.nn.Module | None = None,
    ) -> tuple[float, float]:
        """(exact mean loss over input positions 0..n_ctx-1, exact excess over the optimum), nats.

        `forward`: tokens (n, L) on `device` -> logits (n, L, V), e.g. training_forward(model).
        `model`: the model itself, which lets a CPU transformer take the prefix-tree path.
        """
        loss = float(self.by_position(forward, device, model).mean())
        return loss, loss - float(self.optimal.mean())

    @torch.inference_mode()
    def by_position(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device = "cpu",
        model: torch.nn.Module | None = None,
    ) -> np.ndarray:
        """The exact expected loss at each input position 0..n_ctx-1: (n_ctx,) nats (the
        in-context-learning curve of the model, beside `self.optimal`, the process's)."""
        if model is not None and torch.device(device).type == "cpu":
            found = self._by_prefix(model)
            if found is not None:
                return found
        by_position = torch.zeros(self.tokens.shape[1], dtype=torch.float64)
        for start in range(0, len(self.tokens), self.batch):
            chunk = slice(start, start + self.batch)
            # float64 softmax: the excess loss is ~1e-4 nats, far above this rounding
            logq = F.log_softmax(forward(self.tokens[chunk].to(device)).cpu().double(), dim=-1)
            p_next = self.true_next[chunk]
            cross = -torch.where(p_next > 0, p_next * logq, torch.zeros_like(logq)).sum(-1)
            by_position += self.probs[chunk] @ cross
        return by_position.numpy()

    def _by_prefix(self, model: torch.nn.Module) -> np.ndarray | None:
        """The exact loss by position from one forward step per distinct prefix; None when not
        covered."""
        if self.tree is None:
            self.tree = prefix_tree(self.process, self.tokens.shape[1])
        last_token, position, ancestors, probs, true_next = self.tree
        found = prefix_activations(model, last_token, position, ancestors, [])
        if found is None:
            return None
        logq = F.log_softmax(found[1].double(), dim=-1)
        cross = -torch.where(true_next > 0, true_next * logq, torch.zeros_like(logq)).sum(-1)
        out = torch.zeros(self.tokens.shape[1], dtype=torch.float64)
        out.index_add_(0, torch.as_tensor(position, dtype=torch.int64), probs * cross)
        return out.numpy()


def prefix_tree(process: HMM, length: int) -> tuple:
    """Every positive-probability prefix of length 1..`length`, level by level: last token (R,),
    position (R,), ancestors (R, length) (ancestors[r, j] = the row of r's prefix of length
    j + 1, r itself at its own position, 0 beyond), P(prefix) (R,) and the true next-token
    distribution after it (R, V), as prefix_activations takes them."""
    beliefs, probs = process.initial[None].astype(float), np.ones(1)
    parent_paths = np.zeros((1, 0), dtype=np.int64)
    parts: list[tuple] = []
    offset = 0
    for _ in range(length):
        level = expand_level(process, beliefs, probs)
        rows = offset + np.arange(len(level.symbols))
        paths = np.concatenate([parent_paths[level.parents], rows[:, None]], axis=1)
        parts.append((level, paths))
        beliefs, probs, parent_paths, offset = level.beliefs, level.probs, paths, rows[-1] + 1
    ancestors = np.zeros((offset, length), dtype=np.int64)
    for t, (_, paths) in enumerate(parts):
        ancestors[paths[:, -1], : t + 1] = paths
    levels = [level for level, _ in parts]
    return (
        np.concatenate([lv.symbols for lv in levels]).astype(np.int64),
        np.concatenate([np.full(len(lv.symbols), t) for t, lv in enumerate(levels)]),
        ancestors,
        torch.from_numpy(np.concatenate([lv.probs for lv in levels])),
        torch.from_numpy(np.concatenate([process.predictive(lv.beliefs) for lv in levels])),
    )
