"""Tasks for the generalization probes: one whose training data fits two rules (repeated
tokens: induction or a fixed offset), and one with a length to generalize over (copy, reverse).

Both answer the probes' question, "which rule did the model learn?", with held-out inputs on
which the candidate rules disagree: ``rule_answers`` gives each rule's answer for the same
inputs, and ``answer_positions`` says where the answers are read.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from lenslab.config import RepeatData, SequenceData
from lenslab.data.base import IGNORE, rng_for
from lenslab.errors import ConfigError

_TRAIN, _EVAL, _PROBE = 0, 1, 2  # stream ids: training, evaluation and probe inputs never meet


class RepeatTask:
    """A random prefix of distinct tokens repeated to fill the context; the next token is the
    target everywhere (the first period is unpredictable and counts for nothing but loss).

    Rules the probes tell apart, on sequences of a period ``P'`` other than the trained ``P``:
    ``induction`` (the token that followed the previous occurrence of the current one: the
    rule we mean) and ``offset`` (the token ``P - 1`` places back, the shortcut).
    """

    name = "repeat"
    rules = ("induction", "offset", "phase")
    intended = "induction"

    def __init__(self, cfg: RepeatData, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.vocab_size = cfg.vocab_size
        self.seq_len = cfg.seq_len
        self.other_periods = np.array(
            [p for p in range(cfg.period_min, cfg.period_max + 1) if p != cfg.period])
        if not any(self._disputed(p).any() for p in self.other_periods):
            raise ConfigError(
                f"data: on periods {cfg.period_min}..{cfg.period_max} induction, offset and phase "
                f"never all disagree within {cfg.seq_len} tokens (with period {cfg.period}); "
                "widen period_min/period_max or lengthen seq_len")

    def _disputed(self, other: int) -> np.ndarray:
        """Target positions ``j`` of a period-``other`` sequence where the three rules give
        three different tokens (the prefix's tokens are distinct, so it is a matter of
        indices: induction reads ``j``, offset ``j - P``, phase ``j mod P``, all mod ``other``)."""
        P = self.cfg.period
        j = np.arange(max(other, P) + 1, self.seq_len + 1)
        ind, off, ph = j % other, (j - P) % other, (j % P) % other
        return (ind != off) & (ind != ph) & (off != ph)

    def sample(self, rng: np.random.Generator, n: int, periods: str) -> dict[str, np.ndarray]:
        """``n`` sequences of ``seq_len + 1`` tokens. ``periods``: "trained" (the rules agree),
        "other" (they disagree) or "mixed" (the training mixture)."""
        P = self.cfg.period
        per = np.full(n, P)
        if periods != "trained":
            other = self.other_periods[rng.integers(0, len(self.other_periods), size=n)]
            keep = rng.random(n) >= self.cfg.disambiguating if periods == "mixed" else np.zeros(n, bool)
            per = np.where(keep, P, other)
        width = max(P, self.cfg.period_max)
        prefix = np.argsort(rng.random((n, self.vocab_size)), axis=1)[:, :width]  # distinct
        T = self.seq_len + 1
        seqs = np.take_along_axis(prefix, np.arange(T)[None, :] % per[:, None], axis=1)
        j = np.arange(T)[None, :]
        offset = np.where(j >= P, np.roll(seqs, P, axis=1), -1)  # token P back; -1: none yet
        phase = seqs[np.arange(n)[:, None], j % P]  # the first period's token at j's phase
        # Where every rule has an answer and no two agree: the current token has occurred a
        # period before (induction can look it up), and the three answers are distinct, so
        # each of the model's answers is credited to one rule at most.
        disagree = ((j >= np.maximum(per[:, None], P) + 1) & (offset != seqs) & (phase != seqs)
                    & (phase != offset))
        return {"x": seqs, "periods": per, "induction": seqs[:, 1:], "offset": offset[:, 1:],
                "phase": phase[:, 1:], "disagree": disagree[:, 1:]}

    def _xy(self, s: dict[str, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(s["x"].astype(np.int64))
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def batch(self, index: int, batch_size: int):
        return self._xy(self.sample(rng_for(self.seed, _TRAIN, index), batch_size, "mixed"))

    def eval_batches(self, n: int, batch_size: int) -> Iterator:
        for i in range(n):  # the training distribution, held out
            yield self._xy(self.sample(rng_for(self.seed, _EVAL, i), batch_size, "mixed"))

    def probe_inputs(self, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """Held-out sequences of other periods: ``x [n, T]`` inputs, each rule's answer per
        position and ``disagree``, the positions where the rules differ."""
        s = self.sample(rng_for(self.seed, _PROBE, seed), n, "other")
        s["x"] = s["x"][:, :-1]
        return s

    def trained_inputs(self, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Held-out sequences of the trained period, where the rules agree."""
        return self._xy(self.sample(rng_for(self.seed, _PROBE, 1, seed), n, "trained"))

    def repeated_accuracy(self, pred: np.ndarray, y: torch.Tensor) -> float:
        """Share of right answers ``pred [n, T]`` on the repeated part of trained-period
        sequences (after the first period nothing is left to guess)."""
        repeated = np.arange(1, self.seq_len + 1) >= self.cfg.period + 1
        return float((pred == y.numpy())[:, repeated].mean())

    def token_str(self, ids):
        return [f"t{int(i)}" for i in ids]

    @torch.no_grad()
    def metrics(self, model, device, n: int = 64) -> dict[str, float]:
        """Accuracy on repeated tokens at the trained period, and on other periods, the share
        of the disputed answers each rule gives (at every evaluation: which rule the model is
        taking as it trains)."""
        x, y = self.trained_inputs(n, seed=10_000)
        out = {"acc": self.repeated_accuracy(model(x.to(device)).argmax(-1).cpu().numpy(), y)}
        d = self.probe_inputs(n, seed=10_000)
        pred = model(torch.from_numpy(d["x"]).to(device)).argmax(-1).cpu().numpy()
        m = d["disagree"]
        if m.any():  # a few sequences may all have periods where the rules never all differ
            for rule in self.rules:
                out[f"follows_{rule}"] = float((pred == d[rule])[m].mean())
        return out


