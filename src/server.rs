//! Assembles a server: data directory, database, workers, listener, reactor.
//!
//! [`Server::bind`] does everything that can fail at start-up (so `parleyd`
//! can report it in one line and exit non-zero); [`Server::run`] then serves
//! until a graceful shutdown completes.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::{bail, Context};
use mio::{Poll, Waker};

use crate::checkpointer::Checkpointer;
use crate::config::Config;
use crate::files;
use crate::job::WriteQueue;
use crate::local::{self, LocalArrivals, LocalConnector};
use crate::metrics::{self, Gauges, Metrics};
use crate::presence::Presence;
use crate::reactor::{Limits, Links, Listener, Reactor, ShutdownHandle, WAKER};
use crate::shared::Shared;
use crate::store::{self, SqliteStore, Store};
use crate::throttle::UserRates;
use crate::tls::ServerTls;
use crate::web::WebSite;
use crate::worker::Worker;
use crate::writer::Writer;

/// File descriptors kept for the listener, the database and logs.
const SPARE_FDS: u64 = 64;

/// Tasks and events queued between the reactor and the file thread.
const FILE_TASK_QUEUE: usize = 1024;

/// With a shared files directory, unreferenced files younger than this are
/// another node's uploads under way, not leftovers.
const CLUSTER_SWEEP_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// How often the checkpointer writes the log back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A bound, not yet running server.
pub struct Server {
    config: Config,
    poll: Poll,
    listener: mio::net::TcpListener,
    local_addr: SocketAddr,
    /// The plaintext listener beside a TLS one, if configured.
    plain_listener: Option<mio::net::TcpListener>,
    /// The web listener, unless off.
    web_listener: Option<mio::net::TcpListener>,
    tls: Option<Arc<ServerTls>>,
    /// The per-user rates, shared with the handlers (SIGHUP may change them).
    rates: Arc<UserRates>,
    /// Where metrics are served, bound at start-up.
    metrics_listener: Option<std::net::TcpListener>,
    waker: Arc<Waker>,
    shutdown: Arc<AtomicBool>,
    stores: Vec<Box<Store>>,
    /// Front ends inside the server connect through this.
    local: LocalConnector,
    local_arrivals: LocalArrivals,
}

