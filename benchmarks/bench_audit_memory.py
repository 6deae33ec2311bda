"""Near-duplicate audit memory: a dense cluster of hashes, the old all-pairs audit against the current one.

Dark or flat footage gives thousands of accepted frames whose dhashes lie within 2 bits of each other; dedupe
keeps them apart by colour and shift (dhash threshold -1: no hash audit applies to them). The old
``near_duplicate_violations`` searched every accepted frame within the largest threshold and materialised
every pair before filtering: its memory grew with the square of the cluster. The current one keeps those
frames out of the search and counts pairs on distinct codes, a chunk at a time, with a capped report.

Two clusters, each beside ``--background`` ordinary frames (random hashes, threshold 10):

* ``low-structure``: the cluster's frames have threshold -1 (the case above: 0 violations);
* ``judged``: the cluster's frames have threshold 4, so every pair of them is a violation (counted,
  the first 1 000 spelled out).

Each row runs in a fresh subprocess and reports the peak RSS of that process (``VmHWM``) above its RSS
before the audit (imports and the tables), so rows don't share allocator state. The old audit's child is
capped with ``RLIMIT_AS`` (``--cap-gb``) so it can't take the machine down; a row over it says so.

    .venv/bin/python benchmarks/bench_audit_memory.py [--sizes 2000 4000 8000 16000] [--old-max 8000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samantics_dagster.core.dataset.schema import DedupeStatus  # noqa: E402
from samantics_dagster.core.dedupe.audit import near_duplicate_violations  # noqa: E402
from samantics_dagster.core.dedupe.hamming import codes_to_hex, hamming, hex_to_codes, pairs_within  # noqa: E402


def old_near_duplicate_violations(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The audit as it was: every accepted frame searched within the largest threshold, every pair materialised."""
    accepted = pd.concat([t.assign(category=c) for c, t in tables.items() if len(t)], ignore_index=True)
    accepted = accepted[accepted["status"] == DedupeStatus.ACCEPTED].reset_index(drop=True)
    codes = hex_to_codes(accepted["dhash"].tolist())
    thresholds = accepted["dhash_threshold"].fillna(0).to_numpy(dtype=np.int64)
    pairs = pairs_within(codes, int(thresholds.max()))
    if len(pairs) == 0:
        return pd.DataFrame(columns=["a", "b", "distance"])
    i, j = pairs[:, 0], pairs[:, 1]
    dist = hamming(codes[i], codes[j])
    bad = dist <= np.minimum(thresholds[i], thresholds[j])
    paths = accepted["category"] + ":" + accepted["rel_path"]
    return pd.DataFrame({"a": paths.to_numpy()[i[bad]], "b": paths.to_numpy()[j[bad]], "distance": dist[bad]})


def tables(n: int, kind: str, background: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    flips = rng.integers(0, 64, size=(n, 2)).astype(np.uint64)
    keep = (rng.random(n) < 0.8).astype(np.uint64)  # a fifth exactly the centre: static frames
    cluster = np.uint64(0x00FF_00FF_0F0F_0F0F) ^ (np.bitwise_or.reduce(np.uint64(1) << flips, axis=1) * keep)
    other = rng.integers(0, 1 << 63, size=background, dtype=np.uint64)

    def table(codes: np.ndarray, threshold: int, prefix: str) -> pd.DataFrame:
        return pd.DataFrame({"rel_path": [f"{prefix}{k}.jpg" for k in range(codes.size)], "status": "accepted",
                             "dhash": codes_to_hex(codes), "dhash_threshold": threshold})

    return {"night": table(cluster, -1 if kind == "low-structure" else 4, "n"), "day": table(other, 10, "d")}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def child(method: str, n: int, kind: str, background: int, cap_gb: float) -> dict:
    data = tables(n, kind, background)
    if method == "old":
        resource.setrlimit(resource.RLIMIT_AS, (int(cap_gb * 2**30), resource.RLIM_INFINITY))
    before = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    try:
        if method == "old":
            total = len(old_near_duplicate_violations(data))
        else:
            total = near_duplicate_violations(data).total
    except MemoryError:
        return {"secs": time.perf_counter() - t0, "peak_mb": None, "total": None}
    secs = time.perf_counter() - t0
    return {"secs": secs, "peak_mb": (_rss_kb("VmHWM") - before) / 1024, "total": total}


def run_row(method: str, n: int, kind: str, background: int, cap_gb: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(n), kind, str(background), str(cap_gb)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"secs": None, "peak_mb": None, "total": None, "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 4000, 8000, 16000])
    parser.add_argument("--old-max", type=int, default=8000, help="largest cluster the old audit is run on")
    parser.add_argument("--background", type=int, default=20_000)
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space cap of the old audit's process")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        method, n, kind, background, cap = args.child
        print(json.dumps(child(method, int(n), kind, int(background), float(cap))))
        return

    def cell(r: dict) -> str:
        if r.get("peak_mb") is None:
            return f"over {args.cap_gb:g} GB" if r.get("secs") is not None else f"error {r.get('error')}"
        return f"{r['peak_mb']:8.0f} MB {r['secs']:6.2f} s"

    print(f"near_duplicate_violations, a cluster of N frames within 2 bits beside {args.background} ordinary "
          "frames; peak RSS above the process's RSS before the audit, one subprocess per cell")
    print(f"| {'cluster':13} | {'N':>6} | {'old audit (all pairs)':>24} | {'current audit':>24} | violations |")
    print(f"|{'-' * 15}|{'-' * 8}|{'-' * 26}|{'-' * 26}|{'-' * 12}|")
    for kind in ("low-structure", "judged"):
        for n in args.sizes:
            new = run_row("new", n, kind, args.background, args.cap_gb)
            old = run_row("old", n, kind, args.background, args.cap_gb) if n <= args.old_max else None
            old_cell = cell(old) if old else "not run (--old-max)"
            if old and old.get("total") is not None and old["total"] != new["total"]:
                raise SystemExit(f"{kind} {n}: the old audit found {old['total']} violations, the current {new['total']}")
            print(f"| {kind:13} | {n:6d} | {old_cell:>24} | {cell(new):>24} | {new['total']!s:>10} |", flush=True)


if __name__ == "__main__":
    main()
