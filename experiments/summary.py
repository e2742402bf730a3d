"""One summary of a run, computed once from its typed files (`summarize_run`) and only formatted
elsewhere: the closing lines (closing.py), the report (report.py), a sweep's summary rows and
curves (sweep_summary.py) and compare-phases (compare.py) all read a `RunSummary`.

Rules that were once written in several places live here, once:
* the excess loss: exact (over every input) at the newest checkpoint that has it, else the batch
  estimate, the mean of the last `BATCH_WINDOW` logged batches; the curve is exact only when the
  exact loss was evaluated at two or more checkpoints, and says which it is (`curve_kind`);
* the final layer (models.architectures.final_layer_hook) and its R² against its strongest
  null, the model's own next-token probe among them, with what it adds beyond the next token
  (probes.json `headline`, probes.belief_evidence);
* the seed rule (first mean spectral radius > 1) only for iterated maps (`PhasesFile.iterated`);
* the emergence window: where the final-layer R² climbed from 10 % to 90 % of its rise;
* which LLC estimates are LLCs (no flag of probes.llc_settings.NOT_AN_LLC) and where the geometry
  emerges against the LLC's stage boundaries (`LlcSummary`, from llc.json when the run has one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from experiments.fractal import FractalFile, read_fractal
from hmm.errors import InvalidInput
from models.architectures import CONCAT, final_layer_hook
from models.run_files import RunConfig, list_checkpoints, read_config, read_metrics_lines
from probes.llc_settings import not_an_llc
from probes.phase_study import MILESTONE_KEYS
from probes.run_files import (
    Headline,
    IclFile,
    LlcCheckpoint,
    LlcFile,
    NearestBoundary,
    PhaseCheckpoint,
    PhasesFile,
    ProbesFile,
    StageBoundary,
    read_icl,
    read_llc,
    read_phases,
    read_probes,
)

BATCH_WINDOW = 20
R2_REACHED = 0.9
EMERGENCE = (0.1, 0.9)  # fractions of the R² rise that bound the emergence window

Curve = list[tuple[int, float]]


@dataclass
class LossSummary:
    optimal: float | None = None  # Bayes-optimal loss over the trained positions (nats/token)
    exact_excess: float | None = None  # at exact_tokens, over every input sequence
    exact_loss: float | None = None
    exact_tokens: int | None = None
    batch_excess: float | None = None  # mean of the last batch_window logged batches
    batch_window: int = 0
    curve: Curve = field(default_factory=list)
    curve_kind: str = "batch"  # "exact" (every checkpoint) or "batch"

    @property
    def excess(self) -> float | None:
        """The excess loss a reader should quote: exact when evaluated, else the batch estimate."""
        return self.exact_excess if self.exact_excess is not None else self.batch_excess


@dataclass
class ProbeSummary:
    tokens: int  # the newest probed checkpoint
    hook: str  # the final layer
    r2: float | None
    r2_concat: float | None
    r2_by_hook: dict[str, float | None]
    r2_shuffle_max: float | None
    curve: Curve  # final-layer held-out R² by checkpoint
    best_baseline: str | None
    baseline_r2: float | None
    untrained_r2: float | None
    next_token_r2: float | None  # the probe from the model's own next-token distribution
    r2_beyond_prediction: float | None = None  # the final layer's, and its untrained null's
    beyond_untrained: float | None = None
    headline: Headline | None = None  # probes.json's (case, tables, warnings)
    # the final layer's held-out R² per probe target (mixtures, products; empty otherwise)
    targets: dict[str, float | None] = field(default_factory=dict)

    @property
    def case(self) -> str | None:
        """'implied_by_loss' or 'beyond_next_token' (probes.belief_evidence); None in older
        files."""
        return self.headline.case if self.headline else None

    @property
    def warnings(self) -> list[str]:
        """The readability warnings (few fit rows per feature, held-out far below in-sample)."""
        return list(self.headline.warnings or []) if self.headline else []

    @property
    def tokens_to_reached(self) -> int | None:
        """Tokens of the first checkpoint whose final-layer R² >= R2_REACHED."""
        return next((t for t, v in self.curve if v >= R2_REACHED), None)

    @property
    def margin(self) -> float | None:
        return None if None in (self.r2, self.baseline_r2) else self.r2 - self.baseline_r2


@dataclass
class PhaseSummary:
    n_checkpoints: int
    iterated: bool  # the seed rule applies (recurrent maps only)
    first_radius_above_1: int | None
    checkpoints: list[PhaseCheckpoint]
    file: PhasesFile

    @property
    def final(self) -> PhaseCheckpoint:
        return self.checkpoints[-1]

    def unit_mean(self, key: str, entry: PhaseCheckpoint | None = None) -> float | None:
        """Mean over nonlinear layers of a unit number (gain_mean, saturated_frac, ...)."""
        entry = entry or self.final
        values = [getattr(u, key) for u in entry.units.values() if getattr(u, key) is not None]
        return float(np.mean(values)) if values else None

    def unit_level(self, entry: PhaseCheckpoint | None = None) -> float | None:
        """Mean over nonlinear layers of the number each layer's phase is read from: the gain, or
        a ReLU-like layer's active fraction."""
        entry = entry or self.final
        values = [u.level for u in entry.units.values() if u.level is not None]
        return float(np.mean(values)) if values else None

    @property
    def unit_measure(self) -> str:
        measures = {u.measure or "gain" for u in self.final.units.values()}
        return "active fraction" if measures == {"active fraction"} else "gain"

    def block_gain(self, entry: PhaseCheckpoint | None = None) -> float | None:
        """A transformer's mean scale-normalised block-update gain (mean over blocks)."""
        entry = entry or self.final
        blocks = (entry.jacobian.blocks or []) if entry.jacobian else []
        values = [b.normalised_spectral_norm_mean for b in blocks
                  if b.normalised_spectral_norm_mean is not None]  # fmt: skip
        return float(np.mean(values)) if values else None

    def radius(self, entry: PhaseCheckpoint | None = None) -> float | None:
        entry = entry or self.final
        return entry.jacobian.spectral_radius_mean if entry.jacobian else None

    def milestones(self) -> dict[str, float | None]:
        """The phase milestones sweeps summarise (probes.phase_study.phase_milestones)."""
        from probes.phase_study import phase_milestones

        return phase_milestones(self.file.to_json())  # phases.json as read

    def at(self, tokens: int) -> PhaseCheckpoint:
        """The diagnosed checkpoint nearest to `tokens`."""
        return min(self.checkpoints, key=lambda c: abs(c.tokens - tokens))


