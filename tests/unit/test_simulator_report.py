"""The fleet's JSON and HTML reports: figures, charts' data, escaping, self-containment, empty and long runs."""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest

from simulator.cli import describe
from simulator.dialogues import DialogueResult
from simulator.metrics import Recorder
from simulator.report import MAX_POINTS, _downsample, _Series, build_report, write_reports

EVIL = '<script>alert("x")</script> 您已成功订购 & 资费30元'
OFFER = "您将订购<天气预报>业务，资费 30元/月 & 回复Y确认"
SCENARIO = {
    "name": "默认 mix",
    "target": {"host": "127.0.0.1", "port": 2775, "system_id": "handsets", "password": "secret-pw"},
    "load": {"rate": 50, "ramp_up": 2.5, "duration": 3},
    "mix": {"query_unsubscribe": 3, "order_confirm": 2},
    "handsets": [{"range": "8613800000000-8613800000999"}],
}


def dialogue(kind: str, at: float, latencies_ms: list[float], *, ok: bool = True, outcome: str = "done") -> DialogueResult:
    r = DialogueResult(kind, "8613800000001", ok, outcome if ok else "failed", mo=len(latencies_ms),
                       started_at=at - 0.05, ended_at=at)  # fmt: skip
    r.steps = [(f"s{i}", ms / 1000) for i, ms in enumerate(latencies_ms)]
    if not ok:
        r.step, r.error = "Y->10086", f"expected confirmation.success, got {EVIL!r}"
        r.transcript = [(at - 0.04, ">", "10660001", "TT"), (at - 0.03, "<", "10086", OFFER),
                        (at - 0.02, ">", "10086", "Y"), (at - 0.01, "<", "10086", EVIL)]  # fmt: skip
    return r


@pytest.fixture
def summary() -> dict:
    """Seconds 0 and 1 busy, second 2 idle (no latency), second 3 one failure."""
    recorder = Recorder(started=100.0)

    def ended(result: DialogueResult) -> None:
        recorder.mo_accepted(result.mo, at=result.started_at)
        recorder.record(result)

    for i in range(20):
        at = 100.0 + i / 10
        recorder.dialogue_started(at=at - 0.05)
        ended(dialogue("query_unsubscribe", at, [2.0 + i / 10, 4.0], outcome="unsubscribed"))
    for i in range(5):
        recorder.dialogue_started(at=100.5 + i / 10)
        ended(dialogue("order_confirm", 100.55 + i / 10, [3.0, 5.0], outcome="ordered"))
    recorder.dialogue_started(at=103.2)
    ended(dialogue("order_confirm", 103.3, [7.0], ok=False))
    recorder.mo_accepted(3, at=102.5)
    recorder.refused("ESME_RTHROTTLED")
    recorder.arrived_unasked("survey")
    recorder.arrived_unasked("reminder")
    recorder.finish(at=103.9)
    return recorder.summary()


