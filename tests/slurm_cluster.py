"""A real one-node Slurm cluster for the tests: ``munged``, ``slurmctld`` and ``slurmd`` from
Debian's ``munge`` and ``slurm-wlm`` (the Makefile installs them), with their key, state, spool
and logs in a temporary folder and ports of their own, stopped by their pids."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scontrol")


def missing() -> str:
    """Why no cluster can be started here ("" when one can)."""
    absent = [t for t in TOOLS if shutil.which(t) is None]
    if absent:
        return (f"{', '.join(absent)} not found: Debian's slurm-wlm and munge are not installed "
                "(make test installs them with apt-get)")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs as their user"
    return ""


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    """``with Cluster(folder) as c:`` a running cluster; ``c.env`` points Slurm's commands at
    it (``SLURM_CONF``). Partition ``debug``, one node with this machine's CPUs."""

    def __init__(self, folder: Path):
        self.dir = Path(folder)
        self.conf = self.dir / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def __enter__(self) -> "Cluster":
        d = self.dir
        for sub in ("state", "spool", "log", "munge"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "munge").chmod(0o700)
        key = d / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = d / "munge"
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={m / 'sock'}",
                        f"--pid-file={m / 'pid'}", f"--log-file={m / 'log'}",
                        f"--seed-file={m / 'seed'}"], check=True, capture_output=True)
        host = socket.gethostname()
        ctld, slurmd = _free_ports(2)
        self.conf.write_text("\n".join([
            "ClusterName=lenslabtest", f"SlurmctldHost={host}", "SlurmUser=root",
            "SlurmdUser=root", "AuthType=auth/munge", f"AuthInfo=socket={m / 'sock'},cred_expire=5",
            "CredType=cred/munge", f"StateSaveLocation={d / 'state'}",
            f"SlurmdSpoolDir={d / 'spool'}", f"SlurmctldPidFile={d / 'slurmctld.pid'}",
            f"SlurmdPidFile={d / 'slurmd.pid'}", f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={d / 'log' / 'slurmd.log'}", f"SlurmctldPort={ctld}",
            f"SlurmdPort={slurmd}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
            "SchedulerType=sched/backfill", "ReturnToService=2", "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "InactiveLimit=0", "MinJobAge=300", "KillWait=10", "SchedulerParameters=sched_interval=1",
            "GresTypes=gpu",
            f"NodeName={host} CPUs={os.cpu_count()} RealMemory=2000 Gres=gpu:2 State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        # two GPUs by count alone (no device files): enough for Slurm to place --gpus-per-node
        (d / "dev").mkdir(exist_ok=True)
        for i in range(2):
            (d / "dev" / f"gpu{i}").touch()
        (d / "gres.conf").write_text(f"NodeName={host} Name=gpu File={d / 'dev'}/gpu[0-1]\n")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(self.conf)], check=True, env=self.env,
                           capture_output=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True,
                                 text=True)
            if out.returncode == 0 and out.stdout.strip() == "idle":
                return self
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"the test cluster did not come up; see {d / 'log'}")

    def __exit__(self, *exc) -> None:
        for pid_file in (self.dir / "slurmd.pid", self.dir / "slurmctld.pid",
                         self.dir / "munge" / "pid"):
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            except (OSError, ValueError, IndexError):
                pass

    def run(self, *args: str) -> subprocess.CompletedProcess:
        """A Slurm command against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
