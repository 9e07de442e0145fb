//! parleyd: parse flags, set up logging, run the server until SIGINT/SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use parley::reload::Reloader;
use parley::{Config, Server};

const USAGE: &str = "\
parleyd: the Parley chat server

USAGE: parleyd [OPTIONS]
       parleyd --check-config FILE
       parleyd admin [--data DIR] [--config FILE] COMMAND
       parleyd backup --data DIR --to FILE

OPTIONS:
  --listen ADDR      address to listen on (default 127.0.0.1:7700)
  --tls-cert FILE    PEM certificate chain: --listen then serves TLS
  --tls-key FILE     PEM private key of --tls-cert (both read again on SIGHUP)
  --listen-plain ADDR  a plaintext listener beside the TLS one
  --metrics ADDR     serve Prometheus metrics on http://ADDR/metrics
  --web ADDR|off     serve the web client on http://ADDR/ (default 127.0.0.1:7780;
                     HTTPS with --tls-cert)
  --ngobrol-amqp URL serve ngobrol clients through a RabbitMQ broker, e.g.
                     amqp://guest:guest@127.0.0.1:5672/%2f (builds with
                     the ngobrol feature)
  --cluster-store URL  keep everything in PostgreSQL, e.g.
                     postgres://postgres@127.0.0.1/parley, so several nodes
                     can serve one group (builds with the postgres feature)
  --cluster-bus URL  tell the other nodes over NATS, e.g. nats://127.0.0.1:4222
                     (needs --cluster-store; builds with the cluster feature)
  --log-file FILE    log to FILE (reopened on SIGHUP) rather than standard error
  --data DIR         data directory: database and files (default ./parley-data)
  --workers N        read worker threads (default 2 x cores)
  --config FILE      TOML settings file; flags override it
  --log-level LEVEL  error, warn, info, debug or trace (default info)
  -h, --help         print this help
  -V, --version      print the version

  --check-config FILE  check a settings file and exit (0 if it is usable)

ADMIN (safe while the server runs):
  parleyd admin [--data DIR] [--config FILE] COMMAND
    users                  list the accounts
    reset-password LOGIN   set a new password (asked twice, or the first line
                           of stdin) and revoke the user's sessions
    revoke LOGIN           revoke every session (token) of the user
    rooms                  list the rooms
    delete-room ID         delete a room with its messages and files
    stats                  users, rooms, messages, files, database size

BACKUP:
  parleyd backup --data DIR --to FILE
                     copy the data directory (a server may be running on it)
                     into the tar archive FILE: a consistent snapshot of the
                     database and the files its messages name. Restore with
                     mkdir NEW && tar -xf FILE -C NEW && parleyd --data NEW
";

/// Flags given on the command line; each overrides the config file.
#[derive(Clone, Default)]
struct Flags {
    listen: Option<String>,
    listen_plain: Option<String>,
    metrics: Option<String>,
    ngobrol_amqp: Option<String>,
    cluster_store: Option<String>,
    cluster_bus: Option<String>,
    web: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    data: Option<PathBuf>,
    workers: Option<usize>,
    config: Option<PathBuf>,
    log_level: Option<String>,
    log_file: Option<PathBuf>,
}

