"""The `beliefgeo` command line: one function per command, and the exit-code contract.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 unexpected failure,
130 interrupted (the line says how to continue). Input is checked before torch is imported, so a
typo is answered in well under a second: only `hmm`, `models.families` and `models.run_files` are
imported at the top of a command, everything heavy inside it after its checks.

Adding a command `beliefgeo foo`:
  1. `foo_command(args) -> int | None`: check the input first with the light checks below
     (`existing_run`, `checked_process`, `check_family_flags`), then import the module that does
     the work *inside* the function and run it under `compute()` (the CPU thread budget); print
     the closing line (experiments/closing.py). Raise `InvalidInput` for bad input.
  2. `foo_parser(sub)`: `p = sub.add_parser("foo", help=...)`, its arguments (each with help),
     and `p.set_defaults(func=foo_command)`; add `again=` (a function args -> command line) when
     re-running the same line is not how an interrupted `foo` continues.
  3. append `foo_parser` to `COMMANDS`.
tests/experiments/test_cli.py checks that every argument has help and that errors come fast.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hmm.errors import InvalidInput
from models.families import DEFAULT_FAMILY, FAMILIES, check_act_fn, families_with
from models.families import size_fields as family_size_fields

PHASE_RUNS_DEFAULT = "transformer:relu,transformer:gelu,rnn:tanh,rnn:sigmoid,rnn:relu"
PROCESS_HELP = (
    "built-in name (see `beliefgeo processes`), name:key=value,..., or a spec .json path "
    "(docs/processes.md)"
)
RUN_HELP = "run folder written by `beliefgeo train` (docs/run-files.md)"
# recipe settings that are not flags (TrainConfig fields; tests check the list stays complete)
RECIPE_KEYS = ("lr", "optimizer", "betas", "momentum", "weight_decay", "schedule",
               "warmup_steps", "batch_size", "grad_clip", "n_checkpoints", "log_every",
               "loss_by_position_every")  # fmt: skip
# model-config fields that are not flags: a recipe file's "model" object sets them
RECIPE_MODEL_KEYS = ("n_ctx", "d_head", "normalization")
LAYER_FLAG_ALIASES = ("--layers",)  # the same count as --n-layers, for every family


class _Parser(argparse.ArgumentParser):
    """argparse without abbreviations (`--token` is not `--tokens`) and with a one-line error,
    to keep the exit-2 contract."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# ---- argument types -----------------------------------------------------------------------------
