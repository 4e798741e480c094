"""lenslab: a workbench for measuring what happens inside transformers.

The public API. Everything the CLI does is reachable from here::

    import lenslab
    cfg = lenslab.example_config("induction")
    result = lenslab.train(cfg, "runs/demo")           # guarded, resumable
    run = lenslab.load_run("runs/demo")                # the run folder: status, metrics, models
    lens = lenslab.load_lens("runs/demo")              # or "minilm", a HF folder, a hub name
    heads = lenslab.classify_heads(lens)               # taxonomy against nulls (_repr_html_)
    lenslab.view(lens, "t1 t2 t3 t1 t2")               # the offline viewer, in a notebook too
    icl = lenslab.measure_icl("runs/demo")             # ICL score, phase change
    lenslab.write_result(icl, run)                     # run/analysis/icl.json, .html, .png
    fit = lenslab.fit_table("results.csv", "chinchilla", bootstrap=1000)
    rules = lenslab.probe("runs/shortcut")             # which rule did it learn?

Every name loads on first use (PEP 562), so ``import lenslab`` costs nothing until a name is
asked for: the CLI's help and ``init`` never import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module, or (module, attribute) when the attribute has another name there
_LAZY: dict[str, Any] = {
    # configs, models, training, run folders
    "RunConfig": "lenslab.config",
    "load_config": "lenslab.config",
    "LensError": "lenslab.errors",
    "example_config": "lenslab.examples",
    "GPT": "lenslab.models",
    "LSTM": "lenslab.models",
    "build_model": "lenslab.models",
    "Trainer": "lenslab.training",
    "TrainResult": "lenslab.training",
    "train": "lenslab.training",
    "resume": "lenslab.training",
    "Run": "lenslab.run",
    "RunInfo": ("lenslab.run", "Run"),  # the name of lenslab 0.1's run summary, which a Run is
    "list_runs": "lenslab.run",
    "load_run": "lenslab.run",
    "sample": "lenslab.run.sample",
    "generate": "lenslab.models.sample",
    # results
    "write_result": "lenslab.result",
    "read_result": "lenslab.result",
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
    "compare_algorithms": "lenslab.icl.algorithms",
    "run_algorithms": "lenslab.icl.algorithms",
    # replications
    "replicate": ("lenslab.replications", "run"),
    # scaling and emergence lab
    "run_sweep": "lenslab.scaling",
    "fit_table": "lenslab.scaling",
    "fit_power": "lenslab.scaling",
    "fit_chinchilla": "lenslab.scaling",
    "fit_broken": "lenslab.scaling",
    "diagnose": "lenslab.scaling",
    "emergence": ("lenslab.emergence.verdict", "analyze_csv"),
    # generalization probes
    "probe": "lenslab.probes",
    "rule_test": "lenslab.probes",
    "length_generalization": "lenslab.probes",
    "counterfactual": "lenslab.probes",
    "probe_sweep": "lenslab.probes",
    "probe_checkpoints": "lenslab.probes",
    # the tour
    "run_tour": "lenslab.tour",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    spec = _LAZY.get(name)
    if spec is None:
        raise AttributeError(f"module 'lenslab' has no attribute {name!r}")
    mod, attr = spec if isinstance(spec, tuple) else (spec, name)
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
