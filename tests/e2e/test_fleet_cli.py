"""`smsgw simulate` (simulator/cli.py): a deliberately broken server is caught with transcripts and a non-zero
exit; thresholds; usage and config mistakes exit 2 naming the file and key."""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gateway.app import GatewayController
from gateway.config import DEFAULT_CONFIG, load_config
from simulator import cli
from simulator.esme import Esme, HandshakeFailed

ROOT = Path(__file__).resolve().parents[2]
# The simulator's own lag is judged only where a test checks it: at the command line's default (--max-lag-ms 50) one
# stall of a loaded machine fails a run whose passing (exit 0, PASS, its exact misses) the test needs (as in
# test_fleet_figures.py; the gateway in this process's thread shares the event loop's interpreter).
NO_LAG_VERDICT = ("--max-lag-ms", "10000")
GOOD_DONE = "您已成功退订{sp_company}提供的{service}业务，下月起不再收取信息费。"
BAD_DONE = "您已退订{sp_company}的{service}业务。"


@pytest.fixture
def broken_gateway(tmp_path: Path):
    """The built-in config, except: one reply text differs (unsubscribe.done) and 10086999 never answers."""
    directory = tmp_path / "broken"
    directory.mkdir()
    config = DEFAULT_CONFIG.read_text(encoding="utf-8")
    (directory / "config.toml").write_text(config + '\n[[short_codes]]\ncode = "10086999"\nhandler = "silent"\n', encoding="utf-8")
    for language in ("zh", "en"):
        shutil.copy(DEFAULT_CONFIG.parent / f"messages.{language}.toml", directory / f"messages.{language}.toml")
    messages = directory / "messages.zh.toml"
    text = messages.read_text(encoding="utf-8")
    assert text.count(GOOD_DONE) == 1
    messages.write_text(text.replace(GOOD_DONE, BAD_DONE), encoding="utf-8")
    with GatewayController(load_config(directory / "config.toml"), db_path=tmp_path / "broken.db") as gw:
        yield gw


def test_a_broken_server_fails_with_transcripts_and_a_non_zero_exit(broken_gateway, tmp_path: Path) -> None:
    report = tmp_path / "report"
    argv = [sys.executable, "-m", "gateway", "simulate", "--port", str(broken_gateway.smpp_port), "--subscribers", "40",
            "--binds", "1", "--count", "150", "--concurrency", "8", "--timeout", "1", "--report", str(report), "--quiet"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAILED query at serials->unsubscribed" in done.stdout and "FAILED spam at" in done.stdout
    assert "FAIL " in done.stdout and "PASS" not in done.stdout

    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    by_step = data["failures_by_step"]
    assert set(by_step) == {"query", "spam"}, by_step  # everything else passed
    assert set(by_step["spam"]) <= {"report->ack", "forward->ask_number"}
    wrong = next(f for f in data["failures"] if f["kind"] == "query")
    assert "expected unsubscribe.done from 10086" in wrong["error"]
    assert [e["dir"] for e in wrong["transcript"]] == [">", "<", ">", "<"]
    assert wrong["transcript"][-1]["text"].startswith("您已退订")  # the wrong text, as it came
    dropped = next(f for f in data["failures"] if f["kind"] == "spam")
    assert "nothing from 10086999 within 1 s" in dropped["error"] and dropped["transcript"][0]["peer"] == "10086999"
    assert data["outcomes"]["order"].get("failed", 0) == 0 and data["dialogues"]["completed"] > 50
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "serials-&gt;unsubscribed" in html


def simulate(port: int, *flags: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "gateway", "simulate", "--port", str(port), "--subscribers", "40", "--binds", "1", *flags]
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def progress_until(run: subprocess.Popen, condition) -> None:
    """Read the plain progress lines (stderr, not a terminal) until one meets `condition`."""
    assert run.stderr is not None
    for line in run.stderr:
        if line.startswith("t=") and condition(line):
            return
    raise AssertionError(f"the run ended first: {run.wait()}")


def test_a_reader_of_stdout_gone_before_the_result_leaves_the_report_and_the_verdicts_exit_status(gateway, tmp_path: Path) -> None:
    """`smsgw simulate ... | head -1`, the reader gone before the result is printed (here: before the run ends).
    Before, a BrokenPipeError traceback, exit 1 though the run passed, and no report: it was written after stdout."""
    report = tmp_path / "report"
    run = simulate(gateway.smpp_port, "--count", "20", "--concurrency", "4", "--quiet", "--report", str(report))
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()
    errors = run.stderr.read()
    assert run.wait(timeout=60) == 0 and errors == "", errors
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["verdict"]["result"] == "PASS"


def test_ctrl_c_during_the_load_reports_what_ran_marked_interrupted(gateway, tmp_path: Path) -> None:
    report = tmp_path / "report"
    run = simulate(gateway.smpp_port, "--duration", "120", "--concurrency", "8", "--report", str(report))
    progress_until(run, lambda line: "dialogues=0 " not in line)
    run.send_signal(signal.SIGINT)
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 130, out
    assert "INTERRUPTED" in out and "PASS" not in out and "FAIL" not in out and " dialogues in " in out
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["fleet"]["interrupted"] and data["dialogues"]["completed"] > 0 and data["dialogues"]["failed"] == 0
    html = (report / "report.html").read_text(encoding="utf-8")  # not the green "all N dialogues ok"
    assert "INTERRUPTED" in html and "dialogues ok</span>" not in html and data["verdict"]["result"] == "INTERRUPTED"


def cut_short(run, report: Path, signalled: float, timeout: float) -> dict:
    """A run a Ctrl-C in its drain ended within 20 s of `signalled`, INTERRUPTED, its report saying what was cut."""
    out, _ = run.communicate(timeout=timeout)
    assert run.returncode == 130 and "INTERRUPTED" in out, out
    assert time.monotonic() - signalled < 20
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    assert data["fleet"]["interrupted"] and data["fleet"]["stats"]["cancelled_at_drain"] > 0
    # said on stdout too, where the count of dialogues leaves them out (neither ok nor failed)
    assert f"dialogues cut short at the drain, not counted above: {data['fleet']['stats']['cancelled_at_drain']}" in out
    return data


def test_ctrl_c_during_the_drain_cuts_it_short_and_keeps_the_results(broken_gateway, tmp_path: Path) -> None:
    """10086999 never answers and steps wait 60 s: the 40 dialogues start within 0.2 s, and the drain after them
    would wait its 30 s for the spam reports still in flight."""
    report = tmp_path / "report"
    run = simulate(broken_gateway.smpp_port, "--rate", "200", "--count", "40", "--timeout", "60", "--report", str(report))
    progress_until(run, lambda line: "in_flight=0 " not in line)  # the first line comes after a second: draining
    signalled = time.monotonic()
    run.send_signal(signal.SIGINT)
    data = cut_short(run, report, signalled, timeout=60)
    assert data["load_s"] < 1.0 < data["duration_s"]  # the rate is over the load, not the drain


@pytest.fixture
def silent_operator(tmp_path: Path):
    """The built-in config, except that 10086 never answers: its dialogues stay in flight until their timeout."""
    config = tmp_path / "silent.toml"
    config.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8") + '\n[[short_codes]]\ncode = "10086"\nhandler = "silent"\n',
                      encoding="utf-8")  # fmt: skip
    with GatewayController(load_config(config), db_path=tmp_path / "silent.db") as gw:
        yield gw


