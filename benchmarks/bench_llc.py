"""Cost of `beliefgeo llc` on the paper-shape Mess3 transformer, in CPU seconds (time.process_time,
which a busy machine distorts far less than wall time): per checkpoint, for the calibration grid,
and for a whole default run (calibration + 10 log-spaced checkpoints), beside the training CPU of
the default 10 M-token recipe.

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. Without a run
directory it trains a stand-in run with the default model and 10 checkpoints (one per step: only
the checkpoints' shape matters for cost) and runs `llc_run` on it with the default settings and
calibration grid; the training CPU is projected from the CPU seconds per default-recipe step
(bench_phases). With a run directory (`run(run_dir)` or env BELIEFGEO_BENCH_RUN, e.g. the demo) it
runs on a copy of that run and compares with the run's logged training CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

CHECKPOINTS = 10  # `beliefgeo llc`'s default log-spaced subset


def run(run_dir: str | None = None) -> dict:
    from benchmarks.bench_phases import _logged_training_seconds, _training_step_seconds
    from hmm import load_process
    from models import TransformerConfig
    from models.recipes import TrainConfig
    from models.training import train
    from probes.llc_settings import CalibrationGrid, LLCSettings
    from probes.llc_study import llc_run

    run_dir = run_dir or os.environ.get("BELIEFGEO_BENCH_RUN")
    default = TrainConfig()
    tokens_per_step = default.batch_size * TransformerConfig().n_ctx
    settings, grid = LLCSettings(), CalibrationGrid()
    with tempfile.TemporaryDirectory(prefix="bench-llc-") as scratch:
        work = Path(scratch) / "run"
        if run_dir:
            shutil.copytree(run_dir, work, ignore=shutil.ignore_patterns("figures", "*.gif"))
            training_s = _logged_training_seconds(work)
            source = str(run_dir)
        else:
            recipe = TrainConfig(
                tokens=CHECKPOINTS * tokens_per_step,
                n_checkpoints=CHECKPOINTS + 1,
                warmup_steps=2,
                exact_eval="off",
            )
            train(load_process("mess3"), TransformerConfig(), recipe, work, progress=False)
            training_s = _training_step_seconds() * default.tokens / tokens_per_step
            source = f"stand-in: default model, {CHECKPOINTS} steps, one checkpoint per step"
        began = time.process_time()
        result = llc_run(work, checkpoints=CHECKPOINTS, settings=settings, calibrate_grid=grid)
        total_s = time.process_time() - began
    entries = result["checkpoints"]
    per_checkpoint = [e["cpu_s"] for e in entries]
    steps = result["settings"]["chains"] * result["settings"]["draws"]
    return {
        "llc.source": source,
        "llc.settings": {k: result["settings"][k] for k in ("lr", "localization", "n_beta",
                                                            "chains", "draws", "batch_size")},
        "llc.n_checkpoints": len(entries),
        "llc.cpu_seconds_per_checkpoint": sum(per_checkpoint) / len(per_checkpoint),
        "llc.cpu_ms_per_sgld_step": 1000 * sum(per_checkpoint) / (len(per_checkpoint) * steps),
        "llc.calibration_cells": len(result["calibration"]["grid"]),
        "llc.cpu_seconds_calibration": result["calibration"]["cpu_s"],
        "llc.cpu_seconds_run": total_s,
        "llc.training_cpu_s_default_recipe": training_s,
        "llc.fraction_of_training": total_s / training_s if training_s else None,
        "llc.flagged_checkpoints": sum(bool(e["flags"]) for e in entries),
    }  # fmt: skip


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
