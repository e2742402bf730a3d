"""The geometry `beliefgeo probe` adds to probes.json and RUN/figures/ (docs/geometry.md).

Kept apart from belief_study so the study calls it in three lines: per checkpoint
(`add_checkpoint_geometry`: effective dimension per hook, and for processes with grouped targets
the read-out subspaces), once per run (`add_run_geometry`: the belief set's own dimension and the
untrained null), and with the figures (`geometry_figures`: dimension over training; a rotatable
3-D view when beliefs have four or more coordinates).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from hmm.files import write_atomic
from models.architectures import CONCAT, build_model
from models.checkpoints import model_config_of_run
from probes.activations import Activations, ProbeInputs, collect_activations
from probes.geometry import (
    LEVELS,
    fit_probe,
    hook_spectra,
    spectrum_record,
    target_subspaces,
    weighted_pca,
)
from probes.geometry_figures import dimension_over_training
from probes.interactive import belief_view_3d


def row_weights(inputs: ProbeInputs) -> np.ndarray:
    """(R,) every probe row's prefix probability (both halves): the PCA weights."""
    return inputs.fit_prob + inputs.heldout_prob


def add_checkpoint_geometry(record: dict, acts: Activations, inputs: ProbeInputs, process) -> None:
    """Add "explained_variance", "effective_dim", "affine_dim" (and "subspaces" for grouped
    targets) to each hook of one checkpoint's probes.json record (not to `concat`)."""
    spectra = hook_spectra(acts.hooks, row_weights(inputs))
    groups = process.target_groups()
    targets = process.probe_targets(inputs.beliefs) if groups else {}
    for hook, spectrum in spectra.items():
        record["layers"][hook].update(spectrum)
        if groups:
            coefs = {name: fit_probe(acts.hooks[hook], inputs, Y).coef_
                     for name, Y in targets.items()}
            record["layers"][hook]["subspaces"] = target_subspaces(coefs, groups)


def add_run_geometry(result: dict, config: dict, inputs: ProbeInputs, hooks: list[str],
                     init_seeds: int) -> None:
    """probes.json "belief_geometry" (the exact beliefs' spectrum over the same rows) and, per
    hook of the untrained baseline, "effective_dim_mean" {"90", "95", "99"} over its seeds."""
    weights = row_weights(inputs)
    result["belief_geometry"] = spectrum_record(weighted_pca(inputs.beliefs, weights).variances)
    untrained = result["baselines"].get("random_init") or {}
    if not init_seeds or not untrained:
        return
    base = model_config_of_run(config)
    dims: dict[str, list[dict]] = {}
    for seed in untrained[next(iter(untrained))]["seeds"]:
        model = build_model(dataclasses.replace(base, seed=seed)).eval()
        spectra = hook_spectra(collect_activations(model, inputs, hooks).hooks, weights)
        for hook, spectrum in spectra.items():
            dims.setdefault(hook, []).append(spectrum["effective_dim"])
    for hook, values in dims.items():
        untrained[hook]["effective_dim_mean"] = {
            key: float(np.mean([v[key] for v in values])) if all(v[key] is not None
                                                                 for v in values) else None
            for key in LEVELS
        }


def geometry_figures(run: Path, result: dict, true: np.ndarray,
                     predictions: dict[str, np.ndarray], labels: list[str],
                     simplex: bool = True) -> dict[str, str]:
    """RUN/figures/probe_dimension.png (two or more checkpoints) and, for beliefs of four or more
    coordinates, RUN/figures/probe_3d.html (an HTML fragment with plotly inlined: the exact
    beliefs beside the headline probe's held-out predictions; simplex: classical beliefs, drawn
    in the tetrahedron when there are four). Returns name -> path in RUN."""
    out = {}
    figures = run / "figures"
    if len(result["checkpoints"]) > 1:
        png = dimension_over_training(result)
        if png is not None:
            write_atomic(figures / "probe_dimension.png", png)
            out["dimension"] = "figures/probe_dimension.png"
    if true.shape[1] >= 4:
        probe = CONCAT if CONCAT in predictions else result["hooks"][-1]
        r2 = result["checkpoints"][-1]["layers"][probe]["r2_heldout"]
        fragment = belief_view_3d(
            true, predictions[probe], labels,
            title=f"Exact beliefs and held-out probe predictions ({probe}, R² {r2:.3f})",
            simplex=simplex,
        )
        write_atomic(figures / "probe_3d.html", fragment.encode())
        out["view_3d"] = "figures/probe_3d.html"
    return out
