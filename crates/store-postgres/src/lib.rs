//! PostgreSQL offset store for Waterline.
