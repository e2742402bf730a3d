"""`beliefgeo phases RUN`: every phase diagnostic on every checkpoint -> RUN/phases.json + figure.

All checkpoints are measured on one fixed probe batch, sampled once from the run's own process with
`PhaseOptions.seed` (the same for every checkpoint and every run of the command): units and
sharpness use all `n_sequences` sequences, the Jacobians (the costly part, d_model forward-mode
passes per position) the first `jacobian_sequences` of them.

phases.json (DESIGN.md section 5, plus the fields a report needs to read it):
  {"checkpoints": [{"tokens", "step", "excess_loss", "exact_excess_loss",
                    "jacobian": {"kind", "spectral_radius_mean", "spectral_radius_max",
                                 "spectral_norm_mean", "spectral_norm_max", "blocks": [...]},
                    "units": {"<layer>": {"linear_frac", "saturated_frac", "dead_frac",
                                          "phase", "act"}},
                    "sign_flip_frac" (null for the first two checkpoints),
                    "weight_norms": {"<layer>" | "all": {"norm", "rel_change_from_init"}},
                    "sharpness" (raw top Hessian eigenvalue of the loss on the probe batch),
                    "sharpness_detail": {"lr", "raw", "preconditioned", "compared", "threshold",
                                         "ratio", "iterations", "converged"}}],
   "first_spectral_radius_above_1": int | null,
   "first_block_update_radius_above_1": {"blocks.{l}": int | null}  (residual networks),
   "spectral_radius_meaning", "unit_phase_rule", "sharpness_rule", "probe_batch",
   "seconds_by_part", "seconds"}
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from hmm.errors import InvalidInput
from hmm.files import read_json, write_json
from models import load_checkpoint, load_run_process, read_run_config, unit_hooks
from models.checkpoints import read_checkpoint
from models.run_files import list_checkpoints, read_metrics
from models.training import cpu_threads, next_token_losses
from probes.jacobian import (
    SPECTRAL_RADIUS_MEANING,
    first_spectral_radius_above_1,
    jacobian_diagnostics,
)
from probes.sharpness import hessian_operator, stability_threshold, top_hessian_eigenvalue
from probes.units import __doc__ as UNITS_DOC
from probes.units import flat_parameters, sign_flip_fraction, unit_regimes, weight_norms


@dataclass
class PhaseOptions:
    """Probe batch, unit thresholds (DESIGN.md section 5) and power-iteration budget."""

    n_sequences: int = 32
    jacobian_sequences: int = 4
    seed: int = 20240601
    linear_threshold: float = 0.9
    saturated_threshold: float = 0.1
    linear_phase: float = 0.8
    saturated_phase: float = 0.5
    sharpness_max_iter: int = 20
    sharpness_tol: float = 1e-2
    figure: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.jacobian_sequences <= self.n_sequences:
            raise InvalidInput(
                f"need 1 <= jacobian_sequences <= n_sequences, got {self.jacobian_sequences} "
                f"and {self.n_sequences}"
            )
        if self.sharpness_max_iter < 2:
            raise InvalidInput("sharpness_max_iter must be >= 2")


def probe_batch(run: str | Path, options: PhaseOptions) -> torch.Tensor:
    """The fixed probe batch of a run: (n_sequences, n_ctx) int64 sampled from its process."""
    config = read_run_config(run)
    tokens, _ = load_run_process(run).sample(
        options.n_sequences, int(config["model"]["n_ctx"]), seed=options.seed
    )
    return torch.from_numpy(tokens)


def phases_run(run: str | Path, options: PhaseOptions | None = None) -> dict:
    """Measure every checkpoint of RUN; write RUN/phases.json and RUN/figures/phases.png.

    Runs on BELIEFGEO_THREADS torch threads (default 1, restored afterwards): the diagnostics are
    many small tensor operations, and on a busy 2-core CPU two intra-op threads made them ten
    times slower, not faster.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads())
    try:
        return _phases_run(Path(run), options or PhaseOptions())
    finally:
        torch.set_num_threads(threads)


