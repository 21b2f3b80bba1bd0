"""Configuration: ``config/defaults.toml``, then an optional TOML file, then the environment.

``load_settings()`` is called by ``create_app`` and the CLI, never at import. A bad value or a
missing secret raises ``ConfigError`` naming the setting, and the gateway does not start.
"""

from __future__ import annotations

import os
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

import phonenumbers

from authgw.errors import ConfigError

ENV_PREFIX = "AUTHGW_"
CALLBACK_MODES = ("reject", "confirm", "code")
LOCKOUT_MODES = ("permanent", "temporary", "mixed")
TOTP_ALGORITHMS = ("SHA1", "SHA256", "SHA512")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
ATTESTATION_MINIMUMS = ("A", "B", "C", "none")
# Settings that no longer exist, and what to do instead: naming one (in the environment or the
# config file) stops start-up rather than leaving a policy silently changed.
REMOVED = {
    "events_max_per_customer": "was removed: events are kept by age, see AUTHGW_EVENTS_RETENTION_SECONDS",
    "callback_refuse_failed_attestation": "was replaced by AUTHGW_CALLBACK_MIN_ATTESTATION (A, B, C "
    "or none; default none): a failed attestation is now always refused; remove this setting",
}


@dataclass(frozen=True)
class ApiKey:
    """A client's key, kept only as its SHA-256 digest."""

    client: str
    digest: bytes


@dataclass(frozen=True)
class Settings:
    redis_url: str
    key_prefix: str
    redis_timeout: float
    redis_pool_size: int
    lockout_threshold: int
    challenge_attempts: int
    totp_issuer: str
    totp_digits: int
    totp_period: int
    totp_algorithm: str
    default_ttl_seconds: int
    record_retention_seconds: int
    events_retention_seconds: int
    default_region: str
    allow_voip: bool
    public_url: str
    callback_numbers: tuple[str, ...]
    callback_mode: str
    callback_code_digits: int
    redis_wait_replicas: int
    redis_wait_timeout: float
    rate_limit_window_seconds: int
    rate_limit_client: int
    rate_limit_customer: int
    rate_limit_caller: int
    api_keys: tuple[ApiKey, ...] = field(repr=False)
    secret_keys: tuple[bytes, ...] = field(repr=False)
    twilio_auth_token: str = field(repr=False)
    # Tokens Twilio signs with, the current (first) one included; any one validates.
    twilio_auth_tokens: tuple[str, ...] = field(default=(), repr=False)
    # ``Authorization: Bearer <token>`` for /metrics, held as a digest; None: /metrics is open.
    metrics_token: ApiKey | None = field(default=None, repr=False)
    # Phone callback (authgw.webhooks).
    callback_voice: str = "Polly.Mizuki"
    callback_confirm_above: int = 0
    callback_min_attestation: str = "none"
    call_retention_seconds: int = 30 * 86400
    # Roles (authgw.auth): the operator clients; empty: roles are off, every client has both.
    operators: tuple[str, ...] = ()
    # Locks and fraud response (authgw.challenges.locks, authgw.webhooks.selflock).
    lockout_mode: str = "permanent"
    lockout_wait_seconds: int = 900
    lockout_wait_max_seconds: int = 86400
    lockout_max_temporary: int = 3
    fraud_report_locks: bool = True
    bank_contact_number: str = ""  # national format, e.g. 0120-123-456 ('' none)
    lock_numbers: tuple[str, ...] = ()
    # Readiness: the host's clock may be this far off the store's before /readyz says 503.
    clock_skew_max_seconds: float = 2.0
    # The operator console (authgw.console): its language until an operator picks one.
    console_language: str = "ja"
    # Set by `authgw serve --dev`: serves /demo/ and lets the console's cookie go without
    # Secure on a loopback public URL.
    dev: bool = False
    # Limits and step-up (authgw.challenges.limits). 0: no limit.
    limit_transfer_per_transaction: int = 0
    limit_transfer_daily: int = 0
    limit_payeasy_per_transaction: int = 0
    limit_payeasy_daily: int = 0
    limit_raise_delay_seconds: int = 0
    timezone: str = "Asia/Tokyo"
    new_phone_hold_seconds: int = 0
    new_payee_methods: tuple[str, ...] = ()
    step_up_amount: int = 0
    step_up_methods: tuple[str, ...] = ()
    dual_factor_amount: int = 0
    # Webhooks to the bank (authgw.outbound).
    webhook_allow_http: bool = False
    webhook_retry_schedule: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)


