"""README numbers from output files: rewrite the README's marked blocks from run folders.

A block is the text between `<!-- results: NAME -->` and `<!-- /results -->`; everything in it is
generated, so no number in it is typed by hand. Each NAME has a kind and a folder (BLOCKS):

  run      one run folder (experiments.summary.RunSummary): final-layer held-out R², the model's
           next-token probe, the exact optimal next-token probabilities, the layer's score beyond
           the next-token prediction (trained / untrained), the first k at which the table of
           held-out cell means of the last k tokens beats the layer, r2_fine by k, excess loss
  seeds    a `reproduce --seeds` folder: the same numbers as mean [95 % t-interval] over the
           seeds listed in DIR/summary.json (experiments.sweep_summary.interval)
  compare  a `compare-phases` folder: DIR/summary.csv's comparison columns as a table
  sweep    a `sweep` folder: per setting the final layer beside its nulls (DIR/summary.json, mean
           over seeds), the block's extra columns, and the CPU seconds of a point (point.json)

Every block opens with the command that produced its folder. Run from the repository root:

    python -m benchmarks.readme_results                        # every block whose folder exists
    python -m benchmarks.readme_results demo=runs/other-demo   # another folder for one block
    python -m benchmarks.readme_results --map blocks.json      # {"NAME": {"path", "command"}}

Rewriting twice gives the same file; a block whose folder is missing is left as it is.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from experiments.summary import RunSummary, summarize_run
from experiments.sweep_summary import interval
from hmm.errors import InvalidInput
from hmm.files import read_json, write_atomic

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- results: (\S+) -->\n)(.*?)(<!-- /results -->)", re.S)
REGENERATE = "python -m benchmarks.readme_results"


@dataclass(frozen=True)
class Block:
    kind: str  # "run" | "seeds" | "compare" | "sweep"
    path: str
    command: str  # what produced the folder, quoted in the block
    columns: tuple[tuple[str, str], ...] = ()  # a sweep block's (column, header) after the usual


BLOCKS = {
    "demo": Block("run", "runs/mess3-demo", "make demo"),
    "seeds": Block("seeds", "runs/mess3-seeds",
                   "beliefgeo reproduce mess3 --seeds 3 --llc --llc-checkpoints 14 "
                   "--out runs/mess3-seeds"),
    "rrxor": Block("run", "runs/rrxor-small",
                   "beliefgeo reproduce rrxor-small --out runs/rrxor-small"),
    "noisy4": Block("run", "runs/probe-noisy-4-cycle",
                    "beliefgeo probe-hmm experiments/examples/noisy_4_cycle.json "
                    "--out runs/probe-noisy-4-cycle"),
    "rrxor-paper": Block("run", "runs/rrxor-paper",
                         "beliefgeo reproduce rrxor --out runs/rrxor-paper"),
    "memorize": Block("compare", "runs/memorize-3seeds",
                      "beliefgeo compare-phases mess3 --runs rnn:tanh,rnn:sigmoid,rnn:relu "
                      "--recipes memorize --seeds 3 --out runs/memorize-3seeds"),
    "compare-default": Block("compare", "runs/compare-default",
                             "beliefgeo compare-phases mess3 --runs transformer:relu,rnn:tanh,"
                             "rnn:sigmoid,rnn:relu --recipes default --seeds 3 "
                             "--out runs/compare-default"),
    "grid": Block("sweep", "runs/quantum_grid",
                  "beliefgeo sweep experiments/examples/sweep_quantum_grid.json "
                  "--out runs/quantum_grid"),
    "factored": Block("sweep", "runs/factored",
                      "beliefgeo sweep experiments/examples/sweep_factored.json "
                      "--out runs/factored",
                      (("final_r2_factors", "factors' beliefs (final layer)"),)),
    "mixture": Block("sweep", "runs/mixture",
                     "beliefgeo sweep experiments/examples/sweep_mixture.json --out runs/mixture",
                     (("final_r2_component", "which component (final layer)"),
                      ("icl_close_from", "within 0.01 nats of the exact ICL curve from t ="),
                      ("icl_last_excess", "excess at the last position"),
                      ("icl_gain_closed", "gap to the never-learns filter closed"))),
    "compare": Block("compare", "runs/compare-phases",
                     "beliefgeo compare-phases mess3 --runs transformer:relu,rnn:tanh,rnn:sigmoid,"
                     "rnn:relu --recipes default,memorize --seeds 1 --out runs/compare-phases"),
}  # fmt: skip

# (key, label) of a run's numbers, in the order a block lists them
NUMBERS = (
    ("r2", "final-layer held-out R²"),
    ("untrained_r2", "the same layer of untrained networks (mean over init seeds)"),
    ("best_table_r2", "the best table of the last k ≤ 6 tokens (held-out cell means)"),
    ("next_token_r2", "the model's next-token distribution as probe input, held-out R²"),
    ("optimal_probs_r2", "the exact optimal next-token probabilities as probe input, held-out R²"),
    ("beyond", "final layer beyond the next-token prediction, trained"),
    ("beyond_untrained", "the same, untrained networks"),
    ("oracle_k", "first k at which the table of held-out cell means of the last k tokens beats "
                 "the layer"),
    ("excess", "excess loss (nats/token)"),
)  # fmt: skip


def run_numbers(summary: RunSummary) -> dict[str, float | int | None]:
    """The block's numbers of one run; `r2_fine:<k>` for every k probes.json has."""
    p = summary.probes
    head = p.headline if p else None
    nulls = summary.headline()
    out = {
        "r2": p.r2 if p else None,
        "untrained_r2": nulls["final_untrained_r2"],
        "best_table_r2": nulls["best_kgram_oracle_r2"],
        "next_token_r2": p.next_token_r2 if p else None,
        "optimal_probs_r2": head.optimal_probs_r2 if head else None,
        "beyond": p.r2_beyond_prediction if p else None,
        "beyond_untrained": p.beyond_untrained if p else None,
        "oracle_k": head.oracle_beats_layer_at if head else None,
        "excess": summary.loss.excess,
    }
    fine = head.r2_fine if head else {}
    out.update({f"r2_fine:{k}": v for k, v in sorted(fine.items(), key=lambda kv: int(kv[0]))})
    return out


