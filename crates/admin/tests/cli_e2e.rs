//! The `waterline groups | offsets | lag` commands end to end against an in-process
//! `waterline serve`: every reset mode, clamping, backups and restore, plan files, refusal on
//! an active group, describe output in table and JSON, and usage errors.

mod common;

use std::collections::BTreeMap;

use common::{TestBroker, run};
use waterline_admin::client::AdminClient;
use waterline_admin::timefmt::format_ms;
use waterline_core::TopicPartition;

const BASE: i64 = 1_700_000_000_000;

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

/// Topic `t`: partition 0 has 10 records, partition 1 has 5; record i has time BASE + i s.
async fn setup() -> TestBroker {
    let b = TestBroker::start().await;
    b.create_topic("t", 2).await;
    let ts: Vec<i64> = (0..10).map(|i| BASE + 1_000 * i).collect();
    b.produce("t", 0, &ts).await;
    b.produce("t", 1, &ts[..5]).await;
    b
}

async fn commit(c: &mut AdminClient, group: &str, offsets: &[(i32, i64)]) {
    let map: BTreeMap<TopicPartition, i64> = offsets.iter().map(|(p, o)| (tp(*p), *o)).collect();
    let failures = c.offset_commit(group, &map).await.unwrap();
    assert!(failures.is_empty(), "{failures:?}");
}

async fn committed(c: &mut AdminClient, group: &str) -> Vec<(i32, i64)> {
    c.offset_fetch(group, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, c)| (tp.partition, c.offset))
        .collect()
}

/// (mode flags, expected committed offsets after --execute, expected warning text).
type ResetCase<'a> = (Vec<&'a str>, Vec<(i32, i64)>, Option<&'a str>);

fn one_line(s: &str) -> &str {
    let t = s.trim_end();
    assert_eq!(t.lines().count(), 1, "expected one line, got: {s:?}");
    t
}

#[tokio::test]
async fn every_reset_mode_with_clamping() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;
    commit(&mut c, "other", &[(0, 8), (1, 1)]).await;

    // Dry run (the default) prints the plan and changes nothing.
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-earliest",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.out.contains("MESSAGES-SKIPPED-OR-REPLAYED"), "{}", r.out);
    let row0 = r
        .out
        .lines()
        .find(|l| l.starts_with("g  ") && l.contains(" 0 "))
        .unwrap();
    let cells: Vec<&str> = row0.split_whitespace().collect();
    assert_eq!(&cells[..6], &["g", "t", "0", "5", "0", "-5"], "{row0}");
    assert!(
        row0.contains("replays 5 records (offsets 0..=4) produced"),
        "{row0}"
    );
    assert!(row0.contains(&format_ms(BASE)), "{row0}");
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5), (1, 2)]);

    let before_dt = format_ms(BASE + 4_000 - 1);
    let cases: Vec<ResetCase> = vec![
        (vec!["--to-earliest"], vec![(0, 0), (1, 0)], None),
        (vec!["--to-latest"], vec![(0, 10), (1, 5)], None),
        (vec!["--to-offset", "3"], vec![(0, 3), (1, 3)], None),
        (
            vec!["--to-offset", "7"],
            vec![(0, 7), (1, 5)],
            Some("offset 7 is after the log end offset 5; using 5"),
        ),
        (vec!["--shift-by", "-2"], vec![(0, 5), (1, 3)], None),
        (
            vec!["--shift-by", "-100"],
            vec![(0, 0), (1, 0)],
            Some("is before the log start offset 0"),
        ),
        (vec!["--shift-by", "4"], vec![(0, 4), (1, 4)], None),
        (vec!["--to-current"], vec![(0, 4), (1, 4)], None),
        (
            vec!["--to-datetime", &before_dt],
            vec![(0, 4), (1, 4)],
            None,
        ),
        (
            vec!["--by-duration", "PT1S"],
            vec![(0, 10), (1, 5)],
            Some("no record at or after the time"),
        ),
        (vec!["--by-duration", "P36500D"], vec![(0, 0), (1, 0)], None),
        (vec!["--to-group", "other"], vec![(0, 8), (1, 1)], None),
    ];
    for (mode, expect, warning) in cases {
        let mut args = vec![
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--execute",
            "--backup-dir",
            &backups,
        ];
        args.extend(mode.iter().copied());
        let r = run(&b.addr, &args).await;
        assert_eq!(r.code, 0, "{mode:?}: {r:?}");
        assert_eq!(committed(&mut c, "g").await, expect, "{mode:?}");
        // Warnings are diagnostics: on stderr, one `Warning:` line each, never on stdout.
        assert!(!r.out.contains("Warning"), "{mode:?}: {}", r.out);
        let warnings: Vec<&str> = r
            .err
            .lines()
            .filter(|l| l.starts_with("Warning: "))
            .collect();
        match warning {
            Some(w) => assert!(
                warnings.iter().any(|l| l.contains(w)),
                "{mode:?}: {}",
                r.err
            ),
            None => assert!(warnings.is_empty(), "{mode:?}: {}", r.err),
        }
        assert!(
            r.err.contains("Backup of group g's previous offsets: "),
            "{}",
            r.err
        );
    }
    // Partition selection: only partition 1.
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t:1",
            "--to-offset",
            "2",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(committed(&mut c, "g").await, vec![(0, 8), (1, 2)]);
    // --all-topics: every partition the group has committed.
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--all-topics",
            "--to-latest",
            "--export",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out, "t,0,10\nt,1,5\n");
    b.stop().await;
}