def _defaults() -> dict[str, Any]:
    text = resources.files("authgw.config").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool):
        raise ConfigError(name, "must be a whole number")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(name, "must be a whole number") from None
    if not low <= number <= high:
        raise ConfigError(name, f"must be between {low} and {high}")
    return number


def _as_float(name: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, "must be a number") from None
    if not low <= number <= high:
        raise ConfigError(name, f"must be between {low} and {high}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, "must be 1 or 0")


def _as_attestation(name: str, value: Any) -> str:
    text = str(value).strip()
    for minimum in ATTESTATION_MINIMUMS:
        if text.lower() == minimum.lower():
            return minimum
    raise ConfigError(name, "must be A, B, C or none")


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """Parse ``name=secret,name=secret``; secrets are hashed at once and never kept."""
    import hashlib

    keys: list[ApiKey] = []
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        client, sep, secret = part.partition("=")
        client = client.strip()
        if not sep or not client or not secret:
            raise ConfigError("AUTHGW_API_KEYS", "expected name=secret,name=secret")
        if len(secret) < 16:
            raise ConfigError("AUTHGW_API_KEYS", f"the key of {client!r} is shorter than 16 characters")
        if client in seen:
            raise ConfigError("AUTHGW_API_KEYS", f"client {client!r} is named twice")
        seen.add(client)
        keys.append(ApiKey(client, hashlib.sha256(secret.encode()).digest()))
    return tuple(keys)


def parse_secret_keys(text: str) -> tuple[bytes, ...]:
    """``AUTHGW_SECRET_KEY``: one or more comma-separated keys; the first encrypts, all decrypt."""
    keys = tuple(k.strip().encode() for k in text.split(",") if k.strip())
    for key in keys:
        if len(key) < 32:
            raise ConfigError("AUTHGW_SECRET_KEY", "each key must be at least 32 characters")
    return keys


def parse_twilio_tokens(text: str) -> tuple[str, ...]:
    """``AUTHGW_TWILIO_AUTH_TOKEN``: comma-separated; the first is current, any validates."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def parse_metrics_token(text: str) -> ApiKey | None:
    """``AUTHGW_METRICS_TOKEN``: one bearer token, hashed at once; empty: /metrics is open."""
    import hashlib

    token = text.strip()
    if not token:
        return None
    if len(token) < 16 or any(c.isspace() or c == "," for c in token):
        raise ConfigError(
            "AUTHGW_METRICS_TOKEN", "must be one token of at least 16 characters, no spaces or commas"
        )
    return ApiKey("metrics", hashlib.sha256(token.encode()).digest())


def parse_numbers(name: str, text: str, region: str) -> tuple[str, ...]:
    numbers: list[str] = []
    for raw in (p.strip() for p in text.split(",")):
        if not raw:
            continue
        try:
            parsed = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            raise ConfigError(name, f"{raw!r} is not a phone number") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ConfigError(name, f"{raw!r} is not a valid phone number")
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        if e164 in numbers:
            raise ConfigError(name, f"{raw!r} is listed twice")
        numbers.append(e164)
    return tuple(numbers)


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Merge defaults, ``AUTHGW_CONFIG_FILE``, the environment and ``overrides`` (tests)."""
    env = os.environ if environ is None else environ
    for old, why in REMOVED.items():
        if env.get(ENV_PREFIX + old.upper()) is not None:
            raise ConfigError(ENV_PREFIX + old.upper(), why)
    raw: dict[str, Any] = _defaults()
    for secret in ("api_keys", "secret_key", "twilio_auth_token", "metrics_token"):
        raw.setdefault(secret, "")
    config_file = env.get(ENV_PREFIX + "CONFIG_FILE")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                from_file = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("AUTHGW_CONFIG_FILE", str(exc)) from None
        for old, why in REMOVED.items():
            if old in from_file:
                raise ConfigError("AUTHGW_CONFIG_FILE", f"{old} {why}")
        unknown = set(from_file) - set(raw)
        if unknown:
            raise ConfigError("AUTHGW_CONFIG_FILE", f"unknown settings {sorted(unknown)}")
        raw.update(from_file)
    for key in list(raw):
        value = env.get(ENV_PREFIX + key.upper())
        if value is not None:
            raw[key] = value
    if overrides:
        unknown = set(overrides) - set(raw)
        if unknown:
            raise ConfigError("config", f"unknown settings {sorted(unknown)}")
        raw.update(overrides)
    return _validate(raw)


def _region(name: str, region: str) -> str:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(name, f"{region!r} is not a region code")
    return region


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}")
    return value


