"""probes — linear belief probes and phase diagnostics on a run's checkpoints (hook names only).

File map:
    activations.py     probe inputs (every sequence, or a seeded sample), prefix rows and their
                       weights, the split by sequence, the exact row-shuffle control, hook capture
    belief_probe.py    BeliefProbe (OLS / ridge from sufficient statistics), R² and MSE rules,
                       pairwise-distance correlation
    belief_study.py    probe_run: every checkpoint -> RUN/probes.json + figures; logit ceiling
    belief_figures.py  true vs predicted simplex, R² per layer, emergence curve, simplex GIF
"""
