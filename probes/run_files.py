"""RUN/probes.json, RUN/phases.json and RUN/llc.json as typed records (hmm.records): their one
reader each, `read_probes`, `read_phases` and `read_llc`, and the type every writer's keys must be
declared in (a new key is one field here and one line in docs/run-files.md;
tests/experiments/test_docs.py checks both against a real run). Older formats are brought up to
date in the types' `migrate`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hmm.errors import InvalidInput
from hmm.files import read_json
from hmm.records import Record, keyed, nullable, only, record
from models.run_files import RECURRENT

Curve = list[float | None]


# ---- probes.json -----------------------------------------------------------------------------
@record
class ProbeInputs(Record):
    mode: str | None = None  # "enumerated" | "sampled"
    sequences: int | None = None
    enumerated_sequences: int | None = None
    length: int | None = None
    rows: int | None = None
    fit_sequences: int | None = None
    heldout_sequences: int | None = None
    fit_prefixes: int | None = None  # distinct prefixes the probes are fit on (rows per feature)


@record
class ProbedPositions(Record):
    trained: int | None = None
    probed: list[int] | None = None
    n_ctx: int | None = None
    note: str | None = None


@record
class Split(Record):
    kind: str | None = None  # "subtree" | "random"
    shared_prefix_weight: float | None = None
    prefix_len: int | None = None
    seed: int | None = None


@record
class UntrainedBaseline(Record):
    r2_mean: float | None = None
    r2_sd: float | None = None
    n_seeds: int | None = None
    seeds: list[int] | None = None
    r2_weighted_mean: float | None = None
    # on the trained model's remainder beyond its next-token distribution (the same target)
    r2_beyond_prediction: float | None = None
    r2_beyond_prediction_sd: float | None = None
    r2_fine: dict[str, float | None] = keyed("<k>")  # mean over seeds
    effective_dim_mean: dict[str, float | None] = keyed("<k>")


@record
class Baselines(Record):
    random_init: dict[str, UntrainedBaseline] = keyed("<hook>")
    kgram: dict[str, float | None] = keyed("<k>")
    kgram_weighted: dict[str, float | None] = keyed("<k>")
    kgram_features: dict[str, int] = keyed("<k>")
    kgram_oracle: dict[str, float | None] = keyed("<k>")


@record
class TargetScore(Record):
    """One probe target's held-out R² (belief_study.target_fits) and its 95 % bootstrap interval
    (newest checkpoint only; None elsewhere)."""

    r2_heldout: float | None = None
    ci95: list[float] | None = None


@record
class ProbeScores(Record):
    """One probe's scores (docs/probes.md defines each)."""

    r2_heldout: float | None = None
    r2_heldout_weighted: float | None = None
    r2_heldout_unseen: float | None = None  # held-out rows no fit sequence shares
    r2_insample: float | None = None
    r2_pooled: float | None = None
    r2_shuffle: float | None = None
    mse_heldout: float | None = None
    r2_by_position: Curve | None = None
    mse_by_position: Curve | None = None
    ridge: float | None = None
    r2_beyond_prediction: float | None = None  # on the belief beyond the next-token distribution
    ridge_beyond_prediction: float | None = None
    r2_fine: dict[str, float | None] = keyed("<k>")  # within-cell deviations, cells of k tokens
    fine_corr: dict[str, float | None] = keyed("<k>")
    # per probe target ("belief" and the process's others); only mixtures and products
    targets: dict[str, TargetScore] = keyed("<key>", only="optional")


@record
class LayerScores(ProbeScores):
    """A hook's probe scores and the geometry of its activations (probes.geometry_study; per
    hook, not concat)."""

    explained_variance: Curve | None = None
    affine_dim: int | None = None
    effective_dim: dict[str, int | None] = keyed("<k>")
    subspaces: dict = keyed("<key>", only="optional")


@record
class BeliefGeometry(Record):
    """The exact belief set's own dimensions (the reference for effective_dim)."""

    explained_variance: Curve | None = None
    affine_dim: int | None = None
    effective_dim: dict[str, int | None] = keyed("<k>")


