"""hmm — hidden Markov processes (classical, quantum, post-quantum, mixtures, products) and their
exact belief geometry (imports nothing else of ours).

File map:
    errors.py       InvalidInput, the one bad-input exception for every layer (a ValueError)
    files.py        atomic writes, strict JSON read/write, writable output folders (every layer)
    memory.py       check_fits: refuse a request larger than the available memory before allocating
    progress.py     progress of long loops: a tqdm bar on a terminal, periodic plain lines in logs
    process.py      GHMM (the general class: the one state update, sampling by conditionals,
                    beliefs, log_prob, probe targets) and HMM (the classical case: hidden states)
    validity.py     a GHMM's eigenvalue-1 vectors and its word probabilities to a stated depth
    quantum.py      quantum instruments (Kraus operators) as GHMMs in a Hermitian basis
    composite.py    Mixture (non-ergodic, block diagonal) and Product (independent factors)
    builtins.py     built-ins (mess3, rrxor, z1r, even, golden_mean, random; bloch_walk, fanizza,
                    moon) and their parameters
    spec.py         load_process (name, name:key=value, JSON file), spec kinds (hmm, ghmm, mixture,
                    product), save_process
    msp.py          mixed-state presentation as breadth-first arrays, enumerate, belief dedup
    information.py  entropy, optimal loss by position, entropy rate, statistical complexity
    fractal.py      chaos game and box-counting dimension of the belief attractor
    belief_dynamics.py  the belief update's Jacobian on the simplex, one-step spectral radius
                    (and its quantiles), largest Lyapunov exponent (renormalised products) and
                    finite-time exponent over a window, an affine-filter process
    plots.py        state charts (simplex, Bloch disk, principal axes), colours, scatter plots
"""

from hmm.builtins import BUILTINS
from hmm.composite import Mixture, Product
from hmm.errors import InvalidInput
from hmm.msp import MixedStatePresentation
from hmm.process import GHMM, HMM
from hmm.spec import load_process, save_process

__all__ = [
    "BUILTINS", "GHMM", "HMM", "InvalidInput", "MixedStatePresentation", "Mixture", "Product",
    "load_process", "save_process",
]
