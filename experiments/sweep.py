"""`beliefgeo sweep SPEC --out DIR`: every combination of a spec's axes, one ordinary run folder
each, run as Ray tasks (an embedded local Ray by default, an existing cluster with --address).

SPEC is JSON: {"base": {training options}, "axes": {option: [values, ...], ...}}, the options
being the `train` flags with `-` written `_` (see `experiments.pipeline.with_settings`). Axes cross;
a linked axis "arch+act_fn": [["transformer", "relu"], ["rnn", "tanh"], ["lstm", null]] varies
options together (null: the option is not set at that point, and not part of its name).
Each point trains → probes → phases → report into DIR/<name> (name from its axis values, e.g.
`act_fn=relu,seed=1`), readable by every other command. The whole spec is validated (every point
dry-resolved) before anything starts.

Restartable and fault-isolated: a point is finished when its folder holds `point.json`; a re-run
of the same command skips finished points and resumes partial ones from their newest checkpoint.
A point that fails (divergence, out of memory, a crash) is recorded with its error in
DIR/summary.json and the others finish. DIR/.sweep/ holds the bookkeeping: one lock per point
(two drivers never train one point twice at once), each point's log, the shared fractal.
DIR/sweep.json records the spec so a different sweep is never mixed into DIR.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from hmm.errors import InvalidInput
from hmm.files import read_json, writable_dir, write_json

SWEEP_FORMAT = "beliefgeo-sweep/1"
POINT_FILE = "point.json"  # written last into a finished point's run folder
SEED = "seed"
LINK = "+"  # "arch+act_fn": options varied together
BOOKKEEPING = ".sweep"


@dataclass(frozen=True)
class Point:
    """One combination of axis values: its folder name, its axis values and every setting."""

    name: str
    values: tuple[tuple[str, object], ...]  # (option, value) in axis order
    settings: dict

    @property
    def setting(self) -> str:
        """The name of its setting: the axis values other than the seed."""
        named = [(k, v) for k, v in self.values if k != SEED and v is not None]
        return ",".join(f"{k}={_label(v)}" for k, v in named) or "base"


# ---- the spec -----------------------------------------------------------------------------------
def load_spec(path: str | Path) -> dict:
    """Read and shape-check a sweep spec: {"base": {...}, "axes": {...}}."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"{path} is not a file; give a sweep spec .json (see docs/sweeps.md)")
    spec = read_json(path)
    if not isinstance(spec, dict) or set(spec) - {"base", "axes", "description"}:
        raise InvalidInput(
            f"{path} must hold an object with keys base, axes (and optionally description)"
        )
    return {"base": spec.get("base", {}), "axes": spec.get("axes", {})}


def expand(spec: dict) -> list[Point]:
    """Every combination of the axes (first axis slowest), validated for shape and known options."""
    from experiments.pipeline import setting_keys

    known = set(setting_keys())
    base, axes = spec["base"], spec["axes"]
    if not isinstance(base, dict) or not isinstance(axes, dict):
        raise InvalidInput("sweep spec: base and axes must be JSON objects")
    unknown = sorted(set(base) - known)
    if unknown:
        raise InvalidInput(
            f"base has unknown option(s) {unknown}; known: {', '.join(sorted(known))}"
        )
    columns = []
    for axis, values in axes.items():
        keys = axis.split(LINK)
        bad = [k for k in keys if k not in known]
        if bad:
            raise InvalidInput(
                f"unknown axis {axis!r} ({', '.join(bad)}); known: {', '.join(sorted(known))}"
            )
        if not isinstance(values, list) or not values:
            raise InvalidInput(f"axis {axis!r} is empty or not a list; give at least one value")
        rows = []
        for value in values:
            parts = value if len(keys) > 1 else [value]
            if not isinstance(parts, list) or len(parts) != len(keys):
                raise InvalidInput(f"axis {axis!r}: value {value!r} must be a list of {len(keys)}")
            if not all(p is None or isinstance(p, str | int | float | bool) for p in parts):
                raise InvalidInput(f"axis {axis!r}: value {value!r} must be numbers or strings")
            rows.append(tuple(zip(keys, parts, strict=True)))
        if len(set(map(_key, rows))) != len(rows):
            raise InvalidInput(f"axis {axis!r} repeats a value: {values}")
        columns.append(rows)
    points = []
    for combo in itertools.product(*columns):
        values = tuple(pair for group in combo for pair in group)
        name = ",".join(f"{k}={_label(v)}" for k, v in values if v is not None) or "base"
        points.append(Point(name, values, {**base, **dict(values)}))
    names = [p.name for p in points]
    if len(set(names)) != len(names):
        raise InvalidInput("two axis values give the same folder name; make them differ more")
    return points


def _key(row: tuple) -> str:
    return json.dumps(row)


def _label(value: object) -> str:
    """A value as it appears in a folder name: file paths by their stem, odd characters as _."""
    if isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, str) and ("/" in value or value.endswith(".json")):
        text = Path(value).stem
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+:-]", "_", text)[:60]


