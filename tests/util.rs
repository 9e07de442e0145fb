//! Test helpers: a server on an ephemeral port with a temporary data directory.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parley::client::Client;
use parley::{Config, Server, ShutdownHandle};
use serde_json::{json, Value};
use sha2::Digest;
use tempfile::TempDir;

pub struct TestServer {
    pub addr: SocketAddr,
    /// The plaintext listener beside TLS, when configured.
    pub plain_addr: Option<SocketAddr>,
    /// The metrics listener, when configured.
    pub metrics_addr: Option<SocketAddr>,
    /// The web listener, when on.
    pub web_addr: Option<SocketAddr>,
    pub dir: TempDir,
    /// Opens local connections (front ends inside the server).
    pub local: parley::local::LocalConnector,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for tests: ephemeral port, the given data directory, two
/// workers. Functional tests make many users and rooms from one address in
/// moments, so the per-address sign-up and per-user creation limits are
/// lifted here; the abuse tests restore the defaults they attack
/// ([`default_limits`]).
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        workers: 2,
        sign_ups_per_addr_per_min: 1e6,
        sign_up_burst_per_addr: 1_000_000,
        sign_ups_per_min: 1e6,
        log_ins_per_addr_per_min: 1e6,
        log_in_burst_per_addr: 1_000_000,
        log_ins_per_min: 1e6,
        rooms_burst: 1_000_000,
        friend_adds_burst: 1_000_000,
        reads_burst: 1_000_000,
        // Parallel test servers would fight over the web port; web tests turn it on.
        web: "off".into(),
        cluster_store: postgres_for(data_dir),
        ..Config::default()
    }
}

/// With PARLEY_TEST_POSTGRES set to a server's URL (such as
/// `postgres://postgres@127.0.0.1`), every test server keeps its data in a
/// PostgreSQL database of its own, named after its data directory (so a
/// restart on the same directory finds the same data): the same suite then
/// tests the PostgreSQL store.
pub fn postgres_for(data_dir: &Path) -> Option<String> {
    let base = std::env::var("PARLEY_TEST_POSTGRES").ok()?;
    Some(postgres_database(&base, data_dir))
}

/// A PostgreSQL database on the server at `base`, named after `dir` (made
/// if it does not exist yet); returns its URL.
pub fn postgres_database(base: &str, dir: &Path) -> String {
    let base = base.trim_end_matches('/');
    let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
    let name = format!("parley_test_{}", hex::encode(&digest[..8]));
    let mut admin =
        postgres::Client::connect(&format!("{base}/postgres"), postgres::NoTls).expect("PostgreSQL answers");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .expect("listing databases")
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("creating a test database");
    }
    format!("{base}/{name}")
}

/// Whether the suite runs against PostgreSQL (tests of SQLite's own files
/// and crash behaviour skip then, saying so).
pub fn on_postgres() -> bool {
    std::env::var_os("PARLEY_TEST_POSTGRES").is_some()
}

/// Puts back the default limits that [`test_config`] lifts.
pub fn default_limits(config: &mut Config) {
    let d = Config::default();
    config.sign_ups_per_addr_per_min = d.sign_ups_per_addr_per_min;
    config.sign_up_burst_per_addr = d.sign_up_burst_per_addr;
    config.sign_ups_per_min = d.sign_ups_per_min;
    config.log_ins_per_addr_per_min = d.log_ins_per_addr_per_min;
    config.log_in_burst_per_addr = d.log_in_burst_per_addr;
    config.log_ins_per_min = d.log_ins_per_min;
    config.rooms_burst = d.rooms_burst;
    config.friend_adds_burst = d.friend_adds_burst;
    config.reads_burst = d.reads_burst;
}

/// Starts a server with default test settings.
pub fn start_server() -> TestServer {
    start_with(|_| {})
}

/// Starts a server after letting the test adjust its settings.
pub fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    start_in(dir, adjust)
}

/// Starts a server on an existing data directory (for restarts).
/// With PARLEY_TEST_LOG set, the server's log goes to the test output.
pub fn start_in(dir: TempDir, adjust: impl FnOnce(&mut Config)) -> TestServer {
    if std::env::var_os("PARLEY_TEST_LOG").is_some() {
        let _ = simplelog::WriteLogger::init(
            log::LevelFilter::Debug,
            simplelog::Config::default(),
            std::io::stderr(),
        );
    }
    let mut config = test_config(&dir.path().join("data"));
    adjust(&mut config);
    let server = Server::bind(config).expect("server binds");
    let addr = server.local_addr();
    let plain_addr = server.plain_addr();
    let metrics_addr = server.metrics_addr();
    let web_addr = server.web_addr();
    let handle = server.shutdown_handle();
    let local = server.local_connector();
    let thread = std::thread::spawn(move || server.run());
    TestServer {
        addr,
        plain_addr,
        metrics_addr,
        web_addr,
        dir,
        local,
        handle,
        thread: Some(thread),
    }
}