# A second Ctrl-C pressed as the fleet sums up its figures after the drain (which takes ~0.3 s after a short run):
# the press is made at that very moment by wrapping Fleet.summary, as no timing from outside could.
PRESSED_AGAIN_AT_THE_SUMMARY = """
import os, signal, sys
from simulator import cli, fleet
summary = fleet.Fleet.summary
def pressed_again(self):
    os.kill(os.getpid(), signal.SIGINT)
    return summary(self)
fleet.Fleet.summary = pressed_again
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_second_ctrl_c_as_the_figures_are_summed_up_keeps_them_and_the_report(gateway, tmp_path: Path) -> None:
    """It raised KeyboardInterrupt there (our handlers already removed): no figures, no report, only 'interrupted'."""
    report = tmp_path / "report"
    argv = [sys.executable, "-c", PRESSED_AGAIN_AT_THE_SUMMARY, "--port", str(gateway.smpp_port), "--subscribers", "40",
            "--binds", "1", "--duration", "30", "--report", str(report)]  # fmt: skip
    run = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress_until(run, lambda line: True)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130 and "INTERRUPTED" in out, (out, err)
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["fleet"]["interrupted"]


# A stop arriving as the report is written: report.json is out, report.html not yet (where a reviewer's SIGTERM,
# sent as report.json appeared, landed). Made at that very moment by wrapping report.render_html.
STOPPED_AS_THE_REPORT_IS_WRITTEN = """
import os, signal, sys
from simulator import cli, report
render_html = report.render_html
def stopped(*args, **kwargs):
    assert os.path.exists(sys.argv[sys.argv.index("--report") + 1] + "/report.json")
    os.kill(os.getpid(), int(os.environ["STOP_SIGNAL"]))
    return render_html(*args, **kwargs)
report.render_html = stopped
sys.exit(cli.main(sys.argv[1:]))
"""


def run_stopped(script: str, sig: int, gateway, report: Path) -> subprocess.CompletedProcess:
    """A 20-dialogue run of `script` (cli.main with a stop planted at some moment; STOP_SIGNAL: which), ended with
    exit 0."""
    argv = [sys.executable, "-c", script, "--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1",
            "--count", "20", "--quiet", "--report", str(report), *NO_LAG_VERDICT]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "STOP_SIGNAL": str(int(sig))})  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_as_the_report_is_written_waits_for_it_and_the_verdict(sig, gateway, tmp_path: Path) -> None:
    """SIGTERM there ended the process (exit 143): report.html missing or cut off mid-JSON, no verdict printed."""
    report = tmp_path / "report"
    done = run_stopped(STOPPED_AS_THE_REPORT_IS_WRITTEN, sig, gateway, report)
    assert done.stdout.endswith(f"report: {report / 'report.html'}\nPASS\n"), done.stdout
    assert sorted(path.name for path in report.iterdir()) == ["report.html", "report.json"]  # nothing partial left
    html = (report / "report.html").read_text(encoding="utf-8")
    assert html.rstrip().endswith("</html>")
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["verdict"]["result"] == "PASS"


# Stops arriving as the fleet unbinds, the drain over (where a reviewer's signals, sent while a slow SMSC had not yet
# answered the unbinds, landed). Made at that very moment by wrapping Fleet.close.
STOPPED_AS_THE_FLEET_UNBINDS = """
import os, signal, sys
from simulator import cli, fleet
close = fleet.Fleet.close
async def stopped(self, *args, **kwargs):
    for _ in range(3):
        os.kill(os.getpid(), int(os.environ["STOP_SIGNAL"]))
    return await close(self, *args, **kwargs)
fleet.Fleet.close = stopped
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_as_the_fleet_unbinds_after_the_drain_lose_nothing(sig, gateway, tmp_path: Path) -> None:
    """One stop there turned the PASS into INTERRUPTED (exit 130); a third Ctrl-C cancelled the unbinds, and the run
    ended in a CancelledError traceback, exit 1, no figures and no report."""
    report = tmp_path / "report"
    done = run_stopped(STOPPED_AS_THE_FLEET_UNBINDS, sig, gateway, report)
    assert done.stdout.endswith("PASS\n"), done.stdout
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["verdict"]["result"] == "PASS"


def test_simulate_called_in_a_process_that_goes_on_leaves_its_stop_handlers_as_it_found_them(gateway) -> None:
    """The run ignores Ctrl-C and SIGTERM from the drain's end until its report is out: left so, a program calling
    cli.main (this test session) could no longer be stopped by either, and its own SIGTERM handler was lost."""

    def own(signum: int, frame: object) -> None:  # the calling program's
        pass

    found = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.signal(signal.SIGTERM, own)}
    try:
        argv = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "20", "--quiet",
                *NO_LAG_VERDICT]  # fmt: skip
        assert cli.main(argv) == 0
        assert {sig: signal.getsignal(sig) for sig in found} == {signal.SIGINT: found[signal.SIGINT], signal.SIGTERM: own}
    finally:
        for sig, handler in found.items():
            signal.signal(sig, handler)


