"""A small harness for side-by-side benchmarks inside one process.

Register cases in groups; each group has one baseline. :meth:`Bench.run` warms every case up,
then times the cases of a group interleaved round-robin (A B C A B C ...) so that drift in the
machine's state (caches, other load, a server's background work) spreads over all cases alike,
and keeps the median. After timing, each case runs once more under :func:`measure_memory` to
report the peak of Python allocations (``tracemalloc``) and the growth of the process's resident
set. :func:`markdown` renders one table per group.

Typical use (see ``bench/objectstore.py``)::

    bench = Bench(rounds=5)
    bench.add("put 16 MiB", "raw SDK", put_raw, nbytes=size, baseline=True)
    bench.add("put 16 MiB", "our store", put_ours, nbytes=size)
    print(markdown(bench.run()))
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Bench", "Case", "MemoryPeak", "Result", "markdown", "measure_memory"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    group: str
    label: str
    fn: Callable[[], object]
    nbytes: int = 0
    baseline: bool = False
    setup: Callable[[], object] | None = None  # run untimed before every call


@dataclass(frozen=True)
class MemoryPeak:
    traced: int  # peak bytes allocated through Python's allocator during the call
    rss_growth: int  # peak resident set during the call minus the resident set before it


@dataclass
class Result:
    case: Case
    seconds: list[float] = field(default_factory=list)
    memory: MemoryPeak | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float | None:
        """Megabytes (10^6 bytes) per second at the median time."""
        if not self.case.nbytes or self.median <= 0:
            return None
        return self.case.nbytes / 1e6 / self.median


def _rss_bytes() -> int:
    """The current resident set size (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def measure_memory(fn: Callable[[], object], *, interval: float = 0.002) -> MemoryPeak:
    """Run ``fn`` once and report its memory peak.

    The resident-set growth is sampled from another thread, so it can miss a very short spike,
    and it understates use when the allocator reuses memory that an earlier call freed; the
    traced peak counts Python allocations exactly but not memory held by C libraries.
    """
    gc.collect()
    before = _rss_bytes()
    peak_rss = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_rss
        while not done.is_set():
            peak_rss = max(peak_rss, _rss_bytes())
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    tracemalloc.start()
    sampler.start()
    try:
        fn()
        _, traced = tracemalloc.get_traced_memory()
    finally:
        done.set()
        sampler.join()
        tracemalloc.stop()
    peak_rss = max(peak_rss, _rss_bytes())
    return MemoryPeak(traced=traced, rss_growth=max(0, peak_rss - before))


class Bench:
    """A set of benchmark cases, grouped, each group with one baseline."""

    def __init__(self, *, rounds: int = 5, warmup: int = 1, memory: bool = True) -> None:
        if rounds < 1 or warmup < 0:
            raise ValueError("rounds must be at least 1 and warmup not negative")
        self.rounds = rounds
        self.warmup = warmup
        self.memory = memory
        self._cases: list[Case] = []

    def add(
        self,
        group: str,
        label: str,
        fn: Callable[[], object],
        *,
        nbytes: int = 0,
        baseline: bool = False,
        setup: Callable[[], object] | None = None,
    ) -> None:
        if baseline and any(c.group == group and c.baseline for c in self._cases):
            raise ValueError(f"group {group!r} already has a baseline")
        self._cases.append(Case(group, label, fn, nbytes, baseline, setup))

    def groups(self) -> dict[str, list[Case]]:
        grouped: dict[str, list[Case]] = {}
        for case in self._cases:
            grouped.setdefault(case.group, []).append(case)
        return grouped

    def run(self, *, progress: bool = True) -> dict[str, list[Result]]:
        """Time every group; returns results per group, in registration order."""
        out: dict[str, list[Result]] = {}
        for group, cases in self.groups().items():
            if not any(c.baseline for c in cases):
                raise ValueError(f"group {group!r} has no baseline case")
            results = [Result(case) for case in cases]
            for _ in range(self.warmup):
                for case in cases:
                    _timed(case)
            for n in range(self.rounds):
                for result in results:
                    result.seconds.append(_timed(result.case))
                if progress:
                    print(f"  {group}: round {n + 1}/{self.rounds}", file=sys.stderr)
            if self.memory:
                for result in results:
                    if result.case.setup is not None:
                        result.case.setup()
                    result.memory = measure_memory(result.case.fn)
            out[group] = results
        return out


def _timed(case: Case) -> float:
    if case.setup is not None:
        case.setup()
    gc.collect()
    started = time.perf_counter()
    case.fn()
    return time.perf_counter() - started


def markdown(results: dict[str, list[Result]]) -> str:
    """One Markdown table per group.

    ``vs baseline`` is the case's median time divided by the baseline's (above 1 is slower).
    """
    blocks: list[str] = []
    for group, rows in results.items():
        base = next(r for r in rows if r.case.baseline)
        with_memory = any(r.memory is not None for r in rows)
        header = ["case", "median s", "MB/s", "vs baseline"]
        if with_memory:
            header += ["peak traced MiB", "RSS growth MiB"]
        lines = [
            f"### {group}",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
        ]
        for r in rows:
            label = f"{r.case.label} **(baseline)**" if r.case.baseline else r.case.label
            rate = r.throughput
            cells = [
                label,
                f"{r.median:.3f}",
                "-" if rate is None else f"{rate:.0f}",
                f"{r.median / base.median:.2f}×",
            ]
            if with_memory:
                mem = r.memory
                cells += (
                    ["-", "-"]
                    if mem is None
                    else [f"{mem.traced / MiB:.1f}", f"{mem.rss_growth / MiB:.1f}"]
                )
            lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
