"""RUN/report.html: one self-contained page (images embedded, no network), rebuilt from RUN alone,
that leads with its answer.

Order: the verdict (computed sentences, experiments/verdict.py; the LLC's when the run has
llc.json) and the probes' readability warnings, the figure of exact beliefs beside the probe's
predictions, then the details — probes with their baselines and what the layers add beyond the next
token (experiments/evidence_report.py), the loss against the Bayes optimum, the phase diagnostics
beside their nulls, the loss by position against the exact in-context-learning curve
(experiments/icl_report.py), the local learning coefficient's stages (experiments/llc_report.py),
the ground-truth geometry — and, folded at the end, what was run, the settings, the folder's files
and how to reproduce it (experiments/reproduction.py). Every number comes from the run's RunSummary
and typed files (experiments/summary.py, probes/run_files.py); files of older versions lack some
keys, and the page then leaves those cells out rather than failing.
"""

from __future__ import annotations

import html
from pathlib import Path

from experiments.evidence_report import evidence_section, kgram_table, probe_warnings
from experiments.page import embed_image, folded, html_page, num, table, value
from experiments.reproduction import folder_table, reproduce_section
from experiments.summary import PhaseSummary, RunSummary, summarize_run
from experiments.verdict import verdict
from hmm.errors import InvalidInput
from hmm.files import write_atomic
from models.architectures import CONCAT, hook_label
from probes.belief_probe import probe_method
from probes.run_files import PhasesFile, ProbesFile, UnitLayer


def write_report(run: str | Path) -> Path:
    """Write RUN/report.html from RUN's files and return its path. Computes the ground-truth
    geometry into RUN/fractal when it is missing and writes RUN/reproduce/ (process and recipe)."""
    from experiments.geometry_report import geometry_section
    from experiments.icl_report import icl_section
    from experiments.llc_report import llc_section

    run = Path(run)
    fractal_error = _ensure_fractal(run)
    _ensure_icl(run)
    summary = summarize_run(run)
    loss_png = loss_figure(summary)
    if loss_png:
        write_atomic(run / "figures" / "loss.png", loss_png)
    parts = [f"<h1>{html.escape(summary.title)}</h1>", _verdict(summary)]
    probes = summary.probes_file
    figure = probes.figures.simplex if probes and probes.figures else None
    if figure:
        parts.append(embed_image(run / figure, "Exact beliefs of held-out prefixes (left) and "
                                 "the beliefs the probe reads from the network (right)"))
    if probes and summary.probes:
        parts += _probes(run, probes, summary)
    parts += geometry_section(run, probes.to_json() if probes else None)
    parts += _loss(run, summary, bool(loss_png))
    parts += icl_section(run, summary.icl)
    if summary.phases:
        parts += _phases(run, summary.phases)
    parts += llc_section(run, summary)
    parts += _ground_truth(run, summary, fractal_error)
    parts.append(folded("What was run, the settings and the files",
                        _what_was_run(summary) + _settings(summary)))
    parts.append(folded("How to reproduce", reproduce_section(run, summary)))
    page = html_page(summary.title, "\n".join(p for p in parts if p))
    return write_atomic(run / "report.html", page)


def _ensure_fractal(run: Path) -> str | None:
    """Render the ground-truth geometry into RUN/fractal when missing; the reason when it cannot
    be (too large for this machine: the page says so and keeps the rest)."""
    if (run / "fractal" / "fractal.json").is_file():
        return None
    from experiments.fractal import render_fractal
    from models.run_files import read_run_config

    try:
        render_fractal(read_run_config(run)["process"], out=run / "fractal")
    except InvalidInput as exc:
        return str(exc)
    return None


def _ensure_icl(run: Path) -> None:
    """Compute RUN/icl.json (probes/icl.py) when missing; a run without a readable checkpoint
    keeps the rest of its page (the section is left out)."""
    if (run / "icl.json").is_file():
        return
    from probes.icl import icl_run

    try:
        icl_run(run)
    except InvalidInput:
        return


def _verdict(summary: RunSummary) -> str:
    sentences = "".join(f"<p>{html.escape(s)}</p>" for s in verdict(summary))
    warnings = probe_warnings(summary.probes.warnings) if summary.probes else ""
    return f"<section class='verdict'>{sentences}</section>{warnings}"


