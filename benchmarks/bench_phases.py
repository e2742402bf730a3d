"""Cost of the phase diagnostics (target: every checkpoint of a default Mess3 run, nulls and figure
included, in <= 10 % of that run's training time), in CPU seconds (time.process_time), which a
busy machine distorts far less than wall time.

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. Without a run
directory it trains a stand-in run with the default recipe's model, batch and checkpoint count
(40 checkpoints, one per step, exact evaluation off: only the checkpoints matter here), times
`phases_run` on it end to end, and compares that with the training CPU time of the default
10 M-token recipe projected from the CPU seconds per training step measured in the same process
on the threads `beliefgeo train` uses (no checkpoint writes or exact evaluation, so the projection
is a lower bound). With a run directory (`run(run_dir)` or env BELIEFGEO_BENCH_RUN) it times
`phases_run` on a copy of that run and compares with the run's own logged CPU time when present.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

TARGETS = {"phases.fraction_of_training": 0.10}
DEFAULT_CHECKPOINTS = 40  # the default recipe's n_checkpoints, the initial model included


def run(run_dir: str | None = None) -> dict:
    from hmm import load_process
    from models import TransformerConfig
    from models.recipes import TrainConfig
    from models.training import train
    from probes.phase_study import phases_run

    run_dir = run_dir or os.environ.get("BELIEFGEO_BENCH_RUN")
    default = TrainConfig()
    tokens_per_step = default.batch_size * TransformerConfig().n_ctx
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as scratch:
        work = Path(scratch) / "run"
        if run_dir:
            shutil.copytree(run_dir, work, ignore=shutil.ignore_patterns("figures", "*.gif"))
            training_s = _logged_training_seconds(work)
            source = str(run_dir)
        else:
            steps = DEFAULT_CHECKPOINTS - 1
            recipe = TrainConfig(
                tokens=steps * tokens_per_step,
                n_checkpoints=DEFAULT_CHECKPOINTS,
                warmup_steps=10,
                exact_eval="off",
            )
            train(load_process("mess3"), TransformerConfig(), recipe, work, progress=False)
            training_s = _training_step_seconds() * default.tokens / tokens_per_step
            source = f"stand-in: default model, {steps} steps, one checkpoint per step"
        began = time.process_time()
        result = phases_run(work)
        phases_s = time.process_time() - began
    n_checkpoints = len(result["checkpoints"])
    fraction = phases_s / training_s if training_s else None
    out = {
        "phases.source": source,
        "phases.n_checkpoints": n_checkpoints,
        "phases.cpu_seconds_all_checkpoints": phases_s,
        "phases.cpu_seconds_per_checkpoint": phases_s / n_checkpoints,
        "phases.cpu_seconds_null": result["cpu_seconds_null"],
        "phases.training_cpu_s_default_recipe": training_s,
        "phases.fraction_of_training": fraction,
        "phases.fraction_of_training_target": TARGETS["phases.fraction_of_training"],
        "phases.ok": fraction is not None and fraction < TARGETS["phases.fraction_of_training"],
        "phases.probe_batch": (
            f"{result['probe_batch']['n_sequences']} sequences (Jacobians on "
            f"{result['probe_batch']['jacobian_sequences']}) x {result['probe_batch']['n_ctx']}"
        ),
    }
    for part in ("jacobian_units", "sharpness"):
        out[f"phases.cpu_seconds_{part}"] = sum(
            e["cpu_seconds"][part] for e in result["checkpoints"]
        )
    return out


def _training_step_seconds(rounds: int = 3, steps: int = 10) -> float:
    """Median CPU seconds per default-recipe AdamW step (128 windows of 11 Mess3 tokens,
    paper-shape model) on the training forward and the threads `beliefgeo train` uses
    (BELIEFGEO_THREADS), without checkpoint writes."""
    import statistics

    import torch

    from hmm import load_process
    from models import TransformerConfig, build_model
    from models.architectures import training_forward
    from models.compute import cpu_threads, torch_threads
    from models.data import training_batch
    from models.loss import next_token_losses

    model = build_model(TransformerConfig())
    forward = training_forward(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokens = training_batch(load_process("mess3"), 128, 10, seed=0, step=0)
    per_step = []
    with torch_threads(cpu_threads()):
        for round_ in range(rounds + 1):
            began = time.process_time()
            for _ in range(steps):
                loss = next_token_losses(forward(tokens[:, :-1]), tokens).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if round_:  # the first round warms up
                per_step.append((time.process_time() - began) / steps)
    return statistics.median(per_step)


def _logged_training_seconds(run: Path) -> float | None:
    """The run's training CPU time from the last metrics.jsonl line's cpu_s (wall_s for runs that
    did not log it), if it was logged."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return None
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return None
    last = json.loads(lines[-1])
    seconds = last.get("cpu_s", last.get("wall_s"))
    return float(seconds) if seconds is not None else None


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
