"""RUN/report.html: one self-contained page (images embedded, no network), rebuilt from RUN alone.

Sections, each filled from what the run has: what was run (and the command for each analysis that
was not), the settings as a table, the ground-truth belief geometry (computed into RUN/fractal when
missing), the probes with their baselines beside each score, the loss against the Bayes optimum,
the phase diagnostics beside their nulls, and commands that reproduce the run from scratch (they
use RUN/reproduce/process.json and RUN/reproduce/recipe.json, written here). Every file key the
page reads is documented in docs/run-files.md, docs/probes.md and docs/phases.md; files written by
older versions lack some keys, and the page then leaves those cells out rather than failing.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

from hmm import load_process
from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic, write_json
from models.architectures import CONCAT, final_layer_hook, hook_label
from models.checkpoints import read_run_config
from models.run_files import list_checkpoints, read_metrics

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
table.settings td{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}figure{margin:1em 0}
figcaption{color:#555;font-size:.92em}
pre,code{background:#f7f7f7;font-size:.9em}pre{padding:.8em;overflow:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.5em .8em}
"""


# ---- reading the run ---------------------------------------------------------------------------
def _optional_json(path: Path) -> Any:
    return read_json(path) if path.is_file() else None


def _load(run: Path, compute_fractal: bool = False) -> dict:
    """Everything the report reads from RUN; only config.json is required.

    compute_fractal: render the ground-truth geometry into RUN/fractal when it is missing.
    """
    run = Path(run)
    config = read_run_config(run)
    data = {
        "config": config,
        "metrics": read_metrics(run),
        "checkpoints": _checkpoint_tokens(run),
        "probes": _optional_json(run / "probes.json"),
        "phases": _optional_json(run / "phases.json"),
        "fractal": _optional_json(run / "fractal" / "fractal.json"),
        "fractal_error": None,
    }
    if data["fractal"] is None and compute_fractal:
        from experiments.fractal import render_fractal

        try:
            data["fractal"] = render_fractal(config["process"], out=run / "fractal")
        except InvalidInput as exc:  # e.g. too large for this machine: say so, keep the rest
            data["fractal_error"] = str(exc)
    return data


def _checkpoint_tokens(run: Path) -> list[int]:
    try:
        return [tokens for tokens, _ in list_checkpoints(run)]
    except InvalidInput:  # none yet: the report says so
        return []


def _get(obj: Any, *keys: Any) -> Any:
    """obj[k1][k2]... or None when any step is missing (files of other versions lack keys)."""
    for key in keys:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _num(value: Any, digits: int = 4) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return "—"
    return f"{value:.{digits}f}"


def _model_shape(config: dict) -> str:
    model = config["model"]
    if config["arch"] == "transformer":
        return (
            f"{model['n_layers']}-layer transformer (d_model {model['d_model']}, "
            f"{model['act_fn']})"
        )
    layers = model.get("n_layers", 1)
    return f"{layers}-layer Elman RNN (hidden {model['hidden']}, {model['act_fn']})"


def _probe_hooks(probes: dict) -> list[str]:
    layers = _get(probes, "checkpoints", -1, "layers") or {}
    return [h for h in layers if h != CONCAT]


