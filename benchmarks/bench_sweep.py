"""Cost of a sweep (target: 4 points × 2 seeds with --max-parallel 2 on a 2-core machine in
≤ 0.6× the wall time of the same 8 runs one after another), measured in one benchmark run.

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. It runs the
8 points from scratch twice: one after another in this process (`run_study`, the way a researcher
without sweeps would loop; libraries already imported, so the loop pays no start-up at all), and as
`beliefgeo sweep --max-parallel 2` on an embedded local Ray (its start, the workers' imports, the
summary and report included). The serial runs are split in two halves around the sweep, because
this shared machine's speed drifts by up to ±20 % over minutes. It then checks that the sweep's
summary means and intervals equal those recomputed from the serial runs' folders (the runs are
seeded, so the two executions must agree).

A sweep has a fixed cost of its own, about 14 s here (`sweep.fixed_cost_s`: Ray's start ≈ 4.5 s,
each worker importing torch and TransformerLens ≈ 6 s, summary and report ≈ 2 s, shutdown ≈ 1 s),
and two processes side by side on this machine's two virtual cores each run up to 1.25× slower
than alone (`sweep.point_slowdown_in_parallel`), so the ratio depends on the size of a point:
BELIEFGEO_BENCH_SWEEP_TOKENS sets the tokens per point (default 16,000,000: about 70 s per point,
RNN training, probing 8 checkpoints and phases — still far smaller than a real study's point,
the demo's being 7.6 min). Measured ratios: 0.65 at 2,000,000 tokens (13 s points, the fixed cost
almost a quarter of the parallel wall time), 0.534 and 0.611 in two runs at 8,000,000 (35 s).
"""

from __future__ import annotations

import json
import math
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

    tokens = int(os.environ.get(TOKENS_ENV) or 16_000_000)
    spec = {"base": {**BASE, "tokens": tokens}, "axes": AXES}
    points = expand(spec)
    plans = point_plans(points, base_plan=Study(process="", why="bench_sweep"))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        scratch = Path(scratch)
        serial_dir = scratch / "serial"

        def one_after_another(some) -> tuple[float, float]:
            started, cpu_started = time.perf_counter(), time.process_time()
            for point in some:
                run = serial_dir / point.name
                _quiet_study(plans[point.name], run, f"sweep {point.name}", scratch / "fractal")
            return time.perf_counter() - started, time.process_time() - cpu_started

        # the serial runs in two halves around the sweep: this shared machine's speed drifts by
        # ±20 % over minutes, and a drift then weighs on both sides alike
        half = len(points) // 2
        first_wall, first_cpu = one_after_another(points[:half])
        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(spec))
        started, cpu_started, epoch = time.perf_counter(), time.process_time(), time.time()
        status = _quiet(lambda: sweep(spec_path, scratch / "sweep", max_parallel=2))
        parallel, driver_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        second_wall, second_cpu = one_after_another(points[half:])
        serial, serial_cpu = first_wall + second_wall, first_cpu + second_cpu
        by_worker, busy, first_start = _worker_records(scratch / "sweep", points)
        worst = _summary_gap(scratch / "sweep", serial_dir, points)
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
        # the sweep's own cost: its wall time beyond the busiest worker's points; of it, the
        # time before the first point began (Ray's start, the workers' imports)
        "sweep.fixed_cost_s": round(parallel - max(busy.values()), 1),
        "sweep.until_first_point_s": round(first_start - epoch, 1),
        # how much slower a point runs beside another than alone (two processes on two cores)
        "sweep.point_slowdown_in_parallel": round(sum(busy.values()) / serial, 3),
        "sweep.serial_cpu_s": round(serial_cpu, 1),
        "sweep.parallel2_critical_path_cpu_s": round(driver_cpu + max(by_worker.values()), 1),
        "sweep.parallel_over_serial_cpu_estimate": round(cpu_ratio, 3),
        "sweep.exit_status": status,
        "sweep.summary_vs_serial_max_abs_diff": worst,
    }


def _worker_records(out: Path, points) -> tuple[dict, dict, float]:
    """From each finished point's point.json: CPU seconds and busy seconds per worker process,
    and when the first point began (epoch seconds)."""
    by_worker: dict[int, float] = {}
    busy: dict[int, float] = {}
    first_start = math.inf
    for point in points:
        record = json.loads((out / point.name / "point.json").read_text())
        pid = record["worker_pid"]
        by_worker[pid] = by_worker.get(pid, 0.0) + record["cpu_s"]
        busy[pid] = busy.get(pid, 0.0) + record["seconds"]
        first_start = min(first_start, record["started_at"])
    return by_worker, busy, first_start


def _summary_gap(out: Path, serial_dir: Path, points) -> float:
    """Largest |difference| between the sweep's summary (means, intervals) and the same numbers
    recomputed from the serial runs' folders: 0 when the two executions agree."""
    from experiments.summary import summarize_run
    from experiments.sweep_summary import interval

    summary = json.loads((out / "summary.json").read_text())
    worst = 0.0
    for row in summary["rows"]:
        runs = [p.name for p in points if p.setting == row["setting"]]
        for name in ("final_exact_excess_loss", "final_r2_heldout"):
            recomputed = interval([summarize_run(serial_dir / r).headline()[name] for r in runs])
            for suffix in ("mean", "ci95_low", "ci95_high"):
                worst = max(worst, abs(recomputed[suffix] - row[f"{name}_{suffix}"]))
    return worst


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