@dataclass
class LlcSummary:
    """A run's llc.json (probes/llc_study.py), read once for the report, the verdict, the closing
    line and the sweep headline."""

    file: LlcFile

    @property
    def checkpoints(self) -> list[LlcCheckpoint]:
        return self.file.checkpoints or []

    @property
    def usable(self) -> list[LlcCheckpoint]:
        """The estimates that are LLCs: finite, and no flag of NOT_AN_LLC."""
        return [e for e in self.checkpoints if _finite(e.llc_mean)
                and not not_an_llc(e.flags)]  # fmt: skip

    @property
    def final_llc(self) -> float | None:
        """λ̂ at the last measured checkpoint when that estimate is an LLC."""
        last = self.checkpoints[-1] if self.checkpoints else None
        return last.llc_mean if any(e is last for e in self.usable) else None

    @property
    def boundaries(self) -> list[StageBoundary]:
        stages = self.file.stages
        return sorted((stages.boundaries or []) if stages else [], key=lambda b: b.tokens or 0)

    @property
    def structure(self) -> bool | None:
        """True: stage boundaries found; False: none ("no stage structure"); None: too few
        estimates that are LLCs to read stages."""
        return self.file.stages.structure if self.file.stages else None

    @property
    def emergence_tokens(self) -> float | None:
        """Where the final layer's R² first crosses halfway; None when llc.json has no crossing or
        the R² is above the halfway line from the first probed checkpoint on (no emergence seen)."""
        e = self.file.emergence
        if e is None or self.above_halfway_from_start:
            return None
        return e.tokens

    @property
    def above_halfway_from_start(self) -> bool:
        """The first probed checkpoint is already above halfway (llc.json's bracket is one
        checkpoint twice): the crossing happened before anything was measured."""
        bracket = self.file.emergence.bracket if self.file.emergence else None
        return bool(bracket) and bracket[0] == bracket[-1]

    def settings_text(self, source: bool = True) -> str:
        """'ε 0.001, γ 300, nβ 15, calibrated' (without the source: 'ε 0.001, γ 300, nβ 15')."""
        s = self.file.settings
        if s is None:
            return "settings unknown"
        text = f"ε {s.lr:g}, γ {s.localization:g}, nβ {s.n_beta:g}"
        return text + (f", {s.source or 'source unknown'}" if source else "")

    def flagged(self) -> dict[str, list[int]]:
        """Flag -> the tokens of the checkpoints that carry it, in the file's order."""
        out: dict[str, list[int]] = {}
        for e in self.checkpoints:
            for flag in e.flags:
                out.setdefault(flag, []).append(e.tokens)
        return out

    def emergence_place(self) -> str | None:
        """Where the geometry emerges against the stage boundaries, in words; None when llc.json
        has no emergence tokens."""
        tokens = self.emergence_tokens
        if tokens is None:
            return None
        bounds = [b for b in self.boundaries if b.tokens]
        if not bounds:
            return "with no stage boundary to set it against"
        near = min(bounds, key=lambda b: abs(np.log10(tokens / b.tokens)))
        relation = _relation(tokens, near)
        if relation == "at":
            return f"at the {near.kind} at {near.tokens:,} tokens (within 5 %)"
        before = [b for b in bounds if b.tokens <= tokens]
        after = [b for b in bounds if b.tokens > tokens]
        if not before:
            return (f"before the first stage boundary, the {after[0].kind} at "
                    f"{after[0].tokens:,} tokens ({_relation(tokens, after[0])} it)")
        if not after:
            return (f"after the last stage boundary, the {before[-1].kind} at "
                    f"{before[-1].tokens:,} tokens ({_relation(tokens, before[-1])} it)")
        return (f"between the {before[-1].kind} at {before[-1].tokens:,} and the "
                f"{after[0].kind} at {after[0].tokens:,} tokens ({relation} the {near.kind})")


