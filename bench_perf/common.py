"""Helpers shared by the benchmark suites: environment description, timing, peak memory, workers, output.

Conventions every suite follows:

* a measurement that allocates runs in a fresh worker process (``run_worker``), so memory freed but kept
  by one competitor's allocator can never be handed to the next one and hide its peak;
* CPU times are wall-clock over ``reps`` calls after ``warmup`` calls; CUDA times come from
  ``triton.testing.do_bench`` (CUDA events, L2 flushed between calls);
* peak memory is *growth*: the highest usage during one call minus the usage just before it;
* each worker result carries ``others_busy_cores``, the CPU load of everything else on the machine while
  it ran, because a shared CPU machine can inflate times several-fold without any other sign.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.metadata
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 2**20

# Peak rates by CUDA device-name substring, first match wins, so more specific names come first
# (torch.cuda.get_device_name gives e.g. "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200").
# bf16/fp32: dense TFLOP/s (no sparsity); NVIDIA's datasheets quote bf16 Tensor Core rates *with* 2:4
# sparsity, so the dense rate is half the quoted one. fp32 is the plain (non-TF32) CUDA-core rate, because
# PyTorch's default fp32 matmul does not use TF32. hbm_gbps: memory bandwidth in GB/s (1e9 bytes/s).
# Sources (datasheet tables, "SXM" / "PCIe" / "NVL" columns):
#   H100: NVIDIA H100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h100/ --
#         SXM: BF16 1,979 TFLOPS sparse (989 dense), FP32 67, 3.35 TB/s; PCIe: 1,513 (756), FP32 51, 2 TB/s;
#         NVL: 1,671 (835), FP32 60, 3.9 TB/s.
#   H200: NVIDIA H200 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/h200/ --
#         SXM: BF16 1,979 TFLOPS sparse (989 dense), FP32 67, 4.8 TB/s; NVL: 1,671 (835), FP32 60, 4.8 TB/s.
#   A100: NVIDIA A100 Tensor Core GPU datasheet, https://www.nvidia.com/en-us/data-center/a100/ --
#         BF16 312 TFLOPS dense, FP32 19.5; 80GB SXM 2,039 GB/s, 80GB PCIe 1,935 GB/s, 40GB 1,555 GB/s.
DEVICE_PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H200 NVL", {"bf16": 835.0, "fp32": 60.0, "hbm_gbps": 4800.0}),
    ("H200", {"bf16": 989.0, "fp32": 67.0, "hbm_gbps": 4800.0}),
    ("H100 PCIe", {"bf16": 756.0, "fp32": 51.0, "hbm_gbps": 2000.0}),
    ("H100 NVL", {"bf16": 835.0, "fp32": 60.0, "hbm_gbps": 3900.0}),
    ("H100", {"bf16": 989.0, "fp32": 67.0, "hbm_gbps": 3350.0}),
    ("A100-SXM4-80GB", {"bf16": 312.0, "fp32": 19.5, "hbm_gbps": 2039.0}),
    ("A100 80GB PCIe", {"bf16": 312.0, "fp32": 19.5, "hbm_gbps": 1935.0}),
    ("A100", {"bf16": 312.0, "fp32": 19.5, "hbm_gbps": 1555.0}),
]

# GPU do_bench budgets in milliseconds (it picks the number of calls from a first estimate).
GPU_WARMUP_MS = 100
GPU_REP_MS = 1000

# ----------------------------------------------------------------------------- environment


def git_commit(repo: Path = REPO_ROOT) -> str:
    """HEAD of ``repo`` so every result names the code it measured; "uncommitted" before the first commit."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "uncommitted"
    return out.stdout.strip()


