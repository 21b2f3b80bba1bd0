"""Fast loading of customers and challenges through the gateway's own Lua scripts.

The HTTP API would take minutes to create a million challenges on two cores, so the benchmark
writes them here: the same registered scripts (``authgw.store.load_scripts``), the same key
names (``authgw.keys``), the same arguments ``authgw.challenges`` passes, many calls to one
pipeline. The records are therefore laid out exactly as production lays them out; ``run.py``
checks that by comparing one challenge made here with one made through the API.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from authgw import scripts
from authgw.challenges import limits, models
from authgw.challenges.domain import Now, rfc3339
from authgw.challenges.lifecycle import document, transaction_digest
from authgw.challenges.locks import policy_arg
from authgw.challenges.outcomes import expect_ok
from authgw.challenges.totp import TotpPolicy
from authgw.console.demo import PAYEE as DEMO_PAYEE
from authgw.errors import ApiError
from authgw.keys import Keys, new_challenge_id
from authgw.secretbox import SecretBox
from authgw.settings import Settings
from authgw.store import load_scripts

BATCH = 2000
CLIENT = "corebank"

PAYEE = DEMO_PAYEE  # the challenges pay the demo's sample payee


def transfer_body(
    customer_id: str, methods: list[str] | None = None, ttl: int = 300, amount: int = 150000
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "kind": "transfer",
        "amount": amount,
        "currency": "JPY",
        "payee": PAYEE,
        "ttl_seconds": ttl,
    }
    if methods is not None:
        body["methods"] = methods
    return body


def phone_of(n: int) -> str:
    """A distinct valid Japanese mobile number (E.164) for each n below 89,999,999."""
    return f"+8190{10_000_000 + n}"


@dataclass
class Actor:
    """A customer the benchmark made, with what it needs to act as them."""

    customer_id: str
    phone: str
    secret: str = ""
    sealed: str = ""
    last_step: int = -1


@dataclass
class Challenge:
    id: str
    customer: Actor
    digest: str
    line: str = ""


@dataclass
class Loader:
    client: Any  # redis-py client with decode_responses=True
    settings: Settings
    keys: Keys = field(init=False)
    box: SecretBox = field(init=False)
    totp: TotpPolicy = field(init=False)
    scripts: dict[str, Any] = field(init=False)
    serial: int = 0
    _loaded: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.settings
        self.keys = Keys(s.key_prefix)
        self.box = SecretBox(s.secret_keys)
        self.totp = TotpPolicy(s.totp_issuer, s.totp_digits, s.totp_period, s.totp_algorithm)
        self.scripts = {name: self.client.register_script(src) for name, src in load_scripts().items()}

    # -- helpers --------------------------------------------------------------------------

    def _now(self) -> Now:
        return Now(int(time.time() * 1000))

    def _run(self, pipe: Any, name: str, keys: Sequence[str], args: Sequence[Any]) -> None:
        self.scripts[name](keys=list(keys), args=list(args), client=pipe)

    def _raw(self, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send commands as one pipeline, packed here (redis-py's packing costs more than Redis
        takes to run the scripts); ``("script", name, keys, args)`` calls a registered script."""
        out = bytearray()
        for call in calls:
            if call[0] == "script":
                _, name, keys, args = call
                script = self.scripts[name]
                if not self._loaded.get(name):
                    script.sha = self.client.script_load(script.script)
                    self._loaded[name] = True
                parts = ["EVALSHA", script.sha, len(keys), *keys, *args]
            else:
                parts = list(call)
            out += b"*%d\r\n" % len(parts)
            for part in parts:
                data = part if isinstance(part, bytes) else str(part).encode("utf-8")
                out += b"$%d\r\n%s\r\n" % (len(data), data)
        pool = self.client.connection_pool
        conn = pool.get_connection("EVALSHA")
        try:
            conn.send_packed_command([bytes(out)])
            return [conn.read_response(disable_decoding=False) for _ in calls]
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)

    def _batches(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        for start in range(0, len(items), BATCH):
            yield items[start : start + BATCH]

    def step(self) -> int:
        return int(time.time()) // self.settings.totp_period

    def code(self, actor: Actor, step: int) -> str:
        return str(self.totp.totp(actor.secret).generate_otp(step))

    def wrong_code(self, actor: Actor) -> str:
        """A well-formed code that matches none of the steps around now (nor the next two)."""
        now = self.step()
        taken = {self.code(actor, s) for s in range(now - 2, now + 4)}
        while True:
            candidate = f"{secrets.randbelow(10**self.settings.totp_digits):0{self.settings.totp_digits}d}"
            if candidate not in taken:
                return candidate

    # -- customers ------------------------------------------------------------------------

    def customers(self, count: int, label: str, totp: bool) -> list[Actor]:
        """``count`` new customers with one phone each, and an active TOTP secret if ``totp``."""
        actors = []
        for _ in range(count):
            n = self.serial
            self.serial += 1
            actors.append(Actor(f"bench-{label}-{n}", phone_of(n)))
        s = self.settings
        for batch in self._batches(actors):
            now = self._now()
            calls: list[tuple[Any, ...]] = []
            for a in batch:
                # As Customers.put: the phone hint first, then the customer.
                calls.append(("SADD", self.keys.phone_index(a.phone), a.customer_id))
                put_keys, put_args = scripts.put_customer_call(
                    self.keys.for_customer(a.customer_id),
                    customer_id=a.customer_id,
                    phones=[a.phone],
                    region="JP",
                    now=now,
                    events_ms=s.events_retention_seconds * 1000,
                    client="bench",
                )
                calls.append(("script", "put_customer", put_keys, put_args))
            for result in self._raw(calls)[1::2]:
                scripts.put_customer_outcome(result)
            if not totp:
                continue
            step = now.ms // 1000 // s.totp_period
            pipe = self.client.pipeline(transaction=False)
            for a in batch:
                keys = self.keys.for_customer(a.customer_id)
                a.secret = self.totp.new_secret()
                a.sealed = self.box.seal(a.secret, f"totp:{a.customer_id}")
                self._run(
                    pipe,
                    "totp_enrol",
                    *scripts.totp_enrol_call(
                        keys,
                        sealed=a.sealed,
                        now=now,
                        events_ms=s.events_retention_seconds * 1000,
                        client="bench",
                    ),
                )
                # As Customers.confirm_totp with the code of the current step.
                self._run(
                    pipe,
                    "totp_confirm",
                    *scripts.totp_confirm_call(
                        keys,
                        now=now,
                        events_ms=s.events_retention_seconds * 1000,
                        policy=policy_arg(s),
                        sealed=a.sealed,
                        steps=str(step),
                        client="bench",
                    ),
                )
                a.last_step = step
            answers = pipe.execute()
            for enrolled, confirmed in zip(answers[::2], answers[1::2], strict=True):
                expect_ok(enrolled)
                if scripts.judged_outcome(confirmed).status != "ok":
                    raise RuntimeError("totp_confirm answered stale")
        return actors

    # -- challenges -----------------------------------------------------------------------

    def challenges(
        self, actors: Sequence[Actor], methods: list[str] | None, ttl: int = 300, per_actor: int = 1
    ) -> list[Challenge]:
        """New pending challenges, ``per_actor`` for each actor, as ``Challenges.create`` makes them."""
        s = self.settings
        body = transfer_body("template", methods, ttl)
        request, payee = models.parse_challenge(body)
        methods_json = json.dumps(request.methods) if request.methods is not None else ""
        retention_ms = s.record_retention_seconds * 1000
        made: list[Challenge] = []
        todo = [a for a in actors for _ in range(per_actor)]
        digest_of = _digest_template(request.kind, request.amount, request.currency, payee)
        # The document as Challenges.create writes it; only the digest differs per customer.
        doc = document(request, payee, "\x00", s.challenge_attempts, s.callback_mode)
        doc_head, doc_tail = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).split("\\u0000")
        for batch in self._batches(todo):
            now = self._now()
            expires_ms = now.ms + request.ttl_seconds * 1000
            calls: list[tuple[Any, ...]] = []
            current = []
            for a in batch:
                keys = self.keys.for_customer(a.customer_id)
                cid = new_challenge_id(a.customer_id)
                digest = digest_of(a.customer_id)
                code = ""
                if s.callback_mode == "code":
                    code = "".join(secrets.choice("0123456789") for _ in range(s.callback_code_digits))
                create_keys, create_args = scripts.create_challenge_call(
                    keys,
                    now=now,
                    events_ms=s.events_retention_seconds * 1000,
                    record_ttl_ms=expires_ms - now.ms + retention_ms,
                    challenge_id=cid,
                    client=CLIENT,
                    customer_id=a.customer_id,
                    doc=doc_head + digest + doc_tail,
                    methods=methods_json,
                    attempts=s.challenge_attempts,
                    expires_ms=expires_ms,
                    expires_iso=rfc3339(expires_ms),
                    request_hash="",
                    idempotency_key=None,
                    numbers=s.callback_numbers,
                    code=code,
                    policy=limits.create_args(s, now.ms),
                )
                calls.append(("script", "create_challenge", create_keys, create_args))
                current.append(Challenge(cid, a, digest))
            for ch, result in zip(current, self._raw(calls), strict=True):
                created = scripts.created_outcome(result)
                if created.status != "ok":
                    raise RuntimeError(f"create_challenge answered {created.status}")
                ch.line = created.line
                made.append(ch)
        return made

    def verify(self, challenges: Sequence[Challenge]) -> list[Challenge]:
        """Verify by TOTP (the step after each customer's last), as ``Challenges.verify_totp``."""
        s = self.settings
        retention_ms = s.record_retention_seconds * 1000
        done = []
        for batch in self._batches(challenges):
            now = self._now()
            pipe = self.client.pipeline(transaction=False)
            for ch in batch:
                a = ch.customer
                keys = self.keys.for_customer(a.customer_id)
                step = a.last_step + 1
                self._run(
                    pipe,
                    "verify_totp",
                    *scripts.verify_totp_call(
                        keys,
                        challenge_id=ch.id,
                        now=now,
                        events_ms=s.events_retention_seconds * 1000,
                        retention_ms=retention_ms,
                        client=CLIENT,
                        policy=policy_arg(s),
                        sealed=a.sealed,
                        steps=str(step),
                    ),
                )
                a.last_step = step
            for ch, result in zip(batch, pipe.execute(), strict=True):
                try:
                    if scripts.judged_outcome(result, counts_attempts=True).status == "ok":
                        done.append(ch)
                except ApiError:
                    pass  # refused (e.g. a step already used): not verified
        return done


