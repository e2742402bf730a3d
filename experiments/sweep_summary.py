"""A sweep's summary: headline numbers per run folder, mean / sd / 95 % t-interval over seeds per
setting, DIR/summary.csv, DIR/summary.json and DIR/report.html (curves with seed bands, a table per
axis).

Headline numbers of one run (None where the run has no such number):
  final_exact_excess_loss      exact excess loss at the last checkpoint (nats/token)
  final_r2_heldout             held-out probe R² of the final layer at the last checkpoint
  final_r2_concat              the same for all layers concatenated
  final_next_token_r2          the probe from the model's own next-token distribution (same)
  final_r2_beyond_prediction   the final layer's r2_beyond_prediction (docs/probes.md)
  r2_heldout:<hook>            the same per probed layer
  final_untrained_r2           the same probe on the untrained network (mean over init seeds)
  best_kgram_r2                the best k-gram table's held-out R² (k = 3: the paper's order-3
                               Markov baseline), probes.json baselines.kgram
  best_kgram_oracle_r2         the best table of the last k ≤ 6 tokens, probes.json
                               baselines.kgram_oracle: the strongest network-free null
  final_r2_factors, final_r2_component   the final layer's R² to a product's "factors" or a
                               mixture's "component" target (probes.json layers.<hook>.targets;
                               empty when the probes did not write it)
  r2_target:<target>:<hook>    every target's R² per probed layer (the same source)
  icl_close_from, icl_last_excess, icl_gain_closed   icl.json: the first position from which the
                               model stays within 0.01 nats of the exact curve, its excess at the
                               last position, the share of a mixture's never-learns gap it closes
  tokens_to_r2_0.9             tokens of the first checkpoint whose final-layer R² >= 0.9
  first_spectral_radius_above_1, final_spectral_radius_mean (recurrent networks only: a
  transformer's radius is never read against 1), final_saturated_frac, final_linear_frac,
  final_sharpness, final_sign_flip_frac, final_sign_flip_null   from phases.json
  final_llc                    the local learning coefficient at the last checkpoint llc.json
                               measured, when that estimate is an LLC (runs with llc.json only)
  linear_until, hybrid_from, saturated_from, sparse_from, gain_*, active_*, radius_*,
  lyapunov_*, secant_*   the phase milestones (probes.phase_study.phase_milestones)
Per setting and number: <name>_mean, <name>_sd (n-1), <name>_ci95_low, <name>_ci95_high
(mean ± t_{0.975, n-1} · sd / √n), over the seeds that have the number; n_seeds counts finished
seeds, <name>_n how many of them have it (tokens_to_r2_0.9: how many reached 0.9).
"""

from __future__ import annotations

import csv
import functools
import html
import io
import math
from pathlib import Path

import numpy as np

from experiments.summary import RunSummary, summarize_run
from hmm.files import write_atomic, write_json
from probes.phase_study import MILESTONE_KEYS

STAT_SUFFIXES = ("mean", "sd", "ci95_low", "ci95_high", "n")
FIXED_HEADLINES = (
    "final_exact_excess_loss", "final_r2_heldout", "final_r2_concat", "final_next_token_r2",
    "final_r2_beyond_prediction", "tokens_to_r2_0.9",
    "first_spectral_radius_above_1", "final_spectral_radius_mean", "final_saturated_frac",
    "final_linear_frac", "final_sharpness", "final_sign_flip_frac", "final_sign_flip_null",
    "final_llc", "final_untrained_r2", "best_kgram_r2", "best_kgram_oracle_r2",
    "final_r2_factors", "final_r2_component",
    "icl_close_from", "icl_last_excess", "icl_gain_closed", *MILESTONE_KEYS,
)  # fmt: skip


# ---- one run: experiments.summary.RunSummary.headline() and .curves() ---------------------------


# ---- statistics ---------------------------------------------------------------------------------
def interval(values: list[float]) -> dict:
    """mean, sd (n-1), 95 % t-interval and n of the finite values; None where undefined."""
    xs = [float(v) for v in values if _finite(v)]
    n = len(xs)
    out = dict.fromkeys(STAT_SUFFIXES)
    out["n"] = n
    if n:
        out["mean"] = float(np.mean(xs))
    if n >= 2:
        sd = float(np.std(xs, ddof=1))
        half = _t975(n - 1) * sd / math.sqrt(n)
        out.update(sd=sd, ci95_low=out["mean"] - half, ci95_high=out["mean"] + half)
    return out


