//! Backup and plan files.
//!
//! A backup holds a group's committed offsets taken right before an `--execute`; it is
//! written as CSV (`topic,partition,offset`, readable by `--from-file`) or JSON. A plan file
//! holds a [`ResetPlan`] as JSON, including the committed offsets it was computed from, so it
//! is applied only while those are unchanged.
//!
//! FORMAT (JSON backup): `{"format":"waterline-offsets-backup","version":1,"group":G,
//! "taken_ms":T,"offsets":[{"topic":..,"partition":..,"offset":..},...]}`.
//! FORMAT (plan): `{"format":"waterline-reset-plan","version":1,"plan":ResetPlan}`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use waterline_core::TopicPartition;

use crate::csvio::{CsvRow, parse_csv_lines, write_csv};
use crate::error::FileError;
use crate::reset::ResetPlan;

const BACKUP_FORMAT: &str = "waterline-offsets-backup";
const PLAN_FORMAT: &str = "waterline-reset-plan";

/// Backup file encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackupFormat {
    /// `topic,partition,offset` lines.
    Csv,
    /// A JSON document with the group and time.
    Json,
}

#[derive(Debug, Serialize, Deserialize)]
struct BackupEntry {
    topic: String,
    partition: i32,
    offset: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct BackupDoc {
    format: String,
    version: u32,
    group: String,
    taken_ms: i64,
    offsets: Vec<BackupEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PlanDoc {
    format: String,
    version: u32,
    plan: ResetPlan,
}

/// A file name for a backup of `group` taken at `taken_ms`: the group with unsafe characters
/// replaced, and a UTC timestamp, e.g. `waterline-backup-orders-20240131T120000.123Z.csv`.
pub fn backup_file_name(group: &str, taken_ms: i64, format: BackupFormat) -> String {
    let safe: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let ts = chrono::DateTime::from_timestamp_millis(taken_ms)
        .map(|d| d.format("%Y%m%dT%H%M%S%.3fZ").to_string())
        .unwrap_or_else(|| taken_ms.to_string());
    let ext = match format {
        BackupFormat::Csv => "csv",
        BackupFormat::Json => "json",
    };
    format!("waterline-backup-{safe}-{ts}.{ext}")
}

/// The bytes of a backup.
pub fn render_backup(
    group: &str,
    taken_ms: i64,
    offsets: &BTreeMap<TopicPartition, i64>,
    format: BackupFormat,
) -> String {
    match format {
        BackupFormat::Csv => {
            let rows: Vec<CsvRow> = offsets
                .iter()
                .map(|(tp, o)| CsvRow {
                    group: None,
                    tp: tp.clone(),
                    offset: *o,
                })
                .collect();
            write_csv(&rows, false)
        }
        BackupFormat::Json => {
            let doc = BackupDoc {
                format: BACKUP_FORMAT.into(),
                version: 1,
                group: group.into(),
                taken_ms,
                offsets: offsets
                    .iter()
                    .map(|(tp, o)| BackupEntry {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: *o,
                    })
                    .collect(),
            };
            // Serializing plain owned data cannot fail.
            serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
        }
    }
}

/// Writes `contents` to `path` durably: a temporary file in the same directory, fsync, rename,
/// then fsync of the directory, so a crash never leaves a half-written backup under its name.
pub fn write_durably(path: &Path, contents: &str) -> Result<(), FileError> {
    let io = |cause| FileError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(contents.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(&dir) {
        d.sync_all().map_err(io)?;
    }
    Ok(())
}

/// Offsets read from a `--from-file` input: CSV in either format, or a JSON backup.
/// For 4-column CSV only the lines of `group` are kept.
pub fn parse_offsets_file(
    path: &Path,
    text: &str,
    group: &str,
) -> Result<BTreeMap<TopicPartition, i64>, FileError> {
    Ok(parse_offsets_file_located(path, text, group)?
        .into_iter()
        .map(|o| (o.tp, o.offset))
        .collect())
}

/// One offset of a `--from-file` input and where in the file it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffset {
    /// The partition.
    pub tp: TopicPartition,
    /// The offset.
    pub offset: i64,
    /// `line N` (CSV, 1-based) or `offsets[N]` (JSON backup, 0-based), for error messages.
    pub location: String,
}

/// [`parse_offsets_file`] keeping file order and each offset's location, so that a problem
/// found later (an unknown topic or partition) can name the line. A partition given twice
/// in a JSON backup keeps its last entry, as the map form does.
pub fn parse_offsets_file_located(
    path: &Path,
    text: &str,
    group: &str,
) -> Result<Vec<FileOffset>, FileError> {
    if text.trim_start().starts_with('{') {
        let doc: BackupDoc = serde_json::from_str(text).map_err(|e| FileError::Json {
            path: path.to_path_buf(),
            kind: "backup",
            message: e.to_string(),
        })?;
        if doc.format != BACKUP_FORMAT {
            return Err(FileError::Json {
                path: path.to_path_buf(),
                kind: "backup",
                message: format!("format is '{}', expected '{BACKUP_FORMAT}'", doc.format),
            });
        }
        let mut out: Vec<FileOffset> = Vec::with_capacity(doc.offsets.len());
        let mut index: BTreeMap<TopicPartition, usize> = BTreeMap::new();
        for (i, e) in doc.offsets.into_iter().enumerate() {
            let entry = FileOffset {
                tp: TopicPartition::new(e.topic, e.partition),
                offset: e.offset,
                location: format!("offsets[{i}]"),
            };
            match index.get(&entry.tp) {
                Some(at) => out[*at] = entry,
                None => {
                    index.insert(entry.tp.clone(), out.len());
                    out.push(entry);
                }
            }
        }
        return Ok(out);
    }
    let rows = parse_csv_lines(text).map_err(|cause| FileError::Csv {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(rows
        .into_iter()
        .filter(|(_, r)| r.group.as_deref().is_none_or(|g| g == group))
        .map(|(line, r)| FileOffset {
            tp: r.tp,
            offset: r.offset,
            location: format!("line {line}"),
        })
        .collect())
}

/// The JSON of a plan file.
pub fn render_plan(plan: &ResetPlan) -> String {
    let doc = PlanDoc {
        format: PLAN_FORMAT.into(),
        version: 1,
        plan: plan.clone(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
}

/// Reads a plan file.
pub fn parse_plan(path: &Path, text: &str) -> Result<ResetPlan, FileError> {
    let err = |message: String| FileError::Json {
        path: path.to_path_buf(),
        kind: "plan",
        message,
    };
    let doc: PlanDoc = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
    if doc.format != PLAN_FORMAT || doc.version != 1 {
        return Err(err(format!(
            "format '{}' version {}, expected '{PLAN_FORMAT}' version 1",
            doc.format, doc.version
        )));
    }
    Ok(doc.plan)
}

/// Reads a whole file, naming it in the error.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|cause| FileError::Io {
        path: path.to_path_buf(),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reset::{PartitionInput, ResetMode, plan};

    fn offsets() -> BTreeMap<TopicPartition, i64> {
        BTreeMap::from([
            (TopicPartition::new("a", 0), 5),
            (TopicPartition::new("b", 2), 9),
        ])
    }

    #[test]
    fn backups_round_trip_in_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        for format in [BackupFormat::Csv, BackupFormat::Json] {
            let name = backup_file_name("my group/1", 1_706_702_400_123, format);
            assert!(
                name.starts_with("waterline-backup-my_group_1-20240131T120000.123Z."),
                "{name}"
            );
            let path = dir.path().join(name);
            write_durably(&path, &render_backup("my group/1", 1, &offsets(), format)).unwrap();
            let text = read_text(&path).unwrap();
            assert_eq!(
                parse_offsets_file(&path, &text, "my group/1").unwrap(),
                offsets()
            );
        }
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn four_column_files_keep_only_the_group() {
        let text = "g1,a,0,5\ng2,a,0,7\n";
        let got = parse_offsets_file(Path::new("f"), text, "g2").unwrap();
        assert_eq!(got, BTreeMap::from([(TopicPartition::new("a", 0), 7)]));
    }

    #[test]
    fn located_offsets_name_lines_and_entries() {
        let got =
            parse_offsets_file_located(Path::new("f"), "g1,a,0,5\n\ng2,b,1,7\n", "g2").unwrap();
        assert_eq!(
            got,
            vec![FileOffset {
                tp: TopicPartition::new("b", 1),
                offset: 7,
                location: "line 3".into(),
            }]
        );
        let json = render_backup("g", 1, &offsets(), BackupFormat::Json);
        let got = parse_offsets_file_located(Path::new("f.json"), &json, "g").unwrap();
        let locations: Vec<&str> = got.iter().map(|o| o.location.as_str()).collect();
        assert_eq!(locations, vec!["offsets[0]", "offsets[1]"]);
    }

    #[test]
    fn bad_files_name_the_file_and_line() {
        let err = parse_offsets_file(Path::new("x.csv"), "a,0,5\na,zero,1\n", "g").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.csv: line 2: partition 'zero' is not a non-negative integer"
        );
        let err =
            parse_offsets_file(Path::new("x.json"), "{\"format\":\"nope\"}", "g").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.json: not a valid backup file"),
            "{err}"
        );
        let err = parse_plan(Path::new("p.json"), "[]").unwrap_err();
        assert!(
            err.to_string().starts_with("p.json: not a valid plan file"),
            "{err}"
        );
    }

    #[test]
    fn plans_round_trip() {
        let input = PartitionInput {
            tp: TopicPartition::new("a", 0),
            current: Some(3),
            log_start: 0,
            log_end: 10,
            offset_for_time: None,
            source_offset: None,
        };
        let p = plan("g", &ResetMode::ShiftBy(2), &[input], 7).unwrap();
        assert_eq!(parse_plan(Path::new("p"), &render_plan(&p)).unwrap(), p);
    }
}
