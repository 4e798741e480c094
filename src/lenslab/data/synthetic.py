"""Tasks generated from a seed: induction, modular addition, multi-digit addition."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from lenslab.config import AdditionData, InductionData, ModularAdditionData
from lenslab.data.base import IGNORE, mean_loss, rng_for

_TRAIN, _EVAL, _POOL = 0, 1, 2  # stream ids: train and eval batches never share randomness


class InductionTask:
    """Repeated random tokens. Each sequence draws a period p uniformly in
    [period_min, period_max], a random prefix of p tokens, and repeats it to fill the context.
    A random period stops the model from predicting by absolute position: only looking back
    for the previous occurrence of the current token (an induction head) works.
    """

    name = "induction"

    def __init__(self, cfg: InductionData, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.vocab_size = cfg.vocab_size
        self.seq_len = cfg.seq_len

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` sequences of seq_len + 1 tokens and their periods."""
        T = self.seq_len + 1
        periods = rng.integers(self.cfg.period_min, self.cfg.period_max + 1, size=n)
        prefix = rng.integers(0, self.vocab_size, size=(n, self.cfg.period_max))
        pos = np.arange(T)[None, :] % periods[:, None]  # [n, T]
        seqs = np.take_along_axis(prefix, pos, axis=1)
        return seqs, periods

    def _xy(self, seqs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.from_numpy(seqs.astype(np.int64))
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def batch(self, index: int, batch_size: int):
        seqs, _ = self.sample(rng_for(self.seed, _TRAIN, index), batch_size)
        return self._xy(seqs)

    def eval_batches(self, n: int, batch_size: int) -> Iterator:
        for i in range(n):
            yield self._xy(self.sample(rng_for(self.seed, _EVAL, i), batch_size)[0])

    def repeated_mask(self, periods: np.ndarray) -> torch.Tensor:
        """``[n, T]`` True where induction can predict the target: the current token already
        occurred a period ago. (The first token of the second period is a repeat too, but
        nothing in the context says the prefix has ended, so it is not counted.)"""
        tpos = np.arange(1, self.seq_len + 1)[None, :]  # position of each target
        return torch.from_numpy(tpos >= periods[:, None] + 1)

    def token_str(self, ids):
        return [f"t{int(i)}" for i in ids]

    @torch.no_grad()
    def metrics(self, model, device, n: int = 4, batch_size: int = 64) -> dict[str, float]:
        rep_sum = first_sum = 0.0
        rep_n = first_n = 0
        for i in range(n):
            seqs, periods = self.sample(rng_for(self.seed, _EVAL, 1000 + i), batch_size)
            x, y = self._xy(seqs)
            loss = mean_loss(model, x.to(device), y.to(device)).cpu()
            mask = self.repeated_mask(periods)
            rep_sum += loss[mask].sum().item()
            rep_n += int(mask.sum())
            first_sum += loss[~mask].sum().item()
            first_n += int((~mask).sum())
        return {
            "repeat_loss": rep_sum / max(rep_n, 1),
            "first_period_loss": first_sum / max(first_n, 1),
        }


class ModularAdditionTask:
    """``[a, b, =] -> (a + b) mod p``; a seeded fraction of all p^2 pairs is the training set."""

    name = "modular_addition"

    def __init__(self, cfg: ModularAdditionData, seed: int):
        self.cfg = cfg
        self.seed = seed
        p = cfg.p
        self.p = p
        self.vocab_size = p + 1  # p residues and '='
        self.seq_len = 3
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        pairs = np.stack([a.ravel(), b.ravel()], axis=1)
        if cfg.split == "ordered":
            perm = rng_for(seed, 7).permutation(len(pairs))
            n_train = max(1, int(round(cfg.train_fraction * len(pairs))))
            self.train_pairs = pairs[perm[:n_train]]
            self.test_pairs = pairs[perm[n_train:]]
        else:  # choose unordered pairs {a, b}; both orders land on the chosen side
            key = np.minimum(pairs[:, 0], pairs[:, 1]) * p + np.maximum(pairs[:, 0], pairs[:, 1])
            groups = np.unique(key)
            perm = rng_for(seed, 7).permutation(len(groups))
            n_train = max(1, int(round(cfg.train_fraction * len(groups))))
            train = np.isin(key, groups[perm[:n_train]])
            self.train_pairs = pairs[train]
            self.test_pairs = pairs[~train]

    def _xy(self, pairs: np.ndarray):
        a, b = pairs[:, 0], pairs[:, 1]
        x = np.stack([a, b, np.full_like(a, self.p)], axis=1)
        y = np.full_like(x, IGNORE)
        y[:, 2] = (a + b) % self.p
        return torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64))

    def batch(self, index: int, batch_size: int):
        if self.cfg.full_batch:
            return self._xy(self.train_pairs)
        idx = rng_for(self.seed, _TRAIN, index).integers(0, len(self.train_pairs), batch_size)
        return self._xy(self.train_pairs[idx])

    def eval_batches(self, n: int, batch_size: int):
        yield self._xy(self.test_pairs)

    def token_str(self, ids):
        return ["=" if int(i) == self.p else str(int(i)) for i in ids]

    @torch.no_grad()
    def metrics(self, model, device) -> dict[str, float]:
        out = {}
        for split, pairs in (("train", self.train_pairs), ("test", self.test_pairs)):
            if len(pairs) == 0:
                continue
            x, y = self._xy(pairs)
            logits = model(x.to(device))[:, 2].float().cpu()
            target = y[:, 2]
            right = (logits.argmax(-1) == target).float()
            out[f"{split}_acc"] = right.mean().item()
            out[f"{split}_loss"] = torch.nn.functional.cross_entropy(logits, target).item()
            if split == "test":  # commutativity is learned first: held-out pairs split by
                swap = self.swap_trained()  # whether their swap (b, a) was trained
                for name, rows in (("swap_trained", swap), ("swap_held_out", ~swap)):
                    if rows.any():
                        out[f"test_acc_{name}"] = right[torch.from_numpy(rows)].mean().item()
        return out

    def swap_trained(self) -> np.ndarray:
        """``[n_test]``: whether each held-out pair's swap ``(b, a)`` is a training pair."""
        p = self.p
        trained = set((self.train_pairs[:, 0] * p + self.train_pairs[:, 1]).tolist())
        return np.array([int(b) * p + int(a) in trained for a, b in self.test_pairs], dtype=bool)


