"""probes — linear belief probes and phase diagnostics on a run's checkpoints (hook names and the
models' public recurrence interface, models.architectures.recurrent_step; never model internals).

File map:
    activations.py     probe inputs (every sequence, or a seeded sample sized by the rows-per-
                       feature rule), prefix rows and their weights, the subtree / random split
                       and its shared-prefix weight, the fit half's cross-validation folds,
                       k-gram cells, the exact row-shuffle control, hook capture (prefix-tree
                       forward); ROWS_PER_FEATURE, probe_width
    belief_probe.py    BeliefProbe (OLS / ridge from sufficient statistics), cv_ridge (the
                       ridge by cross-validation over folds' moments), R² (coordinate mean,
                       pooled, in-sample, of a remainder) and MSE rules, k-gram lookups,
                       within-cell deviations and the fine-structure score, the remainder beyond
                       a set of features, distance correlation
    belief_study.py    probe_run: trained positions only, every checkpoint -> RUN/probes.json +
                       figures; hook_record (THE place a probe's record is built): held-out,
                       unseen-prefix, per-position, r2_fine and beyond-prediction scores;
                       baselines (untrained, every k-gram table, optimal prediction)
    belief_evidence.py the headline (which case, every table against the layer), readability
                       warnings (rows per feature, held-out vs in-sample), bootstrap intervals
                       over held-out subtrees and the fine-structure depth
    belief_figures.py  simplex, R² per layer with beyond-prediction and r2_fine panels,
                       emergence, R² by position, simplex GIF (captioned)
    jacobian.py        exact Jacobians: RNN recurrent map (radius quantiles, Lyapunov exponents
                       long-run and over the window, W_rec vs circular law, the secant test on
                       the model's states); transformer block updates (raw and scale-normalised,
                       eigenvalues and gain), full map, cross-position map; the seed rule
                       (iterated maps only)
    secant.py          the secant test: pairs of reachable states fed the same future tokens,
                       contraction rates of state, read-out and exact belief, the pass rule
    units.py           sigmoid-like layers: gain E[f'(z)]/f'(0), linear/hybrid/saturated; ReLU-like
                       layers: active fraction, dense/mixed/sparse; per-layer weight norms
    sharpness.py       the run's training loss (exact / training set / fixed batch), exact
                       Hessian-vector products, Lanczos top eigenvalue, SGD / Adam thresholds,
                       the step from which Adam's preconditioner is settled
    phase_study.py     phases_run (thin driver), phase_setup, measure_checkpoint, null_reference,
                       sign_flip_reference: every checkpoint -> RUN/phases.json, then the figure;
                       PhaseOptions; phase_milestones (the numbers sweeps summarise)
    phase_figures.py   RUN/figures/phases.png: each diagnostic beside its null band and reference
"""