class Page(HTMLParser):
    """What a test needs from the page: elements with their attributes, the text under each class, scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[tuple[str, set[str]]] = []
        self.texts: list[tuple[frozenset[str], str]] = []  # (classes of the enclosing elements, text)
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None

    VOID: ClassVar[set[str]] = {"meta", "br", "img", "input", "link", "hr", "line", "circle", "path", "rect"}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag == "script":
            self._script = attributes
        if tag not in self.VOID:
            self.stack.append((tag, set((attributes.get("class") or "").split())))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1][0] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts.append((self._script, data))
            self._script = None
            return
        classes = frozenset(c for _, cs in self.stack for c in cs)
        self.texts.append((classes, data))

    def text(self, cls: str | None = None) -> str:
        return "".join(t for classes, t in self.texts if cls is None or cls in classes)

    def svg(self, chart_id: str) -> dict[str, str | None]:
        [attrs] = [a for tag, a in self.elements if tag == "svg" and a.get("id") == chart_id]
        return attrs


def parse(html_path: Path) -> tuple[str, Page]:
    html = html_path.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    page.close()
    assert not page.stack, f"unclosed elements: {page.stack}"
    return html, page


def cards(html: str) -> dict[str, str]:
    found = re.findall(r'<div class="card[^"]*"><div class="label">([^<]*)</div><div class="value">(.*?)</div></div>', html)
    return {label: re.sub(r"<[^>]+>", "", value) for label, value in found}


def test_json_report_is_the_summary_with_run_metadata_and_scenario(tmp_path: Path, summary: dict) -> None:
    json_path, html_path = write_reports(summary, tmp_path / "out", SCENARIO, title="nightly")
    assert json_path == tmp_path / "out" / "report.json" and html_path.exists()
    raw = json_path.read_text(encoding="utf-8")
    assert "您已成功订购" in raw and "\\u" not in raw  # UTF-8, not escaped
    report = json.loads(raw)
    for key, value in summary.items():
        assert report[key] == value, key
    assert report["dialogues"] == {"started": 26, "completed": 25, "failed": 1, "reactions": 0}
    # 26 dialogues ended in 3.9 s, 25 of them ok; the first started before the run's start, outside the steady
    # window (no ramp-up: the whole run), so 24 ok of 25 started in it; 54 MO accepted
    assert report["throughput"] == {"ok_per_s": 6.15, "started_per_s": 6.41, "steady_from_s": 0.0, "steady_s": 3.9,
                                    "ended_per_s_whole_load": 6.67, "mo_per_s": 13.85}  # fmt: skip
    assert report["outcomes"] == {"order_confirm": {"failed": 1, "ordered": 5}, "query_unsubscribe": {"unsubscribed": 20}}
    assert report["failures"][0]["transcript"][-1]["text"] == EVIL
    assert report["title"] == "nightly"
    run = report["run"]
    started, ended = datetime.fromisoformat(run["started_at"]), datetime.fromisoformat(run["ended_at"])
    assert started.tzinfo is not None and 3 <= (ended - started).total_seconds() <= 4
    assert run["host"] and run["versions"]["smsgw"] and run["versions"]["python"].count(".") == 2
    assert report["scenario"]["target"] == {"host": "127.0.0.1", "port": 2775, "system_id": "handsets", "password": "***"}
    assert "secret-pw" not in raw
    keys = list(report)
    assert keys[:5] == ["title", "run", "duration_s", "load_s", "dialogues"] and keys[-3:] == ["scenario", "timeline", "failures"]


def test_json_is_stable_for_the_same_run(summary: dict) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    shuffled = dict(reversed(list(summary.items())))
    shuffled["unsolicited"] = dict(reversed(list(summary["unsolicited"].items())))
    a, b = build_report(summary, SCENARIO, started_at=when), build_report(shuffled, SCENARIO, started_at=when)
    for report in (a, b):
        report["run"].pop("generated_at")
    assert json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)
    assert a["run"]["started_at"] == "2026-01-02T03:04:05+00:00"
    assert list(a["unsolicited"]) == ["reminder", "survey"]


def test_html_is_self_contained_and_well_formed(tmp_path: Path, summary: dict) -> None:
    _, html_path = write_reports(summary, tmp_path, SCENARIO)
    html, page = parse(html_path)
    assert html.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in html
    for tag, attrs in page.elements:
        for name in ("src", "href", "xlink:href", "action"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name) or ""), (tag, attrs)
        assert tag not in {"link", "img", "iframe", "object", "embed"}
        if tag == "script":
            assert attrs == {"type": "application/json", "id": "report-data"}  # data only, no code
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert [tag for tag, _ in page.elements].count("style") == 1


def test_html_charts_carry_the_timeline(tmp_path: Path, summary: dict) -> None:
    timeline = summary["timeline"]
    assert [s["t"] for s in timeline] == [0, 1, 2, 3] and timeline[2]["p50_ms"] is None
    _, html_path = write_reports(summary, tmp_path)
    _, page = parse(html_path)
    rate = json.loads(page.svg("chart-rate")["data-series"])
    assert rate == {key: [s[key] for s in timeline] for key in ("t", "completed", "failed", "mo", "started")}
    latency = json.loads(page.svg("chart-latency")["data-series"])
    assert latency == {"t": [0, 1, 2, 3], "p50_ms": [s["p50_ms"] for s in timeline], "p99_ms": [s["p99_ms"] for s in timeline]}
    assert page.svg("chart-latency")["data-unit"] == "ms"
    [(_, embedded)] = page.scripts
    assert json.loads(embedded) == json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    # the latency line breaks at the idle second: two runs of points, each starting with a move
    path = re.search(r'data-key="p50_ms"[^>]*><path d="([^"]+)"', html_path.read_text(encoding="utf-8")).group(1)
    assert path.count("M") == 2 and path.count("L") == 1


def test_html_shows_figures_tables_and_escaped_transcripts(tmp_path: Path, summary: dict) -> None:
    _, html_path = write_reports(summary, tmp_path, SCENARIO)
    html, page = parse(html_path)
    figures = cards(html)
    assert figures["ok dialogues / s (steady state)"] == "6.2" and figures["MO accepted / s"] == f"{54 / 3.9:.1f}"
    assert figures["completed"] == "25" and figures["failed"] == "1" and figures["started"] == "26"
    latency = summary["latency_ms"]
    for p in ("p50", "p90", "p99", "p99.9"):
        assert figures[f"latency {p}"] == f"{latency[p]:.2f}ms"
    assert "1 failed" in page.text("badge")
    # the failure's transcript: every text shown as text, none as markup
    transcript = page.text("transcript")
    assert EVIL in transcript and OFFER in transcript and "10660001" in transcript
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;天气预报&gt;" in html and " &amp; " in html
    assert EVIL in page.text("error")
    text = page.text()
    for kind in ("query_unsubscribe", "order_confirm", "unsubscribed", "ordered", "Y->10086", "ESME_RTHROTTLED", "survey", "reminder"):
        assert kind in text
    # the scenario, as TOML, credentials masked
    [scenario] = [t for classes, t in page.texts if "scenario" in classes]
    assert tomllib.loads(scenario) == SCENARIO | {"target": SCENARIO["target"] | {"password": "***"}}
    assert "secret-pw" not in html


def test_the_rate_charts_means_are_the_reports_rates_over_the_load(tmp_path: Path) -> None:
    """20 dialogues a second through a 2 s load, then a drain of 1.5 s where the last 4 end. The legend gave the
    mean of every second, drain and the last, partial second included (completed 10/s, MO 11/s, started 10/s), where
    the JSON and stdout say 20/s ok, 22/s MO, 20/s started."""
    recorder = Recorder(started=100.0)
    for i in range(40):
        recorder.dialogue_started(at=100.0 + i / 20)
        recorder.mo_accepted(at=100.0 + i / 20)
        if i < 36:
            recorder.record(dialogue("query_unsubscribe", 100.05 + i / 20, [10.0]))
    recorder.mo_accepted(4, at=101.99)
    recorder.load_finished(at=102.0)
    for i in range(36, 40):
        late = dialogue("query_unsubscribe", 102.5 + i / 40, [10.0])
        late.started_at = 100.0 + i / 20
        recorder.record(late)
    recorder.finish(at=103.5)
    _, html_path = write_reports(recorder.summary(), tmp_path)
    throughput = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["throughput"]
    assert (throughput["ok_per_s"], throughput["mo_per_s"], throughput["started_per_s"]) == (20.0, 22.0, 20.0)
    legend = parse(html_path)[1].text("legend")
    for shown in ("completed mean 20/s ok in the steady state · peak", "MO mean 22/s over the load · peak",
                  "started mean 20/s in the steady state · peak"):
        assert shown in legend, legend


def test_empty_run(tmp_path: Path) -> None:
    recorder = Recorder(started=0.0)
    recorder.finish(at=0.5)
    json_path, html_path = write_reports(recorder.summary(), tmp_path)
    report = json.loads(json_path.read_text(encoding="utf-8"))
    assert report["dialogues"] == {"started": 0, "completed": 0, "failed": 0, "reactions": 0} and report["timeline"] == []
    assert report["scenario"] is None
    html, page = parse(html_path)
    assert json.loads(page.svg("chart-rate")["data-series"]) == {"t": [], "completed": [], "failed": [], "mo": [], "started": []}
    assert "nothing was recorded" in page.text()
    assert "No dialogue failed." in page.text() and "no dialogues" in page.text("badge")
    assert cards(html)["latency p99"] == "–ms"


def test_a_write_that_fails_leaves_the_previous_report_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file was written in place: a kill or a failed write (a full disk; here a text UTF-8 cannot carry) left it
    cut off (report.html ended mid-JSON at 20,480 bytes) or empty. Now the previous report stays, nothing beside it,
    after a Ctrl-C too (a program calling write_reports), and one being read is never rewritten under its reader."""
    recorder = Recorder(started=0.0)
    recorder.finish(at=0.5)
    before = [path.read_text(encoding="utf-8") for path in write_reports(recorder.summary(), tmp_path)]

    def interrupted(*args: object) -> None:  # as the file written beside the report is renamed over it
        raise KeyboardInterrupt

    with pytest.raises(UnicodeEncodeError):
        write_reports(recorder.summary(), tmp_path, title="a lone surrogate \ud800")
    with monkeypatch.context() as patched, pytest.raises(KeyboardInterrupt):
        patched.setattr(os, "replace", interrupted)
        write_reports(recorder.summary(), tmp_path, title="the next run")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.html", "report.json"]
    assert [(tmp_path / name).read_text(encoding="utf-8") for name in ("report.json", "report.html")] == before
    with (tmp_path / "report.json").open(encoding="utf-8") as reader:
        write_reports(recorder.summary(), tmp_path, title="the next run")
        assert reader.read() == before[0]