def _validate(raw: dict[str, Any]) -> Settings:
    def env_name(key: str) -> str:
        return ENV_PREFIX + key.upper()

    region = _region(env_name("default_region"), str(raw["default_region"]).upper())
    mode = _one_of(env_name("callback_mode"), str(raw["callback_mode"]).strip().lower(), CALLBACK_MODES)
    algorithm = _one_of(env_name("totp_algorithm"), str(raw["totp_algorithm"]).upper(), TOTP_ALGORITHMS)
    public_url = str(raw["public_url"]).strip().rstrip("/")
    if public_url and not public_url.startswith(("http://", "https://")):
        raise ConfigError(env_name("public_url"), "must start with http:// or https://")
    redis_url = str(raw["redis_url"]).strip()
    scheme = redis_url.partition("://")[0]
    if redis_url and scheme not in REDIS_SCHEMES:
        raise ConfigError(
            env_name("redis_url"), f"scheme {scheme!r} is not one of {', '.join(REDIS_SCHEMES)}"
        )
    prefix = str(raw["key_prefix"])
    if not prefix or any(c in prefix for c in "{} "):
        raise ConfigError(env_name("key_prefix"), "must be non-empty, without braces or spaces")

    api_keys = raw["api_keys"]
    secret_key = raw["secret_key"]
    twilio_tokens = parse_twilio_tokens(str(raw["twilio_auth_token"]))
    settings = Settings(
        redis_url=redis_url,
        key_prefix=prefix,
        redis_timeout=_as_float(env_name("redis_timeout"), raw["redis_timeout"], 0.05, 30),
        redis_pool_size=_as_int(env_name("redis_pool_size"), raw["redis_pool_size"], 1, 10_000),
        lockout_threshold=_as_int(env_name("lockout_threshold"), raw["lockout_threshold"], 1, 100),
        challenge_attempts=_as_int(env_name("challenge_attempts"), raw["challenge_attempts"], 1, 10),
        totp_issuer=str(raw["totp_issuer"]),
        totp_digits=_as_int(env_name("totp_digits"), raw["totp_digits"], 6, 8),
        totp_period=_as_int(env_name("totp_period"), raw["totp_period"], 15, 120),
        totp_algorithm=algorithm,
        default_ttl_seconds=_as_int(env_name("default_ttl_seconds"), raw["default_ttl_seconds"], 60, 900),
        record_retention_seconds=_as_int(
            env_name("record_retention_seconds"), raw["record_retention_seconds"], 86400, 400 * 86400
        ),
        events_retention_seconds=_as_int(
            env_name("events_retention_seconds"), raw["events_retention_seconds"], 86400, 3650 * 86400
        ),
        default_region=region,
        allow_voip=_as_bool(env_name("allow_voip"), raw["allow_voip"]),
        public_url=public_url,
        callback_numbers=parse_numbers(env_name("callback_numbers"), str(raw["callback_numbers"]), region),
        callback_mode=mode,
        callback_code_digits=_as_int(env_name("callback_code_digits"), raw["callback_code_digits"], 4, 6),
        redis_wait_replicas=_as_int(env_name("redis_wait_replicas"), raw["redis_wait_replicas"], 0, 16),
        redis_wait_timeout=_as_float(env_name("redis_wait_timeout"), raw["redis_wait_timeout"], 0.001, 30),
        rate_limit_window_seconds=_as_int(
            env_name("rate_limit_window_seconds"), raw["rate_limit_window_seconds"], 1, 86400
        ),
        rate_limit_client=_as_int(env_name("rate_limit_client"), raw["rate_limit_client"], 0, 10**9),
        rate_limit_customer=_as_int(env_name("rate_limit_customer"), raw["rate_limit_customer"], 0, 10**9),
        rate_limit_caller=_as_int(env_name("rate_limit_caller"), raw["rate_limit_caller"], 0, 10**9),
        api_keys=api_keys if isinstance(api_keys, tuple) else parse_api_keys(str(api_keys)),
        secret_keys=secret_key if isinstance(secret_key, tuple) else parse_secret_keys(str(secret_key)),
        twilio_auth_token=twilio_tokens[0] if twilio_tokens else "",
        twilio_auth_tokens=twilio_tokens,
        metrics_token=parse_metrics_token(str(raw["metrics_token"])),
        callback_voice=str(raw["callback_voice"]).strip(),
        callback_confirm_above=_as_int(
            env_name("callback_confirm_above"), raw["callback_confirm_above"], 0, 99_999_999_999
        ),
        callback_min_attestation=_as_attestation(
            env_name("callback_min_attestation"), raw["callback_min_attestation"]
        ),
        call_retention_seconds=_as_int(
            env_name("call_retention_seconds"), raw["call_retention_seconds"], 86400, 400 * 86400
        ),
        operators=tuple(dict.fromkeys(n.strip() for n in str(raw["operators"]).split(",") if n.strip())),
        **_lock_settings(raw, region),
        clock_skew_max_seconds=_as_float(
            env_name("clock_skew_max_seconds"), raw["clock_skew_max_seconds"], 0.1, 3600
        ),
        **_console_settings(raw),
        **_limit_settings(raw),
        **_webhook_settings(raw),
    )
    clients = {key.client for key in settings.api_keys}
    for name in settings.operators:
        if name not in clients:
            raise ConfigError("AUTHGW_OPERATORS", f"names {name!r}, which has no API key")
    if settings.redis_wait_replicas and settings.redis_wait_timeout >= settings.redis_timeout:
        raise ConfigError("AUTHGW_REDIS_WAIT_TIMEOUT", "must be shorter than AUTHGW_REDIS_TIMEOUT")
    if not settings.api_keys:
        raise ConfigError("AUTHGW_API_KEYS", "is not set: no client could call the gateway")
    if not settings.secret_keys:
        raise ConfigError("AUTHGW_SECRET_KEY", "is not set: TOTP secrets could not be encrypted")
    if settings.callback_numbers and not settings.twilio_auth_token:
        raise ConfigError("AUTHGW_TWILIO_AUTH_TOKEN", "is not set: phone webhooks could not be checked")
    if settings.callback_numbers and not settings.public_url:
        raise ConfigError("AUTHGW_PUBLIC_URL", "is not set: phone webhooks could not be checked")
    if settings.lock_numbers and not (settings.twilio_auth_token and settings.public_url):
        raise ConfigError("AUTHGW_LOCK_NUMBERS", "need AUTHGW_TWILIO_AUTH_TOKEN and AUTHGW_PUBLIC_URL")
    if set(settings.lock_numbers) & set(settings.callback_numbers):
        raise ConfigError("AUTHGW_LOCK_NUMBERS", "must not be designated numbers too")
    return settings


