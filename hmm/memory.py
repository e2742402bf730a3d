"""Refuse a request whose memory is known in advance before anything is allocated.

A request that cannot fit (an MSP depth, chaos-game points, probe inputs, a sweep) would otherwise
end in a MemoryError traceback or the machine swapping. `check_fits` compares the bytes a request
needs with the memory this machine can still give without swapping and raises `InvalidInput`
(exit 2, one line) saying what fits instead.

Available memory is the kernel's MemAvailable (/proc/meminfo), capped by the container's cgroup v2
limit when there is one; elsewhere free physical pages (os.sysconf). Where none can be read the
check passes: it refuses only what is known not to fit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from hmm.errors import InvalidInput

_MEMINFO = Path("/proc/meminfo")
_CGROUP = Path("/sys/fs/cgroup")


def _meminfo_available() -> int | None:
    try:
        for line in _MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_available() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom() -> int | None:
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        used = int((_CGROUP / "memory.current").read_text())
        stat = (_CGROUP / "memory.stat").read_text().split()
    except (OSError, ValueError):
        return None
    if not limit.isdigit():  # "max": no container limit
        return None
    # the page cache counts in memory.current but is given back on demand
    reclaimable = dict(zip(stat[::2], stat[1::2], strict=False)).get("inactive_file", "0")
    return max(int(limit) - used + int(reclaimable), 0)


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None where unknown."""
    machine = _meminfo_available()
    if machine is None:
        machine = _sysconf_available()
    container = _cgroup_headroom()
    known = [b for b in (machine, container) if b is not None]
    return min(known) if known else None


def gigabytes(n_bytes: float) -> str:
    """`40.0 GB` (10**9 bytes), the unit every refusal uses."""
    return f"{n_bytes / 1e9:.1f} GB"


def check_fits(n_bytes: int, what: str, largest: str | Callable[[int], str]) -> None:
    """Raise InvalidInput when `what` needs more than the available memory.

    `n_bytes`: what the request will allocate at its peak; `what`: the request in the user's words
    ("--depth 30 (3**30 mixed states)"); `largest`: the largest request that fits, as text, or a
    function of the available bytes returning that text (so the caller need not read memory itself).
    Message: "--depth 30 needs 40.0 GB, this machine has 23.1 GB available; the largest that fits
    is --depth 21".
    """
    available = available_memory()
    if available is None or n_bytes <= available:
        return
    hint = largest(available) if callable(largest) else largest
    raise InvalidInput(
        f"{what} needs {gigabytes(n_bytes)}, this machine has {gigabytes(available)} available; "
        f"the largest that fits is {hint}"
    )