@functools.cache
def _t975(dof: int) -> float:
    """Student's t 97.5 % quantile (scipy's ppf costs a millisecond; summaries call it often)."""
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def setting_rows(points, results: dict, out: Path) -> tuple[list[dict], dict[str, RunSummary]]:
    """One row per setting (axes other than seed) and the summary of every finished run."""
    groups: dict[str, list] = {}
    for point in points:
        groups.setdefault(point.setting, []).append(point)
    rows, summaries = [], {}
    for setting, members in groups.items():
        done = [p for p in members if results.get(p.name, {}).get("status") == "done"]
        headlines = {}
        for point in done:
            summaries[point.name] = summarize_run(out / point.name)
            headlines[point.name] = summaries[point.name].headline()
        row = {"setting": setting}
        row.update({k: v for k, v in members[0].values if k != "seed"})
        row["n_seeds"] = len(done)
        row["n_failed"] = len(members) - len(done)
        names = list(FIXED_HEADLINES)
        names += sorted({k for h in headlines.values() for k in h} - set(FIXED_HEADLINES))
        for name in names:
            stats = interval([h.get(name) for h in headlines.values()])
            row.update({f"{name}_{suffix}": stats[suffix] for suffix in STAT_SUFFIXES})
        row["runs"] = [p.name for p in done]
        rows.append(row)
    return rows, summaries


# ---- files --------------------------------------------------------------------------------------
def write_summary(out: Path, points, results: dict, record: dict) -> list[dict]:
    """DIR/summary.json, DIR/summary.csv and DIR/report.html; returns the rows."""
    from experiments.cka_summary import sweep_cka

    rows, summaries = setting_rows(points, results, out)
    cka = sweep_cka(out, [run for row in rows for run in row["runs"]])
    failed = [
        {"name": p.name, "error": results.get(p.name, {}).get("error", "not run")}
        for p in points
        if results.get(p.name, {}).get("status") != "done"
    ]
    write_json(
        out / "summary.json",
        {
            "format": record.get("format"),
            "spec": record,
            "n_points": len(points),
            "n_done": len(points) - len(failed),
            "failed": failed,
            "rows": rows,
            "cka": cka,
        },
    )
    write_atomic(out / "summary.csv", rows_csv(rows))
    write_atomic(out / "report.html", report_html(out, points, rows, summaries, failed, cka))
    return rows


def headline_lines(rows: list[dict]) -> list[str]:
    """One terminal line per setting: excess loss and final-layer R², mean [95 % interval]."""
    return [
        f"{row['setting']} ({row['n_seeds']} seeds): exact excess loss "
        f"{_cell(row, 'final_exact_excess_loss')}, final-layer R² {_cell(row, 'final_r2_heldout')}"
        for row in rows
    ]


def rows_csv(rows: list[dict]) -> str:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields and k != "runs"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


# ---- the report ---------------------------------------------------------------------------------
CURVE_PANELS = (
    ("r2_final_layer", "held-out probe R² (final layer)", "linear"),
    ("excess_loss", "excess loss (nats/token)", "log"),
    ("spectral_radius_mean", "mean recurrent spectral radius (RNNs)", "log"),
    ("saturated_frac", "saturated fraction of units", "linear"),
)
LOSS_KINDS = {  # which excess loss the panel plots (RunSummary.loss.curve_kind of its runs)
    ("exact",): "excess loss: exact, at each checkpoint",
    ("batch",): "excess loss: batch estimates (no exact curve)",
    ("batch", "exact"): "excess loss: exact where evaluated per checkpoint, else batch",
}


def band_figure(rows: list[dict], summaries: dict[str, RunSummary], title: str) -> bytes:
    """Four panels on one token axis: per setting the mean over seeds and its 95 % band. The
    excess-loss panel says whether it plots exact losses or batch estimates (RunSummary)."""
    from hmm.figure_style import LINES, REFERENCE_GREY, new_figure, png_bytes, token_axis

    legend_in = 0.2 * ((len(rows) + 1) // 2) + 0.2  # the settings listed below the panels
    fig = new_figure(12, 8 + legend_in)
    axes = fig.subplots(2, 2, sharex=True)
    kinds = {summaries[run].loss.curve_kind for row in rows for run in row["runs"]}
    ticks = []
    for ax, (key, label, yscale) in zip(axes.flat, CURVE_PANELS, strict=True):
        for i, row in enumerate(rows):
            colour, style = LINES[i % len(LINES)], ("-", "--", ":", "-.")[i // len(LINES) % 4]
            runs = [summaries[run].curves().get(key, []) for run in row["runs"]]
            x, mean, low, high = seed_band(runs)
            if not len(x):
                continue
            positive = mean[mean > 0]
            floor = (positive.min() / 10 if len(positive) else 1e-6) if yscale == "log" else -np.inf
            ax.plot(x, np.maximum(mean, floor), marker="o", ls=style, ms=2.5, lw=1.3,
                    color=colour, label=f"{row['setting']} (n={row['n_seeds']})")  # fmt: skip
            if low is not None:
                ax.fill_between(x, np.maximum(low, floor), np.maximum(high, floor),
                                color=colour, alpha=0.2, lw=0)  # fmt: skip
            ticks.append(x)
        if key == "excess_loss" and kinds:  # no kinds when every point failed
            ax.set_title(LOSS_KINDS[tuple(sorted(kinds))], fontsize=9)
        ax.set(yscale=yscale, ylabel=label)
        ax.grid(alpha=0.3, which="both")
        if key == "spectral_radius_mean":
            ax.axhline(1.0, color=REFERENCE_GREY, ls="--", lw=1)
    for ax in axes.flat:
        token_axis(ax, np.concatenate(ticks) if ticks else np.zeros(1))
    for ax in axes[0]:
        ax.set_xlabel("")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:  # below the panels, where it covers no curve
        fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, legend_in / (8 + legend_in), 1, 1))
    return png_bytes(fig, dpi=100)


