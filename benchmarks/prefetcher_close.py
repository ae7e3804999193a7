"""How long ``Prefetcher.close`` takes, in the two cases where it must not wait for the producer.

* **full queue**: ``depth`` results are queued and the producer thread waits to put one
  more; ``close`` has to wake it and join it.
* **stuck producer**: the producer is inside a call that does not return (a slow read) and
  a consumer thread waits in ``get()``; ``close(timeout)`` has to wake the consumer and give
  up on the thread after ``timeout`` seconds, not later.

Each case is repeated and the median and worst wall time are printed next to the target
(the producer thread notices a close within 50 ms; ``close`` should return within 1 s).

    python benchmarks/prefetcher_close.py [--repeats 20] [--timeout 0.2]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time

import numpy as np

from digitpad.core.augment import Prefetcher

TARGET_S = 1.0


def close_with_full_queue(depth: int = 2) -> float:
    """Seconds ``close`` takes while the producer waits to put into a full queue."""
    full = threading.Event()
    calls = 0

    def produce():
        nonlocal calls
        calls += 1
        if calls > depth:  # depth results queued; this one waits on put
            full.set()
        return np.zeros(1000)

    p = Prefetcher(produce, depth=depth)
    if not full.wait(timeout=10):
        raise RuntimeError("the producer never filled the queue")
    start = time.perf_counter()
    ended = p.close(timeout=10)
    elapsed = time.perf_counter() - start
    if not ended:
        raise RuntimeError("the producer thread did not end")
    return elapsed


def close_with_stuck_producer(timeout: float) -> float:
    """Seconds ``close(timeout)`` takes while the producer is stuck and a consumer waits."""
    release, started = threading.Event(), threading.Event()

    def produce():
        started.set()
        release.wait()
        return 1

    p = Prefetcher(produce)
    outcome: queue.Queue = queue.Queue()
    consumer = threading.Thread(target=lambda: outcome.put(_get_or_stopped(p)))
    consumer.start()
    if not started.wait(timeout=10):
        raise RuntimeError("the producer never started")
    start = time.perf_counter()
    p.close(timeout=timeout)
    elapsed = time.perf_counter() - start
    if outcome.get(timeout=10) != "stopped":
        raise RuntimeError("the waiting consumer was not stopped")
    consumer.join()
    release.set()
    return elapsed


def _get_or_stopped(p: Prefetcher):
    try:
        return p.get()
    except StopIteration:
        return "stopped"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=0.2, help="close(timeout) for the stuck producer")
    args = parser.parse_args()
    rows = [
        ("full queue", [close_with_full_queue() for _ in range(args.repeats)]),
        (f"stuck producer, close(timeout={args.timeout:g})",
         [close_with_stuck_producer(args.timeout) for _ in range(args.repeats)]),
    ]
    print(f"Prefetcher.close, {args.repeats} repeats each (target: under {TARGET_S:g} s)")
    print(f"{'case':<40} {'median':>10} {'worst':>10}")
    for name, times in rows:
        print(f"{name:<40} {statistics.median(times) * 1000:>7.2f} ms {max(times) * 1000:>7.2f} ms")


if __name__ == "__main__":
    main()