@record
class NextTokenScores(ProbeScores):
    """The probe from the model's next-token distribution, and distance correlations."""

    r2_heldout_logits: float | None = None
    distance_corr_probe: float | None = None
    distance_corr_next_token: float | None = None
    distance_probe: str | None = None
    excess_loss: float | None = None  # held-out mean KL(optimal || model), nats per token


@record
class ProbeCheckpoint(Record):
    tokens: int = 0
    layers: dict[str, LayerScores] = keyed("<hook>")
    next_token: NextTokenScores | None = None


@record
class KgramTable(Record):
    """A table of the last k tokens beside the final layer (probes.belief_evidence._tables)."""

    oracle: float | None = None
    fitted: float | None = None
    cells: int | None = None
    error_ratio_oracle: float | None = None
    error_ratio_fitted: float | None = None


@record
class FineDepth(Record):
    value: int | None = None  # None unless every bootstrap replicate's interval agrees
    interval: list[float] | None = None
    threshold: float | None = None


@record
class Headline(Record):
    """The final layer at the newest checkpoint against what it must beat
    (probes.belief_evidence.headline; docs/probes.md)."""

    tokens: int | None = None
    hook: str | None = None
    width: int | None = None
    r2_heldout: float | None = None
    r2_heldout_unseen: float | None = None
    untrained_r2: float | None = None
    next_token_r2: float | None = None
    optimal_probs_r2: float | None = None
    optimal_logit_r2: float | None = None
    belief_affine_in_prediction: bool | None = None
    case: str | None = None  # "implied_by_loss" | "beyond_next_token"
    sentence: str | None = None
    r2_beyond_prediction: float | None = None
    r2_beyond_prediction_untrained: float | None = None
    r2_beyond_prediction_concat: float | None = None
    kgram: dict[str, KgramTable] = keyed("<k>")
    oracle_beats_layer_at: int | None = None
    fitted_beats_layer_at: int | None = None
    best_baseline: str | None = None
    baseline_r2: float | None = None
    margin: float | None = None
    error_ratio: float | None = None
    r2_fine: dict[str, float | None] = keyed("<k>")
    fine_depth: FineDepth | None = None
    split: str | None = None
    warnings: list[str] | None = None


@record
class BootstrapIntervals(Record):
    """95 % intervals of one probe's scores over resampled held-out subtrees."""

    r2_heldout: list[float] | None = None
    r2_beyond_prediction: list[float] | None = None
    fine_depth: list[float] | None = None
    r2_fine: dict[str, list[float] | None] = keyed("<k>")


@record
class Bootstrap(Record):
    tokens: int | None = None
    replicates: int | None = None
    unit: str | None = None  # "subtree" (enumerated inputs) | "sequence" (sampled)
    units: int | None = None
    unit_prefix_len: int | None = None  # None for sequences
    seed: int | None = None
    probes: dict[str, BootstrapIntervals | None] = keyed("<hook>")


Band = list[float] | None  # a 95 % interval [low, high]


@record
class ScoreIntervals(Record):
    """95 % bootstrap intervals of every score shown, newest checkpoint (score_intervals):
    resampled held-out sequences (sampled inputs) or held-out subtrees (enumerated)."""

    tokens: int | None = None
    replicates: int | None = None
    seed: int | None = None
    unit: str | None = None  # "subtree" | "sequence"
    units: int | None = None
    unit_prefix_len: int | None = None
    layers: dict[str, Band] = keyed("<hook>")  # r2_heldout
    next_token: Band = None
    optimal_probs: Band = None
    optimal_logits: Band = None
    kgram: dict[str, Band] = keyed("<k>")
    kgram_oracle: dict[str, Band] = keyed("<k>")
    random_init: dict[str, Band] = keyed("<hook>")  # the seed mean; final layer and concat
    excess_loss: Band = None


@record
class Readability(Record):
    """Rows per probe feature and held-out vs in-sample gaps, and the warnings they raise."""

    fit_prefixes: int | None = None
    rows_per_feature: dict[str, float] = keyed("<hook>")
    min_rows_per_feature: int | None = None
    heldout_gap: dict[str, float] = keyed("<hook>")
    max_heldout_gap: float | None = None
    warnings: list[str] | None = None


