"""The fleet run's reports: `report.json` (the data) and `report.html` (one self-contained page).

`write_reports(recorder.summary(), directory, scenario)` writes both. The JSON
is the recorder's summary (its shape is documented in
`simulator.metrics.Recorder.summary`) with a title, the run's metadata
(`run`: start time, host, versions) and the scenario added; keys come in a
fixed order and maps keyed by data (kinds, statuses) are sorted, so two runs'
reports diff cleanly.

The HTML page needs nothing from the network: inline CSS, charts drawn here
as inline SVG (no JavaScript). Every chart carries the data it plots, in
full and not downsampled, as JSON in its `data-series` attribute
(`{"t": [...], "<series>": [...]}`), and the whole report is embedded in
`<script type="application/json" id="report-data">`, so tools (and tests)
can read the numbers back from the page. Long runs are downsampled for
drawing only (at most `MAX_POINTS` points per line).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import socket
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["MAX_POINTS", "build_report", "render_html", "save_reports", "write_reports"]

MAX_POINTS = 600  # per drawn line; the data attributes keep every second
MAX_FAILURES_SHOWN = 50

# The summary's keys in the order the JSON lists them; keys the recorder adds later follow, sorted.
_ORDER = (
    "duration_s", "load_s", "dialogues", "throughput", "latency_ms", "latency_ms_by_kind", "simulator", "outcomes",
    "failures_by_step", "mo_refused", "mo_refused_expected", "unsolicited",
)  # fmt: skip
_LAST = ("timeline", "failures")
# maps keyed by data (kind, outcome, step, status) -> how many levels to sort
_KEYED_BY_DATA = {"latency_ms_by_kind": 1, "outcomes": 2, "failures_by_step": 2, "mo_refused": 1, "mo_refused_expected": 1,
                   "unsolicited": 1}
_SECRET = re.compile(r"pass(word|wd)?|secret|token|api_?key", re.IGNORECASE)


# ---------------------------------------------------------------- entry point
def write_reports(
    summary: dict,
    directory: Path | str,
    scenario: dict | None = None,
    *,
    title: str = "smsgw fleet run",
    started_at: datetime | float | None = None,
    max_failures: int = MAX_FAILURES_SHOWN,
    misses: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write `report.json` and `report.html` into `directory` (created if missing); returns their paths.

    `started_at` (a datetime or a `time.time()` value) is when the run began;
    without it, the summary's `started_at` if it has one, else now minus the
    run's duration. The HTML shows the first `max_failures` failures with
    their transcripts; the JSON keeps every failure the recorder kept. `misses`, the thresholds the run missed
    (simulator.cli.verdicts), makes the verdict part of both.
    """
    report = build_report(summary, scenario, title=title, started_at=started_at, misses=misses)
    return save_reports(report, directory, max_failures=max_failures)


