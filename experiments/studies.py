"""The studies the CLI names: `reproduce mess3|rrxor|rrxor-small`, the paper's two results (Shai et
al. 2024; RRXOR also with the Mess3-sized model), and `probe-hmm`, the same pipeline on a user's
process with the context sized from the process and the probes' rows-per-feature rule.

Each is a `Study` run by experiments.pipeline.run_study; several seeds run as a sweep
(experiments.sweep.run_seeds), so this module sits above both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from experiments.pipeline import Study, resolve_study, run_study, with_settings
from hmm import HMM, load_process
from hmm.errors import InvalidInput
from probes.llc_settings import LLCPlan

# the RRXOR transformer of the paper's reference code (adamimos/epsilon-transformers,
# examples/rrxor.ipynb, commit 2bc4adb: d_model 128, n_heads 4, d_head 16, d_mlp = 4 d_model,
# 4 layers, ReLU, LayerNorm; it trained with SGD lr 0.01, batch 64, context 10)
RRXOR_PAPER_MODEL = {"d_model": 128, "n_heads": 4, "d_head": 16, "d_mlp": 512}

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
        model={"n_ctx": 15, **RRXOR_PAPER_MODEL},
        train={"exact_eval": "every"},
        tokens=10_000_000,
        why="RRXOR emits two random bits and then their XOR, so beliefs live on a 5-state simplex "
        "with 36 distinct points. The paper's RRXOR model: 4 layers, d_model 128, 4 heads of "
        "d_head 16, d_mlp 512, ReLU, LayerNorm (the training config of the paper's reference "
        "code, adamimos/epsilon-transformers, examples/rrxor.ipynb), with the project's default "
        "recipe. Context 15 (five full periods) keeps every input sequence enumerable (2^15) so "
        "the probe is exact. `reproduce rrxor-small` trains the Mess3-sized model instead.",
    ),
    "rrxor-small": Study(
        process="rrxor",
        model={"n_ctx": 15},
        train={"exact_eval": "every"},
        tokens=10_000_000,
        why="RRXOR with the Mess3-sized model (4 layers, d_model 64, 1 head of 8, d_mlp 256), "
        "half the width of the paper's RRXOR model (`reproduce rrxor`); context 15, default "
        "recipe.",
    ),
}


def reproduce(
    study: str,
    out: Path | None = None,
    tokens: int | None = None,
    overrides: dict | None = None,
    seeds: int = 1,
    llc: LLCPlan | None = None,
) -> Path:
    """`beliefgeo reproduce mess3|rrxor|rrxor-small`: run a paper study and print its summary.

    `overrides`: training options by flag name (see `with_settings`), e.g. from
    `add_training_options`. seeds > 1 trains seeds 0..seeds-1 one after another, each into
    OUT/seed=<s>, and writes OUT/summary.csv, summary.json and report.html with intervals.
    `llc`: also measure the local learning coefficient (calibrated once, on the first seed).
    """
    if study not in STUDIES:
        raise InvalidInput(f"unknown study {study!r}; choose one of {', '.join(STUDIES)}")
    plan = with_settings(STUDIES[study], {**(overrides or {}), "tokens": tokens})
    plan = replace(plan, llc=llc)
    out = Path(out or Path("runs") / study)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInput(f"--seeds must be a whole number >= 1, got {seeds!r}")
    if seeds == 1:
        return run_study(plan, out, None, title=f"reproduce {study}")
    from experiments.sweep import run_seeds  # Ray, only for several seeds

    first = plan.train.get("seed", 0)
    return run_seeds(plan, out, list(range(first, first + seeds)), title=f"reproduce {study}")


def probe_hmm(
    spec: Path, out: Path | None = None, tokens: int | None = None,
    overrides: dict | None = None, n_ctx: int | None = None, llc: LLCPlan | None = None,
) -> Path:
    """`beliefgeo probe-hmm SPEC.json [--n-ctx N]`: the full pipeline for a user's process file.

    n_ctx: the training context (default: `context_length` for the model the overrides give);
    llc: also the local learning coefficient."""
    spec = Path(spec)
    if not spec.is_file():
        raise InvalidInput(f"{spec} is not a file; give the path of a process spec .json")
    process = load_process(str(spec))
    plan = with_settings(Study(process=str(spec), tokens=5_000_000, llc=llc),
                         {**(overrides or {}), "tokens": tokens})
    if n_ctx is not None:
        if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 2:
            raise InvalidInput(f"--n-ctx must be a whole number >= 2, got {n_ctx!r}")
        why = f"Context {n_ctx}: given with --n-ctx."
    else:
        from models.architectures import residual_width

        n_ctx, why = context_length(process, residual_width(resolve_study(plan)[1]))
    plan = with_settings(plan, {"n_ctx": n_ctx})
    plan = replace(plan, why=f"{why} Model: the 4-layer, d_model 64 transformer with the default "
                   "recipe unless options say otherwise.")
    return run_study(
        plan, out or Path("runs") / f"probe-{process.name}", None, title=f"probe-hmm {spec}"
    )


def context_length(
    process: HMM, probe_features: int = 384, tolerance: float = 0.01
) -> tuple[int, str]:
    """The context a model needs to synchronise to `process` and to be probed, and why.

    Synchronise: the shortest length n in 8..16 whose last position has recovered all but
    `tolerance` of the possible gain from history: optimal_loss[n-1] - h <= tolerance *
    (optimal_loss[0] - h), h the entropy rate. Probe: at least that long, and long enough that
    the fit half (about half the distinct positive-probability prefixes) holds
    probes.activations.fit_rows_needed(probe_features) of them (probe_features: the widest
    probe's, every residual hook side by side; 384 for the default transformer). Both capped so
    every input sequence stays enumerable (exact probes) when an enumerable context of 8 or more
    exists; beyond that, sampled inputs supply the rows.
    """
    from hmm.msp import enumerable
    from probes.activations import fit_rows_needed

    h = process.entropy_rate()
    losses = process.optimal_loss(16)
    gain = max(losses[0] - h, 1e-12)
    synced = next((n for n in range(8, 17) if losses[n - 1] - h <= tolerance * gain), 16)
    longest = max((n for n in range(2, 17) if enumerable(process, n)), default=0)
    needed = fit_rows_needed(probe_features)
    cap = longest if longest >= 8 else 16
    prefixes = 0
    n_ctx = min(synced, cap)
    for n in range(1, cap + 1):
        prefixes += len(process.enumerate(n)[1]) if n <= longest else 0
        if n >= n_ctx and (prefixes // 2 >= needed or n > longest):
            n_ctx = n
            break
    else:
        n_ctx = cap
    inputs = (
        f"all {process.n_symbols}^{n_ctx} input sequences with exact probabilities"
        if enumerable(process, n_ctx)
        else "a large seeded sample of sequences"
    )
    fit = prefixes // 2 if n_ctx <= longest else None
    why = (
        f"Context {n_ctx}: at position {n_ctx - 1} the optimal loss is {losses[n_ctx - 1]:.4f} "
        f"nats against an entropy rate of {h:.4f}; the probes' fit half holds "
        + (f"about {fit:,} distinct prefixes for {probe_features} features ({needed:,} wanted)"
           if fit is not None else "sampled prefixes")
        + f" (rule: the shortest context in 8..16 that recovers {1 - tolerance:.0%} of what "
        f"history can gain over position 0 and gives the fit half {needed // (probe_features + 1)}"
        f" distinct prefixes per probe feature, capped so the inputs stay enumerable); probes use "
        f"{inputs}."
    )
    return n_ctx, why