#[tokio::test]
async fn export_reset_restore_round_trips_exactly() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;
    commit(&mut c, "h", &[(0, 1)]).await;

    let exported = run(&b.addr, &["offsets", "export", "--group", "g"]).await;
    assert_eq!(exported.code, 0);
    assert_eq!(exported.out, "t,0,5\nt,1,2\n");
    let both = run(
        &b.addr,
        &["offsets", "export", "--group", "g", "--group", "h"],
    )
    .await;
    assert_eq!(both.out, "g,t,0,5\ng,t,1,2\nh,t,0,1\n");

    for format in ["csv", "json"] {
        let r = run(
            &b.addr,
            &[
                "offsets",
                "reset",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-latest",
                "--execute",
                "--backup-dir",
                &backups,
                "--backup-format",
                format,
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
        assert_eq!(committed(&mut c, "g").await, vec![(0, 10), (1, 5)]);
        let path = r
            .err
            .lines()
            .find_map(|l| l.strip_prefix("Backup of group g's previous offsets: "))
            .and_then(|rest| rest.split(" (restore").next())
            .unwrap()
            .to_string();
        assert!(path.ends_with(format), "{path}");
        let r = run(
            &b.addr,
            &[
                "offsets",
                "reset",
                "--group",
                "g",
                "--from-file",
                &path,
                "--execute",
                "--backup-dir",
                &backups,
            ],
        )
        .await;
        assert_eq!(r.code, 0, "{r:?}");
        let again = run(&b.addr, &["offsets", "export", "--group", "g"]).await;
        assert_eq!(again.out, exported.out);
    }

    // A multi-group export file restores only the named group's lines.
    let file = dir.path().join("both.csv");
    std::fs::write(&file, &both.out).unwrap();
    commit(&mut c, "h", &[(0, 9)]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "h",
            "--from-file",
            file.to_str().unwrap(),
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(committed(&mut c, "h").await, vec![(0, 1)]);

    // A malformed file is refused with its line number.
    std::fs::write(&file, "t,0,5\nt,one,5\n").unwrap();
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--from-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    let line = one_line(&r.err);
    assert!(
        line.contains(file.to_str().unwrap())
            && line.ends_with("line 2: partition 'one' is not a non-negative integer"),
        "{line}"
    );
    b.stop().await;
}

#[tokio::test]
async fn plan_applies_only_while_offsets_are_unchanged() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let plan = dir.path().join("plan.json");
    let plan_s = plan.to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;

    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--dry-run",
            "--plan-out",
            &plan_s,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(plan.exists());

    commit(&mut c, "g", &[(0, 6)]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--execute",
            "--plan",
            &plan_s,
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.out.contains("PLANNED-CURRENT-OFFSET"), "{}", r.out);
    let drift_row: Vec<&str> = r.out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(drift_row, vec!["g", "t", "0", "5", "6"]);
    assert!(one_line(&r.err).contains("refused"), "{}", r.err);
    assert_eq!(committed(&mut c, "g").await, vec![(0, 6), (1, 2)]);

    commit(&mut c, "g", &[(0, 5)]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--execute",
            "--plan",
            &plan_s,
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(committed(&mut c, "g").await, vec![(0, 0), (1, 0)]);
    b.stop().await;
}

#[tokio::test]
async fn active_groups_are_refused_and_described() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "live", &[(0, 5), (1, 2)]).await;
    let (member, _conn) = b.join("live", &[("t", vec![0])]).await;

    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "live",
            "--topic",
            "t",
            "--to-earliest",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    let line = one_line(&r.err);
    assert!(
        line.contains("group live is Stable with 1 active member(s)"),
        "{line}"
    );
    assert_eq!(committed(&mut c, "live").await, vec![(0, 5), (1, 2)]);

    let r = run(&b.addr, &["groups", "describe", "--group", "live"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<Vec<&str>> = r
        .out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        &rows[0][..6],
        &["live", "t", "0", "5", "10", "5"],
        "{}",
        r.out
    );
    assert_eq!(rows[0][7], member);
    // Committed but unassigned: no owner.
    assert_eq!(
        &rows[1][..6],
        &["live", "t", "1", "2", "5", "3"],
        "{}",
        r.out
    );
    assert_eq!(&rows[1][7..], &["-", "-", "-"], "{}", r.out);

    let r = run(
        &b.addr,
        &["groups", "describe", "--group", "live", "--output", "json"],
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let p0 = &v["groups"][0]["partitions"][0];
    assert_eq!(
        (
            p0["current_offset"].as_i64(),
            p0["log_end_offset"].as_i64(),
            p0["lag"].as_i64()
        ),
        (Some(5), Some(10), Some(5))
    );
    assert_eq!(p0["time_lag_kind"], "exact");
    assert!(p0["time_lag_ms"].as_i64().unwrap() > 0);
    assert_eq!(p0["consumer_id"], member.as_str());
    assert!(v["groups"][0]["partitions"][1]["consumer_id"].is_null());

    let r = run(
        &b.addr,
        &["groups", "describe", "--group", "live", "--members"],
    )
    .await;
    assert!(
        r.out.contains(&member) && r.out.contains("#PARTITIONS"),
        "{}",
        r.out
    );
    let r = run(
        &b.addr,
        &["groups", "describe", "--group", "live", "--state"],
    )
    .await;
    assert!(r.out.contains("Stable"), "{}", r.out);

    // An empty group says so; an unknown group fails.
    commit(&mut c, "idle", &[(0, 10)]).await;
    let r = run(&b.addr, &["groups", "describe", "--group", "idle"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.out
            .starts_with("Consumer group 'idle' has no active members."),
        "{}",
        r.out
    );
    // Caught up: time lag 0.
    assert!(
        r.out.lines().last().unwrap().split_whitespace().nth(6) == Some("0s"),
        "{}",
        r.out
    );
    let r = run(&b.addr, &["groups", "describe", "--group", "nosuch"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.out.contains("Consumer group 'nosuch' does not exist."),
        "{}",
        r.out
    );

    let r = run(&b.addr, &["groups", "list", "--output", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let names: Vec<&str> = v["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"live") && names.contains(&"idle"),
        "{names:?}"
    );

    // Offsets delete on the empty group.
    let r = run(
        &b.addr,
        &[
            "offsets",
            "delete",
            "--group",
            "idle",
            "--topic",
            "t:0",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(committed(&mut c, "idle").await, vec![]);
    b.stop().await;
}

#[tokio::test]
async fn bad_arguments_exit_2_with_one_line() {
    let b = setup().await;
    for args in [
        vec![
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "nope",
            "--to-earliest",
        ],
        vec![
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-datetime",
            "2024-02-30T00:00:00",
        ],
        vec!["offsets", "reset", "--group", "g", "--topic", "t"],
        vec![
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest",
        ],
        vec![
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t:9",
            "--to-earliest",
        ],
        vec!["offsets", "delete", "--group", "g", "--topic", "t:x"],
        vec!["lag", "--window", "1"],
        vec!["lag", "--interval", "PT0S"],
    ] {
        let r = run(&b.addr, &args).await;
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        let line = one_line(&r.err);
        assert!(line.starts_with("waterline "), "{line}");
    }
    b.stop().await;
}

#[tokio::test]
async fn lag_reports_records_time_and_status() {
    let b = setup().await;
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 4), (1, 5)]).await;
    let r = run(&b.addr, &["lag", "--group", "g", "--output", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let parts = v["groups"][0]["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["lag"], 6);
    assert_eq!(parts[0]["time_lag_kind"], "exact");
    // The record at offset 4 was produced at BASE + 4 s.
    let age = parts[0]["time_lag_ms"].as_i64().unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    assert!((now - (BASE + 4_000) - age).abs() < 60_000, "{age}");
    assert_eq!(parts[1]["lag"], 0);
    assert_eq!(parts[1]["time_lag_ms"], 0);
    assert_eq!(parts[1]["status"], "OK");

    let r = run(
        &b.addr,
        &[
            "lag",
            "--group",
            "g",
            "--watch",
            "--interval",
            "PT0.05S",
            "--iterations",
            "3",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out.matches("Group 'g': ").count(), 3, "{}", r.out);
    b.stop().await;
}

#[tokio::test]
async fn assigned_partitions_without_commits_are_listed() {
    let b = setup().await;
    let (member, _conn) = b.join("fresh", &[("t", vec![1])]).await;
    let r = run(
        &b.addr,
        &["groups", "describe", "--group", "fresh", "--output", "csv"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.out.lines().collect();
    assert_eq!(
        lines[0],
        "GROUP,TOPIC,PARTITION,CURRENT-OFFSET,LOG-END-OFFSET,LAG,TIME-LAG,CONSUMER-ID,HOST,CLIENT-ID"
    );
    let cells: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(
        &cells[..7],
        &["fresh", "t", "1", "", "5", "", ""],
        "{}",
        r.out
    );
    assert_eq!(cells[7], member);
    assert_eq!(lines.len(), 2, "{}", r.out);
    b.stop().await;
}

/// Runs `offsets reset --group g --from-file <file>` (a dry run) and expects exit 2 with one
/// line naming the file and containing `needle`.
async fn from_file_usage_error(b: &TestBroker, file: &std::path::Path, needle: &str) {
    let path = file.to_str().unwrap();
    let r = run(
        &b.addr,
        &["offsets", "reset", "--group", "g", "--from-file", path],
    )
    .await;
    assert_eq!(r.code, 2, "{path}: {r:?}");
    let line = one_line(&r.err);
    assert!(
        line.starts_with("waterline offsets: error: --from-file ")
            && line.contains(path)
            && line.contains(needle),
        "{line}"
    );
    assert_eq!(r.out, "", "{path}");
}

#[tokio::test]
async fn from_file_problems_are_usage_errors_naming_file_and_line() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;
    let cases = [
        (
            "malformed.csv",
            "t,0,1\nt,zero,1\n",
            "line 2: partition 'zero'",
        ),
        (
            "topic.csv",
            "t,0,1\n\nnope,0,1\n",
            "line 3: unknown topic 'nope'",
        ),
        (
            "partition.csv",
            "t,0,1\nt,7,1\n",
            "line 2: topic 't' has no partition 7 (2 partitions)",
        ),
        ("other-group.csv", "h,t,0,1\n", "no offsets for group g"),
        (
            "backup.json",
            "{\"format\":\"waterline-offsets-backup\",\"version\":1,\"group\":\"g\",\"taken_ms\":0,\
             \"offsets\":[{\"topic\":\"t\",\"partition\":0,\"offset\":1},\
             {\"topic\":\"t\",\"partition\":9,\"offset\":1}]}",
            "offsets[1]: topic 't' has no partition 9",
        ),
        ("bad.json", "{\"format\":1}", "not a valid backup file"),
    ];
    for (name, text, needle) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        from_file_usage_error(&b, &file, needle).await;
    }
    // A missing file, too, is the user's input.
    from_file_usage_error(&b, &dir.path().join("absent.csv"), "No such file").await;
    // None of these changed anything, with or without --execute.
    let file = dir.path().join("topic.csv");
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--from-file",
            file.to_str().unwrap(),
            "--execute",
            "--backup-dir",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5), (1, 2)]);

    // A plan file that is missing or malformed is a usage error as well.
    let plan = dir.path().join("plan.json");
    for (text, needle) in [
        (None, "No such file"),
        (Some("{\"format\":\"x\"}"), "not a valid plan file"),
    ] {
        if let Some(t) = text {
            std::fs::write(&plan, t).unwrap();
        }
        let r = run(
            &b.addr,
            &[
                "offsets",
                "reset",
                "--execute",
                "--plan",
                plan.to_str().unwrap(),
                "--backup-dir",
                dir.path().to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(r.code, 2, "{r:?}");
        let line = one_line(&r.err);
        assert!(
            line.starts_with("waterline offsets: error: --plan ")
                && line.contains(plan.to_str().unwrap())
                && line.contains(needle),
            "{line}"
        );
    }
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5), (1, 2)]);
    b.stop().await;
}

#[tokio::test]
async fn clamp_warnings_go_to_stderr_in_every_output_mode() {
    let b = setup().await;
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;
    let base = [
        "offsets",
        "reset",
        "--group",
        "g",
        "--topic",
        "t",
        "--to-offset",
        "1000",
    ];
    let expect_warnings = [
        "Warning: t partition 0: offset 1000 is after the log end offset 10; using 10",
        "Warning: t partition 1: offset 1000 is after the log end offset 5; using 5",
    ];
    for extra in [
        &[][..],
        &["--export"][..],
        &["--output", "csv"][..],
        &["--output", "json"][..],
    ] {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let r = run(&b.addr, &args).await;
        assert_eq!(r.code, 0, "{extra:?}: {r:?}");
        let warnings: Vec<&str> = r
            .err
            .lines()
            .filter(|l| l.starts_with("Warning:"))
            .collect();
        assert_eq!(warnings, expect_warnings, "{extra:?}: {}", r.err);
        assert!(!r.out.contains("Warning"), "{extra:?}: {}", r.out);
        match extra {
            ["--export"] | ["--output", "csv"] => assert_eq!(r.out, "t,0,10\nt,1,5\n"),
            ["--output", "json"] => {
                let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
                let w = v["warnings"].as_array().unwrap();
                assert_eq!(w.len(), 2, "{}", r.out);
                assert_eq!(
                    w[0].as_str().map(|s| format!("Warning: {s}")).as_deref(),
                    Some(expect_warnings[0])
                );
            }
            _ => assert!(r.out.starts_with("GROUP "), "{}", r.out),
        }
    }
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5), (1, 2)]);
    b.stop().await;
}

#[tokio::test]
async fn list_state_filter_is_validated_case_insensitively() {
    let b = setup().await;
    let mut c = b.client().await;
    commit(&mut c, "idle", &[(0, 1)]).await;
    let (_member, _conn) = b.join("live", &[("t", vec![0])]).await;

    let r = run(&b.addr, &["groups", "list", "--state", "Bogus"]).await;
    assert_eq!(r.code, 2, "{r:?}");
    let line = one_line(&r.err);
    assert!(
        line.contains("'Bogus'")
            && line.contains("Empty, PreparingRebalance, CompletingRebalance, Stable, Dead"),
        "{line}"
    );
    assert_eq!(r.out, "");

    let names = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    };
    let r = run(&b.addr, &["groups", "list", "--state", "stable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(names(&r.out), vec!["live"], "{}", r.out);
    let r = run(&b.addr, &["groups", "list", "--state", "EMPTY,Stable"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(names(&r.out), vec!["idle", "live"], "{}", r.out);
    b.stop().await;
}

#[tokio::test]
async fn lag_of_a_group_that_does_not_exist_fails_like_describe() {
    let b = setup().await;
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 4)]).await;

    for args in [
        &["lag", "--group", "nosuch"][..],
        &["lag", "--group", "nosuch", "--output", "json"][..],
        &["groups", "describe", "--group", "nosuch"][..],
    ] {
        let r = run(&b.addr, args).await;
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(
            one_line(&r.err).ends_with("error: group 'nosuch' does not exist"),
            "{args:?}: {}",
            r.err
        );
        assert!(!r.out.contains("OK"), "{args:?}: {}", r.out);
    }
    // The groups that exist are still shown; the command fails for the one that does not.
    let r = run(
        &b.addr,
        &[
            "lag", "--group", "g", "--group", "nosuch", "--group", "gone",
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.out.starts_with("Group 'g': "), "{}", r.out);
    assert!(!r.out.contains("nosuch"), "{}", r.out);
    assert_eq!(
        one_line(&r.err),
        "waterline lag: error: groups 'nosuch', 'gone' do not exist"
    );
    // A group whose offsets were all deleted, with no members, no longer exists either.
    let dir = tempfile::tempdir().unwrap();
    let r = run(
        &b.addr,
        &[
            "offsets",
            "delete",
            "--group",
            "g",
            "--topic",
            "t",
            "--execute",
            "--backup-dir",
            dir.path().to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(&b.addr, &["lag", "--group", "g"]).await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        one_line(&r.err).ends_with("group 'g' does not exist"),
        "{}",
        r.err
    );
    b.stop().await;
}

/// Issue 15, item 1: a partition whose topic does not exist (deleted, or assigned by a client
/// that is behind) shows `-` for its log end and lag; it does not fail the command for every
/// group.
#[tokio::test]
async fn a_partition_of_a_missing_topic_shows_dashes_and_fails_nothing() {
    let b = setup().await;
    let mut c = b.client().await;
    commit(&mut c, "steady", &[(0, 4)]).await;
    commit(&mut c, "other", &[(1, 2)]).await;
    // The member's assignment names a topic the cluster does not have.
    let (_member, _conn) = b
        .join("steady", &[("t", vec![0]), ("steady-gone", vec![0])])
        .await;

    let r = run(&b.addr, &["groups", "describe", "--all-groups"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let gone: Vec<&str> = r
        .out
        .lines()
        .find(|l| l.contains("steady-gone"))
        .unwrap_or_else(|| panic!("{}", r.out))
        .split_whitespace()
        .collect();
    // GROUP TOPIC PARTITION CURRENT LOG-END LAG TIME-LAG
    assert_eq!(
        &gone[..7],
        &["steady", "steady-gone", "0", "-", "-", "-", "-"]
    );
    assert!(
        r.out.lines().any(|l| l.starts_with("other ")),
        "the other group is still described: {}",
        r.out
    );
    let t0: Vec<&str> = r
        .out
        .lines()
        .find(|l| l.starts_with("steady ") && l.contains(" t "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&t0[..6], &["steady", "t", "0", "4", "10", "6"], "{}", r.out);

    let r = run(&b.addr, &["lag", "--output", "json"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.out).unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{}", r.out);
    let steady = groups.iter().find(|g| g["group"] == "steady").unwrap();
    let p = steady["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == "steady-gone")
        .unwrap();
    assert!(p["log_end_offset"].is_null() && p["lag"].is_null(), "{p}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("topic or partition does not exist"),
        "{p}"
    );
    let r = run(&b.addr, &["lag", "--group", "steady"]).await;
    assert_eq!(r.code, 0, "{r:?}");
    let row: Vec<&str> = r
        .out
        .lines()
        .find(|l| l.starts_with("steady ") && l.contains("steady-gone"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        &row[..7],
        &["steady", "steady-gone", "0", "-", "-", "-", "-"]
    );
    b.stop().await;
}

/// Issue 15, item 3: an edited plan is validated like any other input before `--execute`:
/// a row for a topic that does not exist refuses the whole plan (nothing applied), and a new
/// offset past the log end is clamped with the warning a fresh reset gives.
#[tokio::test]
async fn plans_are_validated_before_they_are_applied() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let plan = dir.path().join("plan.json");
    let plan_s = plan.to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5), (1, 2)]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--plan-out",
            &plan_s,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    // The hint to apply it names the cluster it was planned against.
    assert!(
        r.err.contains(&format!(
            "apply with: waterline offsets reset --execute --plan {plan_s} --bootstrap-server {}",
            b.addr
        )),
        "{}",
        r.err
    );
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    doc["plan"]["rows"][0]["new"] = 99_999_999.into();
    let good = doc.clone();
    doc["plan"]["rows"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"topic": "nope", "partition": 0, "current": null, "new": 1}));
    std::fs::write(&plan, doc.to_string()).unwrap();
    let apply = [
        "offsets",
        "reset",
        "--execute",
        "--plan",
        &plan_s,
        "--backup-dir",
        &backups,
    ];
    let r = run(&b.addr, &apply).await;
    assert_eq!(r.code, 2, "{r:?}");
    let line = one_line(&r.err);
    assert!(
        line.contains(&plan_s)
            && line.contains("unknown topic 'nope'")
            && line.ends_with("nothing was applied"),
        "{line}"
    );
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5), (1, 2)]);

    std::fs::write(&plan, good.to_string()).unwrap();
    let r = run(&b.addr, &apply).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.err.lines().any(|l| l
            == "Warning: t partition 0: offset 99999999 is after the log end offset 10; using 10"),
        "{}",
        r.err
    );
    assert_eq!(committed(&mut c, "g").await, vec![(0, 10), (1, 0)]);
    b.stop().await;
}

/// Issue 15, item 5: unknown groups and topics are errors naming them; `offsets delete` is a
/// dry run by default, backs up on `--execute`, and reports only partitions that had an
/// offset; a dry run says when the group is active.
#[tokio::test]
async fn unknown_names_fail_and_delete_is_a_dry_run_first() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "g", &[(0, 5)]).await;

    for (args, needle) in [
        (
            &["offsets", "export", "--group", "nosuch"][..],
            "group 'nosuch' does not exist",
        ),
        (
            &["offsets", "export", "--group", "g", "--topic", "nosuch"],
            "group 'g' has no committed offsets for topic 'nosuch'",
        ),
        (
            &["offsets", "delete", "--group", "nosuch", "--topic", "t"],
            "group 'nosuch' does not exist",
        ),
        (
            &["offsets", "delete", "--group", "g", "--topic", "t:1"],
            "group 'g' has no committed offsets for t partition 1",
        ),
        (
            &["groups", "delete", "--group", "nosuch"],
            "group 'nosuch' does not exist",
        ),
    ] {
        let r = run(&b.addr, args).await;
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(one_line(&r.err).ends_with(needle), "{args:?}: {}", r.err);
        assert_eq!(r.out, "", "{args:?}");
    }

    // A dry run by default: shows what it would delete, deletes nothing.
    let r = run(
        &b.addr,
        &["offsets", "delete", "--group", "g", "--topic", "t:0,1"],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let rows: Vec<Vec<&str>> = r
        .out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows, vec![vec!["g", "t", "0", "5"]], "{}", r.out);
    assert!(
        r.err
            .contains("group g has no committed offset for t partition 1"),
        "{}",
        r.err
    );
    assert!(r.err.contains("Dry run: nothing deleted."), "{}", r.err);
    assert_eq!(committed(&mut c, "g").await, vec![(0, 5)]);

    // --execute saves a backup of what it deletes, then deletes exactly that.
    let r = run(
        &b.addr,
        &[
            "offsets",
            "delete",
            "--group",
            "g",
            "--topic",
            "t:0,1",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.err
            .contains("Deleted committed offsets of group g for 1 partition(s)."),
        "{}",
        r.err
    );
    let backup = r
        .err
        .lines()
        .find_map(|l| l.strip_prefix("Backup of the offsets being deleted: "))
        .and_then(|rest| rest.split(" (restore").next())
        .unwrap()
        .to_string();
    assert!(backup.starts_with(&backups), "{backup}");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), "t,0,5\n");
    assert_eq!(committed(&mut c, "g").await, vec![]);

    // A dry run on an active group says that --execute will refuse.
    commit(&mut c, "live", &[(0, 5)]).await;
    let (_member, _conn) = b.join("live", &[("t", vec![0])]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "live",
            "--topic",
            "t",
            "--to-earliest",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.err.lines().any(|l| l
            == "Warning: group live is Stable with 1 active member(s); --execute will refuse to reset it until its consumers stop"),
        "{}",
        r.err
    );
    b.stop().await;
}