def _lock_settings(raw: dict[str, Any], region: str) -> dict[str, Any]:
    """The settings of locks and fraud response (API.md Additions)."""
    mode = _one_of("AUTHGW_LOCKOUT_MODE", str(raw["lockout_mode"]).strip().lower(), LOCKOUT_MODES)
    wait = _as_int("AUTHGW_LOCKOUT_WAIT_SECONDS", raw["lockout_wait_seconds"], 1, 400 * 86400)
    wait_max = _as_int("AUTHGW_LOCKOUT_WAIT_MAX_SECONDS", raw["lockout_wait_max_seconds"], 1, 400 * 86400)
    if wait_max < wait:
        raise ConfigError("AUTHGW_LOCKOUT_WAIT_MAX_SECONDS", "must be at least AUTHGW_LOCKOUT_WAIT_SECONDS")
    contact = str(raw["bank_contact_number"]).strip()
    if contact:
        try:
            parsed = phonenumbers.parse(contact, region)
        except phonenumbers.NumberParseException:
            raise ConfigError("AUTHGW_BANK_CONTACT_NUMBER", f"{contact!r} is not a phone number") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ConfigError("AUTHGW_BANK_CONTACT_NUMBER", f"{contact!r} is not a valid phone number")
        contact = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return {
        "lockout_mode": mode,
        "lockout_wait_seconds": wait,
        "lockout_wait_max_seconds": wait_max,
        "lockout_max_temporary": _as_int(
            "AUTHGW_LOCKOUT_MAX_TEMPORARY", raw["lockout_max_temporary"], 0, 1000
        ),
        "fraud_report_locks": _as_bool("AUTHGW_FRAUD_REPORT_LOCKS", raw["fraud_report_locks"]),
        "bank_contact_number": contact,
        "lock_numbers": parse_numbers("AUTHGW_LOCK_NUMBERS", str(raw["lock_numbers"]), region),
    }


