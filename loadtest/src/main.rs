//! parley-load: measures what a Parley server (or an IRC server) carries.
//!
//! Users, rooms and history are set up first; then a few mio threads drive
//! every connection, open-loop at a constant rate where the scenario says
//! so, and latency is measured from each operation's intended time into
//! HdrHistograms. A progress line every second, a final table, and on
//! request a JSON report and an SVG plot. Every run stops by itself.

mod certs;
mod engine;
mod ladder;
mod net;
mod plot;
mod rate;
mod server_stats;
mod setup;
mod stats;
mod wire;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use engine::{ConnPlan, EngineConfig, Shared, ThreadResult, Traffic};
use parley::client_stream::Connector;
use stats::{Interval, Percentiles, Recorder};
use wire::{Protocol, QueryMix};

const USAGE: &str = "\
parley-load: load generator for Parley (and IRC, for comparison)

USAGE: parley-load --scenario NAME [OPTIONS]
       parley-load ladder OUT.svg RUN.json...   (delivered against offered
                    rate for fanout runs' --json reports, per room size and server)

SCENARIOS:
  fanout       clients in rooms of --room-size, all online; --rate messages/s in
               total, open-loop; latency from intended send time to each receipt
  ingest       every client sends its next message as soon as the last is
               acknowledged; acknowledged messages/s and ack latency
  connections  open and hold --clients logged-in connections (token resume)
  history      history pages and searches at --rate per second, open-loop
  login        log-ins at --rate per second (0: as fast as they complete),
               --mode password or token

OPTIONS:
  --target HOST:PORT   server to load; 'spawn' (default) starts parleyd from
                       this build with a temporary data directory. Several,
                       comma-separated (the nodes of a cluster): connection i
                       goes to the i-th modulo their number, so every room
                       has members on every node
  --protocol P         parley (default), parley-int, irc (fanout only)
  --clients N          connections (default 200)
  --room-size K        members per room (default 20)
  --rate R             operations per second in total (default 1000)
  --duration S         measured seconds (default 10)
  --warmup S           seconds before measuring (default 2)
  --payload BYTES      message text size (default 64)
  --mode M             login scenario: password (default) or token
  --history-msgs N     messages stored per room for history (default 200)
  --queries Q          history scenario: both (default: pages and searches),
                       pages, or searches
  --threads T          engine threads (default 2)
  --connect-rate R     new connections per second during set-up (default 2000)
  --server-pid PID     sample this process's RSS and CPU (set for 'spawn');
                       several, comma-separated, are summed (a cluster's nodes)
  --parleyd PATH       the server binary for 'spawn' (default: beside this one)
  --tls                connect with TLS ('spawn' gives the server a throwaway
                       certificate; with --target, give --ca)
  --ca FILE            the CA certificate to trust (PEM); implies --tls
  --json OUT           write every figure as JSON
  --plot OUT.svg       draw latency over time and its distribution
  --quiet              no progress lines
  -h, --help
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Fanout,
    Ingest,
    Connections,
    History,
    Login,
}

impl Scenario {
    fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "fanout" => Scenario::Fanout,
            "ingest" => Scenario::Ingest,
            "connections" => Scenario::Connections,
            "history" => Scenario::History,
            "login" => Scenario::Login,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::Ingest => "ingest",
            Scenario::Connections => "connections",
            Scenario::History => "history",
            Scenario::Login => "login",
        }
    }
}

#[derive(Clone, Debug)]
struct Options {
    target: String,
    scenario: Scenario,
    protocol: Protocol,
    clients: usize,
    room_size: usize,
    rate: f64,
    duration: f64,
    warmup: f64,
    payload: usize,
    password_mode: bool,
    history_msgs: usize,
    /// The history scenario's queries.
    queries: QueryMix,
    threads: usize,
    connect_rate: f64,
    server_pids: Vec<u32>,
    parleyd: Option<PathBuf>,
    /// Connect with TLS (a spawned server gets a throwaway certificate).
    tls: bool,
    /// The CA certificate to trust (implies --tls).
    ca: Option<PathBuf>,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    quiet: bool,
}

