"""RUN/report.html: one self-contained page (images embedded, no network), rebuilt from RUN alone.

It shows the ground-truth fractal, the probe's predicted fractal, the emergence curve, loss against
the Bayes optimum, the phase panels, the numbers, and the exact config that produced them.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hmm.errors import InvalidInput  # noqa: E402
from hmm.files import read_json, write_atomic  # noqa: E402
from models.architectures import final_layer_hook, hook_label  # noqa: E402
from models.run_files import read_metrics  # noqa: E402
from probes.phase_figures import loss_panel  # noqa: E402

R2_TARGET = 0.99  # issue 4: final-layer held-out R² for the default Mess3 run
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}
h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}figure{margin:1em 0}
figcaption{color:#555;font-size:.92em}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em;max-height:28em}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:.5em .8em}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:.5em .8em}
"""


def _load(run: Path) -> dict:
    """Everything the report reads from RUN; only config.json is required."""
    run = Path(run)
    if not (run / "config.json").is_file():
        raise InvalidInput(f"{run} is not a run directory (no config.json); train one first")
    optional = {
        "probes": run / "probes.json",
        "phases": run / "phases.json",
        "fractal": run / "fractal" / "fractal.json",
    }
    return {
        "config": read_json(run / "config.json"),
        "metrics": read_metrics(run),
        **{key: read_json(path) if path.is_file() else None for key, path in optional.items()},
    }


def run_numbers(run: Path, data: dict | None = None) -> dict:
    """The headline numbers of a run, as values and as sentences (`data`: `_load(run)`, if read)."""
    data = data or _load(run)
    config, metrics = data["config"], data["metrics"]
    model = config["model"]
    shape = (
        f"{model['n_layers']}-layer transformer (d_model {model['d_model']}, {model['act_fn']})"
        if config["arch"] == "transformer"
        else f"{model.get('n_layers', 1)}-layer Elman RNN "
        f"(hidden {model['hidden']}, {model['act_fn']})"
    )
    train = config["train"]
    numbers: dict = {
        "title": f"{config['process']['name']}: {shape}, {config['data']['total_tokens']:,} tokens "
        f"({train['optimizer']} lr {train['lr']:g}, batch {train['batch_size']}, "
        f"{train['schedule']})",
        "process": config["process"]["name"],
        "arch": config["arch"],
        "act_fn": model["act_fn"],
    }
    exact = [m for m in metrics if m.get("exact_excess_loss") is not None]
    if exact:
        last = exact[-1]
        numbers["excess_loss"] = last["exact_excess_loss"]
        numbers["loss"] = (
            f"loss: optimal {config['optimal_loss']:.5f} nats/token, "
            f"achieved {last['exact_loss']:.5f} "
            f"(exact over every sequence; excess {last['exact_excess_loss']:.5f}) at "
            f"{last['tokens']:,} tokens"
        )
    elif metrics:
        tail = metrics[-20:]
        numbers["excess_loss"] = float(np.mean([m["excess_loss"] for m in tail]))
        numbers["loss"] = (
            f"loss: optimal {config['optimal_loss']:.5f} nats/token, excess "
            f"{numbers['excess_loss']:.5f} (mean of the last {len(tail)} logged batches)"
        )
    probes = data["probes"]
    if probes and probes["checkpoints"]:
        final = probes["checkpoints"][-1]
        layers = final["layers"]
        head = final_layer_hook([h for h in layers if h != "concat"])
        numbers["final_hook"] = head
        numbers["r2_final_layer"] = layers[head]["r2_heldout"]
        numbers["r2_concat"] = layers.get("concat", {}).get("r2_heldout")
        numbers["r2_shuffle"] = max(v["r2_shuffle"] for v in layers.values())
        numbers["r2_by_tokens"] = [
            (c["tokens"], c["layers"][head]["r2_heldout"]) for c in probes["checkpoints"]
        ]
        numbers["r2_line"] = (
            "held-out R²: "
            + " | ".join(f"{hook_label(h)} {v['r2_heldout']:.4f}" for h, v in layers.items())
            + f" | shuffle control ≤ {numbers['r2_shuffle']:.4f}"
        )
        if config["process"]["name"].startswith("mess3"):
            ceiling = probes["logit_ceiling"]["optimal_logits_r2_heldout"]
            reached = numbers["r2_final_layer"] >= R2_TARGET
            numbers["r2_verdict"] = (
                f"final layer ({hook_label(head)}) R² {numbers['r2_final_layer']:.4f} "
                + (
                    f"reaches the {R2_TARGET} target"
                    if reached
                    else f"is below the {R2_TARGET} target: near-optimal loss alone sits at the "
                    f"logit ceiling (R² {ceiling:.4f} from the "
                    "optimal logits); see README, 'The logit ceiling', for the budgets measured"
                )
            )
    phases = data["phases"]
    if phases:
        flagged = phases.get("first_spectral_radius_above_1")
        end = phases["checkpoints"][-1]
        numbers["first_radius_above_1"] = flagged
        numbers["final_phase"] = {k: v["phase"] for k, v in end["units"].items()}
        numbers["final_radius"] = end["jacobian"]["spectral_radius_mean"]
        numbers["phase_line"] = (
            "first checkpoint with mean spectral radius > 1: "
            + (f"{flagged:,} tokens" if flagged is not None else "none")
            + f"; final radius {numbers['final_radius']:.3f}; final unit phases: "
            + ", ".join(f"{k} {v}" for k, v in numbers["final_phase"].items())
        )
    return numbers