def run_numbers(run: Path, data: dict | None = None) -> dict:
    """The headline numbers of a run, as values and as sentences (`data`: `_load(run)`, if read).

    Keys: title, process, arch, act_fn; when trained: excess_loss, loss; when probed:
    final_hook, r2_final_layer, r2_concat, r2_shuffle, r2_by_tokens, r2_line, r2_verdict (the
    final layer against its best baseline); when diagnosed: first_radius_above_1, final_phase,
    final_radius, phase_line.
    """
    data = data or _load(run)
    config, metrics = data["config"], data["metrics"]
    train = config["train"]
    numbers: dict = {
        "title": f"{config['process']['name']}: {_model_shape(config)}, "
        f"{config['data']['total_tokens']:,} tokens ({train['optimizer']} lr {train['lr']:g}, "
        f"batch {train['batch_size']}, {train['schedule']})",
        "process": config["process"]["name"],
        "arch": config["arch"],
        "act_fn": config["model"]["act_fn"],
    }
    exact = [m for m in metrics if m.get("exact_excess_loss") is not None]
    if exact:
        last = exact[-1]
        numbers["excess_loss"] = last["exact_excess_loss"]
        numbers["loss"] = (
            f"loss: optimal {config['optimal_loss']:.5f} nats/token, achieved "
            f"{last['exact_loss']:.5f} (exact over every sequence; excess "
            f"{last['exact_excess_loss']:.5f}) at {last['tokens']:,} tokens"
        )
    elif metrics:
        tail = [m["excess_loss"] for m in metrics[-20:] if m.get("excess_loss") is not None]
        if tail:
            numbers["excess_loss"] = float(np.mean(tail))
            numbers["loss"] = (
                f"loss: optimal {config['optimal_loss']:.5f} nats/token, excess "
                f"{numbers['excess_loss']:.5f} (mean of the last {len(tail)} logged batches; "
                "no exact evaluation)"
            )
    probes = data["probes"]
    hooks = _probe_hooks(probes) if probes else []
    if hooks:
        layers = probes["checkpoints"][-1]["layers"]
        head = final_layer_hook(hooks)
        numbers["final_hook"] = head
        numbers["r2_final_layer"] = _get(layers, head, "r2_heldout")
        numbers["r2_concat"] = _get(layers, CONCAT, "r2_heldout")
        shuffles = [v.get("r2_shuffle") for v in layers.values() if v.get("r2_shuffle") is not None]
        numbers["r2_shuffle"] = max(shuffles) if shuffles else None
        numbers["r2_by_tokens"] = [
            (c["tokens"], _get(c, "layers", head, "r2_heldout")) for c in probes["checkpoints"]
        ]
        numbers["r2_line"] = "held-out R²: " + " | ".join(
            f"{hook_label(h)} {_num(v.get('r2_heldout'))}" for h, v in layers.items()
        )
        if numbers["r2_shuffle"] is not None:
            numbers["r2_line"] += f" | shuffle control ≤ {numbers['r2_shuffle']:.4f}"
        numbers["r2_verdict"] = _baseline_sentence(probes, head, numbers["r2_final_layer"])
    phases = data["phases"]
    if phases and phases.get("checkpoints"):
        flagged = phases.get("first_spectral_radius_above_1")
        end = phases["checkpoints"][-1]
        numbers["first_radius_above_1"] = flagged
        numbers["final_phase"] = {
            k: v.get("phase") for k, v in (end.get("units") or {}).items() if isinstance(v, dict)
        }
        # a transformer's radius is never read against 1: nothing is iterated
        recurrent = radius_rule_applies(phases)
        numbers["final_radius"] = (
            _get(end, "jacobian", "spectral_radius_mean") if recurrent else None
        )
        secant = _get(end, "jacobian", "secant", "state_vs_belief") or {}
        numbers["phase_line"] = (
            (
                "first checkpoint with mean spectral radius > 1: "
                + (f"{flagged:,} tokens" if isinstance(flagged, int) else "none")
                + f"; final radius {_num(numbers['final_radius'], 3)}"
                + (
                    f"; secant test {'passes' if secant['passes'] else 'fails'} (state forgets "
                    f"{_num(_get(end, 'jacobian', 'secant', 'rate_state'), 3)}/token, belief "
                    f"{_num(_get(end, 'jacobian', 'secant', 'rate_belief'), 3)})"
                    if secant
                    else ""
                )
            )
            if recurrent
            else "transformer: no iterated map, so no spectral-radius rule"
        ) + (
            "; final unit phases: "
            + ", ".join(f"{k} {v}" for k, v in numbers["final_phase"].items())
            if numbers["final_phase"]
            else ""
        )
    return numbers


def radius_rule_applies(phases: dict) -> bool:
    """Whether 'first mean spectral radius above 1' is measured: only for iterated (recurrent)
    maps; phases.json marks a transformer's Jacobian `kind: "residual"`."""
    kinds = {_get(c, "jacobian", "kind") for c in phases.get("checkpoints") or []}
    return "residual" not in kinds


def _baseline_sentence(probes: dict, head: str, r2: Any) -> str:
    """The final layer's score beside its best baseline (probes.json "headline"), no verdict."""
    h = probes.get("headline") or {}
    if h.get("sentence"):
        from probes.belief_evidence import headline_text

        return headline_text(h, warnings=False)  # the page shows them as notes
    text = f"final layer ({hook_label(head)}) held-out R² {_num(r2)}"
    best, base_r2 = h.get("best_baseline"), h.get("baseline_r2")
    if best is not None and isinstance(base_r2, int | float):
        text += (
            f"; best baseline with at most {_num(h.get('width'))} features: {best} "
            f"{_num(base_r2)}"
        )
        if isinstance(h.get("margin"), int | float):
            text += f" (margin {h['margin']:+.4f})"
    untrained = _get(probes, "baselines", "random_init", head)
    if untrained and not str(best or "").startswith("untrained"):
        text += f"; untrained model {_num(untrained.get('r2_mean'))}"
    return text