def save_reports(report: Mapping[str, Any], directory: Path | str, *, max_failures: int = MAX_FAILURES_SHOWN) -> tuple[Path, Path]:
    """`report.json` and `report.html` of what build_report made, into `directory` (created if missing)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    _write_whole(json_path, _dumps(report, indent=2) + "\n")
    _write_whole(html_path, render_html(report, max_failures=max_failures))
    return json_path, html_path


def _write_whole(path: Path, text: str) -> None:
    """`text` into `path` by way of a file beside it renamed over it: a kill or a failed write (a full disk) leaves
    the previous file or none, never part of one, which a reader or a CI job would take for the report."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def build_report(
    summary: Mapping[str, Any],
    scenario: Mapping[str, Any] | None = None,
    *,
    title: str = "smsgw fleet run",
    started_at: datetime | float | None = None,
    misses: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The JSON report: title, run metadata, the verdict (with `misses`), the summary in a stable order, the
    scenario (secrets masked). The verdict: INTERRUPTED (none given), FAIL with what was missed, or PASS."""
    report: dict[str, Any] = {"title": title, "run": _run_metadata(summary, started_at)}
    if (summary.get("fleet") or {}).get("interrupted"):
        report["verdict"] = {"result": "INTERRUPTED", "misses": []}
    elif misses is not None:
        report["verdict"] = {"result": "FAIL" if misses else "PASS", "misses": list(misses)}
    rest = dict(summary)
    rest.pop("started_at", None)
    if scenario is None:
        scenario = rest.pop("scenario", None)
    else:
        rest.pop("scenario", None)
    for key in _ORDER:
        if key in rest:
            report[key] = rest.pop(key)
    last = {key: rest.pop(key) for key in _LAST if key in rest}
    for key in sorted(rest):
        report[key] = rest[key]
    report["scenario"] = _masked(scenario) if scenario is not None else None
    report.update(last)
    for key, depth in _KEYED_BY_DATA.items():
        if key in report:
            report[key] = _sorted_keys(report[key], depth)
    return report


def _run_metadata(summary: Mapping[str, Any], started_at: datetime | float | None) -> dict[str, Any]:
    now = datetime.now().astimezone()
    duration = float(summary.get("duration_s") or 0.0)
    if started_at is None:
        started_at = summary.get("started_at")
    if isinstance(started_at, (int, float)):
        start = datetime.fromtimestamp(started_at).astimezone()
    elif isinstance(started_at, datetime):
        start = started_at if started_at.tzinfo else started_at.astimezone()
    elif isinstance(started_at, str):
        start = datetime.fromisoformat(started_at)
    else:
        start = now - timedelta(seconds=duration)
    return {
        "started_at": start.isoformat(timespec="seconds"),
        "ended_at": (start + timedelta(seconds=duration)).isoformat(timespec="seconds"),
        "generated_at": now.isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(terse=True),
        "versions": {
            "smsgw": _version("smsgw"),
            "python": platform.python_version(),
            "implementation": sys.implementation.name,
            "hdrhistogram": _version("hdrhistogram"),
            "rich": _version("rich"),
        },
    }


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _masked(value: Any) -> Any:
    """The scenario as written, with credentials (password, secret, token ...) replaced by ***."""
    if isinstance(value, Mapping):
        return {k: "***" if _SECRET.search(str(k)) and v not in (None, "") else _masked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v) for v in value]
    return value


def _sorted_keys(value: Any, depth: int) -> Any:
    if isinstance(value, Mapping) and depth > 0:
        return {k: _sorted_keys(value[k], depth - 1) for k in sorted(value, key=str)}
    return value


def _dumps(value: Any, **kwargs: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_jsonable, **kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)  # Path, Decimal, time, enums ...


# ---------------------------------------------------------------- formatting
def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{round(value):,}"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _when(iso: str | None) -> str:
    """2026-01-02T03:04:05+08:00 -> 2026-01-02 03:04:05 +08:00"""
    if not iso:
        return "?"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S %z").rstrip()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{_clock(seconds)} ({seconds:,.0f} s)"


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


# ---------------------------------------------------------------- charts
@dataclass(frozen=True, slots=True)
class _Series:
    key: str
    label: str
    color: str
    values: list[float | None]
    aggregate: str = "mean"  # how a downsampled point sums up its seconds: mean or max
    dashed: bool = False
    on_top: bool = False  # drawn last
    # The legend's mean when the report has the series' own rate (`mean_over` says over what, `mean` None: none was
    # measured): the mean of the seconds drawn would count the drain and the last, partial second.
    mean: float | None = None
    mean_over: str = ""


_W, _H = 1000, 300
_DASH = ' stroke-dasharray="6 4"'
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 18, 14, 34


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10 * magnitude


def _time_step(span: float) -> int:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400):
        if span / step <= 10:
            return step
    return 86400 * math.ceil(span / 86400 / 10)


def _downsample(t: Sequence[int], series: Sequence[_Series]) -> tuple[list[tuple[int, int]], dict[str, list[float | None]]]:
    """Buckets of consecutive seconds (first, last) and each series' value per bucket."""
    n = len(t)
    size = max(1, math.ceil(n / MAX_POINTS))
    buckets = [(t[i], t[min(i + size, n) - 1]) for i in range(0, n, size)]
    values: dict[str, list[float | None]] = {}
    for s in series:
        points: list[float | None] = []
        for i in range(0, n, size):
            chunk = [v for v in s.values[i : i + size] if v is not None]
            if not chunk:
                points.append(None)
            elif s.aggregate == "max":
                points.append(max(chunk))
            else:
                points.append(sum(chunk) / len(chunk))
        values[s.key] = points
    return buckets, values


def _axis_number(value: float, step: float) -> str:
    if value >= 10_000 and step >= 1000:
        return f"{value / 1000:g}k"
    if step >= 1:
        return f"{value:,.0f}"
    return f"{value:.{max(0, -math.floor(math.log10(step)) + 1)}f}".rstrip("0").rstrip(".")