impl TestServer {
    #[track_caller]
    pub fn connect(&self) -> Client {
        Client::connect(self.addr).expect("connect")
    }

    /// Signs up `login` (password "pw-" + login) on a new connection.
    #[track_caller]
    pub fn user(&self, login: &str) -> User {
        let mut client = self.connect();
        let reply = client.sign_up(login, &format!("pw-{login}")).expect("sign up");
        assert_eq!(reply["type"], "RQ_TOKEN", "sign up {login}: {reply}");
        User {
            client,
            token: reply["token"].as_str().unwrap().to_owned(),
            id: reply["user_id"].as_i64().unwrap(),
            login: login.to_owned(),
        }
    }

    /// Stops the server gracefully; returns what `run` returned, and the data dir.
    pub fn stop(mut self) -> (anyhow::Result<()>, TempDir) {
        self.handle.shutdown();
        let result = self.thread.take().unwrap().join().expect("server thread");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (result, dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.handle.shutdown();
            let _ = thread.join();
        }
    }
}

/// A signed-up user with its first connection.
pub struct User {
    pub client: Client,
    pub token: String,
    pub id: i64,
    pub login: String,
}

impl User {
    #[track_caller]
    pub fn req(&mut self, msg: Value) -> Value {
        self.client.request(msg).expect("request answered")
    }
}

/// Asserts a reply is an RQ_ERROR_MSG with the given code.
#[track_caller]
/// The `message_id`s of the message objects in `reply[field]`, in order.
pub fn message_ids(reply: &Value, field: &str) -> Vec<i64> {
    reply[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_i64().unwrap())
        .collect()
}

pub fn assert_error(reply: &Value, code: &str) {
    assert_eq!(reply["type"], "RQ_ERROR_MSG", "expected {code}, got {reply}");
    assert_eq!(reply["error_code"], code, "wrong error: {reply}");
    assert!(
        reply["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {reply}"
    );
}

/// Asserts a reply has the given type.
#[track_caller]
pub fn assert_type(reply: &Value, kind: &str) {
    assert_eq!(reply["type"], kind, "unexpected reply: {reply}");
}

/// Waits until `cond` holds, polling; panics after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "condition not met within {timeout:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts no message arrives on `client` within `within`.
#[track_caller]
pub fn assert_silent(client: &mut Client, within: Duration) {
    client.set_timeout(within).unwrap();
    match client.recv() {
        Ok(msg) => panic!("expected nothing, got {msg}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "expected a timeout, got {e}"
        ),
    }
    client.set_timeout(parley::client::DEFAULT_TIMEOUT).unwrap();
}

pub fn ping() -> Value {
    json!({"type": "RQ_PING"})
}

impl User {
    /// Creates a room and returns its id.
    #[track_caller]
    pub fn new_room(&mut self, name: &str, room_type: &str) -> i64 {
        let reply =
            self.req(json!({"type": "RQ_NEW_ROOM", "name": name, "desc": "", "room_type": room_type}));
        assert_eq!(reply["type"], "RQ_NEW_ROOM", "{reply}");
        reply["id"].as_i64().unwrap()
    }

    /// The next message of `kind`, skipping nothing else (others are kept).
    #[track_caller]
    pub fn expect(&mut self, kind: &str) -> Value {
        self.client.recv_type(kind).expect("push arrives")
    }
}

/// Starts parleyd on an ephemeral port; returns the child and its address.
// The caller waits for the child it is handed.
#[allow(clippy::zombie_processes)]
pub fn spawn_parleyd(data: &Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_parleyd"))
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(["--workers", "2"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            let _ = child.wait();
            panic!("parleyd exited early");
        }
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().to_owned();
            // Keep draining the log so the server never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
            return (child, addr);
        }
    }
}

/// A client whose connection comes from `source` (any 127.0.0.0/8 address
/// works on loopback), to act as several hosts.
#[track_caller]
pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    Client::from_stream(socket.into()).expect("client")
}

/// Starts parleyd with a config file, its log going to `log`; returns the
/// child and its address.
// The caller waits for the child it is handed.
#[allow(clippy::zombie_processes)]
pub fn spawn_parleyd_with(data: &Path, config: &Path, log: &Path) -> (std::process::Child, String) {
    spawn_command(
        std::process::Command::new(env!("CARGO_BIN_EXE_parleyd")),
        data,
        config,
        log,
    )
}

