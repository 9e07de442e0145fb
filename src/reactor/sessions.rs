//! Who each connection is: logging in and out, revoked tokens, and the
//! presence announcements that follow a user's first and last connection.

use std::time::Instant;

use mio::Token;

use super::Reactor;
use crate::compat::Dialect;
use crate::job::{Revoke, Session, Task};

impl Reactor {
    /// The connection logged in as `session`.
    pub(super) fn set_session(&mut self, token: Token, session: Session) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let user_id = session.user_id;
        match conn.set_session(Some(session)) {
            Some(old) if old.user_id == user_id => {}
            Some(old) => {
                // Handlers refuse switching users (ER_CLI_EXST); kept correct anyway.
                self.forget_user_conn(old.user_id, token);
                self.remember_user_conn(user_id, token);
            }
            None => {
                self.anonymous.remove(token.0);
                self.remember_user_conn(user_id, token);
            }
        }
    }

    fn remember_user_conn(&mut self, user_id: i64, token: Token) {
        self.by_user.entry(user_id).or_default().push(token);
        if self
            .conns
            .get(&token)
            .is_some_and(|c| c.dialect() == Dialect::Codes)
        {
            self.old_clients.insert(token);
        }
        if self.presence.connect(user_id) {
            self.tell_nodes_presence(user_id, true);
            if !self.presence.online_elsewhere(user_id) {
                self.announce_presence(user_id, true);
            }
        }
    }

    /// The connection no longer acts for the user (logged out or closed).
    pub(super) fn forget_user_conn(&mut self, user_id: i64, token: Token) {
        self.old_clients.remove(&token);
        if let Some(tokens) = self.by_user.get_mut(&user_id) {
            tokens.retain(|t| *t != token);
            if tokens.is_empty() {
                self.by_user.remove(&user_id);
            }
        }
        if self.presence.disconnect(user_id) {
            self.tell_nodes_presence(user_id, false);
            if !self.presence.online_elsewhere(user_id) {
                self.announce_presence(user_id, false);
            }
        }
    }

    /// The user came or went: friends are told now, or, if they were told
    /// less than a second ago, once the second is over (of the latest state).
    pub(super) fn announce_presence(&mut self, user_id: i64, online: bool) {
        if self.presence_out.changed(user_id, online, Instant::now()) {
            self.send_presence(user_id, online);
        }
    }

    /// Releases presence announcements held back by the coalescer.
    pub(super) fn flush_presence(&mut self) {
        for (user_id, online) in self.presence_out.due(Instant::now()) {
            self.send_presence(user_id, online);
        }
    }

    /// Asks the writer to tell the user's friends that the user came or
    /// went: in the writer's order, so the last push is the true state.
    fn send_presence(&mut self, user_id: i64, online: bool) {
        self.write(Task::Presence { user_id, online });
    }

    /// Logs out every connection of the user that uses the revoked token.
    pub(super) fn revoke(&mut self, requester: Token, revoke: Revoke, touched: &mut Vec<Token>) {
        let tokens = self.by_user.get(&revoke.user_id).cloned().unwrap_or_default();
        for token in tokens {
            let Some(conn) = self.conns.get_mut(&token) else {
                continue;
            };
            if conn.session().map(|s| s.token_hash) != Some(revoke.token_hash) {
                continue;
            }
            conn.set_session(None);
            if token != requester {
                let line = revoke.notice.encode(conn.dialect(), None);
                conn.queue(&line);
                touched.push(token);
            }
            self.forget_user_conn(revoke.user_id, token);
            self.start_login_deadline(token);
            self.count_anonymous(token);
        }
    }
}
