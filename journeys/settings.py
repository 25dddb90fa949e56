"""All configuration in one place, read from the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    temporal_address: str = Field("localhost:7233", validation_alias=_env("TEMPORAL_ADDRESS"))
    temporal_namespace: str = Field("default", validation_alias=_env("TEMPORAL_NAMESPACE"))
    task_queue: str = Field("journeys", validation_alias=_env("JOURNEYS_TASK_QUEUE"))
    database_url: str = Field(
        "postgresql://postgres@localhost/postgres", validation_alias=_env("DATABASE_URL")
    )
    smtp_url: str = Field("smtp://localhost:1025", validation_alias=_env("SMTP_URL"))
    api_key: str = Field("", validation_alias=_env("JOURNEYS_API_KEY"))
    secret: str = Field(
        "", validation_alias=_env("JOURNEYS_SECRET"), description="HMAC key for tracking tokens"
    )
    public_url: str = Field(
        "http://localhost:8000",
        validation_alias=_env("JOURNEYS_PUBLIC_URL"),
        description="base of tracking and unsubscribe links",
    )
    mail_from: str = Field(
        "Journeys <journeys@localhost>", validation_alias=_env("JOURNEYS_MAIL_FROM")
    )
    dev_mail_dir: Path | None = Field(
        None,
        validation_alias=_env("JOURNEYS_DEV_MAIL_DIR"),
        description="the dev SMTP sink's folder, served at /dev/mail",
    )
    log_level: str = Field("info", validation_alias=_env("JOURNEYS_LOG_LEVEL"))


@lru_cache
def get_settings() -> Settings:
    return Settings()