class AdditionTask:
    """``a + b = c`` with ``digits``-digit operands in ``base``; only answer digits are scored.

    Tokens: digits ``0..base-1``, then ``+`` and ``=``. Operands are zero-padded to ``digits``,
    the answer to ``digits + 1``; ``format = "reversed"`` writes the answer least significant
    digit first (the order in which carries are computed), ``plain`` most significant first.

    With ``pad = False`` numbers are written as they are (``7+35=42``; Lee et al. 2023's
    format), the answer closed by an end token ``$`` that is scored too, and the rest of the
    window filled with end tokens that are not; questions then differ in length, and greedy
    answers (:meth:`answers`) are read up to the end token.

    With ``n_train`` set, training draws from a fixed set of that many distinct questions
    (``train_pairs``, drawn once from the seed), and evaluation and :meth:`held_out` draw only
    questions outside it: the setting of sample-efficiency studies (Lee et al. 2023).
    """

    name = "addition"

    def __init__(self, cfg: AdditionData, seed: int):
        self.cfg = cfg
        self.seed = seed
        self.base = cfg.base
        self.plus, self.eq, self.end = cfg.base, cfg.base + 1, cfg.base + 2
        self.vocab_size = cfg.base + (2 if cfg.pad else 3)
        n = cfg.digits
        self.answer_len = n + 1  # the longest answer, in digits
        # a + b = c (and the end token when unpadded), minus the last token: the inputs
        self.seq_len = 3 * n + 2 if cfg.pad else 3 * n + 3
        self._hi = cfg.base ** n
        self.train_pairs = None if cfg.n_train is None else self._draw_pool(cfg.n_train)
        self._trained = (None if self.train_pairs is None else
                         np.sort(self.train_pairs[:, 0] * self._hi + self.train_pairs[:, 1]))

    def _draw_pool(self, k: int) -> np.ndarray:
        """``k`` distinct questions ``[k, 2]`` from the seed's own stream."""
        rng = rng_for(self.seed, _POOL)
        total = self._hi * self._hi
        if total <= 1 << 24:
            keys = rng.choice(total, size=k, replace=False)
        else:  # too many questions to permute: draw, drop repeats, top up
            keys = np.unique(rng.integers(0, total, k))
            while keys.size < k:
                keys = np.unique(np.concatenate([keys, rng.integers(0, total, k - keys.size)]))
            keys = rng.permutation(keys)[:k]
        return np.stack([keys // self._hi, keys % self._hi], axis=1)

    def held_out(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` questions ``(a [n], b [n])`` that are not training questions."""
        a, b = rng.integers(0, self._hi, n), rng.integers(0, self._hi, n)
        if self._trained is None:
            return a, b
        while True:
            keys = a * self._hi + b
            pos = np.searchsorted(self._trained, keys).clip(max=self._trained.size - 1)
            seen = self._trained[pos] == keys
            if not seen.any():
                return a, b
            a[seen], b[seen] = rng.integers(0, self._hi, seen.sum()), rng.integers(0, self._hi, seen.sum())

    def _digits(self, v: np.ndarray, width: int) -> np.ndarray:
        out = np.empty((len(v), width), dtype=np.int64)
        for i in range(width - 1, -1, -1):
            out[:, i] = v % self.base
            v = v // self.base
        return out

    def _written(self, v: int) -> list[int]:
        """Digits of ``v`` without leading zeros, most significant first."""
        out = []
        while True:
            v, r = divmod(v, self.base)
            out.append(r)
            if v == 0:
                return out[::-1]

    def _question(self, a: int, b: int) -> tuple[list[int], list[int]]:
        """Unpadded question tokens (through ``=``) and answer tokens (through the end)."""
        c = self._written(a + b)
        if self.cfg.format == "reversed":
            c = c[::-1]
        return self._written(a) + [self.plus] + self._written(b) + [self.eq], c + [self.end]

    def encode(self, a: np.ndarray, b: np.ndarray):
        """Inputs ``[n, seq_len]`` and targets (IGNORE except the answer) for questions a + b."""
        if not self.cfg.pad:
            seq = np.full((len(a), self.seq_len + 1), self.end, dtype=np.int64)
            y = np.full((len(a), self.seq_len), IGNORE, dtype=np.int64)
            for i, (ai, bi) in enumerate(zip(a.tolist(), b.tolist())):
                q, c = self._question(ai, bi)
                seq[i, :len(q) + len(c)] = q + c
                y[i, len(q) - 1:len(q) + len(c) - 1] = c
            return torch.from_numpy(seq[:, :-1].copy()), torch.from_numpy(y)
        n = self.cfg.digits
        c = self._digits(a + b, n + 1)
        if self.cfg.format == "reversed":
            c = c[:, ::-1]
        k = len(a)
        seq = np.concatenate(
            [self._digits(a, n), np.full((k, 1), self.plus), self._digits(b, n),
             np.full((k, 1), self.eq), c], axis=1,
        )
        x = seq[:, :-1]
        y = np.full_like(x, IGNORE)
        y[:, -self.answer_len:] = seq[:, -self.answer_len:]
        return torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    def batch(self, index: int, batch_size: int):
        rng = rng_for(self.seed, _TRAIN, index)
        if self.train_pairs is not None:
            a, b = self.train_pairs[rng.integers(0, len(self.train_pairs), batch_size)].T
            return self.encode(a, b)
        return self.encode(rng.integers(0, self._hi, batch_size), rng.integers(0, self._hi, batch_size))

    def eval_batches(self, n: int, batch_size: int):
        for i in range(n):
            yield self.encode(*self.held_out(rng_for(self.seed, _EVAL, i), batch_size))

    def token_str(self, ids):
        return ["+" if i == self.plus else "=" if i == self.eq else "$" if i == self.end
                else np.base_repr(int(i), 36) for i in map(int, ids)]

    @torch.no_grad()
    def answers(self, model, device, a: np.ndarray, b: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
        """Target and greedy answer digits for questions ``a + b``, as written (in the task's
        order, without the end token): ``(targets, predictions)``, lists of digit lists."""
        if self.cfg.pad:
            x, y = self.encode(a, b)
            pred = self.predict(model, device, x).tolist()
            return y[:, -self.answer_len:].tolist(), pred
        qs = [self._question(ai, bi) for ai, bi in zip(a.tolist(), b.tolist())]
        targets = [c[:-1] for _, c in qs]
        preds: list[list[int]] = [[] for _ in qs]
        by_len: dict[int, list[int]] = {}
        for i, (q, _) in enumerate(qs):
            by_len.setdefault(len(q), []).append(i)
        for rows in by_len.values():  # one batch per question length
            seq = torch.tensor([qs[i][0] for i in rows], device=device)
            for _ in range(self.answer_len + 1):
                seq = torch.cat([seq, model(seq)[:, -1].argmax(-1, keepdim=True)], dim=1)
            for i, row in zip(rows, seq[:, len(qs[rows[0]][0]):].tolist()):
                preds[i] = row[:row.index(self.end)] if self.end in row else row
        return targets, preds

    @torch.no_grad()
    def predict(self, model, device, x: torch.Tensor) -> torch.Tensor:
        """Greedy answer digits ``[n, digits + 1]`` (teacher-forced prefix is the question)."""
        q = x[:, : -self.answer_len + 1].to(device)  # up to and including '='
        for _ in range(self.answer_len):
            nxt = model(q)[:, -1].argmax(-1, keepdim=True)
            q = torch.cat([q, nxt], dim=1)
        return q[:, -self.answer_len:].cpu()

    @torch.no_grad()
    def metrics(self, model, device, n: int = 2, batch_size: int = 256) -> dict[str, float]:
        """Exact match and per-digit accuracy (digits compared as written) of greedy answers
        to the held-out questions of :meth:`eval_batches`."""
        em = digit = 0.0
        total = 0
        for i in range(n):
            a, b = self.held_out(rng_for(self.seed, _EVAL, i), batch_size)
            for t, p in zip(*self.answers(model, device, a, b)):
                em += t == p
                digit += sum(u == v for u, v in zip(t, p)) / len(t)
                total += 1
        return {"exact_match": em / total, "digit_acc": digit / total}
