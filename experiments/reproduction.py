"""What a run folder holds and how to rebuild it: the report's folded sections, and the files
RUN/reproduce/process.json and recipe.json that, with `beliefgeo train`, rebuild the run's process,
model and training settings exactly (seeds included)."""

from __future__ import annotations

import html
from pathlib import Path

from experiments.page import code, table
from experiments.summary import RunSummary
from hmm.files import write_json


def reproduction_files(run: Path, config: dict) -> tuple[Path, Path]:
    """Write RUN/reproduce/process.json and recipe.json from config.json (a dict)."""
    from models.recipes import RECIPES

    base = str(config["train"].get("recipe", "default")).split("+")[0]
    recipe = {"base": base if base in RECIPES else "default", "arch": config["arch"]}
    if config["model"].get("act_fn") is not None:  # an LSTM or GRU has none
        recipe["act_fn"] = config["model"]["act_fn"]
    recipe.update({k: v for k, v in config["train"].items() if k not in ("recipe", "extra")})
    recipe["model"] = {k: v for k, v in config["model"].items() if k not in ("d_vocab", "act_fn")}
    folder = run / "reproduce"
    return (write_json(folder / "process.json", config["process"]),
            write_json(folder / "recipe.json", recipe))


def reproduce_section(run: Path, summary: RunSummary) -> str:
    """The commands that retrain the run from scratch and rerun its analyses."""
    from models.run_files import read_run_config

    process_file, recipe_file = reproduction_files(run, read_run_config(run))
    shown = str(run)
    again = f"{shown.rstrip('/')}-again"
    probe = f"beliefgeo probe {again}"
    inputs = summary.probes_file.inputs if summary.probes_file else None
    if inputs and isinstance(inputs.sequences, int) and isinstance(
        inputs.enumerated_sequences, int
    ) and inputs.sequences < inputs.enumerated_sequences:
        probe += f" --max-sequences {inputs.sequences}"
    commands = [f"beliefgeo train {process_file} --config {recipe_file} --out {again}", probe,
                f"beliefgeo phases {again}", f"beliefgeo report {again}"]
    if summary.llc:  # measured like this run: its LLC settings, its checkpoints
        measured = summary.llc.checkpoints
        count = "all" if measured and measured[0].tokens == 0 else len(measured)
        commands.insert(3, f"beliefgeo llc {again} --settings-from {shown}/llc.json "
                        f"--checkpoints {count}")
    parts = ["<p>Retrain from scratch (same process, model, optimiser, seeds and data stream; the "
             "two files were written beside this report from config.json), then rerun the "
             "analyses:</p>", "<pre>" + html.escape("\n".join(commands)) + "</pre>"]
    extra = summary.config.train.extra if summary.config.train else {}
    study = extra.get("study") if isinstance(extra, dict) else None
    if isinstance(study, str) and study.startswith("reproduce "):
        parts.append(f"<p>This run came from {code('beliefgeo ' + study)}; "
                     f"{code(f'beliefgeo {study} --out {again}')} reruns the whole study.</p>")
    llc = (f"{code(f'beliefgeo llc {shown} --settings-from {shown}/llc.json')} (the same LLC "
           "settings), " if summary.llc else "")
    parts.append(f"<p>Only the analyses, from this folder's checkpoints: "
                 f"{code(f'beliefgeo probe {shown}')}, {code(f'beliefgeo phases {shown}')}, "
                 f"{llc}{code(f'beliefgeo report {shown}')}. The files and their keys are "
                 "described in docs/run-files.md of the beliefgeo repository.</p>")
    return "\n".join(parts)


def folder_table(summary: RunSummary) -> str:
    """The 'what this folder holds' table, with a note for each analysis not run."""
    shown = str(summary.run)
    rows, missing = [["training", f"{summary.n_checkpoints} checkpoints, "
                      f"{summary.tokens_trained:,} tokens logged",
                      "config.json, metrics.jsonl, checkpoints/"]], []
    for name, done, count, files, command in (
        ("belief probes", summary.probes_file, summary.probes_file and len(
            summary.probes_file.checkpoints or []), "probes.json, figures/probe_*", "probe"),
        ("phase diagnostics", summary.phases, summary.phases and summary.phases.n_checkpoints,
         "phases.json, figures/phases.png", "phases"),
    ):
        if done:
            rows.append([name, f"{count} checkpoints", files])
            continue
        rows.append([name, "not run", f"beliefgeo {command} {shown}"])
        missing.append(f"{name.capitalize()} were not run: {code(f'beliefgeo {command} {shown}')}"
                       f", then {code(f'beliefgeo report {shown}')}.")
    llc = summary.llc
    rows.append(["local learning coefficient", f"{len(llc.checkpoints)} checkpoints", "llc.json, "
                 "figures/llc_*.png"] if llc else ["local learning coefficient", "not run "
                 "(optional)", f"beliefgeo llc {shown}"])
    icl = summary.icl
    rows.append(["loss by position against the exact curve",
                 f"{icl.inputs.mode if icl.inputs else '?'} inputs, {icl.tokens or 0:,} tokens",
                 "icl.json, figures/icl.png"] if icl else
                ["loss by position against the exact curve", "not computed",
                 f"beliefgeo report {shown}"])
    f = summary.fractal
    rows.append(["ground-truth geometry", f"depth {f.depth}" if f else "not computed",
                 "fractal/fractal.json, fractal/fractal.png" if f else ""])
    if summary.n_checkpoints == 0:
        missing.append("This folder has no checkpoint yet: train it with "
                       f"{code(f'beliefgeo train ... --out {shown}')} (or resume it with "
                       "--resume).")
    notes = "".join(f"<p class='note'>{note}</p>" for note in missing)
    return "<h3>What this folder holds</h3>" + table(
        ["analysis", "status", "files (or the command that runs it)"], rows, cls="settings") + notes
