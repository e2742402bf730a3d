"""probes — linear belief probes and phase diagnostics on a run's checkpoints (hook names and the
models' public recurrence interface, models.architectures.recurrent_step; never model internals).

File map:
    activations.py     probe inputs (every sequence, or a seeded sample sized by the rows-per-
                       feature rule), prefix rows and their weights, the subtree / random split
                       and its shared-prefix weight, the fit half's cross-validation folds,
                       k-gram cells, the exact row-shuffle control, hook capture (prefix-tree
                       forward); ROWS_PER_FEATURE and the sample it sizes
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
    run_files.py       RUN/probes.json, RUN/phases.json and RUN/llc.json as typed records
                       (ProbesFile, PhasesFile, LlcFile) and their readers read_probes /
                       read_phases / read_llc
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
    llc_settings.py    LLCSettings, CalibrationGrid, the LLC flags and their meanings,
                       read_llc_settings, LLCPlan (the studies' LLC step; llc_options /
                       llc_plan from flags and spec keys) (no torch: the CLI checks them first)
    llc.py             the local learning coefficient of one model (devinterp SGLD, imported only
                       there): estimate_llc, the trace reduction and its flags, calibrate /
                       pick_settings, the training loss on devinterp's model copies
    llc_known.py       models with a closed-form learning coefficient (linear regression, reduced-
                       rank regression with Aoyagi's formula): the estimator's test cases
    llc_study.py       llc_run: log-spaced checkpoints -> RUN/llc.json (calibration, estimates,
                       stage boundaries, where the probe's geometry emerges), then the figures
    llc_figures.py     RUN/figures/llc_timeline.png (LLC beside probe R², excess loss, phases)
                       and llc_calibration.png
    geometry.py        probability-weighted PCA, cumulative explained variance, effective and
                       affine dimension per hook; principal angles, overlap index and the
                       random-subspace null; read-out subspaces of grouped targets
    interventions.py   intervene_run: exact-counterfactual interventions (probe move and encoding
                       move, random and orthogonal nulls, KL to the filter restarted from the
                       target belief) -> RUN/interventions.json + figure
    similarity.py      linear CKA (weighted), per hook pair, between runs of one process, with the
                       untrained null and each hook's CKA with the beliefs
    interactive.py     rotatable 3-D views of true vs predicted beliefs (plotly, JS inlined)
    geometry_figures.py  effective dimension over training; intervention gaps closed per hook
    geometry_study.py  what `probe` adds: effective dimension per hook and checkpoint, the belief
                       set's dimension, the untrained null, grouped-target subspaces, figures
"""
