"""The local learning coefficient (LLC) of one model at its current weights, with devinterp's SGLD.

Estimator (Lau et al. 2023, "Quantifying degeneracy in singular models via the learning
coefficient", arXiv 2308.12108): sample w from the localized tempered posterior
p(w) ∝ exp(-nβ L_n(w) - γ/2 |w - w*|²) with SGLD started at the weights w*, then

    λ̂ = nβ (E_w[L_n(w)] - L_n(w*)),

L_n being the mean loss over a fixed set of n data windows. devinterp (2.0.1, an optional
dependency imported only here) runs the chains: SGLD steps Δw = -ε/2 (nβ ∇L_batch + γ (w - w*))
+ N(0, ε), each chain on its own shuffle of the windows (so chains see different batches and their
spread means something), its on-disk sample store in a temporary folder removed afterwards.
We reduce its per-step loss trace ourselves: E_w[L_n] is the mean batch loss over the draws after
the first `burnin_frac` of them, L_n(w*) the loss over every window at w*.

Flags instead of silent numbers (FLAGS; docs/llc.md):
  not_at_minimum      λ̂ < 0: the chains found lower loss nearby, so w* is not a local minimum;
  not_settled         the estimate from the last quarter of the draws differs from the one from
                      the middle quarter by more than settle_tol · max(|λ̂|, 1);
  loss_nonfinite      a chain's loss became NaN or infinite (that chain is dropped);
  loss_above_uniform  a chain's mean loss over a stretch of draws exceeded the ceiling (ln V for a
                      next-token loss: worse than predicting uniformly) — the chains left the basin.

`calibrate` runs a grid of (step size ε, localization γ, nβ) on one model and picks settings
where the traces settle (rule in `pick_settings`).
"""

from __future__ import annotations

import contextlib
import gc
import io
import math
import random
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from hmm.errors import InvalidInput
from models.architectures import training_forward
from models.compute import cpu_threads, torch_threads
from models.loss import next_token_losses
from probes.llc_settings import CALIBRATION_RULE, FLAGS, CalibrationGrid, LLCSettings

TRACE_BINS = 20  # the loss trace kept per chain in llc.json: mean over this many stretches

WindowLoss = Callable[[nn.Module, Tensor], Tensor]  # (model, windows (b, L+1)) -> (b, L)


class NextTokenWindowLoss:
    """(model, windows (b, L+1) int64) -> per-position cross-entropy (b, L), nats: the training
    loss (inputs windows[:, :-1], targets windows[:, 1:]) through the model's training forward.

    devinterp deep-copies the model for every chain; a TransformerBridge's own forward breaks on a
    copy (a hook wired on first use still points at the original), so every model gets its own
    `models.architectures.training_forward` (PlainForward over that copy's parameters), built once.
    """

    def __init__(self) -> None:
        self._forwards: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, model: nn.Module, windows: Tensor) -> Tensor:
        forward = self._forwards.get(model)
        if forward is None:
            forward = training_forward(model)
            if forward is not model:  # a model as its own value would never be freed
                self._forwards[model] = forward
        return next_token_losses(forward(windows[:, :-1]), windows)


