//! Real `nats-server -js` processes on loopback for the JetStream suites (feature
//! `jetstream`): each server gets a free port and a temporary store directory and is
//! stopped by pid (SIGKILL) when dropped.
//!
//! `nats-server` must be installed (`scripts/test-all` installs Debian's package), or named
//! by `NATS_SERVER=/path/to/nats-server`. `NETDB_SKIP_JETSTREAM=1` skips the suites where it
//! cannot be installed: [`NatsServer::start`] then returns `None`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netdb_runtime::jetstream::{JetStream, JetStreamOptions};

/// The `nats-server` binary, or `None` when `NETDB_SKIP_JETSTREAM=1`.
///
/// # Panics
/// When it is not installed and not skipped, with how to install or skip it.
pub fn nats_server_binary() -> Option<PathBuf> {
    if std::env::var_os("NETDB_SKIP_JETSTREAM").is_some_and(|v| v == "1") {
        return None;
    }
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/local/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join("nats-server");
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    panic!(
        "the JetStream tests need `nats-server` (2.9 or later): install it \
         (`apt-get install -y nats-server`, or https://github.com/nats-io/nats-server/releases), \
         name it with NATS_SERVER=/path/to/nats-server, or skip these tests with \
         NETDB_SKIP_JETSTREAM=1"
    );
}

/// A `nats-server -js` on loopback; killed by pid when dropped.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    extra: Vec<String>,
    _dir: tempfile::TempDir,
}

/// A port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// Starts a server, or `None` when the tests are skipped.
    pub fn start() -> Option<NatsServer> {
        let binary = nats_server_binary()?;
        let mut server = NatsServer::new(binary, free_port(), Vec::new());
        server.restart();
        Some(server)
    }

    pub fn new(binary: PathBuf, port: u16, extra: Vec<String>) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        NatsServer {
            binary,
            child: None,
            port,
            store: dir.path().join("store"),
            extra,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and store directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let child = spawn_server(&self.binary, self.port, &self.store, &self.extra);
        self.child = Some(child);
        wait_listening(self.port);
    }

    /// Kills the server (SIGKILL, by pid) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_server(binary: &Path, port: u16, store: &Path, extra: &[String]) -> Child {
    Command::new(binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", binary.display()))
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nats-server did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A connection to `server` with short timeouts (2 s), so failures surface quickly.
pub fn connect(server: &NatsServer) -> JetStream {
    JetStream::connect(
        JetStreamOptions::new([server.url()])
            .with_request_timeout(Duration::from_secs(2))
            .with_append_timeout(Duration::from_secs(2)),
    )
    .unwrap()
}

/// Three clustered servers, `n0`..`n2`.
pub fn start_cluster() -> Option<Vec<NatsServer>> {
    let binary = nats_server_binary()?;
    let cluster_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let routes = cluster_ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut servers: Vec<NatsServer> = (0..3)
        .map(|i| {
            let extra = vec![
                "-n".into(),
                format!("n{i}"),
                "--cluster_name".into(),
                "netdb".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{}", cluster_ports[i]),
                "--routes".into(),
                routes.clone(),
            ];
            NatsServer::new(binary.clone(), free_port(), extra)
        })
        .collect();
    for s in &mut servers {
        s.restart();
    }
    Some(servers)
}
