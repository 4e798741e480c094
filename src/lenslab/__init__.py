"""lenslab: a workbench for measuring what happens inside transformers.

The public API. Everything the CLI does is reachable from here::

    import lenslab
    cfg = lenslab.example_config("induction")
    result = lenslab.train(cfg, "runs/demo")           # guarded, resumable
    lens = lenslab.load_lens("runs/demo")              # or "minilm", a HF folder, a hub name
    heads = lenslab.classify_heads(lens)               # taxonomy against nulls (_repr_html_)
    lenslab.view(lens, "t1 t2 t3 t1 t2")               # the offline viewer, in a notebook too
    icl = lenslab.measure_icl("runs/demo")             # ICL score, phase change
    fit = lenslab.fit_table("results.csv", "chinchilla", bootstrap=1000)
    rules = lenslab.probe("runs/shortcut")             # which rule did it learn?

The labs' names load on first use, so ``import lenslab`` stays as light as torch allows.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from lenslab.config import RunConfig, load_config  # noqa: E402
from lenslab.errors import LensError  # noqa: E402
from lenslab.examples import example_config  # noqa: E402
from lenslab.models import GPT, LSTM, build_model  # noqa: E402
from lenslab.run import Run, list_runs  # noqa: E402
from lenslab.training import Trainer, TrainResult, resume, train  # noqa: E402

_LAZY = {
    # attention lab
    "load_lens": "lenslab.attention.capture",
    "classify_heads": ("lenslab.attention.heads", "classify"),
    "run_heads": "lenslab.attention.lab",
    "rollout": "lenslab.attention.attribution",
    "head_importance": "lenslab.attention.attribution",
    "paraphrase_stability": "lenslab.attention.paraphrase",
    "view": "lenslab.attention.viewer",
    "render_viewer": "lenslab.attention.viewer",
    # in-context learning lab
    "measure_icl": "lenslab.icl.score",
    "phase_change": "lenslab.icl.score",
    "compare": "lenslab.icl.score",
    "replicate": ("lenslab.icl.replicate", "run"),
    "compare_algorithms": "lenslab.icl.algorithms",
    "run_algorithms": "lenslab.icl.algorithms",
    # scaling and emergence lab
    "run_sweep": "lenslab.scaling.sweep",
    "fit_table": "lenslab.scaling.fit",
    "fit_power": "lenslab.scaling.fit",
    "fit_chinchilla": "lenslab.scaling.fit",
    "fit_broken": "lenslab.scaling.fit",
    "diagnose": "lenslab.scaling.diagnose",
    "emergence": ("lenslab.emergence.verdict", "analyze_csv"),
    # generalization probes
    "probe": "lenslab.probes.generalization",
    "rule_test": "lenslab.probes.generalization",
    "length_generalization": "lenslab.probes.generalization",
    "counterfactual": "lenslab.probes.generalization",
    "probe_sweep": "lenslab.probes.generalization",
    "probe_checkpoints": "lenslab.probes.generalization",
    # the tour
    "run_tour": "lenslab.tour",
}

__all__ = [
    "__version__", "RunConfig", "load_config", "LensError", "example_config", "GPT", "LSTM",
    "build_model", "Trainer", "TrainResult", "train", "resume", "Run", "RunInfo", "list_runs",
    "load_run",
    *_LAZY,
]


RunInfo = Run  # the name of lenslab 0.1's run summary, which a Run now is


def load_run(path) -> Run:
    """The run folder at ``path`` (status, step, metrics(), event_log(), load_model(), ...)."""
    return Run.open(path)


def __getattr__(name: str) -> Any:  # PEP 562: import a lab only when it is used
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'lenslab' has no attribute {name!r}")
    mod, attr = spec if isinstance(spec, tuple) else (spec, name)
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