# ---- details: probes ----------------------------------------------------------------------------
def _probes(run: Path, probes: ProbesFile, summary: RunSummary) -> list[str]:
    final = probes.checkpoints[-1]
    split = probes.split.to_json() if probes.split else None
    parts = ["<h2>Belief probes: is the belief linearly readable?</h2>",
             f"<p>Each hook is read by {html.escape(probe_method(split))}. R² is averaged over "
             "belief coordinates. Beside each score: the same probe on the same architecture "
             "<em>untrained</em>, the same probe fitted to row-shuffled beliefs (the control, "
             "≈ 0), the same probe from the model's own next-token distribution and from the "
             "exact optimal one, and tables of the last k tokens, which need no network at all. "
             "A score means something only by how far it rises above these; what a layer adds "
             "beyond the next token is scored on its own below.</p>"]
    parts.append(_inputs_table(probes))
    parts.append(f"<h3>Scores at the newest checkpoint ({final.tokens:,} tokens)</h3>")
    parts.append(_probe_table(probes))
    parts += kgram_table(probes) + evidence_section(probes)  # experiments/evidence_report.py
    positions = _position_table(probes, summary.probes.hook)
    if positions:
        parts += ["<h3>Held-out R² by position</h3>", positions]
    figures = probes.figures
    captions = {"layers": "Held-out R² per layer beside the baselines",
                "emergence": "Held-out R² against training tokens",
                "positions": "Held-out R² by position and checkpoint",
                "animation": "The predicted simplex over training checkpoints"}
    for key, caption in captions.items():
        rel = getattr(figures, key, None) if figures else None
        if rel:
            parts.append(embed_image(run / rel, caption))
    return parts


def _inputs_table(probes: ProbesFile) -> str:
    inputs, split = probes.inputs, probes.split
    if not inputs:
        return ""
    rows = [["inputs", f"{inputs.mode or '?'}: {value(inputs.sequences)} sequences of length "
             f"{value(inputs.length)} ({value(inputs.rows)} distinct prefix rows)"]]
    if split:
        rows.append(["split", f"{split.kind or '?'}: {value(inputs.fit_sequences)} fit / "
                     f"{value(inputs.heldout_sequences)} held-out sequences; held-out weight on "
                     f"prefixes also fitted {num(split.shared_prefix_weight, 3)}"])
    return table(None, rows, cls="settings")


def _probe_table(probes: ProbesFile) -> str:
    """Per probe input: held-out scores with the untrained-model baseline and the shuffle control
    beside them."""
    final = probes.checkpoints[-1]
    untrained = probes.baselines.random_init if probes.baselines else {}
    rows = []
    for hook, v in final.layers.items():
        base, base_text = untrained.get(hook), "—"
        if base and base.r2_mean is not None:
            sd = f" ± {base.r2_sd:.4f}" if base.r2_sd is not None else ""
            band = (probes.intervals.random_init.get(hook) if probes.intervals else None)
            ci = f" [{band[0]:.4f}, {band[1]:.4f}]" if band else ""
            base_text = f"{num(base.r2_mean)}{sd}{ci} (n={base.n_seeds or '?'})"
        label = "all layers side by side" if hook == CONCAT else hook_label(hook)
        rows.append([label, *_scores(v, base_text)])
    if final.next_token:
        rows.append(["next-token distribution", *_scores(final.next_token, "—")])
    return table(["probe input", "held-out R²", "held-out R² (prob.-weighted)",
                  "untrained model R² (mean ± sd)", "shuffle-control R²", "in-sample R²",
                  "ridge (× mean eigenvalue; cross-validated)"], rows)


def _scores(v, base_text: str) -> list[str]:
    return [num(v.r2_heldout), num(v.r2_heldout_weighted), base_text, num(v.r2_shuffle),
            num(v.r2_insample), value(v.ridge)]


def _position_table(probes: ProbesFile, head: str) -> str:
    final = probes.checkpoints[-1].layers
    rows = [[hook_label(h) if h != CONCAT else "all layers"]
            + [num(x, 3) for x in final[h].r2_by_position]
            for h in (head, CONCAT) if h in final and final[h].r2_by_position]  # fmt: skip
    if not rows:
        return ""
    n = max(len(r) for r in rows) - 1
    return table(["probe input"] + [f"t = {t}" for t in range(n)], rows)