@record
class ProbeFigures(Record):
    simplex: str | None = None
    layers: str | None = None
    emergence: str | None = None
    positions: str | None = None
    animation: str | None = None
    dimension: str | None = None
    view_3d: str | None = only("optional")
    factors: str | None = only("optional")


@record
class ProbesFile(Record):
    """RUN/probes.json."""

    inputs: ProbeInputs | None = None
    positions: ProbedPositions | None = None
    split: Split | None = None
    hooks: list[str] | None = None
    hook_widths: dict[str, int] = keyed("<hook>")
    optimal_logit_r2: float | None = None
    optimal_probs_r2: float | None = None
    baselines: Baselines | None = None
    checkpoints: list[ProbeCheckpoint] | None = None
    bootstrap: Bootstrap | None = None
    intervals: ScoreIntervals | None = None
    readability: Readability | None = None
    headline: Headline | None = None
    belief_geometry: BeliefGeometry | None = None
    figures: ProbeFigures | None = None

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Before optimal_logit_r2 it was logit_ceiling.optimal_logits_r2_heldout."""
        ceiling = data.pop("logit_ceiling", None)
        if isinstance(ceiling, dict) and "optimal_logit_r2" not in data:
            data["optimal_logit_r2"] = ceiling.get("optimal_logits_r2_heldout")
        return data


# ---- phases.json -----------------------------------------------------------------------------
@record
class Spectrum(Record):
    """Mean and max over the probe batch of a map's spectral radius and norm."""

    spectral_radius_mean: float | None = None
    spectral_radius_max: float | None = None
    spectral_norm_mean: float | None = None
    spectral_norm_max: float | None = None


@record
class BlockMap(Spectrum):
    hook: str | None = None
    map: str | None = None
    w_rec_spectral_radius: float | None = only(RECURRENT)
    w_rec_circular_law_radius: float | None = only(RECURRENT)
    normalised_spectral_radius_mean: float | None = only("transformer")
    normalised_spectral_radius_max: float | None = only("transformer")
    normalised_spectral_norm_mean: float | None = only("transformer")
    normalised_spectral_norm_max: float | None = only("transformer")


@record
class CrossPosition(Spectrum):
    positions: list[int] | None = None


@record
class Quantiles(Record):
    q10: float | None = None
    q25: float | None = None
    q50: float | None = None
    q75: float | None = None
    q90: float | None = None


@record
class Separation(Record):
    state: float | None = None
    readout: float | None = None
    belief: float | None = None


@record
class SecantComparison(Record):
    rate_gap: float | None = None
    tolerance: float | None = None
    distortion: float | None = None
    se: float | None = None
    passes: bool | None = None


@record
class Secant(Record):
    """The secant test on the belief manifold (docs/phases.md)."""

    split: str | None = None
    horizon: int | None = None
    pairs: int | None = None
    dropped_pairs: int | None = None
    synchronised_pairs: int | None = None
    rate_state: float | None = None
    rate_readout: float | None = None
    rate_belief: float | None = None
    readout_error_rms: float | None = None
    log_separation: Separation | None = None
    state_vs_belief: SecantComparison | None = None
    readout_vs_belief: SecantComparison | None = None


@record
class JacobianEntry(Spectrum):
    kind: str | None = None  # "recurrent" | "residual"
    blocks: list[BlockMap] | None = None
    lyapunov: float | None = only(RECURRENT)
    lyapunov_window: float | None = only(RECURRENT)
    spectral_radius_quantiles: Quantiles | None = only(RECURRENT)
    secant: Secant | None = only(RECURRENT)
    cross_position: CrossPosition | None = only("transformer")


@record
class UnitLayer(Record):
    """A nonlinear layer's regime on the probe batch (probes/units.py defines each number):
    tanh/sigmoid-like layers by their gain, ReLU-like ones by their active fraction (`measure`)."""

    act: str | None = None
    measure: str | None = None  # "gain" | "active fraction"
    phase: str | None = None
    dead_frac: float | None = None
    gain_mean: float | None = only("optional")
    linear_frac: float | None = only("optional")
    saturated_frac: float | None = only("optional")
    gain_quantiles: Quantiles | None = only("optional")
    active_frac: float | None = only("optional")
    active_quantiles: Quantiles | None = only("optional")

    @property
    def level(self) -> float | None:
        """The number the phase is read from: the gain, or the active fraction."""
        return self.active_frac if self.measure == "active fraction" else self.gain_mean


