"""`beliefgeo phases RUN`: every phase diagnostic on every checkpoint -> RUN/phases.json + figure.

`phases_run` is a thin driver: `phase_setup` fixes what every checkpoint shares (the probe batch,
sampled once from the run's own process with `PhaseOptions.seed`; long sequences for Lyapunov
exponents; the secant pairs and the read-out's fit set; the training loss for sharpness),
`measure_checkpoint` measures one model, the nulls (`null_reference`: the same diagnostics for
re-initialised networks of the run's shape), the belief update's own dynamics
(hmm.belief_dynamics) and the optimiser's sign-flip null (`sign_flip_reference`) are added,
phases.json is written, and only then the figure is drawn (a figure error loses nothing). Units
use all `n_sequences` probe sequences, the Jacobians (reverse-mode autodiff, one vjp per
checkpoint) the first `jacobian_sequences`. Update sign flips come from the training loop
(metrics.jsonl).

Every key of phases.json is defined in docs/phases.md.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from hmm import HMM
from hmm.belief_dynamics import belief_update_dynamics, window_lyapunov
from hmm.errors import InvalidInput
from hmm.progress import progress
from hmm.records import write_record
from models import build_model, load_checkpoint, load_run_process, read_run_config, unit_hooks
from models.architectures import training_forward
from models.checkpoints import model_config_of_run, read_checkpoint, trained_positions
from models.compute import cpu_threads, torch_threads
from models.recipes import TrainConfig
from models.run_files import list_checkpoints, read_metrics
from models.sign_flips import NULL_COORDINATES, flip_reference, noise_null
from probes.jacobian import (
    SEED_RULE,
    first_spectral_radius_above_1,
    jacobian_diagnostics,
    map_kind,
)
from probes.run_files import PhasesFile
from probes.secant import SecantPairs, secant_pairs
from probes.sharpness import (
    TrainingLoss,
    adam_settled_step,
    hessian_operator,
    stability_threshold,
    top_hessian_eigenvalue,
    training_loss,
)
from probes.units import __doc__ as UNITS_DOC
from probes.units import unit_regimes, weight_norms


@dataclass
class PhaseOptions:
    """Probe batch, unit thresholds, null seeds and the sharpness budget (docs/phases.md)."""

    n_sequences: int = 32
    jacobian_sequences: int = 1  # transformers: each one costs d_model backward passes
    recurrent_sequences: int = 8  # RNNs: cheap per sequence; the seed rule needs a stable mean
    fit_sequences: int = 256  # RNN read-out probe for the secant test
    secant_pairs: int = 256
    secant_split: int | None = None  # None: probes.secant.default_split (n_ctx // 3)
    lyapunov_sequences: int = 2
    lyapunov_length: int = 200
    null_seeds: int = 3
    seed: int = 20240601
    linear_threshold: float = 0.9
    saturated_threshold: float = 0.1
    linear_gain: float = 0.8
    saturated_gain: float = 0.2
    sharpness_max_iter: int = 12
    sharpness_tol: float = 2e-2
    sharpness_exact_max: int = 256  # inputs; each Hessian-vector product runs over all of them
    sharpness_batch: int = 64
    figure: bool = True

    def __post_init__(self) -> None:
        for name in ("jacobian_sequences", "recurrent_sequences"):
            if not 1 <= getattr(self, name) <= self.n_sequences:
                raise InvalidInput(
                    f"need 1 <= {name} <= n_sequences, got {getattr(self, name)} and "
                    f"{self.n_sequences}"
                )
        if self.sharpness_max_iter < 2:
            raise InvalidInput("sharpness_max_iter must be >= 2")
        if (
            self.null_seeds < 0
            or self.lyapunov_length < 2
            or min(self.lyapunov_sequences, self.fit_sequences, self.secant_pairs) < 1
        ):
            raise InvalidInput(
                "need null_seeds >= 0, lyapunov_length >= 2, and lyapunov_sequences, "
                "fit_sequences, secant_pairs >= 1"
            )


@dataclass
class PhaseSetup:
    """What every checkpoint of one run shares; `initial` and `warm` fill in as checkpoints pass."""

    process: HMM
    config: dict
    options: PhaseOptions
    tokens: torch.Tensor  # (n_sequences, n_ctx) probe batch
    fit_tokens: torch.Tensor  # (fit_sequences, n_ctx): the secant test's read-out probe
    fit_beliefs: np.ndarray  # (fit_sequences, n_ctx, S) their exact beliefs
    lyapunov_tokens: torch.Tensor  # (lyapunov_sequences, lyapunov_length)
    pairs: SecantPairs | None  # None for windows of one token
    loss: TrainingLoss
    initial: dict | None = None  # weights at tokens 0
    warm: dict = field(default_factory=dict)  # previous Lanczos vectors by kind


def probe_batch(run: str | Path, options: PhaseOptions) -> torch.Tensor:
    """The fixed probe batch of a run: (n_sequences, n_ctx) int64 sampled from its process."""
    config = read_run_config(run)
    tokens, _ = load_run_process(run).sample(
        options.n_sequences, int(config["model"]["n_ctx"]), seed=options.seed
    )
    return torch.from_numpy(tokens)


def phase_setup(run: str | Path, options: PhaseOptions) -> PhaseSetup:
    """The shared inputs of every checkpoint of RUN (probe batch, long sequences, loss)."""
    config = read_run_config(run)
    process = load_run_process(run)
    n_ctx = int(config["model"]["n_ctx"])
    long, _ = process.sample(
        options.lyapunov_sequences, options.lyapunov_length, seed=options.seed + 1
    )
    fit, _ = process.sample(options.fit_sequences, n_ctx, options.seed + 2)
    pairs = None
    if n_ctx >= 2:
        pairs = secant_pairs(
            process, options.secant_pairs, n_ctx, options.secant_split, seed=options.seed + 3
        )
    loss = training_loss(
        process,
        config.get("train", {}),
        trained_positions(config),
        exact_max=options.sharpness_exact_max,
        max_sequences=options.sharpness_batch,
        batch_sequences=options.sharpness_batch,
    )
    return PhaseSetup(
        process,
        config,
        options,
        probe_batch(run, options),
        torch.from_numpy(fit),
        process.beliefs(fit),
        torch.from_numpy(long),
        pairs,
        loss,
    )


def measure_model(model: torch.nn.Module, setup: PhaseSetup) -> dict:
    """Jacobian and unit diagnostics of one model on the setup's probe batch (no training state:
    used for checkpoints and for the re-initialised nulls)."""
    options = setup.options
    if map_kind(model) == "recurrent":
        jacobian = jacobian_diagnostics(
            model,
            setup.tokens[: options.recurrent_sequences],
            lyapunov_tokens=setup.lyapunov_tokens,
            pairs=setup.pairs,
            fit=(setup.fit_tokens, setup.fit_beliefs),
        )
    else:
        jacobian = jacobian_diagnostics(model, setup.tokens[: options.jacobian_sequences])
    return {"jacobian": jacobian, "units": _units(model, setup.tokens, options)}


def measure_checkpoint(model: torch.nn.Module, state: dict, setup: PhaseSetup) -> dict:
    """Every diagnostic of one checkpoint: {"tokens", "step", "jacobian", "units",
    "weight_norms", "sharpness", "sharpness_detail", "cpu_seconds": {part: s}}.

    model: the checkpoint's model (eval mode); state: its checkpoint dict (read_checkpoint).
    The first checkpoint at tokens 0 becomes the reference for weight changes.
    """
    clock = time.process_time()
    weights = {k: v for k, v in state["model"].items() if torch.is_floating_point(v)}
    if int(state["tokens"]) == 0:
        setup.initial = weights
    entry = {"tokens": int(state["tokens"]), "step": state.get("step")}
    entry.update(measure_model(model, setup))
    measured = time.process_time()
    entry["weight_norms"] = weight_norms(weights, setup.initial)
    detail = _sharpness(model, state, setup)
    entry["sharpness"] = detail["raw"]
    entry["sharpness_detail"] = detail
    entry["cpu_seconds"] = {
        "jacobian_units": measured - clock,
        "sharpness": time.process_time() - measured,
    }
    return entry


def phases_run(run: str | Path, options: PhaseOptions | None = None) -> dict:
    """Measure every checkpoint of RUN; write RUN/phases.json, then RUN/figures/phases.png.

    Runs on BELIEFGEO_THREADS torch threads (default 1, restored afterwards): the diagnostics are
    many small tensor operations.
    """
    with torch_threads(cpu_threads()):
        return _phases_run(Path(run), options or PhaseOptions())


def _phases_run(run: Path, options: PhaseOptions) -> dict:
    began = time.process_time()
    checkpoints = list_checkpoints(run)
    setup = phase_setup(run, options)
    metrics = _metrics_at(run)
    entries, model = [], None
    bar = progress(checkpoints, "phase diagnostics", unit="ckpt")
    for n_tokens, path in bar:
        state = read_checkpoint(path)
        model = _load(path, state, model)
        entry = measure_checkpoint(model, state, setup)
        entry.update(metrics.get(n_tokens, _NOT_RECORDED))
        entries.append(entry)
    result = _assemble(entries, setup, metrics)
    flips_began = time.process_time()
    flips = sign_flip_reference(setup)
    by_step = flips.pop("by_step")
    for entry in entries:
        entry["sign_flip_null"] = by_step.get(entry["step"])
    result["sign_flips"] = {**flips, "cpu_seconds": time.process_time() - flips_began}
    nulls_began = time.process_time()
    result["null"] = null_reference(setup, entries[0] if entries[0]["tokens"] == 0 else None)
    result["cpu_seconds_null"] = time.process_time() - nulls_began
    result["cpu_seconds"] = time.process_time() - began
    write_record(run / "phases.json", PhasesFile, result)
    if options.figure:
        from probes.phase_figures import plot_phases

        plot_phases(run, result)
    return result


def _load(path: Path, state: dict, model: torch.nn.Module | None) -> torch.nn.Module:
    """The model of checkpoint `path` (its dict: `state`): built once, later checkpoints only
    swap the weights."""
    if model is None:
        return load_checkpoint(path)
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise InvalidInput(f"{path} does not match the run's model ({exc})") from None
    return model.eval()


def _assemble(entries: list[dict], setup: PhaseSetup, metrics: dict) -> dict:
    """phases.json's top level around the checkpoint entries."""
    kind = entries[0]["jacobian"]["kind"]
    train = setup.config.get("train", {})
    rule = stability_threshold(
        train.get("optimizer", "adamw"),
        None,
        train.get("betas", (0.9, 0.999)),
        train.get("momentum", 0.0),
    )
    recorded = any(e.get("sign_flip_frac") is not None for e in entries)
    shown = [e["tokens"] for e in entries if e["sharpness_detail"].get("settled")]
    return {
        "checkpoints": entries,
        "first_spectral_radius_above_1": first_spectral_radius_above_1(entries),
        "seed_rule": SEED_RULE[kind],
        "spectral_radius_meaning": SEED_RULE[kind],
        "belief_update": {
            **belief_update_dynamics(setup.process, seed=setup.options.seed),
            **_window_exponent(setup),
        },
        "unit_phase_rule": _unit_rule_text(),
        "sharpness_rule": rule["rule"],
        "sharpness_loss": setup.loss.summary(),
        "sharpness_settled": {
            "step": entries[0]["sharpness_detail"].get("settled_step"),
            "first_shown_tokens": shown[0] if shown else None,
            "rule": SETTLED_RULE if rule["compares"] == "preconditioned" else "not needed (SGD)",
        },
        "sign_flip_source": (
            "training loop: metrics.jsonl sign_flip_frac, every update pair since the previous "
            "checkpoint; read it against sign_flip_null (the optimiser on pure noise)"
            if recorded
            else "not recorded (the run was trained before update sign flips were logged)"
        ),
        "probe_batch": {**asdict(setup.options), "n_ctx": int(setup.tokens.shape[1])},
    }


