//! Users and session tokens.

use postgres::Row;

use super::PgStore;
use crate::model::User;
use crate::store::{AccountStore, Result};

/// How stale a token's last-use mark may get before a resume rewrites it
/// (as in the SQLite store: expiry is counted in days).
const LAST_USED_GRANULARITY_MS: i64 = 60 * 60 * 1000;

/// A user from four columns starting at `at`: id, login, name, desc.
pub(super) fn user_at(row: &Row, at: usize) -> User {
    User {
        id: row.get(at),
        login: row.get(at + 1),
        name: row.get(at + 2),
        desc: row.get(at + 3),
    }
}

impl AccountStore for PgStore {
    fn create_user(
        &mut self,
        login: &str,
        name: &str,
        desc: &str,
        pass_hash: &str,
        now: i64,
    ) -> Result<Option<User>> {
        let row = self.query_opt(
            "INSERT INTO users (login, name, \"desc\", pass_hash, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (login) DO NOTHING RETURNING id",
            &[&login, &name, &desc, &pass_hash, &now],
        )?;
        Ok(row.map(|row| User {
            id: row.get(0),
            login: login.to_owned(),
            name: name.to_owned(),
            desc: desc.to_owned(),
        }))
    }

    fn user_with_pass_hash(&self, login: &str) -> Result<Option<(User, String)>> {
        let row = self.query_opt(
            "SELECT id, login, name, \"desc\", pass_hash FROM users WHERE login = $1",
            &[&login],
        )?;
        Ok(row.map(|row| (user_at(&row, 0), row.get(4))))
    }

    fn user_by_id(&self, id: i64) -> Result<Option<User>> {
        let row = self.query_opt(
            "SELECT id, login, name, \"desc\" FROM users WHERE id = $1",
            &[&id],
        )?;
        Ok(row.map(|row| user_at(&row, 0)))
    }

    fn user_by_login(&self, login: &str) -> Result<Option<User>> {
        let row = self.query_opt(
            "SELECT id, login, name, \"desc\" FROM users WHERE login = $1",
            &[&login],
        )?;
        Ok(row.map(|row| user_at(&row, 0)))
    }

    fn insert_token(&mut self, hash: &[u8; 32], user_id: i64, now: i64) -> Result<()> {
        self.execute(
            "INSERT INTO tokens (hash, user_id, created_at, last_used) VALUES ($1, $2, $3, $3)",
            &[&&hash[..], &user_id, &now],
        )?;
        Ok(())
    }

    fn use_token(&mut self, hash: &[u8; 32], login: &str, not_before: i64, now: i64) -> Result<Option<User>> {
        let found = self.query_opt(
            "SELECT u.id, u.login, u.name, u.\"desc\", t.last_used FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.hash = $1",
            &[&&hash[..]],
        )?;
        let Some(row) = found else {
            return Ok(None);
        };
        let (user, last_used): (User, i64) = (user_at(&row, 0), row.get(4));
        if last_used < not_before {
            self.execute(
                "DELETE FROM tokens WHERE hash = $1 AND last_used < $2",
                &[&&hash[..], &not_before],
            )?;
            return Ok(None);
        }
        if user.login != login {
            return Ok(None);
        }
        if now - last_used > LAST_USED_GRANULARITY_MS {
            self.execute(
                "UPDATE tokens SET last_used = greatest(last_used, $2) WHERE hash = $1",
                &[&&hash[..], &now],
            )?;
        }
        Ok(Some(user))
    }

    fn token_user(&self, hash: &[u8; 32], login: &str, not_before: i64) -> Result<Option<User>> {
        let row = self.query_opt(
            "SELECT u.id, u.login, u.name, u.\"desc\" FROM tokens t JOIN users u ON u.id = t.user_id
             WHERE t.hash = $1 AND t.last_used >= $2",
            &[&&hash[..], &not_before],
        )?;
        Ok(row.map(|row| user_at(&row, 0)).filter(|user| user.login == login))
    }

    fn purge_expired_tokens(&mut self, not_before: i64) -> Result<usize> {
        Ok(self.execute("DELETE FROM tokens WHERE last_used < $1", &[&not_before])? as usize)
    }

    fn revoke_token(&mut self, hash: &[u8; 32], user_id: i64) -> Result<bool> {
        let n = self.execute(
            "DELETE FROM tokens WHERE hash = $1 AND user_id = $2",
            &[&&hash[..], &user_id],
        )?;
        Ok(n > 0)
    }

    fn set_user_desc(&mut self, user_id: i64, desc: &str) -> Result<()> {
        self.execute("UPDATE users SET \"desc\" = $2 WHERE id = $1", &[&user_id, &desc])?;
        Ok(())
    }

    fn set_user_name(&mut self, user_id: i64, name: &str) -> Result<()> {
        self.execute("UPDATE users SET name = $2 WHERE id = $1", &[&user_id, &name])?;
        Ok(())
    }
}
