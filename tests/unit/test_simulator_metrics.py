from simulator.dialogues import DialogueResult
from simulator.metrics import Recorder


def result(kind: str, ok: bool, latencies_ms: list[float], at: float, step: str = "", mo: int = 2,
           started: float | None = None) -> DialogueResult:  # fmt: skip
    r = DialogueResult(kind, "8613800000001", ok, "done" if ok else "failed", mo=mo,
                       started_at=at if started is None else started, ended_at=at)  # fmt: skip
    r.steps = [(f"s{i}", ms / 1000) for i, ms in enumerate(latencies_ms)]
    if not ok:
        r.step, r.error = step, "expected thanks"
        r.transcript = [(at - 0.2, ">", "10086700", "1"), (at - 0.1, "<", "10086700", "wrong text")]
    return r


def test_summary_counts_percentiles_timeline_and_failures() -> None:
    recorder = Recorder(started=100.0)
    for i in range(100):
        recorder.dialogue_started(at=100.0 + i / 100)
        recorder.mo_accepted(2, at=100.0 + i / 100)
        recorder.record(result("query", True, [float(i + 1)], at=100.0 + i / 100))
    recorder.dialogue_started(at=101.5)
    recorder.mo_accepted(2, at=101.5)
    recorder.record(result("rating", False, [3.0], at=101.5, step="1->thanks"))
    recorder.finish(at=102.0)
    summary = recorder.summary()
    assert summary["dialogues"] == {"started": 101, "completed": 100, "failed": 1, "reactions": 0}
    assert summary["throughput"] == {"ok_per_s": 50.0, "started_per_s": 50.5, "steady_from_s": 0.0, "steady_s": 2.0,
                                     "ended_per_s_whole_load": 50.5, "mo_per_s": 101.0}  # fmt: skip
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
        recorder.mo_accepted(2, at=100.0 + i / 50)
        recorder.record(result("query", True, [5.0], at=100.0 + i / 50 + 0.01, started=100.0 + i / 50))
    recorder.load_finished(at=101.0)
    recorder.mo_accepted(2, at=104.0)
    recorder.record(result("rating", True, [5.0], at=104.5, started=104.0))
    recorder.finish(at=105.0)
    summary = recorder.summary()
    assert (summary["load_s"], summary["duration_s"]) == (1.0, 5.0)
    assert summary["throughput"] == {"ok_per_s": 50.0, "started_per_s": 50.0, "steady_from_s": 0.0, "steady_s": 1.0,
                                     "ended_per_s_whole_load": 50.0, "mo_per_s": 100.0}  # fmt: skip
    assert summary["dialogues"]["completed"] == 51


def test_an_mo_counts_when_the_target_accepts_it_not_when_its_dialogue_ends() -> None:
    """A target replying 1 s late took 100 MO/s: the MO/s and the timeline said 0 in the first second."""
    recorder = Recorder(started=100.0)
    for i in range(200):
        at = 100.0 + i / 100
        recorder.dialogue_started(at=at)
        recorder.mo_accepted(at=at)  # submit_sm_resp at once...
    for i in range(100):  # ... the replies a second later: the first half ends within the load
        recorder.record(result("chatter", True, [1000.0], at=101.0 + i / 100, mo=1, started=100.0 + i / 100))
    recorder.load_finished(at=102.0)
    for i in range(100, 200):
        recorder.record(result("chatter", True, [1000.0], at=101.0 + i / 100, mo=1, started=100.0 + i / 100))
    recorder.finish(at=103.0)
    summary = recorder.summary()
    assert summary["throughput"]["mo_per_s"] == 100.0
    assert [s["mo"] for s in summary["timeline"]] == [100, 100, 0]
    assert [s["completed"] for s in summary["timeline"]] == [0, 100, 100]


def test_the_rate_judged_is_the_steady_states_of_dialogues_ended_ok() -> None:
    """Rate 100 after a 2 s ramp, 6 s of load, replies 0.5 s late: the target keeps up exactly. Averaged over the
    ramp and the first reply's wait it read 75; failed dialogues counted as throughput."""
    recorder = Recorder(started=0.0)
    recorder.steady_from = 2.0
    starts = [(2 * k / 100) ** 0.5 for k in range(100)] + [1.0 + k / 100 for k in range(100, 500)]  # 100 in the ramp
    ended = []
    for n, at in enumerate(starts):
        recorder.dialogue_started(at=at)
        ended.append(result("help", n % 50 != 0, [500.0], at=at + 0.5, mo=1, started=at))  # 1 in 50 fails
    for r in sorted(ended, key=lambda r: r.ended_at):
        if r.ended_at >= 6.0 and recorder.load_ended is None:
            recorder.load_finished(at=6.0)
        recorder.record(r)
    recorder.finish(at=6.5)
    t = recorder.summary()["throughput"]
    assert (t["steady_from_s"], t["steady_s"]) == (2.0, 4.0)
    assert t["started_per_s"] == 100.0  # 400 started after the ramp, in 4 s
    assert t["ok_per_s"] == 98.0  # of which 8 failed; those started at the end count, ended in the drain
    assert t["ended_per_s_whole_load"] == round(sum(1 for r in ended if r.ended_at < 6.0) / 6, 2) < 80


def test_percentiles_are_absent_when_nothing_was_timed() -> None:
    recorder = Recorder(started=0.0)
    recorder.dialogue_started(at=0.1)
    recorder.record(result("chatter", False, [], at=1.1, step="chat->peer", started=0.1))
    recorder.finish(at=2.0)
    summary = recorder.summary()
    assert set(summary["latency_ms"].values()) == {None}
    assert set(summary["latency_ms_by_kind"]["chatter"].values()) == {None}


def test_the_latency_max_is_in_ms_like_the_percentiles() -> None:
    """The report's max read 10x the slowest step (2500 ms for a 250 ms reply) beside percentiles in ms."""
    recorder = Recorder(started=0.0)
    for i in range(100):
        recorder.record(result("query", True, [float(i + 1)], at=i / 100))  # 1 .. 100 ms
    recorder.record(result("order", True, [20.0, 250.0], at=1.5))  # the slowest step: 250 ms
    recorder.finish(at=2.0)
    summary = recorder.summary()
    every, by_kind = summary["latency_ms"], summary["latency_ms_by_kind"]
    query, order = by_kind["query"], by_kind["order"]
    assert 49.9 <= every["p50"] <= 51.1 and 99.9 <= every["p99"] <= 100.1
    assert 249.9 <= every["max"] <= 250.3 and every["max"] >= every["p99.9"] >= every["p99"]
    assert 99.9 <= query["max"] <= 100.1 and query["max"] >= query["p99"]
    assert 249.9 <= order["max"] <= 250.3 and 19.9 <= order["p50"] <= 20.1