@record
class WeightNorm(Record):
    norm: float | None = None
    rel_change_from_init: float | None = None


@record
class SharpnessDetail(Record):
    lr: float | None = None
    raw: float | None = None
    preconditioned: float | None = None
    compared: str | None = None
    threshold: float | None = None
    ratio: float | None = None
    iterations: int | None = None
    converged: bool | None = None
    settled: bool | None = None
    settled_step: int | None = only("optional")


@record
class PhaseCpu(Record):
    jacobian_units: float | None = None
    sharpness: float | None = None


@record
class PhaseCheckpoint(Record):
    tokens: int = 0
    step: int | None = None
    jacobian: JacobianEntry | None = None
    units: dict[str, UnitLayer] = keyed("<layer>")
    weight_norms: dict[str, WeightNorm] = keyed(
        ["embed", "unembed", "all", "<layer>", ("pos_embed", "transformer"),
         ("ln_final", "transformer")]
    )
    sharpness: float | None = None
    sharpness_detail: SharpnessDetail | None = None
    sign_flip_frac: float | None = None
    sign_flip_null: float | None = None
    sign_flip_steps: int | None = None
    excess_loss: float | None = None
    exact_excess_loss: float | None = None
    cpu_seconds: PhaseCpu | None = None


@record
class BeliefUpdate(Record):
    spectral_radius_mean: float | None = None
    spectral_radius_max: float | None = None
    frac_radius_above_1: float | None = None
    lyapunov: float | None = None
    lyapunov_sd: float | None = None
    spectral_radius_quantiles: Quantiles | None = None
    n_sequences: int | None = None
    length: int | None = None
    burn_in: int | None = None
    seed: int | None = None
    lyapunov_window: float | None = None
    lyapunov_window_sd: float | None = None
    window: int | None = None
    window_sequences: int | None = None


@record
class NullBand(Record):
    mean: float | None = None
    sd: float | None = None
    min: float | None = None
    max: float | None = None


@record
class Nulls(Record):
    seeds: list[int] | None = None
    init: dict[str, float | None] = keyed("<key>")
    reinit: dict[str, NullBand] = keyed("<key>")


@record
class SharpnessLoss(Record):
    kind: str | None = None
    n_sequences: int | None = None
    description: str | None = None


@record
class ProbeBatch(Record):
    n_sequences: int | None = None
    jacobian_sequences: int | None = None
    lyapunov_sequences: int | None = None
    lyapunov_length: int | None = None
    null_seeds: int | None = None
    seed: int | None = None
    fit_sequences: int | None = None
    recurrent_sequences: int | None = None
    secant_pairs: int | None = None
    secant_split: str | None = None
    linear_threshold: float | None = None
    saturated_threshold: float | None = None
    linear_gain: float | None = None
    saturated_gain: float | None = None
    figure: bool | None = None
    n_ctx: int | None = None
    sharpness_max_iter: int | None = None
    sharpness_tol: float | None = None
    sharpness_exact_max: int | None = None
    sharpness_batch: int | None = None


@record
class SharpnessSettled(Record):
    step: int | None = None
    first_shown_tokens: int | None = None
    rule: str | None = None


@record
class SignFlipNull(Record):
    """The sign-flip fraction the optimiser gives on pure-noise gradients (docs/phases.md)."""

    null: float | None = None
    reference: float | None = None
    rho: float | None = None
    optimizer: str | None = None
    coordinates: int | None = None
    noise_scale: float | None = None
    pairs: int | None = None
    method: str | None = None
    cpu_seconds: float | None = None


