"""Speed of the belief probes (issue 4 target: every checkpoint of a default Mess3 run in < 2 min).

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. It times, on
the paper-shape Mess3 transformer (weights do not change the cost) with all 3^10 inputs: building
the probe inputs once, and per checkpoint the activation capture and the probe fits/scores; the
all-checkpoint time is projected for the default recipe's checkpoint count (40 + initialisation).
With a run directory (`run(run_dir)` or env BELIEFGEO_BENCH_RUN), it also times `probe_run` on a
copy of that run, end to end (figures included).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

TARGETS = {"probes.projected_all_checkpoints_s": 120.0}
DEFAULT_CHECKPOINTS = 41  # n_checkpoints 40 of the default recipe + the initial model


def run(run_dir: str | None = None) -> dict:
    from hmm import load_process
    from models.transformer import (
        TransformerConfig,
        build_transformer,
        transformer_residual_hooks,
    )
    from probes.activations import collect_activations, probe_inputs
    from probes.belief_study import score_activations

    process = load_process("mess3")
    t = time.perf_counter()
    inputs = probe_inputs(process, 10)
    inputs_s = time.perf_counter() - t
    model = build_transformer(TransformerConfig()).eval()
    hooks = transformer_residual_hooks(4)
    collect, score = [], []
    for _ in range(2):
        t = time.perf_counter()
        acts = collect_activations(model, inputs, hooks)
        collect.append(time.perf_counter() - t)
        t = time.perf_counter()
        score_activations(acts, inputs, hooks)
        score.append(time.perf_counter() - t)
    per_checkpoint = min(collect) + min(score)
    result = {
        "probes.rows": inputs.n_rows,
        "probes.inputs_s": round(inputs_s, 3),
        "probes.collect_per_checkpoint_s": round(min(collect), 3),
        "probes.score_per_checkpoint_s": round(min(score), 3),
        "probes.projected_all_checkpoints_s": round(
            inputs_s + DEFAULT_CHECKPOINTS * per_checkpoint, 1
        ),
        "probes.load_average_1min": round(os.getloadavg()[0], 2),
    }
    run_dir = run_dir or os.environ.get("BELIEFGEO_BENCH_RUN")
    if run_dir:
        from probes.belief_study import probe_run

        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "run"
            shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("figures", "probes.json"))
            t = time.perf_counter()
            probed = probe_run(copy)
            result["probes.probe_run_s"] = round(time.perf_counter() - t, 1)
            result["probes.probe_run_checkpoints"] = len(probed["checkpoints"])
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))