def versions(*packages: str) -> dict[str, str]:
    """Python plus the installed version of each package (by distribution name), "missing" when absent."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _cpu_model() -> str:
    """CPU model from /proc/cpuinfo; platform.processor() is often empty on Linux."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_description(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on: they mean nothing without core count, RAM or GPU model."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda,
        }
    return {
        "type": "cpu",
        "name": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def device_slug(device: torch.device) -> str:
    """Short file-name-safe device name for result paths, e.g. "cpu" or "nvidia-h100-80gb-hbm3"."""
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")


def _device_peaks(device_name: str) -> dict[str, float]:
    for key, peaks in DEVICE_PEAKS:
        if key in device_name:
            return peaks
    return {}


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """Peak dense TFLOP/s of ``device_name`` for ``dtype`` ("bf16"/"fp32"), None when not in the table."""
    return _device_peaks(device_name).get(dtype)


def peak_hbm_gbps(device_name: str) -> float | None:
    """HBM bandwidth of ``device_name`` in GB/s, None when not in the table."""
    return _device_peaks(device_name).get("hbm_gbps")


def roofline_tflops(device_name: str, dtype: str, flops: float, min_bytes: float) -> float | None:
    """The roofline bound for a kernel doing ``flops`` while moving at least ``min_bytes`` to/from HBM:
    min(peak compute, arithmetic intensity x bandwidth), in TFLOP/s; None when the device is not known."""
    peak, gbps = peak_tflops(device_name, dtype), peak_hbm_gbps(device_name)
    if peak is None or gbps is None:
        return None
    return min(peak, flops / min_bytes * gbps * 1e9 / 1e12)


# ----------------------------------------------------------------------------- timing


def summarize_ms(samples: Sequence[float]) -> dict[str, Any]:
    """Median/min/max of per-call times in ms; the raw samples are kept so outliers can be inspected."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": [round(s, 3) for s in samples],
    }


def time_calls(fn: Callable[[], Any], device: torch.device, reps: int, warmup: int,
               grads_to_none: Sequence[torch.Tensor] = ()) -> dict[str, Any]:
    """Time ``fn`` per call; the gradients in ``grads_to_none`` are dropped before every call, outside the
    timed region, so each call allocates its gradients afresh as a training step after zero_grad does.

    CUDA goes through ``triton.testing.do_bench`` (its own warm-up and repetition budget in ms); on CPU,
    ``warmup`` untimed calls are followed by ``reps`` timed ones.
    """
    if device.type == "cuda":
        from triton.testing import do_bench

        times = do_bench(fn, warmup=GPU_WARMUP_MS, rep=GPU_REP_MS, grad_to_none=list(grads_to_none),
                         return_mode="all")
        return summarize_ms(times)
    samples = []
    for i in range(warmup + reps):
        clear_grads(grads_to_none)
        start = time.perf_counter()
        fn()
        elapsed = (time.perf_counter() - start) * 1e3
        if i >= warmup:
            samples.append(elapsed)
    return summarize_ms(samples)


def clear_grads(tensors: Sequence[torch.Tensor]) -> None:
    """Drop ``.grad`` so the next backward allocates it, as after ``zero_grad(set_to_none=True)``."""
    for t in tensors:
        t.grad = None


# ----------------------------------------------------------------------------- peak memory


def _proc_status_kb(field: str) -> int:
    """One ``/proc/self/status`` field (VmRSS, VmHWM) in kB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"{field} not in /proc/self/status")
    return int(match.group(1))


def _release_free_heap() -> None:
    """Return freed memory to the OS so the baseline RSS holds only live data: otherwise glibc may keep
    pages from earlier calls mapped, reuse them, and the next call's growth would read too low."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux ``echo 5 > /proc/self/clear_refs``); False if it did not take."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _proc_status_kb("VmHWM") <= _proc_status_kb("VmRSS") + 1024
    except OSError:
        return False


class _RssSampler:
    """Fallback peak-RSS tracker where VmHWM cannot be reset: polls RSS every millisecond in a thread
    (PyTorch releases the GIL in its kernels, so the thread keeps running during the measured call)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, self._process.memory_info().rss)


