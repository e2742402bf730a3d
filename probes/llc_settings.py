"""Settings of the LLC estimate and of its calibration, checked before torch is imported.

The CLI builds these from its flags and reports nonsense in one line within a second; probes.llc
(the estimator, heavy imports) takes them. Also the flag names an estimate can carry,
`read_llc_settings`, to measure another run exactly as an earlier `llc` run did, and `LLCPlan`:
how a study (reproduce, compare-phases, a sweep's `llc` key) measures the LLC after its other
analyses (`llc_options` and `llc_plan` read the flags and the spec key, one rule for both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from hmm.errors import InvalidInput
from probes.run_files import read_llc

FLAGS = (
    "not_at_minimum",
    "not_settled",
    "loss_nonfinite",
    "loss_above_uniform",
    "calibration_failed",
)
# flags that mean the estimate is not an LLC at all (the others only qualify it)
NOT_AN_LLC = ("not_at_minimum", "loss_nonfinite", "loss_above_uniform")


def not_an_llc(flags) -> bool:
    """Whether an estimate with these flags is no LLC at all (a flag of NOT_AN_LLC)."""
    return bool(set(flags) & set(NOT_AN_LLC))

# what each flag says about an estimate, for a reader (docs/llc.md, "Flags")
FLAG_MEANINGS = {
    "not_at_minimum": "λ̂ < 0: the chains found lower loss nearby, so the checkpoint is not a "
    "local minimum and the estimate is not an LLC",
    "not_settled": "the estimate from the last quarter of the draws differs from the middle "
    "quarter's by more than settle_tol × max(|λ̂|, 1): the trace still drifts (more draws or "
    "another step size)",
    "loss_nonfinite": "a chain's loss became NaN or infinite (dropped): the step size is too "
    "large here, and the estimate is not an LLC",
    "loss_above_uniform": "a chain predicted worse than uniform (mean loss over a stretch of its "
    "draws above ln V): it left the basin, and the estimate says more about the prior than the "
    "loss",
    "calibration_failed": "no calibration cell was usable, so the given settings were used "
    "unchecked",
}
CALIBRATION_RULE = (
    "a cell is usable when every chain stayed finite, its loss stayed at or below the ceiling "
    "(ln V), its trace settled (last quarter vs middle quarter within settle_tol) and its LLC is "
    "positive; among usable cells the smallest localization / n_beta wins (a direction of "
    "curvature h counts with weight n_beta h / (n_beta h + localization), the regular model's "
    "closed form: the least localized estimate), ties to the smaller step size (least "
    "discretisation bias); with no usable cell the given settings are kept and every estimate "
    "carries the calibration's failure"
)


@dataclass
class LLCSettings:
    """SGLD settings of one LLC estimate (docs/llc.md). lr: step size ε; n_beta: inverse
    temperature nβ; localization: γ; windows: size n of the fixed sampling set (a multiple of
    batch_size: the initial loss covers it exactly once); burnin_frac: leading share of the draws
    left out of the mean; settle_tol: the not_settled threshold (relative to max(|λ̂|, 1))."""

    lr: float = 1e-3
    n_beta: float = 15.0
    localization: float = 300.0
    chains: int = 4
    draws: int = 200
    batch_size: int = 64
    windows: int = 2048
    burnin_frac: float = 0.25
    settle_tol: float = 0.1
    data_seed: int = 0
    sampler_seed: int = 100

    def __post_init__(self) -> None:
        for name in ("lr", "n_beta", "localization", "burnin_frac", "settle_tol"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInput(f"LLC {name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise InvalidInput(f"LLC {name} must be finite, got {value}")
        if self.lr <= 0 or self.n_beta <= 0 or self.localization < 0:
            raise InvalidInput(
                f"LLC settings need lr > 0, n_beta > 0 and localization >= 0; got lr {self.lr}, "
                f"n_beta {self.n_beta}, localization {self.localization}"
            )
        if not 0 <= self.burnin_frac < 0.75 or self.settle_tol <= 0:
            raise InvalidInput(
                f"LLC burnin_frac must be in [0, 0.75) and settle_tol > 0; got "
                f"{self.burnin_frac}, {self.settle_tol}"
            )
        minimum = {"chains": 2, "draws": 8, "batch_size": 1, "windows": 1, "data_seed": 0,
                   "sampler_seed": 0}  # fmt: skip
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                why = " (the chain spread needs two)" if name == "chains" else ""
                raise InvalidInput(f"LLC {name} must be an integer >= {low}{why}, got {value!r}")
        if self.windows % self.batch_size:
            raise InvalidInput(
                f"LLC windows ({self.windows}) must be a multiple of batch_size "
                f"({self.batch_size}), so the initial loss covers every window once"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


@dataclass
class CalibrationGrid:
    """Step sizes × localizations × nβ tried on one model (devinterp's calibration advice: try a
    grid and keep settings whose loss traces settle), with `chains` chains per cell."""

    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    localizations: tuple[float, ...] = (100.0, 300.0, 1000.0)
    n_betas: tuple[float, ...] = (5.0, 15.0, 50.0)
    chains: int = 2

    def __post_init__(self) -> None:
        for name in ("lrs", "localizations", "n_betas"):
            values = tuple(getattr(self, name))
            if not values:
                raise InvalidInput(f"LLC calibration {name} must list at least one value")
            setattr(self, name, values)
        if isinstance(self.chains, bool) or not isinstance(self.chains, int) or self.chains < 2:
            raise InvalidInput(f"LLC calibration needs chains >= 2, got {self.chains!r}")
        # each value is checked the way LLCSettings checks it
        for lr in self.lrs:
            LLCSettings(lr=lr)
        for gamma in self.localizations:
            LLCSettings(localization=gamma)
        for n_beta in self.n_betas:
            LLCSettings(n_beta=n_beta)

    def cells(self) -> Iterable[tuple[float, float, float]]:
        """(lr, localization, n_beta) of every cell."""
        for n_beta in self.n_betas:
            for gamma in self.localizations:
                for lr in self.lrs:
                    yield lr, gamma, n_beta


def read_llc_settings(path: str | Path) -> LLCSettings:
    """The settings an earlier `llc` run used (its llc.json), to measure another run the same
    way (seeds, a constant learning rate, other architectures)."""
    llc = read_llc(path)
    if llc is None:
        raise InvalidInput(f"{path} does not exist; give the llc.json of an earlier "
                           "`beliefgeo llc`")
    stored = llc.settings.to_json() if llc.settings else {}
    return LLCSettings(**{k: stored[k] for k in LLCSettings.names() if k in stored})


def llc_options(
    lr: float | None = None,
    n_beta: float | None = None,
    localization: float | None = None,
    settings_from: str | Path | None = None,
    chains: int | None = None,
    draws: int | None = None,
    spell=lambda key: "--" + key.replace("_", "-"),
) -> tuple[LLCSettings, CalibrationGrid | None]:
    """(settings, calibration grid or None) from the llc options: calibrate unless lr, n_beta and
    localization are all given or settings_from names an earlier llc.json. `spell` writes an
    option's name in errors (a flag by default; a sweep spec's key otherwise)."""
    given = {k: v for k, v in (("lr", lr), ("n_beta", n_beta), ("localization", localization))
             if v is not None}  # fmt: skip
    names = ", ".join(map(spell, ("lr", "n_beta"))) + " and " + spell("localization")
    if settings_from is not None and given:
        raise InvalidInput(f"{spell('settings_from')} sets {names}; drop them")
    if 0 < len(given) < 3:
        raise InvalidInput(f"give {names} together (no calibration) or none of them "
                           "(calibrated on the final checkpoint)")  # fmt: skip
    counts = {k: v for k, v in (("chains", chains), ("draws", draws)) if v is not None}
    if settings_from is not None:
        return replace(read_llc_settings(settings_from), **counts), None
    return LLCSettings(**given, **counts), (None if given else CalibrationGrid())


@dataclass
class LLCPlan:
    """How a study measures the LLC after its other analyses (docs/llc.md, "In the studies"):
    `checkpoints` log-spaced checkpoints (None: all), with `settings`, calibrated on the final
    checkpoint over `grid` first unless grid is None. Studies of several runs calibrate once, on
    their first run, and measure the others `like` it."""

    checkpoints: int | None = 10
    settings: LLCSettings = field(default_factory=LLCSettings)
    grid: CalibrationGrid | None = field(default_factory=CalibrationGrid)

    def like(self, llc_json: str | Path) -> LLCPlan:
        """This plan with the settings of an earlier llc.json, not calibrated again."""
        return replace(self, settings=read_llc_settings(llc_json), grid=None)


PLAN_KEYS = ("checkpoints", "settings_from", "lr", "n_beta", "localization", "chains", "draws")


def llc_plan(value: object) -> LLCPlan | None:
    """The LLCPlan a sweep spec's `llc` key asks for: true (10 checkpoints, calibrated), false or
    null (none), or an object with keys of PLAN_KEYS (`checkpoints`: a count or "all")."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict) or set(value) - set(PLAN_KEYS):
        raise InvalidInput(f"llc must be true, false or an object with keys "
                           f"{', '.join(PLAN_KEYS)}; got {value!r}")  # fmt: skip
    options = {k: v for k, v in value.items() if k != "checkpoints"}
    if not isinstance(options.get("settings_from", ""), str):
        raise InvalidInput(f"llc.settings_from must be the path of an llc.json, got "
                           f"{options['settings_from']!r}")  # fmt: skip
    settings, grid = llc_options(**options, spell=lambda key: f"llc.{key}")
    return LLCPlan(checkpoints=checkpoint_count(value.get("checkpoints", 10), "llc.checkpoints"),
                   settings=settings, grid=grid)  # fmt: skip


def checkpoint_count(value: object, name: str = "--checkpoints") -> int | None:
    """A count of checkpoints (an integer >= 1) or "all" (None)."""
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1 or 'all', got {value!r}")
    return value
