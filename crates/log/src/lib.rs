//! Waterline's durable segmented partition log: record batches, offset and time indexes, recovery.