def test_long_run_is_downsampled_for_drawing_only(tmp_path: Path) -> None:
    seconds = 5000
    timeline = [
        {"t": t, "started": 100, "completed": 99 + t % 2, "failed": 1 - t % 2, "mo": 200,
         "p50_ms": None if t % 1000 == 7 else 3.0, "p99_ms": None if t % 1000 == 7 else 10.0 + t % 13}
        for t in range(seconds)
    ]  # fmt: skip
    summary = {
        "duration_s": float(seconds), "dialogues": {"started": 500_000, "completed": 497_500, "failed": 2_500},
        "throughput": {"ok_per_s": 99.5, "started_per_s": 100.0, "steady_from_s": 0.0, "steady_s": float(seconds),
                       "ended_per_s_whole_load": 100.0, "mo_per_s": 200.0},
        "latency_ms": {"p50": 3.0, "p90": 8.0, "p99": 20.0, "p99.9": 30.0, "max": 40.0, "mean": 4.0},
        "latency_ms_by_kind": {}, "outcomes": {}, "failures_by_step": {}, "failures": [], "mo_refused": {},
        "unsolicited": {}, "timeline": timeline,
    }  # fmt: skip
    _, html_path = write_reports(summary, tmp_path)
    html, page = parse(html_path)
    assert json.loads(page.svg("chart-rate")["data-series"])["completed"] == [s["completed"] for s in timeline]
    assert json.loads(page.svg("chart-latency")["data-series"])["p99_ms"] == [s["p99_ms"] for s in timeline]
    for key, d in re.findall(r'data-key="([^"]+)"[^>]*><path d="([^"]*)"', html):
        assert 0 < len(re.findall(r"[ML]", d)) <= MAX_POINTS, key
    assert "5,000 seconds drawn as" in page.text("note")
    assert html_path.stat().st_size < 2_000_000


