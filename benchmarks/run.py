"""`make bench`: run every benchmark and write benchmarks/results.json.

Each `bench_*.py` module has `run() -> dict` of flat "area.measure" keys; this merges them with the
machine they ran on, so numbers in issue notes can be traced to a command and a file.
`python -m benchmarks.run bench_sweep` reruns only the named modules and keeps the others' entries
(each entry carries its own date).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

MODULES = (
    "bench_hmm", "bench_training", "bench_probes", "bench_phases", "bench_llc", "bench_sweep",
)  # fmt: skip
RESULTS = Path(__file__).with_name("results.json")


def main(names: list[str]) -> int:
    import torch

    results: dict = json.loads(RESULTS.read_text()) if names and RESULTS.is_file() else {}
    results |= {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
    }
    for name in names or MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        started = time.perf_counter()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        measured = module.run()
        measured[f"{name}.wall_s"] = round(time.perf_counter() - started, 2)
        measured[f"{name}.date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        results[name] = measured
        for key, value in measured.items():
            print(f"  {key}: {value}", file=sys.stderr)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
