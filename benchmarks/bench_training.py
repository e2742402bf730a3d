"""Training throughput of the TransformerBridge model vs a plain-PyTorch twin.

Three ways to take the same AdamW step on the same Mess3 batch of the default recipe (128 x 10), all
with the paper's Mess3 shape and the same starting weights, timed in one process and interleaved
round by round so a busy CPU slows all alike:
  trainer  what models.training runs: `PlainForward` over the TransformerBridge's own parameters
  bridge   the TransformerBridge's hooked forward (hook dispatch, python layer norms)
  plain    an independent plain-PyTorch twin (its own copies of the weights)
`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py; the figure of
merit is `training_trainer_over_plain` (target <= 1.05); `training_bridge_over_plain` shows what
training through the hooks would cost.
"""

from __future__ import annotations

import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hmm import load_process
from models import TransformerConfig, build_model
from models.architectures import training_forward
from models.data import training_batch
from models.loss import next_token_losses

TARGET_RATIO = 1.05


class PlainBlock(nn.Module):
    """Pre-LN block: x + attn(ln1(x)), then + mlp(ln2(x)); causal softmax attention."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.c = c
        width = c.n_heads * c.d_head
        self.ln1 = nn.LayerNorm(c.d_model)  # registration order = the bridge's parameter order
        self.q, self.k, self.v = (nn.Linear(c.d_model, width) for _ in range(3))
        self.o = nn.Linear(width, c.d_model)
        self.ln2 = nn.LayerNorm(c.d_model)
        self.fc_in, self.fc_out = nn.Linear(c.d_model, c.d_mlp), nn.Linear(c.d_mlp, c.d_model)
        mask = torch.triu(torch.ones(c.n_ctx, c.n_ctx, dtype=torch.bool), diagonal=1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        h = self.ln1(x)
        q, k, v = (
            lin(h).view(n, length, self.c.n_heads, self.c.d_head).transpose(1, 2)
            for lin in (self.q, self.k, self.v)
        )
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.c.d_head)
        pattern = scores.masked_fill(self.mask[:length, :length], float("-inf")).softmax(-1)
        x = x + self.o((pattern @ v).transpose(1, 2).reshape(n, length, -1))
        act = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[self.c.act_fn]
        return x + self.fc_out(act(self.fc_in(self.ln2(x))))


class PlainTransformer(nn.Module):
    """The bridge's native model written out in plain PyTorch (no hooks, no wrappers)."""

    def __init__(self, c: TransformerConfig) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(c.d_vocab, c.d_model), nn.Embedding(c.n_ctx, c.d_model)
        self.blocks = nn.ModuleList(PlainBlock(c) for _ in range(c.n_layers))
        self.ln_final = nn.LayerNorm(c.d_model)
        self.unembed = nn.Linear(c.d_model, c.d_vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))
        for block in self.blocks:
            x = block(x)
        return self.unembed(self.ln_final(x))


def plain_twin(bridge: nn.Module, config: TransformerConfig) -> PlainTransformer:
    """A PlainTransformer holding copies of the bridge's weights (parameters in the same order)."""
    twin = PlainTransformer(config)
    source, target = list(bridge.parameters()), list(twin.parameters())
    assert [p.shape for p in source] == [p.shape for p in target], "twin shape drifted"
    with torch.no_grad():
        for s, t in zip(source, target, strict=True):
            t.copy_(s)
    return twin


def _step(model, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> None:
    """One update on a training window (n, n_ctx + 1): inputs tokens[:, :-1], as the trainer."""
    loss = next_token_losses(model(tokens[:, :-1]), tokens).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def run(rounds: int = 7, steps: int = 10, batch_size: int = 128) -> dict:
    """Median ms per step of each path, on one torch thread (the trainer's CPU default)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(rounds, steps, batch_size)
    finally:
        torch.set_num_threads(threads)


def _measure(rounds: int, steps: int, batch_size: int) -> dict:
    config = TransformerConfig()
    bridge = build_model(config)
    twin = plain_twin(bridge, config)
    trainer_bridge = build_model(config)  # separate weights, so each path has its own optimiser
    trainer = training_forward(trainer_bridge)
    tokens = training_batch(load_process("mess3"), batch_size, config.n_ctx, seed=0, step=0)
    inputs = tokens[:, :-1]
    with torch.no_grad():
        max_diff = max(
            float((bridge(inputs) - twin(inputs)).abs().max()),
            float((trainer(inputs) - bridge(inputs)).abs().max()),
        )
    assert max_diff < 1e-4, f"the three paths compute different functions (max diff {max_diff})"
    paths = {"trainer": trainer, "bridge": bridge, "plain": twin}
    params = {"trainer": trainer_bridge, "bridge": bridge, "plain": twin}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=3e-3) for k, m in params.items()}
    for name in paths:  # warm-up
        for _ in range(3):
            _step(paths[name], optimizers[name], tokens)
    per_step: dict[str, list[float]] = {name: [] for name in paths}
    order = list(paths)
    for r in range(rounds):
        for name in order[r % 3 :] + order[: r % 3]:
            began = time.perf_counter()
            for _ in range(steps):
                _step(paths[name], optimizers[name], tokens)
            per_step[name].append((time.perf_counter() - began) / steps)
    seconds = {name: statistics.median(times) for name, times in per_step.items()}
    tokens_per_step = batch_size * config.n_ctx
    ratio = seconds["trainer"] / seconds["plain"]
    out = {f"training_{name}_ms_per_step": 1e3 * s for name, s in seconds.items()}
    out |= {f"training_{name}_tokens_per_s": tokens_per_step / s for name, s in seconds.items()}
    return out | {
        "training_trainer_over_plain": ratio,
        "training_bridge_over_plain": seconds["bridge"] / seconds["plain"],
        "training_trainer_over_plain_target": TARGET_RATIO,
        "training_trainer_over_plain_ok": ratio <= TARGET_RATIO,
        "training_batch": f"{batch_size} x {config.n_ctx} Mess3 input tokens (windows of "
        f"{config.n_ctx + 1}), AdamW, paper shape",
        "training_threads": torch.get_num_threads(),
        "training_max_logit_diff": max_diff,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
