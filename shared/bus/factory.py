"""Choose the bus from settings: Kafka when configured, else the embedded log."""

from __future__ import annotations

from shared.bus.base import Bus
from shared.bus.embedded import EmbeddedBus
from shared.bus.kafka import DEFAULT_TOPICS_FILE, KafkaBus
from shared.settings import RelaisSettings


def bus_from_settings(settings: RelaisSettings, client_id: str = "relais") -> Bus:
    if settings.uses_kafka:
        return KafkaBus(
            settings.kafka_bootstrap_servers or "",
            api_version=settings.kafka_api_version_tuple,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
            client_id=client_id,
            security=settings.kafka_security,
            topics_file=settings.kafka_topics_file or DEFAULT_TOPICS_FILE,
        )
    return EmbeddedBus(settings.resolved_bus_url, settings.bus_database_schema)