def test_simulate_called_from_another_thread_runs_and_reports(gateway, tmp_path: Path) -> None:
    """A QA harness running cli.main in a worker thread (signals are the main thread's): the run went through, then
    failed with ValueError ('signal only works in main thread') as it held the stops, before any verdict or report."""
    report = tmp_path / "report"
    argv = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "20", "--quiet",
            "--start", "8613800700000", "--report", str(report), *NO_LAG_VERDICT]  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        assert worker.submit(cli.main, argv).result(timeout=120) == 0
    assert json.loads((report / "report.json").read_text(encoding="utf-8"))["verdict"]["result"] == "PASS"


def test_a_second_ctrl_c_cuts_the_drain_short_in_the_closed_loop_too(silent_operator, tmp_path: Path) -> None:
    """Before, the closed loop's workers waited for their own dialogues (here 60 s), so the second Ctrl-C did not
    cut anything short and the load's time ran on until the last of them ended."""
    report = tmp_path / "report"
    run = simulate(silent_operator.smpp_port, "--concurrency", "8", "--duration", "120", "--timeout", "60",
                   "--report", str(report))  # fmt: skip
    progress_until(run, lambda line: "in_flight=0 " not in line)
    run.send_signal(signal.SIGINT)
    progress_until(run, lambda line: True)  # draining: progress goes on
    signalled = time.monotonic()
    run.send_signal(signal.SIGINT)
    data = cut_short(run, report, signalled, timeout=90)
    assert data["load_s"] + 0.5 < data["duration_s"]  # the load ended at the first Ctrl-C, not with the drain


def test_dialogues_the_drain_deadline_cut_short_fail_the_run(silent_operator, tmp_path: Path) -> None:
    """10086 never answers; steps wait 30 s, the drain 1 s: the run said PASS, exit 0, with every 10086 dialogue cut
    short unchecked."""
    scenario = tmp_path / "short-drain.toml"
    scenario.write_text("[load]\ndrain = 1.0\n")
    run = simulate(silent_operator.smpp_port, "--scenario", str(scenario), "--concurrency", "8", "--duration", "3",
                   "--timeout", "30", "--quiet")  # fmt: skip
    out, err = run.communicate(timeout=60)
    assert run.returncode == 1, (out, err)
    assert re.search(r"FAIL (\d+) dialogues still waited when the drain after the load ended \(load.drain\): \1 for a reply, "
                     "so they were never checked", out), out  # fmt: skip
    assert "PASS" not in out


