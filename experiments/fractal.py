"""`beliefgeo processes` and `beliefgeo fractal`: the built-ins and true belief geometry.

render_fractal writes OUT/fractal.png (mixed-state presentation beside the chaos game) and
OUT/fractal.json (node counts, entropy rate, optimal loss by position, dimension estimate).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from hmm import BUILTINS, HMM, load_process
from hmm.builtins import describe_params
from hmm.files import writable_dir, write_atomic, write_json
from hmm.fractal import box_counting_dimension
from hmm.memory import check_fits
from hmm.msp import BELIEF_DECIMALS, merge_beliefs
from hmm.plots import plot_simplex
from hmm.progress import progress

MAX_DEFAULT_NODES = 300_000
MAX_DEPTH = 40
LOSS_POSITIONS = 12


def describe_processes() -> str:
    """One block per built-in: name, parameters with defaults, one-line description, example."""
    lines = ["Built-in processes (PROCESS = name, name:key=value,..., or a JSON spec file):", ""]
    for name, entry in BUILTINS.items():
        lines.append(f"  {name:<12} {entry.description}")
        lines.append(f"  {'':<12} parameters: {describe_params(name)}")
    lines += ["", "Spec file: {\"name\", \"states\", \"symbols\", \"transitions\": {symbol: "
              "[[P(emit symbol, go to j | in i)]]}, \"initial\": null}"]
    return "\n".join(lines)


def default_depth(process: HMM, max_nodes: int = MAX_DEFAULT_NODES) -> int:
    """Largest depth (<= MAX_DEPTH) whose full tree, sum_{d<=depth} V^d nodes, fits in max_nodes."""
    V, depth, total = process.n_symbols, 0, 1
    while depth < MAX_DEPTH and total + V ** (depth + 1) <= max_nodes:
        depth += 1
        total += V**depth
    return depth


def msp_bytes(process: HMM, depth: int, cap: int = 2**62) -> int:
    """Peak bytes of the MSP to `depth` and its dedup (at most `cap`, so huge depths stay cheap):
    at most sum_{d<=depth} V^d nodes, each with its belief three times over (tree, rounded keys,
    sorted copy) and seven 8-byte indices."""
    per_node = 3 * 8 * process.n_states + 7 * 8
    nodes, level = 0, 1
    for _ in range(depth + 1):
        nodes += level
        if nodes * per_node > cap:
            return cap + 1
        level *= process.n_symbols
    return nodes * per_node


def chaos_bytes(process: HMM, points: int) -> int:
    """Peak bytes of `points` chaos-game beliefs: tokens and states, the beliefs six times
    over (filter output, reordered copy, rounded keys, sorted copy, box-counting charts) and three
    indices."""
    return points * (2 * 8 + 6 * 8 * process.n_states + 3 * 8)


def check_memory(process: HMM, depth: int, points: int) -> None:
    """Refuse, before allocating, a depth or point count whose arrays cannot fit in memory."""

    def largest_depth(free: int) -> str:
        depth = 0
        while msp_bytes(process, depth + 1, cap=free) <= free:
            depth += 1
        return f"--depth {depth}"

    cap = 2**62  # past any machine's memory; keeps the node count of a huge depth cheap
    check_fits(
        msp_bytes(process, depth, cap=cap),
        f"--depth {depth} (the mixed-state tree of up to {process.n_symbols}^{depth} sequences)",
        largest_depth,
    )
    check_fits(
        chaos_bytes(process, points),
        f"--points {points:,}",
        lambda free: f"--points {free // chaos_bytes(process, 1):,}",
    )


def render_fractal(process: str | Path | dict, depth: int | None = None, points: int = 100_000,
                   out: str | Path = "fractal") -> dict:
    """Compute the belief geometry of `process` and write OUT/fractal.png + OUT/fractal.json.

    Returns the JSON summary. Bad process specs, unwritable `out`, and a depth or point count
    whose arrays would not fit in memory (checked before anything is allocated) raise InvalidInput.
    """
    p = load_process(process)
    depth = default_depth(p) if depth is None else int(depth)
    check_memory(p, depth, int(points))
    out = writable_dir(out)
    started = time.perf_counter()
    stages = progress(["mixed-state tree", "chaos game", "dimensions", "figure"],
                      f"fractal {p.name}", unit="stage")  # fmt: skip
    next(stages)
    msp = p.msp(depth)
    distinct = msp.unique()
    next(stages)
    chaos = p.chaos_game(int(points), seed=0)
    next(stages)
    dimension = box_counting_dimension(chaos)
    complexity = p.statistical_complexity()
    loss = p.optimal_loss(LOSS_POSITIONS)
    summary = {
        "process": p.name,
        "spec": p.to_spec(),
        "depth": depth,
        "n_nodes": msp.n_nodes,
        "n_distinct_beliefs": len(distinct.probs),
        "distinct_decimals": BELIEF_DECIMALS,
        "entropy_rate": p.entropy_rate(),
        "optimal_loss": loss.tolist(),
        "statistical_complexity": complexity.value,
        "statistical_complexity_note": complexity.note,
        "points": int(points),
        "dimension": dimension,
        "dimension_source": "box counting on the chaos-game points (hmm.fractal); the sampled "
        "measure is uneven, so fine boxes are under-counted: read it with fit_range and "
        "local_slopes",
        "dimension_msp": box_counting_dimension(distinct.beliefs),
        "dimension_msp_source": "box counting on the distinct MSP beliefs to `depth` (the support)",
        "seconds": round(time.perf_counter() - started, 3),
    }
    next(stages)
    fig = _figure(p, distinct.beliefs, chaos, depth, summary)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    write_atomic(out / "fractal.png", buf.getvalue())
    write_json(out / "fractal.json", summary)
    for _ in stages:  # the closing progress line
        pass
    return summary


def _figure(p: HMM, msp_beliefs: np.ndarray, chaos: np.ndarray, depth: int, summary: dict):
    fig = Figure(figsize=(11, 5.8))  # no pyplot: no global backend switch, nothing to close
    axes = fig.subplots(1, 2)
    plot_simplex(axes[0], msp_beliefs, s=_marker_size(len(msp_beliefs)), labels=p.states,
                 title=f"Every mixed state to depth {depth}: {len(msp_beliefs):,} distinct "
                       f"beliefs\n({summary['n_nodes']:,} tree nodes); box-counting dimension ~ "
                       f"{_dimension_text(summary['dimension_msp'])}")
    visited = merge_beliefs(chaos, np.ones(len(chaos)))
    dim_text = _dimension_text(summary["dimension"])
    if len(visited.probs) <= 5000:  # few distinct beliefs: one marker each, area ~ visit frequency
        sizes = 8 + 400 * visited.probs / visited.probs.max()
        plot_simplex(axes[1], visited.beliefs, s=sizes, labels=p.states)
    else:
        plot_simplex(axes[1], chaos, s=_marker_size(len(chaos)), labels=p.states)
    axes[1].set_title(f"Chaos game: {len(chaos):,} beliefs on sampled sequences after burn-in\n"
                      f"{len(visited.probs):,} distinct; box-counting dimension ~ {dim_text}",
                      fontsize=10)
    cmu = summary["statistical_complexity"]
    cmu_text = "n/a (the MSP does not close)" if cmu is None else f"{cmu:.3f} nats"
    fig.suptitle(
        f"{p.name}: exact (left) and sampled (right) beliefs in the {p.n_states}-state simplex\n"
        f"colour = belief ({'RGB' if p.n_states == 3 else 'mix of corner colours'}); "
        f"entropy rate {summary['entropy_rate']:.4f} nats/symbol; statistical complexity "
        f"{cmu_text}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def _marker_size(n: int) -> float:
    return 12.0 if n <= 200 else 4.0 if n <= 5000 else 1.0 if n <= 50_000 else 0.8


def _dimension_text(result: dict) -> str:
    dim = result["dimension"]
    return "n/a (too few scales)" if dim is None else f"{dim:.2f}"
