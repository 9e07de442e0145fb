//! Users and session tokens.

use rusqlite::{params, OptionalExtension};

use super::SqliteStore;
use crate::model::User;
use crate::store::{AccountStore, Result};

/// How stale a token's last-use mark may get before a resume rewrites it.
const LAST_USED_GRANULARITY_MS: i64 = 60 * 60 * 1000;

/// A user from the first four columns of a row: id, login, name, desc.
/// Every query that returns users reads them through this one mapping.
pub(super) fn user_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        login: row.get(1)?,
        name: row.get(2)?,
        desc: row.get(3)?,
    })
}

impl AccountStore for SqliteStore {
    fn create_user(
        &mut self,
        login: &str,
        name: &str,
        desc: &str,
        pass_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO users (login, name, \"desc\", pass_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(login) DO NOTHING",
            )?
            .execute(params![login, name, desc, pass_hash, now])?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = self.conn.last_insert_rowid();
        Ok(Some(User {
            id,
            login: login.to_owned(),
            name: name.to_owned(),
            desc: desc.to_owned(),
        }))
    }

    fn user_with_pass_hash(&self, login: &str) -> Result<Option<(User, String)>> {
        self.conn
            .prepare_cached("SELECT id, login, name, \"desc\", pass_hash FROM users WHERE login = ?1")?
            .query_row([login], |row| Ok((user_from_row(row)?, row.get(4)?)))
            .optional()
            .map_err(Into::into)
    }

    fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        self.conn
            .prepare_cached("SELECT id, login, name, \"desc\" FROM users WHERE id = ?1")?
            .query_row([id], user_from_row)
            .optional()
            .map_err(Into::into)
    }

    fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        self.conn
            .prepare_cached("SELECT id, login, name, \"desc\" FROM users WHERE login = ?1")?
            .query_row([login], user_from_row)
            .optional()
            .map_err(Into::into)
    }

    fn insert_token(&mut self, hash: &[u8; 32], user_id: i64, now: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO tokens (hash, user_id, created_at, last_used) VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![&hash[..], user_id, now])?;
        Ok(())
    }

    fn use_token(&mut self, hash: &[u8; 32], login: &str, not_before: i64, now: i64) -> Result<Option<User>> {
        // A plain read: most resumes write nothing, and a write transaction
        // here made concurrent resumes queue for SQLite's write lock. The
        // rare writes below are single idempotent statements.
        let found = self
            .conn
            .prepare_cached(
                "SELECT u.id, u.login, u.name, u.\"desc\", t.last_used FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.hash = ?1",
            )?
            .query_row([&hash[..]], |row| Ok((user_from_row(row)?, row.get::<_, i64>(4)?)))
            .optional()?;
        match found {
            Some((_, last_used)) if last_used < not_before => {
                self.conn
                    .prepare_cached("DELETE FROM tokens WHERE hash = ?1 AND last_used < ?2")?
                    .execute(params![&hash[..], not_before])?;
                Ok(None)
            }
            Some((user, last_used)) if user.login == login => {
                // Expiry is counted in days: refreshing the mark at most
                // hourly spares a write (and its fsync) on most resumes.
                if now - last_used > LAST_USED_GRANULARITY_MS {
                    self.conn
                        .prepare_cached("UPDATE tokens SET last_used = max(last_used, ?2) WHERE hash = ?1")?
                        .execute(params![&hash[..], now])?;
                }
                Ok(Some(user))
            }
            _ => Ok(None),
        }
    }

    fn token_user(&self, hash: &[u8; 32], login: &str, not_before: i64) -> Result<Option<User>> {
        let found = self
            .conn
            .prepare_cached(
                "SELECT u.id, u.login, u.name, u.\"desc\" FROM tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.hash = ?1 AND t.last_used >= ?2",
            )?
            .query_row(params![&hash[..], not_before], user_from_row)
            .optional()?;
        Ok(found.filter(|user| user.login == login))
    }

    fn purge_expired_tokens(&mut self, not_before: i64) -> Result<usize> {
        self.conn
            .prepare_cached("DELETE FROM tokens WHERE last_used < ?1")?
            .execute(params![not_before])
            .map_err(Into::into)
    }

    fn revoke_token(&mut self, hash: &[u8; 32], user_id: i64) -> Result<bool> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM tokens WHERE hash = ?1 AND user_id = ?2")?
            .execute(params![&hash[..], user_id])?;
        Ok(n > 0)
    }

    fn set_user_desc(&mut self, user_id: i64, desc: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE users SET \"desc\" = ?2 WHERE id = ?1")?
            .execute(params![user_id, desc])?;
        Ok(())
    }

    fn set_user_name(&mut self, user_id: i64, name: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE users SET name = ?2 WHERE id = ?1")?
            .execute(params![user_id, name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::prelude::*;

    use crate::store::temp_store as store;

    #[test]
    fn users_are_unique_by_login() {
        let (_dir, mut s) = store();
        let u = s.create_user("bob", "Bob", "", "h", 1).unwrap().unwrap();
        assert!(s.create_user("bob", "Other", "", "h", 2).unwrap().is_none());
        assert_eq!(s.user_by_id(u.id).unwrap(), Some(u.clone()));
        assert_eq!(s.user_with_pass_hash("bob").unwrap().unwrap().1, "h");
    }

    #[test]
    fn tokens_expire_and_revoke() {
        let (_dir, mut s) = store();
        let u = s.create_user("bob", "Bob", "", "h", 1).unwrap().unwrap();
        let hash = [7u8; 32];
        s.insert_token(&hash, u.id, 100).unwrap();
        assert!(
            s.use_token(&hash, "alice", 0, 150).unwrap().is_none(),
            "login must match"
        );
        let hour = super::LAST_USED_GRANULARITY_MS;
        // A use within the hour leaves the mark at 100; one later moves it.
        assert_eq!(s.use_token(&hash, "bob", 0, 200).unwrap(), Some(u.clone()));
        let later = 100 + hour + 1;
        assert_eq!(
            s.use_token(&hash, "bob", 101, later).unwrap(),
            None,
            "last use counted from 100"
        );
        s.insert_token(&hash, u.id, 100).unwrap();
        assert_eq!(s.use_token(&hash, "bob", 0, later).unwrap(), Some(u.clone()));
        assert!(
            s.use_token(&hash, "bob", later, later + 5).unwrap().is_some(),
            "mark moved to {later}"
        );
        assert!(
            s.use_token(&hash, "bob", later + 1, later + 10)
                .unwrap()
                .is_none(),
            "unused since {later}: expired"
        );
        assert!(
            s.use_token(&hash, "bob", 0, later + 20).unwrap().is_none(),
            "expired tokens are deleted"
        );
        s.insert_token(&hash, u.id, 400).unwrap();
        assert!(!s.revoke_token(&hash, u.id + 1).unwrap());
        assert!(s.revoke_token(&hash, u.id).unwrap());
        assert!(s.use_token(&hash, "bob", 0, 500).unwrap().is_none());
    }
}
