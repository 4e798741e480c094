"""GPU checks of the guarded trainer (run on a machine with CUDA; prints JSON).

1. bf16 autocast training with a NaN and a spike injected: the guard skips, rolls back, ends.
2. fp16 with GradScaler: the loss scale is tracked, clipping happens after unscaling.
3. SIGKILL inside gradient accumulation and resume on the GPU: do losses and weights match the
   uninterrupted run bit for bit? (Exact resume is promised on CPU in float32; on GPU this
   reports what happens, since cuBLAS and atomics may reorder sums.)
4. Throughput of the guarded loop against the plain loop (benchmarks/train_throughput.py).

    python benchmarks/gpu_check.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lenslab(*args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "lenslab", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, **kw)


def cfg_text(precision: str, steps: int, accum: int = 1) -> str:
    return f"""
name = "gpu-{precision}"
seed = 0
[model]
kind = "gpt"
n_layer = 2
n_head = 4
d_model = 64
n_ctx = 64
attn_only = true
tie_embeddings = false
[data]
task = "induction"
vocab_size = 64
seq_len = 64
[optim]
lr = 0.001
schedule = "constant"
batch_size = 64
grad_accum = {accum}
betas = [0.9, 0.999]
grad_clip = 1.0
[train]
max_steps = {steps}
eval_every = 100
checkpoint_every = 50
device = "cuda"
precision = "{precision}"
"""


def read(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


def main(out: Path) -> None:
    import torch

    res = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    tmp = Path(tempfile.mkdtemp())
    # 1. bf16 + guard
    (tmp / "bf16.toml").write_text(cfg_text("bf16", 500))
    t = time.time()
    r = lenslab("train", str(tmp / "bf16.toml"), "--out", str(tmp / "bf16"), "-q",
                "--inject", "nan@150,spike@380-382")
    m = read(tmp / "bf16" / "metrics.jsonl")
    ev = [e["type"] for e in read(tmp / "bf16" / "events.jsonl")]
    res["bf16"] = {"rc": r.returncode, "seconds": time.time() - t, "events": ev,
                   "final_loss": m[-1]["loss"], "repeat_loss": m[-1].get("repeat_loss"),
                   "tok_per_s": m[-1]["tok_per_s"], "stderr_tail": r.stderr[-400:]}
    # 2. fp16 + GradScaler
    (tmp / "fp16.toml").write_text(cfg_text("fp16", 200, accum=2))
    r = lenslab("train", str(tmp / "fp16.toml"), "--out", str(tmp / "fp16"), "-q", "--inject", "nan@60")
    m = read(tmp / "fp16" / "metrics.jsonl")
    res["fp16"] = {"rc": r.returncode, "loss_scale_first_last": [m[0].get("loss_scale"), m[-1].get("loss_scale")],
                   "skipped": sum(x["skipped"] for x in m), "final_loss": m[-1]["loss"],
                   "events": [e["type"] for e in read(tmp / "fp16" / "events.jsonl")],
                   "stderr_tail": r.stderr[-400:]}
    # 3. kill + resume on GPU (fp32 for the best chance of determinism)
    (tmp / "fp32.toml").write_text(cfg_text("fp32", 120, accum=2))
    lenslab("train", str(tmp / "fp32.toml"), "--out", str(tmp / "ref"), "-q")
    k = lenslab("train", str(tmp / "fp32.toml"), "--out", str(tmp / "kill"), "-q", "--inject", "kill@75:accum")
    rr = lenslab("resume", str(tmp / "kill"), "-q")
    drop = ("elapsed_s", "tok_per_s")
    a = [{k_: v for k_, v in x.items() if k_ not in drop} for x in read(tmp / "ref" / "metrics.jsonl")]
    b = [{k_: v for k_, v in x.items() if k_ not in drop} for x in read(tmp / "kill" / "metrics.jsonl")]
    wa = (tmp / "ref" / "checkpoints" / "step-000120" / "model.safetensors").read_bytes()
    wb = (tmp / "kill" / "checkpoints" / "step-000120" / "model.safetensors").read_bytes()
    diffs = [abs(x["loss"] - y["loss"]) for x, y in zip(a, b)]
    res["resume_gpu"] = {"kill_rc": k.returncode, "resume_rc": rr.returncode,
                         "metrics_identical": a == b, "weights_identical": wa == wb,
                         "max_loss_diff": max(diffs) if diffs else None, "stderr_tail": rr.stderr[-400:]}
    # 4. throughput
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--device", "cuda",
                        "--batch", "32", "--ctx", "256", "--rounds", "10", "--chunk", "10"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
                       cwd=ROOT)
    try:
        res["throughput"] = json.loads(r.stdout)
    except ValueError:
        res["throughput"] = {"error": r.stderr[-1500:]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "gpu-check"))
