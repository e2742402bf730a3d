"""Files of a run directory: the metrics log (tolerant reader, trimming on resume) and the
checkpoint list.

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
    run = Path(run)
    if not (run / "config.json").is_file():
        raise InvalidInput(
            f"{run} is not a run directory (no config.json); train one with `beliefgeo train`"
        )
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