# ---- page pieces -------------------------------------------------------------------------------
def embed_image(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    mime = "image/gif" if path.suffix == ".gif" else "image/png"
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:{mime};base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def html_page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>\n"
    )


def _table(header: list[str] | None, rows: list[list[str]], cls: str = "") -> str:
    """An HTML table (no header row when `header` is None); cells are escaped here."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header or [])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    head = f"<tr>{head}</tr>" if head else ""
    return f"<table{f' class={cls!r}' if cls else ''}>{head}{body}</table>"


def _code(command: str) -> str:
    return f"<code>{html.escape(command)}</code>"


def loss_figure(config: dict, metrics: list[dict]) -> bytes | None:
    """Model loss against the Bayes optimum over training (log-token axis: step 0 left out)."""
    from matplotlib.figure import Figure

    from probes.phase_figures import loss_panel

    initial = next((m for m in metrics if m["tokens"] == 0), None)
    metrics = [m for m in metrics if m["tokens"] > 0]
    if not metrics:
        return None
    fig = Figure(figsize=(9, 4.2))
    ax = fig.subplots()
    loss_panel(ax, metrics)
    ax.axhline(1e-3, color="#999", ls="--", lw=1, label="0.001 nats (reference line)")
    if initial and initial.get("exact_excess_loss") is not None:
        ax.plot([], [], " ", label=f"initial model: {initial['exact_excess_loss']:.3f} excess")
    ax.set(
        xscale="log",
        xlabel="training tokens",
        ylabel="excess loss (nats/token)",
        title=f"Loss above the Bayes optimum ({config['optimal_loss']:.4f} nats/token)",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _analyses(run: Path, data: dict) -> tuple[str, list[str]]:
    """The 'What this folder holds' table and a list of notes for analyses not run."""
    shown = str(run)
    rows, missing = [], []
    n_ckpt = len(data["checkpoints"])
    last = data["metrics"][-1]["tokens"] if data["metrics"] else 0
    rows.append(["training", f"{n_ckpt} checkpoints, {last:,} tokens logged", "config.json, "
                 "metrics.jsonl, checkpoints/"])
    if data["probes"]:
        rows.append(["belief probes", f"{len(data['probes'].get('checkpoints', []))} checkpoints",
                     "probes.json, figures/probe_*"])
    else:
        rows.append(["belief probes", "not run", f"beliefgeo probe {shown}"])
        missing.append(f"Belief probes were not run: {_code(f'beliefgeo probe {shown}')}, then "
                       f"{_code(f'beliefgeo report {shown}')}.")
    if data["phases"]:
        rows.append(["phase diagnostics", f"{len(data['phases'].get('checkpoints', []))} "
                     "checkpoints", "phases.json, figures/phases.png"])
    else:
        rows.append(["phase diagnostics", "not run", f"beliefgeo phases {shown}"])
        missing.append(f"Phase diagnostics were not run: {_code(f'beliefgeo phases {shown}')}, "
                       f"then {_code(f'beliefgeo report {shown}')}.")
    if data["fractal"]:
        rows.append(["ground-truth geometry", f"depth {data['fractal'].get('depth')}",
                     "fractal/fractal.json, fractal/fractal.png"])
    else:
        rows.append(["ground-truth geometry", "not computed", data["fractal_error"] or ""])
        missing.append("The ground-truth geometry could not be computed: "
                       f"{html.escape(data['fractal_error'] or 'unknown reason')}.")
    if n_ckpt == 0:
        missing.append("This folder has no checkpoint yet: train it with "
                       f"{_code(f'beliefgeo train ... --out {shown}')} (or resume it with "
                       "--resume).")
    table = _table(["analysis", "status", "files (or the command that runs it)"], rows,
                   cls="settings")
    return table, missing


def _settings(config: dict) -> str:
    """config.json as a table, one row per setting, grouped."""
    rows = []
    process = config["process"]
    rows.append(["process", "name", process.get("name")])
    built = load_process(process)  # a mixture or product spec lists parts, not states
    rows.append(["process", "states × symbols", f"{built.n_states} × {built.n_symbols}"
                 + ("" if built.kind == "hmm" else f" ({built.kind})")])
    rows.append(["model", "architecture", config["arch"]])
    for key, value in config["model"].items():
        rows.append(["model", key, _value(value)])
    for key, value in config["train"].items():
        if key != "extra":
            rows.append(["training", key, _value(value)])
    for key in ("n_ctx", "trained_positions", "tokens_per_step", "total_steps", "total_tokens"):
        if key in config.get("data", {}):
            rows.append(["data", key, _value(config["data"][key])])
    if "optimal_loss" in config:
        rows.append(["data", "Bayes-optimal loss (nats/token)", _num(config["optimal_loss"], 5)])
    for key, value in (config.get("environment") or {}).items():
        rows.append(["environment", key, _value(value)])
    return _table(["group", "setting", "value"], rows, cls="settings")


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _ground_truth(run: Path, data: dict) -> list[str]:
    fractal = data["fractal"]
    parts = ["<h2>Ground truth: the belief geometry of the process</h2>"]
    if not fractal:
        parts.append(f"<p class='note'>Not computed: {html.escape(data['fractal_error'] or '')}"
                     "</p>")
        return parts
    cmu = fractal.get("statistical_complexity")
    parts.append(
        "<p>Exact Bayesian beliefs of every prefix up to the depth below (the mixed-state "
        "presentation) beside beliefs visited along long sampled sequences (the chaos game). "
        "A probe that recovers the geometry reproduces this picture.</p>"
    )
    parts.append(_table(["quantity", "value"], [
        ["mixed-state depth", _value(fractal.get("depth"))],
        ["tree nodes", _value(fractal.get("n_nodes"))],
        ["distinct beliefs", _value(fractal.get("n_distinct_beliefs"))],
        ["entropy rate (nats/symbol)", _num(fractal.get("entropy_rate"))],
        ["statistical complexity (nats)", _num(cmu) if cmu is not None else "n/a (the MSP does "
         "not close)"],
        ["box-counting dimension (chaos game)", _num(_get(fractal, "dimension", "dimension"), 2)],
    ]))
    parts.append(embed_image(run / "fractal" / "fractal.png", "Ground-truth belief states"))
    return parts


def _probe_table(probes: dict) -> str:
    """Per probe input: held-out scores with the untrained-model baseline and the shuffle control
    beside them."""
    final = probes["checkpoints"][-1]
    untrained = _get(probes, "baselines", "random_init") or {}
    rows = []
    for hook, v in final["layers"].items():
        base = untrained.get(hook) or {}
        base_text = "—"
        if base.get("r2_mean") is not None:
            base_text = _num(base["r2_mean"])
            if base.get("r2_sd") is not None:
                base_text += f" ± {base['r2_sd']:.4f}"
            base_text += f" (n={base.get('n_seeds', '?')})"
        rows.append([
            "all layers side by side" if hook == CONCAT else hook_label(hook),
            _num(v.get("r2_heldout")), _num(v.get("r2_heldout_weighted")), base_text,
            _num(v.get("r2_shuffle")), _num(v.get("r2_insample")), _value(v.get("ridge")),
        ])
    nt = final.get("next_token") or {}
    if nt:
        rows.append(["next-token distribution", _num(nt.get("r2_heldout")),
                     _num(nt.get("r2_heldout_weighted")), "—", _num(nt.get("r2_shuffle")),
                     _num(nt.get("r2_insample")), _value(nt.get("ridge"))])
    return _table(
        ["probe input", "held-out R²", "held-out R² (prob.-weighted)",
         "untrained model R² (mean ± sd)", "shuffle-control R²", "in-sample R²",
         "ridge (× mean eigenvalue; cross-validated)"], rows)


def _baseline_table(probes: dict) -> str:
    """Lookup tables of the last k tokens (fitted on the fit rows; and the best any such table can
    score on the held-out rows, when probes.json has it) and the optimal-prediction probes."""
    baselines = probes.get("baselines") or {}
    kgram = baselines.get("kgram") or {}
    features = baselines.get("kgram_features") or {}
    weighted = baselines.get("kgram_weighted") or {}
    oracle = baselines.get("kgram_oracle") or {}
    rows = [[f"lookup of the last {k} token{'s' if str(k) != '1' else ''}", _value(features.get(k)),
             _num(r2), _num(weighted.get(k))] + ([_num(oracle.get(k))] if oracle else [])
            for k, r2 in kgram.items()]
    for key, label in (("optimal_logit_r2", "exact optimal next-token logits"),
                       ("optimal_probs_r2", "exact optimal next-token probabilities")):
        if probes.get(key) is not None:
            rows.append([label, "—", _num(probes[key]), "—"] + (["—"] if oracle else []))
    if not rows:
        return ""
    header = ["baseline (no trained network)", "features", "held-out R²",
              "held-out R² (prob.-weighted)"]
    if oracle:
        header.append("best table of the last k tokens on the held-out rows")
    return _table(header, rows)


def _position_table(probes: dict, head: str) -> str:
    final = probes["checkpoints"][-1]["layers"]
    rows = [[hook_label(h) if h != CONCAT else "all layers"] + [_num(x, 3) for x in
            final[h]["r2_by_position"]] for h in (head, CONCAT) if _get(final, h, "r2_by_position")]
    if not rows:
        return ""
    n = max(len(r) for r in rows) - 1
    return _table(["probe input"] + [f"t = {t}" for t in range(n)], rows)


def _probes(run: Path, probes: dict) -> list[str]:
    hooks = _probe_hooks(probes)
    if not hooks:
        return ["<h2>Belief probes</h2>", "<p class='note'>probes.json holds no checkpoint.</p>"]
    head = final_layer_hook(hooks)
    final = probes["checkpoints"][-1]
    inputs = probes.get("inputs") or {}
    split = probes.get("split") or {}
    parts = ["<h2>Belief probes: is the belief linearly readable?</h2>"]
    parts.append(
        "<p>A linear probe (ordinary least squares with intercept) maps each hook's activations "
        "to the exact belief. It is fitted on one part of the input sequences and scored on the "
        "held-out rest; R² is averaged over belief coordinates. Beside each score: the same probe "
        "on the same architecture <em>untrained</em>, the same probe fitted to row-shuffled "
        "beliefs (the control, ≈ 0), and lookup tables of the last k tokens, which need no network "
        "at all. A score means something only by how far it rises above these.</p>"
    )
    sentence = _baseline_sentence(probes, head, _get(final, "layers", head, "r2_heldout"))
    parts.append(f"<p class='ok'>{html.escape(sentence)} (checkpoint at {final['tokens']:,} "
                 "tokens).</p>")
    parts += probe_warnings(probes)
    facts = [["inputs", f"{inputs.get('mode', '?')}: {_value(inputs.get('sequences'))} sequences "
              f"of length {_value(inputs.get('length'))} ({_value(inputs.get('rows'))} distinct "
              "prefix rows)"]] if inputs else []
    if split:
        facts.append(["split", f"{split.get('kind', '?')}: "
                      f"{_value(inputs.get('fit_sequences'))} fit / "
                      f"{_value(inputs.get('heldout_sequences'))} held-out sequences; "
                      f"shared-prefix weight {_num(split.get('shared_prefix_weight'), 3)}"])
    if facts:
        parts.append(_table(None, facts, cls="settings"))
    parts.append(f"<h3>Scores at the newest checkpoint ({final['tokens']:,} tokens)</h3>")
    parts.append(_probe_table(probes))
    baselines = _baseline_table(probes)
    if baselines:
        parts.append("<h3>Baselines that need no trained network</h3>")
        parts.append(baselines)
    parts += evidence_section(probes)
    positions = _position_table(probes, head)
    if positions:
        parts.append("<h3>Held-out R² by position</h3>")
        parts.append(positions)
    captions = {
        "simplex": "True beliefs (left) and probe-predicted beliefs on held-out inputs",
        "layers": "Held-out R² per layer beside the baselines",
        "emergence": "Held-out R² against training tokens",
        "positions": "Held-out R² by position and checkpoint",
        "animation": "The predicted simplex over training checkpoints",
    }
    for key, caption in captions.items():
        rel = _get(probes, "figures", key)
        if rel:
            parts.append(embed_image(run / rel, caption))
    return parts


# ---- what the layers add beyond prediction (probes.json: headline, r2_beyond_prediction, -------
# ---- r2_heldout_unseen, r2_fine, every table of the last k tokens; docs/probes.md) ------------
def probe_warnings(probes: dict) -> list[str]:
    """probes.json's readability warnings (few fit rows per feature, held-out far below
    in-sample), one note each."""
    warnings = (probes.get("headline") or {}).get("warnings") or []
    return [f"<p class='note'>Warning: {html.escape(w)}</p>" for w in warnings]


def evidence_section(probes: dict) -> list[str]:
    """Per probe input the held-out R² on unseen prefixes and beyond the next token beside the
    untrained network's, every table of the last k tokens with the error ratio of the final layer
    against it, and the fine-structure score r2_fine per k."""
    h = probes.get("headline") or {}
    return _beyond_table(probes) + _kgram_ratios(h) + _fine_table(probes)


def _beyond_table(probes: dict) -> list[str]:
    final = probes["checkpoints"][-1]
    if all(v.get("r2_beyond_prediction") is None for v in final["layers"].values()):
        return []
    untrained = _get(probes, "baselines", "random_init") or {}
    rows = []
    for hook, v in final["layers"].items():
        base = untrained.get(hook) or {}
        rows.append([_probe_name(hook), _num(v.get("r2_heldout")),
                     _num(v.get("r2_heldout_unseen")), _num(v.get("r2_beyond_prediction"), 3),
                     _mean_sd(base.get("r2_beyond_prediction"),
                              base.get("r2_beyond_prediction_sd"))])
    nt = final.get("next_token") or {}
    rows.append(["the model's next-token distribution", _num(nt.get("r2_heldout")),
                 _num(nt.get("r2_heldout_unseen")), _num(nt.get("r2_beyond_prediction"), 3), "—"])
    rows.append(["the exact optimal next-token probabilities",
                 _num(probes.get("optimal_probs_r2")), "—", "—", "—"])
    return [
        "<h3>What the layers add to the next-token prediction</h3><p>Beyond the next token: "
        "held-out R² of the layer (the model's next-token distribution beside it) on the part of "
        "the belief that the model's next-token distribution does not linearly explain (0: "
        "nothing beyond the prediction; 1: all of it), beside untrained networks on the same "
        "remainder. Unseen prefixes: held-out rows that no fit sequence shares (position 0 is "
        "shared by every split).</p>",
        _table(["probe input", "held-out R²", "held-out R², unseen prefixes",
                "beyond the next token", "untrained, beyond (mean ± sd)"], rows),
    ]


def _kgram_ratios(h: dict) -> list[str]:
    tables = h.get("kgram") or {}
    if not tables:
        return []
    rows = [[k, _value(t.get("cells")), _num(t.get("oracle")), _num(t.get("error_ratio_oracle"), 2),
             _num(t.get("fitted")), _num(t.get("error_ratio_fitted"), 2)]
            for k, t in tables.items()]
    return [
        f"<h3>Every table of the last k tokens against {html.escape(hook_label(h['hook']))}</h3>"
        "<p>Error ratio = (1 − table R²) / (1 − layer R²): above 1 the layer leaves less "
        "unexplained. Oracle: each held-out prefix predicted by the mean belief of the held-out "
        "prefixes ending in the same k tokens (fit on the scored rows: the best any such table "
        "can do); fitted: the table of the fit half.</p>",
        _table(["k", "cells", "oracle R²", "error ratio (oracle)", "fitted R²",
                "error ratio (fitted)"], rows),
    ]


def _fine_table(probes: dict) -> list[str]:
    layers = probes["checkpoints"][-1]["layers"]
    ks = sorted({k for v in layers.values() for k in (v.get("r2_fine") or {})}, key=int)
    if not ks:
        return []
    bands = _get(probes, "bootstrap", "probes") or {}
    rows = []
    for hook, v in layers.items():
        band = (bands.get(hook) or {}).get("r2_fine") or {}
        rows.append([_probe_name(hook)] + [
            _num((v.get("r2_fine") or {}).get(k), 3)
            + (f" [{band[k][0]:.3f}, {band[k][1]:.3f}]" if band.get(k) else "") for k in ks])
    return ["<h3>Fine structure: r2_fine</h3><p>R² of the deviations of the held-out beliefs from "
            "the mean of their group (prefixes sharing their last k tokens), the truth's and the "
            "probe's group means removed separately: 1 reproduces the variation inside every "
            "group, 0 is no better than predicting each group's mean; not a function of the MSE. "
            "Brackets: 95 % bootstrap over held-out subtrees.</p>",
            _table(["probe input"] + [f"k = {k}" for k in ks], rows)]


def _probe_name(hook: str) -> str:
    return "all layers side by side" if hook == CONCAT else hook_label(hook)


def _mean_sd(mean: Any, sd: Any) -> str:
    if not isinstance(mean, int | float):
        return "—"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if isinstance(sd, int | float) else "")


def _phases(run: Path, phases: dict) -> list[str]:
    parts = ["<h2>Training phases: Jacobian diagnostics</h2>"]
    checkpoints = phases.get("checkpoints") or []
    if not checkpoints:
        return parts + ["<p class='note'>phases.json holds no checkpoint.</p>"]
    end = checkpoints[-1]
    null = _get(phases, "null", "reinit") or {}
    init = _get(phases, "null", "init") or {}
    flagged = phases.get("first_spectral_radius_above_1")
    when = f"<b>{flagged:,} tokens</b>" if isinstance(flagged, int) else "none"
    if not radius_rule_applies(phases):
        when = "not applied: a transformer iterates no map (see the rule below)"
    parts.append(f"<p>First checkpoint whose mean spectral radius exceeds 1: {when}.</p>")
    rows = []
    recurrent = [("jacobian.spectral_radius_quantiles.q50", "spectral radius (median over batch)"),
                 ("jacobian.spectral_radius_mean", "spectral radius (mean over batch)"),
                 ("jacobian.lyapunov_window", "Lyapunov exponent over the trained window"),
                 ("jacobian.lyapunov", "largest Lyapunov exponent, long-run (nats/token)"),
                 ("jacobian.secant.rate_state", "secant rate of the state (nats/token)"),
                 ("jacobian.secant.rate_readout", "secant rate of the probe read-out")]
    noise = _get(end, "sign_flip_null")
    flips = [("sign_flip_frac", "update sign-flip fraction (the optimiser on pure noise: "
              f"{_num(noise, 3)})")]  # fmt: skip
    for key, label in (recurrent if radius_rule_applies(phases) else []) + flips:
        value = _get(end, *key.split("."))
        if value is None and key not in null:
            continue
        ref = null.get(key) or {}
        rows.append([label, _num(value), _num(init.get(key)),
                     f"{_num(ref.get('mean'))} ± {_num(ref.get('sd'))}" if ref else "—"])
    if rows:
        parts.append(f"<h3>At the newest checkpoint ({end.get('tokens', 0):,} tokens) beside its "
                     "nulls</h3>")
        parts.append(_table(["diagnostic", "trained", "at initialisation",
                             "re-initialised networks (mean ± sd)"], rows))
    units = end.get("units") or {}
    if units:  # tanh/sigmoid layers by their gain, ReLU-like ones by their active fraction
        parts.append(_table(
            ["layer", "phase", "measure", "value", "linear fraction", "saturated fraction",
             "dead fraction"],
            [[layer, u.get("phase", "—"), u.get("measure", "gain"),
              _num(u.get("gain_mean", u.get("active_frac")), 3), _num(u.get("linear_frac"), 3),
              _num(u.get("saturated_frac"), 3), _num(u.get("dead_frac"), 3)]
             for layer, u in units.items() if isinstance(u, dict)]))
    belief = phases.get("belief_update") or {}
    if belief:
        parts.append(
            "<p>The exact belief update of the process itself (the map a recurrent network would "
            "have to iterate): mean one-step spectral radius "
            f"{_num(belief.get('spectral_radius_mean'))}, largest Lyapunov exponent "
            f"{_num(belief.get('lyapunov'))} nats/token.</p>")
    settled = _get(phases, "sharpness_settled", "first_shown_tokens")
    if _get(phases, "sharpness_settled", "step") is not None:
        parts.append("<p>Adam's preconditioned sharpness is shown from step "
                     f"{phases['sharpness_settled']['step']} ("
                     + (f"{settled:,} tokens" if isinstance(settled, int) else "no checkpoint")
                     + "), once its second-moment estimate has settled; "
                     + html.escape(phases["sharpness_settled"].get("rule", "")) + "</p>")
    for key in ("spectral_radius_meaning", "unit_phase_rule", "sharpness_rule"):
        if isinstance(phases.get(key), str):
            parts.append(f"<p>{html.escape(phases[key])}</p>")
    parts.append(embed_image(run / "figures" / "phases.png",
                             "Phase diagnostics over training on one log-token axis"))
    return parts


def reproduction_files(run: Path, config: dict) -> tuple[Path, Path]:
    """Write RUN/reproduce/process.json and recipe.json: with `beliefgeo train` they rebuild the
    run's process, model and training settings exactly (seeds included)."""
    from models.recipes import RECIPES

    base = str(config["train"].get("recipe", "default")).split("+")[0]
    recipe = {"base": base if base in RECIPES else "default", "arch": config["arch"],
              "act_fn": config["model"]["act_fn"]}
    recipe.update({k: v for k, v in config["train"].items() if k not in ("recipe", "extra")})
    recipe["model"] = {k: v for k, v in config["model"].items() if k not in ("d_vocab", "act_fn")}
    folder = run / "reproduce"
    return (write_json(folder / "process.json", config["process"]),
            write_json(folder / "recipe.json", recipe))


