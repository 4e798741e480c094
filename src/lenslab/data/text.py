"""A text corpus from local files at byte, character or BPE level.

Byte level takes any file. Character level needs UTF-8 (a non-UTF-8 file is a clear error that
names the byte offset). BPE trains a byte-level BPE with the ``tokenizers`` library on the corpus
and saves it next to the run, so analyses decode with exactly the tokenizer the model saw.

Training batches are windows at offsets drawn from ``(seed, index)``: a pure function of the
data index, like every lenslab task, so resume replays them exactly.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from lenslab._io import atomic_write_text
from lenslab.config import TextData
from lenslab.data.base import mean_loss, rng_for
from lenslab.errors import DataError


def _read_corpus(paths: list[str], need_utf8: bool) -> tuple[bytes, str | None, str]:
    """All files joined by newlines: the bytes, the text (when UTF-8 is needed), the sha256."""
    chunks = []
    h = hashlib.sha256()
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise DataError(f"data file not found: {path}")
        raw = path.read_bytes()
        if need_utf8:
            try:
                raw.decode("utf-8")  # per file, so the error names the file and offset
            except UnicodeDecodeError as e:
                raise DataError(
                    f"{path}: not UTF-8 (invalid byte at offset {e.start}); "
                    "use level = \"byte\" for arbitrary bytes, or re-encode the file"
                ) from None
        chunks.append(raw)
        h.update(raw)
    data = b"\n".join(chunks)
    if len(data) == 0:
        raise DataError(f"the corpus is empty: {', '.join(paths)}")
    return data, (data.decode("utf-8") if need_utf8 else None), h.hexdigest()


class TextTask:
    name = "text"

    def __init__(self, cfg: TextData, seed: int, run_dir: Optional[Path] = None):
        self.cfg = cfg
        self.seed = seed
        self.seq_len = cfg.seq_len
        raw, text, self.corpus_sha256 = _read_corpus(cfg.paths, need_utf8=cfg.level != "byte")
        self._tokenizer = None
        if cfg.level == "byte":
            ids = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
            self.vocab_size = 256
            self._itos = [bytes([i]).decode("latin-1") for i in range(256)]
        elif cfg.level == "char":
            chars = sorted(set(text))
            self._itos = chars
            stoi = {c: i for i, c in enumerate(chars)}
            ids = np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
            self.vocab_size = len(chars)
        else:
            self._tokenizer = self._bpe(text, run_dir)
            ids = np.asarray(self._tokenizer.encode(text).ids, dtype=np.int64)
            self.vocab_size = self._tokenizer.get_vocab_size()
        n_val = int(len(ids) * cfg.val_fraction)
        self.train_ids = ids[: len(ids) - n_val]
        self.val_ids = ids[len(ids) - n_val:] if n_val > self.seq_len + 1 else ids[-(self.seq_len + 2):]
        if len(self.train_ids) < self.seq_len + 2:
            raise DataError(
                f"the corpus has {len(self.train_ids)} training tokens, fewer than one window of "
                f"seq_len + 1 = {self.seq_len + 1}; use more text or a smaller seq_len"
            )

    def _bpe(self, text: str, run_dir: Optional[Path]):
        # tokenizers loads only for byte-pair runs
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        saved = run_dir / "tokenizer.json" if run_dir is not None else None
        if saved is not None and saved.is_file():
            return Tokenizer.from_file(str(saved))
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.cfg.bpe_vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator([text], trainer=trainer)
        return tok

    def save_artifacts(self, run_dir: Path) -> None:
        if self._tokenizer is not None:
            atomic_write_text(run_dir / "tokenizer.json", self._tokenizer.to_str())
        else:
            atomic_write_text(
                run_dir / "vocab.json",
                json.dumps({"level": self.cfg.level, "itos": self._itos}, ensure_ascii=True),
            )

    @property
    def n_train_tokens(self) -> int:
        return len(self.train_ids)

    def _windows(self, ids: np.ndarray, starts: np.ndarray):
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        w = torch.from_numpy(ids[idx])
        return w[:, :-1].contiguous(), w[:, 1:].contiguous()

    def batch(self, index: int, batch_size: int):
        hi = len(self.train_ids) - self.seq_len - 1
        starts = rng_for(self.seed, 0, index).integers(0, hi + 1, batch_size)
        return self._windows(self.train_ids, starts)

    def eval_batches(self, n: int, batch_size: int) -> Iterator:
        hi = len(self.val_ids) - self.seq_len - 1
        for i in range(n):
            starts = rng_for(self.seed, 1, i).integers(0, hi + 1, batch_size)
            yield self._windows(self.val_ids, starts)

    def encode(self, text: str) -> list[int]:
        if self._tokenizer is not None:
            return self._tokenizer.encode(text).ids
        if self.cfg.level == "byte":
            return list(text.encode("utf-8"))
        stoi = {c: i for i, c in enumerate(self._itos)}
        missing = sorted({c for c in text if c not in stoi})
        if missing:
            raise DataError(f"characters not in the corpus vocabulary: {missing[:10]!r}")
        return [stoi[c] for c in text]

    def decode(self, ids) -> str:
        """Text of token ids (bytes that do not form UTF-8 become U+FFFD)."""
        ids = [int(i) for i in ids]
        if self._tokenizer is not None:
            return self._tokenizer.decode(ids)
        if self.cfg.level == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self._itos[i] for i in ids)

    def token_str(self, ids):
        if self._tokenizer is not None:
            return [self._tokenizer.id_to_token(int(i)) or "" for i in ids]
        return [self._itos[int(i)] for i in ids]

    @torch.no_grad()
    def full_val_loss(self, model, device="cpu", batch_size: int = 256) -> float:
        """Mean loss over every token of the validation split: consecutive windows of
        ``seq_len`` (each token predicted once, from up to ``seq_len - 1`` tokens before it in
        its window, the contexts training saw); the last partial window is scored too."""
        ids = self.val_ids
        n = len(ids) - 1  # tokens that have a next token
        tot, cnt = 0.0, 0
        starts = np.arange(0, n, self.seq_len)
        for i in range(0, len(starts), batch_size):
            chunk = starts[i:i + batch_size]
            full = chunk[chunk + self.seq_len <= n]
            if len(full):
                x, y = self._windows(ids, full)
                loss = mean_loss(model, x.to(device), y.to(device))
                tot += loss.sum().item()
                cnt += loss.numel()
            for s in chunk[chunk + self.seq_len > n]:  # the tail: one shorter window
                w = torch.from_numpy(ids[s:n + 1])[None]
                loss = mean_loss(model, w[:, :-1].to(device), w[:, 1:].to(device))
                tot += loss.sum().item()
                cnt += loss.numel()
        return tot / max(cnt, 1)

    def metrics(self, model, device) -> dict[str, float]:
        """Nothing beyond the trainer's ``val_loss`` (``train.eval_batches`` windows of the
        validation split); :meth:`full_val_loss` scores all of it."""
        return {}