@record
class PhasesFile(Record):
    """RUN/phases.json."""

    checkpoints: list[PhaseCheckpoint] | None = None
    first_spectral_radius_above_1: int | None = None
    seed_rule: str | None = None
    spectral_radius_meaning: str | None = None
    belief_update: BeliefUpdate | None = None
    null: Nulls | None = None
    unit_phase_rule: str | None = None
    sharpness_rule: str | None = None
    sharpness_loss: SharpnessLoss | None = None
    sharpness_settled: SharpnessSettled | None = None
    sign_flip_source: str | None = None
    sign_flips: SignFlipNull | None = None
    probe_batch: ProbeBatch | None = None
    cpu_seconds: float | None = None
    cpu_seconds_null: float | None = None

    @property
    def iterated(self) -> bool:
        """Whether the seed rule (first mean spectral radius > 1) applies: only to an iterated
        (recurrent) map; a transformer's Jacobian is `kind: "residual"`."""
        kinds = {c.jacobian.kind for c in self.checkpoints or [] if c.jacobian}
        return "residual" not in kinds


def read_probes(run: str | Path) -> ProbesFile | None:
    """RUN/probes.json, typed; None when the run was not probed."""
    path = Path(run) / "probes.json"
    return ProbesFile.from_json(read_json(path)) if path.is_file() else None


def read_phases(run: str | Path) -> PhasesFile | None:
    """RUN/phases.json, typed; None when the run was not diagnosed."""
    path = Path(run) / "phases.json"
    return PhasesFile.from_json(read_json(path)) if path.is_file() else None


# ---- llc.json (probes/llc_study.py writes it; docs/llc.md defines every key) -----------------
LLC_FORMAT = "beliefgeo-llc/1"


@record
class LlcSettingsUsed(Record):
    """The SGLD settings every estimate of the file used (probes.llc_settings.LLCSettings), with
    where they came from (`source`: calibrated, given, or why the given ones were kept)."""

    lr: float | None = None
    n_beta: float | None = None
    localization: float | None = None
    chains: int | None = None
    draws: int | None = None
    batch_size: int | None = None
    windows: int | None = None
    burnin_frac: float | None = None
    settle_tol: float | None = None
    data_seed: int | None = None
    sampler_seed: int | None = None
    source: str | None = None
    device: str | None = None


@record
class LlcData(Record):
    windows: int | None = None
    length: int | None = None
    seed: int | None = None
    description: str | None = None


@record
class LlcLoss(Record):
    kind: str | None = None
    ceiling: float | None = None


@record
class LlcTrace(Record):
    """Per chain the mean batch loss over equal stretches of the draws, and the settling test."""

    draws: int | None = None
    bin_centres: list[float] | None = None
    loss: list[list[float]] | None = None
    llc_middle_quarter: float | None = None
    llc_last_quarter: float | None = None
    drift: float | None = None
    loss_max: float | None = None


@record
class CalibrationChoice(Record):
    lr: float | None = None
    localization: float | None = None
    n_beta: float | None = None


@record
class CalibrationCell(CalibrationChoice):
    llc_mean: float | None = None
    llc_sd: float | None = None
    init_loss: float | None = None
    drift: float | None = None
    loss_max: float | None = None
    flags: list[str] = dataclasses.field(default_factory=list)
    usable: bool | None = None
    picked: bool | None = None
    trace: LlcTrace | None = None  # the picked cell's only


@record
class Calibration(Record):
    rule: str | None = None
    cpu_s: float | None = None
    checkpoint_tokens: int | None = None
    chosen: CalibrationChoice | None = nullable()
    grid: list[CalibrationCell] | None = None

    @property
    def usable(self) -> int:
        return sum(bool(c.usable) for c in self.grid or [])


@record
class LlcCheckpoint(Record):
    tokens: int = 0
    llc_mean: float | None = None
    llc_sd: float | None = None
    llc_per_chain: list[float] | None = None
    init_loss: float | None = None
    flags: list[str] = dataclasses.field(default_factory=list)
    cpu_s: float | None = None
    wall_s: float | None = None
    trace: LlcTrace | None = None


@record
class StageStep(Record):
    from_tokens: int | None = None
    to_tokens: int | None = None
    change: float | None = None
    threshold: float | None = None
    trend: str | None = None  # "rise" | "fall" | "flat"


@record
class StageBoundary(Record):
    tokens: int | None = None
    kind: str | None = None  # "peak" | "trough" | "plateau start" | "plateau end"
    llc: float | None = None


