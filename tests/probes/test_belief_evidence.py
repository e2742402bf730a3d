"""The headline's cases and tables, the readability warnings and the bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest

from hmm import load_process
from probes.activations import ROWS_PER_FEATURE, probe_inputs
from probes.belief_evidence import (
    AFFINE_R2,
    FINE_THRESHOLD,
    bootstrap_intervals,
    fine_depth,
    headline,
    readability,
)
from probes.belief_probe import r2_of_remainder, r2_score
from probes.belief_study import BlockFit, references

FINAL = "blocks.1.hook_resid_post"


def _probes(optimal: float, layer_r2: float = 0.95, insample: float = 0.951,
            fit_prefixes: int = 10_000) -> dict:
    layer = {"r2_heldout": layer_r2, "r2_insample": insample, "r2_heldout_unseen": layer_r2 - 0.01,
             "r2_beyond_prediction": 0.74, "r2_fine": {"1": 0.9, "2": 0.6, "3": 0.4}}
    return {
        "inputs": {"fit_prefixes": fit_prefixes},
        "hooks": ["blocks.0.hook_resid_post", FINAL],
        "hook_widths": {"blocks.0.hook_resid_post": 16, FINAL: 16, "concat": 32},
        "split": {"kind": "subtree"},
        "optimal_probs_r2": optimal,
        "optimal_logit_r2": optimal - 0.01,
        "baselines": {
            "random_init": {FINAL: {"r2_mean": 0.5, "n_seeds": 3, "r2_beyond_prediction": 0.2}},
            "kgram": {"1": 0.6, "2": 0.9, "3": 0.93},
            "kgram_oracle": {"1": 0.7, "2": 0.94, "3": 0.96},
            "kgram_features": {"1": 2, "2": 6, "3": 14},
        },
        "checkpoints": [{"tokens": 100, "layers": {
            "blocks.0.hook_resid_post": dict(layer, r2_heldout=0.5, r2_insample=0.52),
            FINAL: layer,
            "concat": dict(layer, r2_beyond_prediction=0.8)},
            "next_token": {"r2_heldout": 0.25}}],
        "bootstrap": {"probes": {FINAL: {"fine_depth": [2.0, 2.0]}}},
    }


def test_headline_names_the_case_by_the_optimal_prediction():
    implied = headline(_probes(optimal=AFFINE_R2))
    assert implied["case"] == "implied_by_loss"
    assert implied["sentence"].startswith("belief affine in the next-token distribution: "
                                          "geometry implied by the loss")
    beyond = headline(_probes(optimal=0.3))
    assert beyond["case"] == "beyond_next_token"
    assert beyond["sentence"].startswith(
        "the residual stream carries 0.74 of the belief beyond the next token (block 1, held "
        "out, on what the model's next-token distribution leaves unexplained; untrained 0.20, "
        "all layers 0.80)")


def test_headline_compares_every_table_without_feature_matching():
    h = headline(_probes(optimal=0.3, layer_r2=0.95))
    assert h["oracle_beats_layer_at"] == 3  # 0.96 > 0.95; k = 2 (0.94) does not
    assert h["fitted_beats_layer_at"] is None
    assert h["kgram"]["2"]["error_ratio_oracle"] == pytest.approx(0.06 / 0.05)
    assert h["best_baseline"] == "the table of the last 3 tokens (held-out cell means)"
    assert h["margin"] == pytest.approx(-0.01)
    assert h["fine_depth"] == {"value": 2, "interval": [2.0, 2.0], "threshold": FINE_THRESHOLD}


def test_fine_depth_is_the_leading_run_above_the_threshold():
    assert fine_depth({"1": 0.9, "2": 0.4, "3": 0.8}) == 1
    assert fine_depth({"1": 0.4}) == 0
    assert fine_depth({"1": 0.9, "2": None, "3": 0.9}) == 1
    probes = _probes(optimal=0.3)
    probes["bootstrap"]["probes"][FINAL]["fine_depth"] = [1.0, 2.0]
    assert headline(probes)["fine_depth"]["value"] is None  # not robust: not reported


def test_readability_warns_on_few_rows_and_on_a_held_out_gap():
    assert readability(_probes(optimal=0.3))["warnings"] == []
    few = readability(_probes(optimal=0.3, fit_prefixes=250))
    assert few["rows_per_feature"]["concat"] == pytest.approx(250 / 33)
    assert len(few["warnings"]) == 1 and "few fit rows per probe feature" in few["warnings"][0]
    assert f"below {ROWS_PER_FEATURE}" in few["warnings"][0]
    gap = readability(_probes(optimal=0.3, layer_r2=0.884, insample=0.991))
    assert len(gap["warnings"]) == 1 and "held-out R² far below in-sample" in gap["warnings"][0]
    probes = _probes(optimal=0.3, fit_prefixes=250)
    probes["readability"] = readability(probes)
    assert headline(probes)["warnings"] == probes["readability"]["warnings"]


def test_bootstrap_intervals_bracket_the_scores():
    inputs = probe_inputs(load_process("mess3"), 6, split="subtree", seed=0)
    refs = references(inputs)
    rng = np.random.default_rng(0)
    pred = refs.beliefs + rng.normal(scale=0.03, size=refs.beliefs.shape)
    remainder = rng.normal(size=refs.beliefs.shape)
    fit = BlockFit({}, pred, remainder, 0.5 * remainder + rng.normal(size=remainder.shape))
    out = bootstrap_intervals(inputs, refs, {"p": fit}, tokens=7, replicates=40)
    assert out["units"] >= 30 and out["unit_prefix_len"] >= 2
    band = out["probes"]["p"]
    low, high = band["r2_heldout"]
    assert low <= r2_score(refs.beliefs, pred, refs.count) <= high and low < high
    low, high = band["r2_beyond_prediction"]
    assert low <= r2_of_remainder(remainder, fit.remainder_pred, refs.count) <= high
    assert set(band["r2_fine"]) == {str(k) for k in refs.deviations}
    assert band["fine_depth"][0] <= band["fine_depth"][1]
