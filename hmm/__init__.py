"""hmm — hidden Markov processes and their exact belief geometry (imports nothing else of ours).

File map:
    errors.py       InvalidInput, the one bad-input exception for every layer (a ValueError)
    files.py        atomic writes, strict JSON read/write, writable output folders (every layer)
    memory.py       check_fits: refuse a request larger than the available memory before allocating
    progress.py     progress of long loops: a tqdm bar on a terminal, periodic plain lines in logs
    process.py      HMM: validation, sampling, predictive (the one belief update), beliefs, log_prob
    builtins.py     built-ins (mess3, rrxor, z1r, even, golden_mean, random) and their parameters
    spec.py         load_process (name, name:key=value, JSON file), JSON spec schema, save_process
    msp.py          mixed-state presentation as breadth-first arrays, enumerate, belief dedup
    information.py  entropy, optimal loss by position, entropy rate, statistical complexity
    fractal.py      chaos game and box-counting dimension of the belief attractor
    belief_dynamics.py  the belief update's Jacobian on the simplex, one-step spectral radius,
                    largest Lyapunov exponent (renormalised products), an affine-filter process
    plots.py        simplex projection, belief colours, simplex scatter plot (matplotlib)
    records.py      typed JSON records: Record dataclasses for the run files (from_json with
                    defaults for older files, undeclared keys kept, migrate), record_keys
    figure_style.py the look of every figure: Okabe-Ito palette (corner and line orders), greys,
                    THE training-token axis, pyplot-free figures and their PNG bytes
"""

from hmm.builtins import BUILTINS
from hmm.errors import InvalidInput
from hmm.msp import MixedStatePresentation
from hmm.process import HMM
from hmm.spec import load_process, save_process

__all__ = [
    "BUILTINS", "HMM", "InvalidInput", "MixedStatePresentation", "load_process", "save_process",
]
