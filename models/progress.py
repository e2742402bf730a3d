"""What a training run shows and times while it runs: a tqdm bar or plain stderr lines, and
the run's clocks (wall, exact-evaluation and CPU seconds, summed over resumed segments)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class RunClock:
    """wall_s, eval_s and cpu_s of a run so far, every segment (resume) together."""

    def __init__(self, wall_s: float = 0.0, eval_s: float = 0.0, cpu_s: float = 0.0) -> None:
        self.wall_before, self.eval_s, self.cpu_before = wall_s, eval_s, cpu_s
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    @contextmanager
    def evaluating(self) -> Iterator[None]:
        """Count the block's wall seconds as exact evaluation."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.eval_s += time.perf_counter() - began

    def fields(self) -> dict[str, float]:
        return {
            "wall_s": round(self.wall_before + time.perf_counter() - self.started, 3),
            "eval_s": round(self.eval_s, 3),
            "cpu_s": round(self.cpu_before + time.process_time() - self.cpu_started, 3),
        }


class Progress:
    """tqdm bar (enabled=True), a line on stderr every 30 s (False), or whether stderr is a tty
    (None). Use as a context manager; `show(step, record)` after each logged step."""

    def __init__(
        self, total_steps: int, tokens_per_step: int, start_step: int, enabled: bool | None
    ) -> None:
        self.total_steps, self.tokens_per_step, self.start_step = (
            total_steps,
            tokens_per_step,
            start_step,
        )
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.bar: tqdm | None = None
        self.started = self.last_print = time.perf_counter()

    def __enter__(self) -> Progress:
        if self.enabled:
            self.bar = tqdm(
                total=self.total_steps * self.tokens_per_step,
                initial=self.start_step * self.tokens_per_step,
                unit="tok",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def show(self, step: int, record: dict) -> None:
        now = time.perf_counter()
        if self.bar is not None:
            self.bar.n = step * self.tokens_per_step
            self.bar.set_postfix(
                loss=f"{record['loss']:.4f}", excess=f"{record['excess_loss']:.5f}", refresh=False
            )
            self.bar.refresh()
            return
        if now - self.last_print <= 30 and step != self.total_steps:
            return
        self.last_print = now
        rate = (step - self.start_step) * self.tokens_per_step / max(now - self.started, 1e-9)
        exact = record.get("exact_excess_loss")
        print(
            f"step {step}/{self.total_steps} tokens {step * self.tokens_per_step:,} "
            f"loss {record['loss']:.4f} excess {record['excess_loss']:.5f}"
            + (f" exact-excess {exact:.5f}" if exact is not None else "")
            + f" {rate:,.0f} tok/s",
            file=sys.stderr,
            flush=True,
        )
