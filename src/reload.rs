//! SIGHUP: the log file is reopened, the TLS certificate read again, and
//! the settings file read again. Settings that can change while the server
//! runs (the log level, the per-user rates) take effect; the log names
//! those that changed but wait for a restart.

use std::sync::Arc;

use crate::config::Config;
use crate::logging::{self, LogFile};
use crate::throttle::UserRates;
use crate::tls::ServerTls;

/// Settings a running server takes on SIGHUP.
const LIVE: [&str; 9] = [
    "log_level",
    "msg_rate_per_sec",
    "msg_burst",
    "reads_per_sec",
    "reads_burst",
    "rooms_per_hour",
    "rooms_burst",
    "friend_adds_per_hour",
    "friend_adds_burst",
];

/// What SIGHUP acts on.
pub struct Reloader {
    /// Builds the settings as at start-up: the file again, the flags on top.
    pub load: Box<dyn Fn() -> anyhow::Result<Config> + Send>,
    /// The settings in effect.
    pub running: Config,
    pub rates: Arc<UserRates>,
    pub tls: Option<Arc<ServerTls>>,
    pub log_file: Option<LogFile>,
}

/// The names of the settings that differ between `a` and `b`.
fn changed(a: &Config, b: &Config) -> Vec<String> {
    let (Ok(a), Ok(b)) = (toml::Table::try_from(a), toml::Table::try_from(b)) else {
        return Vec::new();
    };
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}

impl Reloader {
    pub fn reload(&mut self) {
        if let Some(file) = &self.log_file {
            match file.reopen() {
                Ok(()) => log::info!("SIGHUP: log file {} reopened", file.path().display()),
                Err(e) => log::error!(
                    "SIGHUP: reopening the log file {} failed: {e}",
                    file.path().display()
                ),
            }
        }
        match self.tls.as_deref().map(ServerTls::reload) {
            None => {}
            Some(Ok(())) => log::info!("SIGHUP: TLS certificate reloaded; new connections use it"),
            Some(Err(e)) => {
                log::error!("SIGHUP: TLS certificate not reloaded, the old one stays in use: {e:#}")
            }
        }
        let new = match (self.load)() {
            Ok(new) => new,
            Err(e) => {
                log::error!("SIGHUP: settings not reloaded, the old ones stay in effect: {e:#}");
                return;
            }
        };
        let level = match logging::level(&new.log_level) {
            Ok(level) => level,
            Err(e) => {
                log::error!("SIGHUP: settings not reloaded: {e:#}");
                return;
            }
        };
        let (live, later): (Vec<String>, Vec<String>) = changed(&self.running, &new)
            .into_iter()
            .partition(|k| LIVE.contains(&k.as_str()));
        logging::set_level(level);
        self.rates.apply(&new);
        // Only the live settings move into the running ones.
        for key in &live {
            copy_live(key, &new, &mut self.running);
        }
        match (live.is_empty(), later.is_empty()) {
            (true, true) => log::info!("SIGHUP: settings unchanged"),
            _ => {
                if !live.is_empty() {
                    log::info!("SIGHUP: settings applied: {}", live.join(", "));
                }
                if !later.is_empty() {
                    log::warn!(
                        "SIGHUP: settings changed but applied only at restart: {}",
                        later.join(", ")
                    );
                }
            }
        }
    }
}

fn copy_live(field: &str, from: &Config, to: &mut Config) {
    match field {
        "log_level" => to.log_level = from.log_level.clone(),
        "msg_rate_per_sec" => to.msg_rate_per_sec = from.msg_rate_per_sec,
        "msg_burst" => to.msg_burst = from.msg_burst,
        "reads_per_sec" => to.reads_per_sec = from.reads_per_sec,
        "reads_burst" => to.reads_burst = from.reads_burst,
        "rooms_per_hour" => to.rooms_per_hour = from.rooms_per_hour,
        "rooms_burst" => to.rooms_burst = from.rooms_burst,
        "friend_adds_per_hour" => to.friend_adds_per_hour = from.friend_adds_per_hour,
        "friend_adds_burst" => to.friend_adds_burst = from.friend_adds_burst,
        _ => {}
    }
}
