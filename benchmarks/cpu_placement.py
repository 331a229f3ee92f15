"""Whether two of this machine's CPUs share a last-level cache right now, measured from Python.

    python benchmarks/cpu_placement.py [--samples 10]

On the 2-vCPU VM these benchmarks run on, the host sometimes runs the two vCPUs on cores that share an L3 and
sometimes on cores that do not, and switches between the two every few seconds to minutes (2026-12-05: a C
ping-pong between the vCPUs took 55–80 ns a round trip in the one placement, 350–400 ns in the other). A 2-thread
sparse step, whose tensors fit the L3 and whose ops hand data from one thread to the other, is 15–20 % slower
when the vCPUs do not share it; a dense step streams from memory either way and moves 3–5 %. So every 2-thread
sparse/dense ratio depends on the placement at the time, and `sparse_vs_dense.py` reports it with each result.

The probe: one thread pinned to the first CPU writes a 4 MiB tensor, one pinned to the second reads it; the read
time over that of a tensor the second CPU wrote itself is ≈ 1.1 when the two share an L3 and ≈ 2 when not.
"""

import argparse
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable

import torch

SPLIT_ABOVE = 1.5  # handoff ratios above this: the two CPUs do not share a last-level cache


def shares_cache(ratio: float) -> bool:
    """Whether a `handoff_ratio` says the two CPUs share a last-level cache."""
    return ratio <= SPLIT_ABOVE


class PinnedWorker:
    """A thread pinned to one CPU that runs the functions it is given, one at a time, and times each."""

    def __init__(self, cpu: int) -> None:
        self.tasks: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self.seconds: queue.Queue[float] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, args=(cpu,), daemon=True)
        self.thread.start()

    def _serve(self, cpu: int) -> None:
        os.sched_setaffinity(0, {cpu})  # 0: the calling thread
        while (task := self.tasks.get()) is not None:
            start = time.perf_counter()
            task()
            self.seconds.put(time.perf_counter() - start)

    def run(self, task: Callable[[], object]) -> float:
        """Seconds `task` took on this worker's CPU."""
        self.tasks.put(task)
        return self.seconds.get()

    def stop(self) -> None:
        self.tasks.put(None)
        self.thread.join()


def handoff_ratio(mib: int = 4, rounds: int = 60) -> float | None:
    """Time for the second CPU to read a tensor the first just wrote, over the time to read one it wrote itself
    (medians of `rounds`); None where this process may run on fewer than two CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    written, out = torch.empty(mib * 2**18), torch.empty(mib * 2**18)
    writer, reader = PinnedWorker(cpus[0]), PinnedWorker(cpus[1])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # each op on its worker's CPU only
    try:
        from_other, from_self = [], []
        for _ in range(rounds):
            writer.run(lambda: written.fill_(1.5))
            from_other.append(reader.run(lambda: torch.mul(written, 2.0, out=out)))
            reader.run(lambda: written.fill_(1.5))
            from_self.append(reader.run(lambda: torch.mul(written, 2.0, out=out)))
    finally:
        torch.set_num_threads(threads)
        writer.stop()
        reader.stop()
    return statistics.median(from_other) / statistics.median(from_self)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    args = parser.parse_args()
    for _ in range(args.samples):
        ratio = handoff_ratio()
        if ratio is None:
            raise SystemExit("cpu_placement: this process may run on one CPU only")
        print(f"handoff {ratio:.2f}: {'one L3' if shares_cache(ratio) else 'split L3'}", flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