def _non_negative_int(text: str) -> int:
    try:
        value = int(float(text)) if "e" in text.lower() else int(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; give a count >= 0")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


# ---- light checks: before anything heavy is imported -------------------------------------------
def existing_run(path: Path) -> Path:
    """`path` when it is a run folder; else InvalidInput saying what it is instead (a missing
    path, a checkpoint file, a checkpoints folder, a sweep folder)."""
    from models.run_files import check_run_folder

    return check_run_folder(path)


def checked_process(spec: str | Path):
    """The HMM a PROCESS argument names (hmm only: no torch); InvalidInput when it names none."""
    from hmm import load_process

    return load_process(spec)


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def check_family_flags(arch: str | None, act_fn: str | None, sizes: dict) -> None:
    """One line when --act-fn or a size flag does not belong to family `arch` (None: the family
    is decided later by a recipe file or the resumed run, which check it there)."""
    if arch is None:
        return
    family = FAMILIES[arch]
    check_act_fn(arch, act_fn)
    foreign = [field for field in sizes if field not in family.sizes]
    if foreign:
        owners = " or ".join(families_with(foreign[0]))
        raise InvalidInput(
            f"{_flag(foreign[0])} is for --arch {owners}, not {arch}: add --arch {owners} or use "
            f"the {arch} sizes {', '.join(map(_flag, family.sizes))}"
        )


def _arch_of_flags(args: argparse.Namespace, decided_elsewhere: bool = False) -> str | None:
    """The family the command line decides: --arch, else the default family unless a recipe file
    or the resumed run decides it (`decided_elsewhere`)."""
    return args.arch or (None if decided_elsewhere else DEFAULT_FAMILY)


# ---- the CPU budget, and the options several commands share ------------------------------------
@contextmanager
def compute() -> Iterator[None]:
    """Run the block on the thread budget (models.compute: torch and BLAS, BELIEFGEO_THREADS)."""
    from models.compute import thread_budget

    with thread_budget():
        yield


# the run options add_training_options adds, by argparse dest (= pipeline setting keys)
TRAINING_OPTIONS = ("arch", "act_fn", "init_scale", "train_sequences", "exact_eval", "device",
                    *family_size_fields())  # fmt: skip


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Family, model-size and run options shared by train, reproduce and probe-hmm
    (docs/training.md). Size flags come from models.families: one per size field."""
    group = parser.add_argument_group("training options (docs/training.md)")
    group.add_argument("--arch", choices=list(FAMILIES), default=None,
                       help=f"network family (default: the recipe's, else {DEFAULT_FAMILY})")
    units = "; ".join(f"{name}: {'|'.join(f.activations) or 'none, fixed by the cell'}"
                      for name, f in FAMILIES.items())  # fmt: skip
    group.add_argument("--act-fn", default=None, help=f"unit function ({units})")
    group.add_argument("--init-scale", type=_number, default=None, metavar="S",
                       help="multiply every initial weight matrix by S > 0 (default 1; recipe "
                       "memorize: 0.1)")
    group.add_argument("--train-sequences", type=_positive_int, default=None, metavar="N",
                       help="train on a fixed set of N sequences revisited epoch after epoch "
                       "(default: fresh sequences every step)")
    group.add_argument("--exact-eval", choices=["every", "final", "off"], default=None,
                       help="exact loss over every input sequence at every checkpoint, at the "
                       "last only (default), or never")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                       help="where to train (default auto: cuda when torch sees a GPU)")
    for field in family_size_fields():
        what = "; ".join(f"{name}: {FAMILIES[name].sizes[field]}" for name in families_with(field))
        aliases = LAYER_FLAG_ALIASES if field == "n_layers" else ()
        also = f" ({', '.join(aliases)} is the same flag)" if aliases else ""
        group.add_argument(_flag(field), *aliases, dest=field, type=_positive_int, default=None,
                           metavar="N", help=what + also)


def training_options(args: argparse.Namespace) -> dict:
    """The training options given on the command line, by dest; absent ones left out."""
    return {k: getattr(args, k) for k in TRAINING_OPTIONS if getattr(args, k, None) is not None}


def _sizes(args: argparse.Namespace) -> dict:
    return {k: v for k, v in training_options(args).items() if k in family_size_fields()}


def add_llc_options(parser: argparse.ArgumentParser) -> None:
    """--llc and its two settings, shared by reproduce, probe-hmm and compare-phases."""
    group = parser.add_argument_group("local learning coefficient (off by default; docs/llc.md)")
    group.add_argument("--llc", action="store_true",
                       help="also estimate the LLC at log-spaced checkpoints before the report; "
                       "settings calibrated once, on the first run's final checkpoint, and used "
                       "for every other run (seeds, architectures)")
    group.add_argument("--llc-checkpoints", type=_checkpoints_or_all, default=None,
                       metavar="N|all", help="checkpoints the LLC is estimated at (default 10)")
    group.add_argument("--llc-settings-from", type=Path, default=None, metavar="LLC.json",
                       help="the SGLD settings of an earlier llc.json instead of a calibration")


def llc_plan_of(args: argparse.Namespace):
    """The LLCPlan the --llc flags ask for (None without --llc); the settings file is read now."""
    given = {"checkpoints": args.llc_checkpoints, "settings_from": args.llc_settings_from}
    given = {k: v for k, v in given.items() if v is not None}
    if not args.llc:
        if given:
            flag = "--llc-" + next(iter(given)).replace("_", "-")
            raise InvalidInput(f"{flag} needs --llc (the LLC is off by default)")
        return None
    from probes.llc_settings import llc_plan

    if "settings_from" in given:
        given["settings_from"] = str(given["settings_from"])
    return llc_plan(given)


# ---- the commands, each beside its parser ------------------------------------------------------
def processes_command(args: argparse.Namespace) -> None:
    from experiments.fractal import describe_processes

    print(describe_processes())


def processes_parser(sub) -> None:
    p = sub.add_parser("processes", help="list the built-in processes and their parameters")
    p.set_defaults(func=processes_command)


def fractal_command(args: argparse.Namespace) -> None:
    checked_process(args.process)
    from experiments import closing
    from experiments.fractal import render_fractal

    with compute():
        summary = render_fractal(args.process, depth=args.depth, points=args.points, out=args.out)
    print(closing.fractal_line(args.out, summary))


def fractal_parser(sub) -> None:
    p = sub.add_parser("fractal", help="ground-truth belief geometry of a process: PNG + JSON")
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument("--depth", type=_positive_int, default=None,
                   help="mixed-state depth (default: sized to the process)")
    p.add_argument("--points", type=_positive_int, default=100_000,
                   help="chaos-game points (default: 100,000)")
    p.add_argument("--out", type=Path, required=True, help="folder for fractal.png and .json")
    p.set_defaults(func=fractal_command)


def train_command(args: argparse.Namespace) -> None:
    process = checked_process(args.process)
    recipe_file = args.config is not None and (
        args.config.endswith(".json") or Path(args.config).is_file()
    )
    decided = args.resume or recipe_file
    check_family_flags(_arch_of_flags(args, decided), args.act_fn, _sizes(args))
    if args.resume:
        existing_run(args.out)
    from experiments import closing
    from models.training import train_run

    options = training_options(args)
    arch, act_fn = options.pop("arch", None), options.pop("act_fn", None)
    with compute():
        run = train_run(process, out=args.out, arch=arch, act_fn=act_fn, tokens=args.tokens,
                        seed=args.seed, config=args.config, resume=args.resume, options=options)
    print(closing.train_line(Path(run)))


def _train_again(args: argparse.Namespace) -> str:
    """How an interrupted `train` continues: --resume once config.json is written."""
    if (args.out / "config.json").is_file():
        return shlex.join(["beliefgeo", "train", args.process, "--out", str(args.out), "--resume"])
    return ""


def train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a transformer, RNN, LSTM or GRU on a process")
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument("--tokens", type=_positive_int, default=None,
                   help="training tokens (recipe default otherwise)")
    p.add_argument("--seed", type=_non_negative_int, default=None,
                   help="seeds the initial weights and the data stream (default 0)")
    p.add_argument("--config", default=None,
                   help="recipe name (default, paper, memorize) or a recipe .json file; "
                   "learning rate, batch size and the other optimiser settings live there "
                   "(docs/recipes.md)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write (RUN)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --out")
    add_training_options(p)
    p.set_defaults(func=train_command, again=_train_again)


def probe_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    from experiments import closing
    from probes.belief_study import probe_run

    hooks = args.hooks.split(",") if args.hooks else None
    with compute():
        probe_run(run, last=args.last, hooks=hooks, max_sequences=args.max_sequences,
                  positions=args.positions, split=args.split, prefix_len=args.split_prefix)
    print(closing.probe_line(run))


def probe_parser(sub) -> None:
    p = sub.add_parser("probe", help="linear belief probes on every checkpoint of a run")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument("--last", action="store_true", help="probe only the newest checkpoint")
    p.add_argument("--hooks", default=None,
                   help="comma-separated hook names (default: every residual hook; `beliefgeo "
                   "hooks RUN` lists them)")
    p.add_argument("--max-sequences", type=_positive_int, default=None,
                   help="probe a seeded subset of this many enumerated sequences (default: all)")
    p.add_argument("--positions", type=_positive_int, default=None,
                   help="probe positions 0..N-1 (default: every position the run trained; more "
                   "exits 2)")
    p.add_argument("--split", choices=["subtree", "random"], default="subtree",
                   help="held-out half: whole prefix subtrees (default; no held-out prefix longer "
                   "than --split-prefix is fitted) or a random half of the sequences "
                   "(docs/probes.md)")
    p.add_argument("--split-prefix", type=_positive_int, default=2,
                   help="length m of the prefixes the subtree split holds out (default 2)")
    p.set_defaults(func=probe_command)


def phases_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    from experiments import closing
    from probes.phase_study import phases_run

    with compute():
        phases_run(run)
    print(closing.phases_line(run))


def phases_parser(sub) -> None:
    p = sub.add_parser("phases", help="Jacobian phase diagnostics on every checkpoint of a run")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.set_defaults(func=phases_command)


def _llc_settings(args: argparse.Namespace):
    """(LLCSettings, CalibrationGrid or None) from the llc flags: calibrate unless --lr, --n-beta
    and --localization are all given or --settings-from names an earlier llc.json."""
    from probes.llc_settings import llc_options

    return llc_options(lr=args.lr, n_beta=args.n_beta, localization=args.localization,
                       settings_from=args.settings_from, chains=args.chains, draws=args.draws)


def _checkpoint_count(text: str) -> int | None:
    return None if text == "all" else _positive_int(text)


def _checkpoints_or_all(text: str) -> int | str:
    return text if text == "all" else _positive_int(text)


def llc_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    settings, grid = _llc_settings(args)
    from experiments import closing
    from probes.llc_study import llc_run

    with compute():
        llc_run(run, checkpoints=args.checkpoints, settings=settings, calibrate_grid=grid)
    print(closing.llc_line(run))


def llc_parser(sub) -> None:
    p = sub.add_parser(
        "llc",
        help="local learning coefficient at every checkpoint (devinterp SGLD; docs/llc.md)",
    )
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument(
        "--checkpoints", type=_checkpoint_count, default=10, metavar="N|all",
        help="N checkpoints log-spaced in tokens, the last included (default 10), or all",
    )  # fmt: skip
    for flag, what in [
        ("--lr", "SGLD step size (with --n-beta and --localization: no calibration)"),
        ("--n-beta", "SGLD inverse temperature n*beta"),
        ("--localization", "SGLD pull gamma towards the checkpoint's weights"),
    ]:
        p.add_argument(flag, type=_number, default=None, help=what)
    p.add_argument(
        "--settings-from", type=Path, default=None, metavar="LLC.json",
        help="use the settings of an earlier llc.json (compare runs, seeds, schedules alike)",
    )  # fmt: skip
    p.add_argument("--chains", type=_positive_int, default=None,
                   help="SGLD chains per checkpoint (default 4)")  # fmt: skip
    p.add_argument("--draws", type=_positive_int, default=None,
                   help="SGLD draws per chain (default 200)")  # fmt: skip
    p.set_defaults(func=llc_command)


def report_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    from experiments import closing
    from experiments.report import write_report

    with compute():
        path = write_report(run)
    print(closing.report_line(path))


def report_parser(sub) -> None:
    p = sub.add_parser("report", help="write RUN/report.html (self-contained)")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.set_defaults(func=report_command)


def intervene_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    from experiments import closing
    from probes.interventions import intervene_run

    hooks = args.hooks.split(",") if args.hooks else None
    with compute():
        intervene_run(run, hooks=hooks, n_prefixes=args.prefixes, tokens=args.checkpoint,
                      seed=args.seed)
    print(closing.intervene_line(run))


def intervene_parser(sub) -> None:
    p = sub.add_parser("intervene", help="exact-counterfactual interventions on the probed "
                       "belief: does the prediction follow? (docs/geometry.md)")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument("--hooks", default=None,
                   help="comma-separated hook names (default: every residual hook; `beliefgeo "
                   "hooks RUN` lists them)")
    p.add_argument("--prefixes", type=_positive_int, default=2000,
                   help="held-out prefixes moved per hook (default 2000)")
    p.add_argument("--checkpoint", type=_non_negative_int, default=None, metavar="TOKENS",
                   help="the checkpoint after this many training tokens (default: the newest)")
    p.add_argument("--seed", type=_non_negative_int, default=0,
                   help="seeds the split, the prefix pairs and the null directions (default 0)")
    p.set_defaults(func=intervene_command)


def list_hooks(run: Path, every: bool = False) -> str:
    """`beliefgeo hooks RUN`: the residual hooks probed by default and the unit hooks, labelled."""
    from models.architectures import build_model, hook_label, residual_hooks, unit_hooks
    from models.checkpoints import model_config_of_run, read_run_config
    from models.families import describe_model

    config = read_run_config(run)
    model = build_model(model_config_of_run(config))
    probed = residual_hooks(model)
    units = unit_hooks(model).items()
    width = max(len(h) for h in [*probed, *(hook for _, (hook, _) in units)]) + 2
    lines = [f"{run}: {describe_model(config['arch'], config['model'])}", ""]
    lines.append("Residual hooks (probed by `beliefgeo probe`; pass names to --hooks):")
    lines += [f"  {h:<{width}}{hook_label(h)}" for h in probed]
    lines.append("Pre-activation hooks of the nonlinear layers (unit phases):")
    lines += [f"  {hook:<{width}}{layer} ({act})" for layer, (hook, act) in units]
    if every:
        rest = sorted(set(getattr(model, "hook_dict", {})) - set(probed))
        lines.append(f"Every other hook point of the model ({len(rest)}):")
        lines += [f"  {h}" for h in rest]
    return "\n".join(lines)


def hooks_command(args: argparse.Namespace) -> None:
    run = existing_run(args.run)
    with compute():
        print(list_hooks(run, every=args.all))


def hooks_parser(sub) -> None:
    p = sub.add_parser("hooks", help="list the hook names of a run's model (for probe --hooks)")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument("--all", action="store_true",
                   help="also list every other hook point of the model")
    p.set_defaults(func=hooks_command)


def reproduce_command(args: argparse.Namespace) -> None:
    check_family_flags(_arch_of_flags(args), args.act_fn, _sizes(args))
    llc = llc_plan_of(args)
    from experiments.studies import reproduce

    with compute():
        reproduce(args.study, out=args.out, tokens=args.tokens, seeds=args.seeds,
                  overrides=training_options(args), llc=llc)


def reproduce_parser(sub) -> None:
    from experiments.studies import STUDIES

    p = sub.add_parser("reproduce", help="train -> probe -> phases -> report for a paper study")
    p.add_argument("study", choices=list(STUDIES),
                   help="which of the paper's studies (rrxor: the paper's RRXOR model, d_model "
                   "128, 4 heads; rrxor-small: the Mess3-sized model)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/STUDY)")
    p.add_argument("--tokens", type=_positive_int, default=None,
                   help="training tokens (default 10,000,000)")
    p.add_argument("--seeds", type=_positive_int, default=1,
                   help="seeds one after another, with intervals")
    add_training_options(p)
    add_llc_options(p)
    p.set_defaults(func=reproduce_command)


def probe_hmm_command(args: argparse.Namespace) -> None:
    if not args.spec.is_file():
        raise InvalidInput(f"{args.spec} is not a file; give the path of a process spec .json")
    checked_process(str(args.spec))
    check_family_flags(_arch_of_flags(args), args.act_fn, _sizes(args))
    llc = llc_plan_of(args)
    from experiments.studies import probe_hmm

    with compute():
        probe_hmm(args.spec, out=args.out, tokens=args.tokens, overrides=training_options(args),
                  n_ctx=args.n_ctx, llc=llc)


def probe_hmm_parser(sub) -> None:
    p = sub.add_parser("probe-hmm", help="the full pipeline for a user's HMM spec file")
    p.add_argument("spec", type=Path, help="process spec .json (docs/processes.md)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: runs/probe-NAME)")
    p.add_argument("--tokens", type=_positive_int, default=None,
                   help="training tokens (default 5,000,000)")
    p.add_argument("--n-ctx", type=_positive_int, default=None, metavar="N",
                   help="training context (default: long enough to synchronise and to give the "
                   "probes 10 distinct fit prefixes per feature; docs/probes.md)")
    add_training_options(p)
    add_llc_options(p)
    p.set_defaults(func=probe_hmm_command)


def compare_phases_command(args: argparse.Namespace) -> int:
    from experiments.compare import compare_phases, parse_runs

    checked_process(args.process)
    parse_runs(args.runs)
    llc = llc_plan_of(args)
    with compute():
        return compare_phases(args.process, runs=args.runs, out=args.out, tokens=args.tokens,
                              seeds=args.seeds, max_parallel=args.max_parallel,
                              recipes=args.recipes, llc=llc)


def compare_phases_parser(sub) -> None:
    p = sub.add_parser("compare-phases",
                       help="train several architectures and compare their phases")
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument("--runs", default=PHASE_RUNS_DEFAULT,
                   help="comma-separated arch:act-fn pairs, lstm and gru without :act-fn "
                   f"(default: {PHASE_RUNS_DEFAULT})")
    p.add_argument("--tokens", type=_positive_int, default=None, help="training tokens per run")
    p.add_argument("--recipes", default="default",
                   help="comma-separated recipes to compare side by side, e.g. default,memorize "
                   "(memorize: small initial weights and a fixed training set; docs/recipes.md)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for the runs, table and report")
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds per architecture")
    p.add_argument("--max-parallel", type=_positive_int, default=None,
                   help="runs at once (default: CPUs)")
    add_llc_options(p)
    p.set_defaults(func=compare_phases_command)


def sweep_command(args: argparse.Namespace) -> int:
    from experiments.sweep import load_spec, sweep

    load_spec(args.spec)
    with compute():
        return sweep(args.spec, args.out, address=args.address, max_parallel=args.max_parallel)


def sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="every combination of a spec's axes, run on Ray")
    p.add_argument("spec", type=Path, help="sweep spec .json (docs/sweeps.md)")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for the run folders and summary")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local Ray)")
    p.add_argument("--max-parallel", type=_positive_int, default=None,
                   help="points at once (default: CPUs)")
    p.set_defaults(func=sweep_command)


COMMANDS: tuple[Callable, ...] = (
    processes_parser, fractal_parser, train_parser, probe_parser, phases_parser, llc_parser,
    report_parser, intervene_parser, hooks_parser, reproduce_parser, probe_hmm_parser,
    compare_phases_parser, sweep_parser,
)  # fmt: skip


# ---- the parser, unknown flags, main -----------------------------------------------------------
def _version() -> str:
    try:
        return importlib.metadata.version("beliefgeo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `make test` or `pip install -e .`)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="beliefgeo",
        description="Belief-state geometry in networks trained on hidden Markov processes: train, "
        "probe, diagnose training phases, report.",
        epilog="Formats and options are documented in README.md and docs/ of the repository.",
    )
    parser.add_argument("--version", action="version", version=f"beliefgeo {_version()}",
                        help="print the version")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Command name -> its parser."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def unknown_flag(parser: argparse.ArgumentParser, argv: Sequence[str]) -> str | None:
    """The error line for the first `--flag` the command does not take, with where it lives
    instead (a recipe key, another command, a near spelling); None when every flag is known."""
    commands = subcommands(parser)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in commands:
        return None
    known = {s for a in commands[command]._actions for s in a.option_strings}
    for arg in argv[argv.index(command) + 1 :]:
        if arg == "--":
            break
        flag = arg.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            return f"beliefgeo {command}: error: {flag} is not an option of {command}; " + (
                _where_instead(flag, command, commands, sorted(known))
            )
    return None


def _where_instead(flag: str, command: str, commands: dict, known: list[str]) -> str:
    key = flag[2:].replace("-", "_")
    if key in RECIPE_KEYS:
        return (f"{key} is a recipe setting: put \"{key}\" in a recipe .json and pass --config "
                f"FILE (recipe keys: {', '.join(RECIPE_KEYS)}; docs/recipes.md)")
    if key in RECIPE_MODEL_KEYS:
        return (f"{key} is a model setting without a flag: put it under \"model\" in a recipe "
                "file (--config FILE.json; docs/recipes.md)")
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
    if close:
        return f"did you mean {close[0]}? (see --help)"
    owners = [name for name, p in commands.items()
              if any(flag in a.option_strings for a in p._actions)]  # fmt: skip
    if owners:
        return f"it belongs to {', '.join(owners)} (see beliefgeo {command} --help)"
    return "see --help"


def _interrupted(args: argparse.Namespace, argv: Sequence[str]) -> str:
    again = getattr(args, "again", None)
    command = (again(args) if again else "") or shlex.join(["beliefgeo", *argv])
    return (
        "beliefgeo: interrupted; completed checkpoints and files are intact; continue with: "
        + command
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    problem = unknown_flag(parser, argv)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except InvalidInput as exc:
        print(f"beliefgeo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(args, argv), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `beliefgeo hooks RUN | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
