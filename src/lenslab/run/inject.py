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


class Ranges:
    """Sets of data indices kept as closed ranges: ``nan@0-20000000`` is one pair, not twenty
    million integers (in memory and in ``run.json``)."""

    def __init__(self, ranges: tuple[tuple[int, int], ...] = ()):
        self.ranges: list[tuple[int, int]] = []
        for a, b in ranges:
            self.add(a, b)

    def add(self, a: int, b: int) -> None:
        merged = sorted([*self.ranges, (a, b)])
        out: list[tuple[int, int]] = []
        for lo, hi in merged:
            if out and lo <= out[-1][1] + 1:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        self.ranges = out

    def __contains__(self, i: object) -> bool:
        return isinstance(i, int) and any(lo <= i <= hi for lo, hi in self.ranges)

    def __ior__(self, other: "Ranges") -> "Ranges":
        for a, b in other.ranges:
            self.add(a, b)
        return self

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ranges) and self.ranges == other.ranges

    def spec(self, kind: str) -> list[str]:
        return [f"{kind}@{a}" if a == b else f"{kind}@{a}-{b}" for a, b in self.ranges]


@dataclass
class Injections:
    nan: Ranges = field(default_factory=Ranges)
    spike: Ranges = field(default_factory=Ranges)
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
                inj.nan.add(a, hi)
            elif kind == "spike":
                inj.spike.add(a, hi)
            elif kind == "kill":
                if b:
                    raise ConfigError(f"--inject: kill takes one step, not a range: {part!r}")
                inj.kill[a] = where or "step"
            else:
                inj.term.add(a)
        return inj

    def persistent(self) -> str:
        """The part that describes the data (nan, spike): ``resume`` re-applies it."""
        return ",".join(self.nan.spec("nan") + self.spike.spec("spike"))

    def __bool__(self) -> bool:
        return bool(self.nan or self.spike or self.kill or self.term)


def die() -> None:
    """SIGKILL ourselves: no handler, no cleanup, exactly like the OOM killer or a lost node."""
    os.kill(os.getpid(), signal.SIGKILL)
