//! The `waterline` binary as an operator runs it: usage errors, config errors, and `serve`'s
//! ready line and clean shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn waterline() -> Command {
    Command::new(env!("CARGO_BIN_EXE_waterline"))
}

/// Runs the binary and returns (exit code, stdout, stderr).
fn run(args: &[&str]) -> (i32, String, String) {
    let out = waterline().args(args).output().expect("run waterline");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn usage_errors_are_one_line_with_exit_code_2() {
    for args in [
        &["bogus"][..],
        &["serve", "--fsync", "sometimes"],
        &["serve", "--default-partitions", "0"],
        &["serve", "--no-such-flag"],
        &["serve", "--max-connections", "0"],
        &["serve", "--connections-max-idle-ms", "0"],
        &[
            "offsets",
            "reset",
            "--group",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "abc",
        ],
        &["groups", "describe", "--output", "xml", "--group", "g"],
        &["topics", "create", "--partitions", "3"],
        &["topics", "create", "--topic", "t", "--partitions", "0"],
        &["topics", "delete"],
        &["topics", "list", "--output", "xml"],
    ] {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("waterline: error: "),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn help_and_version_succeed_for_every_subcommand() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["serve", "--help"],
        &["groups", "--help"],
        &["groups", "describe", "--help"],
        &["offsets", "reset", "--help"],
        &["offsets", "export", "--help"],
        &["lag", "--help"],
        &["topics", "--help"],
        &["topics", "list", "--help"],
        &["topics", "describe", "--help"],
        &["topics", "create", "--help"],
        &["topics", "delete", "--help"],
        &["topics", "alter", "--help"],
    ] {
        let (code, stdout, _) = run(args);
        assert_eq!(code, 0, "{args:?}");
        assert!(!stdout.is_empty(), "{args:?}");
    }
}

/// Mistakes clap cannot see are found before connecting: one line naming the value, exit 2,
/// even with no broker listening.
#[test]
fn topics_usage_errors_need_no_broker() {
    // Nothing listens on port 1 of loopback.
    let no_broker = ["--bootstrap-server", "127.0.0.1:1", "--timeout-ms", "500"];
    for (args, needle) in [
        (
            &[
                "topics",
                "create",
                "--topic",
                "t",
                "--config",
                "retention.ms",
            ][..],
            "--config 'retention.ms': expected KEY=VALUE",
        ),
        (
            &[
                "topics", "alter", "--topic", "t", "--config", "a=1", "--config", "a=2",
            ],
            "'a' is given more than once",
        ),
        (
            &["topics", "alter", "--topic", "t", "--delete-config", "a=1"],
            "--delete-config 'a=1': give the key only",
        ),
        (
            &[
                "topics",
                "alter",
                "--topic",
                "t",
                "--config",
                "a=1",
                "--delete-config",
                "a",
            ],
            "'a' is both set (--config) and deleted (--delete-config)",
        ),
        (
            &["topics", "alter", "--topic", "t"],
            "give --partitions N, --config KEY=VALUE or --delete-config KEY",
        ),
        (
            &["topics", "describe", "--output", "csv"],
            "--output must be table or json",
        ),
    ] {
        let all: Vec<&str> = args.iter().chain(no_broker.iter()).copied().collect();
        let (code, stdout, stderr) = run(&all);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("waterline topics: error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
    }
    // An operation that needs the broker fails with exit code 1, in one line.
    let all: Vec<&str> = ["topics", "list"]
        .iter()
        .chain(no_broker.iter())
        .copied()
        .collect();
    let (code, _, stderr) = run(&all);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn bad_config_file_is_named_in_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(&config, "default_partitions = \"many\"\n").unwrap();
    let data = dir.path().join("data");
    let (code, _, stderr) = run(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broker.toml"), "{stderr}");
    assert!(stderr.contains("line 1, column 22"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let (code, _, stderr) = run(&["serve", "--config", "/nonexistent/waterline.toml"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/waterline.toml"), "{stderr}");
    // Settings that contradict each other are named too.
    let (code, _, stderr) = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--max-queued-request-bytes",
        "1000",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("max_queued_request_bytes"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn serve_prints_ready_line_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        "default_partitions = 3\n[groups]\ninitial_rebalance_delay_ms = 0\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let mut child = waterline()
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("ready line");
    assert!(line.starts_with("waterline: ready on 127.0.0.1:"), "{line}");
    let addr = line.split_whitespace().nth(3).unwrap().to_string();
    // It accepts Kafka connections.
    std::net::TcpStream::connect(&addr).expect("connect to the broker");
    // A second broker on the same data dir is refused while the first runs.
    let (code, _, stderr) = run(&[
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{stderr}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("clean shutdown complete"), "{stderr}");
}
