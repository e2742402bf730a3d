"""`beliefgeo compare-phases`: train several architectures on one process and compare their phases.

Each `arch:act-fn` run is the study pipeline (experiments.pipeline.run_study) with the same
process, recipe, budget and seed: training, probes and phase diagnostics on every checkpoint.
One figure (shared log-token axes: excess loss, spectral radius, saturated fraction, probe R²),
DIR/summary.csv and DIR/report.html compare them.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hmm import load_process  # noqa: E402
from hmm.errors import InvalidInput  # noqa: E402
from hmm.files import read_json, writable_dir, write_atomic  # noqa: E402
from hmm.plots import OKABE_ITO_HEX  # noqa: E402

DEFAULT_TOKENS = 2_000_000
PROBE_SEQUENCES = 20_000  # a seeded subset of enumerable inputs per checkpoint, as in the demo
OKABE_ITO = [OKABE_ITO_HEX[i] for i in (0, 1, 2, 5, 6, 4, 3, 7)]
R2_REACHED = 0.9
CSV_FIELDS = [
    "run", "arch", "act_fn", "final_excess_loss", "final_r2", "tokens_to_r2_0.9",
    "first_spectral_radius_above_1", "final_phase",
]  # fmt: skip


def parse_runs(runs: str) -> list[tuple[str, str]]:
    """'transformer:relu,rnn:tanh' -> [('transformer', 'relu'), ('rnn', 'tanh')]."""
    from models.architectures import ARCH_ACTIVATIONS

    pairs = []
    for item in filter(None, (part.strip() for part in runs.split(","))):
        arch, _, act = item.partition(":")
        if arch not in ARCH_ACTIVATIONS or act not in ARCH_ACTIVATIONS[arch]:
            choices = "; ".join(f"{a}:{'|'.join(acts)}" for a, acts in ARCH_ACTIVATIONS.items())
            raise InvalidInput(f"--runs entry {item!r} is not arch:act-fn; choose from {choices}")
        pairs.append((arch, act))
    if not pairs:
        raise InvalidInput("--runs is empty; give e.g. transformer:relu,rnn:tanh")
    if len(set(pairs)) != len(pairs):
        raise InvalidInput(f"--runs names a run twice: {runs}")
    return pairs


def compare_phases(process: str, runs: str, out: Path, tokens: int | None = None) -> Path:
    """Train, probe and diagnose every run, then write the comparison figure, CSV and report."""
    from experiments.pipeline import Study, run_study

    pairs = parse_runs(runs)
    name = load_process(process).name
    out = writable_dir(out)
    rows = []
    for arch, act in pairs:
        study = Study(
            process=process,
            arch=arch,
            model={"act_fn": act},
            tokens=tokens or DEFAULT_TOKENS,
            probe_sequences=PROBE_SEQUENCES,
            why=f"One of the compare-phases runs on {name}: same recipe, budget and seed for all.",
        )
        run_study(study, out / f"{arch}-{act}", tokens=None, title=f"compare-phases {arch}:{act}")
        rows.append(run_row(out / f"{arch}-{act}", arch, act))
    write_atomic(out / "comparison.png", comparison_figure(out, rows, name))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "summary.csv", buffer.getvalue())
    write_atomic(out / "report.html", comparison_report(out, rows, name))
    print(table_text(rows))
    print(f"report: {out / 'report.html'}")
    return out


def run_row(run: Path, arch: str, act: str) -> dict:
    """One line of the comparison table, plus the curves the figure draws."""
    from experiments.report import run_numbers
    from models.architectures import final_layer_hook

    numbers = run_numbers(run)
    probes = read_json(run / "probes.json")
    phases = read_json(run / "phases.json")
    head = final_layer_hook([h for h in probes["checkpoints"][-1]["layers"] if h != "concat"])
    r2 = [(c["tokens"], c["layers"][head]["r2_heldout"]) for c in probes["checkpoints"]]
    reached = next((t for t, value in r2 if value >= R2_REACHED), "not reached")
    phase_entries = phases["checkpoints"]
    saturated = [
        (e["tokens"], float(np.mean([u["saturated_frac"] for u in e["units"].values()])))
        for e in phase_entries
    ]
    radius = [(e["tokens"], e["jacobian"]["spectral_radius_mean"]) for e in phase_entries]
    excess = [
        (e["tokens"], e["exact_excess_loss"])
        for e in phase_entries
        if e.get("exact_excess_loss") is not None
    ]
    return {
        "run": run.name,
        "arch": arch,
        "act_fn": act,
        "final_excess_loss": round(numbers.get("excess_loss", float("nan")), 6),
        "final_r2": round(r2[-1][1], 4),
        "tokens_to_r2_0.9": reached,
        "first_spectral_radius_above_1": _or_never(phases.get("first_spectral_radius_above_1")),
        "final_phase": "; ".join(
            f"{k} {v['phase']}" for k, v in phase_entries[-1]["units"].items()
        ),
        "curves": {"r2": r2, "radius": radius, "saturated": saturated, "excess": excess},
        "head": head,
    }


def _or_never(tokens: int | None) -> int | str:
    return "never" if tokens is None else tokens


def comparison_figure(out: Path, rows: list[dict], process_name: str) -> bytes:
    """Four panels on one log-token axis, one colour per run."""
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    panels = [
        ("excess", "exact excess loss (nats/token)", "log"),
        ("radius", "mean spectral radius (full map / recurrent)", "log"),
        ("saturated", "saturated fraction of units (mean over layers)", "linear"),
        ("r2", "held-out probe R² (final layer)", "linear"),
    ]
    for ax, (key, label, yscale) in zip(axes.flat, panels, strict=True):
        for colour, row in zip(OKABE_ITO, rows, strict=False):
            points = row["curves"][key]
            if not points:
                continue
            x, y = np.array(points, dtype=float).T
            if yscale == "log":
                y = np.maximum(y, 1e-6)
            ax.plot(np.maximum(x, 1e3), y, "o-", ms=2.5, lw=1.3, color=colour, label=row["run"])
        ax.set(xscale="log", yscale=yscale, ylabel=label)
        ax.grid(alpha=0.3, which="both")
        if key == "radius":
            ax.axhline(1.0, color="#666", ls="--", lw=1)
        if key == "r2":
            ax.axhline(R2_REACHED, color="#666", ls=":", lw=1)
    for ax in axes[1]:
        ax.set_xlabel("training tokens (checkpoint at 0 drawn at 10³)")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        f"{process_name}: how loss, Jacobian spectral radius, unit saturation and belief geometry "
        "evolve per architecture"
    )
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def table_text(rows: list[dict]) -> str:
    """The summary table as aligned text for the terminal."""
    lines = [" | ".join(CSV_FIELDS)]
    lines += [" | ".join(str(row[f]) for f in CSV_FIELDS) for row in rows]
    return "\n".join(lines)


def comparison_report(out: Path, rows: list[dict], process_name: str) -> str:
    """DIR/report.html: the table, the figure and a link to each run's own report."""
    from experiments.report import embed_image, html_page

    header = "".join(f"<th>{html.escape(f)}</th>" for f in CSV_FIELDS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[f]))}</td>" for f in CSV_FIELDS) + "</tr>"
        for row in rows
    )
    links = "".join(
        f'<li><a href="{html.escape(row["run"])}/report.html">{html.escape(row["run"])}</a></li>'
        for row in rows
    )
    parts = [
        f"<h1>Training phases compared on {html.escape(process_name)}</h1>",
        "<p>Same process, recipe, token budget and seed for every run. Spectral radius: full "
        "residual map for transformers (the skip path adds the identity, so it starts near 1), "
        "recurrent map dh_t/dh_{t-1} for RNNs (above 1 = perturbations grow along the sequence). "
        f"R² is the held-out linear-probe R² of the final layer; tokens to R² ≥ {R2_REACHED} is "
        "the first checkpoint that reaches it.</p>",
        f"<table><tr>{header}</tr>{body}</table>",
        embed_image(out / "comparison.png", "Comparison on shared log-token axes"),
        f"<h2>Per-run reports</h2><ul>{links}</ul>",
    ]
    return html_page(f"compare-phases {process_name}", "\n".join(parts))
