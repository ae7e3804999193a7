"""How many BLAS threads training uses, chosen while it runs by timing the steps.

On a two-core machine OpenBLAS with two threads makes a step nearly twice as fast when
the machine is otherwise idle, and many times *slower* as soon as anything else (another
program, the app's own drawing thread) wants a core: its threads wait for each other
by spinning. ``BlasThreads`` tries the candidate thread counts for a few steps now and
then, keeps the fastest, and tries the loser again later (less often the more clearly it
lost), so training stays fast whether or not the machine is busy.

threadpoolctl (3.8 on) lets only one thread, the first to set a limit, change a shared
OpenBLAS pool's size, and ignores the others without a word. Training runs in a new
thread each time (the app's worker, a fine-tune), so every switch here first makes the
calling thread the one in control, then reads back the count the library really has.
"""

from __future__ import annotations

import time


class BlasThreads:
    """Times training steps under each candidate BLAS thread count and keeps the fastest."""

    def __init__(self, fixed: int = 0, probe_steps: int = 6, period: int = 200, max_period: int = 6400,
                 abort_ratio: float = 2.0):
        """``fixed`` > 0 pins that many threads for the whole run (bit-for-bit repeatable runs:
        OpenBLAS may sum a product in another order with another thread count); 0 chooses."""
        self.probe_steps = probe_steps
        self.abort_ratio = abort_ratio  # a probed step this many times slower than another count's median ends its probe
        self.period = period
        self.max_period = max_period
        self._controller = None
        self._original = None
        try:
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            counts = [lib.num_threads for lib in controller.lib_controllers]
        except Exception:  # no BLAS found or threadpoolctl unusable: leave threads alone
            controller, counts = None, []
        most = max(counts, default=1)
        self.candidates = [most, 1] if most > 1 and not fixed else []
        self.current = most
        self.best = most
        if controller is not None and counts:
            self._controller = controller
            self._original = most
            if fixed:
                self._set(fixed)
                self.best = fixed
        self._plan: list[int] = []  # thread counts of the steps still to probe
        self._times: dict[int, list[float]] = {}
        self._loser_period = {n: period for n in self.candidates}
        self._steps_to_probe = 0  # probe at once
        self._warm = False
        self._t0 = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.candidates)

    def _set(self, n: int) -> None:
        if n != self.current:
            self._limit(n)

    def _limit(self, n: int) -> None:
        """Set the BLAS to ``n`` threads from this thread; ``current`` is what it then really has."""
        take_control()
        self._controller.limit(limits=n)
        counts = [lib.num_threads for lib in getattr(self._controller, "lib_controllers", ())]
        self.current = max(counts, default=n)

    def start_step(self) -> None:
        """Call before the compute of a step: switches threads when a probe is due."""
        if not self.candidates:
            return
        if not self._plan and self._steps_to_probe <= 0:
            # probe every candidate for probe_steps (+1 warm-up step after each switch): first the
            # count in use (one thread before the first probe: it never spins against another
            # program), so a candidate that turns out clearly slower can be cut short
            first = self.best if self._times else 1
            order = [first] + [n for n in self.candidates if n != first]
            self._plan = [n for n in order for _ in range(self.probe_steps + 1)]
            self._times = {n: [] for n in self.candidates}
        if self._plan:
            n = self._plan[0]
            self._warm = n != self.current
            self._set(n)
        self._t0 = time.perf_counter()

    def end_step(self) -> None:
        """Call after the compute of a step (not around a yield: the consumer's time is not ours)."""
        if not self.candidates:
            return
        dt = time.perf_counter() - self._t0
        if self._plan:
            n = self._plan.pop(0)
            if not self._warm:
                self._times[n].append(dt)
                others = [sorted(t)[len(t) // 2] for m, t in self._times.items() if m != n and t]
                if others and dt > self.abort_ratio * min(others):
                    # clearly slower than a count already timed (two threads spinning against
                    # another program can be ten times slower): its remaining probe steps are dropped
                    while self._plan and self._plan[0] == n:
                        self._plan.pop(0)
            if not self._plan:
                self._decide()
        else:
            self._steps_to_probe -= 1

    def _decide(self) -> None:
        medians = {n: sorted(t)[len(t) // 2] for n, t in self._times.items() if t}
        self.best = min(medians, key=medians.get)
        self._set(self.best)
        losers = [n for n in medians if n != self.best]
        # a clear loss (> 1.5x) makes the next probe come later; a close call keeps the period
        for n in losers:
            if medians[n] > 1.5 * medians[self.best]:
                self._loser_period[n] = min(self._loser_period[n] * 2, self.max_period)
            else:
                self._loser_period[n] = self.period
        self._steps_to_probe = min((self._loser_period[n] for n in losers), default=self.period)

    def restore(self) -> None:
        """Give the BLAS back the thread count it had before training."""
        if self._controller is not None and self._original is not None:
            self._limit(self._original)


def take_control() -> None:
    """Let the calling thread set the size of OpenBLAS's shared pool (threadpoolctl gives that to
    one thread only: the first that set a limit). Training threads take turns: one run at a time."""
    try:
        from threadpoolctl import OpenBLASController
    except ImportError:  # an older threadpoolctl: any thread may set limits
        return
    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)