def test_downsample_means_and_maxima() -> None:
    t = list(range(10))
    series = [_Series("a", "a", "#000", [1, 3, None, None, 5, 7, 2, 2, 9, 1]),
              _Series("b", "b", "#000", [1, 3, None, None, 5, 7, 2, 2, 9, 1], aggregate="max")]  # fmt: skip
    from simulator import report

    old, report.MAX_POINTS = report.MAX_POINTS, 5
    try:
        buckets, values = _downsample(t, series)
    finally:
        report.MAX_POINTS = old
    assert buckets == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert values == {"a": [2.0, None, 6.0, 2.0, 5.0], "b": [3, None, 7, 2, 9]}


def passing_run(**fleet) -> dict:
    """Twenty dialogues, all ok, and the fleet's own account of the run."""
    recorder = Recorder(started=0.0)
    for i in range(20):
        recorder.dialogue_started(at=i / 10)
        recorder.record(dialogue("query", i / 10 + 0.05, [2.0], outcome="unsubscribed"))
    recorder.finish(at=2.5)
    stats = {"not_started_no_idle_subscriber": 7, "cancelled_at_drain": 3}
    return recorder.summary() | {"fleet": {"subscribers": 40, "binds": 1, "mode": "trx", "load": "closed", "stopped": "count reached",
                                           "interrupted": False, "retired_subscribers": 0, "stats": stats, "spammers": {},
                                           "sp_notices": {"ORDER sina-news": 4}, "unasked_samples": []} | fleet}  # fmt: skip


