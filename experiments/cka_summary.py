"""CKA in sweep and compare-phases summaries: do the runs build the same geometry?

`sweep_cka` compares the finished runs of a sweep folder that share a process (a sweep may vary
the process; runs of different processes are not compared) with probes.similarity: every pair of
runs, every pair of their residual hooks, beside the untrained null (summary.json "cka").
`setting_table` condenses it for the reports: final layer against final layer, mean over the
pairs of runs of two settings (seed-to-seed pairs where both are the same setting), beside the
null. docs/geometry.md defines the numbers.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from hmm.errors import InvalidInput
from models.run_files import read_config

MAX_RUNS = 24  # pairs grow as n^2 (each ~1 s): larger groups are listed as skipped


def sweep_cka(out: Path, names: list[str]) -> list[dict]:
    """One entry per process with two or more finished runs among `names` (folders in out):
    probes.similarity.cka_between_runs's result plus "process"; or {"process", "runs",
    "skipped": why} when the group is too large or cannot be compared."""
    from probes.similarity import cka_between_runs

    groups: dict[str, list[str]] = {}
    for name in names:
        spec = read_config(out / name).process.to_json()
        groups.setdefault(json.dumps(spec, sort_keys=True), []).append(name)
    entries = []
    for key, members in groups.items():
        process = json.loads(key).get("name")
        if len(members) < 2:
            continue
        if len(members) > MAX_RUNS:
            entries.append({"process": process, "runs": members,
                             "skipped": f"{len(members)} runs; CKA is computed for <= {MAX_RUNS}"})
            continue
        try:
            result = cka_between_runs([out / m for m in members], labels=members)
        except InvalidInput as exc:
            entries.append({"process": process, "runs": members, "skipped": str(exc)})
            continue
        entries.append({"process": process, **result})
    return entries


def setting_table(entries: list[dict], rows: list[dict]) -> list[dict]:
    """Final-layer CKA per pair of settings: [{"a", "b", "n_pairs", "cka_mean", "cka_min",
    "cka_max", "untrained_mean"}], settings from the summary rows' "runs"."""
    from models.architectures import final_layer_hook

    setting_of = {run: row["setting"] for row in rows for run in row.get("runs", [])}
    cells: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for entry in entries:
        for pair in entry.get("pairs", []):
            a, b = pair["run_a"], pair["run_b"]
            hooks_a = list(pair["cka"])
            ha, hb = final_layer_hook(hooks_a), final_layer_hook(list(pair["cka"][hooks_a[0]]))
            key = tuple(sorted((setting_of.get(a, a), setting_of.get(b, b))))
            cells.setdefault(key, []).append((pair["cka"][ha][hb], pair["cka_untrained"][ha][hb]))
    table = []
    for (a, b), values in sorted(cells.items()):
        trained, untrained = np.array(values).T
        table.append({"a": a, "b": b, "n_pairs": len(values),
                      "cka_mean": float(trained.mean()), "cka_min": float(trained.min()),
                      "cka_max": float(trained.max()), "untrained_mean": float(untrained.mean())})
    return table


def setting_table_html(entries: list[dict], rows: list[dict]) -> str:
    """The reports' CKA section ("" without any compared pair)."""
    table = setting_table(entries, rows)
    if not table:
        return ""
    body = "".join(
        f"<tr><td>{html.escape(r['a'])}</td><td>{html.escape(r['b'])}</td><td>{r['n_pairs']}</td>"
        f"<td>{r['cka_mean']:.3f} ({r['cka_min']:.3f}–{r['cka_max']:.3f})</td>"
        f"<td>{r['untrained_mean']:.3f}</td></tr>"
        for r in table
    )
    return (
        "<h2>Do the networks build the same geometry? (linear CKA)</h2>"
        "<p>Linear CKA between the final layers of two runs on the same input prefixes (weighted "
        "by probability; 1 = the same geometry up to rotation and scale), mean (range) over the "
        "pairs of runs of the two settings; a setting against itself compares its seeds. Null: "
        "the same two architectures untrained. Every hook pair is in summary.json "
        "(\"cka\").</p>"
        "<table><tr><th>setting</th><th>setting</th><th>pairs</th><th>CKA, final layers</th>"
        f"<th>untrained</th></tr>{body}</table>"
    )