fn parse_options() -> Result<Option<Options>> {
    use lexopt::prelude::*;
    let mut o = Options {
        target: "spawn".into(),
        scenario: Scenario::Fanout,
        protocol: Protocol::Parley,
        clients: 200,
        room_size: 20,
        rate: 1000.0,
        duration: 10.0,
        warmup: 2.0,
        payload: 64,
        password_mode: true,
        history_msgs: 200,
        queries: QueryMix::Both,
        threads: 2,
        connect_rate: 2000.0,
        server_pids: Vec::new(),
        parleyd: None,
        tls: false,
        ca: None,
        json: None,
        plot: None,
        quiet: false,
    };
    let mut scenario = None;
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Long("target") => o.target = parser.value()?.string()?,
            Long("scenario") => {
                let s = parser.value()?.string()?;
                scenario = Some(Scenario::parse(&s).with_context(|| format!("unknown scenario {s:?}"))?);
            }
            Long("protocol") => {
                let p = parser.value()?.string()?;
                o.protocol = Protocol::parse(&p).with_context(|| format!("unknown protocol {p:?}"))?;
            }
            Long("clients") => o.clients = parser.value()?.parse()?,
            Long("room-size") => o.room_size = parser.value()?.parse()?,
            Long("rate") => o.rate = parser.value()?.parse()?,
            Long("duration") => o.duration = parser.value()?.parse()?,
            Long("warmup") => o.warmup = parser.value()?.parse()?,
            Long("payload") => o.payload = parser.value()?.parse()?,
            Long("mode") => {
                o.password_mode = match parser.value()?.string()?.as_str() {
                    "password" => true,
                    "token" => false,
                    other => bail!("--mode must be password or token, not {other:?}"),
                }
            }
            Long("history-msgs") => o.history_msgs = parser.value()?.parse()?,
            Long("queries") => {
                let q = parser.value()?.string()?;
                o.queries = QueryMix::parse(&q)
                    .with_context(|| format!("--queries must be both, pages or searches, not {q:?}"))?;
            }
            Long("threads") => o.threads = parser.value()?.parse()?,
            Long("connect-rate") => o.connect_rate = parser.value()?.parse()?,
            Long("server-pid") => {
                for pid in parser.value()?.string()?.split(',') {
                    o.server_pids.push(
                        pid.trim()
                            .parse()
                            .with_context(|| format!("--server-pid {pid:?}"))?,
                    );
                }
            }
            Long("parleyd") => o.parleyd = Some(parser.value()?.into()),
            Long("tls") => o.tls = true,
            Long("ca") => {
                o.ca = Some(parser.value()?.into());
                o.tls = true;
            }
            Long("json") => o.json = Some(parser.value()?.into()),
            Long("plot") => o.plot = Some(parser.value()?.into()),
            Long("quiet") => o.quiet = true,
            Short('h') | Long("help") => {
                print!("{USAGE}");
                return Ok(None);
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    o.scenario = scenario.context("--scenario is required (fanout, ingest, connections, history, login)")?;
    if o.tls && o.protocol == Protocol::Irc {
        bail!("--tls is for Parley's protocols");
    }
    if o.tls && o.ca.is_none() && o.target != "spawn" {
        bail!("--tls against --target needs --ca FILE: the CA certificate to trust");
    }
    if o.protocol == Protocol::Irc && o.scenario != Scenario::Fanout {
        bail!("--protocol irc runs the fanout scenario only");
    }
    if o.clients == 0 || o.threads == 0 || o.room_size == 0 {
        bail!("--clients, --threads and --room-size must be at least 1");
    }
    if !(o.duration > 0.0 && o.duration <= 3600.0 && o.warmup >= 0.0 && o.warmup <= 600.0) {
        bail!("--duration must be in (0, 3600] and --warmup in [0, 600] seconds");
    }
    if o.payload < 24 || o.payload > 4000 {
        bail!("--payload must be 24 to 4000 bytes (it carries a timestamp)");
    }
    Ok(Some(o))
}

/// A parleyd started for the run, stopped when dropped.
struct SpawnedServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Starts `parleyd` for the run; with `tls`, on a throwaway certificate
/// whose CA is returned beside it.
/// `cheap_hashing`: Argon2id with 1 MiB and one pass, for scenarios that
/// do not measure password log-ins (set-up signs up every account).
fn spawn_server(
    parleyd: Option<&PathBuf>,
    tls: bool,
    cheap_hashing: bool,
) -> Result<(SpawnedServer, Option<PathBuf>)> {
    let exe = match parleyd {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("parleyd"),
    };
    if !exe.exists() {
        bail!(
            "{} not found: build it (cargo build --release --workspace) or give --parleyd or --target",
            exe.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("parley.toml");
    // Load tests send far faster than a person: lift the per-user limits.
    // And thousands of senders each keep a message in flight: the queues
    // hold 16,384 (the default 4,096 answers the rest ER_BUSY).
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlog_level = \"warn\"\nmsg_rate_per_sec = 1e9\nmsg_burst = 1000000000\nlogin_failures_per_login = 1000000\nlogin_failures_per_login_all = 1000000\nlogin_failures_per_addr = 1000000\nsign_ups_per_addr_per_min = 1e9\nsign_up_burst_per_addr = 1000000000\nsign_ups_per_min = 1e12\nlog_ins_per_addr_per_min = 1e9\nlog_in_burst_per_addr = 1000000000\nlog_ins_per_min = 1e12\nreads_per_sec = 1e9\nreads_burst = 1000000000\nrooms_burst = 1000000000\nfriend_adds_burst = 1000000000\nmax_anonymous_per_addr = 1000000\nmax_anonymous = 1000000\njob_queue = 16384\n",
            dir.path().join("data").display().to_string()
        ) + if cheap_hashing {
            "argon2_memory_kib = 1024\nargon2_iterations = 1\n"
        } else {
            ""
        },
    )?;
    let mut command = Command::new(&exe);
    command
        .args(["--listen", "127.0.0.1:0", "--log-level", "info", "--config"])
        .arg(&config);
    let ca = if tls {
        let pki = certs::throwaway(dir.path())?;
        command
            .arg("--tls-cert")
            .arg(&pki.cert)
            .arg("--tls-key")
            .arg(&pki.key);
        Some(pki.ca)
    } else {
        None
    };
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stderr = child.stderr.take().context("parleyd's stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            bail!("parleyd exited before listening");
        };
        let line = line?;
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let server = SpawnedServer {
        child,
        addr,
        _dir: dir,
    };
    Ok((server, ca))
}

/// Every figure of a run, as written by --json.
#[derive(Serialize)]
struct Report {
    scenario: &'static str,
    protocol: &'static str,
    target: String,
    clients: usize,
    room_size: usize,
    rate: f64,
    duration_s: f64,
    warmup_s: f64,
    payload: usize,
    threads: usize,
    sent: u64,
    delivered: u64,
    expected_deliveries: u64,
    errors: BTreeMap<String, u64>,
    latency_ms: Percentiles,
    throughput: Throughput,
    connections: ConnectionFigures,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_kib: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_kib_before: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_rss_kib_per_connection: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_cpu_s: Option<f64>,
    timeline: Vec<TimelinePoint>,
}

#[derive(Serialize)]
struct Throughput {
    sent_per_s: f64,
    delivered_per_s: f64,
}

#[derive(Serialize)]
struct ConnectionFigures {
    established: u64,
    failed: u64,
    setup_s: f64,
    connect_per_s: f64,
    log_in_latency_ms: Percentiles,
}

#[derive(Serialize)]
struct TimelinePoint {
    second: u64,
    phase: Phase,
    sent: u64,
    delivered: u64,
    /// Latencies recorded in this second (none: `latency_ms` is all zero).
    samples: u64,
    latency_ms: Percentiles,
}

/// Which part of the run a second belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    WarmUp,
    Measured,
    /// Sending has stopped; what is still on its way arrives.
    Drain,
}