CONSOLE_LANGUAGES = ("ja", "en")


def _console_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings of the operator console and the demo (authgw.console)."""
    language = _one_of(
        "AUTHGW_CONSOLE_LANGUAGE", str(raw["console_language"]).strip().lower(), CONSOLE_LANGUAGES
    )
    return {"console_language": language, "dev": _as_bool("AUTHGW_DEV", raw["dev"])}


def _limit_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings of limits and step-up (API.md Additions, "Limits and step-up")."""
    out: dict[str, Any] = {}
    for name in (
        "limit_transfer_per_transaction",
        "limit_transfer_daily",
        "limit_payeasy_per_transaction",
        "limit_payeasy_daily",
    ):
        out[name] = _as_int(ENV_PREFIX + name.upper(), raw[name], 0, 99_999_999_999)
    out["limit_raise_delay_seconds"] = _as_int(
        "AUTHGW_LIMIT_RAISE_DELAY_SECONDS", raw["limit_raise_delay_seconds"], 0, 400 * 86400
    )
    out["new_phone_hold_seconds"] = _as_int(
        "AUTHGW_NEW_PHONE_HOLD_SECONDS", raw["new_phone_hold_seconds"], 0, 400 * 86400
    )
    out["step_up_amount"] = _as_int("AUTHGW_STEP_UP_AMOUNT", raw["step_up_amount"], 0, 99_999_999_999)
    out["dual_factor_amount"] = _as_int(
        "AUTHGW_DUAL_FACTOR_AMOUNT", raw["dual_factor_amount"], 0, 99_999_999_999
    )
    for key in ("new_payee_methods", "step_up_methods"):
        methods = tuple(dict.fromkeys(m.strip() for m in str(raw[key]).split(",") if m.strip()))
        if any(m not in ("callback", "totp") for m in methods):
            raise ConfigError(ENV_PREFIX + key.upper(), "must list callback and/or totp")
        out[key] = methods
    if out["step_up_amount"] and not out["step_up_methods"]:
        raise ConfigError("AUTHGW_STEP_UP_METHODS", "must be set with AUTHGW_STEP_UP_AMOUNT")
    name = str(raw["timezone"]).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ConfigError("AUTHGW_TIMEZONE", f"{name!r} is not an IANA time zone") from None
    out["timezone"] = name
    return out


def _webhook_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """The settings of webhooks to the bank (API.md Additions, "Webhooks to the bank")."""
    name = "AUTHGW_WEBHOOK_RETRY_SCHEDULE"
    parts = [p.strip() for p in str(raw["webhook_retry_schedule"]).split(",")]
    if not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise ConfigError(name, "must be whole seconds, comma-separated (e.g. 5,300,1800)")
    if len(parts) > 50:
        raise ConfigError(name, "may list at most 50 waits")
    schedule = tuple(_as_int(name, p, 1, 7 * 86400) for p in parts)
    return {
        "webhook_allow_http": _as_bool("AUTHGW_WEBHOOK_ALLOW_HTTP", raw["webhook_allow_http"]),
        "webhook_retry_schedule": schedule,
    }


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]
