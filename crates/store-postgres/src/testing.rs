//! A throwaway PostgreSQL cluster for tests (feature `test-cluster`).
//!
//! [`TempCluster::start`] runs `initdb` into a fresh temporary directory and starts `postgres`
//! on 127.0.0.1 at a free port, waiting until it accepts connections. Dropping it stops the
//! server (`pg_ctl stop -m immediate`) and removes the directory, so nothing is left running.
//!
//! PostgreSQL refuses to run as root: when the process is root, the binaries run as the
//! `postgres` system user (via `runuser`), and the directory is handed to that user.
//!
//! Binaries are looked up in `$WATERLINE_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`, then
//! `PATH`. Durability is traded for speed (`fsync=off`): the cluster is disposable.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Why a throwaway cluster could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// No `initdb`/`pg_ctl` binaries were found.
    #[error("PostgreSQL binaries not found (set WATERLINE_PG_BIN or install postgresql)")]
    NoBinaries,
    /// Creating or preparing the temporary directory failed.
    #[error("temporary directory: {0}")]
    Io(#[from] std::io::Error),
    /// A PostgreSQL command failed.
    #[error("{cmd} failed: {output}")]
    Command {
        /// The command.
        cmd: String,
        /// Its standard error and output.
        output: String,
    },
    /// The server did not accept connections in time.
    #[error("PostgreSQL did not start: {0}")]
    NotReady(String),
}

/// A running throwaway cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct TempCluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
}

fn find_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WATERLINE_PG_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    })
}

fn is_root() -> bool {
    // /proc/self is owned by the effective user: no unsafe geteuid call needed.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TempCluster {
    /// Initializes and starts a cluster; returns once it accepts connections.
    pub fn start() -> Result<Self, ClusterError> {
        let bin = find_bin().ok_or(ClusterError::NoBinaries)?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("waterline-pg-").tempdir()?;
        if as_postgres {
            let out = Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path())
                .output()?;
            check("chown", out)?;
        }
        let mut cluster = TempCluster {
            dir: Some(dir),
            bin,
            as_postgres,
            port: 0,
        };
        let data = cluster.data_dir();
        let out = cluster
            .pg("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"])
            .output()?;
        check("initdb", out)?;
        // The port is free when picked but may be taken before postgres binds it: retry.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let opts = format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                cluster.port,
                cluster.root().display()
            );
            let out = cluster
                .pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &opts, "-l"])
                .arg(cluster.root().join("postgres.log"))
                .args(["-w", "-t", "30", "start"])
                .output()?;
            if out.status.success() {
                return cluster.wait_ready().map(|()| cluster);
            }
            last = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(cluster.root().join("postgres.log")).unwrap_or_default()
            );
        }
        Err(ClusterError::Command {
            cmd: "pg_ctl start".into(),
            output: last,
        })
    }

    fn wait_ready(&self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady(format!("port {}", self.port)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn root(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("/"))
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection string for the `postgres` database as the `postgres` superuser.
    pub fn conn_str(&self) -> String {
        self.conn_str_db("postgres")
    }

    /// A connection string for database `db`.
    pub fn conn_str_db(&self, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={db} connect_timeout=10",
            self.port
        )
    }
}

fn check(cmd: &str, out: Output) -> Result<(), ClusterError> {
    if out.status.success() {
        Ok(())
    } else {
        Err(ClusterError::Command {
            cmd: cmd.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            ),
        })
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if self.port != 0 {
            let _ = self
                .pg("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