# ---- details: loss ------------------------------------------------------------------------------
def loss_figure(summary: RunSummary) -> bytes | None:
    """Model loss against the Bayes optimum over training, on THE token axis."""
    from hmm.figure_style import NULL_GREY, new_figure, png_bytes, token_axis
    from models.run_files import read_metrics
    from probes.phase_figures import loss_panel

    metrics = read_metrics(summary.run)
    if not metrics:
        return None
    fig = new_figure(9, 4.2)
    ax = fig.subplots()
    loss_panel(ax, metrics)
    token_axis(ax, [m["tokens"] for m in metrics])
    ax.axhline(1e-3, color=NULL_GREY, ls="--", lw=1, label="0.001 nats (reference line)")
    ax.set(ylabel="excess loss (nats/token)",
           title=f"Loss above the Bayes optimum ({summary.loss.optimal:.4f} nats/token)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return png_bytes(fig, dpi=110)


def _loss(run: Path, summary: RunSummary, has_figure: bool) -> list[str]:
    parts = ["<h2>Loss against the Bayes optimum</h2>"]
    if not has_figure:
        return parts + ["<p class='note'>No training step logged yet.</p>"]
    loss = summary.loss
    if loss.exact_excess is not None:
        parts.append(f"<p>Loss: optimal {loss.optimal:.5f} nats/token, achieved "
                     f"{loss.exact_loss:.5f} (exact over every sequence; excess "
                     f"{loss.exact_excess:.5f}) at {loss.exact_tokens:,} tokens.</p>")
    elif loss.batch_excess is not None:
        parts.append(f"<p>Loss: optimal {loss.optimal:.5f} nats/token, excess "
                     f"{loss.batch_excess:.5f} (mean of the last {loss.batch_window} logged "
                     "batches; no exact evaluation).</p>")
    probed = summary.probes_file
    nt = probed.checkpoints[-1].next_token if probed and probed.checkpoints else None
    if nt and nt.excess_loss is not None:
        band = probed.intervals.excess_loss if probed.intervals else None
        ci = f" (95 % interval {band[0]:.5f}–{band[1]:.5f})" if band else ""
        parts.append(f"<p>On the probes' held-out prefixes (probed positions) the newest "
                     f"checkpoint is {nt.excess_loss:.5f} nats/token above the exact optimum{ci}: "
                     "the mean KL from the optimal next-token distribution.</p>")
    parts.append(embed_image(run / "figures" / "loss.png", "Excess loss over training"))
    return parts


# ---- details: phases ----------------------------------------------------------------------------
def _phases(run: Path, summary: PhaseSummary) -> list[str]:
    from experiments.closing import radius_rule_text

    phases, end = summary.file, summary.final
    parts = ["<h2>Training phases: Jacobian diagnostics</h2>",
             "<p>First checkpoint whose mean spectral radius exceeds 1 (the seed rule, for an "
             f"iterated map): {html.escape(radius_rule_text(summary))}.</p>"]
    rows = _phase_rows(phases, summary.iterated)
    if rows:
        parts += [f"<h3>At the newest checkpoint ({end.tokens:,} tokens) beside its nulls</h3>",
                  table(["diagnostic", "trained", "at initialisation",
                         "re-initialised networks (mean ± sd)"], rows)]
    if end.units:
        parts.append(_units_table(end.units))
    belief = phases.belief_update
    if belief:
        parts.append("<p>The exact belief update of the process itself (the map a recurrent "
                     "network would have to iterate): mean one-step spectral radius "
                     f"{num(belief.spectral_radius_mean)}, largest Lyapunov exponent "
                     f"{num(belief.lyapunov)} nats/token.</p>")
    settled = phases.sharpness_settled
    if settled and settled.step is not None:
        shown = settled.first_shown_tokens
        when = f"{shown:,} tokens" if isinstance(shown, int) else "no checkpoint"
        parts.append("<p>Adam's preconditioned sharpness is shown from step "
                     f"{settled.step} ({when}), once its second-moment estimate has settled; "
                     f"{html.escape(settled.rule or '')}</p>")
    for rule in (phases.spectral_radius_meaning, phases.unit_phase_rule, phases.sharpness_rule):
        if rule:
            parts.append(f"<p>{html.escape(rule)}</p>")
    parts.append(embed_image(run / "figures" / "phases.png",
                             "Phase diagnostics over training on one token axis"))
    return parts


def _phase_rows(phases: PhasesFile, iterated: bool) -> list[list[str]]:
    """The newest checkpoint's diagnostics beside their nulls; a transformer's radius is never
    read against 1, so only a recurrent network's recurrence rows are shown."""
    end = phases.checkpoints[-1]
    null = phases.null.reinit if phases.null else {}
    init = phases.null.init if phases.null else {}
    jac = end.jacobian
    secant = jac.secant if jac else None
    quantiles = jac.spectral_radius_quantiles if jac else None
    recurrent = [
        ("jacobian.spectral_radius_quantiles.q50", "spectral radius (median over batch)",
         quantiles.q50 if quantiles else None),
        ("jacobian.spectral_radius_mean", "spectral radius (mean over batch)",
         jac.spectral_radius_mean if jac else None),
        ("jacobian.lyapunov_window", "Lyapunov exponent over the trained window",
         jac.lyapunov_window if jac else None),
        ("jacobian.lyapunov", "largest Lyapunov exponent, long-run (nats/token)",
         jac.lyapunov if jac else None),
        ("jacobian.secant.rate_state", "secant rate of the state (nats/token)",
         secant.rate_state if secant else None),
        ("jacobian.secant.rate_readout", "secant rate of the probe read-out",
         secant.rate_readout if secant else None),
    ]
    flips = [("sign_flip_frac", "update sign-flip fraction (the optimiser on pure noise: "
              f"{num(end.sign_flip_null, 3)})", end.sign_flip_frac)]
    rows = []
    for key, label, current in (recurrent if iterated else []) + flips:
        if current is None and key not in null:
            continue
        band = null.get(key)
        rows.append([label, num(current), num(init.get(key)),
                     f"{num(band.mean)} ± {num(band.sd)}" if band else "—"])
    return rows


def _units_table(units: dict[str, UnitLayer]) -> str:
    """The unit regimes: tanh/sigmoid-like layers by their gain, ReLU-like ones by their active
    fraction (probes/units.py), each row saying which."""
    rows = [[layer, u.phase or "—", u.measure or "gain", num(u.level, 3), num(u.linear_frac, 3),
             num(u.saturated_frac, 3), num(u.dead_frac, 3)] for layer, u in units.items()]
    return table(["layer", "phase", "measure", "value", "linear fraction", "saturated fraction",
                  "dead fraction"], rows)


# ---- details: ground truth ----------------------------------------------------------------------
def _ground_truth(run: Path, summary: RunSummary, error: str | None) -> list[str]:
    parts = ["<h2>Ground truth: the belief geometry of the process</h2>"]
    f = summary.fractal
    if not f:
        return parts + [f"<p class='note'>Not computed: {html.escape(error or '')}</p>"]
    cmu = num(f.statistical_complexity) if f.statistical_complexity is not None else (
        "n/a (the mixed states do not close)")
    parts.append("<p>Exact Bayesian beliefs of every prefix up to the depth below (the "
                 "mixed-state presentation) beside beliefs visited along one long sampled sequence "
                 "(the chaos game). A probe that recovers the geometry reproduces this "
                 "picture.</p>")
    dims = [[f"box-counting dimension of the {what}",
             num(d.dimension if d else None, 2)] for what, d in (
                 ("distinct mixed-state beliefs to that depth (the support)", f.dimension_msp),
                 ("chaos-game points (where the beliefs spend their time)", f.dimension))]
    parts.append(table(["quantity", "value"], [
        ["mixed-state depth", value(f.depth)], ["tree nodes", value(f.n_nodes)],
        ["distinct beliefs", value(f.n_distinct_beliefs)],
        ["entropy rate (nats/symbol)", num(f.entropy_rate)],
        ["statistical complexity (nats)", cmu], *dims]))
    parts.append(embed_image(run / "fractal" / "fractal.png", "Ground-truth belief states"))
    return parts


# ---- folded: what was run and its settings ------------------------------------------------------
def _what_was_run(summary: RunSummary) -> str:
    extra = summary.config.train.extra if summary.config.train else {}
    why = extra.get("why") if isinstance(extra, dict) else None
    return (f"<p>{html.escape(why)}</p>" if isinstance(why, str) and why else "") + folder_table(
        summary)


def _settings(summary: RunSummary) -> str:
    """config.json as a table, one row per setting, grouped."""
    from hmm import load_process

    c = summary.config
    built = load_process(c.process.to_json())  # a mixture or product spec lists parts, not states
    kind = "" if built.kind == "hmm" else f" ({built.kind})"
    rows = [["process", "name", c.process.name],
            ["process", "states × symbols", f"{built.n_states} × {built.n_symbols}{kind}"],
            ["model", "architecture", c.arch]]
    rows += [["model", k, value(v)] for k, v in c.model.to_json().items() if v is not None]
    rows += [["training", k, value(v)] for k, v in c.train.to_json().items() if k != "extra"]
    data = c.data.to_json() if c.data else {}
    rows += [["data", k, value(data.get(k))] for k in ("n_ctx", "trained_positions",
             "tokens_per_step", "total_steps", "total_tokens") if data.get(k) is not None]
    if c.optimal_loss is not None:
        rows.append(["data", "Bayes-optimal loss (nats/token)", num(c.optimal_loss, 5)])
    env = c.environment.to_json() if c.environment else {}
    rows += [["environment", k, value(v)] for k, v in env.items() if v is not None]
    return "<h3>Settings</h3>" + table(["group", "setting", "value"], rows, cls="settings")