def _relation(tokens: float, boundary: StageBoundary) -> str:
    """'at', '1.6× after' or '3.0× before' (NearestBoundary.relation)."""
    ratio = float(np.log10(tokens / boundary.tokens))
    return NearestBoundary(tokens=boundary.tokens, log10_ratio=ratio).relation


@dataclass
class RunSummary:
    run: Path
    config: RunConfig
    tokens_trained: int
    n_checkpoints: int
    loss: LossSummary
    probes: ProbeSummary | None
    phases: PhaseSummary | None
    fractal: FractalFile | None
    probes_file: ProbesFile | None = None
    llc: LlcSummary | None = None
    icl: IclFile | None = None  # the loss by position beside the exact curve (probes/icl.py)

    @property
    def process(self) -> str:
        return self.config.process.name

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def act_fn(self) -> str | None:  # None for an LSTM or GRU
        return self.config.model.act_fn

    @property
    def model_shape(self) -> str:
        from models.families import describe_model

        return describe_model(self.arch, self.config.model.to_json())

    @property
    def title(self) -> str:
        t = self.config.train
        return (f"{self.process}: {self.model_shape}, {self.config.data.total_tokens:,} tokens "
                f"({t.optimizer} lr {t.lr:g}, batch {t.batch_size}, {t.schedule})")

    def emergence(self) -> tuple[int, int, float, float] | None:
        """(tokens at 10 % of the final-layer R² rise, at 90 %, R² there): the window after which
        R² stays above 10 % of its rise, until it first reaches 90 %; None without a rise."""
        if not self.probes or len(self.probes.curve) < 3:
            return None
        tokens, r2 = zip(*self.probes.curve, strict=True)
        start, end = r2[0], max(r2)
        if end - start < 0.02:
            return None
        low, high = (start + f * (end - start) for f in EMERGENCE)
        above = [i for i in range(len(r2)) if all(v >= low for v in r2[i:])]
        first = above[0] if above else 0
        last = next(i for i, v in enumerate(r2) if v >= high)
        first = min(first, last)
        return tokens[first], tokens[last], r2[first], r2[last]

    def headline(self) -> dict:
        """The sweep's headline numbers of this run (experiments/sweep_summary.py lists them)."""
        p, ph = self.probes, self.phases
        numbers = {
            "final_exact_excess_loss": self.loss.exact_excess,
            "final_r2_heldout": p.r2 if p else None,
            "final_r2_concat": p.r2_concat if p else None,
            "final_next_token_r2": p.next_token_r2 if p else None,
            "final_r2_beyond_prediction": p.r2_beyond_prediction if p else None,
            "tokens_to_r2_0.9": p.tokens_to_reached if p else None,
            "first_spectral_radius_above_1": ph.first_radius_above_1 if ph else None,
            # a transformer's radius is never read against 1: recurrent networks only
            "final_spectral_radius_mean": ph.radius() if ph and ph.iterated else None,
            "final_saturated_frac": ph.unit_mean("saturated_frac") if ph else None,
            "final_linear_frac": ph.unit_mean("linear_frac") if ph else None,
            "final_sharpness": ph.final.sharpness if ph else None,
            "final_sign_flip_frac": _last_sign_flips(ph, "sign_flip_frac") if ph else None,
            "final_sign_flip_null": _last_sign_flips(ph, "sign_flip_null") if ph else None,
        }
        numbers["final_llc"] = self.llc.final_llc if self.llc else None
        numbers.update(self._icl_numbers())
        numbers.update(self._baseline_numbers())
        numbers.update(ph.milestones() if ph else dict.fromkeys(MILESTONE_KEYS))
        if p:
            numbers.update({f"r2_heldout:{h}": v for h, v in p.r2_by_hook.items() if h != CONCAT})
        return numbers

    def _icl_numbers(self) -> dict:
        """icl.json's numbers: where the model comes within close_nats of the exact curve, its
        excess at the last position, the share of a mixture's never-learns gap it closes."""
        icl = self.icl
        excess = icl.excess_by_position if icl else None
        return {"icl_close_from": icl.close_from if icl else None,
                "icl_last_excess": excess[-1] if excess else None,
                "icl_gain_closed": icl.gain_closed if icl else None}

    def _baseline_numbers(self) -> dict:
        """The final layer's nulls beside its R²: the untrained network, the best k-gram
        regression (the paper's order-3 Markov baseline among them), the best k-token oracle
        table (the strongest network-free null), and the R² to a composite's
        own targets (probes.json `targets.<name>`, per hook, when the probes wrote them)."""
        p, f = self.probes, self.probes_file
        b = f.baselines if f else None
        kgram = [v for v in (b.kgram.values() if b else []) if _finite(v)]
        oracle = [v for v in (b.kgram_oracle.values() if b else []) if _finite(v)]
        out = {"final_untrained_r2": p.untrained_r2 if p else None,
               "best_kgram_r2": max(kgram) if kgram else None,
               "best_kgram_oracle_r2": max(oracle) if oracle else None}
        layers = f.checkpoints[-1].layers if f and f.checkpoints else {}
        for name in ("factors", "component"):
            out[f"final_r2_{name}"] = _target_r2(layers.get(p.hook) if p else None, name)
        for hook, scores in layers.items():
            for name in _targets(scores):
                if hook != CONCAT:
                    out[f"r2_target:{name}:{hook}"] = _target_r2(scores, name)
        return out

    def curves(self) -> dict[str, Curve]:
        """Curves over training tokens, by name: excess_loss, r2_final_layer,
        spectral_radius_mean, saturated_frac."""
        out = {"excess_loss": self.loss.curve}
        if self.probes:
            out["r2_final_layer"] = self.probes.curve
        if self.phases:
            ph = self.phases
            if ph.iterated:
                out["spectral_radius_mean"] = [(c.tokens, ph.radius(c)) for c in ph.checkpoints]
            out["saturated_frac"] = [(c.tokens, ph.unit_mean("saturated_frac", c))
                                     for c in ph.checkpoints]  # fmt: skip
        return {k: [(t, v) for t, v in c if _finite(v)] for k, c in out.items()}


