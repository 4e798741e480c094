"""The grid: every point of a sweep, validated and sized (N, D) before anything is written."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from lenslab.config import RunConfig, config_from_dict
from lenslab.data import build_task, resolve_config
from lenslab.errors import ConfigError, LensError
from lenslab.models import build_model
from lenslab.scaling.sweep.spec import SweepSpec, set_part

#: Tasks whose every batch is freshly drawn from an unbounded space (no epochs).
FRESH_TASKS = ("induction", "icl_regression", "repeat", "sequence")


@dataclass
class GridPoint:
    """One run of the sweep: its name, exact config and the sizes known before training."""

    name: str
    config: RunConfig
    axes: dict[str, Any]  # n_layer, d_model, n_head, seed, steps (tokens, lr, "section.key" when given)
    N: int
    tokens_per_step: int
    unique_tokens: Optional[float]  # None: fresh data every step (no epochs)

    @property
    def steps(self) -> int:
        return self.config.train.max_steps

    @property
    def D(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def cost(self) -> float:
        return 6.0 * self.N * self.D


def point_name(axes: dict[str, Any]) -> str:
    """The run folder name of a grid point (see the module docstring)."""
    parts = [f"L{axes['n_layer']}" if axes.get("n_layer") is not None else None,
             f"d{axes['d_model']}" if axes.get("d_model") is not None else None,
             f"h{axes['n_head']}" if axes.get("n_head") is not None else None,
             f"t{axes['tokens']}" if axes.get("tokens") is not None else f"s{axes['steps']}",
             f"lr{axes['lr']:g}" if axes.get("lr") is not None else None,
             *(set_part(k, v) for k, v in axes.items() if "." in k),
             f"seed{axes['seed']}"]
    return "-".join(p for p in parts if p)


def _unique_tokens(task: Any, seq_len: int) -> Optional[float]:
    """Tokens in one pass over the task's distinct training sequences (None: unbounded)."""
    name = getattr(task, "name", "")
    if name == "text":
        return float(task.n_train_tokens)
    if name == "addition":
        return float(task.base ** (2 * task.cfg.digits)) * seq_len
    if name == "modular_addition":
        return float(len(task.train_pairs)) * seq_len
    if name in FRESH_TASKS:
        return None
    return math.nan  # a task this module does not know: epochs cannot be told


def _model_n(cfg: RunConfig) -> int:
    """Non-embedding parameters, counted on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        model = build_model(cfg.model)
    if hasattr(model, "num_params"):
        return int(model.num_params(non_embedding=True))
    return int(sum(p.numel() for p in model.parameters()))


def plan(spec: SweepSpec) -> list[GridPoint]:
    """Every grid point, validated, in grid order (shapes, then length, then lr, then seed)."""
    sc, base, src = spec.config, spec.base, spec.source
    g = sc.grid
    model = base.model
    shape_keys = [k for k in ("n_layer", "d_model", "n_head") if k in type(model).model_fields]
    if g.shapes is not None:
        shapes = [{k: v for k, v in s.model_dump().items() if v is not None} for s in g.shapes]
    else:
        axes = {}
        for k in ("n_layer", "d_model", "n_head", "d_head"):
            vals = getattr(g, k)
            if vals is not None:
                axes[k] = vals
        keys = list(axes)
        shapes = [dict(zip(keys, combo)) for combo in itertools.product(*axes.values())] or [{}]
    for s in shapes:
        asked = [k for k in s if k not in shape_keys and k != "d_head"]
        if asked or ("d_head" in s and "n_head" not in shape_keys):
            kind = getattr(model, "kind", type(model).__name__)
            what = ", ".join(asked or ["d_head"])
            raise ConfigError(f"{src}: grid: a {kind} model has no {what} to vary "
                              f"(it has {', '.join(shape_keys) or 'no shape keys'})")
    try:
        task = build_task(base, None)
    except LensError as e:
        raise ConfigError(f"{src}: base: {e}") from None
    x, _ = task.batch(0, base.optim.batch_size)
    tokens_per_step = int(x.shape[0] * x.shape[1])
    unique = _unique_tokens(task, int(x.shape[1]))

    if g.tokens is not None:
        lengths = [("tokens", t, max(1, math.ceil(t / tokens_per_step))) for t in g.tokens]
    elif g.steps is not None:
        lengths = [("steps", s, s) for s in g.steps]
    else:
        lengths = [("steps", base.train.max_steps, base.train.max_steps)]
    lrs = g.lr if g.lr is not None else [None]
    seeds = g.seeds if g.seeds is not None else [base.seed]
    sets = [dict(zip(g.set, combo)) for combo in itertools.product(*g.set.values())] if g.set else [{}]

    base_d = base.model_dump(mode="json", exclude_none=True)
    ratio = None
    if getattr(model, "d_mlp", None) is not None:
        ratio = model.d_mlp / model.d_model
    points, seen = [], {}
    for shape, (kind, length, steps), lr, extra, seed in itertools.product(
            shapes, lengths, lrs, sets, seeds):
        d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base_d.items()}
        for key, value in extra.items():
            section, name = key.split(".")
            d[section] = {**d[section], name: value}
        m = dict(d["model"])
        for k in ("n_layer", "d_model", "n_head"):
            if k in shape:
                m[k] = shape[k]
        if "d_head" in shape:
            if m["d_model"] % shape["d_head"]:
                raise ConfigError(f"{src}: grid: d_head {shape['d_head']} does not divide "
                                  f"d_model {m['d_model']}")
            m["n_head"] = m["d_model"] // shape["d_head"]
        if ratio is not None and "d_model" in shape:
            m["d_mlp"] = max(1, round(ratio * m["d_model"]))
        d["model"] = m
        d["train"] = {**d["train"], "max_steps": steps, "threads": sc.resolved_threads()}
        if lr is not None:
            d["optim"] = {**d["optim"], "lr": lr}
        d["seed"] = seed
        axes = {k: m.get(k) for k in ("n_layer", "d_model", "n_head")}
        axes.update({"seed": seed, "steps": steps})
        if kind == "tokens":
            axes["tokens"] = length
        if lr is not None:
            axes["lr"] = lr
        axes.update(extra)  # "section.key": value
        name = point_name(axes)
        d["name"] = name
        if name in seen:
            raise ConfigError(f"{src}: grid points {seen[name]} and {name} are the same run")
        seen[name] = name
        try:
            cfg = config_from_dict(d, f"{src}: grid point {name}")
            full = resolve_config(cfg, task)
        except ConfigError as e:
            msg = str(e)
            if not msg.startswith(src):
                msg = f"{src}: grid point {name}: {msg}"
            raise ConfigError(msg) from None
        try:
            n = _model_n(full)
        except LensError as e:
            raise ConfigError(f"{src}: grid point {name}: {e}") from None
        points.append(GridPoint(name, cfg, axes, n, tokens_per_step, unique))
    return points