class SequenceTask:
    """``s1 .. sL = o1 .. oL`` with ``o = s`` (copy) or ``s`` reversed; symbols are tokens
    ``0..symbols-1``, then ``=`` and a padding token. Sequences shorter than the batch's
    longest are padded at the end (a causal model never sees what comes after)."""

    name = "sequence"

    def __init__(self, cfg: SequenceData, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.eq, self.pad = cfg.symbols, cfg.symbols + 1
        self.vocab_size = cfg.symbols + 2
        self.seq_len = 2 * cfg.eval_max_len  # the longest probed input (its last token is fed)

    def encode(self, strings: list[np.ndarray] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets for a list of symbol strings, padded to the longest."""
        width = 2 * max(len(s) for s in strings)
        x = np.full((len(strings), width), self.pad, dtype=np.int64)
        y = np.full((len(strings), width), IGNORE, dtype=np.int64)
        for i, s in enumerate(strings):
            L = len(s)
            out = s if self.cfg.op == "copy" else s[::-1]
            full = np.concatenate([s, [self.eq], out])
            x[i, :2 * L] = full[:-1]
            y[i, L:2 * L] = out  # the answer tokens, predicted from '=' onwards
        return torch.from_numpy(x), torch.from_numpy(y)

    def strings(self, rng: np.random.Generator, n: int, length: int | None = None) -> list[np.ndarray]:
        lengths = (np.full(n, length) if length is not None
                   else rng.integers(self.cfg.min_len, self.cfg.max_len + 1, size=n))
        return [rng.integers(0, self.cfg.symbols, size=int(L)) for L in lengths]

    def batch(self, index: int, batch_size: int):
        return self.encode(self.strings(rng_for(self.seed, _TRAIN, index), batch_size))

    def eval_batches(self, n: int, batch_size: int) -> Iterator:
        for i in range(n):
            yield self.encode(self.strings(rng_for(self.seed, _EVAL, i), batch_size))

    def probe_inputs(self, n: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` held-out strings of one length, encoded."""
        return self.encode(self.strings(rng_for(self.seed, _PROBE, seed, length), n, length))

    def token_str(self, ids):
        return ["=" if i == self.eq else "_" if i == self.pad else str(i) for i in map(int, ids)]

    @staticmethod
    def score(pred: np.ndarray, y: torch.Tensor) -> tuple[np.ndarray, float]:
        """Per-string exact match ``[n]`` (every answer token right) and per-token accuracy of
        argmax predictions ``pred [n, T]`` against targets ``y``."""
        y = y.numpy()
        scored = y != IGNORE
        hit = pred == y
        return (hit | ~scored).all(1).astype(float), float(hit[scored].mean())

    @torch.no_grad()
    def metrics(self, model, device, n: int = 256) -> dict[str, float]:
        """Exact match in the training range and just past it (``max_len + 1``, when the
        context holds it): how length generalization moves as the model trains."""
        out = {}
        lengths = {"exact_match": None}
        if self.cfg.eval_max_len > self.cfg.max_len:
            lengths["exact_match_longer"] = self.cfg.max_len + 1
        for key, length in lengths.items():
            if length is None:
                x, y = self.encode(self.strings(rng_for(self.seed, _EVAL, 10_000), n))
            else:
                x, y = self.probe_inputs(n, length, seed=10_000)
            out[key] = float(self.score(model(x.to(device)).argmax(-1).cpu().numpy(), y)[0].mean())
        return out
