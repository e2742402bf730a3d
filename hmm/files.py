"""Generic file helpers for every layer: atomic writes and strict JSON.

Every file a command produces goes through `write_atomic`, so an interrupted command never leaves a
half-written checkpoint, JSON or figure behind and never corrupts what was already there. They live
at the bottom floor (`hmm` imports nothing of ours) so every package can use them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hmm.errors import InvalidInput


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
    return write_atomic(path, json.dumps(json_safe(obj), indent=2) + "\n")


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


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf floats with None so the files stay strict JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return json_safe(obj.tolist())
    return obj
