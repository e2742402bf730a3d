"""The LLC estimator against learning coefficients known in closed form, its flags, the stage rule,
and `llc_run` end to end on tiny transformer and RNN runs (llc.json keys against the docs)."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from hmm import load_process
from hmm.errors import InvalidInput
from models.recipes import TrainConfig
from models.rnn import RNNConfig
from models.training import train
from models.transformer import TransformerConfig, build_transformer
from probes.llc import NextTokenWindowLoss, _sample, estimate_llc, pick_settings, reduce_trace
from probes.llc_known import (
    aoyagi_rrr_lambda,
    linear_regression_case,
    reduced_rank_case,
    regular_expected_llc,
)
from probes.llc_settings import CalibrationGrid, LLCSettings, read_llc_settings
from probes.llc_study import (
    compare_llc,
    llc_run,
    probe_emergence,
    select_checkpoints,
    stage_boundaries,
)
from probes.run_files import ProbesFile

ROOT = Path(__file__).resolve().parents[2]
# the settings the known-value tests use (docs/llc.md, "Validation")
REGULAR = LLCSettings(lr=3e-4, n_beta=1000, localization=1.0, chains=4, draws=400)
SINGULAR = LLCSettings(lr=3e-5, n_beta=3000, localization=10.0, chains=4, draws=800)


# ---- known values ------------------------------------------------------------------------------
def test_aoyagi_formula_matches_independent_counts():
    # model rank = true rank: a smooth manifold of rank-h matrices, λ = dim / 2 = h(m + n - h) / 2
    for m, n, h in [(3, 3, 2), (2, 6, 2), (5, 4, 3), (4, 4, 4)]:
        assert aoyagi_rrr_lambda(m, h, n, h) == h * (m + n - h) / 2
    # hand-evaluated cases of the theorem (true rank 0): 1 odd, 1 even, 2, 3, 4
    assert aoyagi_rrr_lambda(5, 3, 5, 0) == 6.5
    assert aoyagi_rrr_lambda(5, 4, 5, 0) == 8.0
    assert aoyagi_rrr_lambda(4, 3, 8, 0) == 6.0
    assert aoyagi_rrr_lambda(8, 3, 4, 0) == 6.0
    assert aoyagi_rrr_lambda(3, 8, 4, 0) == 6.0
    for m, h, n, r in [(2, 3, 6, 1), (3, 3, 3, 0), (5, 3, 5, 1)]:
        assert aoyagi_rrr_lambda(m, h, n, r) < h * (m + n) / 2  # singular: below d / 2


def test_regular_model_lands_on_d_over_2_and_on_its_exact_expectation():
    case = linear_regression_case()
    found = estimate_llc(case.model, case.windows, case.loss, REGULAR)
    expected = regular_expected_llc(case.hessian, REGULAR.n_beta, REGULAR.localization, REGULAR.lr)
    # 6 sampler seeds: 6.50 ± 0.13 against the expectation 6.48 (docs/llc.md)
    assert found["llc_mean"] == pytest.approx(expected, rel=0.07)
    assert expected == pytest.approx(case.lambda_, rel=0.1)  # d / 2 = 6; ε's bias is +8 %
    assert found["llc_sd"] > 0 and len(found["llc_per_chain"]) == 4
    assert "not_at_minimum" not in found["flags"] and "loss_nonfinite" not in found["flags"]


def test_transformer_settings_read_a_regular_model_through_the_localization():
    """At nβ 15, γ 300 a direction of curvature h ≈ 1 counts nβh / (nβh + γ) ≈ 1/21: λ̂ ≈ 0.31,
    not d/2 = 6 — and the estimator still lands on that closed form."""
    case = linear_regression_case()
    settings = LLCSettings(lr=1e-3, n_beta=15, localization=300, chains=4, draws=200)
    found = estimate_llc(case.model, case.windows, case.loss, settings)
    expected = regular_expected_llc(case.hessian, 15, 300, 1e-3)
    assert expected < 0.06 * case.lambda_
    assert found["llc_mean"] == pytest.approx(expected, rel=0.1)


def test_singular_model_lands_on_aoyagis_value_not_on_d_over_2():
    case = reduced_rank_case(m=2, h=3, n=6, r=1)  # λ = 4.5; d / 2 = 12
    before = torch.get_rng_state()
    found = estimate_llc(case.model, case.windows, case.loss, SINGULAR)
    # 6 sampler seeds: 4.72 ± 0.19 (docs/llc.md)
    assert found["llc_mean"] == pytest.approx(case.lambda_, rel=0.15)
    assert found["llc_mean"] < 0.6 * sum(p.numel() for p in case.model.parameters()) / 2
    assert torch.equal(torch.get_rng_state(), before)  # devinterp's global seeding undone


def test_a_point_that_is_not_a_minimum_is_flagged():
    case = linear_regression_case()
    with torch.no_grad():
        case.model.weight.add_(0.3)  # off the least-squares solution: the chains go downhill
    found = estimate_llc(case.model, case.windows, case.loss, replace(REGULAR, chains=2, draws=40))
    assert found["llc_mean"] < 0
    assert "not_at_minimum" in found["flags"]


def test_chains_see_different_batches():
    case = linear_regression_case()
    settings = LLCSettings(lr=1e-4, n_beta=100, chains=3, draws=8, windows=256, batch_size=64)
    windows = case.windows[:256]
    losses, init_loss, failures = _sample(case.model, windows, case.loss, settings, "cpu")
    # the first step is taken at w* itself: its batch losses differ only if the batches do
    assert len(set(np.round(losses[:, 0], 9))) == 3 and failures == 0
    with torch.no_grad():
        direct = float(case.loss(case.model, windows).mean())
    assert init_loss == pytest.approx(direct)


# ---- the trace reduction and its flags ---------------------------------------------------------
def _trace(values: np.ndarray, init: float = 1.0, ceiling: float | None = None, **kw) -> dict:
    return reduce_trace(values, init, LLCSettings(n_beta=10, draws=values.shape[1], **kw), ceiling)


def test_reduce_trace_is_n_beta_times_the_mean_rise_after_burn_in():
    rng = np.random.default_rng(0)
    trace = 1.2 + 0.01 * rng.standard_normal((3, 80))
    trace[:, :20] = 5.0  # the burn-in is left out
    found = _trace(trace)
    assert found["llc_mean"] == pytest.approx(10 * (trace[:, 20:].mean() - 1.0))
    assert found["llc_per_chain"] == pytest.approx(list(10 * (trace[:, 20:].mean(1) - 1.0)))
    assert found["flags"] == [] and len(found["trace"]["bin_centres"]) == 20


def test_flags_not_settled_nonfinite_and_above_uniform():
    drifting = np.tile(np.linspace(1.0, 2.0, 80), (2, 1))
    assert "not_settled" in _trace(drifting)["flags"]
    broken = np.full((3, 40), 1.1)
    broken[1, 10:] = np.nan
    found = _trace(broken)
    assert "loss_nonfinite" in found["flags"] and len(found["llc_per_chain"]) == 2
    assert found["llc_mean"] == pytest.approx(1.0)
    assert "loss_above_uniform" in _trace(np.full((2, 40), 1.2), ceiling=math.log(3))["flags"]
    assert "loss_above_uniform" not in _trace(np.full((2, 40), 1.05), ceiling=math.log(3))["flags"]


def test_a_step_size_that_diverges_drops_every_chain_and_says_so():
    case = linear_regression_case()
    settings = LLCSettings(lr=0.05, n_beta=1000, chains=2, draws=20, windows=256)
    found = estimate_llc(case.model, case.windows[:256], case.loss, settings)
    assert "loss_nonfinite" in found["flags"] and found["llc_per_chain"] == []
    assert math.isnan(found["llc_mean"])


def test_pick_settings_prefers_least_localization_then_smaller_steps():
    cell = dict(usable=True)
    cells = [
        {**cell, "lr": 1e-3, "localization": 100.0, "n_beta": 50.0},
        {**cell, "lr": 3e-4, "localization": 100.0, "n_beta": 50.0},
        {**cell, "lr": 1e-4, "localization": 30.0, "n_beta": 5.0},  # γ/nβ 6 > 2
        {"usable": False, "lr": 1e-4, "localization": 1.0, "n_beta": 50.0},
    ]
    assert pick_settings(cells) == {"lr": 3e-4, "localization": 100.0, "n_beta": 50.0}
    assert pick_settings([cells[-1]]) is None


# ---- stages and emergence ----------------------------------------------------------------------
def _entries(values, sd=0.05, flags=None):
    flags = flags or [[] for _ in values]
    return [{"tokens": 10 ** (i + 3), "llc_mean": v, "llc_sd": sd, "flags": f}
            for i, (v, f) in enumerate(zip(values, flags, strict=True))]  # fmt: skip


def test_stage_boundaries_find_peaks_plateaus_and_nothing_in_noise():
    peak = stage_boundaries(_entries([1.0, 2.0, 3.5, 2.5, 1.5]), chains=4)
    assert [(b["tokens"], b["kind"]) for b in peak["boundaries"]] == [(100_000, "peak")]
    plateau = stage_boundaries(_entries([1.0, 2.0, 3.0, 3.01, 3.0, 2.99]), chains=4)
    assert [b["kind"] for b in plateau["boundaries"]] == ["plateau start"]
    rising = stage_boundaries(_entries([1.0, 1.5, 1.52, 2.0, 2.5]), chains=4)  # one flat step
    assert rising["boundaries"] == [] and rising["structure"] is False
    noise = stage_boundaries(_entries([1.0, 1.1, 0.95, 1.05], sd=0.5), chains=4)
    assert noise["structure"] is False  # changes inside the chain noise
    flagged = _entries([-2.0, 1.0, 2.0], flags=[["not_at_minimum"], [], []])
    assert stage_boundaries(flagged, chains=4)["structure"] is None  # two usable points


def test_probe_emergence_interpolates_the_halfway_crossing_on_log_tokens():
    hook = "blocks.0.hook_resid_post"
    r2 = [0.80, 0.80, 0.84, 0.96, 1.0]
    probes = {
        "baselines": {"random_init": {hook: {"r2_mean": 0.8}}},
        "checkpoints": [{"tokens": t, "layers": {hook: {"r2_heldout": r}}}
                        for t, r in zip([0, 100, 1000, 10_000, 100_000], r2, strict=True)],
    }  # fmt: skip
    found = probe_emergence(ProbesFile.from_json(probes), hook)
    assert found["halfway_r2"] == pytest.approx(0.9)
    assert found["bracket"] == [1000, 10_000]
    assert found["tokens"] == pytest.approx(10 ** (3 + 0.5))  # 0.90 is halfway from 0.84 to 0.96
    probes["checkpoints"][-1]["layers"][hook]["r2_heldout"] = 0.79
    rose = probe_emergence(ProbesFile.from_json(probes), hook)
    assert rose["tokens"] is None  # nothing rose above the untrained net


def test_select_checkpoints_is_log_spaced_and_keeps_the_last():
    found = [(t, Path(f"{t}.pt")) for t in [0, 10, 20, 40, 100, 200, 1000, 5000, 10_000]]
    chosen = [t for t, _ in select_checkpoints(found, 4)]
    assert chosen == [10, 100, 1000, 10_000]
    assert [t for t, _ in select_checkpoints(found, 50)] == [t for t, _ in found[1:]]
    assert select_checkpoints(found, None) == found
    with pytest.raises(InvalidInput):
        select_checkpoints(found, 0)


# ---- the training forward on devinterp's copies ------------------------------------------------
def test_window_loss_runs_on_a_deep_copy_of_the_bridge_and_matches_it():
    bridge = build_transformer(TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16,
                                                 n_ctx=4))  # fmt: skip
    windows = torch.from_numpy(load_process("mess3").sample(6, 5, seed=1)[0])
    loss = NextTokenWindowLoss()
    with torch.no_grad():
        reference = torch.nn.functional.cross_entropy(
            bridge(windows[:, :-1]).transpose(1, 2), windows[:, 1:], reduction="none"
        )
    for _ in range(2):  # devinterp copies the model once per chain
        twin = copy.deepcopy(bridge)
        value = loss(twin, windows)
        assert value.shape == (6, 4)
        assert torch.allclose(value, reference, atol=1e-5)
        value.mean().backward()
        assert all(p.grad is None for p in bridge.parameters())  # gradients on the copy only
        assert any(p.grad is not None for p in twin.parameters())


# ---- settings and bad input --------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [dict(lr=0), dict(lr=float("nan")), dict(n_beta=-1), dict(localization=-1), dict(chains=1),
     dict(draws=4), dict(windows=100, batch_size=64), dict(lr="fast"), dict(burnin_frac=0.9),
     dict(chains=2.5)],
)  # fmt: skip
def test_nonsense_settings_are_invalid_input_in_one_line(bad):
    with pytest.raises(InvalidInput) as info:
        LLCSettings(**bad)
    assert "\n" not in str(info.value)


def test_nonsense_grids_are_invalid_input():
    for bad in (dict(lrs=()), dict(localizations=(-1.0,)), dict(n_betas=(0.0,)), dict(chains=1)):
        with pytest.raises(InvalidInput):
            CalibrationGrid(**bad)


def test_llc_on_a_folder_that_is_not_a_run_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="not a run directory") as info:
        llc_run(tmp_path)
    assert "\n" not in str(info.value)
    (tmp_path / "llc.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(InvalidInput, match="not a beliefgeo llc.json"):
        read_llc_settings(tmp_path / "llc.json")


# ---- end to end on tiny runs -------------------------------------------------------------------
N_CTX = 4
TINY = LLCSettings(lr=1e-3, n_beta=15, localization=300, chains=2, draws=16, batch_size=16,
                   windows=64)  # fmt: skip
TINY_GRID = CalibrationGrid(lrs=(1e-3,), localizations=(300.0,), n_betas=(5.0, 15.0), chains=2)


def _tiny_run(path: Path, model) -> Path:
    recipe = TrainConfig(tokens=9 * 16 * N_CTX, batch_size=16, warmup_steps=2, n_checkpoints=4,
                         exact_eval="every", log_every=2)  # fmt: skip
    train(load_process("mess3"), model, recipe, path, progress=False)
    return path


@pytest.fixture(scope="module")
def transformer_llc(tmp_path_factory):
    run = _tiny_run(tmp_path_factory.mktemp("llc") / "t",
                    TransformerConfig(n_layers=1, d_model=8, d_head=4, d_mlp=16, n_ctx=N_CTX))
    return run, llc_run(run, checkpoints=None, settings=TINY, calibrate_grid=TINY_GRID)


def test_llc_run_writes_every_checkpoint_its_calibration_and_figures(transformer_llc):
    run, result = transformer_llc
    stored = json.loads((run / "llc.json").read_text())
    assert [e["tokens"] for e in stored["checkpoints"]] == sorted(
        int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("*.pt")
    )
    assert stored["settings"]["source"] in ("calibrated",
                                            "uncalibrated: no calibration cell was usable")
    assert len(stored["calibration"]["grid"]) == 2 and stored["settings"]["device"] == "cpu"
    assert stored["loss"]["ceiling"] == pytest.approx(math.log(3))
    assert stored["emergence"] is None  # no probes.json (tests/experiments/test_llc_command.py)
    for entry in stored["checkpoints"]:
        assert set(entry["flags"]) <= {"not_at_minimum", "not_settled", "loss_nonfinite",
                                       "loss_above_uniform", "calibration_failed"}  # fmt: skip
        assert len(entry["llc_per_chain"]) == 2 and entry["cpu_s"] > 0
    for name in ("llc_timeline.png", "llc_calibration.png"):
        assert (run / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # another run measured the same way
    again = read_llc_settings(run / "llc.json")
    assert (again.lr, again.n_beta, again.localization) == tuple(
        stored["settings"][k] for k in ("lr", "n_beta", "localization")
    )


def documented_keys_check(run: Path, arch: str) -> None:
    """llc.json of RUN against the ```keys llc.json block of docs/run-files.md, both ways (the
    rule of tests/experiments/test_docs.py, loaded from there)."""
    spec = importlib.util.spec_from_file_location("docs_check",
                                                  ROOT / "tests/experiments/test_docs.py")
    docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs)  # fmt: skip
    written = docs.written_keys(json.loads((run / "llc.json").read_text()))
    docs.compare("llc.json", written, arch, {})


def test_llc_json_keys_are_the_documented_keys(transformer_llc):
    documented_keys_check(transformer_llc[0], "transformer")


def test_llc_run_on_an_elman_rnn(tmp_path):
    run = _tiny_run(tmp_path / "r", RNNConfig(hidden=8, n_ctx=N_CTX))
    result = llc_run(run, checkpoints=2, settings=TINY, figure=False)
    assert [e["tokens"] for e in result["checkpoints"]][-1] == 9 * 16 * N_CTX
    assert result["calibration"] is None and result["emergence"] is None
    assert all(np.isfinite(e["llc_mean"]) for e in result["checkpoints"])


def test_compare_llc_bands_runs_measured_alike(transformer_llc, tmp_path):
    run, _ = transformer_llc
    runs = []
    for k, shift in enumerate((0.0, 1.0)):
        copy_ = tmp_path / f"seed{k}"
        copy_.mkdir()
        llc = json.loads((run / "llc.json").read_text())
        for entry in llc["checkpoints"]:
            entry["llc_mean"] += shift
            entry["flags"] = []
        (copy_ / "llc.json").write_text(json.dumps(llc))
        runs.append(copy_)
    result = compare_llc({"seeds": runs}, tmp_path / "out")
    group = result["groups"]["seeds"]
    first = json.loads((runs[0] / "llc.json").read_text())["checkpoints"]
    for entry, original in zip(group["checkpoints"], first, strict=True):
        assert entry["llc_mean"] == pytest.approx(original["llc_mean"] + 0.5)
        assert entry["llc_sd"] == pytest.approx(math.sqrt(0.5))
    assert (tmp_path / "out" / "llc_compare.png").read_bytes()[:4] == b"\x89PNG"
    other = json.loads((runs[1] / "llc.json").read_text())
    other["settings"]["n_beta"] = 99.0
    (runs[1] / "llc.json").write_text(json.dumps(other))
    with pytest.raises(InvalidInput, match="different LLC settings"):
        compare_llc({"seeds": runs}, tmp_path / "out")
