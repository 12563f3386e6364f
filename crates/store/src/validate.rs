//! Input limits shared by every backend.

use waterline_core::{OffsetAndMetadata, TopicPartition};

use crate::StoreError;

/// Kafka's default `offset.metadata.max.bytes`.
pub const DEFAULT_MAX_METADATA_BYTES: usize = 4096;

/// Limits a store enforces on what it is asked to commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted metadata string in bytes (UTF-8), or `None` for no limit.
    pub max_metadata_bytes: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_metadata_bytes: Some(DEFAULT_MAX_METADATA_BYTES),
        }
    }
}

impl Limits {
    /// No limits at all.
    pub fn unlimited() -> Self {
        Limits {
            max_metadata_bytes: None,
        }
    }

    /// Checks a whole batch before anything of it is written, so a rejected batch leaves no trace.
    pub fn check(
        &self,
        group: &str,
        offsets: &[(TopicPartition, OffsetAndMetadata)],
    ) -> Result<(), StoreError> {
        let Some(max) = self.max_metadata_bytes else {
            return Ok(());
        };
        match offsets.iter().find(|(_, o)| o.metadata.len() > max) {
            None => Ok(()),
            Some((tp, o)) => Err(StoreError::MetadataTooLarge {
                group: group.to_owned(),
                topic_partition: tp.clone(),
                len: o.metadata.len(),
                max,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(len: usize) -> Vec<(TopicPartition, OffsetAndMetadata)> {
        vec![(
            TopicPartition::new("t", 0),
            OffsetAndMetadata::new(1, 0).with_metadata("x".repeat(len)),
        )]
    }

    #[test]
    fn default_limit_is_kafkas_and_inclusive() {
        let limits = Limits::default();
        assert!(limits.check("g", &batch(4096)).is_ok());
        let err = limits.check("g", &batch(4097)).unwrap_err();
        assert!(matches!(
            err,
            StoreError::MetadataTooLarge {
                len: 4097,
                max: 4096,
                ..
            }
        ));
    }

    #[test]
    fn unlimited_accepts_anything() {
        assert!(Limits::unlimited().check("g", &batch(100_000)).is_ok());
    }
}
