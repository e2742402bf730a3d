"""Files of a run directory: what is and is not a run folder, the metrics log (tolerant reader,
trimming on resume) and the checkpoint list. Imports no torch (the CLI checks paths with it).

Generic atomic/JSON helpers live in `hmm.files`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hmm.errors import InvalidInput
from hmm.files import write_atomic

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