def _digest_template(kind: str, amount: int, currency: str, payee: dict[str, Any]) -> Any:
    """``transaction_digest`` for many customers at once: the canonical JSON is built around the
    customer id (checked once against the real function)."""
    import hashlib

    head, tail = models.canonical_json(
        {"amount": amount, "currency": currency, "customer_id": "\x00", "kind": kind, "payee": payee}
    ).split(b'"\\u0000"')

    def digest(customer_id: str) -> str:
        quoted = json.dumps(customer_id, ensure_ascii=False).encode()
        return hashlib.sha256(head + quoted + tail).hexdigest()

    if digest("bench-check") != transaction_digest("bench-check", kind, amount, currency, payee):
        raise RuntimeError("the digest template no longer matches transaction_digest")
    return digest


# -- many at once ------------------------------------------------------------------------------

# Background challenges by the million: the gateway's own put_customer and create_challenge
# scripts, word for word, each wrapped as a Lua function and called in a loop inside one
# EVALSHA per batch. The loop builds the keys as ``authgw.keys`` does (checked from Python
# after each batch), which a production script never does, so this runs on a single
# redis-server only; it spares two cores the Python packing of a million script calls.
BULK_LOOP = """
local prefix, now_ms, now_iso, maxlen, record_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local client, doc_head, doc_tail, attempts = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local expires_ms, expires_iso, pool = ARGV[10], ARGV[11], ARGV[12]
local limit_defaults, day_windows, step_up = ARGV[14], ARGV[15], ARGV[16]
local made = 0
for i = 17, #ARGV, 6 do
  local customer_id, tag, id, digest, phone = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local bucket = prefix .. ':{b:' .. ARGV[i + 5] .. '}'
  local base = bucket .. ':c:' .. tag
  local tail = {bucket .. ':pending', bucket .. ':locked', bucket .. ':outbox'}  -- take_bucket
  redis.call('SADD', prefix .. ':{p:' .. phone .. '}:customers', customer_id)
  local put = put_customer({base .. ':customer', base .. ':events', unpack(tail)},
                           {customer_id, '["' .. phone .. '"]', 'JP', now_iso, maxlen, client})
  if put[1] ~= 'ok' then return {'put_customer', customer_id, put[1]} end
  local created = create_challenge(
    {base .. ':customer', base .. ':open', base .. ':events', base .. ':lines', base .. ':ch:' .. id,
     base .. ':usage', base .. ':payees', unpack(tail)},
    {now_ms, now_iso, maxlen, record_ttl, id, client, customer_id, doc_head .. digest .. doc_tail, '',
     attempts, expires_ms, expires_iso, '', pool, '', limit_defaults, day_windows, step_up})
  if created[1] ~= 'ok' then return {'create_challenge', customer_id, created[1]} end
  made = made + 1
end
return {'ok', made}
"""


