"""The benchmark's timing (benchmarks/benchmark_flash_attn.py): backends warmed up by time, then timed in turns.

CPU: time_interleaved with stand-in timers (order of the batches, warm-up length, medians). GPU: BatchTimer runs a
real call eagerly and as a CUDA graph and reads a positive time (no speed is asserted).
"""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import benchmark_flash_attn as bench  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class FakeTimer:
    """Stands in for BatchTimer: each sample() returns the next of `times` (ms per call) and logs its name."""

    def __init__(self, name, times, log, replays=10):
        self.name, self.times, self.log, self.replays = name, list(times), log, replays

    def sample(self):
        self.log.append(self.name)
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def test_time_interleaved_warms_up_each_backend_then_takes_turns():
    log = []
    # 1 ms a call, 10 calls a batch: 10 ms a batch, so 50 ms of warm-up is 5 batches.
    timers = {"a": FakeTimer("a", [1.0], log), "b": FakeTimer("b", [2.0], log)}
    ms = bench.time_interleaved(timers, reps=3, warm_ms=50.0)
    assert log == ["a"] * 5 + ["b"] * 3 + ["a", "b"] * 3
    assert ms == {"a": 1.0, "b": 2.0}


def test_time_interleaved_reports_each_backends_median():
    log = []
    warm = [100.0]  # one batch of 10 calls at 100 ms covers the warm-up
    timers = {"a": FakeTimer("a", warm + [3.0, 1.0, 2.0, 9.0, 2.5], log),
              "b": FakeTimer("b", warm + [5.0, 4.0, 6.0, 4.5, 5.5], log)}
    ms = bench.time_interleaved(timers, reps=5, warm_ms=50.0)
    assert ms == {"a": 2.5, "b": 5.0}


def test_time_interleaved_without_timers():
    assert bench.time_interleaved({}, reps=10) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_batch_timer_times_a_call(cuda_graph):
    a = torch.randn(256, 256, device="cuda")
    out = torch.empty_like(a)
    timer = bench.BatchTimer(lambda: torch.matmul(a, a, out=out), warmup=2, cuda_graph=cuda_graph)
    out.zero_()
    ms = timer.sample()
    assert ms > 0
    torch.testing.assert_close(out, a @ a)


class FailingTimer(FakeTimer):
    """A stand-in whose batches raise from the `fail_at`-th on."""

    def __init__(self, name, log, fail_at):
        super().__init__(name, [1.0], log)
        self.fail_at, self.calls = fail_at, 0

    def sample(self):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("boom")
        return super().sample()


@pytest.mark.parametrize("fail_at", [1, 7])  # in its warm-up, or in the timed rounds
def test_time_interleaved_drops_a_failing_backend(fail_at):
    log, failures = [], {}
    timers = {"a": FakeTimer("a", [1.0], log), "bad": FailingTimer("bad", log, fail_at),
              "b": FakeTimer("b", [2.0], log)}
    ms = bench.time_interleaved(timers, reps=4, warm_ms=50.0, failures=failures)
    assert ms == {"a": 1.0, "bad": None, "b": 2.0}
    assert list(failures) == ["bad"] and str(failures["bad"]) == "boom"
    assert log.count("a") == 5 + 4 and log.count("b") == 3 + 4  # warm-up batches of 10 and 20 ms, then 4 rounds
