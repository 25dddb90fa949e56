"""All configuration in one place, read from the environment.

Layers, so that each process needs only what it uses: `DatabaseSettings`
(`journeys migrate`), `TemporalSettings` (`journeys ops`), `Settings` (the worker:
both, SMTP, the token secret) and `ApiSettings` (the API: also the API key). A
missing or empty secret is refused by the class itself, naming the variable; the
error does not repeat the value refused (it may be a secret).
"""

from __future__ import annotations

import re
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import idna
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from journeys.codec import parse_keys


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


Secret = Annotated[SecretStr, Field(min_length=1)]

# The dev server's web UI (`journeys dev`, `temporal server start-dev`).
DEV_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
ORIGIN = re.compile(r"https?://[^\s/?#*@]+")


_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def check_domain(domain: str) -> str:
    """A domain name in lower case (JOURNEYS_BOUNCE_DOMAIN), or ValueError saying why not."""
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise ValueError(f"{domain[:100]!r} is not a domain name such as bounces.example.com")
    return value


# What an address of JOURNEYS_MAIL_FROM may not contain (a quoted local part is refused
# too: it is allowed by RFC 5321, and seen on no sending domain).
_NOT_IN_ADDRESS = re.compile(r'[\s<>()\[\],;:\\"]')


def check_sender(value: str) -> str:
    """JOURNEYS_MAIL_FROM: one address, with or without a display name (`Shop
    <news@shop.example>`), that every mail can go out from (its From, its Message-ID's
    domain, its envelope sender); else ValueError saying why. Checked when the worker
    starts: a sender that cannot go out had failed every send, for good."""
    text = value.strip()
    example = "an address such as 'Shop <news@shop.example>' or news@shop.example"
    if not text or "\r" in text or "\n" in text or "\x00" in text:
        raise ValueError(f"JOURNEYS_MAIL_FROM must be one line: {example}")
    found = getaddresses([text])
    _, address = parseaddr(text)
    local, at, domain = address.rpartition("@")
    if len(found) != 1 or not at or not local or _NOT_IN_ADDRESS.search(address):
        raise ValueError(f"JOURNEYS_MAIL_FROM: {text[:100]!r} is not {example}")
    if len(local.encode()) > 64:
        raise ValueError("JOURNEYS_MAIL_FROM: the local part is longer than 64 octets")
    try:
        ascii_domain = (
            domain if domain.isascii() else idna.encode(domain, uts46=True).decode("ascii")
        )
        check_domain(ascii_domain)
    except (ValueError, idna.IDNAError, UnicodeError):
        raise ValueError(
            f"JOURNEYS_MAIL_FROM: {domain[:100]!r} is not a domain name such as shop.example"
        ) from None
    return text


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "postgresql://postgres@localhost/postgres", validation_alias=_env("DATABASE_URL")
    )