/// Issue 15, item 8: `groups describe --members --verbose` shows each member's assignment.
#[tokio::test]
async fn members_verbose_shows_the_assignment() {
    let b = setup().await;
    let (member, _conn) = b.join("live", &[("t", vec![1, 0])]).await;
    let r = run(
        &b.addr,
        &[
            "groups",
            "describe",
            "--group",
            "live",
            "--members",
            "--verbose",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    let header = r.out.lines().next().unwrap();
    assert!(header.ends_with("#PARTITIONS  ASSIGNMENT"), "{}", r.out);
    let row: Vec<&str> = r.out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], member);
    assert_eq!(&row[row.len() - 2..], &["2", "t(0,1)"], "{}", r.out);
    // --verbose without --members is a usage error.
    let r = run(
        &b.addr,
        &["groups", "describe", "--group", "live", "--verbose"],
    )
    .await;
    assert_eq!(r.code, 2, "{r:?}");
    b.stop().await;
}

/// Issue 15, item 8: `offsets reset` for several groups at once (repeated --group, or
/// --all-groups): one plan each, a backup each on --execute, and no group reset while one of
/// them is active.
#[tokio::test]
async fn reset_of_several_groups_backs_up_each() {
    let b = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let backups = dir.path().to_str().unwrap().to_string();
    let mut c = b.client().await;
    commit(&mut c, "a", &[(0, 5)]).await;
    commit(&mut c, "b", &[(0, 7), (1, 1)]).await;

    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "a",
            "--group",
            "b",
            "--topic",
            "t",
            "--to-latest",
            "--export",
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.out, "a,t,0,10\na,t,1,5\nb,t,0,10\nb,t,1,5\n");
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--all-groups",
            "--all-topics",
            "--to-earliest",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(committed(&mut c, "a").await, vec![(0, 0)]);
    assert_eq!(committed(&mut c, "b").await, vec![(0, 0), (1, 0)]);
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files[0].starts_with("waterline-backup-a-") && files[1].starts_with("waterline-backup-b-"),
        "{files:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(&files[1])).unwrap(),
        "t,0,7\nt,1,1\n"
    );

    // One active group refuses them all.
    let (_member, _conn) = b.join("b", &[("t", vec![0])]).await;
    let r = run(
        &b.addr,
        &[
            "offsets",
            "reset",
            "--group",
            "a",
            "--group",
            "b",
            "--topic",
            "t",
            "--to-latest",
            "--execute",
            "--backup-dir",
            &backups,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        one_line(&r.err).ends_with("no group was reset") && r.err.contains("group b is Stable"),
        "{}",
        r.err
    );
    assert_eq!(committed(&mut c, "a").await, vec![(0, 0)]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    b.stop().await;
}
