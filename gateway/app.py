"""The gateway assembled: store, accounts, router, delivery, short codes, listeners.

`Gateway` runs inside an event loop you own (`await gw.start()` / `await
gw.stop()`); `GatewayController` runs one in a background thread so a test
suite (ours, or a QA team's) can use a real gateway in three lines:

    with GatewayController(load_config(), db_path=tmp / "gw.db") as gw:
        client.connect("127.0.0.1", gw.smpp_port)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import socket
import sqlite3
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from handlers.base import Catalogue, ServiceContext
from handlers.registry import OPERATOR_SERVICES, make_handler

from . import open_files
from .accounts import Accounts
from .amend import Amendments
from .clock import Clock, SystemClock
from .config import Config, ConfigError, messages_files
from .delivery import Delivery
from .gctune import restore_defaults, tune_for_serving
from .guards import Guards
from .http.app import HTTP_STOP_GRACE, make_app
from .ids import MessageIds, ShortIds
from .intake import Intake
from .log_budget import LogBudgets
from .logs import get_logger
from .messages import subscriber_of
from .mo import MoProcessor, ShortCode
from .outbox import Outbox
from .retention import Retention
from .router import Router
from .serial import SerialLocks
from .server import COMPLAINT_LEVELS, SmppConnection, log_complaints
from .services import Services
from .store.base import StoreOpenError
from .store.cache import RecordCache
from .store.effects import Effect
from .store.records import Message
from .store.sqlite import SqliteStore
from .templates import Templates
from .tls import ACCEPT_BACKLOG, TlsListener, server_context

log = get_logger("gateway")
TICK_SECONDS = 0.5
CROWDED_LOG_INTERVAL = 10.0  # seconds between lines about connections near the open-file limit


# A listener on every address of its family shares its port with none of that family (asyncio's IPv6 listeners are
# IPV6_V6ONLY: "::" and "0.0.0.0" on one port do not clash).
_ANY_HOST = frozenset({"0.0.0.0", "::"})


def _bound_port(listener: asyncio.Server | TlsListener) -> int:
    return listener.sockets[0].getsockname()[1]


NAMED_AT_MOST = 20  # the messages a line about those left at the stop names by id (its `count` says how many)


def _log_mos_left(mos: list[Message]) -> None:
    """The MOs still in hand at the end of drain_timeout, handled at the next start: counted, and the first
    NAMED_AT_MOST named, with their msisdns (in the same order) and accounts, so late replies can be explained."""
    named = mos[:NAMED_AT_MOST]
    log.warning("MOs still being handled at the end of drain_timeout; the next start handles them", count=len(mos),
                message_ids=[m.id for m in named], msisdns=[subscriber_of(m) for m in named],
                accounts=sorted({m.account for m in mos}))  # fmt: skip


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        db_path: str | Path | None = None,
        smpp_port: int | None = None,
        http_port: int | None = None,
        host: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        settings = config.gateway
        self.config = config
        self.clock = clock or SystemClock()
        self.db_path = str(db_path or settings.database)
        # (host "" is every interface, as the config's is: `host or` took the config's hosts instead)
        self.host = settings.smpp_host if host is None else host
        self.http_host = settings.http_host if host is None else host
        self._smpp_port = settings.smpp_port if smpp_port is None else smpp_port
        self._http_port = settings.http_port if http_port is None else http_port
        self._tls_port: int | None = None  # (bound by the start when [tls] is enabled)
        self.plan = config.number_plan()
        self.accounts = Accounts(config.accounts)
        self.ids = MessageIds()
        self.short_ids = ShortIds()  # for the binds of SMPP 3.3; goes on from the store's last once it opens
        self.store = SqliteStore(self.db_path, dedup_window=settings.dedup_window, clock=self.clock.now)
        self.retention = Retention(self.store, self.clock, settings.message_retention, settings.dedup_window,
                                   self.short_ids.last)  # fmt: skip
        self.router = Router(self.accounts)
        self.catalogue = Catalogue(config.catalogue)
        handlers = self._handler_names(config)
        self.guards = Guards(
            self.catalogue, self.router.sp_accounts,
            operator_codes=self._operator_codes(config, handlers),
            accounts=(a.system_id for a in self.accounts), plan=self.plan,
        )  # fmt: skip
        self.delivery = Delivery(self.router, self.store, self.clock, self.ids, settings, undeliverable=self.guards.undeliverable)
        self.outbox = Outbox(self.delivery, self.ids, settings.default_validity)
        self.locks = SerialLocks()
        self.reply_texts = messages_files(config)  # language -> the file its replies come from (logged at start)
        self.records = RecordCache(self.store)  # what handlers read; every commit of effects passes through observe()
        self.service_context = ServiceContext(
            store=self.records,
            clock=self.clock,
            templates=Templates.load(self.reply_texts, config.services.language, settings=config.services, plan=self.plan),
            settings=config.services,
            catalogue=self.catalogue,
            ids=self.ids,
            plan=self.plan,
        )
        self.services = Services(self.service_context, self.store, self.outbox, self.observe, self.clock, self.locks)
        # Lines about a peer's misbehaviour (refused PDUs, deliver_sm unanswered, long MOs never completed), by peer
        # host and account (SmppConnection.may_log, MoProcessor._give_up)
        self.complaints = LogBudgets(levels=COMPLAINT_LEVELS)
        self.mo = MoProcessor(
            self._short_codes(config, handlers),
            self.store,
            self.outbox,
            self.clock,
            reassembly_timeout=settings.reassembly_timeout,
            complaints=self.complaints,
            max_incomplete_per_subscriber=settings.max_incomplete_per_subscriber,
            retry_backoff=settings.mo_retry_backoff,
            records=self.records,
            observe=self.guards.observe,
            after_dialogue=self.services.after_dialogue,
            locks=self.locks,
        )
        self.amendments = Amendments(
            store=self.store, delivery=self.delivery, plan=self.plan, clock=self.clock, ids=self.ids, catalogue=self.catalogue
        )
        self.intake = Intake(
            settings=settings, plan=self.plan, store=self.store, router=self.router, delivery=self.delivery,
            mo=self.mo, guards=self.guards, clock=self.clock, ids=self.ids, short_ids=self.short_ids, amendments=self.amendments,
            spawn=self.spawn, catalogue=self.catalogue,
        )  # fmt: skip
        self.connections: set[SmppConnection] = set()
        self.connections_allowed = open_files.connections_allowed()  # (serve_forever raised the limit before this)
        self._crowded_logged_at = -math.inf  # `connection_opened`
        self.ready = False
        self._stopping = False  # from the start of `stop`: a connection opened then is drained at once
        self._servers: list[asyncio.Server | TlsListener] = []  # SMPP, then TLS if enabled
        self._tls: TlsListener | None = None
        self._http: web.AppRunner | None = None
        self._http_server: asyncio.Server | None = None  # the HTTP port: open until the gateway has stopped
        self._tick_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._sweep_failed_in_outage = False  # a sweep failed since the store last committed, and was logged (`_sweep`)

    @property
    def connections_open(self) -> int:
        """SMPP and HTTP ones, and those to the TLS port in their handshake: each holds a file descriptor."""
        http = self._http.server if self._http is not None else None
        handshakes = len(self._tls.handshakes) if self._tls is not None else 0
        return len(self.connections) + handshakes + (len(http.connections) if http is not None else 0)

    def connection_opened(self, connection: SmppConnection) -> None:
        self.connections.add(connection)
        self.count_open(self.connections_open)
        if self._stopping:  # (one to the TLS port accepted before the stop, its handshake done since)
            connection.drain()

    def _http_connection(self) -> asyncio.Protocol:
        """aiohttp's handler for a connection to the HTTP port (the protocol factory its listener calls), counted
        with the connections open (it is not yet among aiohttp's own)."""
        self.count_open(self.connections_open + 1)
        assert self._http is not None and self._http.server is not None  # (made before the port is taken)
        return self._http.server()

    def count_open(self, count: int) -> None:
        """`count` connections are open: near the limit on open files, a line (at most every 10 s)."""
        if count >= self.connections_allowed:
            now = asyncio.get_running_loop().time()
            if now - self._crowded_logged_at >= CROWDED_LOG_INTERVAL:
                self._crowded_logged_at = now
                log.warning("connections near the open-file limit: new ones are refused at it, without a word (raise "
                            "`ulimit -n`)", connections=count, allowed=self.connections_allowed)  # fmt: skip

    def observe(self, effects: list[Effect]) -> None:
        """Committed effects: the record cache and the submission guards follow them."""
        self.records.committed(effects)
        self.guards.observe(effects)

    def _handler_names(self, config: Config) -> dict[str, tuple[str, dict, str]]:
        """code -> (handler name, options, config key): the services' own codes and every catalogue service code,
        then [[short_codes]] (which win)."""
        services = config.services
        names: dict[str, tuple[str, dict, str]] = {
            services.operator: ("customer_service", {}, "services.operator"),
            services.spam_report: ("spam_report", {}, "services.spam_report"),
            services.rating: ("rating", {}, "services.rating"),
        }
        for code in self.catalogue.service_codes():
            names[code] = ("order", {}, "catalogue.service_code")
        for i, entry in enumerate(config.short_codes):
            names[entry.code] = (entry.handler, dict(entry.options), f"short_codes[{i}].handler")
        return names

    @staticmethod
    def _operator_codes(config: Config, names: dict[str, tuple[str, dict, str]]) -> set[str]:
        """The codes a number blocked network-wide may still text: the [services] codes, whatever handler a
        [[short_codes]] entry runs on them (an operator's own extension of customer service on 10086 is still
        10086), and every code running one of the operator's services."""
        services = config.services
        running = {code for code, (name, _options, _key) in names.items() if name in OPERATOR_SERVICES}
        return running | {services.operator, services.spam_report, services.rating}

    def _short_codes(self, config: Config, names: dict[str, tuple[str, dict, str]]) -> dict[str, ShortCode]:
        codes = {}
        for code, (name, options, key) in names.items():
            try:
                handler = make_handler(name)
            except KeyError as exc:
                raise ConfigError(config.source, key, str(exc.args[0])) from None
            codes[code] = ShortCode(code, handler, replace(self.service_context, options=options))
        return codes

    # ------------------------------------------------------------ ports
    # Each the port asked for until the start binds it, then the one bound (port 0: the one the system chose), also
    # once the gateway has stopped and its listeners' sockets are gone.
    @property
    def smpp_port(self) -> int:
        return self._smpp_port

    @property
    def tls_port(self) -> int | None:
        return self._tls_port

    @property
    def http_port(self) -> int:
        return self._http_port

    # -------------------------------------------------------- lifecycle
    def _make_database_directory(self) -> None:
        """The directory the database goes in, made if missing; refused naming what is in the way (a file where a
        directory of its path goes read "[Errno 17] File exists: '<that file>'", and no database named)."""
        directory = Path(self.db_path).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocking = f"{exc.filename!r} is a file, not a directory" if isinstance(exc, FileExistsError) else exc
            raise StoreOpenError(f"cannot make the directory of the database {self.db_path!r}: {blocking}") from exc

    async def start(self) -> None:
        tls = self.config.tls
        # Before the store opens and the SMPP port listens: a certificate or key that will not load fails the
        # start with nothing listening meanwhile.
        tls_context = server_context(tls, self.config.source) if tls.enabled else None
        await self._check_hosts_resolve()
        self._make_database_directory()
        await self.store.open()
        try:
            self.ids.continue_after(await self.store.last_id_made())
            self.short_ids.continue_after(await self.store.last_short_id())
            await self.guards.load(self.store)
            self.guards.on_tightened = self.delivery.refuse_waiting  # from now (replayed MOs too), not for those loaded
            await self.delivery.restore(self.guards.stops)  # undelivered MTs stay in the store until their binds appear
            replacements = await self.amendments.complete_replacements()  # killed before they were: none goes out
            await self._readdress_waiting()
            blocked = await self.services.block_reported_over_threshold()  # before a number over it can send again
            unprocessed = await self.store.unprocessed_mos()
        except sqlite3.DatabaseError as exc:  # a damaged file: its header opened, its pages do not read
            raise StoreOpenError(f"cannot read SQLite store at {self.db_path!r}: {exc}") from exc
        await self._take_ports(tls_context)
        await self.mo.replay(unprocessed)
        self.spawn(self._resume_sampled_surveys())
        for name, server in self._listeners():  # the HTTP port last: /ready once the SMPP ports listen
            await server.start_serving()
            for sock in server.sockets:  # (uvloop's start_serving does not say when listen() failed)
                if sock is None or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    raise OSError(f"cannot listen on the {name} port")
        self._tick_task = asyncio.get_running_loop().create_task(self._tick())
        self.ready = True
        self.store.log_schema()
        log.info("reply texts", **{language: str(path) for language, path in self.reply_texts.items()})
        if blocked:
            log.warning("numbers already over the spam block threshold (changed since their reports) blocked "
                        "network-wide at start", count=len(blocked), numbers=blocked[:20])  # fmt: skip
        for account, prefix, other, other_prefix in self.accounts.overlapping_numbers():
            log.warning("accounts share subscribers: each may send from, and is sent the MTs of, the other's",
                        account=account, numbers=prefix, other_account=other, other_numbers=other_prefix)  # fmt: skip
        log.info(
            "smsgw ready",
            smpp_port=self.smpp_port,
            tls_port=self.tls_port,
            http_port=self.http_port,
            database=self.db_path,
            mt_waiting=sum(self.delivery.queued.values()),
            mo_replayed=len(unprocessed),
            replacements_completed=replacements,
            connections_allowed=self.connections_allowed,
        )

    async def _readdress_waiting(self) -> None:
        """MTs addressed to an account by name that is no longer configured (renamed or removed since): its SP notices
        go to the SP the catalogue names for their service code now, behind them those made from now on (SP notices
        of a line in the order they were made); what is left (receipts, notices on a code no service has now) waits
        for that account to be configured again, until its validity ends: a warning names each, with the count."""
        left: dict[str, int] = {}
        for (account, code), count in (await self.store.addressed_counts()).items():
            if self.accounts.get(account) is not None:
                continue
            services = self.catalogue.on_code(code) if code is not None else []
            if services:
                await self.store.readdress_notices(account, code, services[0].sp)
                log.warning("SP notices to an account no longer configured go to the SP of their service code now",
                            account=account, service_code=code, sp=services[0].sp, count=count)  # fmt: skip
            else:
                left[account] = left.get(account, 0) + count
        for account, count in left.items():
            log.warning("MTs wait for an account no longer configured: they go out only if it is configured again",
                        account=account, count=count)  # fmt: skip

    async def _take_ports(self, tls_context: ssl.SSLContext | None) -> None:
        """Bind the SMPP (and TLS) and HTTP ports, not listening yet (`start` opens them once the gateway is ready):
        a port in use fails the start before the gateway has handled anything (replayed an MO, logged a line)."""
        loop = asyncio.get_running_loop()
        self._servers.append(await loop.create_server(
            lambda: SmppConnection(self), self.host, self._smpp_port, reuse_address=True, backlog=ACCEPT_BACKLOG,
            start_serving=False))
        if tls_context is not None:  # (its own accept loop: TlsListener)
            self._tls = await TlsListener.bind(self, tls_context, self.host, self.config.tls.port)
            self._servers.append(self._tls)
        self._http = web.AppRunner(make_app(self), access_log=None, shutdown_timeout=HTTP_STOP_GRACE)
        await self._http.setup()
        self._http_server = await loop.create_server(
            self._http_connection, self.http_host, self._http_port, reuse_address=True, backlog=ACCEPT_BACKLOG,
            start_serving=False)
        self._refuse_shared_ports()
        self._smpp_port, self._http_port = _bound_port(self._servers[0]), _bound_port(self._http_server)
        self._tls_port = _bound_port(self._tls) if self._tls is not None else None

    def _listeners(self) -> list[tuple[str, asyncio.Server | TlsListener]]:
        named = [("SMPP", self._servers[0]), *(("TLS", server) for server in self._servers[1:2])]
        return named + ([("HTTP", self._http_server)] if self._http_server is not None else [])

    def _refuse_shared_ports(self) -> None:
        """Two of the listeners given one port (--smpp-port 2776 with TLS on its default 2776): bound but not
        listening (start_serving=False, SO_REUSEADDR), their sockets do not clash until the second listens, and
        uvloop's start_serving says nothing then: the start went on to a gateway without that port."""
        taken: dict[tuple[int, int], list[tuple[str, str]]] = {}  # (address family, port) -> (listener, host)
        for name, server in self._listeners():
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                for other, other_host in taken.get((sock.family, port), ()):
                    if host == other_host or _ANY_HOST.intersection((host, other_host)):
                        raise OSError(f"the {other} and {name} listeners were both given port {port} "
                                      f"({other_host} and {host})")  # fmt: skip
                taken.setdefault((sock.family, port), []).append((name, host))

    async def _check_hosts_resolve(self) -> None:
        """The addresses to listen on, looked up before anything opens: a name that does not resolve failed the
        start later with "[Errno -2] Name or service not known", naming no host."""
        loop = asyncio.get_running_loop()
        for host in dict.fromkeys((self.host, self.http_host)):
            if not host:  # "" is every interface to create_server and TCPSite, as None is; there is no name to look up
                continue
            try:
                await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            except socket.gaierror as exc:
                raise OSError(f"cannot listen on {host!r}: {exc.strerror}") from None

    async def stop(self) -> bool:
        """Stop listening; on every bind refuse new submissions and binds and send no new deliver_sm (so on a
        connection to the TLS port whose handshake is done meanwhile); give what is in flight up to drain_timeout
        (the answers to deliver_sm and to submissions, the handling of acknowledged MOs); then close the connections
        still in their handshake and unbind every bind, reading what comes until its unbind_resp (up to
        response_timeout); commit everything.

        Nothing acknowledged is lost: an MT not delivered, an MO not handled stays in the store for the next
        start. Nothing answered is sent again: every answer that arrives before the link closes is taken, and its
        MT's final status committed, up to drain_timeout while the store cannot commit. False if one was not:
        that MT goes out again at the next start (an error line says how many)."""
        started, self.ready = self.ready, False
        self._stopping = True
        for server in self._servers:
            server.close()
        settings = self.config.gateway
        if started:  # (a start that failed stops too: it never took traffic, and says so in its one line)
            log.info("smsgw stopping: new submissions refused, draining", drain_timeout=settings.drain_timeout,
                     binds=sum(1 for c in self.connections if c.account is not None))  # (as /ready counts them)
        loop = asyncio.get_running_loop()
        drain_until = loop.time() + settings.drain_timeout
        for connection in list(self.connections):
            connection.drain()
        # Handled or not, an acknowledged MO is stored: one not handled by then is handled at the next start.
        if settings.drain_timeout > 0:  # (wait_for with no time at all reports a timeout even with nothing to wait for)
            try:
                await asyncio.wait_for(self.mo.drain(), settings.drain_timeout)
            except TimeoutError:
                _log_mos_left(self.mo.in_hand())
        self.mo.stop()
        await self._until(lambda: not any(c.busy for c in self.connections), drain_until)
        if self._tls is not None:  # (no bind to unbind: closed, as the connections not bound are)
            self._tls.cancel_handshakes()
        for connection in list(self.connections):
            connection.unbind()
        # A deadline of its own: the peer answers the unbind after what it sent before it, which is read meanwhile.
        await self._until(lambda: not self.connections, loop.time() + settings.response_timeout)
        for connection in list(self.connections):
            connection.close()
        if self._tick_task is not None:
            self._tick_task.cancel()
        log_complaints(self.complaints, final=True)
        # What failed to commit is written again meanwhile; a delivery acknowledged late, read back, is written now.
        await self._until(lambda: self.delivery.settled, max(drain_until, loop.time() + 1.0))
        self.delivery.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._http_server is not None:
            self._http_server.close()
        if self._http is not None:
            await self._http.cleanup()
        await self.store.close()
        lost = self.delivery.finals_not_committed
        if lost and self.store.database_gone:
            log.error("smsgw stopped with final statuses not committed: those MTs go out again at the next start on "
                      "the database file gone, once it is moved back to its path", database=self.db_path,
                      count=len(lost), message_ids=sorted(lost)[:NAMED_AT_MOST])  # fmt: skip
        elif lost:
            log.error("smsgw stopped with final statuses not committed: those MTs go out again at the next start",
                      count=len(lost), message_ids=sorted(lost)[:NAMED_AT_MOST])  # fmt: skip
        elif started:
            log.info("smsgw stopped")
        return not lost

    @staticmethod
    async def _until(condition: Callable[[], bool], deadline: float) -> None:
        """Wait until `condition` holds or the loop's clock reaches `deadline` (polled: binds change on their own)."""
        loop = asyncio.get_running_loop()
        while not condition() and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _resume_sampled_surveys(self) -> None:
        try:
            resumed = await self.services.resume_sampled_surveys()
        except Exception:
            log.exception("deciding the surveys sampled before the last stop failed")  # (their marks stay: next start)
            return
        if resumed:
            log.info("surveys sampled before the last stop decided", count=resumed)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_job_check = loop.time()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            # Each step on its own: a fault in one bind's tick must not stop the other binds' timeouts, the
            # store-and-forward sweep or the jobs (a fault that repeats would stop them for good).
            for connection in list(self.connections):
                try:
                    connection.tick()
                except Exception:
                    log.exception("bind tick failed", peer=connection.peer, account=connection.system_id)
            log_complaints(self.complaints)
            await self._sweep()
            try:
                self.mo.outage_counts()
                self.mo.expire_partial()
            except Exception:
                log.exception("expiring incomplete long MOs failed")
            if loop.time() >= next_job_check:
                next_job_check = loop.time() + self.config.gateway.job_check_interval
                self.spawn(self.run_due_jobs())
                self.spawn(self.prune())  # (each part a no-op while the previous one still works off a backlog)

    async def _sweep(self) -> None:
        """The store-and-forward sweep (Delivery.sweep), tried again at every tick whatever failed. A failure is an
        error line with its traceback; while the store cannot commit (it says so itself, once: `store cannot commit`)
        only the first of that outage is logged, a warning without one: a scheduled MT due meanwhile failed its
        release at every tick, a traceback twice a second for as long as the outage lasted."""
        if self.store.can_commit:
            self._sweep_failed_in_outage = False
        try:
            await self.delivery.sweep()
        except Exception:
            if self.store.can_commit:
                log.exception("store-and-forward sweep failed")
            elif not self._sweep_failed_in_outage:
                self._sweep_failed_in_outage = True
                log.warning("store-and-forward sweep failed", reason="the store cannot commit")

    async def run_due_jobs(self) -> None:
        """The services' jobs due (the next job check runs them again if they fail or are skipped): not while the
        store cannot commit, which says so itself, once (`store cannot commit`): a traceback every job_check_interval
        told nothing more."""
        if not self.store.can_commit:
            return
        try:
            await self.services.run_due_jobs()
        except Exception:  # noqa: BLE001  (logged: _job_failed)
            self._job_failed("scheduled job failed")

    async def prune(self) -> None:
        """Messages past retention, then the services' prompts past use (Services.prune_prompts); as run_due_jobs."""
        if not self.store.can_commit:
            return
        try:
            await self.retention.prune()
        except Exception:  # noqa: BLE001  (logged: _job_failed; the next job check tries again)
            self._job_failed("deleting messages past retention failed")
        try:
            await self.services.prune_prompts()
        except Exception:  # noqa: BLE001  (logged: _job_failed)
            self._job_failed("deleting prompts past use failed")

    def _job_failed(self, event: str) -> None:
        """A job's failure: with its traceback, unless the store could not commit (it failed because of that)."""
        if self.store.can_commit:
            log.exception(event)
        else:
            log.warning(event, reason="the store cannot commit")


async def _end_calls() -> None:
    """Cancel what still runs on the loop once the gateway has stopped (as asyncio.run does at its end), and wait for
    it to end: a call() of another thread then raises at once; it waited out its timeout, then said it had cancelled
    a coroutine left pending in a closed loop ("Task was destroyed but it is pending!")."""
    while left := [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]:
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)  # (one may have begun another as it ended)


