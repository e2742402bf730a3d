"""Where computation runs: the torch device of a run and the CPU thread count.

Probes import `cpu_threads` and `torch_threads` from here without importing the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from hmm.errors import InvalidInput

# torch intra-op threads on CPU (default 1): these models' matrices are tiny, and on a busy 2-core
# machine two spinning OpenMP threads made a small run 45x slower than one thread
THREADS_ENV = "BELIEFGEO_THREADS"
DEVICES = ("auto", "cpu", "cuda")


def cpu_threads() -> int:
    """Torch intra-op threads for CPU work: BELIEFGEO_THREADS, default 1."""
    text = os.environ.get(THREADS_ENV) or "1"
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"{THREADS_ENV}={text!r}; set it to a whole number of threads >= 1")
    return int(text)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `n` (unchanged when None), then
    restore the caller's count."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def thread_budget() -> Iterator[None]:
    """Run the block on BELIEFGEO_THREADS CPU threads (default 1), torch and BLAS/OpenMP pools
    alike, restoring both afterwards: numpy's BLAS would otherwise use every core (probe used
    about 1.6 of 2 cores although torch ran one thread)."""
    n = cpu_threads()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # installed with scikit-learn; without it only torch is limited
        threadpool_limits = None
    with torch_threads(n), (threadpool_limits(limits=n) if threadpool_limits else nullcontext()):
        yield


def pick_device(name: str | torch.device) -> torch.device:
    """The torch device of run option `name`: auto (cuda when torch sees a GPU, else cpu), cpu,
    cuda. cuda without a GPU -> InvalidInput."""
    if isinstance(name, torch.device):
        return name
    if name not in DEVICES and not str(name).startswith("cuda:"):
        raise InvalidInput(f"--device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInput(
            f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu or auto"
        )
    return torch.device(name)
