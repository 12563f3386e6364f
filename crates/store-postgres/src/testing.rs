//! A throwaway PostgreSQL cluster for tests (feature `test-cluster`).
//!
//! [`TempCluster::start`] runs `initdb` into a fresh temporary directory and starts `postgres`
//! on 127.0.0.1 at a free port, waiting until it accepts connections (`pg_isready`). Dropping
//! it stops the server (`pg_ctl stop -m immediate`), waits for it and removes the directory, so
//! nothing is left running. The server runs as this process's child (not daemonized by
//! `pg_ctl start`), so its exit is reaped here even where PID 1 reaps nothing.
//!
//! PostgreSQL refuses to run as root: when the process is root, the binaries run as the
//! `postgres` system user (via `runuser`), and the directory is handed to that user.
//!
//! Binaries are looked up in `$WATERLINE_PG_BIN`, then `/usr/lib/postgresql/<newest>/bin`, then
//! `PATH`. Durability is traded for speed (`fsync=off`): the cluster is disposable.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
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
    Io(std::io::Error),
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

// By hand rather than `#[from]`: the message prints the I/O error, so it is not also
// returned as `source()`.
impl From<std::io::Error> for ClusterError {
    fn from(e: std::io::Error) -> Self {
        ClusterError::Io(e)
    }
}

/// A running throwaway cluster; stopped and deleted on drop.
#[derive(Debug)]
pub struct TempCluster {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    as_postgres: bool,
    port: u16,
    server: Option<Child>,
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
            server: None,
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
            let log = std::fs::File::create(cluster.root().join("postgres.log"))?;
            let server = cluster
                .pg("postgres")
                .arg("-D")
                .arg(&data)
                .args(["-p", &cluster.port.to_string(), "-k"])
                .arg(cluster.root())
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            cluster.server = Some(server);
            match cluster.wait_ready() {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    last = format!(
                        "{e}: {}",
                        std::fs::read_to_string(cluster.root().join("postgres.log"))
                            .unwrap_or_default()
                    );
                    cluster.stop_server();
                }
            }
        }
        Err(ClusterError::Command {
            cmd: "postgres".into(),
            output: last,
        })
    }

    fn wait_ready(&mut self) -> Result<(), ClusterError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                return Err(ClusterError::NotReady(format!("server exited: {status}")));
            }
            let ready = self
                .pg("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ClusterError::NotReady(format!("port {}", self.port)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (immediate shutdown) and reaps it.
    fn stop_server(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "10", "stop"])
            .output();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still there: kill the direct child (postgres itself, or runuser, which forwards it).
        let _ = server.kill();
        let _ = server.wait();
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
        self.stop_server();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