def seed_band(runs: list[list]) -> tuple:
    """(tokens, mean, low, high) over the runs at the tokens all of them have; low/high the
    95 % t-interval, None with one run."""
    runs = [dict((t, v) for t, v in run if _finite(v)) for run in runs if run]
    if not runs:
        return np.array([]), np.array([]), None, None
    tokens = sorted(set.intersection(*(set(r) for r in runs)))
    stats = [interval([r[t] for r in runs]) for t in tokens]
    x = np.array(tokens, dtype=float)
    mean = np.array([s["mean"] for s in stats])
    if len(runs) < 2:
        return x, mean, None, None
    low = np.array([s["ci95_low"] for s in stats])
    high = np.array([s["ci95_high"] for s in stats])
    return x, mean, low, high


def report_html(
    out: Path, points, rows: list[dict], summaries: dict[str, RunSummary], failed: list,
    cka: list = (),
) -> str:
    from experiments.cka_summary import setting_table_html
    from experiments.page import embed_image, html_page

    figure = out / "figures" / "sweep.png"
    write_atomic(figure, band_figure(rows, summaries, f"{out.name}: mean over seeds, 95 % band"))
    headline = ["final_exact_excess_loss", "final_r2_heldout", "final_untrained_r2",
                "best_kgram_r2", "best_kgram_oracle_r2", "final_r2_concat", "final_next_token_r2",
                "final_r2_beyond_prediction", "tokens_to_r2_0.9", "final_spectral_radius_mean",
                "icl_last_excess"]  # fmt: skip
    headline += [name for name in ("final_r2_factors", "final_r2_component")
                 if any(row.get(f"{name}_n") for row in rows)]
    targets = sorted({k.removesuffix("_mean") for row in rows for k in row
                      if k.startswith("r2_target:") and k.endswith("_mean")})
    parts = [
        f"<h1>Sweep {html.escape(out.name)}</h1>",
        f"<p>{len(points)} points, {len(points) - len(failed)} finished. Each cell: mean "
        "[95 % t-interval over seeds]; n = finished seeds. Bands in the figure are the same "
        "interval at each checkpoint.</p>",
        embed_image(figure, "Probe emergence, exact excess loss and phase diagnostics"),
        "<h2>Every setting</h2>",
        _table(rows, "setting", headline),
    ]
    if targets:  # a composite's own targets per layer beside the joint belief (probes.json)
        parts += ["<h2>Held-out R² per layer and target</h2>", _table(rows, "setting", targets)]
    axes = [k for k in rows[0] if k not in ("setting",) and not _is_stat(k)] if rows else []
    for axis in axes:
        if axis in ("n_seeds", "n_failed", "runs") or len({str(r[axis]) for r in rows}) < 2:
            continue
        parts += [f"<h2>By {html.escape(axis)}</h2>", _axis_table(rows, axis, headline)]
    parts += llc_band_section(out, {row["setting"]: [out / r for r in row["runs"]] for row in rows})
    parts.append(setting_table_html(list(cka), rows))
    if failed:
        items = "".join(
            f"<li>{html.escape(f['name'])}: {html.escape(str(f['error']))}</li>" for f in failed
        )
        parts.append(f"<h2>Failed points</h2><ul>{items}</ul>")
    links = "".join(
        f'<li><a href="{html.escape(p.name)}/report.html">{html.escape(p.name)}</a></li>'
        for p in points
        if p.name not in {f["name"] for f in failed}
    )
    parts.append(f"<h2>Per-run reports</h2><ul>{links}</ul>")
    return html_page(f"sweep {out.name}", "\n".join(parts))


