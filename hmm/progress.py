"""Progress of long loops for every layer: a tqdm bar on a terminal, plain periodic lines in a log.

`progress(items, "probing checkpoints", unit="ckpt")` yields the items. When stderr is a terminal
it shows a tqdm bar; otherwise (a log file, a pipe, a captured test) it prints one line when the
loop starts, at most one every `every` seconds while it runs, and one when it ends, e.g.

    probing checkpoints: 0/41 ckpt
    probing checkpoints: 17/41 ckpt, 30 s, about 42 s left
    probing checkpoints: 41/41 ckpt in 72 s
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
EVERY_SECONDS = 30.0


def progress(
    items: Iterable[T],
    desc: str,
    unit: str = "it",
    total: int | None = None,
    every: float = EVERY_SECONDS,
    bar: bool | None = None,
) -> Iterator[T]:
    """Yield `items`, showing progress on stderr: a bar (bar=True), lines (False), or a bar exactly
    when stderr is a terminal (None)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if (sys.stderr.isatty() if bar is None else bar):
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, unit=unit, total=total, file=sys.stderr)
        return
    of = f"/{total}" if total is not None else ""
    started = last = time.perf_counter()
    print(f"{desc}: 0{of} {unit}", file=sys.stderr, flush=True)
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every and (total is None or done < total):
            last = now
            left = ""
            if total:
                left = f", about {(now - started) / done * (total - done):.0f} s left"
            print(f"{desc}: {done}{of} {unit}, {now - started:.0f} s{left}", file=sys.stderr,
                  flush=True)
    print(f"{desc}: {done}{of} {unit} in {time.perf_counter() - started:.0f} s", file=sys.stderr,
          flush=True)