def test_a_second_run_is_not_failed_by_the_sp_notices_of_the_first(gateway, tmp_path: Path, capsys) -> None:
    """Run 1 binds no SP: the gateway keeps its ORDER/CANCEL notices until the SPs bind, which run 2 does. Run 1 asks
    for no SP notice to be checked, so it names none as not checked."""
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text("[fleet]\nsp_receivers = []\n[behaviours.spammer]\nweight = 0\n")
    second.write_text("[behaviours.spammer]\nweight = 0\n")
    base = ["--port", str(gateway.smpp_port), "--subscribers", "40", "--binds", "1", "--count", "80", "--quiet", *NO_LAG_VERDICT]
    assert cli.main([*base, "--scenario", str(first), "--start", "8613800500000"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "SP notices not checked" not in out
    report = tmp_path / "report"
    assert cli.main([*base, "--scenario", str(second), "--start", "8613800600000", "--report", str(report)]) == 0
    assert "PASS" in capsys.readouterr().out
    stats = json.loads((report / "report.json").read_text(encoding="utf-8"))["fleet"]["stats"]
    assert stats["sp_notices_for_others"] > 0


def test_the_rebind_flag_reaches_the_run(gateway, tmp_path: Path, capsys) -> None:
    """`smsgw simulate --rebind` binds lost binds again: the flag must reach the scenario the fleet runs (report.json
    records it). Dropped on its way, a run given it retired a lost bind's subscribers as without it, saying nothing."""
    base = ["--port", str(gateway.smpp_port), "--subscribers", "40", "--binds", "1", "--count", "20", "--quiet", *NO_LAG_VERDICT]
    for flags, rebind in (([], False), (["--rebind"], True)):
        report = tmp_path / f"report-{rebind}"
        assert cli.main([*base, *flags, "--start", f"86138007{int(rebind)}0000", "--report", str(report)]) == 0
        assert json.loads((report / "report.json").read_text(encoding="utf-8"))["scenario"]["fleet"]["rebind"] is rebind
    capsys.readouterr()


def test_a_spammer_blocked_before_the_run_is_named_as_such(gateway, handset, tmp_path: Path, capsys) -> None:
    spammer = "8613000000000"
    for reporter in [f"86138007000{i:02d}" for i in range(5)]:  # five distinct reporters block it network-wide
        phone = handset(reporter, address_range=reporter)
        assert phone.submit("10086999", f"{spammer}*spam").status == 0
        phone.expect()
    scenario = tmp_path / "spammer.toml"
    scenario.write_text(f'[spammers]\nstart = "{spammer}"\ncount = 1\n[behaviours.spammer]\nweight = 50\n')
    argv = ["--port", str(gateway.smpp_port), "--subscribers", "40", "--binds", "1", "--count", "20", "--quiet",
            "--scenario", str(scenario), "--start", "8613800800000"]  # fmt: skip
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert "FAILED spammer at spam" in out and "before any report of this run" in out


def test_thresholds_and_usage_errors(gateway, tmp_path: Path, capsys) -> None:
    port = str(gateway.smpp_port)
    base = ["--port", port, "--subscribers", "20", "--binds", "1", "--count", "30", "--quiet"]
    assert cli.main([*base, "--min-rate", "0", "--max-p99-ms", "10000", *NO_LAG_VERDICT]) == 0
    assert "PASS" in capsys.readouterr().out
    assert cli.main([*base, "--max-p99-ms", "0.001", "--start", "8613900000000"]) == 1
    assert "FAIL p99 latency" in capsys.readouterr().out

    bad = tmp_path / "bad.toml"
    bad.write_text('[load]\nmode = "fast"\n')
    assert cli.main(["--scenario", str(bad)]) == 2
    assert f"{bad}: load.mode: expected" in capsys.readouterr().err
    bad.write_text("[fleet]\nbindz = 3\n")
    assert cli.main(["--scenario", str(bad)]) == 2
    assert f"{bad}: fleet.bindz: unknown key" in capsys.readouterr().err
    assert cli.main(["--port", port, "--password", "wrong", "--quiet"]) == 2
    # The flag was wrong, not the scenario file: before, the message blamed the file.
    assert "smsgw simulate: command line: target.system_id: bind trx as 'handset' refused: ESME_RINVPASWD" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        cli.main(["--duration", "5", "--count", "10"])
    assert usage.value.code == 2


def test_reactions_come_on_top_of_the_rate_offered_and_judged(make_gateway, tmp_path: Path, capsys) -> None:
    """Every 10086 dialogue followed by a survey (and spam texts reported): the answers and reports were counted
    as dialogues the load offered, so --rate 200 showed 286/s started and passed --min-rate 250."""
    gw = make_gateway(services={"survey_sample_rate": 1.0})
    target = tmp_path / "surveys.toml"
    shipped = DEFAULT_CONFIG.read_text(encoding="utf-8")
    assert shipped.count("survey_sample_rate = 0.0 ") == 1
    target.write_text(shipped.replace("survey_sample_rate = 0.0 ", "survey_sample_rate = 1.0 "), encoding="utf-8")
    report = tmp_path / "report"
    argv = ["--port", str(gw.smpp_port), "--target-config", str(target), "--subscribers", "200", "--binds", "2",
            "--rate", "40", "--duration", "3", "--min-rate", "41", "--report", str(report), "--quiet", *NO_LAG_VERDICT]  # fmt: skip
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    data = json.loads((report / "report.json").read_text(encoding="utf-8"))
    dialogues, throughput = data["dialogues"], data["throughput"]
    assert data["outcomes"]["rating"] and dialogues["failed"] == 0, out
    assert dialogues["reactions"] > 10 and dialogues["started"] >= 120 + dialogues["reactions"], dialogues
    assert throughput["ok_per_s"] <= throughput["started_per_s"] <= 40, throughput
    miss = f"{throughput['ok_per_s']} dialogues/s ended ok in the steady state, below --min-rate 41"
    assert data["verdict"]["misses"] == [miss], out
    assert f"{dialogues['reactions']} of them reactions, not in the steady state's rates" in out
    assert "reactions started (not in these rates)" in (report / "report.html").read_text(encoding="utf-8")


def test_reply_text_files_the_gateway_refuses_beside_the_target_config_are_a_usage_error(tmp_path: Path, capsys) -> None:
    """They were read as the fleet was made, after the config itself was checked: a traceback and exit 1, where
    `smsgw serve` with the same files names the file and key, exit 2."""
    target = tmp_path / "site"
    target.mkdir()
    shutil.copy(DEFAULT_CONFIG, target / "site.toml")
    english = (DEFAULT_CONFIG.parent / "messages.en.toml").read_text(encoding="utf-8")
    assert english.count("\nlanguage_set = ") == 1
    (target / "messages.en.toml").write_text(english.replace("\nlanguage_set = ", "\n# language_set = "), encoding="utf-8")
    base = ["--port", "3999", "--subscribers", "4", "--binds", "1", "--count", "1", "--quiet"]  # (nothing listens)
    assert cli.main([*base, "--target-config", str(target / "site.toml")]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"smsgw simulate: {target / 'messages.en.toml'}: common.language_set: missing "), err
    assert err.count("\n") == 1 and out == ""  # one line, before any connection
    # The scenario's [target] config names it as well; a file that is not TOML at all.
    (target / "messages.en.toml").unlink()
    (target / "messages.zh.toml").write_text("[common\n", encoding="utf-8")
    scenario = tmp_path / "s.toml"
    scenario.write_text('[target]\nconfig = "site/site.toml"\n')
    assert cli.main([*base, "--scenario", str(scenario)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"smsgw simulate: {target / 'messages.zh.toml'}: -: not valid TOML: "), err
    assert err.count("\n") == 1 and out == ""


def test_a_target_config_naming_tls_files_absent_here_still_runs(gateway, tmp_path: Path, capsys) -> None:
    """The production config names its certificate and private key, on the gateway's host: a copy on the simulator's
    was refused (target config: tls.certfile: no such file), though the fleet needs none of them."""
    production = tmp_path / "prod.toml"
    tls = '[tls]\nenabled = false\nport = 2776\ncertfile = ""\nkeyfile = ""\n'
    assert DEFAULT_CONFIG.read_text(encoding="utf-8").count(tls) == 1
    production.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8").replace(tls, '[tls]\nenabled = true\nport = 2776\n'
                          'certfile = "/etc/smsgw/cert.pem"\nkeyfile = "/etc/smsgw/key.pem"\n'), encoding="utf-8")  # fmt: skip
    argv = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "10", "--quiet",
            "--target-config", str(production), *NO_LAG_VERDICT]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr()
    assert "PASS" in capsys.readouterr().out
    # The gateway serving with it still wants them.
    served = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(production), "--db",
                             str(tmp_path / "prod.db")], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert served.returncode == 2 and "tls.certfile: no such file: '/etc/smsgw/cert.pem'" in served.stderr, served.stderr


@pytest.mark.parametrize(("first", "second", "values"), [
    ("ca", "insecure", ("ca.pem", True)), ("duration", "count", (5.0, 10)), ("rate", "concurrency", (10.0, 4))])  # fmt: skip
