//! State shared by the workers and the writer: settings, the password hasher, throttles, presence.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::PasswordHasher;
use crate::config::Config;
use crate::disk::DiskSpace;
use crate::job::WriteQueue;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::throttle::{LoginLimits, LoginThrottle, TypingGate, UserRates};

/// Everything a handler may read besides its own store.
pub struct Shared {
    pub config: Config,
    /// Typing notices passed on, at most one per user and room every 3 s.
    pub typing: TypingGate,
    pub hasher: PasswordHasher,
    pub login_throttle: LoginThrottle,
    pub presence: Arc<Presence>,
    /// Per-user rates (messages, reads, rooms, friends); SIGHUP may change them.
    pub rates: Arc<UserRates>,
    /// The writer's queue, where the hashing threads hand their writes.
    pub writer: WriteQueue,
    /// Quotas, the free-space reserve, the ballast.
    pub disk: DiskSpace,
    /// What the server counts (the writer: messages stored, commit times).
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(
        config: Config,
        presence: Arc<Presence>,
        writer: WriteQueue,
        metrics: Arc<Metrics>,
        rates: Arc<UserRates>,
    ) -> Result<Shared, String> {
        let hasher = PasswordHasher::new(config.argon2_memory_kib, config.argon2_iterations)?;
        let login_throttle = LoginThrottle::new(LoginLimits {
            per_login_addr: config.login_failures_per_login,
            per_login: config.login_failures_per_login_all,
            per_addr: config.login_failures_per_addr,
            window: Duration::from_secs(config.login_failure_window_secs),
        });
        let disk = DiskSpace::new(
            &config.data_dir,
            &crate::files::files_dir(&config.data_dir),
            config.user_quota_bytes,
            config.disk_reserve_bytes,
        );
        if !disk.ensure_ballast() {
            log::warn!(
                "no room for the space reserve file in {}",
                config.data_dir.display()
            );
        }
        Ok(Shared {
            typing: TypingGate::default(),
            disk,
            hasher,
            login_throttle,
            presence,
            rates,
            writer,
            metrics,
            config,
        })
    }
}
