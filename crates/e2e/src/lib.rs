//! Real-client end-to-end tests (rdkafka) against waterline serve. Tests only; no library API.
