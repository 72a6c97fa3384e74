"""Settings of the advising API, read from the environment (`STUDENT_RISK_API_*`)."""

from __future__ import annotations

from pydantic import Field

from risk_model.config import Settings


class ApiSettings(Settings):
    """The runtime folder and store of `Settings`, plus how the API serves them."""

    api_host: str = Field("127.0.0.1", description="Address `student-risk serve` listens on.")
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64, description="API server processes.")
    api_max_records: int = Field(1000, ge=1, le=100_000, description="Most records one POST /v1/score may send.")
    api_max_body_bytes: int | None = Field(
        None,
        ge=1024,
        description="Largest request body accepted (413 above it); default: room for api_max_records "
        "records (8 KiB each) plus 64 KiB.",
    )
    api_max_page_size: int = Field(1000, ge=1, le=100_000, description="Most students one cohort page returns.")
    api_champion_ttl_seconds: float = Field(
        2.0, ge=0, description="How often the API looks for a newly promoted champion (0: every request)."
    )
    api_key_cache_seconds: float = Field(
        10.0, ge=0, description="How long the API trusts a checked key; a revoked key stops working within this."
    )
    api_durable_audit: bool = Field(
        False,
        description="PostgreSQL: wait for the WAL flush on each audit row (about 4 ms per lookup here); "
        "off, a database crash can lose the audit rows of the last few hundred ms.",
    )

    @property
    def max_body_bytes(self) -> int:
        """`api_max_body_bytes`, or what `api_max_records` records need."""
        return self.api_max_body_bytes or self.api_max_records * 8192 + 65536