def test_flags_not_allowed_together_are_a_usage_error_in_arguments_parsed_elsewhere(first, second, values, capsys) -> None:
    """argparse refuses them on the command line; arguments a wrapper's own parser made are checked by run_args the
    same, before anything runs: unchecked, Scenario.override lets the last win, the other dropped silently (coverage
    review: no test ran it)."""
    args = cli.add_arguments(argparse.ArgumentParser()).parse_args([])
    for name, value in zip((first, second), values):
        setattr(args, name, value)
    assert cli.run_args(args) == 2
    assert capsys.readouterr() == ("", f"smsgw simulate: argument --{second}: not allowed with argument --{first}\n")


@pytest.mark.parametrize("flag", ["--rate", "--timeout", "--ramp-up", "--duration", "--min-rate", "--max-p99-ms"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_flags_are_usage_errors(flag: str, value: str, capsys) -> None:
    with pytest.raises(SystemExit) as usage:
        cli.main([flag, value])
    assert usage.value.code == 2
    assert f"argument {flag}: expected a finite value" in capsys.readouterr().err


def test_non_finite_scenario_values_are_usage_errors(tmp_path: Path, capsys) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[load]\nmode = "open"\nrate = inf\n')
    assert cli.main(["--scenario", str(scenario), "--quiet"]) == 2
    assert f"{scenario}: load.rate: expected a finite number; got inf" in capsys.readouterr().err
    scenario.write_text("[behaviours.query]\nweight = nan\n")  # was accepted, and query dialogues never ran
    assert cli.main(["--scenario", str(scenario), "--quiet"]) == 2
    assert f"{scenario}: behaviours.query.weight: expected a finite number; got nan" in capsys.readouterr().err


def test_a_scenario_file_not_in_utf8_is_a_usage_error_naming_it(tmp_path: Path, capsys) -> None:
    """A Latin-1 comment (an editor's default): a UnicodeDecodeError traceback and exit 1, where the same file as
    --target-config was refused naming it. Read as a config is now; with a byte order mark (Notepad's) it runs on."""
    scenario = tmp_path / "s.toml"
    scenario.write_bytes(b"# r\xe9sum\xe9 of the load\n[load]\nconcurrency = 4\n")
    assert cli.main(["--scenario", str(scenario), "--quiet"]) == 2
    assert capsys.readouterr() == ("", f"smsgw simulate: {scenario}: -: not UTF-8 text (byte 3 is not); save it as UTF-8\n")
    scenario.write_bytes(b"\xef\xbb\xbf[load]\nrate = inf\n")  # (refused for the rate, after it was read)
    assert cli.main(["--scenario", str(scenario), "--quiet"]) == 2
    assert f"{scenario}: load.rate: expected a finite number; got inf" in capsys.readouterr().err


BIND_VALUES_REFUSED = [
    ('[spammers]\npassword = "carrier12"\n',
     "spammers.password: it is 9 octets; SMPP allows at most 8 in a bind's password"),
    ('[fleet]\nsp_receivers = [{system_id = "sina", password = "sinasina1"}]\n',
     "fleet.sp_receivers[0].password: it is 9 octets; SMPP allows at most 8 in a bind's password"),
    ('[target]\nsystem_type = "LOADTEST-SYSTEM"\n',
     "target.system_type: 'LOADTEST-SYSTEM' is 15 octets; SMPP allows at most 12 in a bind's system_type"),
    ('[target]\npassword = "密码"\n',
     "target.password: it cannot be sent: a bind carries it in Latin-1, which lacks some of its characters"),
    ('[target]\npassword = "pass\\u0000word"\n', "target.password: it has a NUL, which ends an SMPP C-octet string"),
    ('[target]\npassword = 12345678\n', "target.password: expected a string; got an integer"),
    ('[fleet]\nsp_receivers = [{password = "sina"}]\n', "fleet.sp_receivers[0].system_id: missing: it has no default"),
    ('[fleet]\nstart = "8613800000²"\n',
     "fleet.start: expected an MSISDN in international form (digits, e.g. 8613800000000); got '8613800000²'"),
]  # fmt: skip


@pytest.mark.parametrize(("toml", "problem"), BIND_VALUES_REFUSED)
def test_scenario_values_a_bind_cannot_carry_are_usage_errors(toml: str, problem: str, tmp_path: Path, capsys) -> None:
    """Each passed the checks (characters counted, not octets; '²'.isdigit()), then ended in a traceback and exit 1:
    the codec refused the bind, or int() the number; a missing system_id was a TypeError. A password is never shown
    (it was, quoted)."""
    scenario = tmp_path / "s.toml"
    scenario.write_text(toml, encoding="utf-8")
    assert cli.main(["--scenario", str(scenario), "--quiet"]) == 2
    assert capsys.readouterr() == ("", f"smsgw simulate: {scenario}: {problem}\n")  # before any connection


def test_a_system_id_flag_a_bind_cannot_carry_is_a_usage_error(capsys) -> None:
    assert cli.main(["--system-id", "手机", "--quiet"]) == 2
    assert capsys.readouterr().err == ("smsgw simulate: command line: target.system_id: '手机' cannot be sent: a bind "
                                       "carries it in Latin-1, which lacks '手'\n")  # fmt: skip


def test_a_start_number_in_national_form_is_a_usage_error(gateway, capsys) -> None:
    argv = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "5", "--timeout", "1",
            "--quiet", "--start", "13801400000"]  # fmt: skip
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert "command line: fleet.start: expected an MSISDN in international form" in err and "8613801400000?" in err
    assert out == ""  # nothing ran


def test_a_fleet_range_outside_the_bind_accounts_numbers_is_a_usage_error(gateway, tmp_path: Path, capsys) -> None:
    """The fleet binds as 'handset' (numbers 86138, 86139 in the target config). Before, a range under 86137 ran
    and every dialogue failed on ESME_RINVSRCADR."""
    base = ["--port", str(gateway.smpp_port), "--binds", "1", "--count", "5", "--timeout", "1", "--quiet"]
    assert cli.main([*base, "--start", "8613700000000", "--subscribers", "20"]) == 2
    out, err = capsys.readouterr()
    assert ("smsgw simulate: command line: fleet.start/fleet.count: 8613700000000..8613700000019 (20 numbers) are not "
            "all numbers of the bind account 'handset': 8613700000000 is under none of its numbers ['86138', '86139'] in ") in err, err
    assert "ESME_RINVSRCADR" in err and "Traceback" not in err and out == ""  # nothing ran
    # A range running out of 86139 into 86140 is refused at its first number outside.
    assert cli.main([*base, "--start", "8613999999990", "--subscribers", "20"]) == 2
    assert "8613999999990..8614000000009 (20 numbers)" in (err := capsys.readouterr().err) and ": 8614000000000 is under none" in err
    # The spammers' range against their account, from the scenario file.
    scenario = tmp_path / "spammers.toml"
    scenario.write_text('[spammers]\nstart = "8613900500000"\ncount = 2\n[behaviours.spammer]\nweight = 1\n')
    assert cli.main([*base, "--start", "8613900000000", "--subscribers", "20", "--scenario", str(scenario)]) == 2
    assert f"smsgw simulate: {scenario}: spammers.start/spammers.count: 8613900500000..8613900500001" in capsys.readouterr().err


def test_more_binds_than_the_bind_account_allows_is_a_usage_error(gateway, tmp_path: Path, capsys) -> None:
    """'handset' takes 200 binds (max_binds in the target config). Before, the 201st was refused and the message
    blamed default.toml: target.system_id, a key the user neither set nor needs to change."""
    base = ["--port", str(gateway.smpp_port), "--count", "5", "--quiet"]
    assert cli.main([*base, "--binds", "201", "--subscribers", "201"]) == 2
    out, err = capsys.readouterr()
    assert err == (f"smsgw simulate: command line: fleet.binds: 201 binds as 'handset', more than the bind account's "
                   f"max_binds 200 in {DEFAULT_CONFIG}: the gateway would refuse the rest (ESME_RBINDFAIL)\n"), err
    assert out == "" and gateway.gateway.accounts.get("handset").binds == 0  # refused before binding
    scenario = tmp_path / "pairs.toml"
    scenario.write_text('[fleet]\nmode = "tx+rx"\nbinds = 101\n')
    assert cli.main([*base, "--scenario", str(scenario)]) == 2
    assert capsys.readouterr().err.startswith(f"smsgw simulate: {scenario}: fleet.binds: 202 binds as 'handset' (tx+rx "
                                              "pairs: 2 binds each), more than the bind account's max_binds 200 in ")


def test_an_sp_receiver_no_catalogue_service_notifies_is_a_usage_error(gateway, tmp_path: Path, capsys) -> None:
    """A receiver that is no SP of the catalogue (here the handsets' second account) got no notice to check: the run
    passed with fleet.sp_notices {} and nothing said. An SP left out of the receivers is named as not checked."""
    base = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "20", "--quiet"]
    scenario = tmp_path / "receivers.toml"
    for receiver, what in [("handset2", "a handset account in {config}, not an SP's"), ("nobody", "no account in {config}"),
                           ("carrier", "a smsc account in {config}, not an SP's")]:  # fmt: skip
        scenario.write_text(f'[fleet]\nsp_receivers = [{{ system_id = "sina", password = "sina" }}, '
                            f'{{ system_id = "{receiver}", password = "{receiver}" }}]\n')  # fmt: skip
        assert cli.main([*base, "--scenario", str(scenario)]) == 2
        out, err = capsys.readouterr()
        assert err == (f"smsgw simulate: {scenario}: fleet.sp_receivers[1]: '{receiver}' is {what.format(config=DEFAULT_CONFIG)}: "
                       "no ORDER/CANCEL notice comes to it, so none would be checked; expected an SP the catalogue "
                       "notifies (sina, tencent)\n"), err  # fmt: skip
        assert out == "" and gateway.gateway.accounts.get("sina").binds == 0  # refused before binding
    scenario.write_text('[fleet]\nsp_receivers = [{ system_id = "sina", password = "sina" }]\n[behaviours.spammer]\nweight = 0\n')
    report = tmp_path / "report"
    assert cli.main([*base, "--scenario", str(scenario), "--report", str(report), *NO_LAG_VERDICT]) == 0
    assert "SP notices not checked: tencent's (not among fleet.sp_receivers)" in capsys.readouterr().out
    fleet = json.loads((report / "report.json").read_text(encoding="utf-8"))["fleet"]
    assert fleet["sp_notices_unchecked"] == {"tencent": "not among fleet.sp_receivers"}
    assert "<b>SP notices of tencent</b>" in (report / "report.html").read_text(encoding="utf-8")