def summarize_run(run: str | Path) -> RunSummary:
    """The RunSummary of a run folder (config.json required; the rest when present)."""
    run = Path(run)
    config = read_config(run)
    metrics = read_metrics_lines(run)
    try:
        n_checkpoints = len(list_checkpoints(run))
    except InvalidInput:  # no checkpoint yet
        n_checkpoints = 0
    probes = read_probes(run)
    phases = read_phases(run)
    llc = read_llc(run)
    return RunSummary(
        run=run, config=config, tokens_trained=metrics[-1].tokens if metrics else 0,
        n_checkpoints=n_checkpoints, loss=_loss(config, metrics), probes=_probes(probes),
        phases=_phases(phases), fractal=read_fractal(run / "fractal"), probes_file=probes,
        llc=LlcSummary(llc) if llc else None, icl=read_icl(run),
    )


def _loss(config: RunConfig, metrics: list) -> LossSummary:
    exact = [m for m in metrics if _finite(m.exact_excess_loss)]
    batches = [m for m in metrics if _finite(m.excess_loss)]
    tail = [m.excess_loss for m in batches[-BATCH_WINDOW:]]
    out = LossSummary(optimal=config.optimal_loss, batch_window=len(tail),
                      batch_excess=float(np.mean(tail)) if tail else None)  # fmt: skip
    if exact:
        out.exact_excess, out.exact_loss = exact[-1].exact_excess_loss, exact[-1].exact_loss
        out.exact_tokens = exact[-1].tokens
    if len(exact) >= 2:
        out.curve, out.curve_kind = [(m.tokens, m.exact_excess_loss) for m in exact], "exact"
    else:
        out.curve = [(m.tokens, m.excess_loss) for m in batches]
    return out


