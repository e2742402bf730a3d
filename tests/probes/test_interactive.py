"""The rotatable 3-D view: the tetrahedron puts each corner belief on its vertex, other widths
are projected on the true points' principal axes, the fragment carries plotly's JavaScript (no
network), and (where a Chromium is installed) it renders to a non-blank page."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from hmm.errors import InvalidInput
from probes.interactive import TETRAHEDRON, belief_view_3d, coordinates_3d


def test_corner_beliefs_land_on_the_tetrahedron_vertices():
    corners = np.eye(4)
    true, pred, _, drawn = coordinates_3d(corners, corners)
    np.testing.assert_allclose(true, TETRAHEDRON)
    np.testing.assert_allclose(drawn, TETRAHEDRON)
    # the regular tetrahedron: all six edges equally long
    d = np.linalg.norm(TETRAHEDRON[:, None] - TETRAHEDRON[None], axis=-1)[np.triu_indices(4, 1)]
    np.testing.assert_allclose(d, d[0])
    centre, *_ = coordinates_3d(np.full((1, 4), 0.25), np.full((1, 4), 0.25))
    np.testing.assert_allclose(centre, 0.0, atol=1e-15)


def test_other_widths_use_the_true_points_principal_axes():
    rng = np.random.default_rng(0)
    true = rng.dirichlet(np.ones(5), 300)
    true[:, 4] = 0.0  # a belief set spanning 3 affine dimensions inside 5 states
    true /= true.sum(axis=1, keepdims=True)
    xyz, same, titles, corners = coordinates_3d(true, true)
    assert corners is None and titles[0].startswith("PC1")
    np.testing.assert_allclose(xyz, same)
    # projecting on the 3 principal axes keeps every pairwise distance of a 3-d set
    dist = np.linalg.norm(true[:50, None] - true[None, :50], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(xyz[:50, None] - xyz[None, :50], axis=-1), dist,
                               atol=1e-12)


def test_fragment_is_self_contained():
    rng = np.random.default_rng(1)
    true = rng.dirichlet(np.ones(4), 200)
    html = belief_view_3d(true, true, ["A", "B", "C", "D"], title="view")
    assert "<script src=" not in html  # no script loaded from anywhere
    assert len(html) > 1_000_000  # plotly.js inlined
    small = belief_view_3d(true, true, include_plotlyjs=False)
    assert len(small) < 100_000
    assert small.count('"mode":"markers"') == 2 and small.count('"mode":"text"') == 2
    with pytest.raises(InvalidInput):
        belief_view_3d(true, true[:, :3])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine")
def test_renders_offline_in_headless_chromium():
    rng = np.random.default_rng(2)
    true = rng.dirichlet(np.ones(4) * 0.3, 500)
    with tempfile.TemporaryDirectory() as tmp:
        page, shot = Path(tmp) / "view.html", Path(tmp) / "view.png"
        page.write_text("<!doctype html><meta charset='utf-8'><body>"
                        + belief_view_3d(true, true) + "</body>")
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp}/profile", "--window-size=1000,560",
             "--virtual-time-budget=5000", f"--screenshot={shot}", page.as_uri()],
            capture_output=True, timeout=120, check=True,
        )
        import matplotlib.image

        pixels = matplotlib.image.imread(shot)[..., :3]
    coloured = (pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.2  # points, not grey or white
    assert coloured.mean() > 0.002