def _is_stat(key: str) -> bool:
    return any(key.endswith(f"_{s}") for s in STAT_SUFFIXES)


def _cell(row: dict, name: str) -> str:
    mean, low, high = (row.get(f"{name}_{s}") for s in ("mean", "ci95_low", "ci95_high"))
    if mean is None:
        return "—"
    text = f"{mean:.4g}"
    return text + (f" [{low:.4g}, {high:.4g}]" if low is not None else "")


def _table(rows: list[dict], key: str, names: list[str]) -> str:
    header = "".join(f"<th>{html.escape(h)}</th>" for h in [key, "n", *names])
    body = "".join(
        "<tr>"
        + f"<td>{html.escape(str(row[key]))}</td><td>{row['n_seeds']}</td>"
        + "".join(f"<td>{html.escape(_cell(row, n))}</td>" for n in names)
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{header}</tr>{body}</table>"


def _axis_table(rows: list[dict], axis: str, names: list[str]) -> str:
    """One row per value of `axis`: settings' means pooled (mean and range over the settings)."""
    values: dict[str, list[dict]] = {}
    for row in rows:
        values.setdefault(str(row[axis]), []).append(row)
    header = "".join(f"<th>{html.escape(h)}</th>" for h in [axis, "settings", *names])
    body = ""
    for value, members in values.items():
        cells = []
        for name in names:
            means = [r[f"{name}_mean"] for r in members if r.get(f"{name}_mean") is not None]
            cells.append(
                "—" if not means else f"{np.mean(means):.4g} ({min(means):.4g}–{max(means):.4g})"
            )
        body += (
            f"<tr><td>{html.escape(value)}</td><td>{len(members)}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
            + "</tr>"
        )
    return f"<table><tr>{header}</tr>{body}</table>"


# ---- the LLC across runs ------------------------------------------------------------------------
def llc_band_section(out: Path, groups: dict[str, list[Path]]) -> list[str]:
    """HTML parts: each group's LLC curve with its band across runs (probes.llc_study.compare_llc
    writes DIR/llc_compare.json and .png), its stage boundaries and where each run's geometry
    emerged; [] when no run has llc.json, a note when only some have or their settings differ."""
    from experiments.page import embed_image

    runs = [r for members in groups.values() for r in members]
    measured = [r for r in runs if (r / "llc.json").is_file()]
    if not measured:
        return []
    head = "<h2>Local learning coefficient across runs</h2>"
    if len(measured) < len(runs):
        missing = ", ".join(r.name for r in runs if r not in measured)
        return [head, f"<p class='note'>Not compared: {html.escape(missing)} ha"
                f"{'s' if len(runs) - len(measured) == 1 else 've'} no llc.json.</p>"]
    from hmm.errors import InvalidInput
    from probes.llc_study import compare_llc

    try:
        result = compare_llc({label: members for label, members in groups.items() if members},
                             out)  # fmt: skip
    except InvalidInput as exc:
        return [head, f"<p class='note'>Not compared: {html.escape(str(exc))}.</p>"]
    s = result["settings"]
    items = "".join(f"<li>{html.escape(_llc_group_words(label, group))}</li>"
                    for label, group in result["groups"].items())  # fmt: skip
    return [head, f"<p>Every run measured alike (ε {s['lr']:g}, γ {s['localization']:g}, nβ "
            f"{s['n_beta']:g}, {s['chains']} chains × {s['draws']} draws): per group the mean "
            "over its runs with a ± 1 sd band, the stage boundaries of the mean curve (the "
            "stage rule of docs/llc.md with the spread across runs as its noise) and where each "
            f"run's final-layer probe R² crossed halfway.</p><ul>{items}</ul>",
            embed_image(out / "llc_compare.png", "LLC per group, mean ± 1 sd across runs")]


def _llc_group_words(label: str, group: dict) -> str:
    bounds = group["stages"]["boundaries"]
    if group["stages"]["structure"] is None:
        stages = "too few estimates that are LLCs to read stages"
    elif bounds:
        stages = "stage boundaries of the mean: " + ", ".join(
            f"{b['kind']} at {b['tokens']:,}" for b in bounds)
    else:
        stages = "no stage structure in the mean"
    emerged = [f"{t:,.0f}" for t in group["emergence_tokens"] if t]
    where = f"; geometry emerges at {', '.join(emerged)} tokens" if emerged else ""
    n = len(group["runs"])
    return f"{label} ({n} run{'s' if n != 1 else ''}): {stages}{where}"