def test_an_interrupted_run_says_so_and_gives_no_verdict(tmp_path: Path) -> None:
    """Before, an interrupted run showed the green 'all 20 dialogues ok' badge."""
    json_path, html_path = write_reports(passing_run(interrupted=True, stopped="interrupted"), tmp_path, misses=[])
    assert json.loads(json_path.read_text(encoding="utf-8"))["verdict"] == {"result": "INTERRUPTED", "misses": []}
    _, page = parse(html_path)
    assert "INTERRUPTED" in page.text("badge") and "no verdict" in page.text("badge") and "ok" not in page.text("badge")
    assert "interrupted" in page.text()


def test_a_missed_threshold_fails_the_page_and_the_fleet_is_shown(tmp_path: Path) -> None:
    """Before, a run that missed --min-rate showed 'all 20 dialogues ok', and nothing of summary["fleet"]."""
    miss = "8.0 dialogues/s, below --min-rate 100"
    json_path, html_path = write_reports(passing_run(), tmp_path, misses=[miss])
    assert json.loads(json_path.read_text(encoding="utf-8"))["verdict"] == {"result": "FAIL", "misses": [miss]}
    _, page = parse(html_path)
    assert "FAIL" in page.text("badge") and miss in page.text("badge") and "dialogues ok" not in page.text("badge")
    text = page.text()
    for shown in ("count reached", "no_idle_subscriber", "7", "ORDER sina-news", "cancelled_at_drain"):
        assert shown in text, shown
    _, passed = parse(write_reports(passing_run(), tmp_path / "pass", misses=[])[1])
    assert passed.text("badge") == "PASSall 20 dialogues ok"


def test_a_run_passing_with_failures_within_max_failures_says_pass(tmp_path: Path, summary: dict) -> None:
    """One dialogue failed, tolerated by --max-failures: the verdict is PASS (report.json, exit 0), and the page
    showed only a red '1 failed' badge, never the verdict."""
    json_path, html_path = write_reports(summary, tmp_path, misses=[])
    assert json.loads(json_path.read_text(encoding="utf-8"))["verdict"] == {"result": "PASS", "misses": []}
    html, page = parse(html_path)
    assert page.text("badge") == "PASS1 failed, within --max-failures"
    assert '<span class="badge ok">PASS</span><span class="badge">1 failed' in html  # the count as information, not red