@record
class Stages(Record):
    rule: str | None = None
    flat_frac: float | None = None
    used_tokens: list[int] | None = None
    steps: list[StageStep] | None = nullable("optional")
    boundaries: list[StageBoundary] | None = nullable("optional")
    structure: bool | None = None  # None: too few estimates that are LLCs


@record
class NearestBoundary(StageBoundary):
    log10_ratio: float | None = None  # log10(emergence tokens / boundary tokens); > 0: after

    @property
    def relation(self) -> str:
        """'at', or '1.6× after' / '3.0× before' (the emergence against this boundary)."""
        if self.log10_ratio is None:
            return "?"
        factor = 10 ** abs(self.log10_ratio)
        if factor < 1.05:
            return "at"
        return f"{factor:.1f}× {'after' if self.log10_ratio > 0 else 'before'}"


@record
class LlcEmergence(Record):
    """Where the final layer's probe R² first crosses halfway from the untrained network to the
    last checkpoint (tokens None when it never rose above the untrained network)."""

    hook: str | None = None
    untrained_r2: float | None = None
    final_r2: float | None = None
    halfway_r2: float | None = None
    tokens: float | None = None
    bracket: list[int] | None = None
    nearest_boundary: NearestBoundary | None = nullable()


@record
class LlcFigures(Record):
    timeline: str | None = None
    calibration: str | None = None


@record
class LlcFile(Record):
    """RUN/llc.json."""

    format: str | None = None
    devinterp: str | None = None
    settings: LlcSettingsUsed | None = None
    data: LlcData | None = None
    loss: LlcLoss | None = None
    calibration: Calibration | None = nullable("optional")
    checkpoints: list[LlcCheckpoint] | None = None
    stages: Stages | None = None
    emergence: LlcEmergence | None = nullable("optional")
    figures: LlcFigures | None = None
    cpu_s: float | None = None
    wall_s: float | None = None


def read_llc(path: str | Path) -> LlcFile | None:
    """RUN/llc.json (path a run folder) or an llc.json named by its path, typed; None when there is
    no such file; InvalidInput when the file is not a beliefgeo llc.json."""
    path = Path(path)
    path = path / "llc.json" if path.is_dir() else path
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != LLC_FORMAT:
        raise InvalidInput(f"{path} is not a beliefgeo llc.json (no format {LLC_FORMAT!r}); "
                           "write one with `beliefgeo llc RUN`")
    return LlcFile.from_json(data)


# ---- icl.json (probes/icl.py writes it; docs/run-files.md lists every key) -------------------
@record
class IclInputs(Record):
    mode: str | None = None  # "enumerated" | "sampled"
    sequences: int | None = None
    length: int | None = None
    seed: int | None = None


@record
class NeverLearns(Record):
    """A Mixture's best single component's filter: what a predictor that never learns in context
    gets."""

    component: int | None = None
    name: str | None = None
    loss_by_position: Curve | None = None
    mean_by_component: Curve | None = None


@record
class IclCheckpoint(Record):
    step: int | None = None
    tokens: int | None = None
    loss_by_position: list[float] | None = None


@record
class IclFile(Record):
    """RUN/icl.json: the model's loss by input position beside the exact curve (probes/icl.py)."""

    format: str | None = None
    process: str | None = None
    kind: str | None = None
    inputs: IclInputs | None = None
    positions: list[int] | None = None
    exact_loss_by_position: list[float] | None = None
    model_loss_by_position: list[float] | None = None
    model_ci95_low: list[float] | None = None  # sampled inputs only; null when enumerated
    model_ci95_high: list[float] | None = None
    excess_by_position: list[float] | None = None
    never_learns: NeverLearns | None = nullable("optional")  # Mixtures only
    close_nats: float | None = None
    close_from: int | None = None
    max_excess: float | None = None
    max_excess_position: int | None = None
    gain_closed: float | None = None
    tokens: int | None = None
    step: int | None = None
    checkpoints: list[IclCheckpoint] | None = nullable("optional")  # [] without exact eval
    figure: str | None = None
    sentence: str | None = None


def read_icl(run: str | Path) -> IclFile | None:
    """RUN/icl.json, typed; None when the curve was not computed."""
    path = Path(run) / "icl.json"
    return IclFile.from_json(read_json(path)) if path.is_file() else None