/// Fails with a clear message unless `dir` exists (created if needed) and is
/// writable. The data directory and its files directory are made private
/// (0700): they hold everyone's conversations.
fn prepare_data_dir(config: &Config) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    let files = files::files_dir(dir);
    std::fs::create_dir_all(&files).with_context(|| format!("creating {}", files.display()))?;
    for d in [dir, &files] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", d.display()))?;
    }
    let probe = dir.join(".parley-write-test");
    std::fs::write(&probe, b"")
        .with_context(|| format!("data directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Makes the database and its journal files readable by the server's user
/// only (SQLite gives new journal files the database file's mode).
fn make_private(db_path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for suffix in ["", "-wal", "-shm"] {
        let path = files::with_suffix(db_path, suffix);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    Ok(())
}

/// Joins the other nodes over the bus, when one is configured.
/// `start_id` is the newest message id, read before the node listens: what
/// is stored after it reaches this node over the bus or from the store
/// (see `cluster::sequencer`).
#[cfg(feature = "cluster")]
fn join_cluster(
    config: &Config,
    waker: Arc<Waker>,
    start_id: i64,
    shared: &Arc<Shared>,
) -> anyhow::Result<Option<crate::reactor::NodeLink>> {
    use crate::cluster::bus::{Bus, BusSettings};
    let Some(url) = &config.cluster_bus else {
        return Ok(None);
    };
    let settings = BusSettings {
        url: url.clone(),
        prefix: config.cluster_subject.clone(),
    };
    // What arrives waits here for the reactor; past this, it is dropped
    // (stored messages come back from the store as gaps).
    let (events_tx, events_rx) = crossbeam_channel::bounded(65_536);
    let bus = Bus::start(settings, events_tx, waker)?;
    Ok(Some(crate::reactor::NodeLink::new(
        bus,
        events_rx,
        start_id,
        shared.clone(),
    )))
}

#[cfg(not(feature = "cluster"))]
fn join_cluster(
    config: &Config,
    _waker: Arc<Waker>,
    _start_id: i64,
    _shared: &Arc<Shared>,
) -> anyhow::Result<Option<crate::reactor::NodeLink>> {
    if config.cluster_bus.is_some() {
        bail!("cluster_bus needs a parleyd built with the cluster feature");
    }
    Ok(None)
}

/// Opens (and first migrates) the SQLite database in the data directory:
/// read-only connections for the workers and the hashing threads, then the
/// writer's (last). Every connection is opened before any thread starts, so
/// a bad database fails here rather than in a thread.
fn open_sqlite_stores(config: &Config) -> anyhow::Result<Vec<Box<Store>>> {
    let db_path = config.db_path();
    store::migrate(&db_path)?;
    make_private(&db_path)?;
    // The writer's opens first, so the WAL's files exist for the readers.
    let mut writer_store = SqliteStore::open(&db_path, config.durability)?;
    // The log goes back into the database file on a thread of its own
    // (the checkpointer, started with the writer).
    writer_store.leave_checkpoints_to_checkpointer()?;
    let mut stores = (0..config.workers + config.auth_workers)
        .map(|_| SqliteStore::open_reader(&db_path).map(|s| Box::new(s) as Box<Store>))
        .collect::<anyhow::Result<Vec<_>>>()?;
    stores.push(Box::new(writer_store));
    Ok(stores)
}

/// Opens (and first migrates) the PostgreSQL database at `url`: one
/// connection per worker and hashing thread, and the writer's (last).
#[cfg(feature = "postgres")]
fn open_postgres_stores(url: &str, config: &Config) -> anyhow::Result<Vec<Box<Store>>> {
    use crate::store::postgres::{self, PgStore};
    postgres::migrate(url)?;
    (0..=config.workers + config.auth_workers)
        .map(|_| PgStore::open(url).map(|s| Box::new(s) as Box<Store>))
        .collect()
}

#[cfg(not(feature = "postgres"))]
fn open_postgres_stores(_url: &str, _config: &Config) -> anyhow::Result<Vec<Box<Store>>> {
    bail!("cluster_store needs a parleyd built with the postgres feature")
}

/// Removes files no message refers to: what a crash mid-upload left behind.
fn sweep_files(config: &Config, store: &Store) -> anyhow::Result<()> {
    let dir = files::files_dir(&config.data_dir);
    let referenced = store.all_stored_files()?.into_iter().collect();
    // The nodes of a cluster share the files directory: what another node
    // is receiving right now is no leftover.
    let older_than = config.cluster_bus.as_ref().map(|_| CLUSTER_SWEEP_AGE);
    let removed =
        files::sweep(&dir, &referenced, older_than).with_context(|| format!("sweeping {}", dir.display()))?;
    if removed > 0 {
        log::info!("removed {removed} leftover files from {}", dir.display());
    }
    Ok(())
}

/// Raises the open-file limit towards what `max_connections` needs. Short
/// of it, that is a warning only if `max_connections` was set by hand: the
/// default asks for more than most hosts allow, and a default start should
/// not greet its user with a warning.
fn raise_fd_limit(max_connections: usize, configured: bool) {
    let wanted = max_connections as u64 + SPARE_FDS;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => {
            let level = if configured {
                log::Level::Warn
            } else {
                log::Level::Info
            };
            log::log!(
                level,
                "the open-file limit ({got}) allows about {} connections; max_connections is {max_connections}",
                got.saturating_sub(SPARE_FDS)
            );
        }
        Ok(_) => {}
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
}

impl Server {
    pub fn bind(config: Config) -> anyhow::Result<Server> {
        if config.workers == 0 {
            bail!("--workers must be at least 1");
        }
        if config.auth_workers == 0 || config.auth_queue == 0 || config.job_queue == 0 {
            bail!("auth_workers, auth_queue and job_queue must be at least 1");
        }
        config.check_bridge()?;
        config.check_cluster()?;
        // The certificate and the ports come first: a port already taken
        // fails before the data directory is created or migrated.
        // mio's bind listens with a backlog of 1024 (std's is 128, which
        // overflowed under connection storms: clients then waited for SYN
        // retransmits, seconds each).
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(ServerTls::load(cert, key)?)),
            (None, None) => None,
            _ => bail!("TLS needs both tls_cert and tls_key"),
        };
        let listener = mio::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .with_context(|| format!("cannot serve metrics on {addr}"))?,
            ),
            None => None,
        };
        let web_listener = match config.web_addr()? {
            None => None,
            Some(addr) => match mio::net::TcpListener::bind(addr) {
                Ok(listener) => Some(listener),
                // The default address taken (another parleyd on this host):
                // chat needs no web page, so it starts without one.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && config.web == crate::config::DEFAULT_WEB =>
                {
                    log::info!(
                        "the web client is off: {addr} is taken (give another with --web ADDR, or --web off)"
                    );
                    None
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot serve the web client on {addr} (give another with --web ADDR, or --web off)"
                    )))
                }
            },
        };
        let plain_listener = match config.listen_plain {
            Some(addr) => {
                Some(mio::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?)
            }
            None => None,
        };
        prepare_data_dir(&config)?;
        let stores = match &config.cluster_store {
            None => open_sqlite_stores(&config)?,
            Some(url) => open_postgres_stores(url, &config)?,
        };
        sweep_files(&config, stores[0].as_ref())?;
        raise_fd_limit(
            config.max_connections,
            config.max_connections != Config::default().max_connections,
        );

        let poll = Poll::new().context("creating the poll")?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).context("creating the waker")?);
        let rates = Arc::new(UserRates::new(&config));
        let (local, local_arrivals) = local::channel(waker.clone());
        Ok(Server {
            local,
            local_arrivals,
            config,
            poll,
            listener,
            local_addr,
            web_listener,
            plain_listener,
            tls,
            metrics_listener,
            rates,
            waker,
            shutdown: Arc::new(AtomicBool::new(false)),
            stores,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The plaintext listener's address, when there is one beside TLS.
    pub fn plain_addr(&self) -> Option<SocketAddr> {
        self.plain_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The web listener's address, when the web client is served.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics listener's address, when metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The per-user rates, to change on SIGHUP.
    pub fn user_rates(&self) -> Arc<UserRates> {
        self.rates.clone()
    }

    /// The TLS identity, to reload on SIGHUP (`None` without TLS).
    pub fn tls(&self) -> Option<Arc<ServerTls>> {
        self.tls.clone()
    }

    /// Opens connections served like TCP clients, for front ends inside the server.
    pub fn local_connector(&self) -> LocalConnector {
        self.local.clone()
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: self.shutdown.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Serves until shut down; then waits for the workers and closes the database.
    pub fn run(self) -> anyhow::Result<()> {
        let config = self.config;
        let presence = Arc::new(Presence::default());
        // Clients' writes queue boundedly (a full queue answers ER_BUSY);
        // the server's own beside them.
        let (write_tx, write_rx) = crossbeam_channel::bounded(config.job_queue);
        let (own_tx, own_rx) = crossbeam_channel::unbounded();
        let writer_queue = WriteQueue::new(own_tx);
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(
            Shared::new(
                config.clone(),
                presence.clone(),
                writer_queue.clone(),
                metrics.clone(),
                self.rates.clone(),
            )
            .map_err(anyhow::Error::msg)?,
        );
        let (job_tx, job_rx) = crossbeam_channel::bounded(config.job_queue);
        let (read_queue, write_queue) = (job_rx.clone(), write_rx.clone());
        // When it is full, the writer and the workers wake the reactor and wait.
        let (done_tx, done_rx) = crossbeam_channel::bounded(
            config.job_queue + config.auth_queue + config.workers + config.auth_workers,
        );

        let mut stores = self.stores;
        let start_id = stores[0].newest_message_id()?;
        let writer_store = stores.pop().context("no store for the writer")?;
        // PostgreSQL checkpoints by itself.
        let checkpointer = match config.cluster_store {
            None => Some(Checkpointer::spawn(
                &config.db_path(),
                config.durability,
                CHECKPOINT_EVERY,
            )?),
            Some(_) => None,
        };
        let writer = Writer {
            tasks: write_rx,
            own: own_rx,
            done: done_tx.clone(),
            waker: self.waker.clone(),
            store: writer_store,
            shared: shared.clone(),
        };
        let writer_thread = thread::Builder::new()
            .name("parley-writer".into())
            .spawn(move || writer.run())
            .context("spawning the writer")?;
        // Password hashing (sign-up, log-in) has threads and a queue of its
        // own: a storm of log-ins waits there and never delays chat.
        let (auth_tx, auth_rx) = crossbeam_channel::bounded(config.auth_queue);
        let auth_stores = stores.split_off(config.workers);
        let pool =
            |name: &str, jobs: &crossbeam_channel::Receiver<crate::job::Job>, stores: Vec<Box<Store>>| {
                stores
                    .into_iter()
                    .enumerate()
                    .map(|(i, store)| {
                        let worker = Worker {
                            jobs: jobs.clone(),
                            done: done_tx.clone(),
                            waker: self.waker.clone(),
                            store,
                            shared: shared.clone(),
                        };
                        thread::Builder::new()
                            .name(format!("parley-{name}-{i}"))
                            .spawn(move || worker.run())
                            .with_context(|| format!("spawning thread parley-{name}-{i}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()
            };
        let mut handles = pool("auth", &auth_rx, auth_stores)?;
        handles.extend(pool("worker", &job_rx, stores)?);
        drop((job_rx, auth_rx, done_tx));

        let limits = Limits {
            max_line_bytes: config.max_line_bytes,
            max_outbound_bytes: config.max_outbound_bytes,
            max_connections: config.max_connections,
            login_timeout: Duration::from_millis(config.login_timeout_ms),
            max_anonymous: config.anonymous_cap(),
            max_anonymous_per_addr: config.max_anonymous_per_addr,
            auth_rates: crate::throttle::AuthRates::from_config(&config),
            transfer_idle: Duration::from_millis(config.transfer_idle_timeout_ms),
            trace_lines: config.trace_lines,
        };
        // On the bus before the node says it listens (and serves anyone):
        // what other nodes publish from then on reaches it.
        let cluster = join_cluster(&config, self.waker.clone(), start_id, &shared)?;
        let plain = match &self.plain_listener {
            Some(l) => format!(
                " and {} (plaintext)",
                l.local_addr().map_or("?".into(), |a| a.to_string())
            ),
            None => String::new(),
        };
        if let Some(addr) = self.web_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            let scheme = if self.tls.is_some() { "https" } else { "http" };
            log::info!("the web client is at {scheme}://{addr}/");
        }
        log::info!(
            "parleyd {} listening on {}{}{plain} with {} workers, data in {}",
            env!("CARGO_PKG_VERSION"),
            self.local_addr,
            if self.tls.is_some() { " (TLS)" } else { "" },
            config.workers,
            config.data_dir.display()
        );
        log::info!(
            "settings: durability {:?}, max_connections {}, metrics {}, retention {}, log level {}",
            config.durability,
            config.max_connections,
            config.metrics.map_or("off".into(), |a| a.to_string()),
            match config.retention_days {
                0 => "off".to_owned(),
                days => format!("{days} days"),
            },
            config.log_level
        );
        let (file_tx, file_rx) = crossbeam_channel::bounded(FILE_TASK_QUEUE);
        let (file_event_tx, file_event_rx) = crossbeam_channel::bounded(FILE_TASK_QUEUE);
        let file_waker = self.waker.clone();
        let file_thread = thread::Builder::new()
            .name("parley-files".into())
            .spawn(move || files::run_file_thread(file_rx, file_event_tx, file_waker))
            .context("spawning the file thread")?;
        let mut _metrics_server = None;
        if let Some(listener) = self.metrics_listener {
            let gauges = Gauges {
                presence: presence.clone(),
                reads: read_queue,
                writes: write_queue,
            };
            _metrics_server =
                Some(metrics::serve(listener, metrics.clone(), gauges).context("serving metrics")?);
        }
        let links = Links {
            metrics,
            jobs: job_tx,
            writes: write_tx,
            own_writes: writer_queue.clone(),
            auth_jobs: auth_tx,
            done: done_rx,
            file_tasks: file_tx,
            file_events: file_event_rx,
            local: self.local_arrivals,
            cluster,
        };
        let files_dir = files::files_dir(&config.data_dir);
        let web = self.web_listener.map(|socket| Listener {
            socket,
            tls: self.tls.clone(),
            web: Some(Arc::new(WebSite {
                origins: config.web_origins.clone(),
                max_frame: 4 * config.max_line_bytes,
            })),
        });
        let mut listeners = vec![Listener {
            socket: self.listener,
            tls: self.tls,
            web: None,
        }];
        if let Some(socket) = self.plain_listener {
            listeners.push(Listener {
                socket,
                tls: None,
                web: None,
            });
        }
        listeners.extend(web);
        let reactor = Reactor::new(
            self.poll,
            listeners,
            links,
            presence,
            self.shutdown,
            limits,
            files_dir,
        )?;
        #[cfg(feature = "ngobrol")]
        let bridge = match &config.ngobrol_amqp {
            Some(url) => {
                let settings = crate::ngobrol::Settings {
                    url: url.clone(),
                    queue: config.ngobrol_queue.clone(),
                };
                Some(
                    crate::ngobrol::start(settings, self.local.clone())
                        .context("starting the ngobrol bridge")?,
                )
            }
            None => None,
        };
        let result = reactor.run();
        #[cfg(feature = "ngobrol")]
        if let Some(bridge) = bridge {
            bridge.stop();
        }
        if file_thread.join().is_err() {
            log::error!("the file thread panicked");
        }
        // The reactor is gone with its job sender: workers finish.
        for handle in handles {
            if handle.join().is_err() {
                log::error!("a worker thread panicked");
            }
        }
        // Readers and hashing threads are gone, and with them whatever could
        // hand the writer more: it finishes what is queued, then stops.
        writer_queue.stop();
        drop(shared);
        if writer_thread.join().is_err() {
            log::error!("the writer panicked");
        }
        if let Some(checkpointer) = checkpointer {
            drop(checkpointer);
            // Every other connection is closed: the log goes back whole.
            let checkpointed = SqliteStore::open(&config.db_path(), config.durability)
                .and_then(|store| Ok(store.checkpoint()?));
            if let Err(e) = checkpointed {
                log::warn!("final WAL checkpoint failed: {e:#}");
            }
        }
        result.context("reactor failed")?;
        log::info!("parleyd stopped");
        Ok(())
    }
}
