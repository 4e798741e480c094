"""Example configs for every task, and the commented TOML that ``lenslab init TASK`` prints."""

from __future__ import annotations

from typing import Any, Optional

import tomli_w

from lenslab.config import DATA_TASKS, RunConfig, config_from_dict
from lenslab.errors import ConfigError

TASKS = ("induction", "modular_addition", "addition", "text", "shakespeare", "lstm",
         "icl_regression", "repeat", "sequence", "question")

#: Where the examples that read a corpus expect it (``lenslab init TASK --data PATH`` changes it),
#: and where the public file comes from.
CORPORA = {
    "text": ("corpus.txt", "any UTF-8 text file"),
    "shakespeare": ("tinyshakespeare.txt", "tiny Shakespeare (1,115,394 characters) from "
                    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
                    "tinyshakespeare/input.txt"),
}

_EXAMPLES: dict[str, dict[str, Any]] = {
    "induction": {
        "name": "induction",
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 4, "d_model": 64, "n_ctx": 64,
                  "attn_only": True, "tie_embeddings": False},
        "data": {"task": "induction", "vocab_size": 64, "seq_len": 64, "period_min": 8,
                 "period_max": 32},
        "optim": {"lr": 1e-3, "schedule": "constant", "warmup_steps": 0, "batch_size": 64,
                  "betas": [0.9, 0.999], "grad_clip": 1.0},
        "train": {"max_steps": 1000, "eval_every": 100, "checkpoint_every": 100},
    },
    "modular_addition": {
        "name": "grokking",
        "model": {"kind": "gpt", "n_layer": 1, "n_head": 4, "d_model": 128, "d_mlp": 512,
                  "n_ctx": 3},
        "data": {"task": "modular_addition", "p": 59, "train_fraction": 0.3, "full_batch": True},
        "optim": {"lr": 1e-3, "weight_decay": 1.0, "betas": [0.9, 0.98], "schedule": "constant",
                  "warmup_steps": 10, "batch_size": 1, "grad_clip": 0.0},
        "train": {"max_steps": 8000, "eval_every": 100, "checkpoint_every": 500},
        # Full batch: a skipped batch comes back unchanged at the next step, so a loss spike
        # cannot be stepped around, and each rollback would only halve the LR (grokking's
        # late spikes are part of the dynamics). Spikes are logged as events, not acted on;
        # NaN/Inf are still skipped and rolled back.
        "guard": {"on_spike": "log"},
    },
    "addition": {
        "name": "addition",
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 4, "d_model": 64, "n_ctx": 16},
        "data": {"task": "addition", "digits": 3, "base": 10, "format": "reversed"},
        "optim": {"lr": 3e-3, "warmup_steps": 50, "batch_size": 64},
        "train": {"max_steps": 2000, "eval_every": 200, "checkpoint_every": 200},
    },
    "text": {
        "name": "text",
        "model": {"kind": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128, "n_ctx": 128,
                  "dropout": 0.1},
        "data": {"task": "text", "paths": ["corpus.txt"], "level": "char", "seq_len": 128},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "weight_decay": 0.1, "batch_size": 32},
        "train": {"max_steps": 5000, "eval_every": 250, "checkpoint_every": 250},
    },
    "shakespeare": {
        # nanoGPT's shakespeare_char recipe as its README runs it on a CPU: validation loss
        # about 1.88 nats per character after 2000 steps (`lenslab replicate shakespeare-char`).
        "name": "shakespeare-char",
        "model": {"kind": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128, "n_ctx": 64,
                  "dropout": 0.0, "bias": False},
        "data": {"task": "text", "paths": ["tinyshakespeare.txt"], "level": "char", "seq_len": 64,
                 "val_fraction": 0.1},
        "optim": {"lr": 1e-3, "min_lr_ratio": 0.1, "schedule": "cosine", "warmup_steps": 100,
                  "weight_decay": 0.1, "betas": [0.9, 0.99], "batch_size": 12, "grad_clip": 1.0},
        "train": {"max_steps": 2000, "eval_every": 250, "eval_batches": 20,
                  "checkpoint_every": 250},
    },
    "icl_regression": {
        "name": "icl-regression",
        "model": {"kind": "gpt", "n_layer": 3, "n_head": 2, "d_model": 64, "n_ctx": 22},
        "data": {"task": "icl_regression", "d": 5, "n_points": 11, "noise": 0.0,
                 "x_dist": "normal", "layout": "query_pair"},
        "optim": {"lr": 1e-3, "warmup_steps": 200, "betas": [0.9, 0.999], "batch_size": 64},
        "train": {"max_steps": 10000, "eval_every": 500, "checkpoint_every": 1000},
    },
    "repeat": {
        # One period in training: induction, a fixed offset and a fixed phase all fit the data.
        # `lenslab probe RUN` says which the model took; raise data.disambiguating or change
        # model.position to see the choice move.
        "name": "shortcut",
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 4, "d_model": 64, "n_ctx": 48,
                  "attn_only": True, "tie_embeddings": False, "position": "learned"},
        "data": {"task": "repeat", "vocab_size": 64, "seq_len": 48, "period": 8,
                 "period_min": 5, "period_max": 16, "disambiguating": 0.0},
        "optim": {"lr": 1e-3, "schedule": "constant", "batch_size": 64, "betas": [0.9, 0.999]},
        "train": {"max_steps": 600, "eval_every": 50, "checkpoint_every": 100},
    },
    "sequence": {
        # Trained on lengths 1-8, probed to 16 (`lenslab probe RUN`): the context holds 32.
        "name": "copy",
        "model": {"kind": "gpt", "n_layer": 2, "n_head": 4, "d_model": 64, "n_ctx": 32,
                  "position": "learned"},
        "data": {"task": "sequence", "op": "copy", "symbols": 10, "min_len": 1, "max_len": 8,
                 "eval_max_len": 16},
        "optim": {"lr": 1e-3, "schedule": "constant", "batch_size": 64, "betas": [0.9, 0.999]},
        "train": {"max_steps": 800, "eval_every": 100, "checkpoint_every": 100},
    },
    "question": {
        # Yes/no questions whose training examples fit two rules: move the main auxiliary or
        # the first. `lenslab probe RUN` says which the model took (McCoy et al. 2020's test).
        "name": "question",
        "model": {"kind": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128, "n_ctx": 34},
        "data": {"task": "question", "question_share": 0.5, "disambiguating": 0.0},
        "optim": {"lr": 1e-3, "warmup_steps": 100, "batch_size": 64, "betas": [0.9, 0.98]},
        "train": {"max_steps": 3000, "eval_every": 250, "checkpoint_every": 500},
    },
    "lstm": {
        "name": "lstm-induction",
        "model": {"kind": "lstm", "n_layer": 1, "d_model": 128, "n_ctx": 64},
        "data": {"task": "induction", "vocab_size": 64, "seq_len": 64},
        "optim": {"lr": 3e-3, "schedule": "constant", "batch_size": 64},
        "train": {"max_steps": 1000, "eval_every": 100, "checkpoint_every": 100},
    },
}

_SECTION_DOC = {
    "model": "The network. kind = \"gpt\" (decoder-only, pre-LN) or \"lstm\" (baseline).",
    "data": "The task; batches are a pure function of (seed, batch index).",
    "optim": "AdamW with warmup and a cosine or constant schedule.",
    "train": "The loop: length, logging, evaluation, checkpoints, precision.",
    "guard": "Non-finite and spike detection, and how to recover (see README, 'The guard').",
}


def example_config(task: str, data: Optional[str] = None) -> RunConfig:
    """A complete, valid example config for ``task`` (one of :data:`TASKS`); ``data`` is the
    corpus of the examples that read one (:data:`CORPORA`)."""
    if task not in _EXAMPLES:
        raise ConfigError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    d = _EXAMPLES[task]
    if data is not None:
        if task not in CORPORA:
            raise ConfigError(f"--data is for the examples that read a corpus "
                              f"({', '.join(CORPORA)}); {task!r} generates its data")
        d = {**d, "data": {**d["data"], "paths": [data]}}
    return config_from_dict(d, f"example {task}")


_DOCS = {
    "kind": "gpt | lstm | lsa", "vocab_size": "token ids 0..vocab_size-1",
    "n_layer": "blocks (gpt) or stacked LSTM layers", "n_head": "attention heads per layer",
    "d_model": "residual stream width", "d_mlp": "MLP hidden width (default 4 * d_model)",
    "n_ctx": "positional table size = longest input", "dropout": "dropout probability",
    "attn_only": "blocks without MLP (attention-only, as in Olsson et al. 2022)",
    "tie_embeddings": "unembedding shares the token embedding", "bias": "biases in linears and norms",
    "norm": "layer (pre-LN) | none (no norms, as Nanda et al. 2023's grokking model)",
    "activation": "MLP nonlinearity: gelu | relu", "init_std": "std of the initial weights",
    "split": "ordered | unordered (a, b) and (b, a) on the same side of the split",
    "task": " | ".join(DATA_TASKS),
    "d": "input dimension of x", "n_points": "(x, y) pairs per sequence",
    "noise": "std of the label noise", "x_dist": "normal | uniform",
    "layout": "interleaved | query_pair | paired (see lenslab.config.ICLRegressionData)",
    "d_in": "linear read-in width (regression)", "d_out": "linear read-out width (regression)", "seq_len": "tokens per sequence",
    "period_min": "shortest repeated prefix", "period_max": "longest repeated prefix",
    "p": "modulus (prime)", "train_fraction": "share of all p^2 pairs used for training",
    "full_batch": "every step uses all training pairs", "digits": "digits per operand",
    "base": "number base (2..36)", "format": "answer order: plain | reversed (LSB first)",
    "paths": "local text files", "level": "byte | char | bpe",
    "bpe_vocab_size": "BPE vocabulary trained on the corpus", "val_fraction": "tail held out",
    "lr": "peak learning rate", "min_lr_ratio": "cosine floor as a fraction of lr",
    "schedule": "cosine | constant (after warmup)", "warmup_steps": "linear warmup steps",
    "weight_decay": "AdamW decay on matrices (not biases or norms)", "betas": "AdamW betas",
    "eps": "AdamW epsilon", "max_steps": "optimizer steps", "log_every": "metrics.jsonl every k steps",
    "eval_every": "validation + task metrics every k steps (0 = never)",
    "eval_batches": "validation batches per evaluation",
    "checkpoint_every": "verified checkpoint every k steps (0 = only at the end)",
    "keep_checkpoints": "newest k kept (the newest verified one is never deleted)",
    "precision": "auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16 (with GradScaler)",
    "device": "auto | cpu | cuda | cuda:N", "tensorboard": "also log to RUN/tensorboard",
    "compile": "torch.compile the model", "enabled": "guard on/off",
    "policy": "skip | rollback", "spike_window": "recent accepted losses in the z-score window",
    "spike_warmup": "losses needed before spikes are judged", "spike_zscore": "z above which a loss is a spike",
    "on_spike": "recover (skip, and roll back after repeats) or log (record only; full-batch runs)",
    "rollback_window": "steps over which anomalies are counted",
    "lr_backoff": "LR multiplier after each rollback", "max_recoveries": "rollbacks before giving up (exit 3)",
    "max_consecutive_skips": "give up after this many anomalous steps in a row",
}


def _field_docs(model_cls) -> dict[str, str]:
    # a field's own description wins: the same name can mean different things in two tasks
    return {name: (f.description or _DOCS.get(name) or "") for name, f in model_cls.model_fields.items()}


def example_toml(task: str, data_path: Optional[str] = None) -> str:
    """``example_config(task, data_path)`` as TOML, each section and key commented."""
    cfg = example_config(task, data_path)
    data = cfg.model_dump(mode="json", exclude_none=True)
    lines = [f"# lenslab config for the {task!r} example. Train it with:",
             "#   lenslab train THIS.toml --out runs/NAME",
             "# Every key is shown with its value; unknown keys are errors."]
    if task in CORPORA:
        lines.append(f"# data.paths: {CORPORA[task][1]} (`lenslab init {task} --data PATH` "
                     "sets it; relative paths are read from where you train).")
    lines.append("")
    for key in ("name", "seed"):
        lines.append(tomli_w.dumps({key: data[key]}).strip())
    for section in ("model", "data", "optim", "train", "guard"):
        lines += ["", f"# {_SECTION_DOC[section]}", f"[{section}]"]
        docs = _field_docs(type(getattr(cfg, section)))
        for k, v in data[section].items():
            if isinstance(v, list):
                body = f"{k} = [" + ", ".join(tomli_w.dumps({"v": x})[4:].strip() for x in v) + "]"
            else:
                body = tomli_w.dumps({k: v}).strip()
            doc = docs.get(k, "")
            lines.append(f"{body:<40}# {doc}" if doc else body)
    return "\n".join(lines) + "\n"