def test_faults_outside_dialogues_are_shown_apart_from_the_dialogues(tmp_path: Path, summary: dict) -> None:
    """A receipt never requested is a fault, no dialogue: the page counts it apart (a card, the badge, the
    failures' list) and leaves the dialogues' figures as they were."""
    recorder = Recorder(started=100.0)
    recorder.dialogue_started(at=100.0)
    recorder.record(dialogue("help", 100.1, [2.0]))
    receipt = DialogueResult("delivery", "8613800000001", False, "failed", started_at=100.2, ended_at=100.2,
                             step="receipt never requested", error="a report from 10086")  # fmt: skip
    recorder.fault(receipt)
    recorder.finish(at=101.0)
    report = recorder.summary()
    assert report["faults"] == 1 and report["dialogues"] == {"started": 1, "completed": 1, "failed": 0, "reactions": 0}
    assert report["outcomes"] == {"help": {"done": 1}} and [s["failed"] for s in report["timeline"]] == [0]
    _, page = parse(write_reports(report, tmp_path, misses=[])[1])
    assert page.text("badge") == "PASS1 faults outside dialogues, within --max-failures"
    assert "faults outside dialogues1" in page.text() and "Showing 1 of 1 failed dialogues and faults found outside them" in page.text()


def test_the_page_shows_how_the_simulator_itself_kept_up(tmp_path: Path) -> None:
    """A saturated simulator's figures are its own queueing: its lag and what it held are on the page."""
    summary = passing_run(concurrency=300) | {"simulator": {
        "loop_lag_ms": {"p50": 14.0, "p90": 40.0, "p99": 75.0, "p99.9": 99.0, "max": 108.0, "mean": 20.0},
        "schedule_lag_ms": None, "in_flight_mean": 94.2}}  # fmt: skip
    miss = "the simulator could not keep up: its event loop ran 75.0 ms late (p99; --max-lag-ms 50)"
    json_path, html_path = write_reports(summary, tmp_path, misses=[miss])
    assert json.loads(json_path.read_text(encoding="utf-8"))["simulator"] == summary["simulator"]
    _, page = parse(html_path)
    assert miss in page.text("badge")
    text = page.text()
    for shown in ("event-loop lag p50 / p99 / max", "14.0 / 75.0 / 108 ms", "– / – ms", "94.2 (--concurrency 300)"):
        assert shown in text, shown


def test_the_binds_lost_table_says_when_each_was_bound_again_or_never(tmp_path: Path) -> None:
    """--rebind: a bind bound again shows when; one never bound again says "never". Without the test of which, the
    page could say "never" of every bind the fleet did bind again, and give a time to none."""
    lost = [{"bind": "trx-0", "at_s": 3.0, "reason": "unbound by the server", "rebound_at_s": 4.5},
            {"bind": "trx-1", "at_s": 3.1, "reason": "unbound by the server", "rebound_at_s": None}]  # fmt: skip
    _, page = parse(write_reports(passing_run(lost_binds=lost), tmp_path, misses=[])[1])
    text = page.text()
    assert "trx-0unbound by the server3.04.5" in text and "trx-1unbound by the server3.1never" in text


def test_what_rebind_did_is_counted_on_stdout() -> None:
    """`smsgw simulate --rebind` prints what it did across a lost bind (cli.describe): an MO sent once its bind was
    bound again was counted in report.json only, its line missing from what a person reads."""
    stats = {"redelivered_after_rebind": 2, "mo_resent_after_throttled": 3, "mo_sent_after_rebind": 4, "rebind_tries_failed": 5}
    text = describe(passing_run(stats=stats))
    for line in ("delivered again after their bind was lost and bound again (--rebind): 2",
                 "MO sent again after ESME_RTHROTTLED (--rebind): 3", "MO sent once its bind was bound again (--rebind): 4",
                 "tries to bind again that failed (--rebind): 5"):  # fmt: skip
        assert line in text, line