def _result(future: concurrent.futures.Future[Any], coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
    """GatewayController.call's: the coroutine's result, once the loop has run it."""
    try:
        return future.result(timeout)
    except concurrent.futures.CancelledError:  # (stop() ends what is still running: _end_calls)
        raise RuntimeError(f"the gateway stopped before {coro.__qualname__}() finished: cancelled") from None
    except TimeoutError:
        # Cancelled, not left running: a Services call that "timed out" still committed and sent its SMS, and
        # a test that tried it again sent them twice.
        if not future.cancel():  # (it finished meanwhile)
            return future.result()
        raise TimeoutError(f"{coro.__qualname__}() did not finish within {timeout} s on the gateway's loop: "
                           "cancelled") from None  # fmt: skip


class GatewayController:
    """A real gateway on its own event loop in a background thread, for a test suite (README "Use it inside your
    own tests"); a context manager (start() ... stop()).

    config: a Config (gateway.config.load_config, or simulator.testing.gateway_config for overrides);
    gateway_options: Gateway's: db_path, clock (a gateway.clock.SimulatedClock to set and advance), and
    smpp_port, http_port and host (default 0, 0 and 127.0.0.1: ports the system chooses, read from smpp_port and
    http_port once started).

    `gateway` is the Gateway (None until the first start), for what the properties do not give
    (`gateway.service_context`, the `ctx` of handlers.rating.aggregates; `gateway.tls_port`). Its coroutines,
    the Services calls among them, run on its loop: call() them from the test's thread.
    """

    def __init__(self, config: Config, **gateway_options: Any) -> None:
        gateway_options.setdefault("smpp_port", 0)
        gateway_options.setdefault("http_port", 0)
        gateway_options.setdefault("host", "127.0.0.1")
        self._config = config
        self._options = gateway_options
        self.gateway: Gateway | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tuned_gc = False
        # Held by stop() throughout, and by call() to hand its coroutine to the loop: no call is begun while the
        # gateway stops, so every one begun before is one stop() ends (a call begun meanwhile waited its timeout).
        self._stopping = threading.Lock()

    @property
    def smpp_port(self) -> int:
        """The port SMPP clients connect to (on 127.0.0.1 unless `host` was given)."""
        return self._running().smpp_port

    @property
    def http_port(self) -> int:
        """The port of /health and /ready."""
        return self._running().http_port

    @property
    def services(self) -> Services:
        """The operator's calls (orders, surveys, unsubscriptions, blocks, disputes, billing and reminders, the jobs
        due): coroutines, run with call(): `gw.call(gw.services.run_due_jobs())`."""
        return self._running().services

    @property
    def clock(self) -> Clock:
        """The clock the gateway reads: the `clock` it was given (a SimulatedClock to set), else the system's."""
        return self._running().clock

    def _running(self) -> Gateway:
        """The gateway between start() and stop(): before, or after, an assert said nothing (or its port was a
        listener's that was gone, an IndexError, or 0), and call() found the loop closed."""
        if self._thread is None or self.gateway is None:
            raise RuntimeError("this GatewayController's gateway is not running: start() it first")
        return self.gateway

    def start(self) -> GatewayController:
        """Start a gateway (a new one, on the same options, after a stop) and return once it takes traffic; a start
        that fails raises its error once it has given back the database, its writer process and the ports.
        RuntimeError while its gateway runs."""
        if self._thread is not None:
            raise RuntimeError("this GatewayController's gateway is running: stop() it before starting it again")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                self.gateway = Gateway(self._config, **self._options)
                loop.run_until_complete(self.gateway.start())
            except BaseException as exc:  # reported to the starting thread, once what the start took is given back
                failure.append(exc)
                if self.gateway is not None:  # (as `smsgw serve` does: its writer process, the database, its ports)
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(self.gateway.stop())
                loop.close()
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="smsgw", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        # See gctune: the collector is a third of a busy gateway's CPU otherwise. No
        # collect first: in a test run that would cost a full collection per gateway.
        tune_for_serving(collect_first=False)
        self._tuned_gc = True
        return self

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the gateway's loop, from another thread, and return its result (or raise its error).

        One not done within `timeout` seconds is cancelled (what it committed by then stays) and TimeoutError names
        it; one still running once stop() has stopped the gateway is cancelled then, RuntimeError. RuntimeError when
        the gateway is not running (one called while stop() runs waits for it: not running then), and on the
        gateway's own loop (a coroutine it runs awaits the other instead); the coroutine is closed then, never run."""
        try:
            self._not_on_its_loop()  # (before the lock: stop() holding it waits for that loop)
            with self._stopping:
                future = asyncio.run_coroutine_threadsafe(coro, self._loop_to_call())
        except RuntimeError:
            coro.close()  # (it never runs: no "never awaited" warning on top of the error)
            raise
        return _result(future, coro, timeout)

    def _not_on_its_loop(self) -> None:
        """From a coroutine or callback on the gateway's loop, call() blocked the loop it waited for until its
        timeout."""
        thread = self._thread
        if thread is not None and threading.get_ident() == thread.ident:
            raise RuntimeError("GatewayController.call() or stop() on the gateway's own event loop would block it: "
                               "await the coroutine instead")  # fmt: skip

    def _loop_to_call(self) -> asyncio.AbstractEventLoop:
        self._running()
        assert self._loop is not None
        return self._loop

    def stop(self) -> bool:
        """Stop the gateway (Gateway.stop: its drain, then the unbinds) and its loop; nothing to do if not running.

        False if it stopped with final statuses not committed (its error line names the MTs: they go out again at
        the next start on this database), as `smsgw serve` exits 1 then; True otherwise. (A `with` block drops it:
        call stop() yourself to check it.)"""
        self._not_on_its_loop()
        with self._stopping:
            if self._loop is None or self.gateway is None or self._thread is None or self._loop.is_closed():
                return True
            loop, stopping = self._loop, self.gateway.stop()
            settings = self._config.gateway  # (its drain, then the unbinds' answers; the rest takes seconds at most)
            timeout = settings.drain_timeout + settings.response_timeout + 60
            committed = _result(asyncio.run_coroutine_threadsafe(stopping, loop), stopping, timeout)
            ending = _end_calls()
            _result(asyncio.run_coroutine_threadsafe(ending, loop), ending, 60)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            self._thread = None
            if self._tuned_gc:
                self._tuned_gc = False
                restore_defaults()
            return committed

    def __enter__(self) -> GatewayController:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