impl Phase {
    fn of(second: u64, warmup: f64, duration: f64) -> Phase {
        let s = second as f64;
        if s < warmup.floor() {
            Phase::WarmUp
        } else if s < (warmup + duration).ceil() {
            Phase::Measured
        } else {
            Phase::Drain
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::WarmUp => "warm-up",
            Phase::Measured => "",
            Phase::Drain => "drain",
        }
    }
}

/// Accounts, rooms and the per-connection plans of a run.
fn plan_connections(
    o: &Options,
    connector: &Connector,
    target: &str,
    targets: &[SocketAddr],
) -> Result<Vec<ConnPlan>> {
    let run = setup::run_id();
    let first_source = net::first_source();
    if o.protocol == Protocol::Irc {
        let rooms = o.clients.div_ceil(o.room_size);
        return Ok((0..o.clients)
            .map(|i| {
                let r = i / o.room_size;
                let members = if r + 1 == rooms {
                    o.clients - r * o.room_size
                } else {
                    o.room_size
                };
                ConnPlan {
                    room_id: r as i64,
                    room_name: format!("#ld{run}r{r}"),
                    recipients: o.protocol.recipients(members as u64),
                    login: String::new(),
                    token: String::new(),
                    nick: format!("l{run}{i}"),
                    target: targets[i % targets.len()],
                    source: net::source_for(targets[i % targets.len()], i, first_source),
                }
            })
            .collect());
    }
    let users = match o.scenario {
        Scenario::Connections => o.clients.min(100),
        _ => o.clients,
    };
    eprintln!("setting up {users} accounts...");
    let accounts = setup::accounts(connector, target, &run, users)?;
    let rooms = match o.scenario {
        Scenario::Fanout | Scenario::Ingest | Scenario::History => {
            eprintln!("setting up rooms of {}...", o.room_size);
            setup::rooms(connector, target, &run, &accounts, o.room_size)?
        }
        Scenario::Connections | Scenario::Login => Vec::new(),
    };
    if o.scenario == Scenario::History {
        eprintln!("storing {} messages per room...", o.history_msgs);
        setup::history(connector, target, &accounts, &rooms, o.history_msgs)?;
    }
    let mut room_of = vec![None; accounts.len()];
    for room in &rooms {
        for &m in &room.members {
            room_of[m] = Some(room);
        }
    }
    Ok((0..o.clients)
        .map(|i| {
            let user = i % accounts.len();
            let room = room_of[user];
            ConnPlan {
                room_id: room.map_or(0, |r| r.id),
                room_name: room.map_or_else(String::new, |r| r.name.clone()),
                recipients: room.map_or(0, |r| o.protocol.recipients(r.members.len() as u64)),
                login: accounts[user].login.clone(),
                token: accounts[user].token.clone(),
                nick: String::new(),
                target: targets[i % targets.len()],
                source: net::source_for(targets[i % targets.len()], i, first_source),
            }
        })
        .collect())
}

