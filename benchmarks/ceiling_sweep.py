"""Which training recipe carries Mess3 beliefs past the logit ceiling, and after how many tokens?

A research sweep for accelerator machines, where TransformerLens is not installed: it trains a
plain-PyTorch twin of the project's transformer (same shapes, pre-LayerNorm blocks, GPT-2-style
init as TransformerLens's native model) under several recipes at once, one process per recipe,
and at log-spaced token milestones scores the exact probe of issue 4: all 3^10 inputs, split 50/50
by sequence (seeded), ordinary least squares with intercept, held-out R² averaged over the three
belief coordinates. It also scores the exact excess loss and the probe from the model's own
next-token logits (the probe from the exact optimal logits reaches R² ≈ 0.985 on Mess3).

    python -m benchmarks.ceiling_sweep --seconds 420 --out results_dir

Writes one JSON-lines file per recipe. The numbers inform the project's `default` recipe; the
project's own trainer and probe confirm them on the real TransformerBridge model.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from hmm import load_process

RECIPES = {
    # name: optimiser, lr, batch, weight decay, schedule, d_model, d_mlp
    "adam_cosine_10M": dict(opt="adamw", lr=3e-3, batch=128, wd=0.0, sched="cosine", horizon=10e6),
    "adam_const_1e-3_b512": dict(opt="adamw", lr=1e-3, batch=512, wd=0.0, sched="const"),
    "adam_const_3e-3_b512": dict(opt="adamw", lr=3e-3, batch=512, wd=0.0, sched="const"),
    "adam_wd1_1e-3_b512": dict(opt="adamw", lr=1e-3, batch=512, wd=1.0, sched="const"),
    "adam_const_1e-3_b512_d128": dict(opt="adamw", lr=1e-3, batch=512, wd=0.0, sched="const",
                                      d_model=128, d_mlp=512, d_head=16),
    "sgd_paper_b64": dict(opt="sgd", lr=1e-2, batch=64, wd=0.0, sched="const"),
    "sgd_mom0.9_b64": dict(opt="sgd", lr=1e-2, batch=64, wd=0.0, sched="const", momentum=0.9),
    "adam_const_1e-3_b64": dict(opt="adamw", lr=1e-3, batch=64, wd=0.0, sched="const"),
    "adam_const_3e-3_b512_d128": dict(opt="adamw", lr=3e-3, batch=512, wd=0.0, sched="const",
                                      d_model=128, d_mlp=512, d_head=16),
    "adam_const_1e-3_b512_d256": dict(opt="adamw", lr=1e-3, batch=512, wd=0.0, sched="const",
                                      d_model=256, d_mlp=1024, d_head=32),
    "adam_const_3e-4_b512_d256": dict(opt="adamw", lr=3e-4, batch=512, wd=0.0, sched="const",
                                      d_model=256, d_mlp=1024, d_head=32),
    "adam_const_1e-3_b2048_d128": dict(opt="adamw", lr=1e-3, batch=2048, wd=0.0, sched="const",
                                       d_model=128, d_mlp=512, d_head=16),
    "adam_const_1e-3_b2048": dict(opt="adamw", lr=1e-3, batch=2048, wd=0.0, sched="const"),
    "adam_cosine_10M_d256": dict(opt="adamw", lr=1e-3, batch=128, wd=0.0, sched="cosine",
                                 horizon=10e6, d_model=256, d_mlp=1024, d_head=32),
}
MILESTONES = [2 ** k * 1e5 for k in range(0, 14)]  # 0.1 M ... 819 M tokens


class Block(nn.Module):
    def __init__(self, d_model: int, d_head: int, d_mlp: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.q, self.k, self.v = (nn.Linear(d_model, d_head) for _ in range(3))
        self.o = nn.Linear(d_head, d_model)
        self.fc_in, self.fc_out = nn.Linear(d_model, d_mlp), nn.Linear(d_mlp, d_model)
        self.scale = math.sqrt(d_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        z = F.scaled_dot_product_attention(self.q(h), self.k(h), self.v(h), is_causal=True)
        x = x + self.o(z)
        return x + self.fc_out(F.relu(self.fc_in(self.ln2(x))))


class Twin(nn.Module):
    def __init__(self, d_vocab=3, n_ctx=10, d_model=64, d_head=8, d_mlp=256, n_layers=4, seed=0):
        super().__init__()
        self.embed, self.pos = nn.Embedding(d_vocab, d_model), nn.Embedding(n_ctx, d_model)
        self.blocks = nn.ModuleList(Block(d_model, d_head, d_mlp) for _ in range(n_layers))
        self.ln_final, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, d_vocab, bias=False)
        g = torch.Generator().manual_seed(seed)
        std = 0.8 / math.sqrt(d_model)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                residual_out = name.endswith(("o.weight", "fc_out.weight"))
                scale = 1 / math.sqrt(2 * n_layers) if residual_out else 1
                p.data = torch.randn(p.shape, generator=g) * std * scale
            elif name.endswith("bias"):
                p.data.zero_()

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        resid = [x]
        for block in self.blocks:
            x = block(x)
            resid.append(x)
        x = self.ln_final(x)
        resid.append(x)
        return self.head(x), resid


def heldout_r2(X: torch.Tensor, Y: torch.Tensor, fit: torch.Tensor) -> float:
    """OLS with intercept on the fit rows, R² (mean over coordinates) on the others.

    Solved by a pseudo-inverse of the centred normal equations, because stacked residual layers
    are nearly collinear and the GPU's QR-based lstsq assumes full rank.
    """
    X, Y = X.double(), Y.double()
    x_mean, y_mean = X[fit].mean(0), Y[fit].mean(0)
    Xc = X[fit] - x_mean
    coef = torch.linalg.pinv(Xc.T @ Xc, hermitian=True, rtol=1e-12) @ (Xc.T @ (Y[fit] - y_mean))
    resid = Y[~fit] - ((X[~fit] - x_mean) @ coef + y_mean)
    var = Y[~fit].var(0, unbiased=False)
    return float((1 - resid.pow(2).mean(0) / var).mean())


def run_recipe(name: str, seconds: float, out: str, device: str) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    recipe = RECIPES[name]
    process = load_process("mess3")
    T = torch.tensor(process.T, device=device, dtype=torch.float32)
    V, S = process.n_symbols, process.n_states
    joint = T.permute(1, 0, 2).reshape(S, V * S)  # (from, symbol*to)
    init = torch.tensor(process.stationary, device=device, dtype=torch.float32)
    optimal = process.optimal_loss(10)[1:].mean()
    tokens_all, probs = process.enumerate(10)
    beliefs = process.beliefs(tokens_all)  # (N, 10, S)
    seq_fit = torch.from_numpy(np.random.default_rng(0).random(len(tokens_all)) < 0.5).to(device)
    fit_rows = seq_fit.repeat_interleave(10)
    X_all = torch.as_tensor(tokens_all, device=device)
    Y = torch.as_tensor(beliefs.reshape(-1, S), device=device)
    w = torch.as_tensor(probs, device=device)

    dims = {k: recipe[k] for k in ("d_model", "d_mlp", "d_head") if k in recipe}
    model = Twin(**dims).to(device)
    if recipe["opt"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["wd"])
    else:
        momentum = recipe.get("momentum", 0)
        opt = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=momentum)
    batch, seen, step = recipe["batch"], 0, 0
    gen = torch.Generator(device=device).manual_seed(1)
    start, next_milestone = time.time(), 0
    log = open(Path(out) / f"{name}.jsonl", "w")

    def evaluate() -> None:
        model.eval()
        with torch.no_grad():
            chunks = [model(X_all[i : i + 8192]) for i in range(0, len(X_all), 8192)]
            logits, resid = zip(*chunks, strict=True)
            logits = torch.cat(logits)
            layers = [torch.cat([r[j] for r in resid]) for j in range(len(resid[0]))]
        logp = logits.log_softmax(-1)
        nll = -logp[:, :-1].gather(-1, X_all[:, 1:, None])[..., 0].mean(1)
        row = {"tokens": seen, "step": step, "seconds": round(time.time() - start, 1),
               "excess_loss": float((nll * w).sum() / w.sum() - optimal)}
        flat = [h.reshape(-1, h.shape[-1]) for h in layers]
        row["r2"] = [round(heldout_r2(h, Y, fit_rows), 5) for h in flat]
        row["r2_concat"] = round(heldout_r2(torch.cat(flat, 1), Y, fit_rows), 5)
        centred_logits = logp.reshape(-1, V) - logp.reshape(-1, V).mean(1, keepdim=True)
        row["r2_logits"] = round(heldout_r2(centred_logits, Y, fit_rows), 5)
        log.write(json.dumps(row) + "\n")
        log.flush()
        model.train()

    while time.time() - start < seconds:
        if next_milestone < len(MILESTONES) and seen >= MILESTONES[next_milestone]:
            evaluate()
            next_milestone += 1
        if recipe["sched"] == "cosine":
            frac = min(seen / recipe["horizon"], 1.0)
            warm = min(1.0, (step + 1) / 100)
            for g in opt.param_groups:
                g["lr"] = recipe["lr"] * warm * 0.5 * (1 + math.cos(math.pi * frac))
            if frac >= 1.0:
                break
        state = torch.multinomial(init.expand(batch, S), 1, generator=gen)[:, 0]
        toks = []
        for _ in range(10):
            pick = torch.multinomial(joint[state], 1, generator=gen)[:, 0]
            toks.append(pick // S)
            state = pick % S
        x = torch.stack(toks, 1)
        logits, _ = model(x)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += batch * 10
        step += 1
    evaluate()
    log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=420)
    parser.add_argument("--out", default="ceiling_sweep")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=run_recipe, args=(name, args.seconds, args.out, device))
             for name in args.recipes.split(",")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
