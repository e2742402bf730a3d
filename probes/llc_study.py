"""`beliefgeo llc RUN`: the local learning coefficient at every checkpoint (or a log-spaced subset)
-> RUN/llc.json, RUN/figures/llc_timeline.png and RUN/figures/llc_calibration.png.

`llc_run` is the driver: sampling windows of the trained length drawn from the run's own process
with a fixed seed (never the training stream), the loss the run trained (per-position
cross-entropy through models.architectures.training_forward, probes.llc.NextTokenWindowLoss), the
run's device; a calibration grid on the final checkpoint picks (ε, γ, nβ) unless the caller gives
them; then one estimate per checkpoint (probes.llc.estimate_llc, flags included), the stage
boundaries of the LLC curve (`stage_boundaries`, rule in STAGE_RULE) and, when RUN/probes.json
exists, where the belief geometry emerges beside them (`probe_emergence`). llc.json is written
before any figure is drawn, so a figure error loses nothing. Every key is in docs/llc.md.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hmm import HMM
from hmm.errors import InvalidInput
from hmm.files import writable_dir, write_json
from hmm.progress import progress
from hmm.records import write_record
from models import build_model, load_checkpoint, load_run_process, read_run_config
from models.architectures import final_layer_hook, residual_hooks
from models.checkpoints import model_config_of_run, trained_positions
from models.compute import cpu_threads, pick_device, torch_threads
from models.run_files import list_checkpoints
from probes.llc import NextTokenWindowLoss, calibrate, estimate_llc
from probes.llc_settings import CalibrationGrid, LLCSettings, checkpoint_count, not_an_llc
from probes.run_files import LLC_FORMAT, LlcFile, ProbesFile, read_llc, read_probes

WINDOW_STREAM = 20  # third word of the sampling windows' seed entropy (docs/llc.md)
STAGE_RULE = (
    "between consecutive checkpoints whose estimate is an LLC (flags not_at_minimum, "
    "loss_nonfinite and loss_above_uniform excluded) the LLC rises or falls when the change "
    "exceeds max(2 sqrt(se_a^2 + se_b^2), flat_frac x the curve's range), se = chain sd / "
    "sqrt(chains); otherwise it is flat. A single flat step between two steps of the same "
    "direction counts as that direction. A stage boundary is a checkpoint where the trend "
    "changes: peak (rise -> fall), trough (fall -> rise), plateau start (rise or fall -> flat), "
    "plateau end (flat -> rise or fall) (after Hoogland et al. 2025, arXiv 2402.02364: stage "
    "boundaries at critical points of the LLC curve)"
)


def llc_run(
    run: str | Path,
    checkpoints: int | None = 10,
    settings: LLCSettings | None = None,
    calibrate_grid: CalibrationGrid | None = None,
    figure: bool = True,
) -> dict:
    """Estimate the LLC at `checkpoints` log-spaced checkpoints of RUN (None: every checkpoint,
    tokens 0 included); write RUN/llc.json, then the figures. Returns llc.json's content.

    settings: the SGLD settings (default LLCSettings()); calibrate_grid: calibrate (ε, γ, nβ) on
    the final checkpoint over this grid first (None: use `settings` as given). Runs on
    BELIEFGEO_THREADS torch threads (default 1)."""
    run = Path(run)
    config = read_run_config(run)
    found = select_checkpoints(list_checkpoints(run), checkpoints)
    settings = settings or LLCSettings()
    with torch_threads(cpu_threads()):
        result = _llc_run(run, config, found, settings, calibrate_grid)
    write_record(run / "llc.json", LlcFile, result)
    if figure:
        from probes.llc_figures import plot_calibration, plot_llc_timeline

        plot_llc_timeline(run, result)
        if result["calibration"] is not None:
            plot_calibration(run, result)
    return result


def _llc_run(
    run: Path,
    config: dict,
    found: list[tuple[int, Path]],
    settings: LLCSettings,
    grid: CalibrationGrid | None,
) -> dict:
    began, wall = time.process_time(), time.perf_counter()
    process = load_run_process(run)
    device = pick_device(config.get("train", {}).get("device", "auto"))
    length = trained_positions(config) + 1
    windows = sampling_windows(process, settings.windows, length, settings.data_seed).to(device)
    loss, ceiling = NextTokenWindowLoss(), math.log(process.n_symbols)
    calibration, source = None, "given"
    if grid is not None:
        final_tokens, final_path = list_checkpoints(run)[-1]
        calibration = calibrate(
            load_checkpoint(final_path, device), windows, loss, settings, grid, device, ceiling,
            progress=lambda cells: progress(cells, "LLC calibration", unit="cell"),
        )  # fmt: skip
        calibration["checkpoint_tokens"] = final_tokens
        if calibration["chosen"] is not None:
            settings, source = replace(settings, **calibration["chosen"]), "calibrated"
        else:
            source = "uncalibrated: no calibration cell was usable"
    entries = []
    for tokens, path in progress(found, "LLC per checkpoint", unit="ckpt"):
        estimate = estimate_llc(load_checkpoint(path, device), windows, loss, settings, device,
                                ceiling)  # fmt: skip
        if calibration is not None and calibration["chosen"] is None:
            estimate["flags"].append("calibration_failed")
        entries.append({"tokens": tokens, **estimate})
    return {
        "format": LLC_FORMAT,
        "devinterp": importlib.metadata.version("devinterp"),
        "settings": {**settings.to_dict(), "source": source, "device": str(device)},
        "data": {
            "windows": settings.windows,
            "length": length,
            "seed": settings.data_seed,
            "description": window_description(settings.windows, length, settings.data_seed),
        },
        "loss": {
            "kind": "mean next-token cross-entropy over positions 0..L-1 of windows of L + 1 "
            "tokens, through the training forward (nats)",
            "ceiling": ceiling,
        },
        "calibration": calibration,
        "checkpoints": entries,
        "stages": stage_boundaries(entries, settings.chains),
        "emergence": emergence_beside_stages(run, config, entries, settings.chains),
        "figures": {"timeline": "figures/llc_timeline.png",
                    "calibration": "figures/llc_calibration.png" if calibration else None},
        "cpu_s": time.process_time() - began,
        "wall_s": time.perf_counter() - wall,
    }  # fmt: skip


def sampling_windows(process: HMM, count: int, length: int, seed: int) -> torch.Tensor:
    """(count, length) int64 windows drawn from `process` with seed entropy (seed, count,
    WINDOW_STREAM): never a training batch's seed (two words) nor a training set's (third word
    1), so the LLC is measured on data the run did not train on."""
    entropy = np.random.SeedSequence([seed, count, WINDOW_STREAM]).generate_state(1, np.uint64)
    tokens, _ = process.sample(count, length, seed=int(entropy[0]))
    return torch.from_numpy(tokens)


def window_description(count: int, length: int, seed: int) -> str:
    return (
        f"process.sample({count}, {length}, seed=SeedSequence([{seed}, {count}, "
        f"{WINDOW_STREAM}]).generate_state(1, uint64)[0]); each chain visits them in its own "
        "shuffled order, batch after batch"
    )


def select_checkpoints(found: list[tuple[int, Path]], count: int | None) -> list[tuple[int, Path]]:
    """`count` checkpoints log-spaced in tokens (nearest to a geometric grid from the first
    non-zero checkpoint to the last; the last always kept; tokens 0 left out: it has no place on
    a log axis and is no minimum), or every checkpoint when count is None."""
    if count is None:
        return list(found)
    checkpoint_count(count)
    positive = [(t, p) for t, p in found if t > 0]
    if not positive:
        raise InvalidInput("the run has only its untrained checkpoint; train it first")
    if count >= len(positive):
        return positive
    logs = np.log([t for t, _ in positive])
    chosen: list[int] = []
    for target in np.linspace(logs[0], logs[-1], count):
        nearest = np.argsort(np.abs(logs - target), kind="stable")
        chosen.append(next(int(i) for i in nearest if i not in chosen))
    return [positive[i] for i in sorted(chosen)]


def stage_boundaries(entries: list[dict], chains: int, flat_frac: float = 0.05) -> dict:
    """Stage boundaries of the LLC curve by STAGE_RULE. entries: llc.json checkpoints.

    -> {"rule", "flat_frac", "used_tokens", "steps": [{"from_tokens", "to_tokens", "change",
    "threshold", "trend"}], "boundaries": [{"tokens", "kind", "llc"}], "structure": bool|None
    (None: fewer than three usable checkpoints)}."""
    used = [
        e for e in entries
        if e["llc_mean"] is not None and math.isfinite(e["llc_mean"])
        and not not_an_llc(e["flags"])
    ]  # fmt: skip
    out = {"rule": STAGE_RULE, "flat_frac": flat_frac, "used_tokens": [e["tokens"] for e in used],
           "steps": [], "boundaries": [], "structure": None}  # fmt: skip
    if len(used) < 3:
        return out
    values = np.array([e["llc_mean"] for e in used])
    se = np.array([_finite(e["llc_sd"]) for e in used]) / math.sqrt(chains)
    spread = float(values.max() - values.min())
    trends = []
    for a, b in zip(range(len(used) - 1), range(1, len(used)), strict=True):
        change = float(values[b] - values[a])
        threshold = max(2 * math.hypot(se[a], se[b]), flat_frac * spread)
        trend = "flat" if abs(change) <= threshold else ("rise" if change > 0 else "fall")
        trends.append(trend)
        out["steps"].append({"from_tokens": used[a]["tokens"], "to_tokens": used[b]["tokens"],
                             "change": change, "threshold": threshold, "trend": trend})  # fmt: skip
    for i in range(1, len(trends) - 1):  # a lone flat step inside a monotone stretch
        if trends[i] == "flat" and trends[i - 1] == trends[i + 1] != "flat":
            trends[i] = trends[i - 1]
    kinds = {("rise", "fall"): "peak", ("fall", "rise"): "trough", ("rise", "flat"):
             "plateau start", ("fall", "flat"): "plateau start", ("flat", "rise"): "plateau end",
             ("flat", "fall"): "plateau end"}  # fmt: skip
    for j in range(1, len(trends)):
        if trends[j] != trends[j - 1]:
            out["boundaries"].append({"tokens": used[j]["tokens"],
                                      "kind": kinds[(trends[j - 1], trends[j])],
                                      "llc": float(values[j])})  # fmt: skip
    out["structure"] = bool(out["boundaries"])
    return out


def probe_emergence(probes: ProbesFile, hook: str) -> dict | None:
    """Where the final layer's belief geometry emerges: the first crossing of the halfway R²
    between the untrained network (baselines.random_init) and the last checkpoint, interpolated
    on log tokens between the bracketing checkpoints. Reads only
    checkpoints[].layers[hook].r2_heldout and baselines.random_init[hook].r2_mean."""
    baseline = probes.baselines.random_init.get(hook) if probes.baselines else None
    if baseline is None or baseline.r2_mean is None:
        return None
    untrained = float(baseline.r2_mean)
    scores = [(c.tokens, c.layers.get(hook)) for c in probes.checkpoints]
    if any(layer is None for _, layer in scores):
        return None
    curve = [(t, float(layer.r2_heldout)) for t, layer in scores if layer.r2_heldout is not None]
    if len(curve) < 2:
        return None
    final = curve[-1][1]
    half = (untrained + final) / 2
    out = {"hook": hook, "untrained_r2": untrained, "final_r2": final, "halfway_r2": half,
           "tokens": None, "bracket": None, "nearest_boundary": None}  # fmt: skip
    if final <= untrained:
        return out  # nothing emerged above the untrained network
    i = next(k for k, (_, r) in enumerate(curve) if r >= half)
    if i == 0:
        out["tokens"], out["bracket"] = float(curve[0][0]), [curve[0][0], curve[0][0]]
        return out
    (t0, r0), (t1, r1) = curve[i - 1], curve[i]
    share = (half - r0) / (r1 - r0)
    tokens = (
        math.exp(math.log(t0) + share * (math.log(t1) - math.log(t0)))
        if t0 > 0 else t0 + share * (t1 - t0)
    )  # fmt: skip
    out["tokens"], out["bracket"] = tokens, [t0, t1]
    return out


def emergence_beside_stages(
    run: Path, config: dict, entries: list[dict], chains: int
) -> dict | None:
    """probe_emergence of the run's final layer (None without RUN/probes.json), with the nearest
    stage boundary and log10(emergence tokens / boundary tokens)."""
    probes = read_probes(run)
    if probes is None:
        return None
    hook = final_layer_hook(residual_hooks(build_model(model_config_of_run(config))))
    out = probe_emergence(probes, hook)
    if out is None or out["tokens"] is None:
        return out
    boundaries = stage_boundaries(entries, chains)["boundaries"]
    if boundaries and out["tokens"] > 0:
        near = min(boundaries, key=lambda b: abs(math.log10(out["tokens"] / b["tokens"])))
        out["nearest_boundary"] = {
            **near,
            "log10_ratio": math.log10(out["tokens"] / near["tokens"]),
        }
    return out


def _finite(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def compare_llc(groups: dict[str, list[str | Path]], out: str | Path) -> dict:
    """LLC curves of several groups of runs (seeds of one setting, a schedule, an architecture),
    each group as its mean and sd across runs at the tokens every run of the group measured, with
    its stage boundaries (STAGE_RULE on the group mean, se = sd across runs / sqrt(runs)) and where
    each run's geometry emerged. Every run needs llc.json with the same settings (`llc
    --settings-from`): LLC values are comparable only at equal settings.

    Writes OUT/llc_compare.json and OUT/llc_compare.png; returns the json's content."""
    from probes.llc_figures import plot_llc_groups

    out = Path(out)
    loaded = {
        label: [(Path(r), _read_llc(Path(r))) for r in runs] for label, runs in groups.items()
    }
    if not loaded or any(not runs for runs in loaded.values()):
        raise InvalidInput("give at least one run in every group")
    keys = ("lr", "n_beta", "localization", "chains", "draws", "batch_size", "windows")
    settings = {tuple(getattr(llc.settings, k) for k in keys) for runs in loaded.values()
                for _, llc in runs}  # fmt: skip
    if len(settings) > 1:
        raise InvalidInput(
            "the runs were measured with different LLC settings; rerun them with "
            "`beliefgeo llc RUN --settings-from FIRST/llc.json`"
        )
    result = {"settings": dict(zip(keys, settings.pop(), strict=True)), "groups": {}}
    for label, runs in loaded.items():
        result["groups"][label] = _group_curve(runs)
    writable_dir(out)
    write_json(out / "llc_compare.json", result)
    plot_llc_groups(result, out / "llc_compare.png")
    return result


def _read_llc(run: Path) -> LlcFile:
    llc = read_llc(run)
    if llc is None or llc.settings is None:
        raise InvalidInput(f"{run} has no llc.json; run `beliefgeo llc {run}`")
    return llc


def _group_curve(runs: list[tuple[Path, LlcFile]]) -> dict:
    """Mean and sd across runs at their common tokens, the stage boundaries of the mean, and each
    run's emergence tokens."""
    by_run = [{e.tokens: e for e in llc.checkpoints or []} for _, llc in runs]
    common = sorted(set.intersection(*(set(b) for b in by_run)))
    entries = []
    for tokens in common:
        values = [b[tokens].llc_mean for b in by_run]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        flags = sorted({f for b in by_run for f in b[tokens].flags})
        entries.append({
            "tokens": tokens,
            "llc_mean": float(np.mean(finite)) if finite else math.nan,
            "llc_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan,
            "llc_runs": values,
            "flags": flags,
        })  # fmt: skip
    return {
        "runs": [str(r) for r, _ in runs],
        "checkpoints": entries,
        "stages": stage_boundaries(entries, max(len(runs), 1)),
        "emergence_tokens": [llc.emergence.tokens if llc.emergence else None for _, llc in runs],
        "per_run_boundaries": [
            [b.to_json() for b in (llc.stages.boundaries or [])] if llc.stages else []
            for _, llc in runs
        ],
    }
