"""The `beliefgeo` command line: argument parsing, dispatch, and the exit-code contract.

Exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 1 unexpected failure.
Heavy modules are imported inside each command so `beliefgeo --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hmm.errors import InvalidInput

PHASE_RUNS_DEFAULT = "transformer:relu,transformer:gelu,rnn:tanh,rnn:sigmoid,rnn:relu"
PROCESS_HELP = (
    "built-in name (see `beliefgeo processes`), name:key=value,..., or a spec .json path "
    "(docs/processes.md)"
)
RUN_HELP = "run folder written by `beliefgeo train` (docs/run-files.md)"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error, to keep the exit-2 contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _version() -> str:
    try:
        return importlib.metadata.version("beliefgeo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `make test` or `pip install -e .`)"


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


# the run options add_training_options adds, by argparse dest (= pipeline setting keys)
TRAINING_OPTIONS = ("init_scale", "train_sequences", "exact_eval", "device", "d_model",
                    "n_layers", "n_heads", "d_mlp", "hidden", "layers")  # fmt: skip


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """Model-size and run options shared by train, reproduce and probe-hmm (docs/training.md)."""
    group = parser.add_argument_group("training options (docs/training.md)")
    group.add_argument(
        "--init-scale",
        type=_number,
        default=None,
        metavar="S",
        help="multiply every initial weight matrix by S > 0 (default 1; recipe memorize: 0.1)",
    )
    group.add_argument(
        "--train-sequences",
        type=_positive_int,
        default=None,
        metavar="N",
        help="train on a fixed set of N sequences revisited epoch after epoch "
        "(default: fresh sequences every step)",
    )
    group.add_argument(
        "--exact-eval",
        choices=["every", "final", "off"],
        default=None,
        help="exact loss over every input sequence at every checkpoint, at the last only "
        "(default), or never",
    )
    group.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default=None,
        help="where to train (default auto: cuda when torch sees a GPU)",
    )
    for flag, what in [
        ("--d-model", "transformer: residual stream width (default 64)"),
        ("--n-layers", "transformer: blocks (default 4)"),
        ("--n-heads", "transformer: attention heads per block, 8 wide each (default 1)"),
        ("--d-mlp", "transformer: MLP width (default 256)"),
        ("--hidden", "rnn: hidden units per layer (default 64)"),
        ("--layers", "rnn: stacked recurrent layers (default 1)"),
    ]:
        group.add_argument(flag, type=_positive_int, default=None, metavar="N", help=what)


def training_options(args: argparse.Namespace) -> dict:
    """The training options given on the command line, by dest; absent ones left out."""
    return {k: getattr(args, k) for k in TRAINING_OPTIONS if getattr(args, k, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="beliefgeo",
        description="Belief-state geometry in networks trained on hidden Markov processes: train, "
        "probe, diagnose training phases, report.",
        epilog="Formats and options are documented in README.md and docs/ of the repository.",
    )
    parser.add_argument(
        "--version", action="version", version=f"beliefgeo {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("processes", help="list the built-in processes and their parameters")

    p = sub.add_parser("fractal", help="ground-truth belief geometry of a process: PNG + JSON")
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument(
        "--depth",
        type=_positive_int,
        default=None,
        help="mixed-state depth (default: sized to the process)",
    )
    p.add_argument(
        "--points",
        type=_positive_int,
        default=100_000,
        help="chaos-game points (default: 100,000)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for fractal.png and .json")

    p = sub.add_parser("train", help="train a transformer or RNN on sequences from a process")
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument(
        "--arch",
        choices=["transformer", "rnn"],
        default=None,
        help="network family (default: the recipe's, else transformer)",
    )
    p.add_argument(
        "--act-fn", default=None, help="transformer: relu|gelu|silu; rnn: tanh|sigmoid|relu"
    )
    p.add_argument(
        "--tokens",
        type=_positive_int,
        default=None,
        help="training tokens (recipe default otherwise)",
    )
    p.add_argument(
        "--seed",
        type=_non_negative_int,
        default=None,
        help="seeds the initial weights and the data stream (default 0)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="recipe name (default, paper, memorize) or a recipe .json file",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder to write (RUN)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --out"
    )
    add_training_options(p)

    p = sub.add_parser("probe", help="linear belief probes on every checkpoint of a run")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument("--last", action="store_true", help="probe only the newest checkpoint")
    p.add_argument(
        "--hooks",
        default=None,
        help="comma-separated hook names (default: every residual hook; `beliefgeo hooks RUN` "
        "lists them)",
    )
    p.add_argument(
        "--max-sequences",
        type=_positive_int,
        default=None,
        help="probe a seeded subset of this many enumerated sequences (default: all)",
    )
    p.add_argument(
        "--positions",
        type=_positive_int,
        default=None,
        help="probe positions 0..N-1 (default: every position the run trained; more exits 2)",
    )
    p.add_argument(
        "--split",
        choices=["subtree", "random"],
        default="subtree",
        help="held-out half: whole prefix subtrees (default; no held-out prefix longer than "
        "--split-prefix is fitted) or a random half of the sequences (docs/probes.md)",
    )
    p.add_argument(
        "--split-prefix",
        type=_positive_int,
        default=2,
        help="length m of the prefixes the subtree split holds out (default 2)",
    )

    p = sub.add_parser("phases", help="Jacobian phase diagnostics on every checkpoint of a run")
    p.add_argument("run", type=Path, help=RUN_HELP)

    p = sub.add_parser("report", help="write RUN/report.html (self-contained)")
    p.add_argument("run", type=Path, help=RUN_HELP)

    p = sub.add_parser("hooks", help="list the hook names of a run's model (for probe --hooks)")
    p.add_argument("run", type=Path, help=RUN_HELP)
    p.add_argument(
        "--all", action="store_true", help="also list every other hook point of the model"
    )

    p = sub.add_parser("reproduce", help="train -> probe -> phases -> report for mess3 or rrxor")
    p.add_argument("study", choices=["mess3", "rrxor"], help="which of the paper's studies")
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/STUDY)"
    )
    p.add_argument(
        "--tokens", type=_positive_int, default=None, help="training tokens (default 10,000,000)"
    )
    p.add_argument(
        "--seeds", type=_positive_int, default=1, help="seeds one after another, with intervals"
    )
    add_training_options(p)

    p = sub.add_parser("probe-hmm", help="the full pipeline for a user's HMM spec file")
    p.add_argument("spec", type=Path, help="process spec .json (docs/processes.md)")
    p.add_argument(
        "--out", type=Path, default=None, help="run folder (default: runs/probe-NAME)"
    )
    p.add_argument(
        "--tokens", type=_positive_int, default=None, help="training tokens (default 5,000,000)"
    )
    add_training_options(p)

    p = sub.add_parser(
        "compare-phases", help="train several architectures and compare their phases"
    )
    p.add_argument("process", help=PROCESS_HELP)
    p.add_argument(
        "--runs",
        default=PHASE_RUNS_DEFAULT,
        help=f"comma-separated arch:act-fn pairs (default: {PHASE_RUNS_DEFAULT})",
    )
    p.add_argument(
        "--tokens", type=_positive_int, default=None, help="training tokens per run"
    )
    p.add_argument(
        "--recipes",
        default="default",
        help="comma-separated recipes to compare side by side, e.g. default,memorize "
        "(memorize: small initial weights and a fixed training set; docs/recipes.md)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="folder for the runs, table and report"
    )
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds per architecture")
    p.add_argument(
        "--max-parallel", type=_positive_int, default=None, help="runs at once (default: CPUs)"
    )

    p = sub.add_parser("sweep", help="every combination of a spec's axes, run on Ray")
    p.add_argument("spec", type=Path, help="sweep spec .json (docs/sweeps.md)")
    p.add_argument("--out", type=Path, required=True, help="folder for the run folders and summary")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: local Ray)")
    p.add_argument(
        "--max-parallel", type=_positive_int, default=None, help="points at once (default: CPUs)"
    )
    return parser


def list_hooks(run: Path, every: bool = False) -> str:
    """`beliefgeo hooks RUN`: the residual hooks probed by default and the unit hooks, labelled."""
    from models.architectures import build_model, hook_label, residual_hooks, unit_hooks
    from models.checkpoints import model_config_of_run, read_run_config

    config = read_run_config(run)
    model = build_model(model_config_of_run(config))
    probed = residual_hooks(model)
    width = max(len(h) for h in probed) + 2
    lines = [f"{run}: {config['arch']} ({config['model'].get('act_fn', '?')})", ""]
    lines.append("Residual hooks (probed by `beliefgeo probe`; pass names to --hooks):")
    lines += [f"  {h:<{width}}{hook_label(h)}" for h in probed]
    lines.append("Pre-activation hooks of the nonlinear layers (unit phases):")
    units = unit_hooks(model).items()
    lines += [f"  {hook:<{width}}{layer} ({act})" for layer, (hook, act) in units]
    if every:
        rest = sorted(set(getattr(model, "hook_dict", {})) - set(probed))
        lines.append(f"Every other hook point of the model ({len(rest)}):")
        lines += [f"  {h}" for h in rest]
    return "\n".join(lines)


def _train_options(args: argparse.Namespace) -> dict:
    """training_options for models.training.train_run: --layers is the RNN's n_layers."""
    options = training_options(args)
    if "layers" in options:
        if options.get("n_layers", options["layers"]) != options["layers"]:
            raise InvalidInput("give --layers (rnn) or --n-layers (transformer), not both")
        options["n_layers"] = options.pop("layers")
    return options