def _chart(chart_id: str, title: str, unit: str, t: list[int], series: list[_Series], fmt: Callable[[float], str]) -> str:
    """An inline SVG line chart with its full data in `data-series`, an HTML legend and hover tooltips."""
    data = {"t": t} | {s.key: s.values for s in series}
    attributes = (
        f'id="{_e(chart_id)}" class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-label="{_e(title)}" '
        f'data-unit="{_e(unit)}" data-series="{_e(_dumps(data, separators=(",", ":")))}"'
    )
    legend = "".join(
        f'<span class="key"><svg width="22" height="10" aria-hidden="true"><line x1="1" y1="5" x2="21" y2="5" '
        f'stroke="{s.color}" stroke-width="3"{_DASH if s.dashed else ""}/></svg>{_e(s.label)}'
        f'<span class="muted">{_legend_figures(s, fmt)}</span></span>'
        for s in series
    )
    caption = f'<figcaption>{_e(title)} <span class="muted">({_e(unit)})</span></figcaption>'
    present = [v for s in series for v in s.values if v is not None]
    if not t or not present:
        attributes = attributes.replace(f'viewBox="0 0 {_W} {_H}"', f'viewBox="0 0 {_W} 90"')
        svg = f'<svg {attributes}><text x="{_W / 2}" y="50" text-anchor="middle" class="empty">nothing was recorded</text></svg>'

        return f'<figure>{caption}<div class="legend">{legend}</div>{svg}</figure>'

    buckets, points = _downsample(t, series)
    t0, t1 = t[0], t[-1] + 1  # second t covers [t, t+1): a point sits in the middle of its bucket
    span = max(t1 - t0, 1)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    top = max(present)
    step = _nice_step(top if top > 0 else 1)
    y_max = step * max(1, math.ceil(top / step)) if top > 0 else step * 5

    def x(seconds: float) -> float:
        return _LEFT + (seconds - t0) / span * plot_w

    def y(value: float) -> float:
        return _TOP + plot_h - value / y_max * plot_h

    parts = [f"<svg {attributes}>"]
    # grid and axes
    ticks = round(y_max / step)
    for i in range(ticks + 1):
        value = i * step
        yy = y(value)
        parts.append(f'<line class="grid" x1="{_LEFT}" y1="{yy:.1f}" x2="{_W - _RIGHT}" y2="{yy:.1f}"/>')
        parts.append(f'<text class="tick" x="{_LEFT - 8}" y="{yy + 4:.1f}" text-anchor="end">{_axis_number(value, step)}</text>')
    tstep = _time_step(span)
    for mark in range(math.ceil(t0 / tstep) * tstep, t1 + 1, tstep):
        xx = x(mark)
        label = f"{mark}s" if span <= 120 else _clock(mark)
        parts.append(f'<line class="grid v" x1="{xx:.1f}" y1="{_TOP}" x2="{xx:.1f}" y2="{_TOP + plot_h}"/>')
        parts.append(f'<text class="tick" x="{xx:.1f}" y="{_H - 12}" text-anchor="middle">{label}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" y1="{_TOP + plot_h}" x2="{_W - _RIGHT}" y2="{_TOP + plot_h}"/>')
    # lines, broken where a series has no value (a second without replies has no latency)
    centres = [x((first + last + 1) / 2) for first, last in buckets]
    dots = len(buckets) <= 120
    for s in sorted(series, key=lambda s: s.on_top):
        path, run = [], 0
        marks = []
        for cx, value in zip(centres, points[s.key]):
            if value is None:
                run = 0
                continue
            cy = y(value)
            path.append(f"{'L' if run else 'M'}{cx:.1f} {cy:.1f}")
            run += 1
            if dots:
                marks.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.6"/>')
        dash = _DASH if s.dashed else ""
        parts.append(
            f'<g class="series" data-key="{_e(s.key)}" stroke="{s.color}" fill="{s.color}">'
            f'<path d="{"".join(path)}" fill="none" stroke-width="2" stroke-linejoin="round"{dash}/>{"".join(marks)}</g>'
        )
    # one hover band per point: the browser shows its <title> as a tooltip
    band = plot_w / len(buckets)
    parts.append('<g class="hover">')
    for (first, last), cx, i in zip(buckets, centres, range(len(buckets))):
        when = f"{_clock(first)}" if first == last else f"{_clock(first)}–{_clock(last)} (per second, {_aggregates(series)})"
        lines = [f"t = {when}"] + [f"{s.label}: {fmt(points[s.key][i]) if points[s.key][i] is not None else '–'}" for s in series]
        parts.append(
            f'<rect x="{cx - band / 2:.1f}" y="{_TOP}" width="{band:.2f}" height="{plot_h}"><title>{_e(chr(10).join(lines))}</title></rect>'
        )
    parts.append("</g></svg>")
    note = ""
    if len(buckets) < len(t):
        note = f'<p class="note">{len(t):,} seconds drawn as {len(buckets):,} points of {buckets[0][1] - buckets[0][0] + 1} s each ({_aggregates(series)}); every second is in the data.</p>'
    return f'<figure>{caption}<div class="legend">{legend}</div>{"".join(parts)}{note}</figure>'


def _aggregates(series: Iterable[_Series]) -> str:
    return ", ".join(f"{s.label} {'max' if s.aggregate == 'max' else 'mean'}" for s in series)


def _legend_figures(series: _Series, fmt: Callable[[float], str]) -> str:
    values = [v for v in series.values if v is not None]
    if not values:
        return ""
    if not series.mean_over:
        return f" mean {fmt(sum(values) / len(values))} · peak {fmt(max(values))}"
    mean = f" mean {fmt(series.mean)} {series.mean_over} ·" if series.mean is not None else ""
    return f"{mean} peak {fmt(max(values))}"