def _probes(probes: ProbesFile | None) -> ProbeSummary | None:
    if not probes or not probes.checkpoints:
        return None
    final = probes.checkpoints[-1]
    hooks = [h for h in final.layers if h != CONCAT]
    if not hooks:
        return None
    head = final_layer_hook(hooks)
    shuffles = [v.r2_shuffle for v in final.layers.values() if v.r2_shuffle is not None]
    untrained = (probes.baselines.random_init.get(head) if probes.baselines else None)
    headline = probes.headline
    curve = [(c.tokens, c.layers[head].r2_heldout) for c in probes.checkpoints
             if head in c.layers and _finite(c.layers[head].r2_heldout)]  # fmt: skip
    return ProbeSummary(
        tokens=final.tokens, hook=head, r2=final.layers[head].r2_heldout,
        r2_concat=final.layers[CONCAT].r2_heldout if CONCAT in final.layers else None,
        r2_by_hook={h: v.r2_heldout for h, v in final.layers.items()},
        r2_shuffle_max=max(shuffles) if shuffles else None, curve=curve,
        best_baseline=headline.best_baseline if headline else None,
        baseline_r2=headline.baseline_r2 if headline else None,
        untrained_r2=untrained.r2_mean if untrained else None,
        next_token_r2=final.next_token.r2_heldout if final.next_token else None,
        r2_beyond_prediction=final.layers[head].r2_beyond_prediction,
        beyond_untrained=untrained.r2_beyond_prediction if untrained else None,
        headline=headline,
        targets={name: t.r2_heldout for name, t in final.layers[head].targets.items()},
    )


def _phases(phases: PhasesFile | None) -> PhaseSummary | None:
    if not phases or not phases.checkpoints:
        return None
    return PhaseSummary(
        n_checkpoints=len(phases.checkpoints), iterated=phases.iterated,
        first_radius_above_1=phases.first_spectral_radius_above_1,
        checkpoints=phases.checkpoints, file=phases,
    )


def _last_sign_flips(phases: PhaseSummary, key: str) -> float | None:
    """`key` (sign_flip_frac or its null) at the newest checkpoint that has the fraction."""
    flips = [c for c in phases.checkpoints if c.sign_flip_frac is not None]
    return getattr(flips[-1], key) if flips else None


def _targets(scores) -> dict:
    """A layer's probes.json `targets` (name -> {r2_heldout, ci95}), {} when absent; read from the
    record's field when declared, else from its undeclared keys."""
    found = getattr(scores, "targets", None) or (scores.undeclared.get("targets") if scores
                                                 else None)
    return found if isinstance(found, dict) else {}


def _target_r2(scores, name: str) -> float | None:
    entry = _targets(scores).get(name) if scores is not None else None
    if entry is None:
        return None
    value = entry.get("r2_heldout") if isinstance(entry, dict) else getattr(entry, "r2_heldout",
                                                                               None)
    return value if _finite(value) else None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and bool(
        np.isfinite(value)
    )