enum Parsed {
    Run(Box<Flags>),
    Backup {
        data: PathBuf,
        to: PathBuf,
    },
    Admin {
        data: PathBuf,
        config: Option<PathBuf>,
        command: parley::admin::Command,
    },
    CheckConfig(PathBuf),
    Exit(&'static str),
}

/// `parleyd admin [--data DIR] [--config FILE] COMMAND [ARG]`.
fn parse_admin(parser: &mut lexopt::Parser) -> anyhow::Result<Parsed> {
    use lexopt::prelude::*;
    let (mut data, mut config, mut words) = (None, None, Vec::new());
    while let Some(arg) = parser.next()? {
        match arg {
            Long("data") => data = Some(PathBuf::from(parser.value()?)),
            Long("config") => config = Some(PathBuf::from(parser.value()?)),
            Short('h') | Long("help") => return Ok(Parsed::Exit(USAGE)),
            Value(word) => words.push(word.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let command = parley::admin::Command::parse(&words)?;
    // The data directory: --data, else the config's, else the default.
    let data = match (data, &config) {
        (Some(data), _) => data,
        (None, Some(path)) => Config::from_file(path)?.data_dir,
        (None, None) => Config::default().data_dir,
    };
    Ok(Parsed::Admin {
        data,
        config,
        command,
    })
}

/// `parleyd backup --data DIR --to FILE`.
fn parse_backup(parser: &mut lexopt::Parser) -> anyhow::Result<Parsed> {
    use lexopt::prelude::*;
    let (mut data, mut to) = (None, None);
    while let Some(arg) = parser.next()? {
        match arg {
            Long("data") => data = Some(PathBuf::from(parser.value()?)),
            Long("to") => to = Some(PathBuf::from(parser.value()?)),
            Short('h') | Long("help") => return Ok(Parsed::Exit(USAGE)),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let data = data.unwrap_or_else(|| PathBuf::from("parley-data"));
    let to = to.context("backup needs --to FILE")?;
    Ok(Parsed::Backup { data, to })
}

fn parse_flags() -> anyhow::Result<Parsed> {
    use lexopt::prelude::*;
    let mut flags = Flags::default();
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next()? {
        match arg {
            Value(command) if command == "backup" => return parse_backup(&mut parser),
            Value(command) if command == "admin" => return parse_admin(&mut parser),
            Long("check-config") => return Ok(Parsed::CheckConfig(parser.value()?.into())),
            Long("listen") => flags.listen = Some(parser.value()?.string()?),
            Long("listen-plain") => flags.listen_plain = Some(parser.value()?.string()?),
            Long("metrics") => flags.metrics = Some(parser.value()?.string()?),
            Long("ngobrol-amqp") => flags.ngobrol_amqp = Some(parser.value()?.string()?),
            Long("cluster-store") => flags.cluster_store = Some(parser.value()?.string()?),
            Long("cluster-bus") => flags.cluster_bus = Some(parser.value()?.string()?),
            Long("web") => flags.web = Some(parser.value()?.string()?),
            Long("tls-cert") => flags.tls_cert = Some(parser.value()?.into()),
            Long("tls-key") => flags.tls_key = Some(parser.value()?.into()),
            Long("data") => flags.data = Some(parser.value()?.into()),
            Long("workers") => flags.workers = Some(parser.value()?.parse()?),
            Long("config") => flags.config = Some(parser.value()?.into()),
            Long("log-level") => flags.log_level = Some(parser.value()?.string()?),
            Long("log-file") => flags.log_file = Some(parser.value()?.into()),
            Short('h') | Long("help") => return Ok(Parsed::Exit(USAGE)),
            Short('V') | Long("version") => {
                return Ok(Parsed::Exit(concat!("parleyd ", env!("CARGO_PKG_VERSION"), "\n")))
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    Ok(Parsed::Run(Box::new(flags)))
}

fn build_config(flags: Flags) -> anyhow::Result<Config> {
    let mut config = match &flags.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(listen) = flags.listen {
        config.listen = listen
            .parse()
            .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:7700"))?;
    }
    if let Some(listen) = flags.listen_plain {
        config.listen_plain =
            Some(listen.parse().with_context(|| {
                format!("--listen-plain {listen:?} is not an address like 127.0.0.1:7701")
            })?);
    }
    if let Some(addr) = flags.metrics {
        config.metrics = Some(
            addr.parse()
                .with_context(|| format!("--metrics {addr:?} is not an address like 127.0.0.1:9700"))?,
        );
    }
    if let Some(web) = flags.web {
        config.web = web;
    }
    if let Some(url) = flags.ngobrol_amqp {
        config.ngobrol_amqp = Some(url);
    }
    if let Some(url) = flags.cluster_store {
        config.cluster_store = Some(url);
    }
    if let Some(url) = flags.cluster_bus {
        config.cluster_bus = Some(url);
    }
    if let Some(cert) = flags.tls_cert {
        config.tls_cert = Some(cert);
    }
    if let Some(key) = flags.tls_key {
        config.tls_key = Some(key);
    }
    if let Some(data) = flags.data {
        config.data_dir = data;
    }
    if let Some(workers) = flags.workers {
        config.workers = workers;
    }
    if let Some(level) = flags.log_level {
        config.log_level = level;
    }
    if let Some(file) = flags.log_file {
        config.log_file = Some(file);
    }
    Ok(config)
}

/// Turns the first SIGINT or SIGTERM into a graceful shutdown (a second one
/// exits at once); SIGHUP reopens the log file, reads the TLS certificate
/// and the settings again (see `parley::reload`).
fn handle_signals(shutdown: parley::ShutdownHandle, mut reloader: Reloader) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("parley-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    reloader.reload();
                    continue;
                }
                seen += 1;
                if seen > 1 {
                    log::warn!("second signal {signal}: exiting now");
                    std::process::exit(130);
                }
                log::info!("signal {signal} received: shutting down");
                shutdown.shutdown();
            }
        })
        .context("spawning the signal thread")?;
    Ok(())
}

/// Keeps large allocations (Argon2's 19 MiB per hash) as their own mappings,
/// returned to the system when freed. Without this, glibc raises its mmap
/// threshold after the first such free and keeps later ones in per-thread
/// heaps: a few hundred log-ins left the server at hundreds of MiB resident.
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn run() -> anyhow::Result<Option<&'static str>> {
    pin_mmap_threshold();
    let flags = match parse_flags()? {
        Parsed::Exit(text) => return Ok(Some(text)),
        Parsed::Backup { data, to } => {
            let summary = parley::backup::backup(&data, &to)?;
            println!(
                "backed up {} into {}: {} messages, {} files{}",
                data.display(),
                to.display(),
                summary.messages,
                summary.files,
                if summary.dropped > 0 {
                    format!(
                        " ({} messages deleted during the backup left out)",
                        summary.dropped
                    )
                } else {
                    String::new()
                }
            );
            return Ok(None);
        }
        Parsed::Admin {
            data,
            config,
            command,
        } => {
            let config = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            let mut admin = parley::admin::Admin::open(&data, config)?;
            let stdin = std::io::stdin();
            admin.run(command, &mut stdin.lock(), &mut std::io::stdout())?;
            return Ok(None);
        }
        Parsed::CheckConfig(path) => {
            let config = Config::from_file(&path)?;
            config.check()?;
            println!("{}: ok", path.display());
            return Ok(None);
        }
        Parsed::Run(flags) => *flags,
    };
    let config = build_config(flags.clone())?;
    let log_file = parley::logging::init(&config.log_level, config.log_file.as_deref())?;
    let config_copy = config.clone();
    let server = Server::bind(config)?;
    let reloader = Reloader {
        load: Box::new(move || build_config(flags.clone())),
        running: config_copy,
        rates: server.user_rates(),
        tls: server.tls(),
        log_file,
    };
    handle_signals(server.shutdown_handle(), reloader)?;
    server.run()?;
    Ok(None)
}

fn main() -> ExitCode {
    match run() {
        Ok(Some(text)) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parleyd: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
