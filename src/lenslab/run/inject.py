"""Fault injection for tests and demos: ``--inject nan@30,spike@40-45,kill@50``.

* ``nan@K`` or ``nan@A-B``: the loss of data batch K (or each batch in A..B) is multiplied by NaN,
  so loss and gradients are non-finite.
* ``spike@A-B``: batches A..B are corrupted so that their loss explodes: the loss (and so the
  gradient) of each is multiplied by :data:`SPIKE_FACTOR`. A multiplier, unlike random targets,
  spikes at any point of training, so the injection is always visible to the detector.
* ``kill@K``: the process SIGKILLs itself at the start of optimizer step K. Variants:
  ``kill@K:accum`` after the first micro-batch of step K (inside gradient accumulation), and
  ``kill@K:ckpt`` in the middle of writing the checkpoint of step K.
* ``term@K``: the process sends itself SIGTERM at step K (a preemption).

``nan`` and ``spike`` are keyed on the *data index*, i.e. they corrupt specific batches, so a
rollback that skips those batches really avoids them. ``kill``/``term`` are keyed on the
optimizer step and apply only in the process given them (``resume`` does not repeat them).
"""

from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass, field

from lenslab.errors import ConfigError

SPIKE_FACTOR = 10.0
_PAT = re.compile(r"^(nan|spike|kill|term)@(\d+)(?:-(\d+))?(?::(accum|ckpt))?$")


@dataclass
class Injections:
    nan: set[int] = field(default_factory=set)
    spike: set[int] = field(default_factory=set)
    kill: dict[int, str] = field(default_factory=dict)  # step -> "step" | "accum" | "ckpt"
    term: set[int] = field(default_factory=set)
    spec: str = ""

    @classmethod
    def parse(cls, spec: str | None) -> "Injections":
        inj = cls(spec=spec or "")
        if not spec:
            return inj
        for part in spec.split(","):
            part = part.strip()
            m = _PAT.match(part)
            if not m:
                raise ConfigError(
                    f"--inject: cannot parse {part!r}; expected e.g. nan@30, spike@40-45, "
                    "kill@50, kill@50:accum, kill@50:ckpt, term@50"
                )
            kind, a, b, where = m.group(1), int(m.group(2)), m.group(3), m.group(4)
            hi = int(b) if b else a
            if hi < a:
                raise ConfigError(f"--inject: empty range in {part!r}")
            if where and kind != "kill":
                raise ConfigError(f"--inject: ':{where}' only applies to kill, in {part!r}")
            if kind == "nan":
                inj.nan.update(range(a, hi + 1))
            elif kind == "spike":
                inj.spike.update(range(a, hi + 1))
            elif kind == "kill":
                if b:
                    raise ConfigError(f"--inject: kill takes one step, not a range: {part!r}")
                inj.kill[a] = where or "step"
            else:
                inj.term.add(a)
        return inj

    def persistent(self) -> str:
        """The part that describes the data (nan, spike): ``resume`` re-applies it."""
        parts = [f"nan@{i}" for i in sorted(self.nan)] + [f"spike@{i}" for i in sorted(self.spike)]
        return ",".join(parts)

    def __bool__(self) -> bool:
        return bool(self.nan or self.spike or self.kill or self.term)


def die() -> None:
    """SIGKILL ourselves: no handler, no cleanup, exactly like the OOM killer or a lost node."""
    os.kill(os.getpid(), signal.SIGKILL)
