"""`beliefgeo processes` and `beliefgeo fractal`: the built-ins and true belief geometry.

render_fractal writes OUT/fractal.png (mixed-state presentation beside the chaos game) and
OUT/fractal.json (node counts, entropy rate, optimal loss by position, dimension estimate). States
are drawn where they live (hmm.plots.state_chart): the simplex for classical beliefs, the Bloch
disk for a qubit, principal axes otherwise; a mixture or product gets one row per component or
factor (its states are theirs: blocks of the mixture state, marginals of the product state).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hmm import BUILTINS, GHMM, Mixture, Product, load_process
from hmm.builtins import describe_params
from hmm.figure_style import new_figure, png_bytes
from hmm.files import read_json, writable_dir, write_atomic
from hmm.fractal import box_counting_dimension
from hmm.memory import check_fits
from hmm.msp import BELIEF_DECIMALS, merge_beliefs
from hmm.plots import plot_states, state_chart
from hmm.progress import progress
from hmm.records import Record, record, write_record
from models.run_files import ProcessSpec

MAX_DEFAULT_NODES = 300_000
MAX_DEPTH = 40
LOSS_POSITIONS = 12


@record
class BoxDimension(Record):
    dimension: float | None = None
    fit_range: list[float] | None = None
    scales: list[float] | None = None
    counts: list[int] | None = None
    local_slopes: list[float] | None = None
    n_points: int | None = None


@record
class FractalFile(Record):
    """OUT/fractal.json (RUN/fractal/fractal.json in a run)."""

    process: str | None = None
    spec: ProcessSpec | None = None
    depth: int | None = None
    n_nodes: int | None = None
    n_distinct_beliefs: int | None = None
    distinct_decimals: int | None = None
    entropy_rate: float | None = None
    optimal_loss: list[float] | None = None
    statistical_complexity: float | None = None
    statistical_complexity_note: str | None = None
    points: int | None = None
    dimension: BoxDimension | None = None  # of the chaos-game points (the attractor)
    dimension_source: str | None = None
    dimension_msp: BoxDimension | None = None  # of the distinct mixed-state beliefs (the support)
    dimension_msp_source: str | None = None
    seconds: float | None = None


def read_fractal(folder: str | Path) -> FractalFile | None:
    """FOLDER/fractal.json, typed; None when it was not computed."""
    path = Path(folder) / "fractal.json"
    return FractalFile.from_json(read_json(path)) if path.is_file() else None


def describe_processes() -> str:
    """One block per built-in: name, parameters with defaults, one-line description, example."""
    lines = ["Built-in processes (PROCESS = name, name:key=value,..., or a JSON spec file):", ""]
    for name, entry in BUILTINS.items():
        lines.append(f"  {name:<12} {entry.description}")
        lines.append(f"  {'':<12} parameters: {describe_params(name)}")
    lines += ["", "Spec file (docs/processes.md), by \"kind\":",
              "  hmm (default)  {\"name\", \"states\", \"symbols\", \"transitions\": {symbol: "
              "[[P(emit symbol, go to j | in i)]]}, \"initial\": null}",
              "  ghmm           the same keys; matrices may be negative (checked for negative word "
              "probabilities)",
              "  mixture        {\"components\": [name | \"name:k=v\" | spec path | spec], "
              "\"weights\": [...] summing to 1}",
              "  product        {\"factors\": [name | \"name:k=v\" | spec path | spec]}: token = "
              "tuple of factor symbols"]
    return "\n".join(lines)


def default_depth(process: GHMM, max_nodes: int = MAX_DEFAULT_NODES) -> int:
    """Largest depth (<= MAX_DEPTH) whose full tree, sum_{d<=depth} V^d nodes, fits in max_nodes."""
    V, depth, total = process.n_symbols, 0, 1
    while depth < MAX_DEPTH and total + V ** (depth + 1) <= max_nodes:
        depth += 1
        total += V**depth
    return depth


def msp_bytes(process: GHMM, depth: int, cap: int = 2**62) -> int:
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


def chaos_bytes(process: GHMM, points: int) -> int:
    """Peak bytes of `points` chaos-game beliefs: tokens and states, the beliefs six times
    over (filter output, reordered copy, rounded keys, sorted copy, box-counting charts) and three
    indices."""
    return points * (2 * 8 + 6 * 8 * process.n_states + 3 * 8)


def check_memory(process: GHMM, depth: int, points: int) -> None:
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
    dimension = box_counting_dimension(chaos, right=p.right)
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
        "dimension_msp": box_counting_dimension(distinct.beliefs, right=p.right),
        "dimension_msp_source": "box counting on the distinct MSP beliefs to `depth` (the support)",
        "seconds": round(time.perf_counter() - started, 3),
    }
    next(stages)
    fig = _figure(p, distinct.beliefs, chaos, depth, summary, int(points))
    write_atomic(out / "fractal.png", png_bytes(fig, dpi=150))
    write_record(out / "fractal.json", FractalFile, summary)
    for _ in stages:  # the closing progress line
        pass
    return summary


def _figure(p: GHMM, msp_states: np.ndarray, chaos: np.ndarray, depth: int, summary: dict,
            points: int):
    rows = _views(p, msp_states, chaos, depth, points)
    fig = new_figure(11, 6.2 * len(rows))
    axes = np.asarray(fig.subplots(len(rows), 2)).reshape(len(rows), 2)
    for (title, view, exact, sampled, view_depth), (left, right) in zip(rows, axes, strict=True):
        chart = state_chart(view, exact)
        head = f"{title}\n" if len(rows) > 1 else ""
        plot_states(left, chart, exact, s=_marker_size(len(exact)),
                    title=f"{head}every mixed state to depth {view_depth}: {len(exact):,} "
                          f"distinct states" + ("" if len(rows) > 1 else
                                                f"\n({summary['n_nodes']:,} tree nodes); "
                                                "box-counting dimension ~ "
                                                f"{_dimension_text(summary['dimension_msp'])}"))
        visited = merge_beliefs(sampled, np.ones(len(sampled)))
        if len(visited.probs) <= 5000:  # few distinct states: one marker each, area ~ frequency
            sizes = 8 + 400 * visited.probs / visited.probs.max()
            plot_states(right, chart, visited.beliefs, s=sizes)
        else:
            plot_states(right, chart, sampled, s=_marker_size(len(sampled)))
        right.set_title(f"{head}chaos game: {len(sampled):,} states on sampled sequences after "
                        f"burn-in\n{len(visited.probs):,} distinct" + (
                            "" if len(rows) > 1 else "; box-counting dimension ~ "
                            f"{_dimension_text(summary['dimension'])}"), fontsize=10)
    cmu = summary["statistical_complexity"]
    cmu_text = "n/a (the MSP does not close)" if cmu is None else f"{cmu:.3f} nats"
    fig.suptitle(
        f"{p.name}: exact (left) and sampled (right) states {_where(p, rows)}\n"
        f"entropy rate {summary['entropy_rate']:.4f} nats/symbol; statistical complexity "
        f"{cmu_text}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.02, 1, 1 - 0.05 / len(rows)))
    return fig


def _views(p: GHMM, msp_states: np.ndarray, chaos: np.ndarray, depth: int, points: int) -> list:
    """(title, process, exact states, sampled states, depth) per row: the process itself, or each
    mixture component / product factor with its own mixed states and chaos game."""
    if isinstance(p, Mixture | Product):
        parts = p.components if isinstance(p, Mixture) else p.factors
        kind = "component" if isinstance(p, Mixture) else "factor"
        rows = []
        for k, part in enumerate(parts):
            part_depth = default_depth(part)
            check_memory(part, part_depth, points)
            rows.append((f"{kind} {k} {part.name}", part, part.msp(part_depth).unique().beliefs,
                         part.chaos_game(points, seed=k + 1), part_depth))
        return rows
    return [(p.name, p, msp_states, chaos, depth)]


def _where(p: GHMM, rows: list) -> str:
    """Words for the coordinates of the figure's rows."""
    kinds = []
    for _, view, exact, _, _ in rows:
        chart = state_chart(view, exact)
        kinds.append({"simplex": f"in the {view.n_states}-state simplex (colour = belief)",
                      "bloch": "in the Bloch disk (colour = first coordinate)",
                      "pca": f"on the first two principal axes of the {view.n_states}-dimensional "
                             "states (colour = first axis)"}[chart.kind])
    return kinds[0] if len(set(kinds)) == 1 else "; ".join(dict.fromkeys(kinds))


def _marker_size(n: int) -> float:
    return 12.0 if n <= 200 else 4.0 if n <= 5000 else 1.0 if n <= 50_000 else 0.8


def _dimension_text(result: dict) -> str:
    dim = result["dimension"]
    return "n/a (too few scales)" if dim is None else f"{dim:.2f}"
