"""Cost of a sweep (target: 4 points × 2 seeds with --max-parallel 2 on a 2-core machine in
≤ 0.6× the wall time of the same 8 runs one after another), measured in one benchmark run.

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. It runs the
8 points twice from scratch: first one after another in this process (`run_study`, the way a
researcher without sweeps would loop), then as `beliefgeo sweep --max-parallel 2` on an embedded
local Ray (its start-up, worker imports and summary included). It then checks that the sweep's
summary means equal the means recomputed from the serial runs' folders (the runs are seeded, so the
two executions must agree). BELIEFGEO_BENCH_SWEEP_TOKENS sets the tokens per point (default
2,000,000: about 20 CPU seconds per point, training, probing 8 checkpoints and phases alike, so
that Ray's fixed costs — start-up, one import of the libraries per worker, about 10 s — stay a
modest part of the sweep, as in real use).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

TARGETS = {"sweep.parallel_over_serial_wall": 0.6}
TOKENS_ENV = "BELIEFGEO_BENCH_SWEEP_TOKENS"
BASE = {
    "process": "mess3",
    "arch": "rnn",
    "hidden": 32,
    "n_ctx": 8,
    "n_checkpoints": 8,
    "probe_sequences": 3000,
}
AXES = {"act_fn": ["tanh", "relu"], "lr": [0.003, 0.01], "seed": [0, 1]}


def run() -> dict:
    from experiments.pipeline import Study
    from experiments.sweep import expand, point_plans, sweep
    from experiments.sweep_summary import interval, run_headline

    tokens = int(os.environ.get(TOKENS_ENV) or 2_000_000)
    spec = {"base": {**BASE, "tokens": tokens}, "axes": AXES}
    points = expand(spec)
    plans = point_plans(points, base_plan=Study(process="", why="bench_sweep"))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        scratch = Path(scratch)
        serial_dir = scratch / "serial"
        started, cpu_started = time.perf_counter(), time.process_time()
        for point in points:
            run = serial_dir / point.name
            _quiet_study(plans[point.name], run, f"sweep {point.name}", scratch / "fractal")
        serial, serial_cpu = time.perf_counter() - started, time.process_time() - cpu_started

        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(spec))
        started, cpu_started = time.perf_counter(), time.process_time()
        status = _quiet(lambda: sweep(spec_path, scratch / "sweep", max_parallel=2))
        parallel, driver_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        by_worker: dict[int, float] = {}
        for point in points:
            record = json.loads((scratch / "sweep" / point.name / "point.json").read_text())
            pid = record["worker_pid"]
            by_worker[pid] = by_worker.get(pid, 0.0) + record["cpu_s"]

        summary = json.loads((scratch / "sweep" / "summary.json").read_text())
        worst = 0.0
        for row in summary["rows"]:
            runs = [p.name for p in points if p.setting == row["setting"]]
            for name in ("final_exact_excess_loss", "final_r2_heldout"):
                recomputed = interval([run_headline(serial_dir / r)[0][name] for r in runs])
                for suffix in ("mean", "ci95_low", "ci95_high"):
                    worst = max(worst, abs(recomputed[suffix] - row[f"{name}_{suffix}"]))
    ratio = parallel / serial
    # on a shared machine wall time is distorted: the CPU seconds of the critical path (the driver
    # plus the busiest worker; Ray's own daemons left out) over the serial loop's CPU seconds
    cpu_ratio = (driver_cpu + max(by_worker.values())) / serial_cpu
    return {
        "sweep.points": len(points),
        "sweep.tokens_per_point": tokens,
        "sweep.serial_wall_s": round(serial, 1),
        "sweep.parallel2_wall_s": round(parallel, 1),
        "sweep.parallel_over_serial_wall": round(ratio, 3),
        "sweep.target_parallel_over_serial": TARGETS["sweep.parallel_over_serial_wall"],
        "sweep.meets_target": ratio <= TARGETS["sweep.parallel_over_serial_wall"],
        "sweep.serial_cpu_s": round(serial_cpu, 1),
        "sweep.parallel2_critical_path_cpu_s": round(driver_cpu + max(by_worker.values()), 1),
        "sweep.parallel_over_serial_cpu_estimate": round(cpu_ratio, 3),
        "sweep.exit_status": status,
        "sweep.summary_vs_serial_max_abs_diff": worst,
    }


def _quiet_study(plan, out: Path, title: str, fractal: Path) -> None:
    """One point the way the sweep runs it, the ground-truth fractal rendered once as well."""
    from experiments.pipeline import run_study

    _quiet(lambda: run_study(plan, out, None, title, fractal_cache=fractal))


def _quiet(call):
    """Run `call` with its stdout and stderr lines discarded (the bench prints its own)."""
    import contextlib

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        with contextlib.redirect_stderr(sink):
            return call()


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key}: {value}")
