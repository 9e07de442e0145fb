//! Answers coming back: each completion's reply to its requester, its
//! session and transfer changes, and its pushes to every online connection
//! of their recipients, in the order the completions arrive (the writer
//! sends its own in commit order).

use mio::Token;

use super::transfers::NewUpload;
use super::Reactor;
use crate::compat;
use crate::job::{Completion, Outcome, Push, TransferStart};
use crate::protocol::ReqId;

impl Reactor {
    /// Applies every completion waiting, then serves the connections they touched.
    pub(super) fn drain_completions(&mut self) {
        let mut touched = Vec::new();
        while let Ok(completion) = self.done.try_recv() {
            self.jobs_out = self.jobs_out.saturating_sub(1);
            self.complete(completion, &mut touched);
        }
        self.publish_pushes();
        self.serve_touched(touched);
    }

    /// Serves each connection a pass touched, once.
    pub(super) fn serve_touched(&mut self, mut touched: Vec<Token>) {
        touched.sort_unstable();
        touched.dedup();
        for token in touched {
            // The requester may read its next request now; others just flush.
            self.service(token);
        }
    }

    /// Applies one job's outcome: session changes, the reply, the pushes.
    fn complete(&mut self, completion: Completion, touched: &mut Vec<Token>) {
        let token = Token(completion.conn as usize);
        let Outcome {
            reply,
            pushes,
            log_in,
            revoke,
            transfer,
            close_after,
            deferred: _,
            remove_files: _,
            again,
            rooms_news,
        } = completion.outcome;
        if again {
            self.maintain_soon();
        }
        // The requester may have gone meanwhile (or there was none, for the
        // server's own writes); what the job did still reaches everyone else.
        let req_id = match self.conns.get_mut(&token) {
            Some(conn) => {
                touched.push(token);
                let req_id = conn.finish_request();
                if let Some(reply) = &reply {
                    conn.reply(reply, req_id.as_ref());
                }
                if let Some(session) = log_in {
                    self.set_session(token, session);
                }
                match transfer {
                    Some(TransferStart::Upload {
                        user_id,
                        room_id,
                        name,
                        size,
                        reservation,
                    }) => {
                        let upload = NewUpload {
                            user_id,
                            room_id,
                            name,
                            size,
                            reservation,
                        };
                        self.start_upload(token, upload, req_id.clone(), close_after);
                    }
                    Some(TransferStart::Download { path, size }) => {
                        self.start_download(token, path, size, close_after)
                    }
                    None => {}
                }
                req_id
            }
            None => None,
        };
        if let Some(revoke) = revoke {
            self.publish_revoke(&revoke);
            self.revoke(token, revoke, touched);
        }
        for push in pushes {
            self.route_push(token, push, req_id.as_ref(), touched);
        }
        if let Some(news) = rooms_news {
            self.rooms_news(news, touched);
        }
    }

    /// Sends a push to every online connection of its recipients. The line is
    /// encoded once per dialect; only the requester's copy differs (req_id).
    pub(super) fn fan_out(
        &mut self,
        requester: Token,
        push: Push,
        req_id: Option<&ReqId>,
        touched: &mut Vec<Token>,
    ) {
        let code = push.msg.kind.code();
        // Room power is for old clients only: with none online, nobody takes it.
        if code == compat::UPD_ROOM_POWR && self.old_clients.is_empty() {
            return;
        }
        let mut encoded: [Option<Vec<u8>>; 2] = [None, None];
        let mut requester_reached = false;
        let max_out = self.limits.max_outbound_bytes;
        for user_id in push.to.iter() {
            let Some(tokens) = self.by_user.get(user_id) else {
                continue;
            };
            for &token in tokens {
                let Some(conn) = self.conns.get_mut(&token) else {
                    continue;
                };
                if push.answers_request && token == requester {
                    requester_reached = true;
                    conn.reply(&push.msg, req_id);
                    // Held back in a cluster, the answer may come after the
                    // completion that touched the requester.
                    touched.push(token);
                    continue;
                }
                if !conn.takes_push(code) {
                    continue;
                }
                let dialect = conn.dialect();
                let line = encoded[dialect as usize].get_or_insert_with(|| push.msg.encode(dialect, None));
                if !conn.deliver(line, max_out) {
                    log::warn!(
                        "conn {} ({}) is not reading: {} bytes queued; disconnecting it",
                        token.0,
                        conn.peer(),
                        conn.pending_out()
                    );
                }
                touched.push(token);
            }
        }
        if push.answers_request && !requester_reached {
            if let Some(conn) = self.conns.get_mut(&requester) {
                conn.reply(&push.msg, req_id);
                touched.push(requester);
            }
        }
    }
}
