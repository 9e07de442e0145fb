//! Writes the write-ahead log back into the database file on a thread of
//! its own, so the writer never stops for it.
//!
//! SQLite checkpoints automatically in the connection that commits, once
//! the log passes a thousand pages: the writer then copied a few megabytes
//! and waited for an fsync of the database file before its next batch,
//! every fraction of a second under load, and everyone's messages waited
//! with it. Here a second connection checkpoints `PASSIVE`ly (it never
//! blocks the writer or a reader) every `every`; the writer's own automatic
//! checkpoint stays as a backstop at a far larger log (see
//! `SqliteStore::leave_checkpoints_to_checkpointer`).

use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::Durability;
use crate::store::SqliteStore;

/// The checkpointing thread; stopped (and joined) when dropped.
pub struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` every `every`.
    pub fn spawn(path: &Path, durability: Durability, every: Duration) -> anyhow::Result<Checkpointer> {
        let store = SqliteStore::open(path, durability)?;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let thread = std::thread::Builder::new()
            .name("parley-checkpoint".into())
            .spawn(move || run(store, stopped, every))
            .context("spawning the checkpointer")?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(store: SqliteStore, stopped: Receiver<()>, every: Duration) {
    let mut failing = false;
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match store.checkpoint_passive() {
            Ok(()) => failing = false,
            // Logged once per failing spell (a full disk would repeat it).
            Err(e) if !failing => {
                failing = true;
                log::warn!("checkpointing the database failed (the writer checkpoints instead): {e}");
            }
            Err(_) => {}
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::prelude::*;

    /// Users in the database file alone, without its log (read from a copy).
    fn users_in_file(dir: &Path) -> i64 {
        let copy = dir.join("copy.db");
        std::fs::copy(dir.join("t.db"), &copy).unwrap();
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let n = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        drop(conn);
        let _ = std::fs::remove_file(&copy);
        n
    }

    /// With the writer's own checkpoints left to it, the checkpointer
    /// copies the log into the database file.
    #[test]
    fn the_log_is_written_back_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        crate::store::migrate(&path).unwrap();
        let mut writer = SqliteStore::open(&path, Durability::Normal).unwrap();
        writer.leave_checkpoints_to_checkpointer().unwrap();
        for i in 0..200 {
            writer
                .atomically(|s| s.create_user(&format!("u{i}"), "u", "", "x", 1))
                .unwrap();
        }
        assert_eq!(
            users_in_file(dir.path()),
            0,
            "the writer no longer checkpoints a small log itself"
        );
        let checkpointer = Checkpointer::spawn(&path, Durability::Normal, Duration::from_millis(10)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while users_in_file(dir.path()) < 200 {
            assert!(std::time::Instant::now() < deadline, "never written back");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(checkpointer);
    }
}
