"""`beliefgeo compare-phases`: train several architectures on one process and compare their phases.

A sweep (experiments.sweep) over architectures × seeds (default 3): every `arch:act-fn` run is the
study pipeline with the same process, recipe and budget, one run folder per seed
(DIR/arch=rnn,act_fn=tanh,seed=0, ...). One figure (shared log-token axes: probe R², excess loss,
recurrent spectral radius (RNNs only), saturated fraction; mean over seeds with a 95 % band),
DIR/summary.csv (one row per architecture: the comparison columns, then the sweep's mean / sd /
95 % interval columns, the phase milestones among them), DIR/summary.json and DIR/report.html
compare them. Re-running resumes like any sweep.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from hmm import load_process
from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic

if TYPE_CHECKING:
    from experiments.summary import RunSummary

DEFAULT_TOKENS = 2_000_000
DEFAULT_SEEDS = 3
PROBE_SEQUENCES = 20_000  # a seeded subset of enumerable inputs per checkpoint, as in the demo
CSV_FIELDS = [
    "run", "arch", "act_fn", "n_seeds", "final_excess_loss", "final_r2", "tokens_to_r2_0.9",
    "first_spectral_radius_above_1", "final_phase",
]  # fmt: skip


def parse_runs(runs: str) -> list[tuple[str, str | None]]:
    """'transformer:relu,rnn:tanh,lstm' -> [('transformer', 'relu'), ('rnn', 'tanh'),
    ('lstm', None)]: an LSTM or GRU has no act-fn (the model config refuses one)."""
    from models.families import FAMILIES

    pairs = []
    for item in filter(None, (part.strip() for part in runs.split(","))):
        arch, _, act = item.partition(":")
        family = FAMILIES.get(arch)
        if family is None or (family.activations and act not in family.activations):
            choices = "; ".join(
                f"{a}:{'|'.join(f.activations)}" if f.activations else a
                for a, f in FAMILIES.items()
            )
            raise InvalidInput(f"--runs entry {item!r} is not arch:act-fn; choose from {choices}")
        pairs.append((arch, act or None))
    if not pairs:
        raise InvalidInput("--runs is empty; give e.g. transformer:relu,rnn:tanh")
    if len(set(pairs)) != len(pairs):
        raise InvalidInput(f"--runs names a run twice: {runs}")
    return pairs


def compare_phases(
    process: str,
    runs: str,
    out: Path,
    tokens: int | None = None,
    seeds: int = DEFAULT_SEEDS,
    max_parallel: int | None = None,
    recipes: str = "default",
) -> int:
    """Train, probe and diagnose every run, recipe and seed, then write the comparison; exit
    status. `recipes` (comma-separated, e.g. "default,memorize") puts regimes side by side."""
    from experiments.pipeline import Study
    from experiments.summary import summarize_run
    from experiments.sweep import SWEEP_FORMAT, expand, point_plans, run_sweep

    pairs = parse_runs(runs)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInput(f"--seeds must be a whole number >= 1, got {seeds!r}")
    name = load_process(process).name
    base = {"process": process, "tokens": tokens or DEFAULT_TOKENS}
    axes = {"arch+act_fn": [list(p) for p in pairs], "seed": list(range(seeds))}
    regimes = [r.strip() for r in recipes.split(",") if r.strip()]
    if not regimes or len(set(regimes)) != len(regimes):
        raise InvalidInput(
            f"--recipes needs distinct recipe names, e.g. default,memorize; got {recipes!r}"
        )
    if regimes != ["default"]:
        axes["config"] = regimes
    points = expand({"base": base, "axes": axes})
    plan = Study(
        process=process,
        probe_sequences=PROBE_SEQUENCES,
        why=f"One of the compare-phases runs on {name}: same recipe and budget for all.",
    )
    plans = point_plans(points, base_plan=plan)
    record = {"format": SWEEP_FORMAT, "command": "compare-phases", "base": base, "axes": axes}
    out = Path(out)
    status = run_sweep(points, plans, out, record, None, max_parallel, title="compare-phases")
    summary = read_json(out / "summary.json")
    summaries = {run: summarize_run(out / run) for row in summary["rows"] for run in row["runs"]}
    rows = [comparison_row(row, summaries) for row in summary["rows"]]
    write_comparison(out, summary["rows"], rows, name, summaries, summary.get("cka", []))
    print(table_text(rows))
    print(f"wrote {out / 'report.html'}, comparison.png, summary.csv and summary.json: "
          f"{len(rows)} architectures x {seeds} seed(s), table above")
    return status


def comparison_row(row: dict, summaries: dict[str, RunSummary]) -> dict:
    """The comparison columns of one architecture (means over its seeds), then the sweep's."""

    def mean(key: str, digits: int):
        value = row.get(f"{key}_mean")
        return "" if value is None else round(value, digits)

    phases = Counter()
    for run in row["runs"]:
        summary = summaries[run].phases
        if summary:
            phases.update(f"{k} {u.phase}" for k, u in summary.final.units.items() if u.phase)
    reached = row.get("tokens_to_r2_0.9_n", 0)
    first = row.get("first_spectral_radius_above_1_n", 0)
    comparison = {
        "run": "-".join(str(row[k]) for k in ("arch", "act_fn", "config") if row.get(k)),
        "arch": row["arch"],
        "act_fn": row.get("act_fn") or "",  # none for an LSTM or GRU
        "n_seeds": row["n_seeds"],
        "final_excess_loss": mean("final_exact_excess_loss", 6),
        "final_r2": mean("final_r2_heldout", 4),
        "tokens_to_r2_0.9": (
            "not reached"
            if not reached
            else f"{row['tokens_to_r2_0.9_mean']:.0f} ({reached}/{row['n_seeds']} seeds)"
        ),
        "first_spectral_radius_above_1": _radius_rule(row, first, summaries),
        "final_phase": "; ".join(f"{k} ({n}/{row['n_seeds']})" for k, n in sorted(phases.items())),
    }
    stats = {k: v for k, v in row.items() if k not in comparison and k not in ("runs", "setting")}
    return {**comparison, **stats, "runs": row["runs"]}


