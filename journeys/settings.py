"""All configuration in one place, read from the environment.

Layers, so that each process needs only what it uses: `DatabaseSettings`
(`journeys migrate`), `TemporalSettings` (`journeys ops`), `Settings` (the worker:
both, SMTP, the token secret) and `ApiSettings` (the API: also the API key). A
missing or empty secret is refused by the class itself, naming the variable; the
error does not repeat the value refused (it may be a secret).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from journeys.codec import parse_keys


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


Secret = Annotated[SecretStr, Field(min_length=1)]

# The dev server's web UI (`journeys dev`, `temporal server start-dev`).
DEV_UI_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
ORIGIN = re.compile(r"https?://[^\s/?#*@]+")


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

    @field_validator("payload_keys")
    @classmethod
    def _check_payload_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_keys(value.get_secret_value())  # a PayloadKeyError says what is wrong
        return value


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
    secret: Secret = Field(
        validation_alias=_env("JOURNEYS_SECRET"), description="HMAC key for tracking tokens"
    )
    public_url: str = Field(
        "http://localhost:8000",
        validation_alias=_env("JOURNEYS_PUBLIC_URL"),
        description="base of tracking and unsubscribe links",
    )
    mail_from: str = Field(
        "Journeys <journeys@localhost>", validation_alias=_env("JOURNEYS_MAIL_FROM")
    )
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


def missing_variables(error: ValidationError) -> list[str]:
    """The environment variables a settings class refused as missing or empty."""
    return [
        str(e["loc"][0])
        for e in error.errors()
        if e["type"] in ("missing", "too_short") and e["loc"]
    ]
