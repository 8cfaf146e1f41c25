"""PostgreSQL for the benchmarks: a database of its own per measurement, and the CPU time of
the server's processes read from /proc.

The server is ``BENCH_POSTGRES_URL`` (default: the machine's own on 127.0.0.1:5432, user
``postgres``, trust auth). It is used as it is, never stopped or reconfigured: a measurement
makes a database ``chargehook_bench_<hex>`` and drops it afterwards (``WITH (FORCE)``), also
when the measurement failed or was interrupted. No server answering: the measurement is
skipped (it says so).

CPU: a PostgreSQL server is one process per connection plus a few helpers (WAL writer,
checkpointer, background writer), all children of the postmaster. The postmaster is found
from our own connection (the parent of ``pg_backend_pid()``); the CPU time of the server is
the utime + stime of every child alive, plus the postmaster's own and its ``cutime`` +
``cstime`` (the children that ended and were reaped), so a backend that ends inside the window
is still counted. Each child's command line (its process title) tells a backend of our
database from a helper or another database's backend.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from benchmarks.procs import CLK_TCK

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CONNECT_TIMEOUT = 5.0


class Unavailable(Exception):
    """No PostgreSQL server answers (or asyncpg is missing)."""


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


@dataclass(frozen=True, slots=True)
class Database:
    url: str  # for chargehook's storage.url
    name: str
    postmaster: int  # pid, for the CPU samples


async def _admin() -> Any:
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise Unavailable(f"asyncpg is not installed: {exc}") from None
    try:
        return await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT)
    except (OSError, asyncpg.CannotConnectNowError) as exc:
        raise Unavailable(f"no PostgreSQL server answers at {redact(ADMIN_URL)}: {exc}") from None


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[Database]:
    """A fresh, empty database on the server; dropped on the way out, whatever happened.
    Run the server (and everything connected to the database) inside, so that it has ended
    when the database is dropped (``WITH (FORCE)`` ends any session left anyway)."""
    admin = await _admin()
    name = f"chargehook_bench_{secrets.token_hex(6)}"
    try:
        backend = await admin.fetchval("SELECT pg_backend_pid()")
        postmaster = _ppid(backend)
        await admin.execute(f'CREATE DATABASE "{name}"')
    except BaseException:
        await admin.close()
        raise
    try:
        yield Database(with_database(ADMIN_URL, name), name, postmaster)
    finally:
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


@dataclass(frozen=True, slots=True)
class CpuSample:
    total: float  # seconds: the postmaster, its children alive and reaped
    ours: float  # backends of our database (alive now)
    helpers: float  # processes that are no backend (WAL writer, checkpointer, ...)
    others: float  # backends of other databases


def cpu(db: Database) -> CpuSample:
    """The CPU time of the whole PostgreSQL server, split by process kind (see the module)."""
    with open(f"/proc/{db.postmaster}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime, stime, cutime, cstime: fields 14-17 of proc(5)
    total = sum(int(x) for x in fields[11:15]) / CLK_TCK
    ours = helpers = others = 0.0
    mark = f" {db.name} "
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) != db.postmaster:
                continue
            used = (int(fields[11]) + int(fields[12])) / CLK_TCK
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                title = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile (its time is in the postmaster's cutime next read)
        total += used
        # a backend's title: "postgres: USER DATABASE HOST(PORT) STATE"
        if mark in title:
            ours += used
        elif "(" in title:
            others += used
        else:
            helpers += used
    return CpuSample(total, ours, helpers, others)


def cpu_usage(a: CpuSample, b: CpuSample, span: float) -> dict[str, float]:
    """The window's PostgreSQL CPU in seconds and in % of one core, and its split; the split
    reads the processes alive at each edge (under load, our database's backends are the
    store's long-lived connections), the total also counts those that ended in between."""
    total = b.total - a.total
    return {
        "cpuS": round(total, 3),
        "cpuPct": round(100 * total / span, 1) if span > 0 else 0.0,
        "oursS": round(max(0.0, b.ours - a.ours), 3),
        "helpersS": round(max(0.0, b.helpers - a.helpers), 3),
        "otherDatabasesS": round(max(0.0, b.others - a.others), 3),
    }
