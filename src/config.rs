//! Server settings: defaults that work, a TOML file, and flags on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The database's file name in the data directory.
pub const DB_FILE: &str = "parley.db";

/// Where the web client is served unless told otherwise.
pub const DEFAULT_WEB: &str = "127.0.0.1:7780";

/// How hard SQLite works to keep an acknowledged write across a crash.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: every commit is on disk before it is acknowledged,
    /// so an acknowledged message survives power loss and `kill -9`.
    Full,
    /// `synchronous=NORMAL`: survives a crash of the server process, but the
    /// last commits may be lost if the machine itself goes down.
    Normal,
}

/// Every setting of `parleyd`. Field names are the TOML keys.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on (TLS when `tls_cert` and `tls_key` are set).
    pub listen: SocketAddr,
    /// A PEM certificate chain: with `tls_key`, `listen` serves TLS. Read
    /// again on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A second, plaintext listener beside the TLS one (for local clients).
    pub listen_plain: Option<SocketAddr>,
    /// Where to serve Prometheus metrics (`GET /metrics`); none by default.
    pub metrics: Option<SocketAddr>,
    /// Where to serve the web client and its WebSocket (HTTPS and WSS with
    /// TLS), or "off".
    pub web: String,
    /// Origins whose pages may open the WebSocket besides the page's own
    /// (for a reverse proxy on another name): `https://chat.example.org`.
    pub web_origins: Vec<String>,
    /// Directory for the database and stored files; created if missing.
    pub data_dir: PathBuf,
    /// Read worker threads (default: 2 × cores); every write goes to the one writer.
    pub workers: usize,
    /// error, warn, info, debug or trace.
    pub log_level: String,
    /// Log to this file (reopened on SIGHUP) instead of standard error.
    pub log_file: Option<PathBuf>,
    /// Log every line each connection sends and receives (passwords and
    /// tokens masked), to diagnose a client. Off by default.
    pub trace_lines: bool,
    /// Connections held at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Longest request line in bytes; longer ones get ER_TOO_LARGE.
    pub max_line_bytes: usize,
    /// Bytes queued for one client before it is cut off as too slow.
    pub max_outbound_bytes: usize,
    /// Reads waiting for a worker, and (separately) writes waiting for the
    /// writer, all connections together; beyond it, ER_BUSY.
    pub job_queue: usize,
    /// A connection that has not logged in after this long is closed.
    pub login_timeout_ms: u64,
    /// Connections not logged in, per source address (IPv6: per /64); at
    /// the cap the oldest idle one of that address is closed to make room.
    pub max_anonymous_per_addr: usize,
    /// Connections not logged in, in all; 0: a tenth of `max_connections`.
    pub max_anonymous: usize,
    /// A token unused for this many days stops working.
    pub token_ttl_days: u64,
    /// Failed log-ins for one login from one address within the window
    /// before that address is refused for that login (ER_RATE_LIMITED).
    pub login_failures_per_login: u32,
    /// Failed log-ins for one login from all addresses within the window
    /// before addresses it never logged in from are refused (its owner's are not).
    pub login_failures_per_login_all: u32,
    /// Failed log-ins from one source address within the window before ER_RATE_LIMITED.
    pub login_failures_per_addr: u32,
    /// The window, in seconds, over which failed log-ins are counted.
    pub login_failure_window_secs: u64,
    /// Threads that hash passwords (sign-up, log-in); chat never waits for them.
    pub auth_workers: usize,
    /// Sign-ups and log-ins waiting for a hashing thread; beyond it ER_BUSY.
    pub auth_queue: usize,
    /// Sign-ups per source address per minute, sustained...
    pub sign_ups_per_addr_per_min: f64,
    /// ...with bursts up to this.
    pub sign_up_burst_per_addr: u32,
    /// Sign-ups per minute from all addresses together.
    pub sign_ups_per_min: f64,
    /// Password log-ins per source address per minute, sustained...
    pub log_ins_per_addr_per_min: f64,
    /// ...with bursts up to this.
    pub log_in_burst_per_addr: u32,
    /// Password log-ins per minute from all addresses together.
    pub log_ins_per_min: f64,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// SQLite durability of acknowledged writes.
    pub durability: Durability,
    /// Longest message, in characters after trimming.
    pub max_message_chars: usize,
    /// Messages a user may send per second, sustained.
    pub msg_rate_per_sec: f64,
    /// Messages a user may send in a burst above the sustained rate.
    pub msg_burst: u32,
    /// Largest file accepted, in bytes.
    pub max_file_bytes: u64,
    /// A transfer that moves no byte for this long is abandoned and its connection closed.
    pub transfer_idle_timeout_ms: u64,
    /// Bytes of files one user may store (uploads under way count); 0 for no limit.
    pub user_quota_bytes: u64,
    /// Free space kept on the data disk: uploads that would go below it are refused,
    /// so deleting (which needs a little space) always stays possible.
    pub disk_reserve_bytes: u64,
    /// Searches and history pages per user per second, sustained...
    pub reads_per_sec: f64,
    /// ...with bursts up to this.
    pub reads_burst: u32,
    /// Rooms a user may create per hour, sustained...
    pub rooms_per_hour: f64,
    /// ...with bursts up to this.
    pub rooms_burst: u32,
    /// Messages (and their files) older than this many days are deleted, in
    /// small batches in the background; 0 keeps everything.
    pub retention_days: u32,
    /// Friends a user may add per hour, sustained...
    pub friend_adds_per_hour: f64,
    /// ...with bursts up to this.
    pub friend_adds_burst: u32,
    /// Serve ngobrol clients through this RabbitMQ broker
    /// (`amqp://guest:guest@127.0.0.1:5672/%2f`); builds with the `ngobrol`
    /// feature only. None: no bridge.
    pub ngobrol_amqp: Option<String>,
    /// The queue ngobrol clients publish their requests to.
    pub ngobrol_queue: String,
    /// Keep everything in this PostgreSQL database (`postgres://...`)
    /// rather than in SQLite in the data directory, so that several nodes
    /// can serve it; builds with the `postgres` feature only.
    pub cluster_store: Option<String>,
    /// Tell the other nodes of the cluster over this NATS server
    /// (`nats://127.0.0.1:4222`); needs `cluster_store` and a build with the
    /// `cluster` feature.
    pub cluster_bus: Option<String>,
    /// The cluster's subject prefix on the bus, so several clusters may
    /// share one NATS server.
    pub cluster_subject: String,
}

