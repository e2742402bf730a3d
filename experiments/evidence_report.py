"""The report's account of what the layers add (docs/probes.md): the readability warnings under the
verdict, and in the probe details the held-out R² on unseen prefixes and beyond the next token
beside the untrained network's, every table of the last k tokens against the final layer, and the
fine-structure score r2_fine per k with its bootstrap intervals and depth. Read from the typed
probes.json (probes/run_files.py); a file written before these scores gives no section.
"""

from __future__ import annotations

import html

from experiments.page import num, table, value
from models.architectures import CONCAT, final_layer_hook, hook_label
from probes.run_files import ProbesFile


def probe_warnings(warnings: list[str]) -> str:
    """probes.json's readability warnings (few fit rows per feature, held-out far below in-sample),
    one note each."""
    return "".join(f"<p class='note'>Warning: {html.escape(w)}</p>" for w in warnings)


def evidence_section(probes: ProbesFile) -> list[str]:
    """What the layers add to the next-token prediction, the process's other probe targets, then
    the fine structure."""
    return _beyond_table(probes) + targets_table(probes) + _fine_table(probes)


def targets_table(probes: ProbesFile) -> list[str]:
    """Held-out R² per probe target (mixtures: component; products: factors) of the final layer
    and of all layers side by side, newest checkpoint, with 95 % intervals; none for a plain
    process."""
    if not probes.checkpoints or not probes.hooks:
        return []
    layers = probes.checkpoints[-1].layers
    final = final_layer_hook(probes.hooks)
    shown = [h for h in (final, CONCAT) if h in layers and layers[h].targets]
    if not shown:
        return []
    names = list(layers[shown[0]].targets)
    rows = [[html.escape(name)] + [
        num(layers[h].targets[name].r2_heldout) + _band(layers[h].targets[name].ci95)
        if name in layers[h].targets else "—" for h in shown] for name in names]
    return ["<h3>Probe targets</h3><p>Held-out R² of the same probe fitted to each quantity the "
            "process defines: the belief, and a mixture's posterior over its components or a "
            "product's factor beliefs side by side. Brackets: 95 % bootstrap intervals "
            f"({_unit(probes)}).</p>",
            table(["target"] + [_probe_name(h) for h in shown], rows)]


def _unit(probes: ProbesFile) -> str:
    """What the bootstrap resamples, in words."""
    iv = probes.intervals
    if not iv or not iv.unit:
        return "over held-out subtrees"
    what = "held-out sequences" if iv.unit == "sequence" else "held-out subtrees"
    return f"{iv.replicates} resamplings of {iv.units:,} {what}"


def _iv(group: str, key: str | None = None) -> object:
    """A reader of probes.intervals' band for (group, key)."""
    def read(probes: ProbesFile) -> list[float] | None:
        iv = probes.intervals
        value = getattr(iv, group, None) if iv else None
        return value.get(key) if key is not None and isinstance(value, dict) else value
    return read


def kgram_table(probes: ProbesFile) -> list[str]:
    """Every table of the last k tokens (fitted on the fit half, and the oracle of held-out cell
    means) with the final layer's error ratio against each, and the optimal-prediction probes."""
    b, h = probes.baselines, probes.headline
    if not b:
        return []
    ratios = h.kgram if h else {}
    rows = []
    for k in sorted(set(b.kgram) | set(b.kgram_oracle), key=int):
        ratio = ratios.get(k)
        rows.append([f"table of the last {k} token{'s' if k != '1' else ''}",
                     value(b.kgram_features.get(k)),
                     num(b.kgram.get(k)) + _band(_iv("kgram", k)(probes)),
                     num(b.kgram_weighted.get(k)),
                     num(b.kgram_oracle.get(k)) + _band(_iv("kgram_oracle", k)(probes)),
                     num(ratio.error_ratio_fitted if ratio else None, 2),
                     num(ratio.error_ratio_oracle if ratio else None, 2)])
    for r2, label, key in ((probes.optimal_logit_r2, "exact optimal next-token logits",
                            "optimal_logits"),
                           (probes.optimal_probs_r2, "exact optimal next-token probabilities",
                            "optimal_probs")):
        if r2 is not None:
            rows.append([label, "—", num(r2) + _band(_iv(key)(probes)), "—", "—", "—", "—"])
    if not rows:
        return []
    layer = hook_label(h.hook) if h and h.hook else "the final layer"
    return [
        "<h3>Baselines that need no trained network</h3><p>Tables of the last k tokens, every k: "
        "fitted, each held-out prefix predicted by the mean belief of the fit half's prefixes "
        "ending in the same k tokens; oracle, by the mean of the held-out prefixes ending in "
        "them (fit on the scored rows: the best any such table can do). Error ratio = (1 − table "
        f"R²) / (1 − R² of {html.escape(layer)}): above 1 the layer leaves less unexplained. The "
        "optimal-prediction rows are the probe fitted to the exact optimal next-token "
        f"distribution. Brackets: 95 % bootstrap intervals ({_unit(probes)}).</p>",
        table(["baseline (no trained network)", "cells", "fitted R²",
               "fitted R² (prob.-weighted)", "oracle R²", f"error ratio (fitted) vs {layer}",
               f"error ratio (oracle) vs {layer}"], rows),
    ]


