"""BlasThreads keeps the thread count whose steps are fastest, and probes the loser less often."""

from digitpad.core import threads as threads_mod
from digitpad.core.threads import BlasThreads


class FakeController:
    def __init__(self):
        self.limits = []

    def limit(self, limits):
        self.limits.append(limits)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make(monkeypatch, **kw):
    clock = Clock()
    monkeypatch.setattr(threads_mod.time, "perf_counter", clock)
    t = BlasThreads(**kw)
    t.candidates = [2, 1]
    t._controller = FakeController()
    t._original = 2
    t.current = 2
    t._loser_period = {2: t.period, 1: t.period}
    return t, clock


def run_steps(t, clock, n, cost):
    for _ in range(n):
        t.start_step()
        clock.now += cost[t.current]
        t.end_step()


def run_counting(t, clock, n, cost):
    """Run ``n`` steps; how many ran with each thread count."""
    used = {}
    for _ in range(n):
        t.start_step()
        used[t.current] = used.get(t.current, 0) + 1
        clock.now += cost[t.current]
        t.end_step()
    return used


def test_keeps_one_thread_when_two_are_slow_and_retries_later(monkeypatch):
    t, clock = make(monkeypatch, probe_steps=3, period=10)
    slow_two = {2: 0.010, 1: 0.002}
    used = run_counting(t, clock, 6, slow_two)  # the first probe: one thread first (4 steps), then two
    assert used == {1: 4, 2: 2}  # two threads cut short after one timed step five times slower
    assert t.best == 1 and t.current == 1
    assert t._steps_to_probe == 20  # clear loss: the next probe of 2 threads comes twice as late
    assert run_counting(t, clock, 20, slow_two) == {1: 20}
    used = run_counting(t, clock, 8, {2: 0.001, 1: 0.002})  # the machine got quiet: two threads win again
    assert used == {1: 4, 2: 4}
    assert t.best == 2 and t.current == 2


def test_a_close_call_probes_every_step_of_both_counts(monkeypatch):
    t, clock = make(monkeypatch, probe_steps=3, period=10)
    used = run_counting(t, clock, 8, {2: 0.0019, 1: 0.002})
    assert used == {1: 4, 2: 4}  # no count was clearly slower: nothing cut short
    assert t.best == 2 and t._steps_to_probe == 10


def test_fixed_count_never_probes(monkeypatch):
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    clock = Clock()
    monkeypatch.setattr(threads_mod.time, "perf_counter", clock)
    before = blas_threads()
    t = BlasThreads(fixed=1)
    real, t._controller = t._controller, FakeController()  # record every switch from here on
    try:
        assert t.candidates == [] and not t.enabled
        for i in range(50):
            t.start_step()
            clock.now += 0.010 if i % 2 else 0.001  # timings that would make a prober switch
            t.end_step()
        assert t._controller.limits == []  # never switched: no probe ran
        assert t.current == t.best == 1
        assert set(blas_threads()) <= {1}  # and the BLAS really ran with one thread
    finally:
        t._controller = real
        t.restore()
    assert blas_threads() == before


def test_a_training_thread_sets_the_count_after_another_thread_did():
    """threadpoolctl lets only the first thread that set a limit change OpenBLAS's shared pool and
    ignores the others silently; each run trains in a new thread, so BlasThreads takes control."""
    import threading

    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    threadpool_limits(limits=max(before), user_api="blas")  # this thread sets a limit first
    seen = {}

    def train():
        t = BlasThreads(fixed=1)
        seen["during"], seen["current"] = blas_threads(), t.current
        t.restore()
        seen["after"] = blas_threads()

    worker = threading.Thread(target=train)
    worker.start()
    worker.join()
    assert set(seen["during"]) <= {1} and seen["current"] == 1
    assert seen["after"] == before
    assert blas_threads() == before
