"""The guard: decides, once per optimizer step, whether an update may be applied.

Two detectors:

* **non-finite**: the loss or the global gradient norm is NaN or Inf;
* **spike**: the loss is far above the recent past: ``z = (loss - mean) / std`` over a rolling
  window of accepted losses, after a warm-up, with ``std`` floored at 1% of the mean so a very
  flat curve does not turn noise into spikes. A spike must also exceed the mean by a relative
  margin (``spike_min_rel``).

With ``on_spike = "log"`` a spike is only recorded (an event; the step is applied), for
full-batch training, where a skipped batch would come back unchanged, and for runs whose spikes
are the phenomenon. Non-finite steps are always skipped.

An anomalous step is skipped: the optimizer is not called, so parameters and optimizer state stay
bitwise unchanged (a branch, not a multiply by zero, which would keep NaN). With the rollback
policy, ``rollback_after`` anomalies within ``rollback_window`` steps trigger a rollback: the
trainer reloads the newest verified checkpoint from before the first anomaly of the episode,
marks the data range of the anomalous batches to be skipped, and multiplies the learning rate by
``lr_backoff``. After ``max_recoveries`` rollbacks, the next episode gives up (exit code 3).

The window statistics belong to the model's trajectory and are saved with every checkpoint (and
restored by a rollback); the recovery bookkeeping (LR scale, rollbacks done, skipped ranges) moves
forward only and survives rollbacks.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from lenslab.config import GuardConfig


@dataclass
class Verdict:
    ok: bool
    kind: Optional[str] = None  # "nonfinite" | "spike"
    zscore: Optional[float] = None
    mean: Optional[float] = None
    rollback: bool = False
    give_up: bool = False
    reason: str = ""


@dataclass
class Anomaly:
    step: int
    data_index: int
    kind: str


@dataclass
class Guard:
    cfg: GuardConfig
    window: deque = field(default_factory=deque)  # accepted losses, trajectory state
    anomalies: list[Anomaly] = field(default_factory=list)  # current episode
    consecutive: int = 0
    # forward-only recovery bookkeeping
    lr_scale: float = 1.0
    recoveries: int = 0
    counts: dict = field(default_factory=lambda: {"nonfinite": 0, "spike": 0, "skip": 0,
                                                  "rollback": 0})

    # ----------------------------------------------------------------------- detection
    def check(self, step: int, data_index: int, loss: float, grad_norm: float) -> Verdict:
        """Judge one optimizer step (``loss`` and ``grad_norm`` are global across ranks)."""
        if not self.cfg.enabled:
            return Verdict(ok=True)
        kind = None
        z = mean = None
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            kind = "nonfinite"
        elif len(self.window) >= self.cfg.spike_warmup:
            n = len(self.window)
            mean = sum(self.window) / n
            var = sum((v - mean) ** 2 for v in self.window) / max(n - 1, 1)
            std = max(math.sqrt(var), 0.01 * abs(mean), 1e-8)
            z = (loss - mean) / std
            if z > self.cfg.spike_zscore and loss > mean * (1 + self.cfg.spike_min_rel):
                kind = "spike"
        if kind == "spike" and self.cfg.on_spike == "log":
            self.counts["spike"] += 1  # recorded; the step is applied below
            verdict = Verdict(ok=True, kind="spike", zscore=z, mean=mean)
        else:
            verdict = None
        if kind is None or verdict is not None:
            # an applied step joins the window, logged spike or not: after a lasting rise in
            # the loss the window follows it instead of logging every later step as a spike
            self.window.append(loss)
            while len(self.window) > self.cfg.spike_window:
                self.window.popleft()
            self.consecutive = 0
            return verdict or Verdict(ok=True, zscore=z, mean=mean)

        self.counts[kind] += 1
        self.counts["skip"] += 1
        self.consecutive += 1
        self.anomalies = [a for a in self.anomalies if step - a.step < self.cfg.rollback_window]
        self.anomalies.append(Anomaly(step, data_index, kind))
        v = Verdict(ok=False, kind=kind, zscore=z, mean=mean)
        if self.cfg.policy == "rollback" and len(self.anomalies) >= self.cfg.rollback_after:
            if self.recoveries >= self.cfg.max_recoveries:
                v.give_up = True
                v.reason = (
                    f"{len(self.anomalies)} anomalies in {self.cfg.rollback_window} steps after "
                    f"{self.recoveries} rollbacks (max_recoveries = {self.cfg.max_recoveries})"
                )
            else:
                v.rollback = True
        elif self.consecutive >= self.cfg.max_consecutive_skips:
            v.give_up = True
            v.reason = f"{self.consecutive} consecutive anomalous steps"
        return v

    # ----------------------------------------------------------------------- recovery
    def episode_range(self) -> tuple[int, int, int]:
        """(first anomalous step, first and last anomalous data index) of this episode."""
        first_step = min(a.step for a in self.anomalies)
        idx = [a.data_index for a in self.anomalies]
        return first_step, min(idx), max(idx)

    def rolled_back(self) -> None:
        self.recoveries += 1
        self.counts["rollback"] += 1
        self.lr_scale *= self.cfg.lr_backoff
        self.anomalies = []
        self.consecutive = 0

    # ----------------------------------------------------------------------- state
    def trajectory_state(self) -> dict:
        return {
            "window": list(self.window),
            "anomalies": [[a.step, a.data_index, a.kind] for a in self.anomalies],
            "consecutive": self.consecutive,
        }

    def bookkeeping_state(self) -> dict:
        return {"lr_scale": self.lr_scale, "recoveries": self.recoveries, "counts": dict(self.counts)}

    def state_dict(self) -> dict:
        return {"trajectory": self.trajectory_state(), "bookkeeping": self.bookkeeping_state()}

    def load_trajectory(self, d: dict) -> None:
        self.window = deque(float(v) for v in d["window"])
        self.anomalies = [Anomaly(int(s), int(i), str(k)) for s, i, k in d["anomalies"]]
        self.consecutive = int(d["consecutive"])

    def load_state_dict(self, d: dict) -> None:
        self.load_trajectory(d["trajectory"])
        b = d["bookkeeping"]
        self.lr_scale = float(b["lr_scale"])
        self.recoveries = int(b["recoveries"])
        self.counts = {k: int(v) for k, v in b["counts"].items()}
