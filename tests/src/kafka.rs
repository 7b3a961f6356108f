//! Kafka helpers (filled by the saga tests).