def estimate_llc(
    model: nn.Module,
    windows: Tensor,
    loss: WindowLoss,
    settings: LLCSettings,
    device: str | torch.device = "cpu",
    loss_ceiling: float | None = None,
) -> dict:
    """λ̂ of `model` at its current weights (left unchanged) on `windows` (n, L+1) int64.

    `loss(model, windows)` -> (b, L) per-position losses; `loss_ceiling`: ln V for a next-token
    loss (flag loss_above_uniform), None for none. Returns {"llc_mean", "llc_sd" (across chains),
    "llc_per_chain", "init_loss", "trace", "flags", "cpu_s", "wall_s"}; NaN (JSON null) where no
    chain finished. Runs on BELIEFGEO_THREADS torch threads (default 1).
    """
    if windows.ndim != 2 or windows.shape[1] < 2 or windows.dtype != torch.int64:
        raise InvalidInput(f"LLC windows must be (n, L+1 >= 2) int64, got {tuple(windows.shape)}")
    if len(windows) != settings.windows:
        raise InvalidInput(f"got {len(windows)} windows, the settings say {settings.windows}")
    clock, wall = time.process_time(), time.perf_counter()
    with torch_threads(cpu_threads()):  # two spinning threads on a busy 2-core machine: 15x slower
        losses, init_loss, failures = _sample(model, windows, loss, settings, device)
    result = reduce_trace(losses, init_loss, settings, loss_ceiling)
    if failures:
        result["flags"] = sorted(set(result["flags"]) | {"loss_nonfinite"}, key=FLAGS.index)
    result["cpu_s"] = time.process_time() - clock
    result["wall_s"] = time.perf_counter() - wall
    return result


def _sample(
    model: nn.Module,
    windows: Tensor,
    loss: WindowLoss,
    settings: LLCSettings,
    device: str | torch.device,
) -> tuple[np.ndarray, float, int]:
    """devinterp's chains -> (per-step batch losses (chains, draws), L_n(w*), failed chains).

    The global RNGs devinterp seeds are restored afterwards; its progress bars are silenced. The
    objects alive before sampling are frozen out of the garbage collector meanwhile: devinterp
    collects twice per chain, and with torch and transformers loaded each full collection cost
    0.85 s (more than a toy model's 500 SGLD steps)."""
    from datasets import Dataset
    from devinterp.slt.sampling import sample

    dataset = Dataset.from_dict({"input_ids": windows.cpu().numpy()}).with_format("torch")
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    gc.freeze()
    with (
        tempfile.TemporaryDirectory(prefix="beliefgeo-llc-") as folder,
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stderr(io.StringIO()),
    ):
        warnings.simplefilter("always")
        try:
            samples = sample(
                model, dataset, {}, lr=settings.lr, n_beta=settings.n_beta,
                localization=settings.localization, num_chains=settings.chains,
                num_draws=settings.draws, batch_size=settings.batch_size,
                num_init_loss_batches=settings.windows // settings.batch_size,
                init_seed=settings.sampler_seed, shuffle=True,
                match_sampling_input_ids_across_chains=False, device=str(device),
                output_path=Path(folder) / "samples.zarr", loss_fn=loss,
            )  # fmt: skip
            data = samples.dataset
            losses = np.asarray(data.sampling_loss_micro.values, np.float64).mean(axis=(2, 3))
            init_loss = float(np.asarray(data.init_loss.values, dtype=np.float64).mean())
        finally:
            torch.set_rng_state(states[0])
            np.random.set_state(states[1])
            random.setstate(states[2])
            gc.unfreeze()
    failures = sum("Chain failed" in str(w.message) for w in caught)
    for w in caught:
        if "Chain failed" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return losses, init_loss, failures


