"""Speed and memory of the hmm core (targets): Mess3 msp(11), msp(15), beliefs 100k x 10.

`run()` returns a flat dict merged into benchmarks/results.json by benchmarks/run.py. msp(15) runs
in a fresh subprocess so its peak resident memory (ru_maxrss, the whole process: Python + numpy +
the MSP arrays) is measured honestly and not polluted by earlier work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

TARGETS = {"msp11_s": 0.1, "msp15_s": 15.0, "msp15_peak_rss_gb": 4.0, "beliefs_100k_x10_s": 0.5}

_MSP15_SCRIPT = """
import json, resource, time
from hmm import load_process
p = load_process("mess3")
p.msp(2)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
m = p.msp(15)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "n_nodes": m.n_nodes, "peak_kb": peak, "base_kb": base,
                  "array_bytes": m.beliefs.nbytes + m.probs.nbytes + m.depths.nbytes
                  + m.parents.nbytes + m.symbols.nbytes}))
"""


def _best_of(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def run() -> dict:
    from hmm import load_process

    p = load_process("mess3")
    p.msp(11)  # warm-up
    msp11_best, msp11_median = _best_of(lambda: p.msp(11), 7)
    tokens, _ = p.sample(100_000, 10, seed=0)
    p.beliefs(tokens)
    beliefs_best, beliefs_median = _best_of(lambda: p.beliefs(tokens), 5)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", _MSP15_SCRIPT], capture_output=True, text=True,
                          cwd=root, check=True)
    msp15 = json.loads(proc.stdout.strip().splitlines()[-1])
    result = {
        "hmm.msp11_nodes": p.msp(11).n_nodes,
        "hmm.msp11_s": round(msp11_best, 4),
        "hmm.msp11_s_median": round(msp11_median, 4),
        "hmm.msp15_nodes": msp15["n_nodes"],
        "hmm.msp15_s": round(msp15["seconds"], 3),
        "hmm.msp15_peak_rss_gb": round(msp15["peak_kb"] / 2**20, 3),
        "hmm.msp15_rss_before_gb": round(msp15["base_kb"] / 2**20, 3),
        "hmm.msp15_array_gb": round(msp15["array_bytes"] / 2**30, 3),
        "hmm.beliefs_100k_x10_s": round(beliefs_best, 4),
        "hmm.beliefs_100k_x10_s_median": round(beliefs_median, 4),
        "hmm.cpu_count": os.cpu_count(),
    }
    result["hmm.targets_met"] = all(result[f"hmm.{k}"] < v for k, v in TARGETS.items())
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
