"""Text from a run's model: ``lenslab sample RUN [PROMPT]`` and :func:`sample`.

    import lenslab
    s = lenslab.sample("runs/shakespeare", "ROMEO:", tokens=300, temperature=0.8, top_k=200, seed=1)
    print(s.text)          # the prompt and its continuation, decoded with the run's own vocabulary

A text run decodes with the vocabulary or tokenizer it was trained with. Any other token task
takes its prompt as token ids (``"3 17 5"``) and renders the sequence with its own token
strings, so a synthetic run can be read as easily as a text one. The same seed gives the same
sample: draws come from one seeded generator (see :mod:`lenslab.models.sample`).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from lenslab.errors import DataError, RunDirError
from lenslab.run.folder import Run

#: Characters a terminal would act on (C0 but newline and tab, DEL, C1): shown as escapes.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters become ``\\xNN`` escapes."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass
class Sample:
    """Samples of one run at one checkpoint. ``texts[i]`` is prompt + continuation ``i``."""

    run: str
    step: int
    prompt: str
    texts: list[str]
    ids: list[list[int]] = field(repr=False)
    n_prompt: int
    temperature: float
    top_k: Optional[int]
    seed: int

    @property
    def text(self) -> str:
        """The first sample."""
        return self.texts[0]

    def __str__(self) -> str:
        return "\n\n".join(self.texts)

    def _repr_html_(self) -> str:
        head = (f"<p>{html.escape(self.run)} at step {self.step}; temperature {self.temperature:g}, "
                f"top-k {self.top_k or 'all'}, seed {self.seed}</p>")
        return head + "".join(f"<pre>{html.escape(t)}</pre>" for t in self.texts)


def _encode(task, prompt: Optional[str]) -> tuple[list[int], bool]:
    """Prompt ids, and whether the task is text (decoded as a string)."""
    vocab = int(task.vocab_size)
    if hasattr(task, "decode"):  # a text run: the prompt is text
        if prompt is None or prompt == "":
            try:
                return task.encode("\n"), True  # nanoGPT's start
            except DataError:
                return [int(task.val_ids[0])], True
        return task.encode(prompt), True
    if prompt is None or prompt.strip() == "":
        x, _ = next(iter(task.eval_batches(1, 1)))
        return [int(x[0, 0])], False
    try:
        ids = [int(t) for t in re.split(r"[\s,]+", prompt.strip())]
    except ValueError:
        raise DataError(f"this run's task is {task.name!r}, not text: give the prompt as token "
                        f"ids 0..{vocab - 1} separated by spaces, e.g. \"3 17 5\"") from None
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise DataError(f"token ids {bad[:5]} are outside the vocabulary 0..{vocab - 1}")
    return ids, False


def sample(run: Union[str, Path, Run], prompt: Optional[str] = None, *, tokens: int = 200,
           temperature: float = 1.0, top_k: Optional[int] = None, seed: int = 0,
           samples: int = 1, step: Optional[int] = None) -> Sample:
    """``samples`` continuations of ``prompt`` by the run's model at ``step`` (default: newest).

    ``prompt``: text for a text run (default: a newline, as nanoGPT starts), token ids for
    other tasks (default: the first token of a held-out sequence). ``temperature`` 0 is greedy;
    ``top_k`` keeps the k most likely tokens. The prompt may exceed the context: the model sees
    its last ``n_ctx`` tokens, as it does while sampling.
    """
    import torch

    from lenslab.models.sample import generate

    r = Run.open(run)
    cfg = r.config
    if getattr(cfg.data, "task", "") == "icl_regression" or cfg.model.kind == "lsa":
        raise RunDirError(f"{r.path} is an in-context regression run: its outputs are numbers, "
                          "not tokens, so there is nothing to sample")
    if samples < 1:
        raise DataError(f"samples must be >= 1, got {samples}")
    task = r.task
    ids, is_text = _encode(task, prompt)
    if not ids:
        raise DataError("the prompt encodes to no tokens")
    ck = r.checkpoint(step)
    model = r.load_model(ck)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.tensor([ids] * samples, dtype=torch.long)
    out = generate(model, x, tokens, temperature=temperature, top_k=top_k, generator=g)
    rows = out.tolist()
    if is_text:
        texts = [task.decode(row) for row in rows]
    else:
        texts = [" ".join(task.token_str(row)) for row in rows]
    return Sample(str(r.path), ck.step, prompt or "", texts, rows, len(ids), temperature, top_k,
                  int(seed))