impl Default for Config {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            tls_cert: None,
            tls_key: None,
            listen_plain: None,
            metrics: None,
            web: DEFAULT_WEB.into(),
            web_origins: Vec::new(),
            ngobrol_amqp: None,
            ngobrol_queue: "ngobrol".into(),
            cluster_store: None,
            cluster_bus: None,
            cluster_subject: "parley".into(),
            data_dir: PathBuf::from("parley-data"),
            workers: 2 * cores,
            log_level: "info".into(),
            log_file: None,
            trace_lines: false,
            max_connections: 100_000,
            max_line_bytes: 64 * 1024,
            max_outbound_bytes: 1024 * 1024,
            job_queue: 4096,
            login_timeout_ms: 15 * 60 * 1000,
            max_anonymous_per_addr: 32,
            max_anonymous: 0,
            token_ttl_days: 30,
            login_failures_per_login: 5,
            login_failures_per_login_all: 20,
            login_failures_per_addr: 30,
            login_failure_window_secs: 60,
            auth_workers: (cores / 2).max(1),
            auth_queue: 64,
            sign_ups_per_addr_per_min: 2.0,
            sign_up_burst_per_addr: 10,
            sign_ups_per_min: 60.0,
            log_ins_per_addr_per_min: 30.0,
            log_in_burst_per_addr: 20,
            log_ins_per_min: 600.0,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            durability: Durability::Full,
            max_message_chars: 4000,
            msg_rate_per_sec: 20.0,
            msg_burst: 40,
            max_file_bytes: 10_000_000,
            transfer_idle_timeout_ms: 30_000,
            user_quota_bytes: 1 << 30,
            disk_reserve_bytes: 256 << 20,
            reads_per_sec: 10.0,
            reads_burst: 60,
            rooms_per_hour: 30.0,
            rooms_burst: 10,
            retention_days: 0,
            friend_adds_per_hour: 60.0,
            friend_adds_burst: 20,
        }
    }
}