SETTLED_RULE = (
    "Adam's preconditioned sharpness is shown from the first checkpoint whose second-moment "
    "estimate averages enough squared gradients that no parameter is expected to have v_hat "
    "below a quarter of its second moment: n_eff(step) >= min(n, 0.9 (1 + beta2)/(1 - beta2)) "
    "with D P(chi2_n / n < 1/4) < 1 for the model's D parameters (probes/sharpness.py); earlier "
    "checkpoints read P ~ eps and are not shown."
)


def _window_exponent(setup: PhaseSetup) -> dict:
    """The filter's finite-time exponent over the trained window on the fit sequences."""
    if setup.process.n_states < 2:
        return {}
    return window_lyapunov(setup.process, setup.fit_tokens.numpy())


def sign_flip_reference(setup: PhaseSetup) -> dict:
    """The run's optimiser on pure-noise gradients (models.sign_flips.noise_null), over a seeded
    sample of the initial weights, noise of the size of the initial gradient of the run's loss.

    -> {"null" (mean over every update pair of the run), "reference" (arccos(rho) / pi), "rho",
    "optimizer", "coordinates", "noise_scale", "pairs", "method", "by_step"}.
    """
    config = setup.config
    fields = TrainConfig.__dataclass_fields__
    train = TrainConfig(**{k: v for k, v in config.get("train", {}).items() if k in fields})
    model = build_model(model_config_of_run(config))
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(setup.loss(training_forward(model)), params)
    flat = torch.cat([g.reshape(-1) for g in grads])
    weights = torch.cat([p.detach().reshape(-1) for p in params])
    generator = torch.Generator().manual_seed(setup.options.seed)
    chosen = torch.randperm(len(weights), generator=generator)[:NULL_COORDINATES]
    scale = float(flat.double().pow(2).mean().sqrt()) or 1.0
    data = config.get("data", {})
    steps = config.get("checkpoints", {}).get("steps", [])
    total = int(data.get("total_steps", max(steps, default=1)))
    found = noise_null(train, weights[chosen], steps, total, scale, seed=setup.options.seed)
    rho = train.betas[0] if train.optimizer == "adamw" else train.momentum
    return {
        "null": found["null"],
        "reference": flip_reference(train.optimizer, train.betas, train.momentum),
        "rho": float(rho),
        "optimizer": train.optimizer,
        "coordinates": len(chosen),
        "noise_scale": scale,
        "pairs": found["pairs"],
        "method": (
            f"{train.optimizer} as configured (lr schedule {train.schedule}, warm-up "
            f"{train.warmup_steps}, weight decay {train.weight_decay:g}) stepped {total} times "
            f"on N(0, {scale:.3g}^2) gradients over {len(chosen)} sampled initial weights; "
            "reference arccos(rho)/pi with rho = beta1 (Adam) or the momentum (SGD)"
        ),
        "by_step": found["by_step"],
    }


