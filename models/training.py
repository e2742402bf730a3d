"""The training loop: fresh HMM sequences every step, next-token loss beside the Bayes optimum,
log-then-linear checkpoints, and bit-identical resume.

Step k (0-based) trains on `x = process.sample(batch_size, n_ctx + 1, seed=data_seed(seed, k))`:
inputs x[:, :-1] (n_ctx tokens), targets x[:, 1:], so the logits at every input position
0..n_ctx-1 carry a loss (as in the paper's code) and every position a probe reads was trained.
The matching optimum is `process.optimal_loss(n_ctx + 1)[1:]` (Mess3 at n_ctx 10: 0.80251 nats).
Everything a step depends on (weights, optimiser, scheduler, torch RNG, the data stream's next
step) is in each checkpoint, so a killed run resumed from its newest checkpoint ends bit-identical to an uninterrupted one.

RUN/metrics.jsonl, one JSON object per logged step (`step` = updates done, `tokens` = step *
batch_size * n_ctx input tokens, each carrying a loss, although a step draws n_ctx + 1 per
sequence; `loss` = the batch loss of update `step`, taken before it; step 0 logs the
initial model on batch 0): step, tokens, loss, optimal_loss, excess_loss, lr, and every
`loss_by_position_every` steps `loss_by_position` (n_ctx values, input positions 0..n_ctx-1).
Checkpoint steps add
`exact_loss` and `exact_excess_loss`: the model's probability-weighted loss over every sequence
(exact, see `ExactEvaluator`) and its gap to the exact optimum. Every line also has `wall_s`
(seconds since the run began, resumes summed), `eval_s` (the part spent in exact evaluation) and
`cpu_s` (CPU seconds used, the fairer clock on a shared machine).
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hmm import HMM, load_process
from hmm.errors import InvalidInput
from hmm.files import writable_dir, write_atomic, write_json
from hmm.msp import enumerable
from models.architectures import (
    DEFAULT_ACT_FN,
    ModelConfig,
    arch_of,
    build_model,
    make_model_config,
    move_model,
    training_forward,
)
from models.checkpoints import (
    RUN_FORMAT,
    model_config_of_run,
    read_checkpoint,
    read_run_config,
    save_checkpoint,
)
from models.recipes import TrainConfig, resolve_recipe
from models.run_files import list_checkpoints, read_metrics

# torch intra-op threads on CPU (default 1): these models' matrices are tiny, and on a busy 2-core
# machine two spinning OpenMP threads made a small run 45x slower than one thread
THREADS_ENV = "BELIEFGEO_THREADS"


def cpu_threads() -> int:
    """Torch intra-op threads for CPU work: BELIEFGEO_THREADS, default 1."""
    text = os.environ.get(THREADS_ENV) or "1"
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{THREADS_ENV}={text!r}; set it to a whole number of threads >= 1")
    return int(text)


# what must match for a resume (derived numbers such as optimal_loss may change in the last digit)
RESUME_KEYS = ("format", "process", "arch", "model", "train", "data", "checkpoints")
# crash-safety test hook: the run SIGKILLs itself right after this update
KILL_AT_STEP_ENV = "BELIEFGEO_KILL_AT_STEP"


# ---- schedules and the data stream (pure functions) ---------------------------------------------
def checkpoint_steps(total_steps: int, n_checkpoints: int = 40) -> list[int]:
    """Steps to checkpoint: 0, log-spaced up to total/10, then evenly spaced to total_steps.

    About half the checkpoints fall in the first tenth of training, where belief geometry emerges.
    Returns at most max(n_checkpoints, 2) sorted distinct steps, always including 0 and total_steps.
    """
    if total_steps < 1:
        raise InvalidInput(f"a run needs at least one step, got {total_steps}")
    n = max(int(n_checkpoints), 2)
    if total_steps + 1 <= n:
        return list(range(total_steps + 1))
    switch = max(1, total_steps // 10)
    n_log = (n - 1) // 2
    n_lin = n - 1 - n_log
    early = np.geomspace(1, switch, n_log) if n_log else np.array([])
    late = np.linspace(switch, total_steps, n_lin + 1)[1:]
    steps = {
        0,
        total_steps,
        *np.rint(early).astype(int).tolist(),
        *np.rint(late).astype(int).tolist(),
    }
    return sorted(s for s in steps if 0 <= s <= total_steps)


def lr_multiplier(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """LR factor for update `step` (0-based): linear warm-up, then cosine to 0 or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def data_seed(seed: int, step: int) -> int:
    """Seed of the batch for update `step`; distinct (seed, step) pairs give independent streams."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0])


def training_batch(process: HMM, batch_size: int, n_ctx: int, seed: int, step: int) -> torch.Tensor:
    """The fresh batch for update `step`: (batch_size, n_ctx + 1) int64 — inputs x[:, :-1],
    targets x[:, 1:]."""
    tokens, _ = process.sample(batch_size, n_ctx + 1, seed=data_seed(seed, step))
    return torch.from_numpy(tokens)


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


# ---- exact evaluation -------------------------------------------------------------------------
class ExactEvaluator:
    """Exact expected next-token loss of a model over every sequence of a process.

    The positions are the training loss's: logits at input positions 0..n_ctx-1 against tokens
    1..n_ctx of every length-(n_ctx+1) sequence. By causality the logits at position t depend on
    tokens 0..t only, so the n_ctx-token inputs with their exact probabilities P(input) and true
    next-token distributions P(. | input_{0..t}) = process.predictive(belief_t) give that
    expectation exactly:
    sum_input P(input) mean_t sum_x P(x | input_{<=t}) (-log q(x | input_{<=t})).
    """

    def __init__(self, process: HMM, n_ctx: int, batch: int = 8192) -> None:
        tokens, probs = process.enumerate(n_ctx)
        self.tokens = torch.from_numpy(tokens)
        self.probs = torch.from_numpy(probs)
        self.true_next = torch.from_numpy(
            process.predictive(process.beliefs(tokens))
        )  # (N, n_ctx, V)
        self.optimal = process.optimal_loss(n_ctx + 1)[1:]
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


# ---- the run config --------------------------------------------------------------------------
def run_config(process: HMM, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Everything needed to rebuild process, model, optimiser and data stream (RUN/config.json)."""
    n_ctx = model_config.n_ctx
    tokens_per_step = train_config.batch_size * n_ctx
    total_steps = max(1, math.ceil(train_config.tokens / tokens_per_step))
    steps = checkpoint_steps(total_steps, train_config.n_checkpoints)
    optimal = process.optimal_loss(n_ctx + 1)
    return {
        "format": RUN_FORMAT,
        "process": process.to_spec(),
        "arch": arch_of(model_config),
        "model": model_config.to_dict(),
        "train": train_config.to_dict(),
        "data": {
            "n_ctx": n_ctx,
            "trained_positions": n_ctx,
            "tokens_per_step": tokens_per_step,
            "total_steps": total_steps,
            "total_tokens": total_steps * tokens_per_step,
            "batch": "x = process.sample(batch_size, n_ctx + 1, "
            "seed=SeedSequence([seed, step]).generate_state(1, uint64)[0])",
            "targets": "inputs x[:, :-1]; logits at positions 0..n_ctx-1 predict x[:, 1:] "
            "(every input position carries a loss); "
            "tokens counts inputs: step * batch_size * n_ctx",
        },
        "optimal_loss": float(optimal[1:].mean()),
        "optimal_loss_by_position": optimal[1:].tolist(),
        "checkpoints": {"steps": steps, "tokens": [s * tokens_per_step for s in steps]},
        "exact_eval": bool(train_config.exact_eval and enumerable(process, n_ctx)),
    }


