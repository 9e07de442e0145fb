//! Worker threads: take jobs, run handlers against their own store, send outcomes back.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use crate::handler;
use crate::job::{Completion, Job, Outcome};
use crate::protocol::ErrorCode;
use crate::shared::Shared;
use crate::store::Store;

/// One worker thread's state.
pub struct Worker {
    pub jobs: Receiver<Job>,
    pub done: Sender<Completion>,
    /// Wakes the reactor after each completion is sent.
    pub waker: Arc<Waker>,
    pub store: Box<Store>,
    pub shared: Arc<Shared>,
}

impl Worker {
    /// Runs until the job channel closes (server shutdown) or the reactor is gone.
    pub fn run(mut self) {
        for job in self.jobs.iter() {
            let conn = job.conn;
            let kind = job.kind;
            // A bug in one handler must not take the worker (and with it a
            // share of the server's capacity) down: answer ER_INTERNAL instead.
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                handler::handle(job, self.store.as_mut(), &self.shared)
            }))
            .unwrap_or_else(|_| {
                log::error!("handler for {} on conn {conn} panicked", kind.name());
                Outcome::error(ErrorCode::Internal, "internal server error", kind)
            });
            if outcome.deferred {
                continue;
            }
            if self.done.send(Completion { conn, outcome }).is_err() {
                break;
            }
            if let Err(e) = self.waker.wake() {
                log::error!("waking the reactor failed: {e}");
            }
        }
    }
}