def reduce_trace(
    losses: np.ndarray, init_loss: float, settings: LLCSettings, loss_ceiling: float | None
) -> dict:
    """λ̂ and its flags from per-step batch losses (chains, draws) and L_n(w*).

    A chain whose loss turns non-finite is dropped from that step on (devinterp stops it there and
    leaves the rest of its row unfilled) and flags loss_nonfinite. Quarters: middle = draws
    [3/8, 5/8) of the run, last = [3/4, 1)."""
    n_beta, draws = settings.n_beta, losses.shape[1]
    finite = np.isfinite(losses)
    ok = finite.all(axis=1)
    kept = losses[ok]
    start = int(settings.burnin_frac * draws)

    def llc(part: slice) -> np.ndarray:
        return n_beta * (kept[:, part].mean(axis=1) - init_loss)

    per_chain = llc(slice(start, None)) if ok.any() else np.full(0, np.nan)
    middle = llc(slice(3 * draws // 8, 5 * draws // 8)) if ok.any() else per_chain
    last = llc(slice(3 * draws // 4, None)) if ok.any() else per_chain
    mean = float(per_chain.mean()) if ok.any() else math.nan
    bins = np.array_split(np.arange(draws), min(TRACE_BINS, draws))
    binned = np.array([[row[b].mean() for b in bins] for row in kept]).reshape(len(kept), len(bins))
    loss_max = float(binned.max()) if binned.size else math.nan
    drift = float(last.mean() - middle.mean()) if ok.any() else math.nan
    flags = []
    if mean < 0:
        flags.append("not_at_minimum")
    if ok.any() and abs(drift) > settings.settle_tol * max(abs(float(last.mean())), 1.0):
        flags.append("not_settled")
    if not ok.all():
        flags.append("loss_nonfinite")
    if loss_ceiling is not None and loss_max > loss_ceiling:
        flags.append("loss_above_uniform")
    return {
        "llc_mean": mean,
        "llc_sd": float(per_chain.std(ddof=1)) if len(per_chain) > 1 else math.nan,
        "llc_per_chain": [float(v) for v in llc(slice(start, None))] if ok.any() else [],
        "init_loss": init_loss,
        "trace": {
            "draws": draws,
            "bin_centres": [float(b.mean()) for b in bins],
            "loss": binned.tolist(),
            "llc_middle_quarter": float(middle.mean()) if ok.any() else math.nan,
            "llc_last_quarter": float(last.mean()) if ok.any() else math.nan,
            "drift": drift,
            "loss_max": loss_max,
        },
        "flags": flags,
    }


# ---- calibration ------------------------------------------------------------------------------
def calibrate(
    model: nn.Module,
    windows: Tensor,
    loss: WindowLoss,
    base: LLCSettings,
    grid: CalibrationGrid,
    device: str | torch.device = "cpu",
    loss_ceiling: float | None = None,
    progress: Callable[[Iterable], Iterable] = iter,
) -> dict:
    """Estimate λ̂ at every grid cell (other settings from `base`) and pick one (CALIBRATION_RULE).

    Returns {"rule", "grid": [cell dicts with "lr", "localization", "n_beta", "llc_mean",
    "llc_sd", "init_loss", "drift", "loss_max", "flags", "usable", "picked"; the
    picked cell also "trace"], "chosen": {"lr",
    "localization", "n_beta"} or None, "cpu_s"}."""
    clock = time.process_time()
    cells = []
    for lr, gamma, n_beta in progress(list(grid.cells())):
        settings = replace(base, lr=lr, localization=gamma, n_beta=n_beta, chains=grid.chains)
        found = estimate_llc(model, windows, loss, settings, device, loss_ceiling)
        cells.append(
            {
                "lr": lr,
                "localization": gamma,
                "n_beta": n_beta,
                "llc_mean": found["llc_mean"],
                "llc_sd": found["llc_sd"],
                "init_loss": found["init_loss"],
                "drift": found["trace"]["drift"],
                "loss_max": found["trace"]["loss_max"],
                "flags": found["flags"],
                "usable": not found["flags"],
                "trace": found["trace"],
            }
        )
    chosen = pick_settings(cells)
    for cell in cells:
        cell["picked"] = chosen is not None and all(cell[k] == chosen[k] for k in chosen)
        if not cell["picked"]:
            del cell["trace"]  # only the chosen cell's trace is kept (for the figure)
    return {"rule": CALIBRATION_RULE, "grid": cells, "chosen": chosen,
            "cpu_s": time.process_time() - clock}  # fmt: skip


def pick_settings(cells: list[dict]) -> dict | None:
    """{"lr", "localization", "n_beta"} of the cell CALIBRATION_RULE picks, None when none is
    usable. A cell is usable when it carries no flag (see FLAGS)."""
    usable = [c for c in cells if c["usable"]]
    if not usable:
        return None
    best = min(usable, key=lambda c: (c["localization"] / c["n_beta"], c["lr"]))
    return {k: best[k] for k in ("lr", "localization", "n_beta")}
