"""Files of a run directory: what is and is not a run folder, the metrics log (tolerant reader,
trimming on resume) and the checkpoint list. Imports no torch (the CLI checks paths with it).

Generic atomic/JSON helpers live in `hmm.files`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic
from hmm.records import Record, keyed, only, record
from models.families import FAMILIES, families_with

RUN_FORMAT = "beliefgeo-run/2"  # every input position 0..n_ctx-1 carries a loss
# format 1 (before every position was trained): positions 0..n_ctx-2 carried the loss; still loads
RUN_FORMATS = ("beliefgeo-run/1", RUN_FORMAT)
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^tokens_(\d{12})\.pt$")


def not_a_run(path: str | Path) -> str | None:
    """Why `path` is not a run folder, in one line that says what to give instead; None when it is
    one (it holds config.json). Tells apart a missing path, a checkpoint file, a run's checkpoints
    folder, a folder of runs (a sweep, `reproduce --seeds`) and any other file or folder."""
    path = Path(path)
    if (path / "config.json").is_file():
        return None
    if not path.exists():
        return f"{path} does not exist; give a run folder written by `beliefgeo train --out`"
    if path.is_file():
        if CHECKPOINT_PATTERN.match(path.name) and path.parent.name == CHECKPOINT_DIR:
            return f"{path} is a checkpoint file; give its run folder {path.parent.parent}"
        return f"{path} is a file, not a run folder; give the folder `beliefgeo train --out` wrote"
    if path.name == CHECKPOINT_DIR and (path.parent / "config.json").is_file():
        return f"{path} is a run's checkpoints folder; give the run folder {path.parent}"
    runs = sorted(p for p in path.iterdir() if (p / "config.json").is_file())
    if runs:
        report = path / "report.html"
        covered = f"; {report} covers them all" if report.is_file() else ""
        return (
            f"{path} holds {len(runs)} run folders (a sweep or `reproduce --seeds`), not one run; "
            f"give one of them, e.g. {runs[0]}{covered}"
        )
    return f"{path} is not a run directory (no config.json); train one with `beliefgeo train`"


def check_run_folder(path: str | Path) -> Path:
    """`path` as a Path when it is a run folder, else InvalidInput saying what it is."""
    problem = not_a_run(path)
    if problem:
        raise InvalidInput(problem)
    return Path(path)


def read_run_config(run: str | Path) -> dict:
    """RUN/config.json as a dict; InvalidInput when missing, malformed or not a beliefgeo run.
    `read_config` gives it typed."""
    path = check_run_folder(run) / "config.json"
    config = read_json(path)
    if not isinstance(config, dict) or config.get("format") not in RUN_FORMATS:
        raise InvalidInput(f"{path} is not a beliefgeo run config (no format {RUN_FORMAT!r})")
    return config


def read_metrics(run: str | Path) -> list[dict]:
    """RUN/metrics.jsonl as records, oldest first; [] when absent. A half-written last line (a run
    killed mid-write) is skipped, as the trainer does on resume."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def trim_metrics(run: str | Path, keep_through: int) -> None:
    """Drop metrics lines past step `keep_through` (the checkpoint a resume starts from) and any
    half-written line, atomically."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return
    kept = [r for r in read_metrics(run) if r.get("step", -1) <= keep_through]
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def checkpoint_path(run: str | Path, tokens: int) -> Path:
    """Where the checkpoint after `tokens` training tokens lives."""
    return Path(run) / CHECKPOINT_DIR / f"tokens_{tokens:012d}.pt"


def list_checkpoints(run: str | Path) -> list[tuple[int, Path]]:
    """(tokens, path) of every checkpoint in the run, oldest first; InvalidInput if none."""
    run = check_run_folder(run)
    folder = run / CHECKPOINT_DIR
    found = []
    if folder.is_dir():
        for entry in folder.iterdir():
            match = CHECKPOINT_PATTERN.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
    if not found:
        raise InvalidInput(f"{run} has no checkpoints in {folder}; train or resume the run first")
    return sorted(found)


# ---- config.json and metrics.jsonl as typed records (hmm.records) ----------------------------
@record
class ProcessSpec(Record):
    name: str | None = None
    states: list[str] | None = None
    symbols: list[str] | None = None
    transitions: dict[str, list] = keyed("<symbol>")
    initial: list[float] | None = None
    kind: str | None = only("optional")  # written unless a classical HMM (docs/processes.md)
    weights: list[float] | None = only("optional")  # a mixture's
    components: list[dict] | None = keyed("<key>", only="optional")  # a mixture's part specs
    factors: list[dict] | None = keyed("<key>", only="optional")  # a product's part specs


# run-file tags (docs/run-files.md): the recurrent families; those with a unit function to choose
RECURRENT = ",".join(families_with("hidden"))
WITH_ACT_FN = ",".join(name for name, family in FAMILIES.items() if family.activations)


@record
class ModelSettings(Record):
    d_vocab: int | None = None
    n_layers: int | None = None
    n_ctx: int | None = None
    act_fn: str | None = only(WITH_ACT_FN)  # an LSTM or GRU has none
    seed: int | None = None
    init_scale: float | None = None
    hidden: int | None = only(RECURRENT)
    d_model: int | None = only("transformer")
    n_heads: int | None = only("transformer")
    d_head: int | None = only("transformer")
    d_mlp: int | None = only("transformer")
    normalization: str | None = only("transformer")


@record
class TrainSettings(Record):
    recipe: str | None = None
    optimizer: str | None = None
    lr: float | None = None
    betas: list[float] | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    warmup_steps: int | None = None
    batch_size: int | None = None
    tokens: int | None = None
    seed: int | None = None
    grad_clip: float | None = None
    n_checkpoints: int | None = None
    log_every: int | None = None
    loss_by_position_every: int | None = None
    exact_eval: str | None = None
    train_sequences: int | None = None
    device: str | None = None
    extra: dict = keyed("<key>", only="optional")  # a study's notes: study, why


@record
class DataSettings(Record):
    n_ctx: int | None = None
    trained_positions: int | None = None
    tokens_per_step: int | None = None
    total_steps: int | None = None
    total_tokens: int | None = None
    batch: str | None = None
    targets: str | None = None


@record
class CheckpointSchedule(Record):
    steps: list[int] | None = None
    tokens: list[int] | None = None


@record
class Environment(Record):
    torch: str | None = None
    transformer_lens: str | None = None
    device: str | None = None
    threads: int | None = None


@record
class RunConfig(Record):
    """RUN/config.json (docs/training.md)."""

    format: str | None = None
    process: ProcessSpec | None = None
    arch: str | None = None
    model: ModelSettings | None = None
    train: TrainSettings | None = None
    data: DataSettings | None = None
    optimal_loss: float | None = None
    optimal_loss_by_position: list[float] | None = None
    checkpoints: CheckpointSchedule | None = None
    exact_eval: bool | None = None
    environment: Environment | None = None

    @classmethod
    def migrate(cls, data: dict) -> dict:
        """Format 1 trained positions 0..n_ctx-2 only and did not record it."""
        run_data = data.get("data")
        if isinstance(run_data, dict) and "trained_positions" not in run_data:
            old = data.get("format") == RUN_FORMATS[0]
            n_ctx = run_data.get("n_ctx")
            if isinstance(n_ctx, int):
                data["data"] = {**run_data, "trained_positions": n_ctx - (1 if old else 0)}
        return data


@record
class MetricsLine(Record):
    """One line of RUN/metrics.jsonl (docs/training.md)."""

    step: int = 0
    tokens: int = 0
    loss: float | None = None
    optimal_loss: float | None = None
    excess_loss: float | None = None
    lr: float | None = None
    loss_by_position: list[float] | None = None
    exact_loss: float | None = None
    exact_excess_loss: float | None = None
    exact_loss_by_position: list[float] | None = None
    sign_flip_frac: float | None = None
    sign_flip_steps: int | None = None
    wall_s: float | None = None
    eval_s: float | None = None
    cpu_s: float | None = None


def read_config(run: str | Path) -> RunConfig:
    """RUN/config.json, typed (read_run_config's checks)."""
    return RunConfig.from_json(read_run_config(run))


def read_metrics_lines(run: str | Path) -> list[MetricsLine]:
    """RUN/metrics.jsonl, typed, oldest first (read_metrics's tolerance)."""
    return [MetricsLine.from_json(line) for line in read_metrics(run)]