def _beyond_table(probes: ProbesFile) -> list[str]:
    final = probes.checkpoints[-1]
    if all(v.r2_beyond_prediction is None for v in final.layers.values()):
        return []
    untrained = probes.baselines.random_init if probes.baselines else {}
    rows = []
    for hook, v in final.layers.items():
        base = untrained.get(hook)
        rows.append([_probe_name(hook), num(v.r2_heldout) + _band(_iv("layers", hook)(probes)),
                     num(v.r2_heldout_unseen),
                     num(v.r2_beyond_prediction, 3),
                     _mean_sd(base.r2_beyond_prediction, base.r2_beyond_prediction_sd)
                     if base else "—"])
    nt = final.next_token
    if nt:
        rows.append(["the model's next-token distribution",
                     num(nt.r2_heldout) + _band(_iv("next_token")(probes)),
                     num(nt.r2_heldout_unseen), num(nt.r2_beyond_prediction, 3), "—"])
    rows.append(["the exact optimal next-token probabilities",
                 num(probes.optimal_probs_r2) + _band(_iv("optimal_probs")(probes)),
                 "—", "—", "—"])
    return [
        "<h3>What the layers add to the next-token prediction</h3><p>Beyond the next token: "
        "held-out R² of the layer (the model's next-token distribution beside it) on the part of "
        "the belief that the model's next-token distribution does not linearly explain (0: "
        "nothing beyond the prediction; 1: all of it), beside untrained networks on the same "
        "remainder. Unseen prefixes: held-out rows that no fit sequence shares (position 0 is "
        f"shared by every split). Brackets: 95 % bootstrap intervals ({_unit(probes)}).</p>",
        table(["probe input", "held-out R²", "held-out R², unseen prefixes",
               "beyond the next token", "untrained, beyond (mean ± sd)"], rows),
    ]


def _fine_table(probes: ProbesFile) -> list[str]:
    layers = probes.checkpoints[-1].layers
    ks = sorted({k for v in layers.values() for k in v.r2_fine}, key=int)
    if not ks:
        return []
    bands = probes.bootstrap.probes if probes.bootstrap else {}
    rows = []
    for hook, v in layers.items():
        band = bands.get(hook)
        rows.append([_probe_name(hook)] + [
            num(v.r2_fine.get(k), 3) + _band(band.r2_fine.get(k) if band else None) for k in ks])
    return ["<h3>Fine structure: r2_fine</h3><p>R² of the deviations of the held-out beliefs from "
            "the mean of their group (prefixes sharing their last k tokens), the truth's and the "
            "probe's group means removed separately: 1 reproduces the variation inside every "
            "group, 0 is no better than predicting each group's mean; not a function of the MSE. "
            f"Brackets: 95 % bootstrap over held-out subtrees. {_depth(probes)}</p>",
            table(["probe input"] + [f"k = {k}" for k in ks], rows)]


def _depth(probes: ProbesFile) -> str:
    """The final layer's fine-structure depth, only where the bootstrap agrees on it."""
    h = probes.headline
    depth = h.fine_depth if h else None
    if not depth or not depth.interval:
        return ""
    low, high = (int(v) for v in depth.interval)
    shown = (f"{depth.value}" if depth.value is not None
             else "not robust (the bootstrap does not agree on it)")
    return (f"Fine-structure depth of {html.escape(hook_label(h.hook))} (the leading k with "
            f"r2_fine ≥ {depth.threshold}): {shown}, 95 % interval {low}–{high}.")


def _band(band: list[float] | None) -> str:
    return f" [{band[0]:.3f}, {band[1]:.3f}]" if band else ""


def _probe_name(hook: str) -> str:
    return "all layers side by side" if hook == CONCAT else hook_label(hook)


def _mean_sd(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "—"
    return f"{mean:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")