def loss_figure(config: dict, metrics: list[dict]) -> bytes | None:
    """Model loss against the Bayes optimum over training (log-token axis: step 0 left out)."""
    initial = next((m for m in metrics if m["tokens"] == 0), None)
    metrics = [m for m in metrics if m["tokens"] > 0]
    if not metrics:
        return None
    fig, ax = plt.subplots(figsize=(9, 4.2))
    loss_panel(ax, metrics)
    ax.axhline(1e-3, color="#999", ls="--", lw=1, label="0.001 nats")
    if initial and initial.get("exact_excess_loss") is not None:
        ax.plot([], [], " ", label=f"initial model: {initial['exact_excess_loss']:.3f} excess")
    ax.set(
        xscale="log",
        xlabel="training tokens",
        title="The model approaches the Bayes-optimal loss "
        f"({config['optimal_loss']:.4f} nats/token)",
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, which="both")
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


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


def _r2_table(probes: dict) -> str:
    final = probes["checkpoints"][-1]
    rows = "".join(
        f"<tr><td>{html.escape(h)}</td><td>{v['r2_heldout']:.4f}</td><td>{v['r2_heldout_weighted']:.4f}</td>"
        f"<td>{v['mse_heldout']:.6f}</td><td>{v['r2_shuffle']:.4f}</td></tr>"
        for h, v in final["layers"].items()
    )
    nt = final.get("next_token") or {}
    if nt:
        rows += (
            f"<tr><td>next-token distribution → belief</td><td>{nt['r2_heldout']:.4f}</td>"
            f"<td>{nt['r2_heldout_weighted']:.4f}</td><td>{nt['mse_heldout']:.6f}</td>"
            f"<td>{nt['r2_shuffle']:.4f}</td></tr>"
        )
    return (
        "<table><tr><th>probe input</th><th>held-out R²</th><th>held-out R² (prob.-weighted)</th>"
        f"<th>held-out MSE</th><th>shuffle-control R²</th></tr>{rows}</table>"
    )


def write_report(run: str | Path) -> Path:
    """Write RUN/report.html from RUN's files and return its path."""
    run = Path(run)
    data = _load(run)
    config = data["config"]
    numbers = run_numbers(run, data)
    figures = run / "figures"
    loss_png = loss_figure(config, data["metrics"])
    if loss_png:
        write_atomic(figures / "loss.png", loss_png)

    why = config["train"].get("extra", {}).get("why", "")
    parts = [f"<h1>{html.escape(numbers['title'])}</h1>"]
    if why:
        parts.append(f"<p>{html.escape(why)}</p>")
    summary = [numbers.get(k) for k in ("loss", "r2_verdict", "phase_line") if numbers.get(k)]
    parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in summary) + "</ul>")

    parts.append("<h2>Ground truth: the belief geometry of the process</h2>")
    fractal = data["fractal"]
    if fractal:
        parts.append(
            f"<p>Exact Bayesian beliefs of every prefix (mixed-state presentation, depth "
            f"{fractal.get('depth')}) beside a chaos-game rendering. Entropy rate "
            f"{fractal.get('entropy_rate', float('nan')):.4f} nats/symbol.</p>"
        )
    parts.append(embed_image(run / "fractal" / "fractal.png", "Ground-truth belief states"))

    probes = data["probes"]
    if probes:
        inputs = probes.get("inputs", {})
        ceiling = probes.get("logit_ceiling", {})
        parts.append("<h2>The residual stream carries the beliefs</h2>")
        parts.append(
            "<p>Linear probes (ordinary least squares with intercept) from each residual hook to "
            f"the exact belief, fitted on half of the input sequences and scored on the other half "
            f"({html.escape(json.dumps(inputs))}). The control fits the same probe to row-shuffled "
            f"beliefs. A linear map from the <em>optimal</em> next-token logits reaches R² "
            f"{ceiling.get('optimal_logits_r2_heldout', float('nan')):.4f} (the logit ceiling): a "
            f"probe above it shows belief geometry beyond what the unembedding needs.</p>"
        )
        parts.append(_r2_table(probes))
        captions = {
            "simplex": "True beliefs (left) and probe-predicted beliefs on held-out inputs "
            "(right); "
            "each point coloured by its true belief",
            "layers": "Held-out R² per layer and with all layers concatenated",
            "emergence": "Emergence: held-out R² against training tokens, with the shuffle control",
            "animation": "The predicted simplex over training checkpoints",
        }
        for key, caption in captions.items():
            rel = probes.get("figures", {}).get(key)
            if rel:
                parts.append(embed_image(run / rel, caption))

    parts.append("<h2>Loss against the Bayes optimum</h2>")
    parts.append(embed_image(figures / "loss.png", "Excess loss over training"))

    phases = data["phases"]
    if phases:
        parts.append("<h2>Training phases (Jacobian diagnostics)</h2>")
        for key in ("spectral_radius_meaning", "unit_phase_rule", "sharpness_rule"):
            if phases.get(key):
                parts.append(f"<p>{html.escape(phases[key])}</p>")
        parts.append(embed_image(figures / "phases.png", "Phase diagnostics on one log-token axis"))

    parts.append("<h2>How to reproduce</h2>")
    parts.append(
        "<p>Every number above is regenerated from this folder: <code>beliefgeo probe RUN"
        "</code>, <code>beliefgeo phases RUN</code>, <code>beliefgeo report RUN</code>. "
        "Training is rebuilt from the config below (process tensor, model, optimiser, "
        "seeded data stream) with <code>beliefgeo train ... --resume</code>.</p>"
    )
    parts.append(f"<pre>{html.escape(json.dumps(config, indent=2))}</pre>")
    page = html_page(numbers["title"], "\n".join(p for p in parts if p))
    return write_atomic(run / "report.html", page)
