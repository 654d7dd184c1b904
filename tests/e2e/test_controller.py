"""GatewayController, the gateway inside a user's own tests (README "Use it inside your own tests"): what a start
that fails, a second start and nested configs leave behind."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from gateway.app import GatewayController
from gateway.clock import SimulatedClock
from gateway.config import DEFAULT_CONFIG, ConfigError, load_config
from simulator.testing import FleetController, gateway_config
from tests.gateway_process import children_of
from tests.polling import eventually
from tests.smpp_handset import ESME_ROK, Handset, text

A = "8613800000001"  # account handset
B = "8613700000001"  # account handset2


def test_a_start_that_fails_gives_back_the_database_its_writer_process_and_ports(tmp_path: Path) -> None:
    """It kept them all: the same database could not be opened again ("in use by another smsgw", this process),
    its writer process lived on, and stop() waited 30 s and raised TimeoutError."""
    db = tmp_path / "gw.db"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        failed = GatewayController(load_config(), db_path=db, http_port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            failed.start()
    assert children_of(os.getpid()) == []  # its writer process is gone
    failed.stop()  # nothing to stop
    with GatewayController(load_config(), db_path=db) as again:  # the database is free
        phone = Handset(again.smpp_port, A)
        phone.bind("trx", "handset")
        phone.close()


def test_a_second_start_of_a_running_gateway_is_refused_and_leaves_it_running(tmp_path: Path) -> None:
    """The second start took the controller over (another gateway, which failed on the database lock): the first
    one ran on, out of reach of stop()."""
    controller = GatewayController(load_config(), db_path=tmp_path / "gw.db")
    with controller:
        port = controller.smpp_port
        with pytest.raises(RuntimeError, match="running: stop"):
            controller.start()
        phone = Handset(controller.smpp_port, A)
        phone.bind("trx", "handset")
        phone.close()
        assert controller.smpp_port == port
    assert children_of(os.getpid()) == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_ports_and_call_before_the_start_and_after_the_stop_say_the_gateway_is_not_running(tmp_path: Path) -> None:
    """Before the start they raised AssertionError(''), and call() left its coroutine never awaited; after the stop
    smpp_port raised IndexError, http_port was 0 and call() said "Event loop is closed"."""
    controller = GatewayController(load_config(), db_path=tmp_path / "gw.db")
    for when in ("before the start", "after the stop"):
        for port in ("smpp_port", "http_port"):
            with pytest.raises(RuntimeError, match="not running: start"):
                getattr(controller, port)
        never_run = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="not running: start"):
            controller.call(never_run)
        assert inspect.getcoroutinestate(never_run) == "CORO_CLOSED", when
        if when == "before the start":
            with controller:
                smpp_port, http_port = controller.smpp_port, controller.http_port
    # The gateway's own ports stay the ones it listened on (its listeners' sockets are gone).
    assert (controller.gateway.smpp_port, controller.gateway.http_port) == (smpp_port, http_port)


def test_call_from_the_gateways_own_loop_says_to_await_instead(gateway: GatewayController) -> None:
    """It blocked the loop it waited for until its timeout, then raised TimeoutError('')."""
    inner = asyncio.sleep(0)

    async def calling_back() -> None:
        gateway.call(inner, timeout=3)

    with pytest.raises(RuntimeError, match="own event loop would block it: await the coroutine instead"):
        gateway.call(calling_back(), timeout=5)
    assert inspect.getcoroutinestate(inner) == "CORO_CLOSED"


def test_stop_from_the_gateways_own_loop_is_refused_at_once_and_the_gateway_serves_on(gateway: GatewayController) -> None:
    """As call(): a stop() there would wait on the loop it blocks, for its drain and answers (a minute and more)."""

    async def stopping() -> None:
        gateway.stop()

    with pytest.raises(RuntimeError, match="own event loop would block it"):
        gateway.call(stopping(), timeout=5)
    assert gateway.call(asyncio.sleep(0, "after"), timeout=5) == "after"


def test_a_call_that_times_out_is_cancelled_and_named(gateway: GatewayController) -> None:
    """It raised TimeoutError('') and the coroutine ran on to its end: a Services call that timed out still committed
    and sent, and a test that tried it again sent twice."""
    cancelled = threading.Event()

    async def slow_service() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError, match=r"slow_service\(\) did not finish within 0.2 s on the gateway's loop: cancelled"):
        gateway.call(slow_service(), timeout=0.2)
    assert cancelled.wait(5)
    assert gateway.call(asyncio.sleep(0, "after"), timeout=5) == "after"  # (the loop serves on)


def test_a_call_still_running_when_the_gateway_stops_ends_with_it(make_gateway) -> None:
    """Its caller waited out the whole timeout after the stop, then was told the coroutine had been cancelled while it
    was left pending in a closed loop ("Task was destroyed but it is pending!")."""
    gw = make_gateway()
    started, outcome = threading.Event(), []

    async def slow_service() -> None:
        started.set()
        await asyncio.sleep(60)

    def caller() -> None:
        try:
            gw.call(slow_service(), timeout=60)
        except RuntimeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    assert gw.stop() is True
    thread.join(5)
    [said] = outcome
    assert said.startswith("the gateway stopped before ") and said.endswith("slow_service() finished: cancelled")


def test_a_task_a_call_starts_as_the_stop_cancels_it_is_cancelled_too(make_gateway) -> None:
    """A coroutine cancelled at the stop may begin another task as it ends (in a `finally`): that task is cancelled
    too, not left pending in the closed loop ("Task was destroyed but it is pending!"), its own cleanup never run."""
    gw = make_gateway()
    started, cleaned_up = threading.Event(), threading.Event()

    async def cleanup() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cleaned_up.set()
            raise

    async def slow_service() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            asyncio.ensure_future(cleanup())  # not awaited: begun as it ends

    def caller() -> None:
        with contextlib.suppress(RuntimeError):  # (the gateway stopped before slow_service() finished)
            gw.call(slow_service(), timeout=60)

    thread = threading.Thread(target=caller)
    thread.start()
    assert started.wait(5)
    assert gw.stop() is True
    thread.join(5)
    assert cleaned_up.is_set()


def test_calls_made_while_the_gateway_stops_end_at_once(make_gateway) -> None:
    """A call() handed to the loop after stop() had cancelled what was left there waited out its whole timeout, then
    said TimeoutError (or 'Event loop is closed', its coroutine never awaited)."""
    gw = make_gateway()
    outcomes: list[str] = []
    stopping = threading.Event()

    def caller() -> None:
        while True:
            began = time.monotonic()
            try:
                gw.call(asyncio.sleep(0), timeout=30)
            except RuntimeError as exc:
                outcomes.append(f"{exc} after {time.monotonic() - began:.0f} s")
                return
            if stopping.is_set():
                outcomes.append("ok")

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    stopping.set()
    assert gw.stop() is True
    for thread in callers:
        thread.join(10)
    assert {o for o in outcomes if o != "ok"} == {"this GatewayController's gateway is not running: start() it first after 0 s"}


def test_stop_says_whether_every_final_status_was_committed(make_gateway, handset, tmp_path: Path) -> None:
    """It returned None either way: a test could not tell that a delivered MT goes out again at the next start (as
    `smsgw serve` tells by its exit status 1)."""
    db = tmp_path / "gw.db"
    gw = make_gateway(db_path=db, gateway={"drain_timeout": 1})
    a, b = handset(A, gw=gw), handset(B, gw=gw)
    b.answering = False
    assert a.submit(B, "delivered, not committed").status == ESME_ROK
    assert text(b.expect()) == "delivered, not committed"
    db.unlink()  # the store cannot commit from now on, for good
    b.answer_held()
    assert eventually(lambda: gw.gateway.delivery.finals_not_committed)
    a.close()
    b.close()
    assert gw.stop() is False
    assert gw.stop() is True  # (nothing to stop)
    assert make_gateway(db_path=tmp_path / "other.db").stop() is True


def test_services_and_clock_are_the_running_gateways(make_gateway) -> None:
    clock = SimulatedClock(1_800_000_000)
    gw = make_gateway(clock=clock)
    assert gw.clock is clock and gw.services is gw.gateway.services
    gw.stop()
    for reached in ("services", "clock"):
        with pytest.raises(RuntimeError, match="not running: start"):
            getattr(gw, reached)


def test_gateway_config_built_on_another_keeps_its_overrides() -> None:
    base = gateway_config(services={"survey_sample_rate": 1.0})
    config = gateway_config(base, gateway={"job_check_interval": 1})
    assert (config.services.survey_sample_rate, config.gateway.job_check_interval) == (1.0, 1)
    assert config.source == base.source  # (its messages.<lang>.toml still apply)


def test_a_mistake_in_the_overrides_names_them_not_the_file_they_apply_to(tmp_path: Path) -> None:
    """FleetController(config={"gateway": {"idle_timeout": 3}}) was refused as ".../config/default.toml:
    gateway.idle_timeout: ...", a file the user never edited; so was a config built for a GatewayController."""
    with pytest.raises(ConfigError) as refused:
        FleetController(config={"gateway": {"enquire_link_interval": 1, "idle_timeout": 3}}, db_path=tmp_path / "gw.db")
    assert str(refused.value).startswith(f"the overrides of {DEFAULT_CONFIG}: gateway.idle_timeout: expected "), refused.value
    site = tmp_path / "site.toml"
    site.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        gateway_config(load_config(site), services={"survey_sample_rate": 2.0})
    assert str(refused.value) == f"the overrides of {site}: services.survey_sample_rate: expected a share between 0 and 1"
    broken = tmp_path / "broken.toml"
    broken.write_text(site.read_text(encoding="utf-8").replace("window = 100", "window = 0"), encoding="utf-8")
    with pytest.raises(ConfigError) as refused:  # a mistake of the file's own is the file's, overrides or not
        gateway_config(broken, services={"survey_sample_rate": 0.5})
    assert str(refused.value).startswith(f"{broken}: gateway.window: "), refused.value
    broken.write_text("[gateway\nwindow = 100\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:  # read with read_toml: no TOMLDecodeError
        gateway_config(broken, services={"survey_sample_rate": 0.5})
    assert str(refused.value).startswith(f"{broken}: -: not valid TOML: "), refused.value
