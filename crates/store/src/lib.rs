//! Waterline offset stores: one async trait, memory, file, embedded (redb) backends.
