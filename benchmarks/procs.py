"""Processes of a benchmark: started pinned (``taskset``), in their own process group, with
the open-file limit raised, read through /proc, and always killed (the whole group)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

SERVER_CPU = 0
LOAD_CPU = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def taskset_path() -> str | None:
    return shutil.which("taskset")


def pinning() -> dict[str, Any]:
    """What pinning this run gets; the JSON lines say it."""
    ncpu = os.cpu_count() or 1
    tool = taskset_path()
    if tool is None:
        return {"pinned": False, "why": "taskset not found", "nproc": ncpu}
    if ncpu < 2:
        return {"pinned": False, "why": "fewer than 2 CPUs", "nproc": ncpu}
    return {"pinned": True, "serverCpu": SERVER_CPU, "loadCpu": LOAD_CPU, "nproc": ncpu}


def _raise_nofile() -> None:  # runs in the child before exec
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float  # time.monotonic()
    cpu: float  # utime + stime, seconds (all threads)
    rss: int  # bytes
    hwm: int  # peak RSS, bytes


def sample(pid: int) -> ProcSample:
    """CPU time from /proc/PID/stat, RSS and its peak from /proc/PID/status."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return ProcSample(time.monotonic(), cpu, rss, hwm)


def cpu_busy() -> dict[int, float]:
    """Busy seconds per CPU from /proc/stat (user, nice, system, irq, softirq, steal)."""
    busy: dict[int, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                parts = line.split()
                v = [int(x) for x in parts[1:9]]
                busy[int(parts[0][3:])] = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK
    return busy


def others(
    busy0: dict[int, float], busy1: dict[int, float], span: float, ours: dict[int, float]
) -> dict[str, float]:
    """Per CPU, the share of the window taken by processes that are not ours (other work on
    the machine), in percent: busy time of the CPU minus our processes' CPU time on it."""
    out = {}
    for cpu in sorted(busy1):
        if cpu in busy0 and span > 0:
            other = (busy1[cpu] - busy0[cpu]) - ours.get(cpu, 0.0)
            out[f"cpu{cpu}"] = round(max(0.0, 100 * other / span), 1)
    return out


def usage(a: ProcSample, b: ProcSample) -> dict[str, float]:
    span = b.at - a.at
    cpu = b.cpu - a.cpu
    return {
        "cpuS": round(cpu, 3),
        "cpuPct": round(100 * cpu / span, 1) if span > 0 else 0.0,
        "rssMB": round(b.rss / 2**20, 1),
        "peakRssMB": round(b.hwm / 2**20, 1),
    }


@dataclass(slots=True)
class Proc:
    """A child process; ``lines`` gets its stdout line by line."""

    name: str
    process: asyncio.subprocess.Process
    lines: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    seen: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None
    stderr_path: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while True:
            raw = await self.process.stdout.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            self.seen.append(line)
            if len(self.seen) > 1000:
                del self.seen[:500]
            await self.lines.put(line)

    async def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first stdout line matching ``pattern``; raises if the process ends or times out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(f"{self.name}: no line matching {pattern!r} in {timeout}s")
            try:
                line = await asyncio.wait_for(self.lines.get(), remaining)
            except TimeoutError:
                if self.process.returncode is not None:
                    break
                continue
            match = regex.search(line)
            if match:
                return match
        raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {self.tail()}")

    def tail(self) -> str:
        text = ""
        if self.stderr_path and os.path.exists(self.stderr_path):
            with open(self.stderr_path, errors="replace") as f:
                text = f.read()[-1500:]
        return text or "\n".join(self.seen[-10:])

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, then SIGKILL it; always reaps."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in the group
        if self.process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader


def _append(path: str) -> Any:
    return open(path, "ab")  # closed by the caller's with


async def spawn(
    name: str,
    argv: Sequence[str],
    *,
    cpu: int | None,
    stderr_path: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Proc:
    """Start ``argv`` in a new session (its own process group), pinned to ``cpu`` if we can.
    ``taskset`` execs the program, so the pid is the program's own."""
    full = list(argv)
    if cpu is not None and pinning()["pinned"]:
        full = [taskset_path() or "taskset", "-c", str(cpu), *full]
    with _append(stderr_path) as err:
        process = await asyncio.create_subprocess_exec(
            *full,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_raise_nofile,
            env=env,
            cwd=cwd,
            limit=1 << 22,
        )
    proc = Proc(name, process, stderr_path=stderr_path)
    proc._reader = asyncio.create_task(proc._read())
    return proc


class ProcGroup:
    """Every process a measurement started; ``async with`` kills them all on the way out."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    async def spawn(self, *args: Any, **kwargs: Any) -> Proc:
        proc = await spawn(*args, **kwargs)
        self.procs.append(proc)
        return proc

    async def __aenter__(self) -> ProcGroup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                await proc.stop()
