"""Shared set-up for the benchmarks: ComfyUI in-process, models, paired timing, peak memory.

Run a benchmark from the pack root with ComfyUI's Python, e.g.
``COMFYUI_PATH=~/comfy/ComfyUI ~/comfy/venv/bin/python benchmarks/bench_sampler.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))  # the test-support package dde_world

from dde_world import locate  # noqa: E402


def comfy():
    path = locate.find_comfyui()
    if not path:
        sys.exit("ComfyUI not found: set COMFYUI_PATH (see README)")
    env = locate.comfy_in_process(path)
    import comfy.utils

    comfy.utils.PROGRESS_BAR_ENABLED = False
    return env


def sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def paired(variants: dict, repeats: int) -> dict:
    """Run every variant once per round, rotating the order each round; returns times per variant."""
    names = list(variants)
    times = {n: [] for n in names}
    for n in names:          # warm-up (model load, caches)
        variants[n]()
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            dt, _ = timed(variants[n])
            times[n].append(dt)
    return times


def median(xs):
    return statistics.median(xs)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every millisecond)."""

    def __init__(self):
        self.peak = 0
        self._stop = False

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self):
        while not self._stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.001)

    def __enter__(self):
        self.base = self.rss()
        self.peak = self.base
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def peak_memory(fn) -> tuple[int, int]:
    """(peak bytes above the level before the call, absolute peak) — CUDA allocator on GPU, RSS on CPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        peak = torch.cuda.max_memory_allocated()
        return peak - before, peak
    with PeakRSS() as p:
        fn()
    return p.peak - p.base, p.peak


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, torch {torch.__version__})"
