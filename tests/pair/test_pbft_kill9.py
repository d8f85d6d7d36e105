"""Four replica processes over QUIC on 127.0.0.1; one is killed with SIGKILL and restarted.

The restarted process rebuilds its replica from its SQLite file only; the cluster
keeps deciding and every process decides the same digest at every sequence number.

The victim is the replica with the smallest peer id: QuicTransport keeps sending
on the connection dialed by the smaller id, so peers whose id is smaller than a
restarted peer's would keep using their dead connection to it until QUIC's idle
timeout (a transport limitation, reported to its owner).
"""

from __future__ import annotations

import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agentmesh.edge.consensus_host import bench_identity

N = 4
TIMEOUT_S = 60.0

pytestmark = pytest.mark.integration


def _free_base_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + N >= 65536:
            continue
        try:
            socks = []
            for i in range(N):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free run of UDP ports on 127.0.0.1")


class Proc:
    def __init__(self, index: int, root: Path, base_port: int) -> None:
        state = root / f"n{index}"
        state.mkdir(exist_ok=True)
        command = [
            sys.executable,
            "-m",
            "agentmesh.edge.consensus_host",
            "serve-node",
            "--index",
            str(index),
            "--n",
            str(N),
            "--state-dir",
            str(state),
            "--base-port",
            str(base_port),
        ]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.decided: dict[int, str] = {}
        threading.Thread(target=self._read, daemon=True).start()
        assert self._next_line() == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def _next_line(self) -> str:
        return self.lines.get(timeout=TIMEOUT_S)

    def pump(self) -> None:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            kind, seq, digest = line.split()
            assert kind == "decided"
            assert self.decided.setdefault(int(seq), digest) == digest

    def propose(self, body: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"propose {body.hex()}\n")

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _wait(procs: list[Proc], seqs: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in procs:
            proc.pump()
        if all(len(p.decided) >= seqs for p in procs):
            return
        time.sleep(0.05)
    raise AssertionError(f"not all decided {seqs}: {[len(p.decided) for p in procs]}")


def test_sigkill_and_restart_from_sqlite_keeps_one_log(tmp_path: Path) -> None:
    base = _free_base_port()
    ids = [bench_identity(i).peer_id for i in range(N)]
    victim = min(range(N), key=lambda i: ids[i])
    others = [i for i in range(N) if i != victim]
    procs = [Proc(i, tmp_path, base) for i in range(N)]
    try:
        for k in range(5):
            procs[others[0]].propose(b"before-%d" % k)
            _wait(procs, k + 1)
        procs[victim].proc.kill()  # SIGKILL: no flush, no goodbye
        procs[victim].proc.wait()
        before = dict(procs[victim].decided)
        survivors = [procs[i] for i in others]
        for k in range(5):
            procs[others[1]].propose(b"while-down-%d" % k)
        _wait(survivors, 6)
        procs[victim] = restarted = Proc(victim, tmp_path, base)
        for k in range(3):
            procs[others[0]].propose(b"after-%d" % k)
        _wait(survivors, 7)
        reference = procs[others[0]].decided
        deadline = time.monotonic() + TIMEOUT_S
        while max(restarted.decided, default=0) < max(reference) and time.monotonic() < deadline:
            for proc in procs:
                proc.pump()
            time.sleep(0.05)
        for proc in procs:
            proc.pump()
        for proc in procs:
            assert all(reference.get(seq, digest) == digest for seq, digest in proc.decided.items())
        assert all(reference[seq] == digest for seq, digest in before.items())
        assert max(restarted.decided) == max(reference)  # the restarted one caught up
    finally:
        for proc in procs:
            proc.stop()