def null_reference(setup: PhaseSetup, initial_entry: dict | None = None) -> dict:
    """Nulls for every scalar diagnostic: the value at initialisation (the tokens-0 checkpoint)
    and over `null_seeds` networks of the run's shape re-initialised with other seeds.

    -> {"seeds", "reinit": {"<key>": {"mean", "sd", "min", "max"}}, "init": {"<key>": value}};
    keys are dotted paths into a checkpoint entry, e.g. "jacobian.spectral_radius_mean",
    "units.blocks.0.gain_mean", "jacobian.blocks.1.normalised_spectral_norm_mean".
    """
    base = model_config_of_run(setup.config)
    seeds = [int(base.seed) + 1000 + k for k in range(setup.options.null_seeds)]
    values: dict[str, list[float]] = {}
    for seed in seeds:
        model = build_model(dataclasses.replace(base, seed=seed)).eval()
        for key, value in scalar_diagnostics(measure_model(model, setup)).items():
            values.setdefault(key, []).append(value)
    reinit = {
        key: {
            "mean": float(np.mean(v)),
            "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "min": float(np.min(v)),
            "max": float(np.max(v)),
        }
        for key, v in values.items()
        if len(v) == len(seeds)
    }
    init = scalar_diagnostics(initial_entry) if initial_entry else {}
    return {"seeds": seeds, "reinit": reinit, "init": init}


