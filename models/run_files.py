"""Files of a run directory: atomic writes, the checkpoint list, the resolved config.

Every file a command produces goes through `write_atomic`, so an interrupted command never leaves
a half-written checkpoint, JSON or figure behind and never corrupts what was already there.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from hmm.errors import InvalidInput

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_PATTERN = re.compile(r"^tokens_(\d{12})\.pt$")


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON (NaN is written as null)."""
    return write_atomic(path, json.dumps(_json_safe(obj), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, turning a missing or malformed file into InvalidInput."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidInput(f"{path} does not exist") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path} ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); regenerate or fix it") from None


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


def writable_dir(path: str | Path) -> Path:
    """Create `path` if needed and check it can be written, or raise InvalidInput."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InvalidInput(f"{path} exists and is not a directory; choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".write-test.", delete=True)
        probe.close()
    except OSError as exc:
        raise InvalidInput(
            f"cannot write to {path} ({exc.strerror}); choose another --out"
        ) from None
    return path


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


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats with None so the files stay strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _json_safe(obj.tolist())
    return obj