def _phases_run(run: Path, options: PhaseOptions) -> dict:
    started = time.perf_counter()
    config = read_run_config(run)
    checkpoints = list_checkpoints(run)
    tokens = probe_batch(run, options)
    metrics = _metrics_at(run)
    train = config.get("train", {})
    threshold_rule = stability_threshold(
        train.get("optimizer", "adamw"),
        None,
        train.get("betas", (0.9, 0.999)),
        train.get("momentum", 0.0),
    )

    model = None
    initial_state = None
    previous: list[torch.Tensor] = []
    warm: dict[str, list[torch.Tensor]] = {}
    entries = []
    seconds = dict.fromkeys(("load", "jacobian", "units", "weights", "sharpness", "figure"), 0.0)
    clock = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[part] += now - clock
        clock = now

    bar = tqdm(checkpoints, desc="phases", unit="ckpt", disable=not sys.stderr.isatty())
    for n_tokens, path in bar:
        state = read_checkpoint(path)
        if model is None:
            model = load_checkpoint(path)  # built once; later checkpoints only swap weights
        else:
            try:
                model.load_state_dict(state["model"])
            except (KeyError, RuntimeError) as exc:
                raise InvalidInput(f"{path} does not match the run's model ({exc})") from None
        model.eval()
        weights = {k: v for k, v in state["model"].items() if torch.is_floating_point(v)}
        if n_tokens == 0:
            initial_state = weights
        entry: dict = {"tokens": n_tokens, "step": state.get("step")}
        entry.update(metrics.get(n_tokens, {}))
        lap("load")
        entry["jacobian"] = jacobian_diagnostics(model, tokens[: options.jacobian_sequences])
        lap("jacobian")
        entry["units"] = _units(model, tokens, options)
        lap("units")

        flat = flat_parameters(weights)
        previous = (previous + [flat])[-3:]
        entry["sign_flip_frac"] = sign_flip_fraction(*previous) if len(previous) == 3 else None
        entry["weight_norms"] = weight_norms(weights, initial_state)
        lap("weights")

        detail = _sharpness(model, tokens, state, train, options, warm)
        entry["sharpness"] = detail["raw"]
        entry["sharpness_detail"] = detail
        entries.append(entry)
        lap("sharpness")

    result = {
        "checkpoints": entries,
        "first_spectral_radius_above_1": first_spectral_radius_above_1(entries),
    }
    kind = entries[0]["jacobian"]["kind"]
    if kind == "residual":
        result["first_block_update_radius_above_1"] = {
            block["hook"]: first_spectral_radius_above_1(
                [{"tokens": e["tokens"], "jacobian": e["jacobian"]["blocks"][i]} for e in entries]
            )
            for i, block in enumerate(entries[0]["jacobian"]["blocks"])
        }
    result["spectral_radius_meaning"] = SPECTRAL_RADIUS_MEANING[kind]
    result["unit_phase_rule"] = _unit_rule_text()
    result["sharpness_rule"] = threshold_rule["rule"]
    result["probe_batch"] = {**asdict(options), "n_ctx": int(tokens.shape[1])}
    if options.figure:
        from probes.phase_figures import plot_phases

        plot_phases(run, result)
        lap("figure")
    result["seconds_by_part"] = seconds
    result["seconds"] = time.perf_counter() - started
    write_json(run / "phases.json", result)
    return result


def _units(model: torch.nn.Module, tokens: torch.Tensor, options: PhaseOptions) -> dict:
    """Unit regimes of every nonlinear layer on the probe batch (hooks from models.unit_hooks)."""
    layers = unit_hooks(model)
    names = [hook for hook, _ in layers.values()]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=names)
    return {
        layer: unit_regimes(
            cache[hook],
            act,
            options.linear_threshold,
            options.saturated_threshold,
            options.linear_phase,
            options.saturated_phase,
        )
        for layer, (hook, act) in layers.items()
    }