def scalar_diagnostics(entry: dict) -> dict[str, float]:
    """The numeric leaves of a checkpoint entry's jacobian and units, by dotted path; blocks are
    addressed by index ("jacobian.blocks.0.spectral_radius_mean")."""
    out: dict[str, float] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                if key != "positions":  # where a quantity was measured, not a measurement
                    walk(f"{prefix}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}.{index}", inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix] = float(value)

    for part in ("jacobian", "units"):
        walk(part, entry.get(part, {}))
    return out


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
            options.linear_gain,
            options.saturated_gain,
        )
        for layer, (hook, act) in layers.items()
    }


def _sharpness(model: torch.nn.Module, state: dict, setup: PhaseSetup) -> dict:
    """Raw and (Adam) preconditioned top Hessian eigenvalue of the run's training loss
    (setup.loss), warm-started from the previous checkpoint's eigenvectors (setup.warm)."""
    train, options = setup.config.get("train", {}), setup.options
    params = list(model.parameters())
    with torch.enable_grad():  # the training forward: same function, no hook dispatch
        hessian = hessian_operator(setup.loss(training_forward(model)), params)
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
        "settled": True,
    }
    scales = {"raw": None}
    if rule["compares"] == "preconditioned":
        betas = groups[0].get("betas", train.get("betas", (0.9, 0.999)))
        settled_step = adam_settled_step(float(betas[1]), sum(p.numel() for p in params))
        detail["settled_step"] = settled_step
        detail["settled"] = int(state.get("step") or 0) >= settled_step
        if detail["settled"]:
            scales["preconditioned"] = _adam_scale(params, optimizer_state)
    for kind, scale in scales.items():
        if kind == "preconditioned" and scale is None:
            continue  # no second-moment estimate before the first update
        found = top_hessian_eigenvalue(
            hessian,
            params,
            scale=scale,
            init=setup.warm.get(kind),
            max_iter=options.sharpness_max_iter,
            tol=options.sharpness_tol,
        )
        setup.warm[kind] = found["vector"]
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


