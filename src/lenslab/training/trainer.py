"""The guarded trainer.

One optimizer step, in order:

1. set ``lr = lr_at(step) * guard.lr_scale`` on every param group;
2. take the next data index from the cursor and build the global batch for it;
3. forward and backward over the micro-batches of this rank (DDP syncs only on the last one);
   each micro loss is ``sum of token losses / tokens in the global batch * world``, so the
   accumulated, all-reduced gradient is exactly the gradient of the global mean loss;
4. unscale (fp16), then compute the global gradient norm and clip, exactly once;
5. all-reduce the loss (and the preemption flag) so every rank sees the same numbers;
6. the guard judges the step: apply it, skip it (no optimizer call: state bitwise unchanged),
   roll back, or give up;
7. log one JSON line to ``metrics.jsonl``; guard events go to ``events.jsonl``.

Checkpoints hold everything that determines the future: weights, optimizer and scaler state,
every rank's RNG state, the data cursor, the guard state and the counters. Resuming from one
therefore replays the same steps bit for bit (on CPU in float32).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from rich.console import Console
from rich.markup import escape as escape_markup
from torch.nn.parallel import DistributedDataParallel as DDP

from lenslab.config import RunConfig
from lenslab.data import DataCursor, task_loss, task_scored
from lenslab.errors import RunIOError
from lenslab.models import build_model
from lenslab.run import Checkpoint, Run
from lenslab.run.checkpoint import (
    InvalidCheckpoint,
    load_weights,
    read_checkpoint,
    step_dir_name,
    verify,
)
from lenslab.run.folder import os_reason
from lenslab.run.inject import SPIKE_FACTOR, Injections, die
from lenslab.run.tensorboard import TensorBoardLog
from lenslab.training import distributed as D
from lenslab.training.clip import clip_global_norm
from lenslab.training.guard import Guard, Verdict
from lenslab.training.outcome import TrainResult
from lenslab.training.progress import Progress
from lenslab.training.schedule import lr_at
from lenslab.training.setup import (
    device_for,
    pick_threads,
    precision_for,
    preflight,
)
from lenslab.training.stop import Stop

_TIMING_KEYS = ("elapsed_s", "tok_per_s")


class Trainer:
    """Train one run folder. Use :meth:`create` for a new run and :meth:`open` to resume."""

    def __init__(
        self,
        run: Run,
        injections: Optional[Injections] = None,
        progress: bool = True,
        callbacks: Optional[list[Callable[["Trainer", dict], None]]] = None,
        console: Any = None,
        stop: Optional["Stop"] = None,
        lock: Any = None,
    ):
        self.run = run
        self.inj = injections or Injections()
        self.callbacks = callbacks or []
        self.show_progress = progress
        self._console = console
        self.stop = stop or Stop()
        self.lock = lock  # the run folder's writer lock, held until fit() ends
        self._stop_agreed = False

        self.task = run.task
        self.cfg = run.resolved
        self.dev = device_for(self.cfg, int(os.environ.get("LOCAL_RANK", "0")))
        self.dist = D.setup(self.dev.type)
        if self.dist.enabled and self.dev.type == "cuda":
            self.dev = torch.device("cuda", self.dist.local_rank)
        self.amp_dtype = precision_for(self.cfg, self.dev)

        torch.manual_seed(self.cfg.seed)  # same initial weights on every rank
        self.model = build_model(self.cfg.model).to(self.dev)
        self.n_params = self.model.num_params(non_embedding=True)
        per_rank_tokens = self.cfg.optim.batch_size * self.task.seq_len // max(self.dist.world, 1)
        torch.set_num_threads(pick_threads(self.cfg.train.threads, self.n_params, per_rank_tokens))
        # each rank its own stream (dropout); saved per rank in every checkpoint
        torch.manual_seed(self.cfg.seed + 1 + 1_000_003 * self.dist.rank)

        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        o = self.cfg.optim
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": o.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=o.lr, betas=o.betas, eps=o.eps,
        )
        self.scaler = (
            torch.amp.GradScaler(self.dev.type) if self.amp_dtype == torch.float16 else None
        )
        self.net: torch.nn.Module = self.model
        if self.cfg.train.compile:
            self.net = torch.compile(self.net)
        if self.dist.enabled:
            self.net = DDP(self.net, device_ids=[self.dev.index] if self.dev.type == "cuda" else None)

        self.step = 0
        self.seq = 0  # iterations executed in this run's life, including rolled-back ones
        self.tokens = 0
        self.cursor = DataCursor()
        self.guard = Guard(self.cfg.guard)
        self.last_loss: Optional[float] = None
        self._last_ckpt_step = -1
        self._tb = None

    @property
    def run_dir(self) -> Path:
        return self.run.path

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        cfg: RunConfig,
        run_dir: str | Path,
        injections: Optional[Injections] = None,
        memory_check: bool = True,
        **kw: Any,
    ) -> "Trainer":
        """Validate everything, then create the run folder with its step-0 checkpoint, or
        nothing: the folder is staged under a hidden name, the checkpoint written into it, and
        only then is it renamed into place (:meth:`Run.create`). So a kill, a full disk or a
        config error found late leaves no folder that neither ``train`` nor ``resume`` takes.

        Under torchrun, rank 0 creates the folder (the step-0 checkpoint is written by every
        rank together, after it appears) and the others wait for it.
        """
        run_dir = Path(run_dir)
        preflight(cfg, memory_check)
        inject = (injections or Injections()).persistent()
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            if int(os.environ.get("RANK", "0")) == 0:
                run = Run.create(run_dir, cfg, inject=inject)
                lock = run.lock("train").__enter__()
            else:  # other ranks wait for rank 0's folder
                for _ in range(600):
                    if Run.is_run(run_dir):
                        break
                    time.sleep(0.1)
                run, lock = Run.open(run_dir), None
            return cls(run, injections, lock=lock, **kw)
        run = Run.create(run_dir, cfg, inject=inject, staged=True)
        lock = run.lock("train").__enter__()  # flock follows the folder when it is renamed
        try:
            t = cls(run, injections, lock=lock, **kw)
            t.save_checkpoint()  # step 0, inside the staging folder
            run.commit()
        except BaseException:
            lock.__exit__(None, None, None)
            run.discard()
            raise
        return t

    @classmethod
    def open(
        cls, run_dir: str | Path, injections: Optional[Injections] = None,
        memory_check: bool = True, **kw: Any
    ) -> "Trainer":
        """A trainer for an existing run, positioned at its newest checkpoint that verifies and
        loads; a run with none (killed before its first, or every one damaged) starts again
        from step 0. Nothing in the folder changes until a checkpoint has loaded."""
        run = Run.open(run_dir)
        lock = run.lock("resume").__enter__() if int(os.environ.get("RANK", "0")) == 0 else None
        try:
            preflight(run.config, memory_check)
            inj = Injections.parse(run.meta().get("inject", ""))
            if injections is not None:  # kill/term given now apply; nan/spike add to the saved
                inj.nan |= injections.nan
                inj.spike |= injections.spike
                inj.kill = dict(injections.kill)
                inj.term = set(injections.term)
            t = cls(run, inj, lock=lock, **kw)
            t._restore_latest()
        except BaseException:
            if lock is not None:
                lock.__exit__(None, None, None)
            raise
        return t

    # ------------------------------------------------------------------ helpers
    @property
    def console(self):
        if self._console is None:
            self._console = Console(stderr=True, soft_wrap=True)
        return self._console

    def _log(self, msg: str) -> None:
        if self.dist.is_main and self.show_progress:
            self.console.print(msg, highlight=False)

    def event(self, type_: str, at: Optional[tuple[int, int]] = None, **fields: Any) -> None:
        """Record a guard event (rank 0 writes); visible in events.jsonl, the CLI and the report.
        ``at`` is ``(step, seq)`` when the event belongs to another moment than now."""
        if not self.dist.is_main:
            return
        step, seq = at or (self.step, self.seq)
        rec = {"step": step, "seq": seq, "type": type_, **fields, "time": time.time()}
        try:
            self.run.append_event(rec)
        except OSError as e:
            raise self._io_error(e, "writing events.jsonl") from None
        if self._tb is not None:
            self._tb.event(rec)
        detail = ", ".join(f"{k}={v}" for k, v in fields.items())
        self._log(f"[bold yellow]guard[/] step {step}: {escape_markup(type_)} "
                  f"{escape_markup(detail)}")

    def _rng_state(self) -> dict:
        st = {"torch": torch.get_rng_state()}
        if self.dev.type == "cuda":
            st["cuda"] = torch.cuda.get_rng_state(self.dev)
        return st

    def _set_rng_state(self, st: dict) -> None:
        torch.set_rng_state(st["torch"].cpu())
        if self.dev.type == "cuda" and "cuda" in st:
            torch.cuda.set_rng_state(st["cuda"].cpu(), self.dev)

    # ------------------------------------------------------------------ checkpoints
    def trainer_state(self) -> dict:
        rngs = D.all_gather_object(self._rng_state(), self.dist)
        return {
            "step": self.step,
            "seq": self.seq,
            "tokens": self.tokens,
            "optimizer": self.opt.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "cursor": self.cursor.state_dict(),
            "guard": self.guard.state_dict(),
            "rng": rngs,
            "world_size": self.dist.world,
            "last_loss": self.last_loss,
            "config_fingerprint": self.cfg.fingerprint(),
        }

    def save_checkpoint(self) -> None:
        state = self.trainer_state()  # collective: every rank takes part
        if self.dist.is_main:
            hook = None
            if self.inj.kill.get(self.step) == "ckpt":
                hook = die
            try:
                self.run.write_checkpoint(self.step, self.model, state, hook)
            except OSError as e:
                raise self._io_error(e, f"writing checkpoint {step_dir_name(self.step)}") from None
            self.run.prune_checkpoints(self.cfg.train.keep_checkpoints, warn=self._warn)
            self.run.write_meta(status="running", step=self.step)
        self._last_ckpt_step = self.step
        D.barrier(self.dist)

    def _io_error(self, e: OSError, doing: str) -> RunIOError:
        """An operating-system fault as one line naming the path and the cause; the run is
        marked stopped (when its folder can still be written)."""
        ck = self.run.latest_checkpoint(warn=lambda m: None)
        last = f"the last verified checkpoint is {ck.path.name}" if ck else "no checkpoint verifies yet"
        msg = (f"{os_reason(e)} while {doing} in {self.run_dir}; {last}. Free the space or fix "
               f"the folder, then `lenslab resume {self.run_dir}`")
        try:
            self.run.write_meta(status="stopped", step=self.step, message=msg)
        except OSError:
            pass
        return RunIOError(msg)

    def _warn(self, msg: str, at: Optional[tuple[int, int]] = None) -> None:
        if self.dist.is_main:
            step, seq = at or (self.step, self.seq)
            self.console.print(f"[bold red]warning[/] {escape_markup(msg)}", highlight=False)
            self.run.append_event({"step": step, "seq": seq, "type": "checkpoint_invalid",
                                   "detail": msg, "time": time.time()})

    def _load(self, ck: Checkpoint, *, keep_bookkeeping: bool) -> dict:
        """Load a verified checkpoint; an :class:`InvalidCheckpoint` leaves the trainer as it was
        when the files are not what lenslab writes (so the caller can try an older one)."""
        weights, state = read_checkpoint(ck, map_location=self.dev)
        groups = [len(g["params"]) for g in self.opt.param_groups]
        try:
            theirs = [len(g["params"]) for g in state["optimizer"]["param_groups"]]
        except (KeyError, TypeError):
            theirs = None
        if theirs != groups:  # checked before anything is loaded: the trainer stays as it was
            raise InvalidCheckpoint("its optimizer state does not fit the model")
        load_weights(self.model, weights)
        self.opt.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        book = self.guard.bookkeeping_state()
        skips = list(self.cursor.skip)
        self.guard.load_state_dict(state["guard"])
        self.cursor.load_state_dict(state["cursor"])
        if keep_bookkeeping:  # rollback: recovery decisions move forward only
            self.guard.load_state_dict({"trajectory": state["guard"]["trajectory"], "bookkeeping": book})
            self.cursor.skip = skips
        rngs = state["rng"]
        if len(rngs) == self.dist.world:
            self._set_rng_state(rngs[self.dist.rank])
        else:
            self._warn(f"checkpoint was written by {len(rngs)} ranks, now {self.dist.world}: "
                       "RNG streams are re-seeded, so this resume is not bitwise exact")
            torch.manual_seed(self.cfg.seed + 1 + 1_000_003 * self.dist.rank + 7919 * ck.step)
        self.step, self.seq, self.tokens = state["step"], state["seq"], state["tokens"]
        self.last_loss = state.get("last_loss")
        self._last_ckpt_step = self.step
        return state

    def _load_newest(self, before_step: Optional[int], problems: list[str],
                     keep_bookkeeping: bool) -> Optional[Checkpoint]:
        """Load the newest checkpoint (with step < ``before_step``) that verifies and loads;
        why each newer one was skipped goes into ``problems``."""
        for ck in self.run.checkpoints():
            if before_step is not None and ck.step >= before_step:
                continue
            problem = verify(ck.path, self.run.fingerprint)
            if problem is None:
                try:
                    self._load(ck, keep_bookkeeping=keep_bookkeeping)
                    return ck
                except InvalidCheckpoint as e:
                    problem = str(e)
            problems.append(f"skipping checkpoint {ck.path.name}: {problem}; falling back to an "
                            "older one")
        return None

    def _restore_latest(self) -> None:
        problems: list[str] = []
        ck = self._load_newest(None, problems, keep_bookkeeping=False)
        # nothing has been written so far: a resume that fails above leaves the folder as it was
        if self.dist.is_main:
            self.run.clean_partial()
            for msg in problems:
                self._warn(msg)
        if ck is None:  # killed before its first checkpoint, or every one damaged: step 0
            if self.dist.is_main:
                self.run.reset()
                for msg in problems:
                    self._warn(msg)
            D.barrier(self.dist)
            self.event("restart", reason="no checkpoint verifies" if problems else
                       "no checkpoint was written", replaying_from=0)
            return
        if self.dist.is_main:  # drop log lines of steps that will now be replayed
            # a stop (preempt) happened whatever is replayed: its event stays, like a damaged
            # checkpoint's
            self.run.truncate_logs(lambda r: r.get("seq", -1) < self.seq
                                   or r.get("type") in ("checkpoint_invalid", "preempt"))
        D.barrier(self.dist)
        self.event("resume", checkpoint=ck.path.name, replaying_from=self.step)

    def _rollback(self) -> bool:
        first_step, a, b = self.guard.episode_range()
        at = (self.step, self.seq)  # the events belong to the step the rollback happens at
        self.cursor.add_skip(a, b)
        skips, seq = list(self.cursor.skip), self.seq
        problems: list[str] = []
        ck = self._load_newest(first_step + 1, problems, keep_bookkeeping=True)
        for msg in problems:
            self._warn(msg, at)
        if ck is None:
            return False
        if self._tb is not None:  # the steps from the checkpoint on are replayed
            self._tb.replay_from(self.step)
        self.event("rollback", at, to_step=ck.step, checkpoint=ck.path.name, skip_batches=[a, b])
        self.cursor.skip, self.seq = skips, seq  # seq counts every iteration ever run
        self.guard.rolled_back()
        self.event("lr_backoff", lr_scale=self.guard.lr_scale, factor=self.cfg.guard.lr_backoff)
        return True

    # ------------------------------------------------------------------ the step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dev.type, dtype=self.amp_dtype)

    def _batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.task.batch(index, self.cfg.optim.batch_size)

    def train_step(self) -> tuple[dict, Verdict]:
        o = self.cfg.optim
        lr = lr_at(self.step, o, self.cfg.train.max_steps) * self.guard.lr_scale
        for g in self.opt.param_groups:
            g["lr"] = lr
        data_index = self.cursor.take()
        x, y = self._batch(data_index)
        n_tok = task_scored(self.task, y)  # scored targets in the global batch
        W, A = self.dist.world, o.grad_accum
        shards_x = torch.tensor_split(x, A * W)
        shards_y = torch.tensor_split(y, A * W)
        loss_sum = torch.zeros((), device=self.dev)
        self.net.train()
        for m in range(A):
            xm = shards_x[m * W + self.dist.rank].to(self.dev, non_blocking=True)
            ym = shards_y[m * W + self.dist.rank].to(self.dev, non_blocking=True)
            sync = (not self.dist.enabled) or m == A - 1
            ctx = contextlib.nullcontext() if sync else self.net.no_sync()
            with ctx:
                with self._autocast():
                    logits = self.net(xm)
                ce = task_loss(self.task, logits, ym)
                if data_index in self.inj.nan:
                    ce = ce * float("nan")
                elif data_index in self.inj.spike:
                    ce = ce * SPIKE_FACTOR
                loss = ce * (W / max(n_tok, 1))
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += ce.detach()
            if m == 0 and self.inj.kill.get(self.step) == "accum":
                die()
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)  # clip the true gradients, not the scaled ones
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = clip_global_norm(params, o.grad_clip)

        stats = torch.stack([loss_sum.float(), torch.tensor(float(self.stop.signal is not None),
                                                             device=self.dev)])
        D.all_reduce_sum(stats, self.dist)
        loss_val = stats[0].item() / max(n_tok, 1)
        gn = grad_norm.item()
        self._stop_agreed = self._stop_agreed or stats[1].item() > 0

        verdict = self.guard.check(self.step, data_index, loss_val, gn)
        if verdict.ok:
            if self.scaler is not None:
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                self.opt.step()
        elif self.scaler is not None:
            self.scaler.update()  # lets the scale fall after an overflow; no parameter changes
        self.opt.zero_grad(set_to_none=True)

        rec = {
            "step": self.step, "seq": self.seq, "data_index": data_index,
            "loss": loss_val, "lr": lr, "grad_norm": gn,
            "tokens": self.tokens + x.shape[0] * x.shape[1], "skipped": not verdict.ok,
        }
        if self.scaler is not None:
            rec["loss_scale"] = float(self.scaler.get_scale())
        return rec, verdict

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Train to ``max_steps`` (or until stopped); the folder's lock is released at the end.

        An operating-system fault (full disk, read-only folder) ends the run with a one-line
        :class:`RunIOError` naming the path and the cause; the run is marked stopped."""
        try:
            with self.stop:
                try:
                    return self._fit()
                except OSError as e:
                    raise self._io_error(e, f"writing {e.filename or 'the run folder'}") from None
        finally:
            if self._tb is not None:
                self._tb.close()
            if self.lock is not None:
                self.lock.__exit__(None, None, None)
                self.lock = None

    def _fit(self) -> TrainResult:
        tc = self.cfg.train
        if self.dist.is_main:
            self.run.write_meta(status="running", step=self.step)
            if tc.tensorboard:  # values of the steps about to be replayed are discarded
                self._tb = TensorBoardLog(self.run.tensorboard_dir, self.step,
                                          self.run.event_log())
        if self._last_ckpt_step < 0:
            self.save_checkpoint()  # step 0: a rollback target and an early resume point always exist
        progress = Progress(self, enabled=self.show_progress and self.dist.is_main)
        t0 = time.perf_counter()
        tok0 = self.tokens
        with progress:
            while self.step < tc.max_steps:
                ended = self.iteration(progress, t0, tok0)
                if ended is not None:
                    return ended
        if self._last_ckpt_step != self.step:
            self.save_checkpoint()
        if self.dist.is_main:
            self.run.write_meta(status="completed", step=self.step)
        return TrainResult("completed", self.step, self.run_dir, "",
                           self.last_loss, dict(self.guard.counts))

    def iteration(self, progress: Optional["Progress"] = None, t0: float = 0.0,
                  tok0: int = 0) -> Optional[TrainResult]:
        """One pass of the loop: maybe checkpoint, one guarded step, logging, recovery.

        Returns a :class:`TrainResult` when the run must stop here (preempted, gave up).
        """
        tc = self.cfg.train
        if self.step in self.inj.term:
            self.inj.term.discard(self.step)
            os.kill(os.getpid(), signal.SIGTERM)
        if self._stop_agreed or (not self.dist.enabled and self.stop.signal):
            return self._preempt()
        if (tc.checkpoint_every and self.step % tc.checkpoint_every == 0
                and self.step != self._last_ckpt_step):
            self.save_checkpoint()
        if self.inj.kill.get(self.step) == "step":
            die()

        rec, verdict = self.train_step()
        self.tokens = rec["tokens"]
        elapsed = time.perf_counter() - t0
        rec["elapsed_s"] = elapsed
        rec["tok_per_s"] = (self.tokens - tok0) / max(elapsed, 1e-9)
        if not verdict.ok:
            extra = {"loss": rec["loss"], "data_index": rec["data_index"]}
            if verdict.zscore is not None:
                extra["zscore"] = round(verdict.zscore, 2)
            self.event(verdict.kind, **extra)
            self.event("skip", reason=verdict.kind, data_index=rec["data_index"])
        else:
            self.last_loss = rec["loss"]
            if verdict.kind:  # recorded, not acted on (guard.on_spike = "log")
                self.event(verdict.kind, loss=rec["loss"], data_index=rec["data_index"],
                           zscore=round(verdict.zscore, 2), action="logged")
        last_of_run = self.step + 1 == tc.max_steps
        evaluated = bool(tc.eval_every) and ((self.step + 1) % tc.eval_every == 0 or last_of_run)
        if evaluated:
            rec.update(self.evaluate())
        # an evaluation is always logged, whatever log_every says: it is not computed twice
        if self.dist.is_main and (self.step % tc.log_every == 0 or last_of_run or evaluated
                                  or not verdict.ok):
            self.run.append_metric(rec)
            if self._tb is not None:
                self._tb.train(rec)
        for cb in self.callbacks:
            cb(self, rec)
        self.seq += 1
        self.step += 1
        if progress is not None:
            progress.update(rec)

        if verdict.give_up:
            return self._give_up(verdict.reason)
        if verdict.rollback and not self._rollback():
            return self._give_up("a rollback was needed but no verified checkpoint "
                                 "precedes the anomalies")
        return None

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss and the task's own metrics (deterministic; touches no training RNG)."""
        self.model.eval()
        tot = cnt = 0.0
        for x, y in self.task.eval_batches(self.cfg.train.eval_batches, self.cfg.optim.batch_size):
            x, y = x.to(self.dev), y.to(self.dev)
            with self._autocast():
                logits = self.model(x)
            tot += task_loss(self.task, logits, y).item()
            cnt += task_scored(self.task, y)
        out = {"val_loss": tot / max(cnt, 1)}
        out.update(self.task.metrics(self.model, self.dev))
        self.model.train()
        return out

    def _preempt(self) -> TrainResult:
        self.save_checkpoint()
        self.event("preempt", signal=self.stop.signal or "peer", checkpoint=step_dir_name(self.step))
        if self.dist.is_main:
            self.run.write_meta(status="preempted", step=self.step)
        msg = (f"stopped by {self.stop.signal or 'a peer rank'} at step {self.step}; checkpoint "
               f"written. Continue with: lenslab resume {self.run_dir}")
        return TrainResult("preempted", self.step, self.run_dir, msg, self.last_loss,
                           dict(self.guard.counts))

    def _give_up(self, reason: str) -> TrainResult:
        first = min((a.step for a in self.guard.anomalies), default=self.step)
        idx = [a.data_index for a in self.guard.anomalies] or [-1]
        ck = self.run.latest_checkpoint(warn=self._warn)
        where = ck.path if ck is not None else "none"
        msg = (f"guard gave up at step {self.step}: {reason}; anomalies from step {first} "
               f"(data batches {min(idx)}..{max(idx)}); last verified checkpoint: {where}. "
               "Inspect those batches or lower optim.lr, then `lenslab resume`.")
        self.event("give_up", reason=reason, checkpoint=str(where))
        if self.dist.is_main:
            self.run.write_meta(status="gave_up", step=self.step, message=msg)
        return TrainResult("gave_up", self.step, self.run_dir, msg, self.last_loss,
                           dict(self.guard.counts))
