from simulator.dialogues import DialogueResult
from simulator.metrics import Recorder


def result(kind: str, ok: bool, latencies_ms: list[float], at: float, step: str = "", mo: int = 2) -> DialogueResult:
    r = DialogueResult(kind, "8613800000001", ok, "done" if ok else "failed", mo=mo, started_at=at - 0.5, ended_at=at)
    r.steps = [(f"s{i}", ms / 1000) for i, ms in enumerate(latencies_ms)]
    if not ok:
        r.step, r.error = step, "expected thanks"
        r.transcript = [(at - 0.2, ">", "10086700", "1"), (at - 0.1, "<", "10086700", "wrong text")]
    return r


def test_summary_counts_percentiles_timeline_and_failures() -> None:
    recorder = Recorder(started=100.0)
    for i in range(100):
        recorder.dialogue_started(at=100.0 + i / 100)
        recorder.record(result("query", True, [float(i + 1)], at=100.0 + i / 100))
    recorder.dialogue_started(at=101.5)
    recorder.record(result("rating", False, [3.0], at=101.5, step="1->thanks"))
    recorder.finish(at=102.0)
    summary = recorder.summary()
    assert summary["dialogues"] == {"started": 101, "completed": 100, "failed": 1}
    assert summary["throughput"] == {"dialogues_per_s": 50.5, "mo_per_s": 101.0}
    assert 49.9 <= summary["latency_ms_by_kind"]["query"]["p50"] <= 50.1
    assert 98.9 <= summary["latency_ms_by_kind"]["query"]["p99"] <= 99.1
    assert summary["outcomes"] == {"query": {"done": 100}, "rating": {"failed": 1}}
    assert summary["failures_by_step"] == {"rating": {"1->thanks": 1}}
    [failure] = summary["failures"]
    assert failure["transcript"][1] == {"t": 1.4, "dir": "<", "peer": "10086700", "text": "wrong text"}
    assert [s["completed"] for s in summary["timeline"]] == [100, 0]
    assert [s["failed"] for s in summary["timeline"]] == [0, 1]


def test_a_long_run_keeps_histograms_only_for_the_open_seconds() -> None:
    recorder = Recorder(started=0.0)
    for t in range(600):
        recorder.record(result("query", True, [2.0, 8.0], at=t + 0.5))
    open_histograms = sum(1 for s in recorder.seconds.values() if s.latency is not None)
    assert open_histograms <= 4  # not one per second of the run (each is ~145 KiB)
    recorder.finish(at=600.0)
    timeline = recorder.summary()["timeline"]
    assert len(timeline) == 600
    assert all(s["completed"] == 1 and 1.99 <= s["p50_ms"] <= 2.01 and 7.99 <= s["p99_ms"] <= 8.01 for s in timeline)


def test_the_throughput_is_over_the_load_and_the_duration_includes_the_drain() -> None:
    """A survey answered late kept the drain going: dividing by load and drain understated the rate."""
    recorder = Recorder(started=100.0)
    for i in range(50):
        recorder.dialogue_started(at=100.0 + i / 50)
        recorder.record(result("query", True, [5.0], at=100.0 + i / 50 + 0.01))
    recorder.load_finished(at=101.0)
    recorder.record(result("rating", True, [5.0], at=104.5))
    recorder.finish(at=105.0)
    summary = recorder.summary()
    assert (summary["load_s"], summary["duration_s"]) == (1.0, 5.0)
    assert summary["throughput"] == {"dialogues_per_s": 50.0, "mo_per_s": 100.0}
    assert summary["dialogues"]["completed"] == 51
