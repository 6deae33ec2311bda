"""The sensor benchmark runs (quick size) so it can't rot; its figures are read by people, not asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
def test_sensor_benchmark_runs_and_prints_its_table(tmp_path):
    # its own folder, so test runs at the same time can't touch each other's synthetic workdir
    proc = subprocess.run([sys.executable, str(BENCH / "bench_sensor.py"), "--quick", "--dir", str(tmp_path / "bench")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bar:" in proc.stdout
    assert "---" in proc.stdout  # a table was printed