/// Raises this process's open-file limit to hold every connection.
fn raise_fd_limit(connections: usize) {
    let wanted = connections as u64 + 256;
    match rlimit::increase_nofile_limit(wanted) {
        Ok(got) if got < wanted => {
            eprintln!("warning: open-file limit is {got}; fewer than {connections} connections can be opened")
        }
        Ok(_) => {}
        Err(e) => eprintln!("warning: could not raise the open-file limit: {e}"),
    }
}

fn run(o: Options) -> Result<()> {
    raise_fd_limit(o.clients);
    let (spawned, spawned_ca) = if o.target == "spawn" {
        let cheap_hashing = !(o.scenario == Scenario::Login && o.password_mode);
        let (server, ca) = spawn_server(o.parleyd.as_ref(), o.tls, cheap_hashing)?;
        (Some(server), ca)
    } else {
        (None, None)
    };
    let target = spawned.as_ref().map_or(o.target.clone(), |s| s.addr.clone());
    // Set-up (accounts, rooms, history) goes to the first; every node of a
    // cluster sees it.
    let first_target = target.split(',').next().unwrap_or_default().trim().to_owned();
    let connector = match o.ca.clone().or(spawned_ca) {
        Some(ca) if o.tls => Connector::tls(&first_target, &ca)?,
        _ => Connector::plain(),
    };
    let server_pids: Vec<u32> = match &spawned {
        Some(s) if o.server_pids.is_empty() => vec![s.child.id()],
        _ => o.server_pids.clone(),
    };
    let targets = target
        .split(',')
        .map(|t| {
            let t = t.trim();
            t.to_socket_addrs()
                .with_context(|| format!("resolving {t}"))?
                .next()
                .with_context(|| format!("no address for {t}"))
        })
        .collect::<Result<Vec<SocketAddr>>>()?;
    let plans = plan_connections(&o, &connector, &first_target, &targets)?;

    let traffic = match o.scenario {
        Scenario::Fanout => Traffic::Fanout { rate: o.rate },
        Scenario::Ingest => Traffic::Ingest,
        Scenario::Connections => Traffic::Hold,
        Scenario::History => Traffic::History {
            rate: o.rate,
            mix: o.queries,
        },
        Scenario::Login => Traffic::Login {
            rate: o.rate,
            password: o.password_mode,
        },
    };
    let cfg = EngineConfig {
        protocol: o.protocol,
        traffic,
        payload: o.payload,
        warmup: Duration::from_secs_f64(o.warmup),
        duration: Duration::from_secs_f64(o.duration),
        drain: Duration::from_secs(2),
        connect_rate: o.connect_rate / o.threads as f64,
        password_digest: parley::client::password_digest(setup::PASSWORD),
        connector: connector.clone(),
    };
    let rss_before = server_stats::rss_kib_of(&server_pids);
    let shared = Arc::new(Shared::new());
    let (progress_tx, progress_rx) = crossbeam_channel::unbounded::<Interval>();
    let total = plans.len();
    let mut shares: Vec<Vec<ConnPlan>> = vec![Vec::new(); o.threads];
    for (i, plan) in plans.into_iter().enumerate() {
        shares[i % o.threads].push(plan);
    }
    let setup_started = Instant::now();
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (cfg, shared, tx) = (cfg.clone(), shared.clone(), progress_tx.clone());
            std::thread::spawn(move || engine::run_thread(cfg, share, total, shared, tx))
        })
        .collect();
    drop(progress_tx);

    // Wait for every connection to be ready (or failed), within bounds.
    let setup_limit = Duration::from_secs(60) + Duration::from_secs_f64(total as f64 / o.connect_rate);
    eprintln!("connecting {total} clients...");
    loop {
        let ready = shared.ready.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        if ready + failed >= total {
            break;
        }
        if setup_started.elapsed() > setup_limit {
            eprintln!("set-up timed out: {ready} ready, {failed} failed of {total}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let setup_s = setup_started.elapsed().as_secs_f64();
    let ready = shared.ready.load(Ordering::Relaxed);
    if ready == 0 {
        shared.abort.store(true, Ordering::Relaxed);
        bail!(
            "no connection could log in ({} failed)",
            shared.failed.load(Ordering::Relaxed)
        );
    }
    let cpu_before = server_stats::cpu_seconds_of(&server_pids);
    let _ = shared.start_us.set(shared.now_us());
    eprintln!(
        "{ready} ready in {setup_s:.1} s; warm-up {} s, measuring {} s",
        o.warmup, o.duration
    );

    // Progress: one line per second once every thread reported it.
    let mut seconds: BTreeMap<u64, (Recorder, usize)> = BTreeMap::new();
    let mut printed = 0u64;
    let mut peak_rss = rss_before;
    let sample_every = Duration::from_millis(500);
    let mut last_sample = Instant::now();
    loop {
        match progress_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(interval) => {
                let entry = seconds.entry(interval.second).or_default();
                entry.0.merge(&interval.rec);
                entry.1 += 1;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if last_sample.elapsed() >= sample_every {
            last_sample = Instant::now();
            if let Some(rss) = server_stats::rss_kib_of(&server_pids) {
                peak_rss = Some(peak_rss.map_or(rss, |p: u64| p.max(rss)));
            }
        }
        while let Some((rec, n)) = seconds.get(&printed) {
            if *n < o.threads {
                break;
            }
            if !o.quiet {
                let p = Percentiles::of(&rec.latency_us);
                let phase = Phase::of(printed, o.warmup, o.duration);
                let errors = rec.errors.values().sum::<u64>();
                // After sending stops, only seconds in which something still arrived.
                let idle = rec.sent == 0 && rec.delivered == 0 && errors == 0 && rec.latency_us.is_empty();
                if !(phase == Phase::Drain && idle) {
                    eprintln!(
                        "[{:>4}s] sent/s {:>8}  delivered/s {:>9}  p99 {:>9.3} ms  errors {:>5} {}",
                        printed,
                        rec.sent,
                        rec.delivered,
                        p.p99,
                        errors,
                        phase.label()
                    );
                }
            }
            printed += 1;
        }
    }
    let cpu_after = server_stats::cpu_seconds_of(&server_pids);
    let mut window = Recorder::default();
    let mut setup_rec = Recorder::default();
    for handle in handles {
        let ThreadResult { window: w, setup: s } = handle
            .join()
            .map_err(|_| anyhow::anyhow!("an engine thread panicked"))?
            .context("engine thread")?;
        window.merge(&w);
        setup_rec.merge(&s);
    }
    if let Some(rss) = server_stats::rss_kib_of(&server_pids) {
        peak_rss = Some(peak_rss.map_or(rss, |p: u64| p.max(rss)));
    }
    let mut errors = window.errors.clone();
    for (code, n) in &setup_rec.errors {
        *errors.entry(format!("setup: {code}")).or_default() += n;
    }
    let (sent, delivered, latency) = match o.scenario {
        Scenario::Connections => (setup_rec.sent, 0, Percentiles::of(&setup_rec.latency_us)),
        _ => (window.sent, window.delivered, Percentiles::of(&window.latency_us)),
    };
    let delivered = if o.scenario == Scenario::Fanout {
        delivered
    } else {
        sent
    };
    let expected = match o.scenario {
        Scenario::Fanout => window.expected,
        _ => sent,
    };
    let failed = shared.failed.load(Ordering::Relaxed) as u64;
    let report = Report {
        scenario: o.scenario.name(),
        protocol: o.protocol.name(),
        target,
        clients: o.clients,
        room_size: o.room_size,
        rate: o.rate,
        duration_s: o.duration,
        warmup_s: o.warmup,
        payload: o.payload,
        threads: o.threads,
        sent,
        delivered,
        expected_deliveries: expected,
        errors,
        latency_ms: latency,
        throughput: Throughput {
            sent_per_s: sent as f64 / o.duration,
            delivered_per_s: delivered as f64 / o.duration,
        },
        connections: ConnectionFigures {
            established: setup_rec.sent,
            failed,
            setup_s,
            connect_per_s: setup_rec.sent as f64 / setup_s.max(1e-9),
            log_in_latency_ms: Percentiles::of(&setup_rec.latency_us),
        },
        server_rss_kib: peak_rss,
        server_rss_kib_before: rss_before,
        server_rss_kib_per_connection: match (o.scenario, peak_rss, rss_before) {
            (Scenario::Connections, Some(after), Some(before)) if setup_rec.sent > 0 => {
                Some(after.saturating_sub(before) as f64 / setup_rec.sent as f64)
            }
            _ => None,
        },
        server_cpu_s: cpu_before.zip(cpu_after).map(|(a, b)| b - a),
        timeline: seconds
            .iter()
            .map(|(s, (rec, _))| TimelinePoint {
                second: *s,
                phase: Phase::of(*s, o.warmup, o.duration),
                sent: rec.sent,
                delivered: rec.delivered,
                samples: rec.latency_us.len(),
                latency_ms: Percentiles::of(&rec.latency_us),
            })
            .collect(),
    };
    print_table(&report);
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &o.plot {
        // Seconds in which nothing arrived have no latency to draw.
        let timeline: Vec<(u64, Percentiles)> = report
            .timeline
            .iter()
            .filter(|t| t.samples > 0)
            .map(|t| (t.second, t.latency_ms.clone()))
            .collect();
        let overall = match o.scenario {
            Scenario::Connections => &setup_rec.latency_us,
            _ => &window.latency_us,
        };
        let title = format!("{} {} at {}/s", report.protocol, report.scenario, report.rate);
        let phases = plot::Phases {
            warmup_s: o.warmup,
            measured_s: o.duration,
            end_s: report.timeline.last().map_or(0, |t| t.second + 1),
        };
        plot::draw(path, &title, &timeline, phases, overall)?;
    }
    drop(spawned);
    Ok(())
}

fn print_table(r: &Report) {
    let l = &r.latency_ms;
    println!();
    println!(
        "scenario      {} ({}), {} clients, rooms of {}, rate {}/s, {} s measured",
        r.scenario, r.protocol, r.clients, r.room_size, r.rate, r.duration_s
    );
    println!(
        "sent          {:>12}   ({:.1}/s)",
        r.sent, r.throughput.sent_per_s
    );
    println!(
        "delivered     {:>12}   ({:.1}/s)",
        r.delivered, r.throughput.delivered_per_s
    );
    println!("expected      {:>12}", r.expected_deliveries);
    println!(
        "latency ms    p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        l.p50, l.p90, l.p99, l.p999, l.max
    );
    println!(
        "connections   {} established, {} failed, {:.0}/s; log-in p50 {:.3} ms p99 {:.3} ms",
        r.connections.established,
        r.connections.failed,
        r.connections.connect_per_s,
        r.connections.log_in_latency_ms.p50,
        r.connections.log_in_latency_ms.p99
    );
    if let Some(rss) = r.server_rss_kib {
        println!(
            "server        peak RSS {rss} KiB, CPU {:.2} s",
            r.server_cpu_s.unwrap_or(0.0)
        );
    }
    if let Some(per) = r.server_rss_kib_per_connection {
        println!("              {per:.1} KiB per connection");
    }
    let errors: u64 = r.errors.values().sum();
    println!("errors        {errors} {:?}", r.errors);
}

/// `parley-load ladder OUT.svg RUN.json...`
fn ladder_command(args: &[String]) -> Result<()> {
    let [out, runs @ ..] = args else {
        bail!("usage: parley-load ladder OUT.svg RUN.json...");
    };
    let paths: Vec<PathBuf> = runs.iter().map(PathBuf::from).collect();
    ladder::draw(out.as_ref(), &ladder::load(&paths)?)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("ladder") {
        ladder_command(&args[1..])
    } else {
        parse_options().and_then(|o| match o {
            Some(o) => run(o),
            None => Ok(()),
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