def _reproduce(run: Path, data: dict) -> list[str]:
    config = data["config"]
    process_file, recipe_file = reproduction_files(run, config)
    shown = str(run)
    again = f"{shown.rstrip('/')}-again"
    max_sequences = _get(data["probes"], "inputs", "sequences")
    enumerated = _get(data["probes"], "inputs", "enumerated_sequences")
    probe = f"beliefgeo probe {again}"
    subset = isinstance(max_sequences, int) and isinstance(enumerated, int)
    if subset and max_sequences < enumerated:
        probe += f" --max-sequences {max_sequences}"
    commands = [
        f"beliefgeo train {process_file} --config {recipe_file} --out {again}",
        probe, f"beliefgeo phases {again}", f"beliefgeo report {again}",
    ]
    parts = ["<h2>How to reproduce</h2>",
             "<p>Retrain from scratch (same process, model, optimiser, seeds and data stream; the "
             "two files were written beside this report from config.json), then rerun the "
             "analyses:</p>",
             "<pre>" + html.escape("\n".join(commands)) + "</pre>"]
    study = _get(config, "train", "extra", "study")
    if isinstance(study, str) and study.startswith("reproduce "):
        parts.append(f"<p>This run came from {_code('beliefgeo ' + study)}; "
                     f"{_code(f'beliefgeo {study} --out {again}')} reruns the whole study.</p>")
    parts.append(f"<p>Only the analyses, from this folder's checkpoints: "
                 f"{_code(f'beliefgeo probe {shown}')}, {_code(f'beliefgeo phases {shown}')}, "
                 f"{_code(f'beliefgeo report {shown}')}. The files and their keys are described "
                 "in docs/run-files.md of the beliefgeo repository.</p>")
    return parts