impl Config {
    /// Reads a TOML file; keys it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Checks what the types alone cannot: counts that must be positive,
    /// the log level, and a TLS certificate and key that load together.
    pub fn check(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.workers == 0 {
            bail!("workers must be at least 1");
        }
        if self.auth_workers == 0 || self.auth_queue == 0 || self.job_queue == 0 {
            bail!("auth_workers, auth_queue and job_queue must be at least 1");
        }
        if self.max_connections == 0 || self.max_line_bytes < 1024 {
            bail!("max_connections must be at least 1 and max_line_bytes at least 1024");
        }
        if self.log_level.parse::<log::LevelFilter>().is_err() {
            bail!(
                "log_level {:?} is not one of error, warn, info, debug, trace",
                self.log_level
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                crate::tls::ServerTls::load(cert, key)?;
            }
            (None, None) => {}
            _ => bail!("TLS needs both tls_cert and tls_key"),
        }
        self.web_addr()?;
        self.check_bridge()?;
        self.check_cluster()
    }

    /// The cluster settings (also checked when a server starts).
    pub fn check_cluster(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if let Some(url) = &self.cluster_store {
            if !cfg!(feature = "postgres") {
                bail!("cluster_store needs a parleyd built with the postgres feature (cargo build --features postgres)");
            }
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("cluster_store {url:?} is not a URL like postgres://parley@127.0.0.1/parley");
            }
        }
        if let Some(url) = &self.cluster_bus {
            if !cfg!(feature = "cluster") {
                bail!("cluster_bus needs a parleyd built with the cluster feature (cargo build --features cluster)");
            }
            if !url.starts_with("nats://") {
                bail!("cluster_bus {url:?} is not a URL like nats://127.0.0.1:4222");
            }
            if self.cluster_store.is_none() {
                bail!(
                    "cluster_bus needs cluster_store: the nodes of a cluster share one PostgreSQL database"
                );
            }
        }
        let subject_ok = !self.cluster_subject.is_empty()
            && self.cluster_subject.len() <= 100
            && self.cluster_subject.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !subject_ok {
            bail!("cluster_subject must be dot-separated words of letters, digits, - and _ (like parley or team.chat)");
        }
        Ok(())
    }

    /// The web listener's address; `None` when it is off.
    pub fn web_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.web.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        self.web.parse().map(Some).map_err(|_| {
            anyhow::anyhow!(
                "web {:?} is not an address like 127.0.0.1:7780, nor \"off\"",
                self.web
            )
        })
    }

    /// The ngobrol bridge's settings (also checked when a server starts).
    pub fn check_bridge(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        if self.ngobrol_amqp.is_some() && !cfg!(feature = "ngobrol") {
            bail!("ngobrol_amqp needs a parleyd built with the ngobrol feature (cargo build --features ngobrol)");
        }
        if let Some(url) = &self.ngobrol_amqp {
            if !url.starts_with("amqp://") {
                bail!("ngobrol_amqp {url:?} is not a URL like amqp://guest:guest@127.0.0.1:5672/%2f");
            }
        }
        if self.ngobrol_queue.is_empty() || self.ngobrol_queue.len() > 200 {
            bail!("ngobrol_queue must be 1 to 200 bytes");
        }
        Ok(())
    }

    /// The cap on connections not logged in, in all.
    pub fn anonymous_cap(&self) -> usize {
        if self.max_anonymous > 0 {
            self.max_anonymous
        } else {
            (self.max_connections / 10).max(1)
        }
    }

    /// The sign-up and log-in rates the reactor admits.
    /// Path of the SQLite database inside the data directory.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join(DB_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_what_it_names() {
        let cfg: Config =
            toml::from_str("listen = \"0.0.0.0:9000\"\nworkers = 3\ndurability = \"normal\"\n").unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.workers, 3);
        assert_eq!(cfg.durability, Durability::Normal);
        assert_eq!(cfg.max_line_bytes, 64 * 1024);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("listn = \"x\"").is_err());
    }
}
