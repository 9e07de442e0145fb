//! Serving one connection's turn: writing, reading, taking lines off and
//! sending each request to whoever serves it (see `handler::route`).

use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use mio::Token;

use super::{conn_id, Reactor};
use crate::conn::{InFlight, ReadStatus};
use crate::error::Error;
use crate::framing::Frame;
use crate::handler::{route, Route};
use crate::job::{Job, Task};
use crate::protocol::{self, ErrorCode, Kind, Outgoing, Request};
use crate::throttle::AuthAttempt;
use crate::transport::{tls_failure, TlsFailure};

/// Read-and-dispatch rounds one connection gets before others have a turn.
const SERVICE_ROUNDS: usize = 16;

/// Lines one connection may have taken off per turn: requests, pings answered
/// inline, bad lines and empty lines alike (a flood of bare `\n` or of pings
/// must cost its sender, not everyone).
const TURN_LINES: usize = 256;
/// Bytes one connection may have read per turn.
const TURN_BYTES: usize = 256 * 1024;

/// Overload: a request that has already waited `OVERLOAD_WAIT` inside the
/// server (read, but behind its connection's earlier requests) while
/// `OVERLOAD_IN_FLIGHT` requests or more are in flight (at the workers and
/// the writer, queued or being served) is refused with ER_BUSY at once.
/// Past saturation the server then serves what it can at full speed and
/// refuses the excess early, instead of queueing everything until
/// everything is late; a server with little in flight serves any burst.
/// (The writer's queue alone is a poor signal: it is empty right after
/// the writer takes a batch.) Whatever the load, a request that waited
/// `MAX_WAIT` is refused: nothing waits in the server for longer (the
/// wait behind the connection's own file transfer does not count).
/// Sign-ups and log-ins, with their own queue and rates, and pings and
/// other inline answers are never refused here.
const OVERLOAD_WAIT: Duration = Duration::from_millis(100);
const OVERLOAD_IN_FLIGHT: usize = 64;
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Whether a request that waited `waited` should be refused while
/// `in_flight` requests are being served.
fn overloaded(waited: Duration, in_flight: usize) -> bool {
    waited >= MAX_WAIT || (waited >= OVERLOAD_WAIT && in_flight >= OVERLOAD_IN_FLIGHT)
}

/// What one connection may still do in its current turn.
pub(super) struct TurnBudget {
    lines: usize,
    bytes: usize,
}

impl TurnBudget {
    fn new() -> TurnBudget {
        TurnBudget {
            lines: TURN_LINES,
            bytes: TURN_BYTES,
        }
    }

    fn spent(&self) -> bool {
        self.lines == 0 || self.bytes == 0
    }
}

/// Why a job could not be queued.
enum QueueRefusal {
    Full,
    Gone,
}

fn refusal<T>(e: TrySendError<T>) -> QueueRefusal {
    match e {
        TrySendError::Full(_) => QueueRefusal::Full,
        TrySendError::Disconnected(_) => QueueRefusal::Gone,
    }
}