_NOT_RECORDED = {"excess_loss": None, "sign_flip_frac": None, "sign_flip_steps": None}


def _metrics_at(run: Path) -> dict[int, dict]:
    """Per checkpoint token count, from RUN/metrics.jsonl: excess losses and the training loop's
    update sign-flip summary (null where the run did not record it)."""
    out: dict[int, dict] = {}
    for record in read_metrics(run):
        entry = {key: record.get(key) for key in _NOT_RECORDED}
        if "exact_excess_loss" in record:
            entry["exact_excess_loss"] = record["exact_excess_loss"]
        tokens = int(record["tokens"])
        if entry["sign_flip_frac"] is None and tokens in out:
            entry["sign_flip_frac"] = out[tokens].get("sign_flip_frac")
            entry["sign_flip_steps"] = out[tokens].get("sign_flip_steps")
        out[tokens] = entry
    return out


def _unit_rule_text() -> str:
    """The phase-label rule, quoted from probes/units.py's docstring (its single home)."""
    text = UNITS_DOC or ""
    start = text.find("One criterion")
    return " ".join(text[start:].split()) if start >= 0 else ""


def phase_milestones(phases: dict) -> dict[str, float | None]:
    """The phase numbers of one run that sweeps summarise over seeds (docs/phases.md), from its
    phases.json: unit-phase milestones (tokens), unit level at the start, end and in the
    re-initialised null (mean over layers), and for recurrent networks the radius, Lyapunov
    exponents and secant test at the start and end. None where a number does not apply.

    A network is "linear" at a checkpoint when every unit layer is, "saturated" (or "sparse",
    ReLU-like) when every layer is: linear_until is the last checkpoint before some layer leaves
    the linear phase (hybrid_from the first one after), saturated_from / sparse_from the first
    checkpoint at which every layer is there.
    """
    entries = phases["checkpoints"]
    out: dict[str, float | None] = dict.fromkeys(MILESTONE_KEYS)
    labels = [[u.get("phase") for u in e.get("units", {}).values()] for e in entries]
    tokens = [e["tokens"] for e in entries]
    relu = any(u.get("measure") == "active fraction" for u in entries[0].get("units", {}).values())

    def first(test) -> int | None:
        return next((t for t, layer in zip(tokens, labels, strict=True) if test(layer)), None)

    level = "active" if relu else "gain"
    key = "active_frac" if relu else "gain_mean"
    if relu:
        out["sparse_from"] = first(lambda layer: layer and all(p == "sparse" for p in layer))
    else:
        left = first(lambda layer: any(p != "linear" for p in layer))
        out["hybrid_from"] = left
        before = [t for t in tokens if left is None or t < left]
        out["linear_until"] = before[-1] if before else None
        out["saturated_from"] = first(lambda layer: layer and all(p == "saturated" for p in layer))
    out[f"{level}_start"] = _layer_mean(entries[0], key)
    out[f"{level}_end"] = _layer_mean(entries[-1], key)
    reinit = phases.get("null", {}).get("reinit", {})
    nulls = [v["mean"] for k, v in reinit.items() if k.startswith("units.") and k.endswith(key)]
    out[f"{level}_null"] = float(np.mean(nulls)) if nulls else None
    if entries[-1].get("jacobian", {}).get("kind") == "recurrent":
        start, end = entries[0]["jacobian"], entries[-1]["jacobian"]
        out["radius_start"] = start.get("spectral_radius_mean")
        out["radius_end"] = end.get("spectral_radius_mean")
        out["radius_median_end"] = (end.get("spectral_radius_quantiles") or {}).get("q50")
        out["lyapunov_start"], out["lyapunov_end"] = start.get("lyapunov"), end.get("lyapunov")
        out["lyapunov_null"] = reinit.get("jacobian.lyapunov", {}).get("mean")
        out["lyapunov_window_end"] = end.get("lyapunov_window")
        secant = end.get("secant") or {}
        out["secant_rate_state_end"] = secant.get("rate_state")
        out["secant_rate_readout_end"] = secant.get("rate_readout")
        out["secant_rate_belief"] = secant.get("rate_belief")
        verdict = (secant.get("state_vs_belief") or {}).get("passes")
        out["secant_passes_end"] = None if verdict is None else float(verdict)
    return out


MILESTONE_KEYS = (
    "linear_until", "hybrid_from", "saturated_from", "sparse_from",
    "gain_start", "gain_end", "gain_null", "active_start", "active_end", "active_null",
    "radius_start", "radius_end", "radius_median_end",
    "lyapunov_start", "lyapunov_end", "lyapunov_null", "lyapunov_window_end",
    "secant_rate_state_end", "secant_rate_readout_end", "secant_rate_belief", "secant_passes_end",
)  # fmt: skip


def _layer_mean(entry: dict, key: str) -> float | None:
    values = [u[key] for u in entry.get("units", {}).values() if u.get(key) is not None]
    return float(np.mean(values)) if values else None