# ---------------------------------------------------------------- tables
def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric_from: int = 1, empty: str = "none", cls: str = "") -> str:
    rows = list(rows)
    head = "".join(f'<th{" class=num" if i >= numeric_from else ""}>{_e(h)}</th>' for i, h in enumerate(headers))
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">{_e(empty)}</td></tr>'
    else:
        body = "".join(
            "<tr>" + "".join(f'<td{" class=num" if i >= numeric_from else ""}>{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
            for row in rows
        )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _latency_table(report: Mapping[str, Any]) -> str:
    outcomes = report.get("outcomes") or {}
    rows = []
    for kind, p in (report.get("latency_ms_by_kind") or {}).items():
        by_outcome = outcomes.get(kind, {})
        failed = by_outcome.get("failed", 0)
        rows.append([
            f"<b>{_e(kind)}</b>", _num(sum(by_outcome.values())), _fail_cell(failed),
            *(_ms(p.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max", "mean")),
        ])  # fmt: skip
    overall = report.get("latency_ms") or {}
    if rows:
        dialogues = report.get("dialogues") or {}
        rows.append([
            "all", _num(dialogues.get("completed", 0) + dialogues.get("failed", 0)), _fail_cell(dialogues.get("failed", 0)),
            *(_ms(overall.get(k)) for k in ("p50", "p90", "p99", "p99.9", "max", "mean")),
        ])  # fmt: skip
    return _table(["kind", "dialogues", "failed", "p50", "p90", "p99", "p99.9", "max", "mean"], rows,
                  empty="no dialogue finished", cls="total")  # fmt: skip


def _fail_cell(count: int) -> str:
    return f'<span class="bad">{_num(count)}</span>' if count else "0"


def _outcome_table(report: Mapping[str, Any]) -> str:
    outcomes: Mapping[str, Mapping[str, int]] = report.get("outcomes") or {}
    names = sorted({o for by in outcomes.values() for o in by}, key=lambda o: (o == "failed", o))
    rows = []
    totals = dict.fromkeys(names, 0)
    for kind, by in outcomes.items():
        cells = []
        for name in names:
            count = by.get(name, 0)
            totals[name] += count
            cells.append(_fail_cell(count) if name == "failed" else (_num(count) if count else '<span class="muted">·</span>'))
        rows.append([f"<b>{_e(kind)}</b>", *cells, _num(sum(by.values()))])
    if rows:
        rows.append(["all", *(_fail_cell(totals[n]) if n == "failed" else _num(totals[n]) for n in names), _num(sum(totals.values()))])
    return _table(["kind", *names, "total"], rows, empty="no dialogue finished", cls="total")


def _failures_by_step_table(report: Mapping[str, Any]) -> str:
    by_step: Mapping[str, Mapping[str, int]] = report.get("failures_by_step") or {}
    rows = sorted(((kind, step, n) for kind, steps in by_step.items() for step, n in steps.items()), key=lambda r: (-r[2], r[0], r[1]))
    total = sum(n for *_, n in rows) or 1
    return _table(
        ["kind", "step", "failed", "share"],
        ([f"<b>{_e(k)}</b>", f"<code>{_e(s)}</code>", _fail_cell(n), f"{n / total:.0%}"] for k, s, n in rows),
        numeric_from=2, empty="no failures",
    )  # fmt: skip


def _counts_table(title: str, counts: Mapping[str, int] | None, empty: str) -> str:
    rows = sorted((counts or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return _table([title, "count"], ([f"<code>{_e(k)}</code>", _num(v)] for k, v in rows), empty=empty)


def _refused_table(report: Mapping[str, Any]) -> str:
    """Every MO the target refused, by status: those that failed their dialogue, and those a check called for."""
    expected: Mapping[str, int] = report.get("mo_refused_expected") or {}
    rows = sorted((report.get("mo_refused") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    return _table(["status", "failed their dialogue", "as expected"],
                  ([f"<code>{_e(k)}</code>", _fail_cell(v - expected.get(k, 0)), _num(expected.get(k, 0))] for k, v in rows),
                  empty="none refused")  # fmt: skip


def _simulator_section(report: Mapping[str, Any]) -> str:
    """How the simulator itself kept up (summary["simulator"], simulator/headroom.py) and the rates beside the
    steady state's: a saturated simulator's latencies are its own queueing (the verdict says so)."""
    simulator: Mapping[str, Any] = report.get("simulator") or {}
    throughput: Mapping[str, Any] = report.get("throughput") or {}
    fleet: Mapping[str, Any] = report.get("fleet") or {}
    loop_lag = simulator.get("loop_lag_ms") or {}
    schedule_lag = simulator.get("schedule_lag_ms") or {}
    asked = f" (--concurrency {fleet['concurrency']})" if fleet.get("concurrency") is not None else ""
    facts = [
        ("steady state", f"{_num(throughput.get('steady_s'), 1)} s from {_num(throughput.get('steady_from_s'), 1)} s"),
        ("started / s in it", _num(throughput.get("started_per_s"), 1) + (f" (--rate {_num(fleet['rate'], 1)})" if fleet.get("rate") else "")),
        ("ended ok / s in it", _num(throughput.get("ok_per_s"), 1)),
        ("reactions started (not in these rates)", _num((report.get("dialogues") or {}).get("reactions"))),
        ("ended / s over the whole load", _num(throughput.get("ended_per_s_whole_load"), 1)),
        ("event-loop lag p50 / p99 / max", " / ".join(_ms(loop_lag.get(k)) for k in ("p50", "p99", "max")) + " ms"),
        ("starts behind schedule p99 / max", " / ".join(_ms(schedule_lag.get(k)) for k in ("p99", "max")) + " ms"),
        ("in flight (mean)", _num(simulator.get("in_flight_mean"), 1) + asked),
    ]  # fmt: skip
    return _table(["", ""], ([f"<b>{_e(k)}</b>", _e(v)] for k, v in facts), numeric_from=2)


def _fleet_section(report: Mapping[str, Any]) -> str:
    """The fleet's own account (summary["fleet"]): why it stopped, dialogues not started, SP notices, spammers."""
    fleet: Mapping[str, Any] = report.get("fleet") or {}
    if not fleet:
        return '<p class="muted">No fleet data (not a fleet run).</p>'
    stats: Mapping[str, int] = fleet.get("stats") or {}
    facts = [
        ("stopped", fleet.get("stopped") or "?"), ("interrupted", "yes" if fleet.get("interrupted") else "no"),
        ("subscribers", _num(fleet.get("subscribers"))), ("binds", _num(fleet.get("binds"))),
        ("mode / load", f"{fleet.get('mode', '?')} / {fleet.get('load', '?')}"),
        ("retired subscribers", _num(fleet.get("retired_subscribers"))),
        *((f"SP notices of {sp}", f"not checked: {why}") for sp, why in (fleet.get("sp_notices_unchecked") or {}).items()),
    ]  # fmt: skip
    not_started = {k.removeprefix("not_started_"): v for k, v in stats.items() if k.startswith("not_started")}
    others = {k: v for k, v in stats.items() if not k.startswith("not_started")}
    spammers = fleet.get("spammers") or {}
    return f"""<div class="grid2">
<div>{_table(["", ""], ([f"<b>{_e(k)}</b>", _e(v)] for k, v in facts), numeric_from=2)}</div>
<div><h3>Dialogues not started</h3>{_counts_table("why", not_started, "none: every dialogue due started")}
<h3 style="margin-top:18px">SP notices received</h3>{_counts_table("notice", fleet.get("sp_notices"), "none")}</div>
</div>
<h3 style="margin-top:22px">Binds lost</h3>{_lost_binds_table(fleet)}
<h3 style="margin-top:22px">Other counts</h3>{_counts_table("what", others, "none")}
<h3 style="margin-top:22px">Spammers</h3>{_table(["spammer", "rounds", "victims reported", "blocked expected", "refused seen", "retired"],
    ([f"<code>{_e(n)}</code>", _num(v.get("rounds")), _num(v.get("victims_reported")), _e(v.get("blocked_expected")),
      _e(v.get("refused_seen")), _e(v.get("retired"))] for n, v in spammers.items()), empty="none ran")}"""  # fmt: skip


def _lost_binds_table(fleet: Mapping[str, Any]) -> str:
    """The binds the target dropped while the run went on: which, when (seconds into the run), why, and when bound
    again (--rebind; "never" without it, or when no rebind succeeded by the end)."""
    return _table(["bind", "why", "at (s)", "rebound at (s)"],
                  ([f"<code>{_e(b.get('bind'))}</code>", _e(b.get("reason")), _num(b.get("at_s"), 1),
                    "never" if b.get("rebound_at_s") is None else _num(b.get("rebound_at_s"), 1)]
                   for b in fleet.get("lost_binds") or ()), numeric_from=2, empty="none: every bind held")  # fmt: skip


_DIRECTION = {">": ("sent", "→ sent"), "<": ("received", "← received")}


def _failures_section(report: Mapping[str, Any], limit: int) -> str:
    failures: list[Mapping[str, Any]] = report.get("failures") or []
    failed = (report.get("dialogues") or {}).get("failed", len(failures)) + report.get("faults", 0)
    if not failures:
        return '<p class="muted">No dialogue failed.</p>' if not failed else f'<p class="muted">{_num(failed)} failed; no transcript was kept.</p>'
    shown = failures[:limit]
    what = "failed dialogues" + (" and faults found outside them" if report.get("faults") else "")
    intro = f"Showing {len(shown):,} of {_num(failed)} {what}"
    if len(failures) > len(shown):
        intro += f" (report.json keeps {len(failures):,})"
    elif failed > len(failures):
        intro += f" (only the first {len(failures):,} were kept with transcripts)"
    items = []
    for number, f in enumerate(shown, 1):
        transcript = f.get("transcript") or []
        rows = "".join(
            f'<tr class="{_DIRECTION.get(line.get("dir"), ("", ""))[0]}"><td class="num">{float(line.get("t") or 0):.3f}</td>'
            f'<td class="dir">{_DIRECTION.get(line.get("dir"), ("", _e(line.get("dir", ""))))[1]}</td>'
            f'<td><code>{_e(line.get("peer", ""))}</code></td><td class="text">{_e(line.get("text", ""))}</td></tr>'
            for line in transcript
        )
        body = (
            f'<table class="transcript"><thead><tr><th class="num">t (s)</th><th>direction</th><th>peer</th><th>text</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
            if rows
            else '<p class="muted">empty transcript</p>'
        )
        items.append(
            f'<details class="failure"{" open" if number <= 3 else ""}><summary>'
            f'<span class="idx">#{number}</span> <b>{_e(f.get("kind", ""))}</b> '
            f'<code>{_e(f.get("step", ""))}</code> <span class="muted">at {float(f.get("at") or 0):.3f} s · {_e(f.get("msisdn", ""))}</span>'
            f'<div class="error">{_e(f.get("error", ""))}</div></summary>{body}</details>'
        )
    return f'<p class="muted">{intro}.</p>' + "".join(items)


def _internal_errors_section(report: Mapping[str, Any]) -> str:
    """The simulator's own errors among the failures, apart: there the simulator broke, not the target."""
    internal = report.get("internal_errors") or {}
    if not internal.get("count"):
        return ""
    items = "".join(f'<li><code>{_e(message)}</code></li>' for message in internal.get("first", []))
    return (f'<p class="bad">{_num(internal["count"])} of these failures are internal errors of the simulator itself '
            f'(step <code>internal error</code>): a bug of the simulator, not the target\'s doing; the tracebacks '
            f'went to stderr. The first distinct ones:</p><ul>{items}</ul>')  # fmt: skip


def _toml(table: Mapping[str, Any]) -> str:
    """The scenario as a TOML file would say it (how people write scenarios); JSON-ish for odd values."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v if isinstance(v, str) else str(v), ensure_ascii=False)

    def key(k: Any) -> str:
        k = str(k)
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)

    def is_tables(v: Any) -> bool:
        return isinstance(v, list) and bool(v) and all(isinstance(x, Mapping) for x in v)

    def emit(path: list[str], t: Mapping[str, Any], header: str | None) -> None:
        scalars = [(k, v) for k, v in t.items() if not isinstance(v, Mapping) and not is_tables(v)]
        if header is not None and (scalars or header.startswith("[[") or not any(isinstance(v, Mapping) for v in t.values())):
            lines.extend(["", header] if lines else [header])
        lines.extend(f"{key(k)} = {value(v)}" for k, v in scalars)
        for k, v in t.items():
            sub = [*path, key(k)]
            if isinstance(v, Mapping):
                emit(sub, v, f"[{'.'.join(sub)}]")
            elif is_tables(v):
                for item in v:
                    emit(sub, item, f"[[{'.'.join(sub)}]]")

    emit([], table, None)
    return "\n".join(lines)


# ---------------------------------------------------------------- the page
_CSS = """
:root { --fg:#1f2328; --muted:#656d76; --bg:#ffffff; --panel:#f6f8fa; --line:#d0d7de; --grid:#e6e9ed;
        --ok:#1a7f37; --bad:#cf222e; --badbg:#ffebe9; --okbg:#dafbe1; --accent:#0969da; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6edf3; --muted:#8d96a0; --bg:#0d1117; --panel:#161b22; --line:#30363d; --grid:#21262d;
          --ok:#3fb950; --bad:#f85149; --badbg:#3c1618; --okbg:#12261e; --accent:#4493f8; }
}
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg); font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
       "Noto Sans","Noto Sans CJK SC","PingFang SC","Microsoft YaHei",sans-serif; }
main { max-width:1180px; margin:0 auto; padding:28px 24px 48px; }
header { display:flex; flex-wrap:wrap; align-items:baseline; gap:8px 16px; border-bottom:1px solid var(--line); padding-bottom:14px; }
h1 { font-size:24px; margin:0; font-weight:600; }
h2 { font-size:17px; margin:34px 0 10px; font-weight:600; }
h3 { font-size:14px; margin:0 0 6px; font-weight:600; color:var(--muted); text-transform:uppercase; letter-spacing:.04em; }
.badge { padding:2px 10px; border-radius:999px; font-weight:600; font-size:13px; }
.badge { background:var(--panel); color:var(--muted); border:1px solid var(--line); }
.badge.ok { background:var(--okbg); color:var(--ok); border-color:transparent; } .badge.bad { background:var(--badbg); color:var(--bad); border-color:transparent; }
.meta { width:100%; color:var(--muted); font-size:13px; }
.meta span + span::before { content:"·"; margin:0 8px; }
.cards { display:grid; grid-template-columns:repeat(5,1fr); gap:10px; margin-top:20px; }
@media (max-width:760px) { .cards { grid-template-columns:repeat(2,1fr); } }
.card { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.card .label { color:var(--muted); font-size:12px; }
.card .value { font-size:24px; font-weight:600; font-variant-numeric:tabular-nums; white-space:nowrap; }
.card .value small { font-size:13px; font-weight:500; color:var(--muted); margin-left:2px; }
.card.bad { border-color:var(--bad); background:var(--badbg); } .card.bad .value { color:var(--bad); }
figure { margin:14px 0 0; background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px 6px; }
figcaption { font-weight:600; }
.legend { display:flex; flex-wrap:wrap; gap:4px 18px; font-size:13px; margin:4px 0 2px; }
.legend .key { display:inline-flex; align-items:center; gap:6px; }
svg.chart { width:100%; height:auto; display:block; }
svg.chart .grid { stroke:var(--grid); stroke-width:1; } svg.chart .axis { stroke:var(--muted); stroke-width:1; }
svg.chart .tick, svg.chart .unit { fill:var(--muted); font-size:12px; font-variant-numeric:tabular-nums; }
svg.chart .empty { fill:var(--muted); font-size:16px; }
svg.chart .hover rect { fill:transparent; } svg.chart .hover rect:hover { fill:var(--fg); fill-opacity:.07; }
.note { color:var(--muted); font-size:12px; margin:2px 0 6px; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(330px,1fr)); gap:18px 28px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:5px 10px; border-bottom:1px solid var(--line); text-align:left; vertical-align:top; }
th { font-size:12px; color:var(--muted); font-weight:600; border-bottom-width:2px; }
td.num, th.num { text-align:right; white-space:nowrap; }
table.total tbody tr:last-child:not(:only-child) td { font-weight:600; border-top:2px solid var(--line); }
tbody tr:hover { background:var(--panel); }
.muted { color:var(--muted); } .bad { color:var(--bad); font-weight:600; }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; }
details.failure { border:1px solid var(--line); border-left:4px solid var(--bad); border-radius:6px; margin:8px 0; background:var(--bg); }
details.failure > summary { cursor:pointer; padding:8px 12px; list-style-position:inside; }
details.failure[open] > summary { border-bottom:1px solid var(--line); background:var(--panel); }
details.failure .idx { color:var(--muted); font-variant-numeric:tabular-nums; }
details.failure .error { margin:3px 0 0 18px; color:var(--bad); white-space:pre-wrap; word-break:break-word; }
table.transcript { margin:4px 0 8px; } table.transcript td { border-bottom-style:dashed; }
table.transcript td.dir { white-space:nowrap; color:var(--muted); } tr.received td.dir { color:var(--accent); }
table.transcript td.text { white-space:pre-wrap; word-break:break-word; width:100%; }
pre.scenario { background:var(--panel); border:1px solid var(--line); border-radius:8px; padding:12px 14px; overflow:auto;
               font:12.5px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace; white-space:pre-wrap; }
footer { margin-top:40px; color:var(--muted); font-size:12px; border-top:1px solid var(--line); padding-top:10px; }
"""


def _card(label: str, value: str, unit: str = "", bad: bool = False) -> str:
    small = f"<small>{_e(unit)}</small>" if unit else ""
    return f'<div class="card{" bad" if bad else ""}"><div class="label">{_e(label)}</div><div class="value">{value}{small}</div></div>'


def render_html(report: Mapping[str, Any], *, max_failures: int = MAX_FAILURES_SHOWN) -> str:
    """The self-contained HTML page of a report built by `build_report`."""
    run = report.get("run") or {}
    versions = run.get("versions") or {}
    dialogues = report.get("dialogues") or {}
    throughput = report.get("throughput") or {}
    latency = report.get("latency_ms") or {}
    timeline: list[Mapping[str, Any]] = report.get("timeline") or []
    failed, completed = dialogues.get("failed", 0), dialogues.get("completed", 0)
    started = dialogues.get("started", completed + failed)
    faults = report.get("faults", 0)  # failed checks outside any dialogue
    internal = (report.get("internal_errors") or {}).get("count", 0)  # of the failures, the simulator's own errors
    title = report.get("title") or "smsgw fleet run"
    if not completed + failed:  # no latency was measured: show none rather than 0 ms
        latency = {}

    verdict = report.get("verdict") or {}
    misses = verdict.get("misses") or []
    if verdict.get("result") == "INTERRUPTED":
        badge = '<span class="badge bad">INTERRUPTED: the figures cover the run up to the signal; no verdict</span>'
    elif verdict.get("result") == "FAIL":
        badge = '<span class="badge bad">FAIL</span>' + "".join(f'<span class="badge bad">{_e(m)}</span>' for m in misses)
    else:  # PASS (failures within --max-failures told beside it), or a report without a verdict
        badge = '<span class="badge ok">PASS</span>' if verdict.get("result") == "PASS" else ""
        if failed or faults:
            told = ", ".join([f"{_num(failed)} failed"] * bool(failed) + [f"{_num(faults)} faults outside dialogues"] * bool(faults))
            badge += (f'<span class="badge">{told}, within --max-failures</span>' if badge
                      else f'<span class="badge bad">{told}</span>')  # fmt: skip
        elif completed:
            badge += f'<span class="badge ok">all {_num(completed)} dialogues ok</span>'
        else:
            badge += '<span class="badge">no dialogues</span>'
    meta = "".join(
        f"<span>{_e(item)}</span>"
        for item in (
            f"started {_when(run.get('started_at'))}", f"duration {_duration(float(report.get('duration_s') or 0))}",
            f"host {run.get('host', '?')}", f"smsgw {versions.get('smsgw', '?')}",
            f"Python {versions.get('python', '?')}",
        )
    )  # fmt: skip
    cards = "".join((
        _card("ok dialogues / s (steady state)", _num(throughput.get("ok_per_s"), 1)),
        _card("MO accepted / s", _num(throughput.get("mo_per_s"), 1)),
        _card("completed", _num(completed)),
        _card("failed", _num(failed), bad=bool(failed)),
        *([_card("faults outside dialogues", _num(faults), bad=True)] if faults else []),
        *([_card("internal errors (the simulator's)", _num(internal), bad=True)] if internal else []),
        _card("started", _num(started)),
        _card("latency p50", _ms(latency.get("p50")), "ms"),
        _card("latency p90", _ms(latency.get("p90")), "ms"),
        _card("latency p99", _ms(latency.get("p99")), "ms"),
        _card("latency p99.9", _ms(latency.get("p99.9")), "ms"),
        _card("latency max", _ms(latency.get("max")), "ms"),
    ))  # fmt: skip

    t = [int(s.get("t", i)) for i, s in enumerate(timeline)]
    rate_chart = _chart(
        "chart-rate", "Rate over time", "per second", t,
        [
            _Series("completed", "completed", "#1f6feb", [s.get("completed", 0) for s in timeline],
                    mean=throughput.get("ok_per_s"), mean_over="ok in the steady state"),
            _Series("failed", "failed", "#d1242f", [s.get("failed", 0) for s in timeline], aggregate="max", on_top=True),
            _Series("mo", "MO", "#2da44e", [s.get("mo", 0) for s in timeline],
                    mean=throughput.get("mo_per_s"), mean_over="over the load"),
            _Series("started", "started", "#8c959f", [s.get("started", 0) for s in timeline], dashed=True,
                    mean=throughput.get("started_per_s"), mean_over="in the steady state"),
        ],
        lambda v: f"{v:,.1f}/s" if v % 1 else f"{v:,.0f}/s",
    )  # fmt: skip
    latency_chart = _chart(
        "chart-latency", "Latency over time (MO → reply, every step)", "ms", t,
        [
            _Series("p50_ms", "p50", "#1f6feb", [s.get("p50_ms") for s in timeline]),
            _Series("p99_ms", "p99", "#bf8700", [s.get("p99_ms") for s in timeline], aggregate="max"),
        ],
        lambda v: f"{_ms(v)} ms",
    )  # fmt: skip

    scenario = report.get("scenario")
    scenario_html = (
        f'<pre class="scenario">{_e(_toml(scenario) if isinstance(scenario, Mapping) else _dumps(scenario, indent=2))}</pre>'
        if scenario
        else '<p class="muted">No scenario given (the default mix).</p>'
    )
    embedded = _dumps(report, separators=(",", ":")).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{_e(title)} · {_e(run.get("started_at", ""))}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>{_e(title)}</h1>{badge}<div class="meta">{meta}</div></header>
<section class="cards">{cards}</section>

<h2>Rate and latency</h2>
{rate_chart}
{latency_chart}

<h2>The run</h2>
{_fleet_section(report)}
<h3 style="margin-top:22px">Rates and the simulator itself</h3>{_simulator_section(report)}

<h2>Dialogues</h2>
<h3>Latency by kind (ms, MO → reply of every step)</h3>{_latency_table(report)}
<h3 style="margin-top:22px">By kind and outcome</h3>{_outcome_table(report)}

<h2>Failures</h2>
{_internal_errors_section(report)}
<div class="grid2">
<div><h3>By kind and step</h3>{_failures_by_step_table(report)}</div>
<div><h3>MO refused by the server</h3>{_refused_table(report)}
<h3 style="margin-top:18px">Arrived unasked</h3>{_counts_table("what", report.get("unsolicited"), "nothing arrived unasked")}</div>
</div>
<h3 style="margin-top:22px">Transcripts</h3>
{_failures_section(report, max_failures)}

<h2>Scenario</h2>
{scenario_html}

<footer>Generated {_e(_when(run.get("generated_at")))} by the smsgw handset simulator on {_e(run.get("host", "?"))}
({_e(run.get("platform", ""))}; hdrhistogram {_e(versions.get("hdrhistogram", "?"))}).
The full data is in report.json next to this file, and embedded in this page as JSON (<code>script#report-data</code>).</footer>
</main>
<script type="application/json" id="report-data">{embedded}</script>
</body>
</html>
"""