def _label(key: str, summary: RunSummary) -> str:
    if key.startswith("r2_fine:"):
        k = key.split(":")[1]
        return f"r2_fine, k = {k} (the deviations inside groups sharing the last k tokens)"
    label = dict(NUMBERS)[key]
    if key == "excess":
        label += " exact, over every input" if summary.loss.exact_excess is not None else (
            f" batch estimate (last {summary.loss.batch_window} logged batches)")
    return label


def _number(value: float | int | None, key: str) -> str:
    if value is None:
        return "none within the tables probed" if key == "oracle_k" else "—"
    if key == "oracle_k" or isinstance(value, int):
        return str(value)
    return f"{value:.5f}" if key == "excess" else f"{value:.4f}"


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> list[str]:
    return [f"| {header[0]} | {header[1]} |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)]


def run_block(block: Block, folder: Path) -> str:
    """A single run: its numbers, one table row each."""
    summary = summarize_run(folder)
    numbers = run_numbers(summary)
    rows = [(_label(k, summary), _number(v, k)) for k, v in numbers.items()]
    what = summary.title
    if summary.probes:
        what += f"; probed at {summary.probes.tokens:,} tokens"
    return "\n".join([_opening(block, what), "", *_table(rows, ("number", "value"))])


def seeds_block(block: Block, folder: Path) -> str:
    """A seeds folder: every run number as mean [95 % t-interval] (n seeds with it)."""
    rows = read_json(folder / "summary.json").get("rows") or []
    if len(rows) != 1:
        raise InvalidInput(f"{folder}/summary.json has {len(rows)} settings; a seeds folder has 1")
    summaries = [summarize_run(folder / run) for run in rows[0]["runs"]]
    if not summaries:
        raise InvalidInput(f"{folder} has no finished seed")
    per_seed = [run_numbers(s) for s in summaries]
    keys = list(dict.fromkeys(k for numbers in per_seed for k in numbers))
    table = []
    for key in keys:
        values = [n.get(key) for n in per_seed]
        text = (", ".join(_number(v, key) for v in values) + " (per seed)" if key == "oracle_k"
                else _interval_text(interval(values), key))  # fmt: skip
        table.append((_label(key, summaries[0]), text))
    opening = _opening(block, f"{summaries[0].title}; {len(summaries)} seeds, mean [95 % "
                              "t-interval] over the seeds that have the number")
    return "\n".join([opening, "", *_table(table, ("number", "mean [95 % interval] (seeds)"))])


def _interval_text(stats: dict, key: str) -> str:
    if stats["mean"] is None:
        return _number(None, key)
    text = _number(float(stats["mean"]), key)
    if stats["ci95_low"] is not None:
        text += f" [{_number(stats['ci95_low'], key)}, {_number(stats['ci95_high'], key)}]"
    return f"{text} (n = {stats['n']})"


def compare_block(block: Block, folder: Path) -> str:
    """A compare-phases folder: summary.csv's comparison columns, one row per architecture, then
    the phase milestones as mean [95 % t-interval] over seeds, one column per architecture."""
    from experiments.compare import CSV_FIELDS
    from probes.phase_study import MILESTONE_KEYS

    with open(folder / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lines = ["| " + " | ".join(CSV_FIELDS) + " |", "|" + "---|" * len(CSV_FIELDS)]
    lines += ["| " + " | ".join(row.get(f, "") for f in CSV_FIELDS) + " |" for row in rows]
    keys = ["final_exact_excess_loss", "final_r2_heldout", "first_spectral_radius_above_1",
            *MILESTONE_KEYS]  # fmt: skip
    keys = [k for k in keys if any(row.get(f"{k}_mean") not in (None, "") for row in rows)]
    lines += ["", "| milestone (docs/phases.md) | " + " | ".join(r["run"] for r in rows) + " |",
              "|" + "---|" * (len(rows) + 1)]  # fmt: skip
    lines += [f"| {k} | " + " | ".join(_sweep_cell(r, k) for r in rows) + " |" for k in keys]
    return "\n".join([_opening(block, "mean over seeds per architecture (summary.csv); "
                                      "milestones mean [95 % t-interval]"), "", *lines])


# (summary column, header) of every sweep block, in its order
SWEEP_COLUMNS = (
    ("final_r2_heldout", "final layer"),
    ("final_next_token_r2", "next-token probe"),
    ("final_untrained_r2", "untrained"),
    ("best_kgram_oracle_r2", "best table of the last k ≤ 6 tokens"),
    ("final_r2_beyond_prediction", "beyond the next token"),
    ("final_exact_excess_loss", "exact excess (nats)"),
)


def sweep_block(block: Block, folder: Path) -> str:
    """A sweep folder: one row per setting, mean over its seeds (with the 95 % interval when
    there are several), and the mean CPU seconds of its points (training and every analysis)."""
    rows = read_json(folder / "summary.json").get("rows") or []
    columns = [*SWEEP_COLUMNS, *block.columns]
    lines = ["| setting | seeds | " + " | ".join(h for _, h in columns) + " | CPU s per point |",
             "|" + "---|" * (len(columns) + 3)]
    for row in rows:
        cells = [_sweep_cell(row, key) for key, _ in columns]
        cpu = [read_json(p).get("cpu_s") for run in row["runs"]
               if (p := folder / run / "point.json").is_file()]  # fmt: skip
        cpu_text = f"{sum(cpu) / len(cpu):.0f}" if cpu and None not in cpu else "—"
        lines.append(f"| {row['setting']} | {row['n_seeds']} | " + " | ".join(cells)
                     + f" | {cpu_text} |")
    what = f"{len(rows)} settings, mean over seeds [95 % t-interval] where there are several"
    return "\n".join([_opening(block, what), "", *lines])


def _sweep_cell(row: dict, key: str) -> str:
    """`mean [low, high]` of a summary column, with how many seeds have it when not all do;
    tokens (milestones) as whole numbers."""
    mean = row.get(f"{key}_mean")
    if mean is None or mean == "":
        return "—"
    tokens = key.endswith(("_until", "_from", "above_1")) or key.startswith("tokens_to")
    digits = 5 if "loss" in key or "excess" in key else 4

    def number(value) -> str:
        return f"{float(value):,.0f}" if tokens else f"{float(value):.{digits}f}"

    text = number(mean)
    low, high = row.get(f"{key}_ci95_low"), row.get(f"{key}_ci95_high")
    if low not in (None, "") and high not in (None, ""):
        text += f" [{number(low)}, {number(high)}]"
    n, seeds = row.get(f"{key}_n"), row.get("n_seeds")
    if n not in (None, "") and seeds not in (None, "") and int(float(n)) < int(float(seeds)):
        text += f" ({int(float(n))} of {int(float(seeds))} seeds)"
    return text


KINDS = {"run": run_block, "seeds": seeds_block, "compare": compare_block, "sweep": sweep_block}


def _opening(block: Block, what: str) -> str:
    return (f"*Generated from `{block.path}` (`{block.command}`): {what}. "
            f"Regenerate with `{REGENERATE}`.*")


def rewrite(text: str, blocks: dict[str, Block], root: Path = ROOT) -> tuple[str, list[str]]:
    """`text` with every marked block whose folder exists rewritten; the names rewritten."""
    done = []

    def fill(match: re.Match) -> str:
        name = match.group(2)
        block = blocks.get(name)
        if block is None:
            raise InvalidInput(f"README block {name!r} has no entry; known: {', '.join(blocks)}")
        folder = root / block.path
        if not folder.exists():
            return match.group(0)
        done.append(name)
        return match.group(1) + KINDS[block.kind](block, folder) + "\n" + match.group(4)

    return BLOCK.sub(fill, text), done


def blocks_from(args: list[str], mapping: Path | None) -> dict[str, Block]:
    """BLOCKS with the --map file's entries and NAME=PATH arguments applied."""
    blocks = dict(BLOCKS)
    entries = read_json(mapping) if mapping else {}
    for name, entry in entries.items():
        base = blocks.get(name, Block(entry.get("kind", "run"), "", ""))
        blocks[name] = replace(base, **{k: v for k, v in entry.items() if k in ("kind", "path",
                                                                               "command")})
    for arg in args:
        name, sep, path = arg.partition("=")
        if not sep or name not in blocks:
            raise InvalidInput(f"{arg!r} is not NAME=PATH with NAME one of {', '.join(blocks)}")
        blocks[name] = replace(blocks[name], path=path)
    unknown = {b.kind for b in blocks.values()} - set(KINDS)
    if unknown:
        raise InvalidInput(f"unknown block kind {sorted(unknown)}; choose from {', '.join(KINDS)}")
    return blocks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_results",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="*", help="NAME=PATH: another folder for block NAME")
    parser.add_argument("--map", type=Path, help='JSON {"NAME": {"kind", "path", "command"}}')
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = parser.parse_args(argv)
    try:
        blocks = blocks_from(args.folders, args.map)
        text, done = rewrite(args.readme.read_text(), blocks, Path.cwd())
    except (InvalidInput, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_atomic(args.readme, text)
    print(f"rewrote {', '.join(done) or 'no block'} in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
