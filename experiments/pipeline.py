"""One study end to end: its plan (`Study`: process, model, recipe, budget, and the LLC when asked
for; `with_settings` for flags and sweep keys) and its run, train → probe every checkpoint → phase
diagnostics → fractal → in-context-learning curve (probes/icl.py) → (local learning coefficient)
→ report (`run_study`). Re-running a study into the same folder resumes training (a finished run
is not retrained) and regenerates the analyses and the report. The paper's studies and
`probe-hmm` are in experiments/studies.py; sweeps of studies in experiments/sweep.py (both import
this).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from hmm import HMM, load_process
from hmm.errors import InvalidInput
from hmm.files import write_atomic
from probes.llc_settings import LLCPlan, llc_plan


@dataclass
class Study:
    """What a study trains: the process, the model shape, the recipe and the budget.

    `arch` None takes the recipe file's arch, else transformer; `model` holds model-config fields
    (act_fn, n_ctx, d_model, hidden, init_scale, ...) over the recipe file's; `train` holds
    TrainConfig fields over the recipe (seed, lr, batch_size, train_sequences, ...). `llc`: measure
    the local learning coefficient before the report (None: not, the default).
    """

    process: str
    arch: str | None = None
    model: dict = field(default_factory=dict)
    recipe: str = "default"
    train: dict = field(default_factory=dict)  # TrainConfig fields overriding the recipe
    probe_sequences: int | None = None  # a seeded subset of the enumerated inputs; None: all
    tokens: int = 10_000_000
    why: str = ""
    llc: LLCPlan | None = None


# training options by their flag names with `-` written `_` (the `train` flags, sweep spec keys)
MODEL_SIZE_KEYS = ("act_fn", "d_model", "n_layers", "n_heads", "d_head", "d_mlp", "hidden",
                   "layers", "n_ctx", "init_scale", "normalization")  # fmt: skip
STUDY_KEYS = ("process", "arch", "config", "tokens", "probe_sequences", "llc")


def setting_keys() -> list[str]:
    """Every key `with_settings` accepts: study keys, model fields, TrainConfig fields."""
    from models.recipes import TRAIN_FIELDS

    return sorted(set(STUDY_KEYS) | set(MODEL_SIZE_KEYS) | (TRAIN_FIELDS - {"recipe", "extra"}))


def with_settings(plan: Study, settings: dict) -> Study:
    """A copy of `plan` with training options applied (None values are ignored).

    Keys are the `train` flags with `-` written `_`: process, arch, config (the recipe), tokens,
    probe_sequences, llc (probes.llc_settings.llc_plan: true, or an object of LLC options), the
    model sizes (act_fn, d_model, n_layers, n_heads, d_head, d_mlp, hidden, layers = n_layers,
    n_ctx, init_scale) and any TrainConfig field (seed, lr, batch_size, weight_decay,
    train_sequences, exact_eval, device, ...). Unknown keys -> InvalidInput.
    """
    from models.recipes import TRAIN_FIELDS

    model, train = dict(plan.model), dict(plan.train)
    changes: dict = {}
    for key, value in settings.items():
        if value is None:
            continue
        if key == "config":
            changes["recipe"] = str(value)
        elif key == "llc":
            changes["llc"] = value if isinstance(value, LLCPlan) else llc_plan(value)
        elif key in STUDY_KEYS:
            changes[key] = value
        elif key in MODEL_SIZE_KEYS:
            model["n_layers" if key == "layers" else key] = value
        elif key in TRAIN_FIELDS - {"recipe", "extra", "tokens"}:
            train[key] = value
        else:
            raise InvalidInput(f"unknown setting {key!r}; known: {', '.join(setting_keys())}")
    return replace(plan, model=model, train=train, **changes)


def resolve_study(plan: Study, tokens: int | None = None):
    """(process, model config, TrainConfig) of a study, validated; nothing is written.

    The recipe file's arch, act_fn and model fields sit under the study's own.
    """
    from models.architectures import DEFAULT_ACT_FN, make_model_config
    from models.recipes import resolve_recipe

    process = load_process(plan.process)
    train_config, recipe_model = resolve_recipe(
        plan.recipe, **{**plan.train, "tokens": tokens or plan.tokens}
    )
    arch = plan.arch or recipe_model.get("arch", "transformer")
    if arch not in DEFAULT_ACT_FN:
        raise InvalidInput(f"unknown arch {arch!r}; choose one of {', '.join(DEFAULT_ACT_FN)}")
    model = {**recipe_model.get("model", {}), **plan.model}
    model.setdefault("act_fn", recipe_model.get("act_fn") or DEFAULT_ACT_FN[arch])
    model_config = make_model_config(
        arch, **{**model, "d_vocab": process.n_symbols, "seed": train_config.seed}
    )
    return process, model_config, train_config


def run_study(
    plan: Study,
    out: Path,
    tokens: int | None,
    title: str,
    device: str | None = None,
    fractal_cache: Path | None = None,
) -> Path:
    """Train (or resume) into `out`, then probe, phases, ground-truth fractal, the LLC when the
    plan asks for it, and report.

    device: the training device (None: the trainer's choice). fractal_cache: a folder where the
    process's ground-truth fractal is rendered once and copied from (sweeps share it).
    """
    from experiments.report import write_report
    from models.training import train
    from probes.belief_study import probe_run
    from probes.phase_study import phases_run

    out = Path(out)
    process, model_config, train_config = resolve_study(plan, tokens)
    train_config.extra = {"study": title, "why": plan.why}
    resume = (out / "config.json").is_file()
    started = time.perf_counter()
    device_arg = {} if device is None else {"device": device}
    steps = [
        (
            "training",
            lambda: train(process, model_config, train_config, out, resume=resume, **device_arg),
        ),
        ("probing every checkpoint", lambda: probe_run(out, max_sequences=plan.probe_sequences)),
        ("phase diagnostics", lambda: phases_run(out)),
        ("ground-truth fractal", lambda: _fractal(process, out / "fractal", fractal_cache)),
        ("in-context learning curve", lambda: _icl(out)),
        ("report", lambda: write_report(out)),
    ]
    if plan.llc is not None:  # after probes.json (emergence) and phases.json (the timeline)
        steps.insert(-1, ("local learning coefficient", lambda: _llc(out, plan.llc)))
    for label, step in steps:
        print(f"[{title}] {label} ...", file=sys.stderr, flush=True)
        step()
        if label == "training":
            check_converged(out)
    print(summary(out, time.perf_counter() - started))
    return out


def _icl(run: Path) -> None:
    from probes.icl import icl_run

    icl_run(run)


def _llc(run: Path, plan: LLCPlan) -> None:
    from probes.llc_study import llc_run

    llc_run(run, checkpoints=plan.checkpoints, settings=plan.settings, calibrate_grid=plan.grid)


def check_converged(run: Path) -> None:
    """Refuse to analyse a run whose training loss became NaN or infinite."""
    import math

    from models.run_files import read_metrics

    bad = next(
        (
            m
            for m in read_metrics(run)
            if isinstance(m.get("loss"), float) and not math.isfinite(m["loss"])
        ),
        None,
    )
    if bad is not None:
        raise InvalidInput(
            f"training diverged: loss {bad['loss']} at step {bad['step']} of {run}; lower the "
            "learning rate or init scale"
        )


def _fractal(process: HMM, out: Path, cache: Path | None) -> None:
    """Render the process's fractal into `out`, or copy it from `cache` (rendered there once)."""
    from experiments.fractal import render_fractal

    if cache is None:
        render_fractal(process.to_spec(), out=out)
        return
    files = ("fractal.json", "fractal.png")
    if not all((cache / name).is_file() for name in files):
        render_fractal(process.to_spec(), out=cache)
    for name in files:
        write_atomic(out / name, (cache / name).read_bytes())


def summary(run: Path, seconds: float | None = None) -> str:
    """What a researcher reads first: the title, the report's three verdict sentences, and last
    the closing line (what was written, the headline numbers)."""
    from experiments.closing import report_line
    from experiments.summary import summarize_run
    from experiments.verdict import verdict

    numbers = summarize_run(run)
    lines = [numbers.title + (f" — {seconds / 60:.1f} min" if seconds else "")]
    lines += verdict(numbers)
    lines.append(report_line(run / "report.html"))
    return "\n".join(lines)
