"""The studies the CLI names: `reproduce mess3|rrxor`, the paper's two results (Shai et al. 2024),
and `probe-hmm`, the same pipeline on a user's process with the context sized from the process.

Each is a `Study` run by experiments.pipeline.run_study; several seeds run as a sweep
(experiments.sweep.run_seeds), so this module sits above both.
"""

from __future__ import annotations

from pathlib import Path

from experiments.pipeline import Study, run_study, with_settings
from hmm import HMM, load_process
from hmm.errors import InvalidInput

STUDIES = {
    "mess3": Study(
        process="mess3",
        model={"n_ctx": 10},
        train={"exact_eval": "every"},
        tokens=10_000_000,
        why="The paper's Mess3 model (4 layers, d_model 64, 1 head, d_mlp 256, context 10, ReLU, "
        "LayerNorm) with the project's default recipe (AdamW 3e-3, warm-up, cosine): it reaches "
        "the Bayes-optimal loss within 0.001 nats in 10 M tokens on a 2-core CPU. The exact loss "
        "over every input is evaluated at every checkpoint (the excess-loss curve), and every "
        "checkpoint is probed on all 3^10 input sequences.",
    ),
    "rrxor": Study(
        process="rrxor",
        model={"n_ctx": 15},
        train={"exact_eval": "every"},
        tokens=10_000_000,
        why="RRXOR emits two random bits and then their XOR, so beliefs live on a 5-state simplex "
        "with 36 distinct points. Context 15 (five full periods) keeps every input sequence "
        "enumerable (2^15) so the probe is exact; same 4-layer model and recipe as Mess3.",
    ),
}


def reproduce(
    study: str,
    out: Path | None = None,
    tokens: int | None = None,
    overrides: dict | None = None,
    seeds: int = 1,
) -> Path:
    """`beliefgeo reproduce mess3|rrxor`: run a paper study and print its summary.

    `overrides`: training options by flag name (see `with_settings`), e.g. from
    `add_training_options`. seeds > 1 trains seeds 0..seeds-1 one after another, each into
    OUT/seed=<s>, and writes OUT/summary.csv, summary.json and report.html with intervals.
    """
    plan = with_settings(STUDIES[study], {**(overrides or {}), "tokens": tokens})
    out = Path(out or Path("runs") / study)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInput(f"--seeds must be a whole number >= 1, got {seeds!r}")
    if seeds == 1:
        return run_study(plan, out, None, title=f"reproduce {study}")
    from experiments.sweep import run_seeds  # Ray, only for several seeds

    first = plan.train.get("seed", 0)
    return run_seeds(plan, out, list(range(first, first + seeds)), title=f"reproduce {study}")


def probe_hmm(
    spec: Path, out: Path | None = None, tokens: int | None = None, overrides: dict | None = None
) -> Path:
    """`beliefgeo probe-hmm SPEC.json`: the full pipeline for a user's process file."""
    spec = Path(spec)
    if not spec.is_file():
        raise InvalidInput(f"{spec} is not a file; give the path of a process spec .json")
    process = load_process(str(spec))
    n_ctx, why = context_length(process)
    plan = Study(
        process=str(spec),
        model={"n_ctx": n_ctx},
        tokens=5_000_000,
        why=f"{why} Model: the 4-layer, d_model 64 transformer with the default recipe.",
    )
    plan = with_settings(plan, {**(overrides or {}), "tokens": tokens})
    return run_study(
        plan, out or Path("runs") / f"probe-{process.name}", None, title=f"probe-hmm {spec}"
    )


def context_length(process: HMM, tolerance: float = 0.01) -> tuple[int, str]:
    """The context a model needs to synchronise to `process`, and why.

    Shortest length n in 8..16 whose last position has recovered all but `tolerance` of the
    possible gain from history: optimal_loss[n-1] - h <= tolerance * (optimal_loss[0] - h), h the
    entropy rate; then capped so every input sequence stays enumerable (exact probes) when it can.
    """
    from hmm.msp import enumerable

    h = process.entropy_rate()
    losses = process.optimal_loss(16)
    gain = max(losses[0] - h, 1e-12)
    n_ctx = next((n for n in range(8, 17) if losses[n - 1] - h <= tolerance * gain), 16)
    longest = max((n for n in range(2, 17) if enumerable(process, n)), default=0)
    if longest >= 8:
        n_ctx = min(n_ctx, longest)
    inputs = (
        f"all {process.n_symbols}^{n_ctx} input sequences with exact probabilities"
        if enumerable(process, n_ctx)
        else "a large seeded sample of sequences"
    )
    why = (
        f"Context {n_ctx}: at position {n_ctx - 1} the optimal loss is {losses[n_ctx - 1]:.4f} "
        f"nats against an entropy rate of {h:.4f} (rule: shortest context in 8..16 that recovers "
        f"{1 - tolerance:.0%} of what history can gain over position 0, capped so the inputs stay "
        f"enumerable); probes use {inputs}."
    )
    return n_ctx, why
