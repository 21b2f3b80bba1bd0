"""The store connection: one Redis client per process, its Lua scripts, and the error boundary.

``AUTHGW_REDIS_URL`` picks the topology:

- ``redis://[:password@]host:port/db`` and ``rediss://`` (TLS): a single server;
- ``redis+sentinel://[:password@]host:port,host:port/service[/db]``: Redis Sentinel;
- ``redis+cluster://[:password@]host:port,host:port``: Redis Cluster (seed nodes).

Every Redis error becomes ``StoreUnavailable`` in ``Store.boundary`` and nowhere else, so a
request fails closed with 503 whatever the store did. There are no automatic retries: a
transition that timed out may have run, and running it twice is not ours to decide.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from authgw.errors import ConfigError, StoreNotDurable, StoreUnavailable
from authgw.keys import CustomerKeys, Keys

log = logging.getLogger(__name__)

# The one client of a process: a single server (or a Sentinel's primary), or a Cluster.
Client = redis.Redis | RedisCluster

# Every Lua script is a file of this package's ``lua/`` folder; ``_lib.lua`` is the shared
# prelude placed in front of each. ``authgw.scripts`` holds the one typed call of each.
SCRIPT_PACKAGE = "authgw"
PRELUDE = "_lib.lua"

# The prelude's one read of the store's clock (``clock_ms`` in ``_lib.lua``), and what stands in
# for it when a test moves time by hand: the time in ms that ``Store`` then appends to every
# script's ARGV (so no script may count its ARGV to the end).
TIME_READ = "local t = redis.call('TIME')"
TIME_FROM_ARGV = "local t = {math.floor(ARGV[#ARGV] / 1000), ARGV[#ARGV] % 1000 * 1000}"

# How often a process measures its host's clock against the store's again (``StoreClock``).
CLOCK_REFRESH_SECONDS = 30.0


def read_lua(name: str) -> str:
    """The text of one file of the Lua folder, as it is (no prelude)."""
    return resources.files(SCRIPT_PACKAGE).joinpath("lua", name).read_text("utf-8")


def load_scripts(time_from_argv: bool = False) -> dict[str, str]:
    """Every ``<name>.lua`` of the Lua folder, each with the shared prelude in front.

    ``time_from_argv`` (tests only): the scripts take the store's clock from their last ARGV
    instead of ``TIME``."""
    prelude = read_lua(PRELUDE)
    if time_from_argv:
        if prelude.count(TIME_READ) != 1:
            raise RuntimeError("_lib.lua must read TIME exactly once, in clock_ms")
        prelude = prelude.replace(TIME_READ, TIME_FROM_ARGV)
    folder = resources.files(SCRIPT_PACKAGE).joinpath("lua")
    return {
        entry.name[:-4]: prelude + "\n" + entry.read_text("utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".lua") and not entry.name.startswith("_")
    }


def connect(url: str, timeout: float, pool_size: int) -> Client:
    """A redis-py client for ``url`` with short time-outs and no retries."""
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
    }
    scheme = urlsplit(url).scheme
    if scheme in ("redis", "rediss", "unix"):
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=pool_size, timeout=timeout, **common
        )
        return redis.Redis(connection_pool=pool)
    if scheme == "redis+sentinel":
        return _connect_sentinel(url, pool_size, common)
    if scheme == "redis+cluster":
        return _connect_cluster(url, pool_size, common)
    raise ConfigError(
        "AUTHGW_REDIS_URL", f"scheme {scheme!r} is not one of redis, rediss, redis+sentinel, redis+cluster"
    )


def _hosts(netloc: str) -> tuple[str | None, list[tuple[str, int]]]:
    password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        password = unquote(auth.split(":", 1)[1] if ":" in auth else auth) or None
    hosts = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError("AUTHGW_REDIS_URL", f"{part!r} is not host:port")
        hosts.append((host.strip("[]"), int(port)))
    return password, hosts


def _connect_sentinel(url: str, pool_size: int, common: dict[str, Any]) -> redis.Redis:
    from redis.sentinel import Sentinel

    parts = urlsplit(url)
    password, hosts = _hosts(parts.netloc)
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ConfigError("AUTHGW_REDIS_URL", "a Sentinel URL names the service: .../service")
    db = int(path[1]) if len(path) > 1 and path[1].isdigit() else 0
    sentinel = Sentinel(
        hosts,
        sentinel_kwargs={
            "socket_timeout": common["socket_timeout"],
            "socket_connect_timeout": common["socket_connect_timeout"],
        },
        password=password,
        db=db,
        max_connections=pool_size,
        **common,
    )
    return sentinel.master_for(path[0])


def _connect_cluster(url: str, pool_size: int, common: dict[str, Any]) -> RedisCluster:
    from redis.cluster import ClusterNode

    password, hosts = _hosts(urlsplit(url).netloc)
    common = dict(common)
    common.pop("health_check_interval", None)
    return RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in hosts],
        password=password,
        max_connections=pool_size,
        **common,
    )


@dataclass(frozen=True)
class Step:
    """One command of a pipeline: a registered script by name, or a client read method."""

    name: str
    keys: list[str]
    args: list[Any]
    script: bool = True


@dataclass(frozen=True)
class Deferred:
    name: str
    calls: list[tuple[list[str], list[Any]]]
    judge: Callable[[list[Any]], None]


FIRST_ID = "0-0"  # no event is older than the first possible stream id


def _newest(before: str | None) -> str:
    """The upper bound of a page of a trail: everything, or just below event id ``before``
    (an exclusive bound, Redis 6.2+); ``(0-0`` itself is refused by Redis, hence FIRST_ID."""
    return "+" if before is None or before == FIRST_ID else f"({before}"


class Store:
    """The Redis client, the key builder and the registered scripts of one process.

    With ``wait_replicas`` > 0 every script is followed, on the same connection, by
    ``WAIT wait_replicas wait_timeout_ms``: the answer is given only once that many replicas
    hold the change, so a Sentinel failover cannot take back what a client was told. When
    fewer confirm in time the request fails closed (``StoreNotDurable``, 503).
    """

    def __init__(
        self,
        client: Client,
        prefix: str,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (tests only): a clock that stands in for the store's ``TIME``, so a test
        can move the store's time by hand; every script then reads it from its last ARGV."""
        self.client: Client = client
        self.keys = Keys(prefix)
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.stand_in_clock = clock
        self._scripts = {
            name: client.register_script(src) for name, src in load_scripts(clock is not None).items()
        }
        self._loaded: set[str] = set()  # scripts this process has loaded (_load_once)
        # Counters held for the current request (a thread's or a greenlet's own context).
        self._deferred: ContextVar[Deferred | None] = ContextVar(f"authgw-deferred-{id(self)}", default=None)
        # Called with (script name, answer) after each script that answered (e.g. metrics).
        self.observers: list[Callable[[str, Any], None]] = []

    def _argv(self, args: Sequence[Any]) -> list[Any]:
        """A script's ARGV as sent: with the stand-in clock's time last, when there is one."""
        if self.stand_in_clock is None:
            return list(args)
        return [*args, int(self.stand_in_clock() * 1000)]

    def time_ms(self) -> int:
        """The store's clock (``TIME``) in ms since 1970: one round trip."""
        if self.stand_in_clock is not None:
            return int(self.stand_in_clock() * 1000)
        with self.boundary():
            seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def add_script(self, name: str, source: str) -> None:
        """Register one more script (e.g. ``authgw.ratelimit``'s) under ``name``."""
        self._scripts[name] = self.client.register_script(source)

    @contextmanager
    def boundary(self) -> Iterator[None]:
        """Turn any Redis failure into ``StoreUnavailable`` (fail closed)."""
        try:
            yield
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            # RedisClusterException (no slot coverage, refused pipeline...) is no RedisError.
            # A server's refusal starts with its code (NOREPLICAS, READONLY, MOVED, OOM...):
            # that much is logged, never the rest, which may name keys.
            reason = str(exc).split(" ", 1)[0] if isinstance(exc, redis.exceptions.ResponseError) else ""
            log.warning("store error: %s %s", type(exc).__name__, reason[:32])
            raise StoreUnavailable(type(exc).__name__) from exc

    def run(self, name: str, keys: Sequence[str], args: Sequence[Any], durable: bool = True) -> Any:
        """Run one registered script by SHA (loaded on first use) as one atomic step.

        ``durable=False`` skips ``WAIT`` (counters whose loss in a failover is harmless)."""
        self.flush_deferred()
        with self.boundary():
            self._load_once(name)
            if self.wait_replicas and durable:
                result = self._run_and_wait(name, list(keys), list(args))
            else:
                result = self._scripts[name](keys=list(keys), args=self._argv(args))
        for observe in self.observers:
            observe(name, result)
        return result

    def run_many(self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Run one script over several key sets in one pipeline: one round trip, not atomic as a
        whole (each run is). For independent steps only, such as counters on different slots;
        never followed by ``WAIT``."""
        if len(calls) == 1:
            keys, args = calls[0]
            return [self.run(name, keys, args, durable=False)]
        return self._pipeline([Step(name, list(keys), list(args)) for keys, args in calls])

    # -- deferred counters: sent with the request's first read ----------------------------

    def defer(
        self,
        name: str,
        calls: Sequence[tuple[Sequence[str], Sequence[Any]]],
        judge: Callable[[list[Any]], None],
    ) -> None:
        """Hold independent runs of script ``name`` (rate-limit counters) until this request's
        next store call. ``read`` and ``read_command`` send them in the same pipeline as the
        read, one round trip for both; any other call sends them first, on their own, so
        nothing is written before ``judge`` has seen their answers. ``judge`` raises to
        refuse the request (the read's answer is then dropped unseen)."""
        self._deferred.set(Deferred(name, [(list(k), list(a)) for k, a in calls], judge))

    def flush_deferred(self) -> None:
        """Send the held counters now, if any (before a write; at the end of a request)."""
        held = self._deferred.get()
        if held is not None:
            self._deferred.set(None)
            held.judge(self.run_many(held.name, held.calls))

    def drop_deferred(self) -> None:
        self._deferred.set(None)

    def read(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script that only reads (or settles what time already decided, such as an
        expiry), together with the held counters."""
        return self._read_with(Step(name, list(keys), list(args)))

    def read_command(self, command: str, *args: Any) -> Any:
        """One read command of the client (``hmget``, ``smembers``...), with the held counters."""
        return self._read_with(Step(command, [], list(args), script=False))

    # -- named reads and hint writes (not transitions: the scripts re-check what these say) --

    def customers_of_phone(self, phone: str) -> set[str]:
        """The customers the phone index names for ``phone`` (a hint), with the held counters."""
        return set(self.read_command("smembers", self.keys.phone_index(phone)))

    def add_phone_hints(self, customer_id: str, phones: Sequence[str]) -> None:
        """Add ``customer_id`` to each phone's index entry (before the customer changes)."""
        self._hint_pipeline("sadd", customer_id, phones)

    def drop_phone_hints(self, customer_id: str, phones: Sequence[str]) -> None:
        """Take ``customer_id`` off each phone's index entry (after the customer changed)."""
        if phones:
            self._hint_pipeline("srem", customer_id, phones)

    def _hint_pipeline(self, command: str, customer_id: str, phones: Sequence[str]) -> None:
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for phone in phones:
                getattr(pipe, command)(self.keys.phone_index(phone), customer_id)
            pipe.execute()

    def customer_record(self, keys: CustomerKeys) -> dict[str, str]:
        """The customer's hash as it is ({} for none), with the held counters."""
        return dict(self.read_command("hgetall", keys.customer))

    def open_challenges(self, keys: CustomerKeys) -> list[str]:
        """The ids of the customer's open challenges (a hint the scripts re-check)."""
        return list(self.read_command("zrange", keys.open, 0, -1))

    def line_holder(self, keys: CustomerKeys, number: str) -> str:
        """The customer's ``lines`` entry for a designated number ('' for none): a hint."""
        return str(self.read_command("hget", keys.lines, number) or "")

    def line_holders(self, keys: Sequence[CustomerKeys], number: str) -> list[str]:
        """Each customer's ``lines`` entry for ``number`` ('' for none), in one pipeline: hints."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for one in keys:
                pipe.hget(one.lines, number)
            return [str(held or "") for held in pipe.execute()]

    def call_fields(self, call_sid: str, *fields: str) -> list[str | None]:
        """Fields of a call's record (``receive_call.lua``, ``bind_call.lua``)."""
        return list(self.read_command("hmget", self.keys.call_status(call_sid), list(fields)))

    def fields_of_many(self, reads: Sequence[tuple[str, Sequence[str]]]) -> list[list[str | None]]:
        """``HMGET`` of several hashes (counters, on any slots) in one pipeline."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for key, fields in reads:
                pipe.hmget(key, list(fields))
            return [list(answer) for answer in pipe.execute()]

    def count_from(self, zsets: Sequence[str], low_ms: int) -> list[int]:
        """``ZCOUNT <low_ms> +inf`` of each zset (the buckets' indexes), in one pipeline."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for key in zsets:
                pipe.zcount(key, low_ms, "+inf")
            return [int(n) for n in pipe.execute()]

    def members_from(self, zsets: Sequence[str], low_ms: int, limit: int) -> list[tuple[str, float]]:
        """Up to ``limit`` members (with scores) of each zset scored ``low_ms`` or more, in one
        pipeline; all of them together, in the zsets' order."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for key in zsets:
                pipe.zrangebyscore(key, low_ms, "+inf", start=0, num=limit, withscores=True)
            return [(str(member), float(score)) for answer in pipe.execute() for member, score in answer]

    def trail_and_due(
        self, keys: CustomerKeys, now_ms: int, limit: int, before: str | None = None
    ) -> tuple[bool, list[str], list[tuple[str, dict[str, str]]]]:
        """Whether the customer exists, the open challenges due by ``now_ms``, and the newest
        ``limit`` events (older than event id ``before``): one round trip."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(keys.customer)
            pipe.zrangebyscore(keys.open, "-inf", now_ms)
            pipe.xrevrange(keys.events, max=_newest(before), count=limit)
            exists, due, entries = pipe.execute()
        return bool(exists), list(due), [] if before == FIRST_ID else list(entries)

    def trail(
        self, keys: CustomerKeys, limit: int, before: str | None = None
    ) -> list[tuple[str, dict[str, str]]]:
        """The newest ``limit`` events of the customer's trail (older than event id ``before``)."""
        if before == FIRST_ID:
            return []
        entries: Any = self.read_command("xrevrange", keys.events, _newest(before), "-", limit)
        return list(entries)

    def log_call_event(self, fields: dict[str, str], maxlen: int) -> None:
        """Append an event to the gateway's call stream (trimmed to about ``maxlen``)."""
        with self.boundary():
            self.client.xadd(self.keys.call_events(), fields, maxlen=maxlen, approximate=True)  # type: ignore[arg-type]

    def webhook_endpoints(self) -> dict[str, str]:
        """Every webhook endpoint's record (JSON) by name: a hint the webhook scripts re-check."""
        return dict(self.read_command("hgetall", self.keys.webhook_endpoints()))

    def webhook_audit(self, limit: int) -> list[tuple[str, dict[str, str]]]:
        """The newest ``limit`` entries of the webhook audit stream, newest first."""
        entries: Any = self.read_command("xrevrange", self.keys.webhook_audit(), "+", "-", limit)
        return list(entries)

    def webhook_delivery(self, name: str, delivery_id: str) -> str | None:
        """One delivery record (JSON) of endpoint ``name``, or None (a read for the console's
        confirmation page; the retry script re-checks the state)."""
        raw = self.read_command("hget", self.keys.webhook(name).records, delivery_id)
        return None if raw is None else str(raw)

    def run_and_read(
        self, name: str, keys: Sequence[str], args: Sequence[Any], command: str, *command_args: Any
    ) -> tuple[Any, Any]:
        """Run a script and, in the same pipeline, one read command that does not depend on
        it (a hint the next step re-checks): one round trip for both, each atomic alone."""
        self.flush_deferred()
        if self.wait_replicas:
            result = self.run(name, keys, args)
            with self.boundary():
                return result, getattr(self.client, command)(*command_args)
        result, value = self._pipeline(
            [Step(name, list(keys), list(args)), Step(command, [], list(command_args), script=False)]
        )
        return result, value

    def _read_with(self, step: Step) -> Any:
        held = self._deferred.get()
        if held is None or self.wait_replicas:
            self.flush_deferred()
            if step.script:
                return self.run(step.name, step.keys, step.args)
            with self.boundary():
                return getattr(self.client, step.name)(*step.args)
        self._deferred.set(None)
        results = self._pipeline([*(Step(held.name, k, a) for k, a in held.calls), step])
        held.judge(results[:-1])
        return results[-1]

    def _pipeline(self, steps: Sequence[Step]) -> list[Any]:
        """Script runs and read commands in one pipeline, one round trip, each atomic alone."""
        with self.boundary():
            for step in steps:
                if step.script:
                    self._load_once(step.name)
            pipe = self.client.pipeline(transaction=False)
            for step in steps:
                if step.script:
                    # By name, not pipe.evalsha: redis-py's cluster pipeline refuses that
                    # method, but routes the command itself by its keys.
                    pipe.execute_command(
                        "EVALSHA",
                        self._scripts[step.name].sha,
                        len(step.keys),
                        *step.keys,
                        *self._argv(step.args),
                    )
                else:
                    getattr(pipe, step.name)(*step.args)
            results = pipe.execute(raise_on_error=False)
            for i, result in enumerate(results):
                step = steps[i]
                if isinstance(result, redis.exceptions.NoScriptError):
                    # The server lost its scripts: that run did not happen; this one loads the
                    # script and runs it.
                    results[i] = self._scripts[step.name](keys=step.keys, args=self._argv(step.args))
                elif isinstance(result, Exception):
                    raise result
        for step, result in zip(steps, results, strict=True):
            if step.script:
                for observe in self.observers:
                    observe(step.name, result)
        return list(results)

    def _load_once(self, name: str) -> None:
        """``SCRIPT LOAD`` a script before this process first runs it. Afterwards ``NOSCRIPT``
        comes only if the server lost its scripts (a restart, a failover), and is handled
        where it is met. Without this, fakeredis's server (the embedded store on a machine
        without redis-server) would meet it on every first run, and it drops the connection
        on that reply."""
        if name not in self._loaded:
            self.client.script_load(self._scripts[name].script)
            self._loaded.add(name)

    def _run_and_wait(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """The script, then ``WAIT``, in one pipeline: one connection, one round trip."""
        script = self._scripts[name]
        args = self._argv(args)
        node: Any = self.client
        if isinstance(node, RedisCluster) and keys:
            # Cluster: WAIT has no key to route by, so both go to the node owning the slot.
            node = node.get_redis_connection(node.get_node_from_key(keys[0]))
        for attempt in (1, 2):
            pipe = node.pipeline(transaction=False)
            pipe.evalsha(script.sha, len(keys), *keys, *args)
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            try:
                result, acked = pipe.execute()
                break
            except redis.exceptions.NoScriptError:
                # NOSCRIPT: the script did not run, so loading it and sending again is safe.
                if attempt == 2:
                    raise
                node.script_load(script.script)
        if int(acked) < self.wait_replicas:
            log.warning("store write confirmed by %s of %s replicas", acked, self.wait_replicas)
            raise StoreNotDurable("too few replicas confirmed the write")
        return result

    def ping(self) -> bool:
        with self.boundary():
            return bool(self.client.ping())

    def close(self) -> None:
        """Close every connection: the pool's, and a Sentinel client's links to the sentinels."""
        with suppress(redis.exceptions.RedisError):
            self.client.close()
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:
                pool.disconnect()
                for sentinel in getattr(getattr(pool, "sentinel_manager", None), "sentinels", []):
                    sentinel.close()

    # -- outboxes (authgw.outbound.deliverer) ----------------------------------------------

    def outbox_groups(self, outboxes: Sequence[str], group: str) -> None:
        """Make sure each outbox has the consumer group (from its first entry on)."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for outbox in outboxes:
                pipe.xgroup_create(outbox, group, id="0", mkstream=True)
            for answer in pipe.execute(raise_on_error=False):
                if isinstance(answer, Exception) and not str(answer).startswith("BUSYGROUP"):
                    raise answer

    def outbox_read(
        self, outboxes: Sequence[str], group: str, consumer: str, count: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """New entries of these outboxes for ``consumer`` of ``group``: (outbox, id, fields)."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for outbox in outboxes:
                pipe.xreadgroup(group, consumer, {outbox: ">"}, count=count)
            answers = pipe.execute()
        return [
            (outbox, entry_id, fields)
            for answer in answers
            for outbox, entries in (answer or [])
            for entry_id, fields in entries
            if fields is not None
        ]

    def outbox_claim_stale(
        self, outboxes: Sequence[str], group: str, consumer: str, idle_ms: int, count: int
    ) -> list[tuple[str, str, dict[str, str]]]:
        """Entries other consumers read more than ``idle_ms`` ago and never acknowledged,
        now ``consumer``'s (XAUTOCLAIM): (outbox, id, fields)."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for outbox in outboxes:
                pipe.xautoclaim(outbox, group, consumer, idle_ms, "0-0", count=count)
            answers = pipe.execute()
        return [
            (outbox, entry_id, fields)
            for outbox, answer in zip(outboxes, answers, strict=True)
            for entry_id, fields in answer[1]
            if fields is not None
        ]

    def outbox_ack(self, entries: dict[str, list[str]], group: str) -> None:
        """Acknowledge and delete fanned-out entries (outbox -> entry ids)."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for outbox, ids in entries.items():
                pipe.xack(outbox, group, *ids)
                pipe.xdel(outbox, *ids)
            pipe.execute()

    def outbox_backlog(self, outboxes: Sequence[str]) -> int:
        """Entries waiting in these outboxes (fanned out ones are deleted)."""
        with self.boundary():
            pipe = self.client.pipeline(transaction=False)
            for outbox in outboxes:
                pipe.xlen(outbox)
            return sum(int(n) for n in pipe.execute())

    # -- doorbells ------------------------------------------------------------------------

    def subscribe(self, channels: Sequence[str]) -> Subscription:
        """A sharded pub/sub subscription to doorbells (``SPUBLISH`` by ``add_event`` in
        ``_lib.lua`` on each outbox's channel), on connections of its own."""
        return Subscription(self, list(channels))

    # -- readiness ------------------------------------------------------------------------

    def probe_write(self, ttl_ms: int = 10_000) -> str | None:
        """Write the readiness probe key (it expires by itself): ``None`` when the store took
        the write, else why not: ``out_of_memory`` (``maxmemory`` reached under
        ``noeviction``), ``read_only_replica``, ``too_few_replicas`` (``min-replicas-to-write``),
        ``write_refused`` (any other refusal); with ``wait_replicas``, ``too_few_replicas`` too
        when fewer replicas confirm it in time (``WAIT``), as every transition would find.
        Raises ``StoreUnavailable`` when it does not answer at all."""
        key = self.keys.readiness_probe()
        try:
            with self.boundary():
                if not self.wait_replicas:
                    self.client.set(key, "1", px=ttl_ms)
                    return None
                node: Any = self.client
                if isinstance(node, RedisCluster):  # Cluster: WAIT goes to the key's node
                    node = node.get_redis_connection(node.get_node_from_key(key))
                pipe = node.pipeline(transaction=False)
                pipe.set(key, "1", px=ttl_ms)
                pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
                _, acked = pipe.execute()
                return "too_few_replicas" if int(acked) < self.wait_replicas else None
        except StoreUnavailable as exc:
            cause = exc.__cause__
            # redis-py strips the code off the errors it has a class for.
            if isinstance(cause, redis.exceptions.OutOfMemoryError):
                return "out_of_memory"
            if isinstance(cause, redis.exceptions.ReadOnlyError):
                return "read_only_replica"
            if isinstance(cause, redis.exceptions.ResponseError):
                code = str(cause).split(" ", 1)[0]
                return WRITE_REFUSALS.get(code, "write_refused")
            raise


# A server's refusal of a write, by the code its error starts with, as /readyz names it.
WRITE_REFUSALS = {"OOM": "out_of_memory", "READONLY": "read_only_replica", "NOREPLICAS": "too_few_replicas"}


class StoreClock:
    """The store's clock as this process reads it: the host's clock plus the offset to the
    store's ``TIME``, measured on first use and again every ``refresh_seconds`` (one round trip
    per process then, none per request).

    Nothing is judged by it: the scripts read ``TIME`` themselves, and TOTP codes are computed
    at the time the script that reads the secret returns. It dates what Python writes itself
    (the call stream), picks which challenges are due, and is what ``/readyz`` and the
    ``authgw_clock_offset_seconds`` gauge report.
    """

    def __init__(
        self,
        store: Store,
        host: Callable[[], float],
        refresh_seconds: float = CLOCK_REFRESH_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.host = host
        self.refresh_seconds = refresh_seconds
        self.monotonic = monotonic
        self.offset: float | None = None  # store minus host, in seconds
        self._due = 0.0
        self._lock = threading.Lock()
        # Called with each new offset (e.g. the metrics gauge).
        self.observers: list[Callable[[float], None]] = []

    def measure(self) -> float:
        """Read ``TIME`` now: the store's clock minus the host's, in seconds (half the round
        trip is allowed for)."""
        before = self.host()
        store_ms = self.store.time_ms()
        after = self.host()
        offset = store_ms / 1000 - (before + after) / 2
        self.offset = offset
        self._due = self.monotonic() + self.refresh_seconds
        for observe in self.observers:
            observe(offset)
        return offset

    def now_ms(self) -> int:
        """Now on the store's clock, in ms since 1970 (an estimate good to a round trip)."""
        stale = self.offset is None or self.monotonic() >= self._due
        # One request measures; the others go on with the offset they have.
        if stale and self._lock.acquire(blocking=self.offset is None):
            try:
                if self.offset is None or self.monotonic() >= self._due:
                    self.measure()
            except StoreUnavailable:
                if self.offset is None:
                    raise
                self._due = self.monotonic() + 1  # the store is down: try again soon
            finally:
                self._lock.release()
        if self.offset is None:  # never measured: the store could not be reached
            raise StoreUnavailable("the store's clock is unknown")
        return int((self.host() + self.offset) * 1000)


class Subscription:
    """Sharded pub/sub on the store, for waking up (the deliverers, long-polling requests).

    A doorbell is only a hint to look now: whoever listens also looks on a slow schedule, so a
    ring lost in a reconnection or a failover delays, and never loses, anything. ``wait``
    therefore never raises: after a store error it drops the connection, and the next call
    subscribes again.
    """

    def __init__(self, store: Store, channels: list[str]) -> None:
        self.store = store
        self.channels = channels
        self._pubsub: Any = None
        # Channels whose subscription the server has confirmed, and the SSUBSCRIBE and
        # SUNSUBSCRIBE commands of each channel still to be confirmed: a channel counts as
        # subscribed only once every command sent for it is answered and the last was a
        # subscription (``confirmed``).
        self._confirmed: set[str] = set()
        self._unanswered: dict[str, int] = {}

    @property
    def open(self) -> bool:
        """Whether the connection is up (False before the first ``wait`` and after an error)."""
        return self._pubsub is not None

    @property
    def confirmed(self) -> frozenset[str]:
        """The channels the server has confirmed as subscribed on the open connection: a ring
        published after that confirmation is delivered. Confirmations arrive through ``wait``."""
        return frozenset(self._confirmed)

    def _open(self) -> Any:
        with self.store.boundary():
            pubsub = self.store.client.pubsub()
            self._send(pubsub, "ssubscribe", self.channels)
        return pubsub

    def _send(self, pubsub: Any, command: str, channels: Sequence[str]) -> None:
        # In batches: one command per batch on a single server; a Cluster's client routes
        # each channel to the node that owns its slot.
        for first in range(0, len(channels), 256):
            batch = channels[first : first + 256]
            for channel in batch:
                self._unanswered[channel] = self._unanswered.get(channel, 0) + 1
            getattr(pubsub, command)(*batch)

    def add(self, channels: Sequence[str]) -> None:
        """Subscribe to more channels: now when the connection is up, else when it opens."""
        self._change("ssubscribe", [c for c in dict.fromkeys(channels) if c not in self.channels])

    def remove(self, channels: Sequence[str]) -> None:
        """Stop listening on these channels."""
        self._change("sunsubscribe", [c for c in dict.fromkeys(channels) if c in self.channels])

    def _change(self, command: str, channels: list[str]) -> None:
        if not channels:
            return
        if command == "ssubscribe":
            self.channels.extend(channels)
        else:
            gone = set(channels)
            self.channels = [c for c in self.channels if c not in gone]
            self._confirmed -= gone
        if self._pubsub is None:
            return
        try:
            with self.store.boundary():
                self._send(self._pubsub, command, channels)
        except StoreUnavailable:
            self.close()  # the next wait opens it again, with every channel

    def _answered(self, message: dict[str, Any]) -> None:
        """Note a server's confirmation of an SSUBSCRIBE or SUNSUBSCRIBE of one channel."""
        channel = _text(message["channel"])
        left = self._unanswered.get(channel, 0) - 1
        if left > 0:
            self._unanswered[channel] = left
            return
        self._unanswered.pop(channel, None)
        if message["type"] == "ssubscribe" and channel in self.channels:
            self._confirmed.add(channel)
        else:
            self._confirmed.discard(channel)

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """The rings (channel, message) that arrive within ``timeout`` seconds: returns at the
        first one with every ring already waiting, or with none at the timeout."""
        try:
            if self._pubsub is None:
                self._pubsub = self._open()
            rings: list[tuple[str, str]] = []
            message = self._next(timeout)
            while message is not None:
                kind = _text(message.get("type", ""))
                if kind == "smessage":
                    rings.append((_text(message["channel"]), _text(message["data"])))
                elif kind in ("ssubscribe", "sunsubscribe"):
                    self._answered(message)
                message = self._next(0.0)
            return rings
        except (
            StoreUnavailable,
            redis.exceptions.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
        ):
            self.close()
            time.sleep(min(timeout, 1.0))
            return []

    def _next(self, timeout: float) -> dict[str, Any] | None:
        if isinstance(self.store.client, RedisCluster):
            return self._pubsub.get_sharded_message(timeout=timeout)
        return self._pubsub.get_message(timeout=timeout)

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._confirmed.clear()
        self._unanswered.clear()
        if pubsub is not None:
            with suppress(Exception):
                pubsub.close()


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
