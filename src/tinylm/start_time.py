"""How long `tinylm train` takes from the command's start to its first training step, against a bare
`python -c "import torch"` timed in the same run: the cost of starting, as a ratio that holds across machines."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tinylm.paths import Paths
from tinylm.training.loop import FAULT_STOP_ENV, FIRST_STEP_ENV

COMMAND = ["train", "--model", "transformer", "--quick", "--max-steps", "1", "--force", "--quiet"]
"""The command timed: the quick profile's transformer, stopped (its state saved) right after its first step."""


def _import_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def _first_step(results: Path, stamp: Path, paths: Paths) -> float:
    folders = ["--data-dir", str(paths.data), *(["--mirror", str(paths.mirror)] if paths.mirror else [])]
    env = {**os.environ, FIRST_STEP_ENV: str(stamp), FAULT_STOP_ENV: "1"}
    stamp.unlink(missing_ok=True)
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "tinylm.cli", *COMMAND, "--results-dir", str(results), *folders],
                          env=env, capture_output=True, text=True)
    if not stamp.is_file():
        raise RuntimeError(f"tinylm train stopped before its first step: {done.stderr.strip()[-300:]}")
    return float(stamp.read_text()) - start


def start_time(repeats: int, paths: Paths | None = None) -> dict[str, Any]:
    """Seconds from `tinylm train`'s start to the beginning of its first step, and of `import torch` in a fresh
    interpreter, `repeats` times each, interleaved (both see the same load), after one untimed run that fills the
    data cache; the medians and their ratio."""
    paths = paths or Paths.of()
    with tempfile.TemporaryDirectory() as tmp:
        results, stamp = Path(tmp) / "results", Path(tmp) / "first-step"
        _first_step(results, stamp, paths)
        torch_s, first_s = [], []
        for _ in range(repeats):
            torch_s.append(_import_torch())
            first_s.append(_first_step(results, stamp, paths))
    torch_median, first_median = statistics.median(torch_s), statistics.median(first_s)
    return {"command": "tinylm " + " ".join(COMMAND), "repeats": repeats,
            "import_torch_seconds": round(torch_median, 3), "first_step_seconds": round(first_median, 3),
            "ratio": round(first_median / torch_median, 3),
            "samples": {"import_torch": [round(x, 3) for x in torch_s], "first_step": [round(x, 3) for x in first_s]}}
