"""The scaling lab: sweeps, scaling-law fits with intervals, and where (and why) a law bends.

    from lenslab.scaling import fit_chinchilla, fit_table, diagnose
    fit = fit_table("results.csv", "chinchilla", bootstrap=1000)
    fit.params, fit.intervals, fit.compute_optimal(1e21)
    diagnose("sweeps/width").checks

Rooms: :mod:`~.sweep` (grids of guarded runs and their results table; executors), :mod:`~.laws`
(the laws), :mod:`~.fit` (fitting and bootstrap), :mod:`~.fitted` (the result), :mod:`~.forms`
(a table fitted by form name), :mod:`~.constrained` (repeated data), :mod:`~.isoflop`
(compute-optimal minima), :mod:`~.diagnose` (bends and their causes), :mod:`~.optim` (batched
L-BFGS under a Huber loss).

Forms: ``power`` (E + A x^-alpha), ``chinchilla`` (E + A/N^alpha + B/D^beta, fitted as Epoch
did), ``broken`` (Caballero et al. 2022, number of breaks chosen on held-out points and BIC),
``data-constrained`` (Muennighoff et al. 2023), ``isoflop`` (Hoffmann et al.'s Approach 2).
"""

from lenslab.scaling.diagnose import Check, Diagnosis, diagnose, find_bend
from lenslab.scaling.fit import (
                                 BIC_MARGIN,
                                 bootstrap,
                                 fit_broken,
                                 fit_chinchilla,
                                 fit_power,
                                 select_breaks,
)
from lenslab.scaling.fitted import ScalingFit
from lenslab.scaling.forms import FORMS, fit_from_dict, fit_table
from lenslab.scaling.isoflop import IsoFlopFit
from lenslab.scaling.laws import EPOCH_GRID
from lenslab.scaling.sweep import read_results, run_sweep
from lenslab.table import DataWarning, read_csv

__all__ = [
    "BIC_MARGIN", "EPOCH_GRID", "FORMS", "ScalingFit", "IsoFlopFit", "bootstrap", "fit_power",
    "fit_chinchilla", "fit_broken", "fit_table", "fit_from_dict", "select_breaks", "diagnose",
    "find_bend", "Diagnosis", "Check", "DataWarning", "read_csv", "run_sweep", "read_results",
]