def peak_growth_mb(fn: Callable[[], Any], device: torch.device) -> dict[str, Any]:
    """Peak memory growth of one call of ``fn`` above the usage right before it, in MiB.

    CUDA: ``max_memory_allocated`` (tensor bytes, not the caching allocator's reserve). CPU: peak RSS
    (VmHWM after a reset, or a 1 ms RSS sampler where the reset does not work), which counts every
    allocation the process makes, including ones outside PyTorch. Call it in a fresh worker process.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return {"peak_mb": (torch.cuda.max_memory_allocated(device) - base) / MB,
                "method": "torch.cuda.max_memory_allocated"}
    _release_free_heap()
    base_kb = _proc_status_kb("VmRSS")
    if _reset_hwm():
        fn()
        return {"peak_mb": (_proc_status_kb("VmHWM") - base_kb) / 1024, "method": "VmHWM after clear_refs"}
    sampler = _RssSampler()
    fn()
    return {"peak_mb": (sampler.stop() - base_kb * 1024) / MB, "method": "psutil RSS sampled every 1 ms"}


SAMPLE_S = 0.05  # MemorySampler's polling period, seconds


class MemorySampler:
    """Polls the summed RSS of this process and all its descendants (vLLM's engine core runs in one) in a
    thread, keeping (wall time, bytes) samples so a caller can take the peak over any time window."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._stop = threading.Event()
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _total_rss(self) -> int:
        import psutil

        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # exited between listing and reading
                pass
        return total

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._total_rss()))
            time.sleep(SAMPLE_S)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def peak_mb(self, start: float = 0.0, end: float = float("inf")) -> float | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) / MB if inside else None


def memory_record(mem: MemorySampler, window: tuple[float, float]) -> dict[str, Any]:
    """A run's peak RSS over ``window`` (its measured steps) and over the whole run, and how it was taken."""
    return {"peak_rss_steps_mb": mem.peak_mb(*window), "peak_rss_run_mb": mem.peak_mb(),
            "method": f"sum of RSS of the worker and its child processes, sampled every {SAMPLE_S} s"}


# ----------------------------------------------------------------------------- worker processes


def _cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, CPU s busy machine-wide incl. hypervisor steal, CPU s used by this process and its children)."""
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
    own = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.monotonic(), busy, own.ru_utime + own.ru_stime + time.process_time()


def _others_busy_cores(before: tuple[float, float, float], after: tuple[float, float, float]) -> float:
    """Average number of cores kept busy by anything but us between two snapshots: on a shared machine
    this says how far CPU times were inflated (e.g. 1.0 of 2 cores roughly doubles them)."""
    wall, busy, own = (a - b for a, b in zip(after, before))
    return max(0.0, busy - own) / wall if wall > 0 else 0.0


def run_worker(module: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run ``python -m <module> --worker SPEC`` in a fresh process and return the dict it wrote.

    A crash, a kill (e.g. out of memory) or a timeout comes back as ``{"status": "failed", "reason": ...}``
    rather than an exception, so one broken competitor does not lose the others' results.
    """
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        spec_path = Path(tmp) / "spec.json"
        result_path = Path(tmp) / "result.json"
        spec_path.write_text(json.dumps({**spec, "result_path": str(result_path)}))
        cmd = [sys.executable, "-m", module, "--worker", str(spec_path)]
        before = _cpu_snapshot()
        try:
            proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"worker timed out after {timeout_s:.0f} s"}
        if result_path.exists():
            result = json.loads(result_path.read_text())
        else:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            result = {"status": "failed", "reason": f"worker exited with {proc.returncode}: " + " | ".join(tail)}
        return {**result, "others_busy_cores": round(_others_busy_cores(before, _cpu_snapshot()), 3)}


def worker_main(spec_path: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Worker side of ``run_worker``: run ``handler(spec)`` and write its dict (or the error) as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    try:
        result = handler(spec)
    except Exception as exc:  # reported to the parent, which records it instead of aborting the run
        traceback.print_exc()
        result = {"status": "failed", "reason": short_error(exc)}
    Path(spec["result_path"]).write_text(json.dumps(result))


def short_error(exc: BaseException, limit: int = 300) -> str:
    """One-line ``Type: message`` for tables and JSON; compiler errors can be pages long."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------- output


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> None:
    """Print a rich table (wide, so numbers are not wrapped in CI logs); numeric columns right-aligned."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for i, name in enumerate(columns):
        numeric = any(isinstance(row[i], (int, float)) for row in rows)
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(fmt(v) for v in row))
    Console(width=200).print(table)


def fmt(value: Any) -> str:
    """Table cell text: floats to 3 significant digits, None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)
