"""The training loop: HMM sequences every step, next-token loss beside the Bayes optimum,
log-then-linear checkpoints, sign flips of successive updates, and bit-identical resume.

Step k (0-based) trains on a window x of n_ctx + 1 tokens per sequence (models/data.py: fresh
sequences, or a fixed set revisited epoch after epoch): inputs x[:, :-1], targets x[:, 1:], so
the logits at every input position 0..n_ctx-1 carry a loss (as in the paper's code) and every
position a probe reads was trained. The matching optimum is `process.optimal_loss(n_ctx + 1)[1:]`
(Mess3 at n_ctx 10: 0.80251 nats). Everything a step depends on (weights, optimiser, scheduler,
torch RNG, the previous update's signs; the data stream is a pure function of seed and step) is
in each checkpoint, so a killed run resumed from its newest checkpoint ends bit-identical to an
uninterrupted one. `train` leaves torch's thread count and global RNG as it found them.

RUN/metrics.jsonl, one JSON object per logged step (`step` = updates done, `tokens` = step *
batch_size * n_ctx input tokens, each carrying a loss, although a step draws n_ctx + 1 per
sequence; `loss` = the batch loss of update `step`, taken before it; step 0 logs the initial
model on batch 0): step, tokens, loss, optimal_loss, excess_loss, lr, and every
`loss_by_position_every` steps `loss_by_position` (n_ctx values, input positions 0..n_ctx-1).
Checkpoint steps add `exact_loss`, `exact_excess_loss` and `exact_loss_by_position` (models/loss.py,
the model's in-context-learning curve; at every checkpoint,
at the last only, or never: TrainConfig.exact_eval) and `sign_flip_frac`,
`sign_flip_steps` (models/sign_flips.py). Every line also has `wall_s` (seconds since the run
began, resumes summed), `eval_s` (the part spent in exact evaluation) and `cpu_s` (CPU seconds).
docs/training.md describes the files.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hmm import HMM, load_process
from hmm.errors import InvalidInput
from hmm.msp import enumerable
from hmm.records import checked, write_record
from models.architectures import (
    ModelConfig,
    arch_of,
    build_model,
    check_training_forward,
    move_model,
    training_forward,
)
from models.checkpoints import (
    RUN_FORMAT,
    check_resume,
    open_run,
    read_run_config,
    save_checkpoint,
)
from models.compute import cpu_threads, pick_device, torch_threads
from models.data import TrainingData, describe_stream
from models.loss import ExactEvaluator, next_token_losses
from models.progress import Progress, RunClock
from models.recipes import TrainConfig, build_optimizer, check_fits, resolve_run
from models.run_files import MetricsLine, RunConfig, trim_metrics
from models.schedules import checkpoint_steps, lr_multiplier
from models.sign_flips import SignFlips


def run_config(process: HMM, model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Everything needed to rebuild process, model, optimiser and data stream (RUN/config.json)."""
    n_ctx = model_config.n_ctx
    check_fits(process, n_ctx, train_config)
    tokens_per_step = train_config.batch_size * n_ctx
    total_steps = max(1, math.ceil(train_config.tokens / tokens_per_step))
    steps = checkpoint_steps(total_steps, train_config.n_checkpoints)
    optimal = process.optimal_loss(n_ctx + 1)[1:]
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
            "batch": describe_stream(train_config.train_sequences),
            "targets": "inputs x[:, :-1]; logits at positions 0..n_ctx-1 predict x[:, 1:] "
            "(every input position carries a loss); tokens counts inputs: "
            "step * batch_size * n_ctx",
        },
        "optimal_loss": float(optimal.mean()),
        "optimal_loss_by_position": optimal.tolist(),
        "checkpoints": {"steps": steps, "tokens": [s * tokens_per_step for s in steps]},
        "exact_eval": train_config.exact_eval != "off" and enumerable(process, n_ctx),
    }


