"""Cost of the belief probes (target: every checkpoint of the demo, all 3^10 inputs, in
<= 120 s on 2 cores).

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. Times are CPU
seconds of this process (time.process_time, every thread counted) with one torch / BLAS thread, so
other work on the machine does not distort them. On the paper-shape Mess3 transformer (weights do
not change the cost) with all 3^10 inputs it times what is done once per run (inputs and split,
k-gram cells and lookups, the untrained-model baselines) and per checkpoint (activations, one token
step per prefix; probe fits and scores), and projects the all-checkpoint cost for the default
recipe's checkpoint count (40 + initialisation), and the effective-dimension spectra added to
each checkpoint against that per-checkpoint cost (target <= 30 %). With a run directory
(`run(run_dir)` or env BELIEFGEO_BENCH_RUN) it also times `probe_run` on a copy of that run, end
to end (figures included).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

TARGETS = {"probes.projected_all_checkpoints_cpu_s": 120.0,
           "probes.geometry_share_of_probe_step": 0.30}
DEFAULT_CHECKPOINTS = 41  # n_checkpoints 40 of the default recipe + the initial model


@contextmanager
def one_thread():
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def _cpu(fn):
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def _geometry_cost(inputs, acts) -> dict:
    """CPU seconds of the effective-dimension spectra of every hook of one checkpoint (the
    analysis added to every checkpoint's probe step; target <= 30 % of that step)."""
    from probes.geometry import hook_spectra

    weights = inputs.fit_prob + inputs.heldout_prob
    seconds = min(_cpu(lambda: hook_spectra(acts.hooks, weights))[1] for _ in range(2))
    return {"probes.geometry_per_checkpoint_cpu_s": round(seconds, 3)}


def run(run_dir: str | None = None) -> dict:
    from hmm import load_process
    from models.architectures import build_model, make_model_config, residual_hooks
    from probes.activations import collect_activations, probe_inputs
    from probes.belief_study import (
        kgram_baselines,
        optimal_logit_r2,
        references,
        score_activations,
    )

    process = load_process("mess3")
    with one_thread():
        inputs, inputs_s = _cpu(lambda: probe_inputs(process, 10))
        refs, refs_s = _cpu(lambda: references(inputs))
        _, kgram_s = _cpu(lambda: kgram_baselines(inputs, refs))
        _, logit_s = _cpu(lambda: optimal_logit_r2(process, inputs, refs))
        model = build_model(make_model_config("transformer")).eval()
        hooks = residual_hooks(model)
        collect, score = [], []
        for _ in range(2):
            acts, seconds = _cpu(lambda: collect_activations(model, inputs, hooks))
            collect.append(seconds)
            _, seconds = _cpu(lambda acts=acts: score_activations(acts, inputs, hooks, refs=refs))
            score.append(seconds)
        geometry = _geometry_cost(inputs, acts)  # one thread, like the probe step it joins
    per_checkpoint = min(collect) + min(score)
    once = inputs_s + refs_s + kgram_s + logit_s + 3 * per_checkpoint  # 3 untrained seeds
    result = {
        "probes.rows": inputs.n_rows,
        "probes.once_per_run_cpu_s": round(once, 2),
        "probes.collect_per_checkpoint_cpu_s": round(min(collect), 3),
        "probes.score_per_checkpoint_cpu_s": round(min(score), 3),
        "probes.projected_all_checkpoints_cpu_s": round(
            once + DEFAULT_CHECKPOINTS * per_checkpoint, 1
        ),
        **geometry,
        "probes.geometry_share_of_probe_step": round(
            geometry["probes.geometry_per_checkpoint_cpu_s"] / per_checkpoint, 3
        ),
        "probes.peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3),
        "probes.load_average_1min": round(os.getloadavg()[0], 2),
    }
    run_dir = run_dir or os.environ.get("BELIEFGEO_BENCH_RUN")
    if run_dir:
        from probes.belief_study import probe_run

        with tempfile.TemporaryDirectory() as tmp, one_thread():
            copy = Path(tmp) / "run"
            shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("figures", "probes.json"))
            probed, seconds = _cpu(lambda: probe_run(copy))
            result["probes.probe_run_cpu_s"] = round(seconds, 1)
            result["probes.probe_run_checkpoints"] = len(probed["checkpoints"])
    return result


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))
