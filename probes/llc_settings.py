"""Settings of the LLC estimate and of its calibration, checked before torch is imported.

The CLI builds these from its flags and reports nonsense in one line within a second; probes.llc
(the estimator, heavy imports) takes them. Also the flag names an estimate can carry and
`read_llc_settings`, to measure another run exactly as an earlier `llc` run did.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from hmm.errors import InvalidInput
from hmm.files import read_json

LLC_FORMAT = "beliefgeo-llc/1"
FLAGS = (
    "not_at_minimum",
    "not_settled",
    "loss_nonfinite",
    "loss_above_uniform",
    "calibration_failed",
)
# flags that mean the estimate is not an LLC at all (the others only qualify it)
NOT_AN_LLC = ("not_at_minimum", "loss_nonfinite", "loss_above_uniform")
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
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != LLC_FORMAT:
        raise InvalidInput(f"{path} is not a beliefgeo llc.json (no format {LLC_FORMAT!r})")
    stored = data.get("settings", {})
    return LLCSettings(**{k: stored[k] for k in LLCSettings.names() if k in stored})