def _radius_rule(row: dict, first: int, summaries: dict[str, RunSummary]) -> str:
    """The seed rule's column: mean tokens where it fired, 'never', or 'not applied' (no
    iterated map: a transformer)."""
    applies = [s.phases.iterated for run in row["runs"] if (s := summaries[run]).phases]
    if applies and not any(applies):
        return "not applied (no iterated map)"
    if not first:
        return "never"
    return f"{row['first_spectral_radius_above_1_mean']:.0f} ({first}/{row['n_seeds']} seeds)"


def write_comparison(
    out: Path, sweep_rows: list[dict], rows: list[dict], name: str,
    summaries: dict[str, RunSummary], cka: list = (),
) -> None:
    """DIR/comparison.png, DIR/summary.csv (comparison columns first) and DIR/report.html."""
    from experiments.sweep_summary import band_figure, rows_csv

    title = f"{name}: loss, recurrent radius, saturation and belief geometry per architecture"
    write_atomic(out / "comparison.png", band_figure(sweep_rows, summaries, title))
    write_atomic(out / "summary.csv", rows_csv(rows))
    write_atomic(out / "report.html", comparison_report(out, rows, name, cka))


def table_text(rows: list[dict]) -> str:
    """The summary table as aligned text for the terminal."""
    lines = [" | ".join(CSV_FIELDS)]
    lines += [" | ".join(str(row[f]) for f in CSV_FIELDS) for row in rows]
    return "\n".join(lines)


def comparison_report(out: Path, rows: list[dict], process_name: str, cka: list = ()) -> str:
    """DIR/report.html: the table, the figure, the CKA between runs and a link to each run's own
    report."""
    from experiments.cka_summary import setting_table_html
    from experiments.page import embed_image, html_page
    from experiments.summary import R2_REACHED

    header = "".join(f"<th>{html.escape(f)}</th>" for f in CSV_FIELDS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[f]))}</td>" for f in CSV_FIELDS) + "</tr>"
        for row in rows
    )
    links = "".join(
        f'<li><a href="{html.escape(run)}/report.html">{html.escape(run)}</a></li>'
        for row in rows
        for run in row["runs"]
    )
    parts = [
        f"<h1>Training phases compared on {html.escape(process_name)}</h1>",
        "<p>Same process, recipe and token budget for every run; each architecture is trained "
        "with several seeds. Numbers are means over seeds (summary.csv adds sd and 95 % "
        "t-intervals); curves are means with 95 % bands. Spectral radius: the recurrent map "
        "ds_t/ds_{t-1} of RNNs only, of the full state (s = h, or (h, c) for an LSTM; a "
        "transformer iterates no map, so no radius of it is read against 1). Phase milestones "
        "(linear until, hybrid from, saturated or sparse from), gains or active fractions, radii, "
        "Lyapunov exponents and the secant test at start and end are in summary.csv with their "
        "intervals. "
        f"R² is the held-out linear-probe R² of the final layer; tokens to R² ≥ {R2_REACHED} is "
        "the first checkpoint that reaches it (mean over the seeds that reach it).</p>",
        f"<table><tr>{header}</tr>{body}</table>",
        embed_image(out / "comparison.png", "Comparison on shared log-token axes"),
        setting_table_html(list(cka), [{"setting": row["run"], "runs": row["runs"]}
                                       for row in rows]),
        f"<h2>Per-run reports</h2><ul>{links}</ul>",
    ]
    return html_page(f"compare-phases {process_name}", "\n".join(parts))
