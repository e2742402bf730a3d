"""experiments — the command line, the end-to-end studies, sweeps and the reports (top floor).

File map:
    cli.py            `beliefgeo`: argument parsing (help on every argument), dispatch, exit codes
                      (0 success, 2 bad input in one line, 1 unexpected), `beliefgeo hooks RUN`
    closing.py        the one closing line of each command, formatted from the RunSummary
    summary.py        RunSummary: a run's numbers computed once from its typed files (loss, probe
                      headline and baselines, phases, emergence window, sweep headline, curves;
                      LlcSummary of llc.json)
    verdict.py        the sentences a report opens with, computed from the RunSummary (the probe
                      beside its strongest null; implied by the loss or beyond the next token;
                      the LLC's stages when the run has llc.json)
    fractal.py        `beliefgeo processes` and `beliefgeo fractal`: ground-truth belief geometry
                      (mixed-state presentation beside the chaos game), memory checked first;
                      FractalFile (fractal.json, typed)
    pipeline.py       one study end to end: Study (its plan), with_settings (flags, sweep keys),
                      run_study (train → probe → phases → fractal → LLC if asked → report)
    studies.py        `reproduce mess3|rrxor|rrxor-small` (rrxor: the paper's RRXOR model) and
                      `probe-hmm` (the context-length and rows-per-feature rule for a user's
                      process, or --n-ctx); several seeds through sweep.run_seeds
    compare.py        `compare-phases`: several architectures × seeds on one process, compared
    sweep.py          `beliefgeo sweep` and `reproduce --seeds`: every combination of a spec's axes
                      as Ray tasks, one run folder each, restartable; the LLC calibrated once
    sweep_summary.py  a sweep's summary.csv / summary.json (mean, sd, 95 % interval over seeds) and
                      its report with seed bands (LLC curves too, probes.llc_study.compare_llc)
    geometry_report.py  the report's geometry section: effective dimension, interventions, 3-D view
    evidence_report.py  the report's readability warnings, beyond-the-next-token table, every
                      table of the last k tokens with error ratios, r2_fine with its bootstrap
    llc_report.py     the report's LLC section: settings chosen, flags as warnings, stage boundaries
                      and where the probe's R² emergence falls among them, the figures
    cka_summary.py    CKA between a sweep's runs of one process (summary.json "cka") and its table
    report.py         RUN/report.html: the verdict, the beliefs-vs-probe figure, details, settings
                      folded at the end
    reproduction.py   the report's folded sections: the folder's files, RUN/reproduce/ and commands
    page.py           HTML building blocks of every report (html_page, embed_image, tables)
    examples/         a 4-state process spec for `probe-hmm` and sweep specs
"""
