"""The benchmark scripts run (quick sizes) so they can't rot; their figures are read by people, not asserted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_hamming.py", "bench_dedupe.py", "bench_sam3.py", "bench_split.py",
                                    "bench_ml_backend.py"])
def test_benchmark_runs_and_prints_its_table(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bar:" in proc.stdout
    assert "---" in proc.stdout  # a table was printed


@pytest.mark.slow
def test_the_label_workers_benchmark_runs_and_prints_its_last_line():
    proc = subprocess.run([sys.executable, str(BENCH / "bench_label_workers.py"), "--quick"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("label workers: in-process ") and last.endswith("tables identical: yes"), last


@pytest.mark.slow
def test_the_quality_benchmark_runs_and_prints_its_last_line():
    import re

    proc = subprocess.run([sys.executable, str(BENCH / "bench_quality.py"), "--frames", "120", "--resamples", "50"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"quality: 120 reviewed frames, 4 classes; suggested thresholds recover the true ones within "
                        r"[0-9.]+; re-curate after a threshold change [0-9.]+ s, 0 model loads", last), last


@pytest.mark.slow
def test_bench_sam3_smoke_full_runs_every_gpu_section_on_the_cpu():
    """``--smoke-full``: the ``--full`` code path (the equivalence check against transformers, the big-frame
    chunking, the end-to-end rows) with the tiny model on the CPU, so it can't rot before a GPU runs it."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_sam3.py"), "--smoke-full"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "equivalence: PASS" in out and "RLE identical: yes" in out
    assert "## one 1000x1000 frame" in out and "samantics eager: post overlapped" in out
