//! A Prometheus Alertmanager child process: gossip off, a free loopback port, a temporary
//! store, one route to a receiver that sends nothing (grouped within 1 s), killed and cleaned
//! up on drop.
//!
//! Used where ackscope's alerts are checked against a real Alertmanager (the tests, the
//! scorecard). Like [`crate::nats_server`], it only starts it, waits until it is ready, and
//! stops it; talking to it is the caller's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `prometheus-alertmanager` package puts it.
const DEBIAN: &str = "/usr/bin/prometheus-alertmanager";

/// Why an Alertmanager could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Alertmanager not found at {0}: install it (Debian: `apt-get install \
         prometheus-alertmanager`) or set ACKSCOPE_ALERTMANAGER to its path"
    )]
    NotFound(String),
    #[error("cannot prepare Alertmanager's directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("Alertmanager exited during start-up ({status}): {log}")]
    Exited { status: String, log: String },
    #[error("Alertmanager was not ready on {0} within 15s")]
    Timeout(String),
}

/// `ACKSCOPE_ALERTMANAGER` if set, else Debian's path.
pub fn binary() -> PathBuf {
    std::env::var_os("ACKSCOPE_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEBIAN.into())
}

/// A running Alertmanager child.
#[derive(Debug)]
pub struct Alertmanager {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts `binary` and waits until `/-/ready` answers 200.
    pub fn start(binary: &Path) -> Result<Self, Error> {
        if !binary.is_file() {
            return Err(Error::NotFound(binary.display().to_string()));
        }
        let dir = tempfile::Builder::new()
            .prefix("ackscope-alertmanager-")
            .tempdir()?;
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: none\n  group_wait: 1s\n  group_interval: 1s\n  \
             repeat_interval: 1h\nreceivers:\n  - name: none\n",
        )?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string();
        let log_path = dir.path().join("alertmanager.log");
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !ready(&addr) {
            if let Some(status) = child.try_wait()? {
                return Err(Error::Exited {
                    status: status.to_string(),
                    log: std::fs::read_to_string(&log_path).unwrap_or_default(),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Timeout(addr));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`, what `--alertmanager` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /-/ready` on `addr` answers 200.
fn ready(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET /-/ready HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..] == b"200"
}