def _sharpness(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    state: dict,
    train: dict,
    options: PhaseOptions,
    warm: dict[str, list[torch.Tensor]],
) -> dict:
    """Raw and (Adam) preconditioned top Hessian eigenvalue of the mean next-token loss on tokens.

    warm: the previous checkpoint's eigenvectors by kind, updated in place (warm starts).
    """
    params = list(model.parameters())
    with torch.enable_grad():
        hessian = hessian_operator(next_token_losses(model(tokens), tokens).mean(), params)
    budget = {"max_iter": options.sharpness_max_iter, "tol": options.sharpness_tol}
    optimizer_state = state.get("optimizer") or {}
    groups = optimizer_state.get("param_groups") or [{}]
    lr = groups[0].get("lr", train.get("lr"))  # the rate of the next update from this checkpoint
    rule = stability_threshold(
        train.get("optimizer", "adamw"),
        lr,
        train.get("betas", (0.9, 0.999)),
        train.get("momentum", 0.0),
    )
    detail = {
        "lr": lr,
        "raw": None,
        "preconditioned": None,
        "compared": rule["compares"],
        "threshold": rule["threshold"],
        "ratio": None,
        "iterations": 0,
        "converged": True,
    }
    scales = {"raw": None}
    if rule["compares"] == "preconditioned":
        scales["preconditioned"] = _adam_scale(params, optimizer_state)
    for kind, scale in scales.items():
        if kind == "preconditioned" and scale is None:
            continue  # no second-moment estimate before the first update
        found = top_hessian_eigenvalue(hessian, params, scale=scale, init=warm.get(kind), **budget)
        warm[kind] = found["vector"]
        detail[kind] = found["value"]
        detail["iterations"] += found["iterations"]
        detail["converged"] = detail["converged"] and found["converged"]
    compared = detail[rule["compares"]]
    if compared is not None and rule["threshold"]:
        detail["ratio"] = compared / rule["threshold"]
    return detail


def _adam_scale(params: list[torch.Tensor], optimizer_state: dict) -> list[torch.Tensor] | None:
    """D = P^-1/2 with P = sqrt(v_hat) + eps from Adam's state (None before the first update).

    torch optimisers index their state by the position of each parameter in model.parameters().
    """
    per_param = optimizer_state.get("state") or {}
    groups = optimizer_state.get("param_groups") or []
    if not per_param or not groups:
        return None
    beta2, eps = groups[0]["betas"][1], groups[0]["eps"]
    scale = []
    for index, p in enumerate(params):
        slot = per_param.get(index)
        if slot is None or "exp_avg_sq" not in slot:
            return None
        v_hat = slot["exp_avg_sq"] / (1 - beta2 ** float(slot["step"]))
        scale.append((v_hat.sqrt() + eps).rsqrt().to(p.dtype))
    return scale


def _metrics_at(run: Path) -> dict[int, dict]:
    """Excess losses logged at each token count in RUN/metrics.jsonl (empty when absent)."""
    out: dict[int, dict] = {}
    for record in read_metrics(run):
        entry = {"excess_loss": record.get("excess_loss")}
        if "exact_excess_loss" in record:
            entry["exact_excess_loss"] = record["exact_excess_loss"]
        out[int(record["tokens"])] = entry
    return out


def _unit_rule_text() -> str:
    """The phase-label rule, quoted from probes/units.py's docstring (its single home)."""
    text = UNITS_DOC or ""
    start = text.find("Phase label")
    return " ".join(text[start:].split()) if start >= 0 else ""


def read_phases(run: str | Path) -> dict:
    """RUN/phases.json (InvalidInput when missing: run `beliefgeo phases RUN` first)."""
    return read_json(Path(run) / "phases.json")
