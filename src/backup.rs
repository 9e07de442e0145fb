//! Online backups: `parleyd backup --data DIR --to FILE`.
//!
//! The database is copied with SQLite's online backup API in one step: the
//! copy reads one consistent snapshot while the running server goes on
//! writing (in WAL mode a reader never blocks writers). The files its
//! messages name are then added beside it. A file deleted between the
//! snapshot and its copy (its message was deleted meanwhile) is left out and
//! its message removed from the copy, so no message of the backup points at
//! a missing file.
//!
//! The backup is one tar archive holding `parley.db` and `files/<name>`,
//! exactly the layout of a data directory: restoring is unpacking it into
//! an empty directory and starting `parleyd --data` on it. It is written to
//! a temporary name, synced and renamed, so a backup that fails half-way
//! leaves no archive that looks whole.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::files;

/// What a backup holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Messages in the copied database.
    pub messages: i64,
    /// Files added beside it.
    pub files: usize,
    /// Messages left out because their file was deleted during the backup.
    pub dropped: usize,
}

/// How long a step of the copy waits when the database is busy, and how often.
const BUSY_PAUSE: Duration = Duration::from_millis(20);
const BUSY_TRIES: usize = 500;

/// Backs up the data directory `data_dir` (a server may be running on it)
/// into the archive `to`.
pub fn backup(data_dir: &Path, to: &Path) -> anyhow::Result<BackupSummary> {
    let db_path = data_dir.join("parley.db");
    if !db_path.exists() {
        bail!("{} holds no Parley database", data_dir.display());
    }
    let temp_db = files::with_suffix(to, ".db.partial");
    let temp_archive = files::with_suffix(to, ".partial");
    let result = write_backup(data_dir, &db_path, &temp_db, &temp_archive, to);
    let _ = fs::remove_file(&temp_db);
    if result.is_err() {
        let _ = fs::remove_file(&temp_archive);
    }
    result
}

fn write_backup(
    data_dir: &Path,
    db_path: &Path,
    temp_db: &Path,
    temp_archive: &Path,
    to: &Path,
) -> anyhow::Result<BackupSummary> {
    let _ = fs::remove_file(temp_db);
    snapshot(db_path, temp_db)?;
    let mut copy = Connection::open(temp_db).with_context(|| format!("opening {}", temp_db.display()))?;
    // The copy becomes a plain single-file database.
    copy.pragma_update(None, "journal_mode", "DELETE")?;

    let archive_file = create_private(temp_archive)?;
    let mut archive = tar::Builder::new(archive_file);
    // Modes as on disk: stored files are 0600.
    archive.mode(tar::HeaderMode::Complete);
    let files_dir = files::files_dir(data_dir);
    let mut summary = BackupSummary::default();
    let mut missing = Vec::new();
    for (id, stored_name) in stored_files(&copy)? {
        if !files::is_stored_name(&stored_name) {
            continue;
        }
        match File::open(files_dir.join(&stored_name)) {
            Ok(mut file) => {
                archive
                    .append_file(format!("files/{stored_name}"), &mut file)
                    .with_context(|| format!("adding file {stored_name}"))?;
                summary.files += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(id),
            Err(e) => return Err(e).with_context(|| format!("reading file {stored_name}")),
        }
    }
    if !missing.is_empty() {
        let tx = copy.transaction()?;
        for id in &missing {
            tx.execute("DELETE FROM messages WHERE id = ?1", [id])?;
        }
        tx.commit()?;
        summary.dropped = missing.len();
    }
    summary.messages = copy.query_row("SELECT count(*) FROM messages", [], |row| row.get(0))?;
    drop(copy);

    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(temp_db, fs::Permissions::from_mode(0o600))?;
    }
    let mut db_file = File::open(temp_db)?;
    archive
        .append_file("parley.db", &mut db_file)
        .context("adding the database")?;
    let mut archive_file = archive.into_inner().context("finishing the archive")?;
    archive_file.flush()?;
    archive_file.sync_all()?;
    drop(archive_file);
    fs::rename(temp_archive, to).with_context(|| format!("moving the backup to {}", to.display()))?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(summary)
}

/// Copies the live database into `dest` in one consistent step.
fn snapshot(db_path: &Path, dest: &Path) -> anyhow::Result<()> {
    let source = Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .with_context(|| format!("opening {}", db_path.display()))?;
    source.busy_timeout(Duration::from_secs(10))?;
    let mut copy = Connection::open(dest).with_context(|| format!("creating {}", dest.display()))?;
    let backup = Backup::new(&source, &mut copy)?;
    for _ in 0..BUSY_TRIES {
        // -1: every page in one step, so the copy is one snapshot.
        match backup.step(-1).context("copying the database")? {
            StepResult::Done => return Ok(()),
            StepResult::More | StepResult::Busy | StepResult::Locked => std::thread::sleep(BUSY_PAUSE),
            _ => std::thread::sleep(BUSY_PAUSE),
        }
    }
    bail!("the database stayed busy; no backup was made")
}

/// Every message that names a stored file, with that name.
fn stored_files(db: &Connection) -> anyhow::Result<Vec<(i64, String)>> {
    let mut stmt = db.prepare("SELECT id, stored_name FROM messages WHERE stored_name IS NOT NULL")?;
    let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// A new file only the server's user can read (backups hold everyone's conversations).
fn create_private(path: &Path) -> anyhow::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;
    use crate::model::{RoomType, StoredFile};
    use crate::store::prelude::*;
    use crate::store::{migrate, SqliteStore};

    #[test]
    fn a_message_whose_file_went_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        fs::create_dir_all(files::files_dir(&data)).unwrap();
        let db = data.join("parley.db");
        migrate(&db).unwrap();
        let mut store = SqliteStore::open(&db, Durability::Normal).unwrap();
        let user = store.create_user("alice", "a", "", "x", 1).unwrap().unwrap().id;
        let room = store.create_room(user, "r", "", RoomType::Global, 1).unwrap().id;
        let kept = files::new_stored_name().unwrap();
        fs::write(files::files_dir(&data).join(&kept), b"kept bytes").unwrap();
        for name in [kept.clone(), files::new_stored_name().unwrap()] {
            let file = StoredFile {
                name: "f.bin".into(),
                size: 10,
                stored_name: name,
            };
            store.insert_file_message(room, user, &file, 2).unwrap();
        }
        store
            .insert_message(room, user, "text", crate::model::MsgType::Text, 3)
            .unwrap();
        let to = dir.path().join("b.tar");
        let summary = backup(&data, &to).unwrap();
        assert_eq!(
            summary,
            BackupSummary {
                messages: 2,
                files: 1,
                dropped: 1
            }
        );
        let restored = dir.path().join("restored");
        tar::Archive::new(File::open(&to).unwrap())
            .unpack(&restored)
            .unwrap();
        assert_eq!(
            fs::read(restored.join("files").join(&kept)).unwrap(),
            b"kept bytes"
        );
        let copy = SqliteStore::open(&restored.join("parley.db"), Durability::Normal).unwrap();
        assert_eq!(copy.all_stored_files().unwrap(), vec![kept]);
        assert!(!dir.path().join("b.tar.partial").exists());
    }
}