def test_a_report_path_that_cannot_be_a_directory_is_refused_before_the_run(gateway, tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "afile"
    a_file.write_text("kept\n")
    base = ["--port", str(gateway.smpp_port), "--subscribers", "20", "--binds", "1", "--count", "5", "--quiet"]
    for report, problem in ((a_file, "is a file, not a directory"), (a_file / "out", "cannot create the directory")):
        assert cli.main([*base, "--report", str(report)]) == 2
        out, err = capsys.readouterr()
        assert f"smsgw simulate: --report {report}: {problem}" in err and "Traceback" not in err
        assert out == ""  # refused before the run, not after it
    assert a_file.read_text() == "kept\n"
    made = tmp_path / "new" / "report"
    assert cli.main([*base, "--report", str(made), *NO_LAG_VERDICT]) == 0
    assert (made / "report.json").is_file()


def test_an_unreachable_target_blames_the_target(tmp_path: Path, capsys) -> None:
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        base = ["--subscribers", "4", "--binds", "1", "--count", "1", "--quiet"]
        assert cli.main([*base, "--port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"smsgw simulate: command line: target.host/target.port: cannot connect to 127.0.0.1:{port}: " in err, err
        assert "Connection refused" in err and "sp_receivers" not in err
        scenario = tmp_path / "s.toml"
        scenario.write_text(f"[target]\nport = {port}\n")
        assert cli.main([*base, "--scenario", str(scenario)]) == 2
        assert f"smsgw simulate: {scenario}: target.host/target.port: cannot connect to 127.0.0.1:{port}: " in capsys.readouterr().err


def test_a_ramp_up_for_a_closed_loop_is_a_usage_mistake(capsys) -> None:
    """A closed loop starts its `concurrency` dialogues at once: --ramp-up ran as if not given (steady state from 0 s,
    every dialogue in the first second), silently."""
    assert cli.main(["--ramp-up", "5", "--concurrency", "4", "--port", "1", "--quiet"]) == 2
    assert capsys.readouterr().err == ("smsgw simulate: command line: ramp_up: applies to an open loop only (rate), and "
                                       "the load is a closed loop (concurrency given), which would ignore it\n")  # fmt: skip
    assert cli.main(["--ramp-up", "5", "--port", "1", "--quiet"]) == 2  # the default scenario's closed loop
    assert "the load is a closed loop (load.mode = \"closed\" in " in capsys.readouterr().err
    assert cli.main(["--ramp-up", "5", "--rate", "10", "--port", "1", "--quiet"]) == 2  # an open loop: it goes on
    assert "target.host/target.port: cannot connect to 127.0.0.1:1: " in capsys.readouterr().err


def test_a_ramp_up_for_a_closed_loop_in_a_scenario_file_is_refused_as_on_the_command_line(tmp_path: Path, capsys) -> None:
    """`ramp_up = 5` in a scenario file's closed loop (its mode's default) ran as if it were not there, silently, while
    --ramp-up with one is a usage mistake. (A file's open loop made a closed one by --concurrency drops its ramp_up.)"""
    closed = tmp_path / "closed.toml"
    closed.write_text("[load]\nramp_up = 5\nconcurrency = 4\n")
    assert cli.main(["--scenario", str(closed), "--port", "1", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"smsgw simulate: {closed}: load.ramp_up: applies to an open loop only (load.mode "
                                       "= \"open\", rate), and the load is a closed loop, which would ignore it\n")  # fmt: skip
    opened = tmp_path / "open.toml"
    opened.write_text('[load]\nmode = "open"\nrate = 10\nramp_up = 5\n')
    for closing in ([], ["--concurrency", "4"]):  # an open loop: it goes on
        assert cli.main(["--scenario", str(opened), *closing, "--port", "1", "--quiet"]) == 2
        assert "target.host/target.port: cannot connect to 127.0.0.1:1: " in capsys.readouterr().err


def test_a_target_that_never_answers_the_bind_says_what_timed_out_and_after_how_long(capsys) -> None:
    with socket.socket() as hung:  # a hung SMSC: the kernel completes the connections, nothing ever answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        argv = ["--port", str(hung.getsockname()[1]), "--subscribers", "4", "--binds", "1", "--count", "1",
                "--timeout", "1", "--quiet"]  # fmt: skip
        started = time.monotonic()
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    # The subscribers' bind is named (not an SP receiver's, bound at the same time), with the response timeout:
    # max(2 x --timeout, 5 s); the port is to blame, not the account.
    assert err == (f"smsgw simulate: command line: target.host/target.port: bind trx as 'handset' not answered within "
                   f"5 s: the other end, 127.0.0.1:{argv[1]}, did not answer as an SMPP server\n"), err
    assert 5 <= time.monotonic() - started < 15


def test_a_bind_refused_after_others_of_its_account_were_accepted_blames_the_bind_count(make_gateway, tmp_path: Path,
                                                                                         capsys) -> None:  # fmt: skip
    """The gateway takes one bind of 'handset' (max_binds 1; the fleet's target config allows 200): of --binds 2 the
    second is refused. Before, the message blamed the account ('target.system_id: bind trx as 'handset' refused:
    ESME_RBINDFAIL'), and an SMSC that closed or ignored the second bind was said not to be an SMPP server."""
    gw = make_gateway(accounts=[{"system_id": "handset", "max_binds": 1}])
    base = ["--port", str(gw.smpp_port), "--subscribers", "4", "--count", "1", "--quiet"]
    assert cli.main([*base, "--binds", "2"]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"smsgw simulate: command line: fleet\.binds: bind #[12] of 2 failed \(bind trx as 'handset' "
                        r"refused: ESME_RBINDFAIL\) while 1 of the 2 binds as 'handset' were accepted: the target takes "
                        r"fewer binds of the account than asked \(lower --binds to what the target allows, or raise its "
                        r"bind limit for the account\)\n", err), err  # fmt: skip
    scenario = tmp_path / "s.toml"
    scenario.write_text('[fleet]\nbinds = 2\nmode = "tx+rx"\n')
    assert cli.main([*base, "--scenario", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"smsgw simulate: {scenario}: fleet.binds: tx+rx pair #"), err
    assert err.endswith("the target takes fewer binds of the account than asked (lower fleet.binds to what the target "
                        "allows, or raise its bind limit for the account)\n"), err  # fmt: skip
    assert cli.main([*base, "--binds", "1"]) == 0  # (one bind it takes)


def test_a_port_that_is_no_smpp_servers_is_blamed_not_the_system_id(gateway, tmp_path: Path, capsys) -> None:
    """The gateway's HTTP port answers a bind with an HTTP error and closes: the message blamed the scenario file's
    target.system_id ('bind trx as 'handset' not answered: session closed'), a key neither set nor wrong."""
    base = ["--subscribers", "4", "--binds", "1", "--count", "1", "--quiet"]
    assert cli.main([*base, "--port", str(gateway.http_port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smsgw simulate: command line: target.host/target.port: bind trx as 'handset' not answered: "), err
    assert err.endswith(f": the other end, 127.0.0.1:{gateway.http_port}, did not answer as an SMPP server\n"), err
    scenario = tmp_path / "s.toml"
    scenario.write_text(f"[target]\nport = {gateway.http_port}\n")
    assert cli.main([*base, "--scenario", str(scenario)]) == 2
    assert capsys.readouterr().err.startswith(f"smsgw simulate: {scenario}: target.host/target.port: bind trx as ")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_binds_wait_for_their_answers_stops_at_once(sig: signal.Signals) -> None:
    """A hung SMSC and binds given 30 s: the signal was ignored until the binds timed out (a third press: a
    traceback and exit 1)."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        run = simulate(hung.getsockname()[1], "--count", "1", "--timeout", "15", "--quiet")
        connection, _ = hung.accept()
        with connection:
            assert connection.recv(16)  # a bind, waiting for its answer
            run.send_signal(sig)
            signalled = time.monotonic()
            out, err = run.communicate(timeout=30)
    assert run.returncode == 130 and time.monotonic() - signalled < 5, (out, err)
    assert err == "smsgw simulate: interrupted\n" and out == ""


def run_simulate(*flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "gateway", "simulate", "--subscribers", "20", "--binds", "1", "--count", "20",
            "--timeout", "2", "--quiet", *NO_LAG_VERDICT, *flags]  # fmt: skip
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def tls_gateway(make_gateway, tls_files) -> GatewayController:
    cert, key = tls_files
    return make_gateway(tls={"enabled": True, "port": 0, "certfile": str(cert), "keyfile": str(key)})


def test_ca_or_insecure_without_tls_is_a_usage_error(tls_gateway, tls_files) -> None:
    """They were ignored: the fleet spoke plain SMPP to the TLS port, and the error then blamed target.system_id."""
    cert, _key = tls_files
    port = str(tls_gateway.gateway.tls_port)
    for flag in (["--ca", str(cert)], ["--insecure"]):
        done = run_simulate("--port", port, *flag)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"smsgw simulate: {flag[0]}: applies to TLS only, and TLS is off: add --tls (or "
                                      "tls = true in the [target] of "), done.stderr  # fmt: skip
        assert "target.system_id" not in done.stderr and done.stdout == ""  # refused before any connection


def test_ca_and_insecure_together_are_a_usage_error(tls_files) -> None:
    """One names whom to trust, the other trusts anyone: both were accepted, and --insecure quietly won."""
    cert, _key = tls_files
    done = run_simulate("--tls", "--ca", str(cert), "--insecure")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr, done.stderr


def test_ca_applies_when_the_scenario_turns_tls_on(tls_gateway, tls_files, tmp_path: Path) -> None:
    cert, _key = tls_files
    scenario = tmp_path / "tls.toml"  # (the test certificate names no host; its chain is still verified)
    scenario.write_text(f"[target]\nport = {tls_gateway.gateway.tls_port}\ntls = true\ncheck_hostname = false\n")
    done = run_simulate("--scenario", str(scenario), "--ca", str(cert))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout


def test_a_certificate_refused_after_tls_from_a_flag_names_the_flags(tls_gateway) -> None:
    """It blamed `default.toml: target.ca` and suggested `target.verify = false`, keys the user never wrote."""
    port = tls_gateway.gateway.tls_port
    done = run_simulate("--port", str(port), "--tls")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"smsgw simulate: command line: target.ca: TLS to 127.0.0.1:{port} failed: "), done.stderr
    assert "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert done.stderr.rstrip().endswith("(--ca FILE names the CA that signed the server's certificate; --insecure "
                                         "accepts any)"), done.stderr  # fmt: skip
    assert "default.toml" not in done.stderr and "target.verify" not in done.stderr


def test_insecure_accepts_the_gateways_self_signed_certificate(tls_gateway) -> None:
    """As that refusal advises (README: "--insecure accepts any"): the test certificate is signed by no CA given."""
    done = run_simulate("--port", str(tls_gateway.gateway.tls_port), "--tls", "--insecure")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout


def test_tls_to_a_plain_smpp_port_says_the_server_did_not_answer_tls(gateway, capsys) -> None:
    """It blamed target.ca and advised '--insecure accepts any', also to a run given --insecure."""
    port = gateway.smpp_port
    for flags in (["--tls", "--insecure"], ["--tls"]):
        assert cli.main(["--port", str(port), *flags, "--count", "1", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"smsgw simulate: command line: target.tls/target.port: TLS to 127.0.0.1:{port} failed: "), err
        assert err.endswith(": the server did not answer TLS (a plain SMPP port?)\n") and "--ca" not in err, err


@contextlib.contextmanager
def plain_peer(ends: str):
    """A TCP server that reads what comes on each connection (a TLS ClientHello) and then `ends` it: "reset" (RST),
    "eof" (a close) or "waits" (holds it, answering nothing, until the test is over). Yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # the test is over
                return
            connection.recv(4096)
            if ends == "reset":
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if ends == "waits":
                held.append(connection)
            else:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        server.shutdown(socket.SHUT_RDWR)  # (accept() returns)
        server.close()
        thread.join(5)
        for connection in held:
            connection.close()


@pytest.mark.parametrize("ends", ["reset", "eof"])
def test_tls_to_a_peer_that_closes_the_handshake_says_the_server_did_not_answer_tls(ends: str, capsys) -> None:
    """A plain SMPP server (node-smpp) that resets or closes on a ClientHello: the message was `target.host/target.port:
    cannot connect to 127.0.0.1:PORT (TLS): ` with nothing after the colon (an empty ConnectionResetError)."""
    with plain_peer(ends) as port:
        assert cli.main(["--port", str(port), "--tls", "--insecure", "--count", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    reason = "[Errno 104] Connection reset by peer" if ends == "reset" else "ConnectionResetError"
    assert err == (f"smsgw simulate: command line: target.tls/target.port: TLS to 127.0.0.1:{port} failed: {reason}: "
                   "the server did not answer TLS (a plain SMPP port?)\n"), err


async def test_a_tls_handshake_not_answered_is_told_from_no_connection() -> None:
    """A plain server that waits for a bind gives a ClientHello no answer: that was `cannot connect ...: no connection
    within 10 s`, as for a host that is not there. The TCP connection was made: the handshake failed."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with plain_peer("waits") as port, pytest.raises(HandshakeFailed, match=r"^no answer to the handshake within 0.5 s$"):
        await Esme.connect("127.0.0.1", port, ssl=context, timeout=0.5)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):  # no TCP connection: no handshake to blame
        await Esme.connect("127.0.0.1", port, ssl=context, timeout=0.5)
