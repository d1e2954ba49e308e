"""Device, threads and precision choices."""

from __future__ import annotations

import ctypes
import os
import platform
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from tinylm.errors import UsageError


def usable_cores() -> list[int]:
    """The cores this process may use (its affinity where the OS has one)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:
        return list(range(os.cpu_count() or 1))


def cpu_count() -> int:
    """How many cores this process may use."""
    return len(usable_cores())


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS after every large free.

    By default glibc serves allocations over 128 KiB with mmap and unmaps them on free, so every training step
    page-faults its activations and gradients in again (measured on PTB: ~9,000 minor faults and ~18 ms of
    system time per step, ~15 % of the step). Raising the mmap and trim thresholds keeps those pages mapped.
    Returns False where this is not glibc.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        mmap_ok = libc.mallopt(m_mmap_threshold, 1 << 30)
        _ALLOCATOR_TUNED = bool(mmap_ok and libc.mallopt(m_trim_threshold, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False
    return _ALLOCATOR_TUNED


_ALLOCATOR_TUNED = False
_THREAD_CAP: int | None = None


def cap_threads(n: int | None) -> None:
    """Train with at most `n` threads from now on (None: no cap), whatever cores the process may use: a Ray task
    reserves a number of CPUs, not particular cores."""
    global _THREAD_CAP
    _THREAD_CAP = n


def use_all_cores(processes: int = 1) -> int:
    """Let torch use every core present (at most the `cap_threads` cap), shared evenly among `processes` (the
    data-parallel processes of this machine), and keep freed memory mapped; returns the thread count."""
    keep_freed_memory()
    n = max(1, min(cpu_count(), _THREAD_CAP or cpu_count()) // processes)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def pick_device(name: str = "auto") -> torch.device:
    """cuda if available, then mps, then cpu; or the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is available; use --device cpu or auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps was asked for but MPS is not available; use --device cpu or auto")
    return device


def configure(device: torch.device, processes: int = 1) -> None:
    """Per-device speed settings: all cores on a CPU; TF32 matmuls and convolutions on CUDA (fp32 inputs, 10-bit
    mantissa products, fp32 accumulation: what the bf16-autocast step leaves in fp32 runs on tensor cores)."""
    if device.type == "cpu":
        use_all_cores(processes)
    elif device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


@contextmanager
def exact_fp32(device: torch.device) -> Iterator[None]:
    """Full fp32 matmuls inside (no TF32 on CUDA): evaluation scores compare across machines."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def bf16_native(device: torch.device) -> bool:
    """True where bf16 matmuls run natively: a bf16-capable GPU, or a CPU with AMX or AVX-512 bf16 instructions."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pick_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a precision setting, or None for fp32.

    auto = bf16 on CUDA; fp32 on CPU. Where a CPU has bf16 instructions (AVX-512 bf16 on AMD Zen 4, whose bf16
    matmul peak measured 2.3x fp32) the gain depends on the model: 1.3-1.9x for the MLPs, LSTMs and the PTB
    transformer of the full profile, about 1.1x for the Tiny Shakespeare transformer and slower for attention-only
    models (SDPA's bf16 backward), so a suite profile sets `precision: bf16` per run where it was measured faster
    (`tinylm bench --profile full`); the default does not change the numerics on a guess.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def cpu_name() -> str:
    """The CPU model name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """A readable name of the device that ran something."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu: {cpu_name()} ({torch.get_num_threads()} threads)"


def threads_in(name: str) -> int | None:
    """The thread count that `device_name` wrote into a CPU name ('cpu: AMD EPYC (2 threads)'); None otherwise."""
    found = re.fullmatch(r"cpu: .* \((\d+) threads\)", name)
    return int(found.group(1)) if found else None


def cpu_in(name: str) -> str | None:
    """The CPU that `device_name` wrote into a CPU name ('cpu: AMD EPYC (2 threads)' -> 'AMD EPYC'); None otherwise."""
    found = re.fullmatch(r"cpu: (.*) \(\d+ threads\)", name)
    return found.group(1) if found else None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timer must wait for it)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
