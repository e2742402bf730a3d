"""The probe figures draw what a run measured, whatever its numbers look like."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from probes.belief_figures import _fine_panel  # noqa: E402


def test_a_fine_structure_interval_that_misses_its_estimate_is_drawn_as_it_is():
    """Percentile bootstrap intervals can lie wholly on one side of the estimate (a sampled run of
    a product measured this); the panel draws them instead of failing the whole probe step."""
    hook = "blocks.1.hook_resid_post"
    probes = {
        "hooks": ["blocks.0.hook_resid_post", hook],
        "bootstrap": {"probes": {hook: {"r2_fine": {"1": [0.5, 0.6], "2": [0.1, 0.2]}}}},
        "baselines": {"random_init": {hook: {"r2_fine": {"1": 0.1, "2": 0.0}}}},
    }
    last = {"layers": {hook: {"r2_fine": {"1": 0.4, "2": 0.3}}}}
    fig, ax = plt.subplots()
    _fine_panel(ax, probes, last)
    segments = ax.collections[0].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(0.5, 0.6), (0.1, 0.2)]
    plt.close(fig)
