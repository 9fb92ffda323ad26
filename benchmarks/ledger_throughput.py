"""Reserve latency and spends per second of the budget ledger, on SQLite and on PostgreSQL, and print JSON.

For each storage, on a fresh ledger with one dataset whose cap is never
reached:

1. **Latency, one writer.** ``--latency-spends`` reserves one after another
   from one process; per-reserve wall time (median, p95, max). Each reserve
   does the real work: lock, read and verify the whole chain, compose every
   stored event with the new one, append, commit (and, for PostgreSQL, open a
   connection: the ledger holds none between operations).
2. **Throughput, ``--writers`` concurrent writers.** That many processes
   (forked from a forkserver that imported dpsynth once) wait on a barrier,
   then each makes ``--spends-each`` reserves against the same dataset as
   fast as it can. Spends per second = all spends / wall time from the
   barrier to the last commit; per-reserve latency under contention too.
   Writers are serialised by the ledger's lock (SQLite's write lock,
   PostgreSQL's row lock on the head), so this measures the serial section.

Events are MST-shaped (Gaussian marginals plus zCDP selections: RDP), the
same event each time, as when one pipeline is re-run; ``--event gaussian``
uses a single Gaussian (PLD) instead. A PostgreSQL ledger is installed in a
uniquely named schema with uniquely named roles, and both are dropped
afterwards. The cost grows with the history (the chain is re-verified and
the events recomposed on every reserve); the JSON records the history size.

Usage: python benchmarks/ledger_throughput.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
           [--writers 16] [--spends-each 10] [--latency-spends 50] [--event mst|gaussian] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dp_accounting as dpa  # noqa: E402

from dpsynth.privacy.cost import PrivacyCost  # noqa: E402
from dpsynth.privacy.ledger import open_ledger  # noqa: E402

DATASET = "bench"


def make_cost(kind: str) -> PrivacyCost:
    if kind == "gaussian":
        return PrivacyCost.of("gaussian", dpa.GaussianDpEvent(200.0), 1e-9)
    event = dpa.ComposedDpEvent(
        [
            dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(400.0), 14),
            dpa.SelfComposedDpEvent(dpa.ZCDpEvent(1e-6), 13),
            dpa.SelfComposedDpEvent(dpa.GaussianDpEvent(520.0), 13),
        ]
    )
    return PrivacyCost.of("mst", event, 1e-9, rounds=13)


def _stats(seconds: list[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "n": len(ordered),
        "median_ms": 1e3 * statistics.median(ordered),
        "p95_ms": 1e3 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max_ms": 1e3 * ordered[-1],
    }


def _writer(location: str, kind: str, spends: int, barrier, results) -> None:
    ledger = open_ledger(location, timeout=600)
    cost = make_cost(kind)
    barrier.wait(timeout=600)
    timings = []
    for _ in range(spends):
        start = time.perf_counter()
        ledger.reserve(DATASET, cost, generator="bench")
        timings.append(time.perf_counter() - start)
    results.put((time.perf_counter(), timings))


def measure(location: str, args: argparse.Namespace) -> dict:
    ledger = open_ledger(location)
    cost = make_cost(args.event)
    timings = []
    for _ in range(args.latency_spends):
        start = time.perf_counter()
        ledger.reserve(DATASET, cost, generator="bench")
        timings.append(time.perf_counter() - start)
    single = {**_stats(timings), "history_entries": [2, 1 + args.latency_spends]}

    context = multiprocessing.get_context("forkserver")
    barrier, results = context.Barrier(args.writers + 1), context.Queue()
    workers = [
        context.Process(target=_writer, args=(location, args.event, args.spends_each, barrier, results))
        for _ in range(args.writers)
    ]
    for worker in workers:
        worker.start()
    barrier.wait(timeout=600)
    start = time.perf_counter()
    done = [results.get(timeout=1200) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        if worker.exitcode != 0:
            raise RuntimeError(f"a writer failed with exit code {worker.exitcode}")
    wall = max(end for end, _ in done) - start
    total = args.writers * args.spends_each
    contended = _stats([t for _, ts in done for t in ts])
    verify_start = time.perf_counter()
    result = ledger.verify()
    verify_seconds = time.perf_counter() - verify_start
    if not result.ok:
        raise RuntimeError(f"ledger fails verification after the benchmark: {result.problems[:3]}")
    return {
        "single_writer": single,
        "concurrent": {
            "writers": args.writers,
            "spends": total,
            "wall_seconds": wall,
            "spends_per_second": total / wall,
            "latency": contended,
            "history_entries": [2 + args.latency_spends, result.entries],
        },
        "verify_seconds_at_end": verify_seconds,
        "entries_at_end": result.entries,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="superuser URL of a PostgreSQL server ('' to skip PostgreSQL)",
    )
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--spends-each", type=int, default=10)
    parser.add_argument("--latency-spends", type=int, default=50)
    parser.add_argument("--event", choices=("mst", "gaussian"), default="mst")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["dpsynth.privacy.ledger", "dpsynth.privacy.ledger.postgres", "__main__"]
    )
    out: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "event": args.event,
        "backends": {},
    }

    with tempfile.TemporaryDirectory() as tmp:
        from dpsynth.privacy.ledger import init_ledger

        path = Path(tmp) / "bench.ledger"
        init_ledger(path, DATASET, 1e9, 1e-6)
        print("sqlite ...", file=sys.stderr)
        out["backends"]["sqlite"] = measure(str(path), args)

    if args.postgres:
        import psycopg

        from dpsynth.privacy.ledger.postgres import PostgresLedger

        tag = f"bench{secrets.token_hex(4)}"
        parts = urlsplit(args.postgres)
        url = urlunsplit(
            (parts.scheme, parts.netloc, parts.path, "&".join(q for q in (parts.query, f"schema={tag}") if q), "")
        )
        try:
            PostgresLedger.create(url, DATASET, 1e9, 1e-6, roles_prefix=tag)
            with psycopg.connect(args.postgres, autocommit=True) as con:
                server = con.execute("SHOW server_version").fetchone()[0]
            print("postgres ...", file=sys.stderr)
            out["backends"]["postgres"] = {"server_version": server, **measure(url, args)}
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
                for role in ("admin", "operator", "approver"):
                    con.execute(f'DROP ROLE IF EXISTS "{tag}_{role}"')
    text = json.dumps(out, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
