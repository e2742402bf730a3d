"""probes — linear belief probes and phase diagnostics on a run's checkpoints (hook names only).

File map:
    activations.py     probe inputs (every sequence, or a seeded sample), prefix rows and their
                       weights, the split by sequence, the exact row-shuffle control, hook capture
    belief_probe.py    BeliefProbe (OLS / ridge from sufficient statistics), R² and MSE rules,
                       pairwise-distance correlation
    belief_study.py    probe_run: every checkpoint -> RUN/probes.json + figures; logit ceiling
    belief_figures.py  true vs predicted simplex, R² per layer, emergence curve, simplex GIF
    jacobian.py        exact same-position block / full-map Jacobians (transformer) and recurrent
                       Jacobians (RNN), spectral radius and norm, the seed rule and its meaning
    units.py           unit regimes (linear / saturated / dead) and phase labels, update sign
                       flips, per-layer weight norms and change since initialisation
    sharpness.py       exact Hessian-vector products, Lanczos top eigenvalue, SGD / Adam
                       edge-of-stability thresholds
    phase_study.py     phases_run: every checkpoint -> RUN/phases.json (+ figure); PhaseOptions
    phase_figures.py   RUN/figures/phases.png, all diagnostics on one log-token axis
"""