def write_report(run: str | Path) -> Path:
    """Write RUN/report.html from RUN's files and return its path. Computes the ground-truth
    geometry into RUN/fractal when it is missing and writes RUN/reproduce/ (process and recipe)."""
    run = Path(run)
    data = _load(run, compute_fractal=True)
    config = data["config"]
    numbers = run_numbers(run, data)
    loss_png = loss_figure(config, data["metrics"])
    if loss_png:
        write_atomic(run / "figures" / "loss.png", loss_png)

    parts = [f"<h1>{html.escape(numbers['title'])}</h1>"]
    why = _get(config, "train", "extra", "why")
    if isinstance(why, str) and why:
        parts.append(f"<p>{html.escape(why)}</p>")
    summary = [numbers.get(k) for k in ("loss", "r2_verdict", "phase_line") if numbers.get(k)]
    parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>")
    table, missing = _analyses(run, data)
    parts += ["<h2>What this folder holds</h2>", table]
    parts += [f"<p class='note'>{note}</p>" for note in missing]
    parts += ["<h2>Settings</h2>", _settings(config)]
    parts += _ground_truth(run, data)
    if data["probes"]:
        parts += _probes(run, data["probes"])
    parts.append("<h2>Loss against the Bayes optimum</h2>")
    if loss_png:
        parts.append(numbers.get("loss") and f"<p>{html.escape(numbers['loss'])}.</p>" or "")
        parts.append(embed_image(run / "figures" / "loss.png", "Excess loss over training"))
    else:
        parts.append("<p class='note'>No training step logged yet.</p>")
    if data["phases"]:
        parts += _phases(run, data["phases"])
    parts += _reproduce(run, data)
    page = html_page(numbers["title"], "\n".join(p for p in parts if p))
    return write_atomic(run / "report.html", page)
