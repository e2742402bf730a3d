"""Checkpoints and the run config: save and read training state, rebuild models and processes.

A checkpoint is a `torch.save` dict of tensors and plain values only, so it loads with
`torch.load(weights_only=True)`:
  format "beliefgeo-checkpoint/1", step, tokens, model / optimizer / scheduler (state_dicts),
  torch_rng (uint8 tensor), data_stream {"seed", "next_step"}, sign_flips {"previous": int8 signs
  of the last update, or None}, wall_s, eval_s, cpu_s (bookkeeping).
The model's shape, the process and the recipe live once, in RUN/config.json beside RUN/checkpoints/.
Run formats: "beliefgeo-run/2" trains every input position 0..n_ctx-1; "beliefgeo-run/1" (older
runs, still readable) trained positions 0..n_ctx-2 only — `trained_positions(config)` says which.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hmm import HMM, load_process
from hmm.errors import InvalidInput
from hmm.files import read_json, writable_dir, write_atomic
from models.architectures import ModelConfig, build_model, make_model_config, move_model
from models.recipes import resume_clashes
from models.run_files import CHECKPOINT_DIR, check_run_folder, checkpoint_path, list_checkpoints

CHECKPOINT_FORMAT = "beliefgeo-checkpoint/1"
RUN_FORMAT = "beliefgeo-run/2"  # every input position 0..n_ctx-1 carries a loss
# format 1 (before every position was trained): positions 0..n_ctx-2 carried the loss; still loads
RUN_FORMATS = ("beliefgeo-run/1", RUN_FORMAT)
# what torch.load raises on truncated or garbled bytes (found by fuzzing truncations and bit flips)
CORRUPT_FILE_ERRORS = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    IndexError,
    struct.error,
)


def save_checkpoint(run: str | Path, state: dict[str, Any]) -> Path:
    """Write `state` (must hold "tokens") atomically to checkpoint_path(run, tokens)."""
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    return write_atomic(checkpoint_path(run, int(state["tokens"])), buffer.getvalue())


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, loaded with weights_only=True; bad file -> InvalidInput."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except CORRUPT_FILE_ERRORS as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(
            f"{path} is not a readable checkpoint ({first}); it may be corrupt or not from "
            "beliefgeo — delete it and resume the run from the previous checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InvalidInput(
            f"{path} is not a beliefgeo checkpoint (no format {CHECKPOINT_FORMAT!r})"
        )
    return state


def run_of_checkpoint(path: str | Path) -> Path:
    """RUN for RUN/checkpoints/tokens_*.pt."""
    path = Path(path)
    if path.parent.name != CHECKPOINT_DIR:
        raise InvalidInput(f"{path} is not inside a run's {CHECKPOINT_DIR}/ folder")
    return path.parent.parent


def read_run_config(run: str | Path) -> dict:
    """RUN/config.json as a dict; InvalidInput when missing, malformed or not a beliefgeo run."""
    path = check_run_folder(run) / "config.json"
    config = read_json(path)
    if not isinstance(config, dict) or config.get("format") not in RUN_FORMATS:
        raise InvalidInput(f"{path} is not a beliefgeo run config (no format {RUN_FORMAT!r})")
    return config


def trained_positions(config: dict) -> int:
    """How many leading input positions carry a training loss: n_ctx for format-2 runs, n_ctx - 1
    for format-1 runs (their last position never got a gradient). `config`: a run's config.json."""
    data = config["data"]
    if "trained_positions" in data:
        return int(data["trained_positions"])
    return int(data["n_ctx"]) - (1 if config.get("format") == RUN_FORMATS[0] else 0)


def model_config_of_run(config: dict) -> ModelConfig:
    """The model config stored in a run's config.json dict."""
    return make_model_config(config["arch"], **config["model"])


def load_run_process(run: str | Path) -> HMM:
    """The process a run was trained on, rebuilt from the full spec in RUN/config.json."""
    return load_process(read_run_config(run)["process"])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """The model in RUN/checkpoints/tokens_*.pt, rebuilt from RUN/config.json, in eval mode."""
    state = read_checkpoint(path, device=device)
    model = build_model(model_config_of_run(read_run_config(run_of_checkpoint(path))))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise InvalidInput(
            f"{path} does not match the model in its run's config.json ({exc})"
        ) from None
    return move_model(model, device).eval()


def check_resume(out: Path, stored: dict, config: dict, typed: set[str] | None = None) -> None:
    """InvalidInput unless the run in `out` (its config.json `stored`) can continue as `config`,
    the run config this invocation computes; `typed`: the flags given (models.recipes
    .resume_clashes names only theirs when they clash)."""
    if stored["format"] != RUN_FORMAT:
        raise InvalidInput(
            f"{out} is a {stored['format']} run (positions 0..n_ctx-2 trained); this beliefgeo "
            f"trains every position ({RUN_FORMAT}) and cannot continue it: train a new --out"
        )
    clashes = resume_clashes(stored, json.loads(json.dumps(config)), typed)
    if clashes:
        raise InvalidInput(
            f"--resume continues {out} as its config.json says; drop or fix: {'; '.join(clashes)}"
        )


def open_run(out: Path, config: dict, resume: bool) -> dict | None:
    """Check `out` for a fresh start or a resume (the one resume check: config.json against
    `config`, the run config this invocation computes); on resume the newest checkpoint's state
    (None when the run died before its first checkpoint). Nothing is written."""
    if not resume:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InvalidInput(
                f"{out} already holds files; pass --resume to continue it or choose a new --out"
            )
        writable_dir(out)
        return None
    check_resume(out, read_run_config(out), config)
    writable_dir(out)
    try:
        checkpoints = list_checkpoints(out)
    except InvalidInput:
        return None  # killed before the first checkpoint: start again from step 0
    return read_checkpoint(checkpoints[-1][1])
