"""Memory of the known-txid set at mempool scale (700k txids by default).

Builds a `/api/mempool/txids` body the size of a record mempool (before any measuring), then,
under `tracemalloc`, reads it in 64 KiB chunks the way the resync does (`scan_txids` →
`sorted_keys` → `KnownTxids.finish_rebuild`) and applies an hour of stream churn (40k adds,
40k removals). It prints the memory the set keeps, the peak while building it, and, for
comparison, what a Python `set` of the same txid strings keeps. It checks every txid is a
member afterwards, so a small figure cannot come from an empty set.

    .venv/bin/python benchmarks/known_txids.py [--txids 700000] [--json]

Target: at most 40 MB extra at 700k txids. A benchmark, not a timed test: it exits 0 either way.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
import tracemalloc

import orjson

from exporter.core.known import KnownTxids, prefix, scan_txids, sorted_keys

MB = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txids", type=int, default=700_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    txids = [hashlib.sha256(i.to_bytes(8, "little")).hexdigest() for i in range(args.txids)]
    body = orjson.dumps(txids)
    chunks = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    churn_in = [hashlib.sha256(b"new" + i.to_bytes(8, "little")).hexdigest() for i in range(40_000)]

    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    known = KnownTxids()
    known.begin_rebuild()
    known.finish_rebuild(sorted_keys(prefix(t) for t in scan_txids(chunks)))
    build_seconds = time.perf_counter() - started
    _, build_peak = tracemalloc.get_traced_memory()
    for new, old in zip(churn_in, txids, strict=False):
        known.add(new)
        known.discard(old)
    gc.collect()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    members = sum(1 for t in txids[40_000:] if t in known) + sum(1 for t in churn_in if t in known)
    assert members == args.txids, members
    assert not any(t in known for t in txids[:40_000])

    gc.collect()
    tracemalloc.start()
    as_set = set(orjson.loads(body))
    set_kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(as_set) == args.txids

    result = {
        "txids": args.txids,
        "body_mb": round(len(body) / MB, 1),
        "kept_mb": round(kept / MB, 1),
        "build_peak_mb": round(build_peak / MB, 1),
        "peak_with_churn_mb": round(peak / MB, 1),
        "build_seconds": round(build_seconds, 2),
        "python_set_of_str_mb": round(set_kept / MB, 1),
        "target_mb": 40,
    }
    if args.json:
        print(orjson.dumps(result).decode())
        return
    for key, value in result.items():
        print(f"{key:>22}: {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
