"""Scaling laws: fits with bootstrap intervals, and where (and why) a law bends.

    from lenslab.scaling import fit_chinchilla, fit_table, diagnose
    fit = fit_table("results.csv", "chinchilla", bootstrap=1000)
    fit.params, fit.intervals, fit.compute_optimal(1e21)
    diagnose("sweeps/width").checks

Forms: ``power`` (E + A x^-alpha), ``chinchilla`` (E + A/N^alpha + B/D^beta, fitted as Epoch
did), ``broken`` (Caballero et al. 2022, number of breaks chosen on held-out points and BIC).
"""

from lenslab.scaling.diagnose import Check, Diagnosis, diagnose, find_bend
from lenslab.scaling.fit import (
    BIC_MARGIN,
    EPOCH_GRID,
    FORMS,
    ScalingFit,
    bootstrap,
    fit_broken,
    fit_chinchilla,
    fit_power,
    fit_table,
    select_breaks,
)
from lenslab.scaling.sweep import read_results, run_sweep
from lenslab.table import DataWarning, read_csv

__all__ = [
    "BIC_MARGIN", "EPOCH_GRID", "FORMS", "ScalingFit", "bootstrap", "fit_power", "fit_chinchilla", "fit_broken",
    "fit_table", "select_breaks", "diagnose", "find_bend", "Diagnosis", "Check", "DataWarning", "read_csv",
    "run_sweep", "read_results",
]