def _environment(device: torch.device) -> dict:
    return {
        "torch": torch.__version__,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


# ---- entry points -----------------------------------------------------------------------------
def train_run(
    process_spec: str | Path | dict | HMM,
    out: str | Path,
    arch: str | None = None,
    act_fn: str | None = None,
    tokens: int | None = None,
    seed: int | None = None,
    config: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """`beliefgeo train`: resolve recipe and flags, then train into RUN (or resume it). Returns RUN.

    --seed seeds both the initialisation and the data stream. With --resume the run's config.json
    rules; flags that contradict it are refused.
    """
    out = Path(out)
    if tokens is not None and tokens < 1:
        raise InvalidInput(f"--tokens must be >= 1, got {tokens}")
    if resume:
        stored = read_run_config(out)
        given = {"arch": arch, "act_fn": act_fn, "tokens": tokens, "seed": seed}
        have = {
            "arch": stored["arch"],
            "act_fn": stored["model"]["act_fn"],
            "tokens": stored["train"]["tokens"],
            "seed": stored["train"]["seed"],
        }
        clash = [
            f"--{k.replace('_', '-')} {v} (run has {have[k]})"
            for k, v in given.items()
            if v is not None and v != have[k]
        ]
        if config is not None:
            resolved, _ = resolve_recipe(config, tokens=have["tokens"], seed=have["seed"])
            if resolved.to_dict() != stored["train"]:
                clash.append(f"--config {config} (run used recipe {stored['train']['recipe']})")
        if load_process(process_spec).to_spec() != stored["process"]:
            clash.append(f"process {process_spec} (run was trained on {stored['process']['name']})")
        if clash:
            raise InvalidInput(
                f"--resume continues {out} as configured; drop or fix: {'; '.join(clash)}"
            )
        return train(
            load_process(stored["process"]),
            model_config_of_run(stored),
            TrainConfig(**stored["train"]),
            out,
            resume=True,
        )
    process = load_process(process_spec)
    train_config, model_settings = resolve_recipe(config, tokens=tokens, seed=seed)
    arch = arch or model_settings.get("arch", "transformer")
    if arch not in DEFAULT_ACT_FN:
        raise InvalidInput(f"unknown arch {arch!r}; choose transformer or rnn")
    settings = {"seed": train_config.seed, **model_settings.get("model", {})}
    settings["act_fn"] = act_fn or model_settings.get("act_fn") or DEFAULT_ACT_FN[arch]
    settings["d_vocab"] = process.n_symbols
    return train(process, make_model_config(arch, **settings), train_config, out)


def train(
    process: HMM,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> Path:
    """Train `model_config` on `process` into the run directory `out`; returns `out`.

    resume=False needs `out` empty or absent; resume=True needs out/config.json equal to what these
    arguments give and continues from the newest checkpoint (from scratch if none was written).
    progress: tqdm bar (True), plain lines on stderr (False), or whether stderr is a tty (None).
    """
    out = Path(out)
    if model_config.d_vocab != process.n_symbols:
        raise InvalidInput(
            f"model d_vocab {model_config.d_vocab} != {process.n_symbols}, "
            f"the number of symbols of {process.name}"
        )
    if model_config.n_ctx < 2:
        raise InvalidInput("n_ctx must be >= 2 for next-token training")
    config = run_config(process, model_config, train_config)
    start_state = _prepare_run(out, config, resume)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads())

    model = move_model(build_model(model_config), device)
    optimizer = _optimizer(model, train_config)
    total_steps = config["data"]["total_steps"]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        functools.partial(
            lr_multiplier,
            schedule=train_config.schedule,
            warmup_steps=train_config.warmup_steps,
            total_steps=total_steps,
        ),
    )
    step = 0
    if start_state is not None:
        model.load_state_dict(start_state["model"])
        optimizer.load_state_dict(start_state["optimizer"])
        scheduler.load_state_dict(start_state["scheduler"])
        torch.set_rng_state(start_state["torch_rng"].cpu())
        step = int(start_state["step"])
        if step >= total_steps:
            return out
    if start_state is None and not resume:
        write_json(out / "config.json", {**config, "environment": _environment(device)})
    _trim_metrics(out / "metrics.jsonl", keep_through=step if start_state is not None else -1)

    loop = _Loop(process, model, optimizer, scheduler, train_config, config, out, device, progress)
    if start_state is not None:  # wall-clock bookkeeping carries across resumes
        loop.wall_s, loop.eval_s, loop.cpu_s = (
            float(start_state.get(key, 0.0)) for key in ("wall_s", "eval_s", "cpu_s")
        )
    loop.run(step)
    return out


# ---- internals --------------------------------------------------------------------------------
def _prepare_run(out: Path, config: dict, resume: bool) -> dict | None:
    """Check `out` for a fresh start or a resume; the newest checkpoint's state on resume."""
    if not resume:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InvalidInput(
                f"{out} already holds files; pass --resume to continue it or choose a new --out"
            )
        writable_dir(out)
        return None
    stored = read_run_config(out)
    if stored["format"] != RUN_FORMAT:
        raise InvalidInput(
            f"{out} is a {stored['format']} run (positions 0..n_ctx-2 trained); this beliefgeo "
            f"trains every position ({RUN_FORMAT}) and cannot continue it: train a new --out"
        )
    fresh = json.loads(json.dumps(config))
    differs = [key for key in RESUME_KEYS if stored.get(key) != fresh[key]]
    if differs:
        raise InvalidInput(
            f"{out}/config.json differs from this run's settings in {differs}; use a new --out"
        )
    writable_dir(out)
    try:
        checkpoints = list_checkpoints(out)
    except InvalidInput:
        return None  # killed before the first checkpoint: start again from step 0
    return read_checkpoint(checkpoints[-1][1])


def _optimizer(model: nn.Module, train_config: TrainConfig) -> torch.optim.Optimizer:
    if train_config.optimizer == "adamw":
        return torch.optim.AdamW(
            model.parameters(),
            lr=train_config.lr,
            betas=train_config.betas,
            weight_decay=train_config.weight_decay,
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=train_config.lr,
        momentum=train_config.momentum,
        weight_decay=train_config.weight_decay,
    )


def _trim_metrics(path: Path, keep_through: int) -> None:
    """Drop metrics lines past the checkpoint being resumed from (and any half-written line)."""
    if not path.exists():
        return
    kept = [r for r in read_metrics(path.parent) if r.get("step", -1) <= keep_through]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


class _Loop:
    """One pass of the training loop from a given step; holds what the step needs."""

    def __init__(
        self, process, model, optimizer, scheduler, train_config, config, out, device, progress
    ):
        self.process, self.model, self.optimizer, self.scheduler = (
            process,
            model,
            optimizer,
            scheduler,
        )
        self.tc: TrainConfig = train_config
        self.out, self.device = out, device
        self.n_ctx = config["data"]["n_ctx"]
        self.tokens_per_step = config["data"]["tokens_per_step"]
        self.total_steps = config["data"]["total_steps"]
        self.checkpoint_at = set(config["checkpoints"]["steps"])
        self.optimal = config["optimal_loss"]
        self.exact = ExactEvaluator(process, self.n_ctx) if config["exact_eval"] else None
        self.forward = training_forward(model)  # same parameters, no hook dispatch
        self.progress = sys.stderr.isatty() if progress is None else progress
        kill = os.environ.get(KILL_AT_STEP_ENV)
        self.kill_at = int(kill) if kill else None
        self.wall_s = self.eval_s = self.cpu_s = 0.0  # before this segment
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def run(self, step: int) -> None:
        with open(self.out / "metrics.jsonl", "a") as metrics:
            self._run(step, metrics)

    def _run(self, step: int, metrics) -> None:
        bar = None
        if self.progress:
            bar = tqdm(
                total=self.total_steps * self.tokens_per_step,
                initial=step * self.tokens_per_step,
                unit="tok",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )
        started, last_print, start_step = time.perf_counter(), time.perf_counter(), step
        self.started, self.cpu_started = started, time.process_time()
        try:
            if step == 0:
                with torch.no_grad():
                    first = self._batch(0)
                    losses = next_token_losses(self.forward(first[:, :-1]), first)
                self._log(metrics, 0, losses, self.scheduler.get_last_lr()[0])
                self._checkpoint(0)
            while step < self.total_steps:
                tokens = self._batch(step)
                lr = self.scheduler.get_last_lr()[0]
                losses = next_token_losses(self.forward(tokens[:, :-1]), tokens)
                loss = losses.mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.tc.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                step += 1
                is_checkpoint = step in self.checkpoint_at
                if is_checkpoint or step % self.tc.log_every == 0 or step == self.total_steps:
                    record = self._log(metrics, step, losses.detach(), lr, exact=is_checkpoint)
                    now = time.perf_counter()
                    rate = (step - start_step) * self.tokens_per_step / max(now - started, 1e-9)
                    if bar is not None:
                        bar.n = step * self.tokens_per_step
                        bar.set_postfix(
                            loss=f"{record['loss']:.4f}",
                            excess=f"{record['excess_loss']:.5f}",
                            refresh=False,
                        )
                        bar.refresh()
                    elif now - last_print > 30 or step == self.total_steps:
                        last_print = now
                        exact = record.get("exact_excess_loss")
                        print(
                            f"step {step}/{self.total_steps} "
                            f"tokens {step * self.tokens_per_step:,} "
                            f"loss {record['loss']:.4f} excess {record['excess_loss']:.5f}"
                            + (f" exact-excess {exact:.5f}" if exact is not None else "")
                            + f" {rate:,.0f} tok/s",
                            file=sys.stderr,
                            flush=True,
                        )
                if is_checkpoint:
                    self._checkpoint(step)
                if self.kill_at is not None and step == self.kill_at:
                    metrics.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
        finally:
            if bar is not None:
                bar.close()

    def _batch(self, step: int) -> torch.Tensor:
        return training_batch(self.process, self.tc.batch_size, self.n_ctx, self.tc.seed, step).to(
            self.device
        )

    def _log(
        self, metrics, step: int, losses: torch.Tensor, lr: float, exact: bool = True
    ) -> dict[str, Any]:
        loss = float(losses.mean())
        record: dict[str, Any] = {
            "step": step,
            "tokens": step * self.tokens_per_step,
            "loss": loss,
            "optimal_loss": self.optimal,
            "excess_loss": loss - self.optimal,
            "lr": lr,
        }
        if step % self.tc.loss_by_position_every == 0 or step == self.total_steps:
            record["loss_by_position"] = losses.mean(0).tolist()
        if exact and self.exact is not None:
            began = time.perf_counter()
            record["exact_loss"], record["exact_excess_loss"] = self.exact(
                self.forward, self.device
            )
            self.eval_s += time.perf_counter() - began
        record["wall_s"] = round(self._wall(), 3)
        record["eval_s"] = round(self.eval_s, 3)
        record["cpu_s"] = round(self._cpu(), 3)
        metrics.write(json.dumps(record) + "\n")
        metrics.flush()
        return record

    def _wall(self) -> float:
        """Seconds of this run so far, all segments (resumes) together, evaluation included."""
        return self.wall_s + time.perf_counter() - self.started

    def _cpu(self) -> float:
        """CPU seconds of this process's threads in the run so far (resumes summed)."""
        return self.cpu_s + time.process_time() - self.cpu_started

    def _checkpoint(self, step: int) -> None:
        save_checkpoint(
            self.out,
            {
                "step": step,
                "tokens": step * self.tokens_per_step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_stream": {"seed": self.tc.seed, "next_step": step},
                "wall_s": self._wall(),
                "eval_s": self.eval_s,
                "cpu_s": self._cpu(),
            },
        )