impl Reactor {
    /// Writes, dispatches and reads one connection until it makes no more
    /// progress or has used its turn; then flushes and re-registers it.
    pub(super) fn service(&mut self, token: Token) {
        let pause_at = self.limits.read_pause_bytes();
        let max_out = self.limits.max_outbound_bytes;
        let mut rounds = 0;
        let mut budget = TurnBudget::new();
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if let Err(e) = conn.flush() {
                self.close(token, &format!("write error: {e}"));
                return;
            }
            let buffered_before = conn.buffered();
            self.dispatch_lines(token, &mut budget);
            self.pump_upload(token);
            if budget.spent() {
                // Its turn is over; come back after the others had theirs.
                self.ready.push(token);
                break;
            }
            let draining = self.draining_until.is_some();
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            let mut progressed = conn.buffered() != buffered_before;
            if !draining && conn.wants_read(max_out, pause_at) {
                let limit = pause_at.min(conn.buffered() + budget.bytes);
                match conn.read_available(limit, &mut self.scratch) {
                    Ok((_, ReadStatus::Closed)) => {
                        conn.note_eof();
                        progressed = true;
                    }
                    Ok((n, ReadStatus::Open)) => {
                        budget.bytes = budget.bytes.saturating_sub(n);
                        progressed |= n > 0;
                    }
                    Err(e) => {
                        match tls_failure(&e) {
                            Some(failure) => self.close_failed_tls(token, failure),
                            None => self.close(token, &format!("read error: {e}")),
                        }
                        return;
                    }
                }
            }
            if !progressed {
                break;
            }
            rounds += 1;
            if rounds == SERVICE_ROUNDS {
                // Its turn is over; come back after the others had theirs.
                // Edge-triggered readiness would not remind us of it.
                self.ready.push(token);
                break;
            }
        }
        self.finish_service(token);
    }

    /// Closes a connection whose TLS failed. The first of each cause is
    /// logged with what it means; the rest only at debug level (a port
    /// scanner or a misconfigured client would otherwise fill the log).
    fn close_failed_tls(&mut self, token: Token, failure: &TlsFailure) {
        let first = match failure {
            TlsFailure::NotTls => !std::mem::replace(&mut self.reported_plaintext, true),
            TlsFailure::Protocol(_) => !std::mem::replace(&mut self.reported_tls_error, true),
        };
        if first {
            let peer = self.conns.get(&token).map(|c| c.peer());
            log::warn!(
                "closed a connection from {}: {failure}; further such closes are logged at debug level",
                peer.map_or("?".into(), |p| p.to_string())
            );
        }
        self.close_quietly(token, &failure.to_string(), false);
    }

    /// Flushes output, closes a connection that is done, updates its interest.
    fn finish_service(&mut self, token: Token) {
        let max_out = self.limits.max_outbound_bytes;
        let pause_at = self.limits.read_pause_bytes();
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.close(token, &format!("write error: {e}"));
            return;
        }
        self.request_chunk(token);
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Some(reason) = conn.close_reason() {
            self.close(token, &reason);
            return;
        }
        let wants_read = conn.wants_read(max_out, pause_at);
        if let Err(e) = conn.update_interest(self.poll.registry(), token, wants_read) {
            self.close(token, &format!("poll registration failed: {e}"));
        }
    }

    /// Takes complete lines off a connection while it takes requests.
    fn dispatch_lines(&mut self, token: Token, budget: &mut TurnBudget) {
        let max_out = self.limits.max_outbound_bytes;
        let now = Instant::now();
        while self.draining_until.is_none() && budget.lines > 0 {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            if !conn.takes_requests(max_out) {
                return;
            }
            let waited = conn.next_line_waited(now);
            let Some(frame) = conn.next_frame() else {
                return;
            };
            budget.lines -= 1;
            let line = match frame {
                Frame::TooLarge => {
                    let msg = format!("line longer than {} bytes", self.limits.max_line_bytes);
                    conn.reply(&Outgoing::error(ErrorCode::TooLarge, msg, None), None);
                    continue;
                }
                Frame::Line(line) => line,
            };
            conn.trace_request(&line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let env = match protocol::decode(&line) {
                Ok(env) => env,
                Err(err) => {
                    if let Some(was_code) = err.type_was_code {
                        conn.note_request_type(was_code, None);
                    }
                    let msg = Outgoing::error(err.code, err.msg, err.kind);
                    conn.reply(&msg, err.req_id.as_ref());
                    continue;
                }
            };
            if conn.transfer().is_some() {
                // A download was offered: RQ_READY_READ starts it; anything
                // else gives it up, then is served.
                if let Request::ReadyRead = env.request {
                    conn.start_download();
                    return;
                }
                self.end_download(token);
            }
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            conn.note_request_type(env.type_was_code, Some(env.kind.code()));
            self.metrics.count_request(env.kind);
            let route = route(env.kind);
            if route == Route::Inline {
                conn.reply(&Outgoing::empty(env.kind), env.req_id.as_ref());
                continue;
            }
            if route == Route::Auth {
                let attempt = match env.kind {
                    Kind::SignUp => AuthAttempt::SignUp,
                    _ => AuthAttempt::LogIn,
                };
                if let Err(refused) = self.auth_gate.admit(attempt, conn.peer().ip()) {
                    if refused.first {
                        log::warn!(
                            "{} from {} rate-limited for {:.1} s",
                            env.kind.name(),
                            conn.peer().ip(),
                            refused.retry_after.as_secs_f64()
                        );
                    }
                    let what = match attempt {
                        AuthAttempt::SignUp => "too many sign-ups from your address",
                        AuthAttempt::LogIn => "too many log-ins from your address",
                    };
                    let err = Error::rate_limited(what, refused.retry_after);
                    conn.reply(&err.to_outgoing(Some(env.kind)), env.req_id.as_ref());
                    continue;
                }
                if let Some(link) = &self.cluster {
                    link.share_auth_attempt(attempt, conn.peer().ip());
                }
            }
            let job = Job {
                conn: conn_id(token),
                peer: conn.peer().ip(),
                session: conn.session().cloned(),
                dialect: conn.dialect(),
                kind: env.kind,
                request: env.request,
            };
            let refusable = matches!(route, Route::Write | Route::Read);
            let sent = if refusable && overloaded(waited, self.jobs_out) {
                Err(QueueRefusal::Full)
            } else {
                match route {
                    Route::Auth => self.auth_jobs.try_send(job).map_err(refusal),
                    Route::Write => self.writes.try_send(Task::Request(job)).map_err(refusal),
                    Route::Read | Route::Inline => self.jobs.try_send(job).map_err(refusal),
                }
            };
            match sent {
                Ok(()) => {
                    conn.begin_request(InFlight::new(env.kind, env.req_id));
                    self.jobs_out += 1;
                }
                Err(QueueRefusal::Full) => {
                    let msg = Outgoing::error(ErrorCode::Busy, "server busy; try again", Some(env.kind));
                    conn.reply(&msg, env.req_id.as_ref());
                }
                Err(QueueRefusal::Gone) => {
                    let msg = Outgoing::error(ErrorCode::Internal, "server stopping", Some(env.kind));
                    conn.reply(&msg, env.req_id.as_ref());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_request_that_waited_while_much_is_in_flight_is_refused() {
        let long = OVERLOAD_WAIT + Duration::from_millis(1);
        assert!(overloaded(long, OVERLOAD_IN_FLIGHT));
        assert!(
            !overloaded(long, OVERLOAD_IN_FLIGHT - 1),
            "a quiet server serves any burst"
        );
        assert!(
            !overloaded(Duration::from_millis(1), 10_000),
            "fresh requests join"
        );
        assert!(overloaded(MAX_WAIT, 1), "nothing waits longer than MAX_WAIT");
    }
}
