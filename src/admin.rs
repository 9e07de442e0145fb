//! `parleyd admin`: what an operator needs without a client, run against a
//! data directory whether or not a server is running on it.
//!
//! Every change is one SQLite transaction. A running server notices changes
//! made by another process (`Transactions::begin_batch` checks the database's
//! `data_version`), so it never serves a room from memory that was deleted
//! here.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::auth::PasswordHasher;
use crate::config::{Config, Durability};
use crate::files;
use crate::model::User;
use crate::store::prelude::*;
use crate::store::{self, SqliteStore};

/// One admin command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Users,
    ResetPassword { login: String },
    Revoke { login: String },
    Rooms,
    DeleteRoom { id: i64 },
    Stats,
}

impl Command {
    /// Parses `COMMAND [ARG]`.
    pub fn parse(words: &[String]) -> anyhow::Result<Command> {
        let arg = |what: &str| {
            words
                .get(1)
                .cloned()
                .with_context(|| format!("{} needs {what}", words[0]))
        };
        let command = match words.first().map(String::as_str) {
            Some("users") => Command::Users,
            Some("reset-password") => Command::ResetPassword { login: arg("LOGIN")? },
            Some("revoke") => Command::Revoke { login: arg("LOGIN")? },
            Some("rooms") => Command::Rooms,
            Some("delete-room") => Command::DeleteRoom {
                id: arg("ID")?
                    .parse()
                    .context("delete-room needs a room id (a number)")?,
            },
            Some("stats") => Command::Stats,
            Some(other) => bail!("unknown admin command {other:?}"),
            None => bail!("admin needs a command: users, reset-password, revoke, rooms, delete-room, stats"),
        };
        let wanted = match command {
            Command::ResetPassword { .. } | Command::Revoke { .. } | Command::DeleteRoom { .. } => 2,
            _ => 1,
        };
        if words.len() > wanted {
            bail!("{} takes {} argument(s)", words[0], wanted - 1);
        }
        Ok(command)
    }
}

/// Where the admin works, and the settings that shape what it writes.
pub struct Admin {
    data_dir: PathBuf,
    store: SqliteStore,
    config: Config,
}

impl Admin {
    /// Opens the data directory's database (bringing its schema up to date).
    pub fn open(data_dir: &Path, config: Config) -> anyhow::Result<Admin> {
        let db = data_dir.join(crate::config::DB_FILE);
        if !db.exists() {
            bail!("{} holds no Parley database", data_dir.display());
        }
        refuse_other_owner(data_dir)?;
        store::migrate(&db)?;
        Ok(Admin {
            data_dir: data_dir.to_path_buf(),
            store: SqliteStore::open(&db, Durability::Full)?,
            config,
        })
    }

    fn user(&self, login: &str) -> anyhow::Result<User> {
        self.store
            .user_by_login(login)?
            .with_context(|| format!("no user {login:?}"))
    }

    /// Runs a command; `input` gives the new password of `reset-password`.
    pub fn run(
        &mut self,
        command: Command,
        input: &mut dyn BufRead,
        out: &mut dyn Write,
    ) -> anyhow::Result<()> {
        match command {
            Command::Users => {
                writeln!(out, "{:>6}  {:<22}  {:<19}  name", "id", "login", "signed up")?;
                for (user, created) in self.store.all_users()? {
                    writeln!(
                        out,
                        "{:>6}  {:<22}  {:<19}  {}",
                        user.id,
                        user.login,
                        when(created),
                        user.name
                    )?;
                }
            }
            Command::ResetPassword { login } => {
                let user = self.user(&login)?;
                let password = read_password(input, &login)?;
                let hasher =
                    PasswordHasher::new(self.config.argon2_memory_kib, self.config.argon2_iterations)
                        .map_err(anyhow::Error::msg)?;
                let digest = crate::client::password_digest(&password);
                let hash = hasher.hash(&digest).map_err(anyhow::Error::msg)?;
                let revoked = self.store.atomically(|s| {
                    s.set_pass_hash(user.id, &hash)?;
                    s.revoke_all_tokens(user.id)
                })?;
                writeln!(out, "new password set for {login}; {revoked} sessions revoked")?;
            }
            Command::Revoke { login } => {
                let user = self.user(&login)?;
                let revoked = self.store.atomically(|s| s.revoke_all_tokens(user.id))?;
                writeln!(out, "{revoked} sessions of {login} revoked")?;
            }
            Command::Rooms => {
                writeln!(
                    out,
                    "{:>6}  {:<7}  {:>7}  {:>8}  name",
                    "id", "type", "members", "messages"
                )?;
                for room in self.store.all_rooms()? {
                    let kind = match room.room_type {
                        crate::model::RoomType::Global => "global",
                        crate::model::RoomType::Private => "private",
                        crate::model::RoomType::Direct => "direct",
                    };
                    writeln!(
                        out,
                        "{:>6}  {:<7}  {:>7}  {:>8}  {}",
                        room.id, kind, room.members, room.messages, room.name
                    )?;
                }
            }
            Command::DeleteRoom { id } => {
                let room = self.store.room(id)?.with_context(|| format!("no room {id}"))?;
                let stored = self.store.atomically(|s| {
                    let stored = s.stored_files_in_room(id)?;
                    s.delete_room(id)?;
                    Ok::<_, store::Error>(stored)
                })?;
                let dir = files::files_dir(&self.data_dir);
                for name in &stored {
                    files::remove_stored(&dir, name);
                }
                writeln!(
                    out,
                    "room {id} ({}) deleted with {} files",
                    room.name,
                    stored.len()
                )?;
            }
            Command::Stats => {
                let t = self.store.totals()?;
                let db = self.data_dir.join(crate::config::DB_FILE);
                let db_bytes: u64 = ["", "-wal"]
                    .iter()
                    .filter_map(|suffix| std::fs::metadata(files::with_suffix(&db, suffix)).ok())
                    .map(|m| m.len())
                    .sum();
                writeln!(out, "users     {}", t.users)?;
                writeln!(out, "rooms     {}", t.rooms)?;
                writeln!(out, "messages  {}", t.messages)?;
                writeln!(out, "files     {} ({} bytes)", t.files, t.file_bytes)?;
                writeln!(out, "database  {db_bytes} bytes")?;
            }
        }
        Ok(())
    }
}

/// Refuses to work on a data directory another user owns: files it
/// created (the database's journal, say) would then belong to the wrong
/// user, and the server could no longer open them.
fn refuse_other_owner(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let owner = std::fs::metadata(data_dir)
        .with_context(|| format!("reading {}", data_dir.display()))?
        .uid();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if owner != me {
        bail!(
            "{} belongs to user id {owner}: run this as that user (sudo -u USER parleyd admin ...)",
            data_dir.display()
        );
    }
    Ok(())
}

/// A date for people: UTC, to the second.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "?".into(), |d| d.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The new password: asked twice without echo on a terminal, else the
/// first line of `input`.
fn read_password(input: &mut dyn BufRead, login: &str) -> anyhow::Result<String> {
    let password = if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let first = rpassword::prompt_password(format!("new password for {login}: "))?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        input.read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.chars().count() < 8 {
        bail!("a password needs at least 8 characters");
    }
    Ok(password)
}
