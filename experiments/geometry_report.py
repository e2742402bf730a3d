"""The report's geometry section: effective dimension per layer, the interventions' verdict, the
rotatable 3-D view (docs/geometry.md). Kept apart from report.py, which calls it in one line;
every part is drawn only from files that exist, so an older run folder gets what it has."""

from __future__ import annotations

import html
import json
from pathlib import Path


def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _dimension_table(probes: dict) -> str:
    from models.architectures import hook_label

    last = probes["checkpoints"][-1]["layers"]
    untrained = probes.get("baselines", {}).get("random_init", {})
    rows = []
    for hook in probes.get("hooks", []):
        dims = last.get(hook, {}).get("effective_dim")
        if not dims:
            continue
        null = untrained.get(hook, {}).get("effective_dim_mean") or {}
        cells = [hook_label(hook), *(str(dims[k]) for k in ("90", "95", "99")),
                 *("—" if null.get(k) is None else f"{null[k]:.1f}" for k in ("90", "95", "99"))]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    belief = probes.get("belief_geometry", {}).get("affine_dim")
    head = ("<tr><th>layer</th><th>90 %</th><th>95 %</th><th>99 %</th><th>untrained 90 %</th>"
            "<th>untrained 95 %</th><th>untrained 99 %</th></tr>")
    return (
        "<p>Directions holding 90 / 95 / 99 % of each layer's variance (probability-weighted PCA "
        "over every probed prefix), at the newest checkpoint and for the untrained network; the "
        f"exact belief set spans {belief} affine dimensions.</p>"
        f"<table>{head}{''.join(rows)}</table>"
    )


def geometry_section(run: Path, probes: dict | None) -> list[str]:
    """HTML parts: dimension table and figure, the interventions' sentences and figure, the 3-D
    view (its plotly script inline, so the page still opens with no network)."""
    from experiments.page import embed_image

    parts = []
    if probes and probes.get("checkpoints"):
        table = _dimension_table(probes)
        if table:
            parts += ["<h2>How many dimensions does each layer spend?</h2>", table,
                      embed_image(run / "figures" / "probe_dimension.png",
                                  "Effective dimension over training")]
    view = run / "figures" / "probe_3d.html"
    if view.is_file():
        parts += ["<h2>The beliefs in 3-D (drag to rotate)</h2>", view.read_text()]
    interventions = _read(run / "interventions.json")
    if isinstance(interventions, dict) and interventions.get("headline"):
        items = "".join(f"<li>{html.escape(line)}</li>" for line in interventions["headline"])
        parts += [
            "<h2>Does the network use the probed belief? (exact-counterfactual interventions)</h2>",
            f"<p>{html.escape(interventions.get('later_positions', ''))}.</p><ul>{items}</ul>",
            embed_image(run / "figures" / "interventions.png", "Gap closed per layer, with nulls"),
        ]
    return parts
