"""The report's in-context-learning section, drawn from RUN/icl.json (probes/icl.py): the figure of
the model's loss by position beside the exact curve (and a mixture's never-learns filter) and the
file's computed sentence. Kept apart from report.py, which calls it in one line; a run without
icl.json gets no section."""

from __future__ import annotations

import html
from pathlib import Path

from experiments.page import embed_image
from probes.run_files import IclFile


def icl_section(run: Path, icl: IclFile | None) -> list[str]:
    """HTML parts of the section; [] when the run has no icl.json."""
    if icl is None or not icl.model_loss_by_position:
        return []
    inputs = icl.inputs
    how = ("exact over every input sequence, weighted by its probability"
           if inputs and inputs.mode == "enumerated" else
           f"on {inputs.sequences if inputs else '?'} sampled sequences, with a 95 % bootstrap "
           "interval over sequences")
    mixture = icl.never_learns is not None
    title = ("In-context learning: the loss by position against the exact Bayes curve"
             if mixture else "The loss by position against the exact Bayes curve")
    parts = [f"<h2>{title}</h2>",
             f"<p>The model's expected next-token loss at each input position ({html.escape(how)}; "
             f"newest checkpoint, {icl.tokens or 0:,} tokens) beside the Bayes-optimal loss "
             "there" + (", and beside the best single component's filter run on the mixture's "
                        "sequences: what a predictor that never learns in context gets" if mixture
                        else "") + ".</p>",
             f"<p>{html.escape(icl.sentence or '')}</p>"]
    if icl.figure:
        parts.append(embed_image(run / icl.figure, "Loss by position: model, exact curve"
                                 + (", never learns in context" if mixture else "")
                                 + "; right: the excess above the exact curve"))
    return parts