def _dispatch(args: argparse.Namespace) -> int | None:
    from experiments import closing

    if args.command in ("processes", "fractal"):
        from experiments import fractal

        if args.command == "processes":
            print(fractal.describe_processes())
        else:
            summary = fractal.render_fractal(
                args.process, depth=args.depth, points=args.points, out=args.out
            )
            print(closing.fractal_line(args.out, summary))
    elif args.command == "train":
        from models.training import train_run

        run = train_run(
            args.process,
            out=args.out,
            arch=args.arch,
            act_fn=args.act_fn,
            tokens=args.tokens,
            seed=args.seed,
            config=args.config,
            resume=args.resume,
            options=_train_options(args),
        )
        print(closing.train_line(Path(run)))
    elif args.command == "probe":
        from probes.belief_study import probe_run

        hooks = args.hooks.split(",") if args.hooks else None
        probe_run(args.run, last=args.last, hooks=hooks, max_sequences=args.max_sequences,
                  positions=args.positions, split=args.split, prefix_len=args.split_prefix)
        print(closing.probe_line(args.run))
    elif args.command == "phases":
        from probes.phase_study import phases_run

        phases_run(args.run)
        print(closing.phases_line(args.run))
    elif args.command == "report":
        from experiments.report import write_report

        print(closing.report_line(write_report(args.run)))
    elif args.command == "hooks":
        print(list_hooks(args.run, every=args.all))
    elif args.command == "reproduce":
        from experiments.pipeline import reproduce

        reproduce(
            args.study,
            out=args.out,
            tokens=args.tokens,
            seeds=args.seeds,
            overrides=training_options(args),
        )
    elif args.command == "probe-hmm":
        from experiments.pipeline import probe_hmm

        probe_hmm(args.spec, out=args.out, tokens=args.tokens, overrides=training_options(args))
    elif args.command == "compare-phases":
        from experiments.compare import compare_phases

        return compare_phases(
            args.process,
            runs=args.runs,
            out=args.out,
            tokens=args.tokens,
            seeds=args.seeds,
            max_parallel=args.max_parallel,
            recipes=args.recipes,
        )
    elif args.command == "sweep":
        from experiments.sweep import sweep

        return sweep(args.spec, args.out, address=args.address, max_parallel=args.max_parallel)


@contextmanager
def thread_budget(command: str) -> Iterator[None]:
    """Every command but `processes` (which needs no torch) runs inside models.compute's budget."""
    if command == "processes":
        yield
        return
    from models.compute import thread_budget as budget

    with budget():
        yield


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with thread_budget(args.command):
            status = _dispatch(args)
    except InvalidInput as exc:
        print(f"beliefgeo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("beliefgeo: interrupted; completed checkpoints and files are intact", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `beliefgeo hooks RUN | head`: the reader left; no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
