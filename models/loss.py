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

    @torch.inference_mode()
    def __call__(
        self, forward: Callable[[torch.Tensor], torch.Tensor], device: str | torch.device = "cpu"
    ) -> tuple[float, float]:
        """(exact mean loss over input positions 0..n_ctx-1, exact excess over the optimum), nats.

        `forward`: tokens (n, L) on `device` -> logits (n, L, V), e.g. training_forward(model).
        """
        by_position = torch.zeros(self.tokens.shape[1], dtype=torch.float64)
        for start in range(0, len(self.tokens), self.batch):
            chunk = slice(start, start + self.batch)
            # float64 softmax: the excess loss is ~1e-4 nats, far above this rounding
            logq = F.log_softmax(forward(self.tokens[chunk].to(device)).cpu().double(), dim=-1)
            p_next = self.true_next[chunk]
            cross = -torch.where(p_next > 0, p_next * logq, torch.zeros_like(logq)).sum(-1)
            by_position += self.probs[chunk] @ cross
        loss = float(by_position.mean())
        return loss, loss - float(self.optimal.mean())
