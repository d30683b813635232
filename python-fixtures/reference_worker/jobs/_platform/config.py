"""Platform settings: a pydantic-settings object, built once when the module is imported (in each forked
work horse, since RQ's parent process never imports the job modules). Environment variables are read
case-insensitively, plus a `.env` in the working directory if there is one, as the platform does."""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic_settings import BaseSettings, SettingsConfigDict


class PlatformSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    DATABASE_URL: str = "postgresql://postgres:postgres@localhost:5432/enterprise_rag"
    REDIS_URL: str = "redis://localhost:6379/0"

    SUPABASE_URL: str = ""
    SUPABASE_SERVICE_ROLE_KEY: str = ""
    SUPABASE_KEY: str = ""
    SUPABASE_STORAGE_BUCKET: str = "documents"

    OPENAI_API_KEY: str = ""
    EMBEDDING_MODEL: str = "text-embedding-3-small"
    EMBEDDING_DIM: int = 1536

    DAILY_TOKEN_LIMIT: int = 100000
    RESERVATION_TTL_SECONDS: int = 600

    @property
    def storage_key(self) -> str:
        """The service-role key when set, else the anon key."""
        return self.SUPABASE_SERVICE_ROLE_KEY or self.SUPABASE_KEY


settings = PlatformSettings()


def utc_today() -> date:
    return datetime.now(UTC).date()