/// As [`spawn_parleyd_with`], under an open-file limit of `max_files` (with prlimit).
pub fn spawn_parleyd_limited(
    data: &Path,
    config: &Path,
    log: &Path,
    max_files: u32,
) -> (std::process::Child, String) {
    let mut command = std::process::Command::new("prlimit");
    command
        .arg(format!("--nofile={max_files}:{max_files}"))
        .arg(env!("CARGO_BIN_EXE_parleyd"));
    spawn_command(command, data, config, log)
}

/// Starts the given command (parleyd, perhaps under a wrapper or with a
/// changed environment) on an ephemeral port; returns the child and its address.
// The caller waits for the child it is handed.
#[allow(clippy::zombie_processes)]
pub fn spawn_command(
    mut command: std::process::Command,
    data: &Path,
    config: &Path,
    log: &Path,
) -> (std::process::Child, String) {
    let log_file = std::fs::File::create(log).unwrap();
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(["--workers", "2"])
        .stderr(log_file)
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            return (child, rest.split_whitespace().next().unwrap().to_owned());
        }
        if started.elapsed() > Duration::from_secs(20) || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("parleyd did not start: {text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Reads until EOF or timeout; true if the server closed the connection.
pub fn closed_by_server(stream: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Starts parleyd on an ephemeral port with the settings `toml` (a config
/// file written beside `data`), its log going to `log`.
pub fn spawn_parleyd_configured(
    dir: &Path,
    toml: &str,
    max_files: Option<u32>,
) -> (std::process::Child, String, std::path::PathBuf) {
    let log = dir.join("parleyd.log");
    let config = dir.join("parley.toml");
    std::fs::write(&config, toml).unwrap();
    let data = dir.join("data");
    let (child, addr) = match max_files {
        Some(n) => spawn_parleyd_limited(&data, &config, &log, n),
        None => spawn_parleyd_with(&data, &config, &log),
    };
    (child, addr, log)
}

/// A spawned server, killed however the test ends (a panicking test would
/// otherwise leave it running, holding the test harness's output open).
pub struct Stop(pub std::process::Child);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test server's database, opened directly (SQLite's file, or the
/// PostgreSQL database [`postgres_for`] made for it), for tests that look
/// beneath the protocol. Statements use `$1`-style parameters, which both read.
pub enum Database {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

impl Database {
    /// The database of the server whose data directory is `data_dir`.
    pub fn open(data_dir: &Path) -> Database {
        match postgres_for(data_dir) {
            Some(url) => Database::Postgres(
                postgres::Client::connect(&url, postgres::NoTls).expect("the test database"),
            ),
            None => Database::Sqlite(
                rusqlite::Connection::open(data_dir.join("parley.db")).expect("the database file"),
            ),
        }
    }

    /// The one integer `sql` returns.
    pub fn number(&mut self, sql: &str) -> i64 {
        match self {
            Database::Sqlite(conn) => conn.query_row(sql, [], |row| row.get(0)).unwrap(),
            Database::Postgres(client) => client.query_one(sql, &[]).unwrap().get(0),
        }
    }

    /// The one text `sql` returns.
    pub fn text(&mut self, sql: &str) -> String {
        match self {
            Database::Sqlite(conn) => conn.query_row(sql, [], |row| row.get(0)).unwrap(),
            Database::Postgres(client) => client.query_one(sql, &[]).unwrap().get(0),
        }
    }

    /// The bytes in the first column of every row `sql` returns.
    pub fn blobs(&mut self, sql: &str) -> Vec<Vec<u8>> {
        match self {
            Database::Sqlite(conn) => conn
                .prepare(sql)
                .unwrap()
                .query_map([], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap(),
            Database::Postgres(client) => client
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect(),
        }
    }

    /// Runs `sql` with one integer parameter; returns the rows it changed.
    pub fn execute(&mut self, sql: &str, value: i64) -> u64 {
        match self {
            Database::Sqlite(conn) => conn.execute(sql, [value]).unwrap() as u64,
            Database::Postgres(client) => client.execute(sql, &[&value]).unwrap(),
        }
    }
}

/// Says that a test of the SQLite store's own behaviour is skipped (the
/// suite runs against PostgreSQL), and returns whether it is.
pub fn skipped_on_postgres(what: &str) -> bool {
    if on_postgres() {
        eprintln!("skipped against PostgreSQL: {what}");
    }
    on_postgres()
}