def train_run(
    process_spec: str | Path | dict | HMM,
    out: str | Path,
    arch: str | None = None,
    act_fn: str | None = None,
    tokens: int | None = None,
    seed: int | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    options: dict[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """`beliefgeo train`: recipe, flags and `options` (run options such as train_sequences,
    exact_eval, device, init_scale, d_model: see models.recipes.resolve_run), then train into
    RUN (or resume it, where the run's config.json rules and contradicting flags are refused).
    --seed seeds both the initialisation and the data stream. Returns RUN."""
    out = Path(out)
    if tokens is not None and tokens < 1:
        raise InvalidInput(f"--tokens must be >= 1, got {tokens}")
    process = load_process(process_spec)
    stored = read_run_config(out) if resume else None
    model_config, train_config = resolve_run(
        process, config, stored, arch, act_fn, tokens=tokens, seed=seed, **(options or {})
    )
    if stored is not None:  # name only the flags given when they clash with the run
        given = {"arch": arch, "act_fn": act_fn, "tokens": tokens, "seed": seed, "config": config}
        typed = {k for k, v in {**given, **(options or {})}.items() if v is not None}
        typed = {"--" + k.replace("_", "-") for k in typed}
        check_resume(out, stored, run_config(process, model_config, train_config), typed)
    return train(process, model_config, train_config, out, resume=resume, on_step=on_step)


def train(
    process: HMM,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Train `model_config` on `process` into the run directory `out`; returns `out`.

    resume=False needs `out` empty or absent; resume=True needs out/config.json to agree with
    these arguments and continues from the newest checkpoint (from scratch if none was written).
    device: overrides train_config.device. progress: tqdm bar (True), plain lines on stderr
    (False), or whether stderr is a tty (None). on_step(step) runs after every update, once its
    metrics and checkpoint are written (crash tests kill the process there).
    """
    out = Path(out)
    if model_config.d_vocab != process.n_symbols:
        raise InvalidInput(
            f"model d_vocab {model_config.d_vocab} != {process.n_symbols}, "
            f"the number of symbols of {process.name}"
        )
    config = run_config(process, model_config, train_config)
    state = open_run(out, config, resume)
    device = pick_device(device or train_config.device)
    if state is not None and state["step"] >= config["data"]["total_steps"]:
        return out
    rng_devices = [torch.device(device).index or 0] if device.type == "cuda" else []
    threads = cpu_threads() if device.type == "cpu" else None
    with torch_threads(threads), torch.random.fork_rng(devices=rng_devices):
        if not resume:
            write_record(out / "config.json", RunConfig,
                         {**config, "environment": _environment(device)})
        trim_metrics(out, keep_through=-1 if state is None else state["step"])
        loop = _Loop(process, model_config, train_config, config, out, device, state)
        loop.run(progress, on_step)
    return out


class _Loop:
    """Model, optimiser, data and bookkeeping of one training segment, from its first step."""

    def __init__(self, process, model_config, tc, config, out, device, state) -> None:
        self.tc, self.config, self.out, self.device = tc, config, out, device
        data = config["data"]
        self.total_steps, self.tokens_per_step = data["total_steps"], data["tokens_per_step"]
        self.checkpoint_at = set(config["checkpoints"]["steps"])
        self.model = move_model(build_model(model_config), device)
        self.forward = training_forward(self.model)  # same parameters, no hook dispatch
        self.optimizer = build_optimizer(self.model, tc)
        schedule = functools.partial(
            lr_multiplier,
            schedule=tc.schedule,
            warmup_steps=tc.warmup_steps,
            total_steps=self.total_steps,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.data = TrainingData(
            process, data["n_ctx"], tc.batch_size, tc.seed, tc.train_sequences, device
        )
        self.exact = (
            ExactEvaluator(process, data["n_ctx"], optimal=config["optimal_loss_by_position"])
            if config["exact_eval"]
            else None
        )
        self.flips = SignFlips(self.model.parameters())
        self.step, self.clock = 0, RunClock()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["torch_rng"].cpu())  # inside train's fork_rng
            self.flips.load_state(state.get("sign_flips"))
            self.step = int(state["step"])
            self.clock = RunClock(
                *(float(state.get(k, 0.0)) for k in ("wall_s", "eval_s", "cpu_s"))
            )

    def run(self, progress: bool | None, on_step: Callable[[int], None] | None) -> None:
        shown = Progress(self.total_steps, self.tokens_per_step, self.step, progress)
        # the fast forward must compute the model's function: one extra forward, first batch
        check_training_forward(self.model, self.data.batch(self.step)[:, :-1], forward=self.forward)
        with open(self.out / "metrics.jsonl", "a") as self.metrics, shown:
            if self.step == 0:  # the initial model, on batch 0
                with torch.no_grad():
                    first = self.data.batch(0)
                    losses = next_token_losses(self.forward(first[:, :-1]), first)
                self._log(losses, self.scheduler.get_last_lr()[0], shown)
            while self.step < self.total_steps:
                tokens = self.data.batch(self.step)
                lr = self.scheduler.get_last_lr()[0]
                losses = next_token_losses(self.forward(tokens[:, :-1]), tokens)
                self.optimizer.zero_grad(set_to_none=True)
                losses.mean().backward()
                if self.tc.grad_clip is not None:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
                self.flips.snapshot()
                self.optimizer.step()
                self.flips.record()
                self.scheduler.step()
                self.step += 1
                self._log(losses.detach(), lr, shown)
                if on_step is not None:
                    on_step(self.step)

    def _log(self, losses: torch.Tensor, lr: float, shown: Progress) -> None:
        """The metrics line of this step when it is logged, then its checkpoint when it has one."""
        step, last = self.step, self.step == self.total_steps
        checkpoint = step in self.checkpoint_at
        if not (checkpoint or last or step % self.tc.log_every == 0):
            return
        loss, optimal = float(losses.mean()), self.config["optimal_loss"]
        record: dict[str, Any] = {
            "step": step,
            "tokens": step * self.tokens_per_step,
            "loss": loss,
            "optimal_loss": optimal,
            "excess_loss": loss - optimal,
            "lr": lr,
        }
        if step % self.tc.loss_by_position_every == 0 or last:
            record["loss_by_position"] = losses.mean(0).tolist()
        exact_now = self.tc.exact_eval == "every" or last
        if checkpoint and self.exact is not None and exact_now:
            with self.clock.evaluating():
                curve = self.exact.by_position(self.forward, self.device, model=self.model)
                record["exact_loss"] = float(curve.mean())
                record["exact_excess_loss"] = record["exact_loss"] - self.config["optimal_loss"]
                record["exact_loss_by_position"] = curve.tolist()
        if checkpoint:
            record.update(self.flips.summary())
        record.update(self.clock.fields())
        self.metrics.write(json.dumps(checked(MetricsLine, record)) + "\n")
        self.metrics.flush()
        shown.show(step, record)
        if checkpoint:
            self._checkpoint()

    def _checkpoint(self) -> None:
        save_checkpoint(
            self.out,
            {
                "step": self.step,
                "tokens": self.step * self.tokens_per_step,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "data_stream": {"seed": self.tc.seed, "next_step": self.step},
                "sign_flips": self.flips.state(),
                **self.clock.fields(),
            },
        )


def _environment(device: torch.device) -> dict:
    return {
        "torch": torch.__version__,
        "transformer_lens": importlib.metadata.version("transformer-lens"),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }
