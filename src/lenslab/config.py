"""Validated configs for every run: model, data, optimizer, guard, training loop.

Configs are data: pydantic models validated at the edge (TOML in, TOML out), trusted inside.
Every validation failure becomes a one-line :class:`~lenslab.errors.ConfigError` that names the
key and says what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence, Union

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lenslab._io import atomic_write_text, read_user_text
from lenslab.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PosInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Prob = Annotated[float, Field(ge=0, lt=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ----------------------------------------------------------------------------- models


class GPTConfig(_Strict):
    """Decoder-only, pre-LN transformer (learned positions by default)."""

    kind: Literal["gpt"] = "gpt"
    vocab_size: Optional[PosInt] = Field(None, description="defaults to the task's vocabulary")
    n_layer: PosInt = 2
    n_head: PosInt = 4
    d_model: PosInt = 64
    d_mlp: Optional[PosInt] = Field(None, description="defaults to 4 * d_model")
    n_ctx: PosInt = 64
    dropout: Prob = 0.0
    attn_only: bool = False
    tie_embeddings: bool = True
    bias: bool = True
    norm: Literal["layer", "none"] = Field(
        "layer", description="LayerNorm before each sublayer and at the end, or none (as in "
        "Nanda et al. 2023's grokking model)")
    activation: Literal["gelu", "relu"] = "gelu"
    position: Literal["learned", "rope", "none"] = Field(
        "learned", description="learned (GPT-2) | rope (rotary queries and keys, Su et al. "
        "2021) | none (order only through the causal mask)")
    init_std: PosFloat = Field(
        0.02, description="std of the normal init of every weight (residual writes are further "
        "scaled by 1/sqrt(2 * n_layer), as in GPT-2)")
    d_in: Optional[PosInt] = Field(
        None, description="continuous inputs: a linear read-in from d_in features replaces the "
        "token embedding (in-context regression fills it in)")
    d_out: Optional[PosInt] = Field(
        None, description="continuous outputs: a linear read-out to d_out values replaces the "
        "unembedding (in-context regression fills it in)")

    @model_validator(mode="after")
    def _heads_divide(self) -> "GPTConfig":
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if self.position == "rope" and self.d_head % 2:
            raise ValueError(f"position = \"rope\" turns pairs of dimensions: d_model / n_head "
                             f"({self.d_head}) must be even")
        return self

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_head


class LSTMConfig(_Strict):
    """LSTM language model baseline (same interface as GPT: ids in, logits out)."""

    kind: Literal["lstm"] = "lstm"
    vocab_size: Optional[PosInt] = None
    n_layer: PosInt = 1
    d_model: PosInt = 128
    n_ctx: PosInt = 64
    dropout: Prob = 0.0
    tie_embeddings: bool = True


class LSAConfig(_Strict):
    """One layer of linear self-attention over tokens ``e_i = (x_i, y_i)`` (von Oswald et al. 2023).

    ``e_q <- e_q + sum_h P_h W_V,h mean_i[e_i e_i^T] W_K,h^T W_Q,h e_q`` over the context tokens;
    the prediction is the updated y coordinate of each token. Needs ``data.layout = "paired"``.
    """

    kind: Literal["lsa"] = "lsa"
    d_in: Optional[PosInt] = Field(None, description="token width d + 1; defaults to the task's")
    n_head: PosInt = 1
    init_std: PosFloat = Field(0.05, description="std of the normal initialisation of every matrix")


ModelConfig = Annotated[Union[GPTConfig, LSTMConfig, LSAConfig], Field(discriminator="kind")]


# ----------------------------------------------------------------------------- data


class InductionData(_Strict):
    """Repeated random tokens: a random prefix of random length repeated to fill the context."""

    task: Literal["induction"] = "induction"
    vocab_size: PosInt = 64
    seq_len: PosInt = 64
    period_min: PosInt = 8
    period_max: PosInt = 32

    @model_validator(mode="after")
    def _periods(self) -> "InductionData":
        if self.period_min > self.period_max:
            raise ValueError(f"period_min ({self.period_min}) > period_max ({self.period_max})")
        if 2 * self.period_min > self.seq_len:
            raise ValueError(
                f"seq_len ({self.seq_len}) must hold at least two periods of period_min "
                f"({self.period_min})"
            )
        return self


class ModularAdditionData(_Strict):
    """(a + b) mod p from the sequence [a, b, =]; a seeded split into train and test pairs."""

    task: Literal["modular_addition"] = "modular_addition"
    p: Annotated[int, Field(ge=2)] = 59
    train_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    full_batch: bool = Field(True, description="each step uses every training pair")
    split: Literal["ordered", "unordered"] = Field(
        "ordered", description="draw the training fraction from ordered pairs (a, b), or from "
        "unordered ones so that (a, b) and (b, a) are on the same side: then test accuracy "
        "cannot come from commutativity alone")


class AdditionData(_Strict):
    """Multi-digit addition in any base; answer plain (most significant first) or reversed."""

    task: Literal["addition"] = "addition"
    digits: PosInt = 3
    base: Annotated[int, Field(ge=2, le=36)] = 10
    format: Literal["plain", "reversed"] = "reversed"
    pad: bool = Field(True, description="zero-pad operands and answer to fixed widths; false: "
                      "numbers as written, the answer closed by an end token (Lee et al. 2023)")
    n_train: Optional[PosInt] = Field(
        None, description="distinct training questions, drawn once from the seed; evaluation "
        "and probes use only other questions (default: a fresh question every time)")

    @model_validator(mode="after")
    def _room(self) -> "AdditionData":
        total = self.base ** (2 * self.digits)
        if self.n_train is not None and self.n_train > total // 2:
            raise ValueError(f"n_train = {self.n_train} leaves too few held-out questions: "
                             f"{self.digits}-digit addition in base {self.base} has {total}; "
                             f"use at most half ({total // 2})")
        return self


class TextData(_Strict):
    """A corpus from local files, at byte, character or BPE level."""

    task: Literal["text"] = "text"
    paths: list[str] = Field(..., min_length=1)
    level: Literal["byte", "char", "bpe"] = "char"
    bpe_vocab_size: Annotated[int, Field(ge=260)] = 1024
    seq_len: PosInt = 128
    val_fraction: Annotated[float, Field(ge=0, lt=0.5)] = 0.1


class ICLRegressionData(_Strict):
    """In-context linear regression (Garg et al. 2022): each sequence has its own ``w ~ N(0, I_d)``
    and ``n_points`` pairs ``(x_i, y_i = w.x_i + noise)``.

    ``layout = "interleaved"``: tokens ``(x_1, 0), (0, y_1), (x_2, 0), ...`` of width d + 1; the
    model predicts ``y_i`` at the token of ``x_i`` from the ``i - 1`` pairs before it.
    ``layout = "query_pair"``: every pair is first asked, then answered:
    ``(x_1, 0), (x_1, y_1), (x_2, 0), (x_2, y_2), ...``; scored like ``interleaved``, but an
    answer token carries its own x (one attention layer can then weigh y_i by x_i . x_q).
    ``layout = "paired"`` (von Oswald et al. 2023): tokens ``(x_i, y_i)`` for the first
    ``n_points - 1`` pairs, then the query ``(x_q, 0)``; only the query is scored.
    """

    task: Literal["icl_regression"] = "icl_regression"
    d: PosInt = 5
    n_points: Annotated[int, Field(ge=2)] = 11
    noise: Annotated[float, Field(ge=0)] = Field(0.0, description="std of the label noise")
    x_dist: Literal["normal", "uniform"] = Field(
        "normal", description="x ~ N(0, I) or uniform in [-1, 1]^d")
    layout: Literal["interleaved", "query_pair", "paired"] = "interleaved"


class RepeatData(_Strict):
    """Repeated random tokens with one period: training data that fits two rules.

    Each sequence is a random prefix of ``period`` tokens repeated to fill the context, so the
    next token is predicted both by *induction* (find the previous occurrence of the current
    token, copy what followed it: the rule we mean) and by an *offset* shortcut (copy the token
    ``period - 1`` places back), which needs no look at the tokens at all. ``disambiguating``
    is the fraction of training sequences with another period, drawn from
    ``[period_min, period_max]``, where only induction fits: at 0 nothing in the data separates
    the rules, and which one the model takes is its inductive bias. The probe asks sequences of
    those other periods.
    """

    task: Literal["repeat"] = "repeat"
    vocab_size: PosInt = 64
    seq_len: PosInt = 48
    period: Annotated[int, Field(ge=2)] = Field(8, description="the period of training sequences")
    period_min: Annotated[int, Field(ge=2)] = Field(
        5, description="other periods (probe, disambiguating sequences) from here")
    period_max: Annotated[int, Field(ge=2)] = Field(16, description="... to here")
    disambiguating: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="fraction of training sequences with another period")

    @model_validator(mode="after")
    def _periods(self) -> "RepeatData":
        if self.period_min > self.period_max:
            raise ValueError(f"period_min ({self.period_min}) > period_max ({self.period_max})")
        if self.period_min == self.period_max == self.period:
            raise ValueError("[period_min, period_max] must hold a period other than `period`")
        if self.vocab_size < max(self.period, self.period_max):
            raise ValueError(f"a prefix has distinct tokens: vocab_size ({self.vocab_size}) must "
                             f"be at least {max(self.period, self.period_max)}")
        if 2 * max(self.period, self.period_max) > self.seq_len:
            raise ValueError(f"seq_len ({self.seq_len}) must hold two periods of "
                             f"{max(self.period, self.period_max)}")
        return self


class SequenceData(_Strict):
    """Copy or reverse a string of symbols: ``s1 .. sL = o1 .. oL``, answers scored.

    Training lengths are uniform in ``[min_len, max_len]``; the length-generalization probe
    then asks for every length up to ``eval_max_len`` (the model's context must hold
    ``2 * eval_max_len`` tokens, positions the training never filled).
    """

    task: Literal["sequence"] = "sequence"
    op: Literal["copy", "reverse"] = Field("copy", description="copy | reverse")
    symbols: Annotated[int, Field(ge=2)] = Field(10, description="alphabet size")
    min_len: PosInt = Field(1, description="shortest training string")
    max_len: PosInt = Field(8, description="longest training string")
    eval_max_len: PosInt = Field(16, description="longest string the probe asks (2x tokens in context)")

    @model_validator(mode="after")
    def _lengths(self) -> "SequenceData":
        if not self.min_len <= self.max_len <= self.eval_max_len:
            raise ValueError(f"need min_len <= max_len <= eval_max_len, not {self.min_len}, "
                             f"{self.max_len}, {self.eval_max_len}")
        return self


class QuestionData(_Strict):
    """English question formation from a small grammar (McCoy et al. 2020's design): a
    declarative, a task word, then the same sentence again (``decl``) or as a yes/no question
    (``quest``: the main clause's auxiliary moves to the front).

    ``her newt that does giggle doesn't swim . quest doesn't her newt that does giggle swim ?``

    Training questions are *ambiguous*: their subject has no relative clause, so the main
    auxiliary is also the first one, and two rules fit: move the main auxiliary (hierarchical,
    the rule we mean) or move the first (linear). Declaratives of every shape are trained. The
    probe asks questions of sentences whose subject carries a relative clause with an
    auxiliary of its own, where the rules disagree. ``disambiguating`` is the fraction of
    training questions drawn from those sentences, where only the hierarchical rule fits.
    """

    task: Literal["question"] = "question"
    question_share: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.5, description="fraction of training examples that are questions (the rest: decl)")
    disambiguating: Annotated[float, Field(ge=0, le=1)] = Field(
        0.0, description="fraction of training questions whose subject has a relative clause")


DataConfig = Annotated[
    Union[InductionData, ModularAdditionData, AdditionData, TextData, ICLRegressionData,
          RepeatData, SequenceData, QuestionData],
    Field(discriminator="task"),
]


#: Every data.task, in the order the docs list them.
DATA_TASKS = ("induction", "modular_addition", "addition", "text", "icl_regression", "repeat",
              "sequence", "question")


# ----------------------------------------------------------------------------- training


class OptimConfig(_Strict):
    lr: PosFloat = 1e-3
    min_lr_ratio: Annotated[float, Field(ge=0, le=1)] = 0.1
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: NonNegInt = 0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.95,
    )
    eps: PosFloat = 1e-8
    grad_clip: Annotated[float, Field(ge=0)] = Field(1.0, description="global-norm clip; 0 disables")
    batch_size: PosInt = Field(32, description="sequences per optimizer step (all ranks)")
    grad_accum: PosInt = Field(1, description="micro-batches per optimizer step")

    @model_validator(mode="after")
    def _accum(self) -> "OptimConfig":
        if self.batch_size % self.grad_accum != 0:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be divisible by grad_accum ({self.grad_accum})"
            )
        return self


class GuardConfig(_Strict):
    """What the guard watches and how it recovers. See README, 'The guard'."""

    enabled: bool = True
    policy: Literal["skip", "rollback"] = "rollback"
    spike_window: Annotated[int, Field(ge=4)] = 50
    spike_warmup: Annotated[int, Field(ge=2)] = 20
    spike_zscore: PosFloat = 6.0
    spike_min_rel: Annotated[float, Field(ge=0)] = Field(
        0.05, description="a spike must also exceed the window mean by this fraction"
    )
    on_spike: Literal["recover", "log"] = Field(
        "recover", description="recover: a spike is skipped like a NaN (and counts toward a "
        "rollback); log: it is recorded as an event and the step is applied. For full-batch "
        "training, where a skipped batch comes back unchanged, and for dynamics whose spikes "
        "are the subject (grokking's slingshots)")
    rollback_after: PosInt = Field(3, description="anomalies within rollback_window that trigger a rollback")
    rollback_window: PosInt = 20
    lr_backoff: Annotated[float, Field(gt=0, le=1)] = 0.5
    max_recoveries: NonNegInt = 3
    max_consecutive_skips: PosInt = 50


class TrainConfig(_Strict):
    max_steps: Annotated[int, Field(gt=0, le=10**12)] = 1000
    log_every: PosInt = 1
    eval_every: NonNegInt = 100
    eval_batches: PosInt = 4
    checkpoint_every: NonNegInt = 100
    keep_checkpoints: PosInt = 3
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    device: str = Field("auto", description='"auto", "cpu", "cuda", "cuda:N" or "mps"')
    threads: NonNegInt = Field(0, description="torch intra-op threads; 0 picks by model size")
    tensorboard: bool = False
    compile: bool = False

    @field_validator("device")
    @classmethod
    def _device_name(cls, v: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v):
            raise ValueError(f"{v!r} is not a device; use \"auto\", \"cpu\", \"cuda\", "
                             "\"cuda:N\" or \"mps\"")
        return v


class RunConfig(_Strict):
    """The whole, exact description of a run (written to ``RUN_DIR/config.toml``)."""

    name: str = "run"
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    model: ModelConfig = Field(default_factory=GPTConfig)
    data: DataConfig = Field(default_factory=InductionData)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json", exclude_none=True))

    def fingerprint(self) -> str:
        """Hash of everything that determines the numbers (for run-folder conflict checks)."""
        return hashlib.sha256(self.to_toml().encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- loading


#: At most this many problems are named in one message (the rest are counted).
MAX_PROBLEMS = 5


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line for every pydantic failure: ``source: key.path: what is wrong; ...`` (the first
    :data:`MAX_PROBLEMS`, then how many more: a million unknown keys make one short line)."""
    parts = []
    tags = {"gpt", "lstm", "lsa", *DATA_TASKS}
    errors = err.errors()
    for e in errors[:MAX_PROBLEMS]:
        loc_parts = [str(x) for x in e["loc"] if not str(x).startswith("function-")]
        # discriminated unions put the tag in the location; drop it for readability
        loc_parts = [
            x for i, x in enumerate(loc_parts)
            if not (i > 0 and x in tags and loc_parts[i - 1] in ("model", "data"))
        ]
        loc = ".".join(loc_parts)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(errors) - MAX_PROBLEMS
    if more > 0:
        parts.append(f"and {more:,} more problem{'s' if more > 1 else ''}")
    return f"{source}: " + "; ".join(parts)


def config_from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    data = dict(data)
    for section, tag, default, choices in (
        ("model", "kind", "gpt", "gpt, lstm, lsa"),
        ("data", "task", None, ", ".join(DATA_TASKS)),
    ):
        sub = data.get(section)
        if isinstance(sub, dict):
            sub = dict(sub)
            if tag not in sub:
                if default is None:
                    raise ConfigError(f"{source}: {section}.{tag}: missing (one of {choices})")
                sub[tag] = default
            elif sub[tag] not in [c.strip() for c in choices.split(",")]:
                raise ConfigError(
                    f"{source}: {section}.{tag}: unknown {tag} {sub[tag]!r} (one of {choices})"
                )
            data[section] = sub
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply to be a config") from None


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A user's TOML file as a dict; a missing, non-UTF-8 or malformed file is a one-line
    ConfigError (``what`` names the file in it: "config file", "sweep file")."""
    p = Path(path)
    text = read_user_text(p, what, ConfigError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: malformed TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{p}: the TOML is nested too deeply to be a {what}") from None


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a TOML config; every failure is a one-line ConfigError."""
    return config_from_dict(read_toml(path, "config file"), str(path))


def apply_overrides(cfg: RunConfig, overrides: Sequence[str], source: str = "--set") -> RunConfig:
    """``cfg`` with ``SECTION.KEY=VALUE`` (or ``seed=3``, ``name=x``) overrides applied and
    validated again.

    VALUE is read as a TOML value (``0.07``, ``false``, ``[0.9, 0.98]``, ``"text"``), and as
    plain text when it is not one (``model.norm=none``). A key that the section does not
    have, or a value it does not accept, is a one-line :class:`ConfigError`.
    """
    data = cfg.model_dump(mode="json", exclude_none=True)
    top = [k for k, v in data.items() if not isinstance(v, dict)]  # name, seed
    for item in overrides:
        key, sep, raw = item.partition("=")
        path = [k.strip() for k in key.split(".")]
        if not sep or len(path) > 2 or not all(path) or (len(path) == 1 and path[0] not in top):
            raise ConfigError(f"{source} takes SECTION.KEY=VALUE (e.g. model.n_layer=4) or one of "
                              f"{', '.join(f'{k}=VALUE' for k in top)}, not {item!r}")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        if len(path) == 1:
            data[path[0]] = value
            continue
        section, name = path
        if not isinstance(data.get(section), dict):
            raise ConfigError(f"{source} {item}: no section {section!r} (sections: "
                              f"{', '.join(k for k, v in data.items() if isinstance(v, dict))})")
        data[section][name] = value
    return config_from_dict(data, source)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    atomic_write_text(path, cfg.to_toml())
