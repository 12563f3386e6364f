//! waterline serve: a single-node server speaking the Kafka wire protocol over the Waterline log.