class TemporalSettings(BaseSettings):
    """What a process needs to talk to Temporal (`journeys ops` needs no more)."""

    # A refused value may be a key (JOURNEYS_PAYLOAD_KEYS): errors do not repeat it.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    temporal_address: str = Field("localhost:7233", validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field("default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    payload_keys: SecretStr | None = Field(
        None,
        validation_alias=_env("JOURNEYS_PAYLOAD_KEYS"),
        description="payload encryption keys, <key id>:<base64 of 32 bytes>, comma-separated;"
        " the first encrypts, all decrypt (journeys.codec)",
    )

    # A secured cluster (self-hosted with TLS, or Temporal Cloud). The Temporal CLI's
    # names for the same settings (`temporal options`) are accepted too, so that one
    # environment serves `journeys` and `temporal` alike.
    temporal_tls: bool | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS"),
        description="TLS to the frontend; when unset, on as soon as a certificate, a CA, a"
        " server name or an API key is set",
    )
    temporal_tls_cert: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_CLIENT_CERT_PATH"),
        description="PEM client certificate (mTLS), with TEMPORAL_TLS_KEY",
    )
    temporal_tls_key: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CLIENT_KEY_PATH"),
        description="PEM private key of TEMPORAL_TLS_CERT (not encrypted)",
    )
    temporal_tls_ca: Path | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_CA", "TEMPORAL_TLS_SERVER_CA_CERT_PATH"),
        description="PEM CA the server's certificate is checked against (default: the"
        " system's roots)",
    )
    temporal_tls_server_name: str | None = Field(
        None,
        validation_alias=_env("TEMPORAL_TLS_SERVER_NAME"),
        description="the name the server's certificate must carry (and SNI), when it is not"
        " the host of TEMPORAL_ADDRESS",
    )
    temporal_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("TEMPORAL_API_KEY"),
        description="Temporal Cloud API key, sent as a bearer token (over TLS)",
    )

    @field_validator("payload_keys")
    @classmethod
    def _check_payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keys(value.get_secret_value())  # a PayloadKeyError says what is wrong
        return value

    @field_validator(
        "temporal_tls",
        "temporal_tls_cert",
        "temporal_tls_key",
        "temporal_tls_ca",
        "temporal_tls_server_name",
        "temporal_api_key",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # Deployment templates pass an optional variable they have no value for as "".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("temporal_tls_cert", "temporal_tls_key", "temporal_tls_ca")
    @classmethod
    def _check_pem_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        # Checked at start, so that a wrong mount is named here rather than surfacing as
        # a TLS handshake error. The message names the file, never its content.
        if path is None:
            return None
        variable, marker, what = PEM_FILES[str(info.field_name)]
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ValueError(
                f"{variable}: cannot read {path} ({exc.strerror or type(exc).__name__})"
            ) from None
        if b"-----BEGIN " not in content or marker not in content:
            raise ValueError(
                f"{variable}: {path} is not a PEM {what}"
                f" (no '-----BEGIN {marker.decode()}-----' line)"
            )
        if marker == b"PRIVATE KEY" and b"ENCRYPTED" in content:
            raise ValueError(f"{variable}: {path} is encrypted; give the key without a passphrase")
        return path

    @model_validator(mode="after")
    def _check_temporal_auth(self) -> Self:
        cert, key = self.temporal_tls_cert, self.temporal_tls_key
        if (cert is None) != (key is None):
            have, lack = (
                ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY")
                if key is None
                else ("TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CERT")
            )
            raise ValueError(
                f"{have} is set but {lack} is not: a client certificate needs its private key"
            )
        if cert is not None and self.temporal_api_key is not None:
            raise ValueError(
                "TEMPORAL_API_KEY and a client certificate (TEMPORAL_TLS_CERT, TEMPORAL_TLS_KEY)"
                " are both set: use one of them (Temporal Cloud accepts either)"
            )
        if self.temporal_tls is False:
            tls_only = [
                name
                for name, value in (
                    ("TEMPORAL_TLS_CERT", cert),
                    ("TEMPORAL_TLS_CA", self.temporal_tls_ca),
                    ("TEMPORAL_TLS_SERVER_NAME", self.temporal_tls_server_name),
                )
                if value is not None
            ]
            if tls_only:
                raise ValueError(
                    f"TEMPORAL_TLS is false, but {' and '.join(tls_only)} only apply over TLS"
                )
        return self

    @property
    def temporal_tls_enabled(self) -> bool:
        """TLS to Temporal: as TEMPORAL_TLS says, else whether anything TLS is set."""
        if self.temporal_tls is not None:
            return self.temporal_tls
        return any(
            value is not None
            for value in (
                self.temporal_tls_cert,
                self.temporal_tls_ca,
                self.temporal_tls_server_name,
                self.temporal_api_key,
            )
        )


# field: (its variable, what a PEM file of that kind contains, what to call it)
PEM_FILES = {
    "temporal_tls_cert": ("TEMPORAL_TLS_CERT", b"CERTIFICATE", "certificate"),
    "temporal_tls_key": ("TEMPORAL_TLS_KEY", b"PRIVATE KEY", "private key"),
    "temporal_tls_ca": ("TEMPORAL_TLS_CA", b"CERTIFICATE", "certificate"),
}


class Settings(DatabaseSettings, TemporalSettings):
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    task_queue: str = Field("journeys", validation_alias=_env("JOURNEYS_TASK_QUEUE"))
    smtp_url: str = Field("smtp://localhost:1025", validation_alias=_env("SMTP_URL"))
    smtp_connections: int = Field(
        8,
        ge=1,
        le=500,
        validation_alias=_env("SMTP_CONNECTIONS"),
        description="open connections to the relay per worker (mails in flight at once)",
    )
    # Worker versioning: with both, the worker serves one version of a Temporal Worker
    # Deployment, and a run stays on the version it started on (pinned) or moves to
    # the current one at its next task (auto-upgrade). README, "Operations".
    deployment_name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,100}$",
        validation_alias=_env("JOURNEYS_DEPLOYMENT"),
        description="the Worker Deployment this worker belongs to",
    )
    build_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        validation_alias=_env("JOURNEYS_BUILD_ID"),
        description="this worker's code: a git commit, a release",
    )
    versioning: Literal["pinned", "auto-upgrade"] = Field(
        "pinned", validation_alias=_env("JOURNEYS_VERSIONING")
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Self:
        if (self.deployment_name is None) != (self.build_id is None):
            raise ValueError(
                "set JOURNEYS_DEPLOYMENT and JOURNEYS_BUILD_ID together (worker versioning), "
                "or neither"
            )
        return self

    secret: Secret = Field(
        validation_alias=_env("JOURNEYS_SECRET"), description="HMAC key for tracking tokens"
    )
    public_url: str = Field(
        "http://localhost:8000",
        validation_alias=_env("JOURNEYS_PUBLIC_URL"),
        description="base of tracking and unsubscribe links",
    )
    mail_from: str = Field(
        "Journeys <journeys@localhost>",
        validation_alias=_env("JOURNEYS_MAIL_FROM"),
        description="every mail's sender unless its step names one, and its envelope sender"
        " without JOURNEYS_BOUNCE_DOMAIN",
    )

    @field_validator("mail_from")
    @classmethod
    def _check_mail_from(cls, value: str) -> str:
        return check_sender(value)

    sms_url: str | None = Field(
        None,
        validation_alias=_env("SMS_URL"),
        description="the SMS provider: twilio://<account sid>:<auth token>@api.twilio.com",
    )
    sms_sender: str = Field(
        "Journeys",
        validation_alias=_env("JOURNEYS_SMS_SENDER"),
        description="the sender of SMS steps without one (a number or up to 11 letters)",
    )
    phone_region: str = Field(
        "NL",
        validation_alias=_env("JOURNEYS_PHONE_REGION"),
        description="the country of phone numbers written without a country code",
    )
    dev_sms_dir: Path | None = Field(
        None,
        validation_alias=_env("JOURNEYS_DEV_SMS_DIR"),
        description="the dev SMS sink's folder, served at /dev/sms",
    )
    dev_mail_dir: Path | None = Field(
        None,
        validation_alias=_env("JOURNEYS_DEV_MAIL_DIR"),
        description="the dev SMTP sink's folder, served at /dev/mail",
    )
    default_time_zone: str = Field(
        "Europe/Amsterdam",
        validation_alias=_env("JOURNEYS_TIME_ZONE"),
        description="local times of contacts without a time_zone (IANA name)",
    )
    log_level: str = Field("info", validation_alias=_env("JOURNEYS_LOG_LEVEL"))
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        validation_alias=_env("JOURNEYS_METRICS_PORT"),
        description="port of `journeys worker`'s Prometheus endpoint (/metrics); 0: none",
    )
    worker_process: int = Field(
        0,
        ge=0,
        validation_alias=_env("JOURNEYS_WORKER_PROCESS"),
        description="this process's index under `journeys worker --processes N` (set by it)",
    )
    bounce_domain: str | None = Field(
        None,
        validation_alias=_env("JOURNEYS_BOUNCE_DOMAIN"),
        description="with it, a mail's envelope sender is bounces+<signed token>@<this domain>"
        " (VERP), and `journeys bounces serve` takes the notices sent there; without it, the"
        " sender's address",
    )

    @field_validator("bounce_domain", mode="before")
    @classmethod
    def _check_bounce_domain(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return None
            return check_domain(value)
        return value


class ApiSettings(Settings):
    api_key: Secret = Field(
        validation_alias=_env("JOURNEYS_API_KEY"),
        description="bearer key for the management endpoints",
    )
    webhook_secret: Secret | None = Field(
        None,
        validation_alias=_env("JOURNEYS_WEBHOOK_SECRET"),
        description="HMAC key of delivery reports (POST /webhooks/delivery)",
    )
    sns_topics: list[str] = Field(
        default_factory=list,
        validation_alias=_env("JOURNEYS_SNS_TOPICS"),
        description="ARNs of the SNS topics whose SES notifications are accepted",
    )
    temporal_ui_url: str = Field(
        "http://localhost:8233",
        validation_alias=_env("JOURNEYS_TEMPORAL_UI_URL"),
        description="the Temporal web UI, linked from the console's participant pages",
    )
    codec_origins: list[str] = Field(
        default_factory=lambda: list(DEV_UI_ORIGINS),
        validation_alias=_env("JOURNEYS_CODEC_ORIGINS"),
        description="origins of the Temporal web UIs allowed to call /codec (CORS)",
    )

    @field_validator("codec_origins")
    @classmethod
    def _check_codec_origins(cls, value: list[str]) -> list[str]:
        origins = [origin.strip().rstrip("/").lower() for origin in value]
        for origin in origins:
            if not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin[:100]!r} is not an origin such as http://localhost:8233"
                    " (scheme, host and port; no path, no '*')"
                )
        return origins


class BounceSettings(Settings):
    """`journeys bounces serve`: where notices come in (README, "Bounces")."""

    bounce_listen: str = Field(
        "127.0.0.1:2525",
        validation_alias=_env("JOURNEYS_BOUNCE_LISTEN"),
        description="host:port of the SMTP/LMTP listener the relay sends the bounce domain to;"
        " empty: no listener",
    )
    bounce_imap_url: SecretStr | None = Field(
        None,
        validation_alias=_env("JOURNEYS_BOUNCE_IMAP_URL"),
        description="imaps://user:password@host/mailbox: a mailbox to poll for notices",
    )
    bounce_imap_every: float = Field(
        60,
        ge=1,
        le=3600,
        validation_alias=_env("JOURNEYS_BOUNCE_IMAP_EVERY"),
        description="seconds between two polls of the mailbox",
    )

    @field_validator("bounce_imap_url", mode="before")
    @classmethod
    def _blank_imap_url(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


def missing_variables(error: ValidationError) -> list[str]:
    """The environment variables a settings class refused as missing or empty."""
    return [
        str(e["loc"][0])
        for e in error.errors()
        if e["type"] in ("missing", "too_short") and e["loc"]
    ]