def bulk_script() -> str:
    sources = load_scripts()
    parts = []
    for name in ("put_customer", "create_challenge"):
        parts.append(f"local function {name}(KEYS, ARGV)\n{sources[name]}\nend\n")
    return "".join(parts) + BULK_LOOP


def _background_part(job: tuple[str, Settings, str, int, int, int]) -> int:
    url, settings, label, start, count, ttl = job
    import redis

    from authgw.identifiers import bucket_of_tag, customer_tag

    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        loader = Loader(client, settings)
        script = client.register_script(bulk_script())
        body = transfer_body("template", None, ttl)
        request, payee = models.parse_challenge(body)
        digest_of = _digest_template(request.kind, request.amount, request.currency, payee)
        s = settings
        retention_ms = s.record_retention_seconds * 1000
        pool = json.dumps(list(s.callback_numbers))
        for first in range(start, start + count, 1000):
            now = loader._now()
            now_ms, now_iso = now.ms, now.iso
            expires_ms = now_ms + ttl * 1000
            expires_iso = rfc3339(expires_ms)
            doc = document(request, payee, "\x00", s.challenge_attempts, s.callback_mode)
            head, tail = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).split("\\u0000")
            args: list[Any] = [
                s.key_prefix,
                now_ms,
                now_iso,
                s.events_retention_seconds * 1000,
                ttl * 1000 + retention_ms,
                CLIENT,
                head,
                tail,
                s.challenge_attempts,
                expires_ms,
                expires_iso,
                pool,
                retention_ms,
                *limits.create_args(s, now_ms),
            ]
            ids = []
            for n in range(first, min(first + 1000, start + count)):
                customer_id = f"bench-{label}-{n}"
                cid = new_challenge_id(customer_id)
                ids.append((customer_id, cid))
                tag = customer_tag(customer_id)
                args += [
                    customer_id,
                    tag,
                    cid,
                    digest_of(customer_id),
                    phone_of(n),
                    f"{bucket_of_tag(tag):04d}",
                ]
            result = script(keys=[], args=args)
            if result[0] != "ok":
                raise RuntimeError(f"bulk load: {result!r}")
            # The loop built its key names itself: check one against authgw.keys.
            customer_id, cid = ids[-1]
            keys = loader.keys.for_customer(customer_id)
            if not client.exists(keys.challenge(cid)) or client.zscore(keys.pending_index, cid) is None:
                raise RuntimeError("bulk load: the loop's key names differ from authgw.keys")
    finally:
        client.close()
    return count


def background(
    url: str,
    settings: Settings,
    label: str,
    start: int,
    count: int,
    ttl: int = 900,
    processes: int = 2,
    chunk: int = 20_000,
) -> None:
    """``count`` customers with one phone, each with one pending challenge, numbered from
    ``start`` (see ``BULK_LOOP``), by a few processes so that Python works while Redis runs."""
    import multiprocessing

    jobs = [
        (url, settings, label, s, min(chunk, start + count - s), ttl)
        for s in range(start, start + count, chunk)
    ]
    if len(jobs) == 1:
        _background_part(jobs[0])
        return
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        for _ in pool.imap_unordered(_background_part, jobs):
            pass


def background_actors(label: str, start: int, count: int) -> list[Actor]:
    return [Actor(f"bench-{label}-{n}", phone_of(n)) for n in range(start, start + count)]
