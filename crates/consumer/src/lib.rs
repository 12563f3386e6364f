//! Waterline consumer library.