def point_plans(points: list[Point], base_plan=None) -> dict:
    """Each point's Study, dry-resolved (process, recipe, model config) so bad values show now."""
    from experiments.pipeline import Study, resolve_study, with_settings

    base_plan = base_plan or Study(process="", why="A point of a beliefgeo sweep.")
    plans = {}
    for point in points:
        try:
            plan = with_settings(base_plan, _absolute_paths(point.settings))
            if not plan.process:
                raise InvalidInput('the spec names no process; add "process" to base or axes')
            resolve_study(plan)
            ps = plan.probe_sequences
            if ps is not None and (isinstance(ps, bool) or not isinstance(ps, int) or ps < 1):
                raise InvalidInput(f"probe_sequences must be an integer >= 1, got {ps!r}")
        except InvalidInput as exc:
            raise InvalidInput(f"point {point.name}: {exc}") from None
        plans[point.name] = plan
    return plans


def _absolute_paths(settings: dict) -> dict:
    """Process and recipe files as absolute paths, so Ray workers in any folder find them."""
    fixed = dict(settings)
    for key in ("process", "config"):
        value = fixed.get(key)
        if isinstance(value, str) and Path(value).is_file():
            fixed[key] = str(Path(value).resolve())
    return fixed


# ---- the output folder --------------------------------------------------------------------------
def claim_folder(out: Path, record: dict) -> None:
    """Check that `out` is empty, absent or holds this very sweep; nothing is written here."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} is a file; give a folder")
    if not out.exists() or not any(out.iterdir()):
        return
    stored_path = out / "sweep.json"
    if not stored_path.is_file():
        raise InvalidInput(f"{out} holds files but no sweep.json; give an empty or new --out")
    stored = read_json(stored_path)
    mine = json.loads(json.dumps(record))
    if not isinstance(stored, dict) or {k: stored.get(k) for k in mine} != mine:
        raise InvalidInput(
            f"{out} holds a different sweep (its sweep.json differs); give a new --out"
        )


# ---- Ray ----------------------------------------------------------------------------------------
def connect(address: str | None, max_parallel: int):
    """Start an embedded local Ray (num_cpus = max_parallel) or attach to `address`."""
    import logging

    if address is not None and ":" in address and address != "auto":
        host, _, port = address.rpartition(":")
        host = host.removeprefix("ray://") or "127.0.0.1"
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"cannot reach a Ray cluster at --address {address} ({exc}); start one with "
                "`ray start --head` or drop --address for a local Ray"
            ) from None
    import ray

    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address is None:
            # "local": a new instance even when another Ray runs on this machine
            ray.init(address="local", num_cpus=max_parallel, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InvalidInput(
            f"cannot attach to Ray at --address {address}: {' '.join(str(exc).split())} (a "
            "cluster with token authentication also needs RAY_AUTH_MODE=token here)"
        ) from None
    return ray


def task_resources(ray, max_parallel: int) -> dict:
    """One CPU per point; a GPU (or an even share of the cluster's GPUs) where there is one."""
    gpus = ray.cluster_resources().get("GPU", 0)
    if not gpus:
        return {"num_cpus": 1}
    return {"num_cpus": 1, "num_gpus": 1 if gpus >= max_parallel else gpus / max_parallel}


def run_point(out: str, name: str, plan, title: str, fractal_cache: str) -> dict:
    """A Ray task: train → probe → phases → report one point; never raises (errors are returned).

    Holds DIR/.sweep/locks/<name>.lock while it works, so a point is never trained twice at
    once; the training device follows the task's resources (a GPU when Ray assigned one).
    """
    import fcntl

    from experiments.pipeline import run_study
    from models.compute import thread_budget

    run, books = Path(out) / name, Path(out) / BOOKKEEPING
    started, cpu_started = time.perf_counter(), time.process_time()
    device = "cuda" if _assigned_gpus() else "cpu"
    with open(books / "locks" / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (run / POINT_FILE).is_file():
            return read_json(run / POINT_FILE)
        log = books / "logs" / f"{name}.log"
        try:
            with (
                open(log, "a") as stream,
                contextlib.redirect_stdout(stream),
                contextlib.redirect_stderr(stream),
                thread_budget(),
            ):
                run_study(plan, run, None, title, device=device, fractal_cache=Path(fractal_cache))
        except BaseException as exc:  # noqa: BLE001 — a failing point must not stop the sweep
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            with open(log, "a") as stream:
                traceback.print_exc(file=stream)
            return {"name": name, "status": "failed", "error": _one_line(exc), "log": str(log)}
        record = {
            "format": SWEEP_FORMAT,
            "name": name,
            "status": "done",
            "started_at": round(time.time() - (time.perf_counter() - started), 2),  # epoch s
            "seconds": round(time.perf_counter() - started, 1),
            "cpu_s": round(time.process_time() - cpu_started, 2),  # this worker process's CPU
            "worker_pid": os.getpid(),
            "device": device,
        }
        write_json(run / POINT_FILE, record)
        return record


def _assigned_gpus() -> list:
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 — outside a Ray task there is no GPU assignment
        return []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no message"
    return f"{type(exc).__name__}: {text}"[:500]


# ---- the driver ---------------------------------------------------------------------------------
def sweep(
    spec_path: str | Path,
    out: str | Path,
    address: str | None = None,
    max_parallel: int | None = None,
) -> int:
    """`beliefgeo sweep`: validate, run every unfinished point, summarise. Returns the exit status
    (0 all points done, 1 some failed)."""
    spec = load_spec(spec_path)
    points = expand(spec)
    plans = point_plans(points)
    record = {"format": SWEEP_FORMAT, "base": spec["base"], "axes": spec["axes"]}
    return run_sweep(points, plans, Path(out), record, address, max_parallel, title="sweep")


def run_seeds(plan, out: Path, seeds: list[int], title: str) -> Path:
    """Seeds of one study, one after another (max-parallel 1), with a summary over seeds."""
    points = expand({"base": {}, "axes": {SEED: seeds}})
    plans = point_plans(points, base_plan=plan)
    record = {"format": SWEEP_FORMAT, "study": asdict(plan), "axes": {SEED: seeds}}
    failed = run_sweep(points, plans, Path(out), record, None, 1, title=title)
    if failed:
        raise InvalidInput(f"{failed} of {len(seeds)} seeds failed: see {out / 'summary.json'}")
    return Path(out)


def run_sweep(
    points: list[Point],
    plans: dict,
    out: Path,
    record: dict,
    address: str | None,
    max_parallel: int | None,
    title: str,
    summarise: bool = True,
) -> int:
    """Run the unfinished points as Ray tasks, then write the summary; returns 1 if any failed."""
    from experiments.sweep_summary import headline_lines, write_summary

    if max_parallel is not None and (isinstance(max_parallel, bool) or max_parallel < 1):
        raise InvalidInput(f"--max-parallel must be >= 1, got {max_parallel}")
    claim_folder(out, record)
    todo = [p for p in points if not (out / p.name / POINT_FILE).is_file()]
    results = {p.name: read_json(out / p.name / POINT_FILE) for p in points if p not in todo}
    if todo:
        parallel = max_parallel or (len(todo) if address else os.cpu_count() or 1)
        ray = connect(address, parallel)
        try:
            writable_dir(out)
            write_json(out / "sweep.json", record)
            for sub in ("locks", "logs", "fractal"):
                writable_dir(out / BOOKKEEPING / sub)
            results.update(_drive(ray, todo, plans, out, parallel, title, len(results)))
        finally:
            ray.shutdown()
    failed = [r for r in results.values() if r.get("status") != "done"]
    if summarise:
        rows = write_summary(out, points, results, record)
        print("\n".join(headline_lines(rows[:20])))
    line = f"{len(points) - len(failed)} of {len(points)} points done"
    if failed:
        print(f"{len(failed)} of {len(points)} points failed: see {out / 'summary.json'}",
              file=sys.stderr)  # fmt: skip
    elif summarise:
        print(f"{line}; wrote {out / 'summary.csv'}, summary.json and report.html")
    return 1 if failed else 0


def _drive(ray, todo, plans, out, parallel, title, already) -> dict:
    """Submit at most `parallel` points at a time and collect them as they finish."""
    from tqdm import tqdm

    remote = ray.remote(max_retries=0, **task_resources(ray, parallel))(run_point)
    queue, pending, results = list(todo), {}, {}
    total = len(todo) + already
    bar = tqdm(total=total, initial=already, desc=title, disable=not sys.stderr.isatty())
    failed = 0
    try:
        while queue or pending:
            while queue and len(pending) < parallel:
                point = queue.pop(0)
                cache = out / BOOKKEEPING / "fractal" / _process_key(plans[point.name].process)
                ref = remote.remote(
                    str(out), point.name, plans[point.name], f"{title} {point.name}", str(cache)
                )
                pending[ref] = point
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                point = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 — a crashed worker (OOM, killed)
                    result = {"name": point.name, "status": "failed", "error": _one_line(exc)}
                results[point.name] = result
                failed += result.get("status") != "done"
                done = already + len(results)
                status = f"{done}/{total} done, {len(pending)} running, {failed} failed"
                if bar.disable:
                    note = "" if result.get("status") == "done" else f" ({result.get('error')})"
                    print(f"[{title}] {status}: {point.name} {result.get('status')}{note}",
                          file=sys.stderr, flush=True)  # fmt: skip
                else:
                    bar.set_postfix_str(f"{len(pending)} running, {failed} failed")
                    bar.update(1)
    finally:
        bar.close()
    return results


def _process_key(process: str) -> str:
    """A folder name for one process's shared fractal."""
    digest = hashlib.sha1(str(process).encode()).hexdigest()[:10]
    return f"{_label(process)}-{digest}"
