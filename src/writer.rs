//! The writer: one thread that owns the database's write connection and
//! runs every write, in the order the writes arrived.
//!
//! Every message must be on disk before anyone sees it, and SQLite takes
//! one writer at a time, so one transaction per write would bound the
//! server by the disk's fsync rate. The writer takes every task waiting at
//! that moment, runs each in a savepoint of one transaction (a refusal or a
//! failure undoes only its own), commits once (one fsync), and only then
//! sends each task's reply and pushes, in that order, over the one channel
//! the reactor drains in order. So pushes leave in commit order, and every
//! client sees every room's events in the same order.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::error::Error;
use crate::files;
use crate::handler;
use crate::job::{Completion, ConnId, Outcome, Task};
use crate::metrics::Histogram;
use crate::protocol::{ErrorCode, Kind};
use crate::shared::Shared;
use crate::store::Store;

/// Most tasks in one transaction.
const MAX_BATCH: usize = 512;

/// How long a stored message may wait to be indexed for search.
const INDEX_AFTER: Duration = Duration::from_millis(250);
/// Stored messages that make an indexing pass due at once.
const INDEX_BACKLOG: u64 = 8_192;
/// Most message ids one indexing pass covers (one transaction).
const INDEX_PASS: i64 = 20_000;

/// When the writer next indexes what it stored.
#[derive(Debug, Default)]
struct SearchIndexing {
    /// Messages stored since the last pass (approximately: a pass reads
    /// the real range from the database).
    unindexed: u64,
    /// When the oldest of them was stored.
    since: Option<Instant>,
    /// Searches waiting for a pass.
    waiters: Vec<Sender<()>>,
}

impl SearchIndexing {
    /// At start-up: what a crash left stored but unindexed is indexed first.
    fn at_start() -> SearchIndexing {
        SearchIndexing {
            unindexed: 1,
            since: Instant::now().checked_sub(INDEX_AFTER),
            waiters: Vec::new(),
        }
    }

    fn stored(&mut self, messages: u64) {
        if messages > 0 {
            self.unindexed += messages;
            self.since.get_or_insert_with(Instant::now);
        }
    }

    fn due(&self) -> bool {
        !self.waiters.is_empty()
            || self.unindexed >= INDEX_BACKLOG
            || self.since.is_some_and(|t| t.elapsed() >= INDEX_AFTER)
    }

    /// How long the writer may wait for tasks before a pass is due.
    fn wait_limit(&self) -> Option<Duration> {
        self.since.map(|t| INDEX_AFTER.saturating_sub(t.elapsed()))
    }
}

/// The writer thread's state.
pub struct Writer {
    /// Clients' writes, in arrival order (bounded: the reactor answers
    /// ER_BUSY when it is full).
    pub tasks: Receiver<Task>,
    /// The server's own writes, and the hashing threads' (see `WriteQueue`).
    pub own: Receiver<Task>,
    pub done: Sender<Completion>,
    /// Wakes the reactor when completions are waiting.
    pub waker: Arc<Waker>,
    pub store: Box<Store>,
    pub shared: Arc<Shared>,
}

/// The writer at work: its queues and store, and when it indexes next.
struct Running {
    writer: Writer,
    indexing: SearchIndexing,
}

/// A task's answer, with what it answers.
struct Answer {
    conn: ConnId,
    kind: Kind,
    outcome: Outcome,
}

/// What waiting for work found.
enum Wait {
    /// Tasks to run, in order.
    Tasks(Vec<Task>),
    /// Told to stop: these are the last.
    Last(Vec<Task>),
}

impl Writer {
    /// Runs until told to stop (after everything queued before that) or
    /// until the reactor is gone.
    pub fn run(mut self) {
        self.store.keep_room_cache();
        let mut running = Running {
            writer: self,
            indexing: SearchIndexing::at_start(),
        };
        let mut clients_open = true;
        loop {
            running.index_if_due();
            let limit = running.indexing.wait_limit();
            let (tasks, last) = match running.writer.wait(&mut clients_open, limit) {
                Wait::Tasks(tasks) => (tasks, false),
                Wait::Last(tasks) => (tasks, true),
            };
            if !running.run_in_order(tasks) || last {
                running.index_if_due();
                return;
            }
        }
    }

    /// Waits for a task (at most `limit`, if given), then takes every
    /// other one waiting (up to a batch): the server's own first, then
    /// clients' in arrival order.
    fn wait(&mut self, clients_open: &mut bool, limit: Option<Duration>) -> Wait {
        let mut waiting = Vec::new();
        let timeout = limit.unwrap_or(Duration::from_secs(3600));
        if *clients_open {
            crossbeam_channel::select! {
                recv(self.own) -> task => match task {
                    Ok(task) => waiting.push(task),
                    Err(_) => return Wait::Last(self.take_waiting(waiting)),
                },
                recv(self.tasks) -> task => match task {
                    Ok(task) => waiting.push(task),
                    // The reactor is gone; the server's own writes may still come.
                    Err(_) => *clients_open = false,
                },
                default(timeout) => return Wait::Tasks(waiting),
            }
        } else {
            match self.own.recv_timeout(timeout) {
                Ok(task) => waiting.push(task),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => return Wait::Tasks(waiting),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Wait::Last(waiting),
            }
        }
        let waiting = self.take_waiting(waiting);
        match waiting.iter().position(|t| matches!(t, Task::Stop)) {
            Some(stop) => {
                let mut waiting = waiting;
                waiting.remove(stop);
                // What was queued before the stop is still done.
                waiting.extend(self.tasks.try_iter());
                waiting.extend(self.own.try_iter().filter(|t| !matches!(t, Task::Stop)));
                Wait::Last(waiting)
            }
            None => Wait::Tasks(waiting),
        }
    }

    /// Adds what is waiting in both queues, up to a batch.
    fn take_waiting(&self, mut waiting: Vec<Task>) -> Vec<Task> {
        while waiting.len() < MAX_BATCH {
            match self.own.try_recv() {
                Ok(task) => waiting.push(task),
                Err(_) => break,
            }
        }
        while waiting.len() < MAX_BATCH {
            match self.tasks.try_recv() {
                Ok(task) => waiting.push(task),
                Err(_) => break,
            }
        }
        waiting
    }
}

impl Running {
    /// Indexes stored messages for search when a pass is due: one pass of
    /// at most `INDEX_PASS` ids (more wait for the next turn), or every
    /// one when a search is waiting.
    fn index_if_due(&mut self) {
        if !self.indexing.due() {
            return;
        }
        let searching = !self.indexing.waiters.is_empty();
        let started = Instant::now();
        let mut covered = 0;
        let mut failed = false;
        let more = loop {
            match self.writer.store.index_stored_messages(INDEX_PASS) {
                Ok(pass) => {
                    covered += pass.covered;
                    if !(pass.more && searching) {
                        break pass.more;
                    }
                }
                Err(e) => {
                    log::error!("indexing messages for search failed: {e}");
                    failed = true;
                    break true;
                }
            }
        };
        log::debug!(
            "indexed {covered} message ids for search in {:.1} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
        for waiter in self.indexing.waiters.drain(..) {
            let _ = waiter.send(());
        }
        self.indexing.unindexed = 0;
        // A long backlog goes on next turn; a failure is tried again later.
        self.indexing.since = match (failed, more) {
            (true, _) => Some(Instant::now()),
            (false, true) => Instant::now().checked_sub(INDEX_AFTER),
            (false, false) => None,
        };
    }

    /// Runs tasks in order: runs of them batched, those that must commit
    /// alone by themselves. False once the reactor is gone.
    fn run_in_order(&mut self, tasks: Vec<Task>) -> bool {
        let mut batch = Vec::new();
        for task in tasks {
            if let Task::IndexSearch(waiter) = task {
                // Answered after this turn's pass (see `index_if_due`).
                self.indexing.waiters.push(waiter);
            } else if handler::runs_alone(&task) {
                if !self.run_batch(std::mem::take(&mut batch)) {
                    return false;
                }
                let answer = self.run_alone(task);
                if !self.send(vec![answer]) {
                    return false;
                }
            } else {
                batch.push(task);
            }
        }
        self.run_batch(batch)
    }

    /// Runs tasks in one transaction and sends their answers; false once
    /// the reactor is gone.
    fn run_batch(&mut self, tasks: Vec<Task>) -> bool {
        if tasks.is_empty() {
            return true;
        }
        let shared = &self.writer.shared;
        let answers = execute_batch(
            self.writer.store.as_mut(),
            tasks,
            &shared.metrics.commit_latency,
            |store, task| handler::handle_task(task, store, shared),
        );
        let stored = answers
            .iter()
            .filter(|a| matches!(a.kind, Kind::Msg | Kind::UploadFile) && !a.outcome.pushes.is_empty())
            .count();
        shared
            .metrics
            .messages_stored
            .fetch_add(stored as u64, Ordering::Relaxed);
        self.indexing.stored(stored as u64);
        self.send(answers)
    }

    /// Runs a task that commits by itself.
    fn run_alone(&mut self, task: Task) -> Answer {
        let (conn, kind) = (task.conn(), task.kind());
        let store = self.writer.store.as_mut();
        let shared = &self.writer.shared;
        let outcome = catch_unwind(AssertUnwindSafe(|| handler::handle_task(task, store, shared)))
            .unwrap_or_else(|_| {
                log::error!("the writer panicked running {}", kind.name());
                self.writer.store.rollback_all();
                Outcome::error(ErrorCode::Internal, "internal server error", kind)
            });
        Answer { conn, kind, outcome }
    }

    /// Removes the files of committed deletes, then hands the answers to
    /// the reactor in order. False once the reactor is gone.
    fn send(&self, answers: Vec<Answer>) -> bool {
        let dir = files::files_dir(&self.writer.shared.config.data_dir);
        for answer in answers {
            for name in &answer.outcome.remove_files {
                files::remove_stored(&dir, name);
            }
            let completion = Completion {
                conn: answer.conn,
                outcome: answer.outcome,
            };
            if !hand_over(&self.writer.done, &self.writer.waker, completion) {
                return false;
            }
        }
        wake(&self.writer.waker);
        true
    }
}

/// Runs `tasks` in one transaction, each in a savepoint: a refusal or a
/// failure undoes that task only. If the transaction is lost (SQLite gives
/// it up on some errors, or a task panicked), the tasks before fail and the
/// rest go on in a new one. If the commit fails, every task that wrote fails
/// with its error. Returns the answers in task order.
fn execute_batch(
    store: &mut Store,
    tasks: Vec<Task>,
    commit_latency: &Histogram,
    mut run: impl FnMut(&mut Store, Task) -> Outcome,
) -> Vec<Answer> {
    let mut answers: Vec<Answer> = Vec::with_capacity(tasks.len());
    // Answers of tasks whose writes are in the open transaction start here.
    let mut open_from = 0;
    if let Err(e) = store.begin_batch() {
        return fail_all(tasks, &Error::from(e));
    }
    let rooms: Vec<i64> = tasks.iter().filter_map(room_written).collect();
    if let Err(e) = store.lock_rooms(&rooms) {
        store.rollback_all();
        return fail_all(tasks, &Error::from(e));
    }
    for task in tasks {
        let (conn, kind) = (task.conn(), task.kind());
        let ran = catch_unwind(AssertUnwindSafe(|| {
            store.atomically(|s| {
                let outcome = run(s, task);
                if is_refusal(&outcome) {
                    // Whatever it wrote before refusing is undone.
                    Err(TaskEnd::Refused(Box::new(outcome)))
                } else {
                    Ok(outcome)
                }
            })
        }));
        let outcome = match ran {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(TaskEnd::Refused(outcome))) => *outcome,
            Ok(Err(TaskEnd::Db(e))) => Outcome::reply(Error::from(e).to_outgoing(Some(kind))),
            Err(_) => {
                log::error!("the writer panicked running {}", kind.name());
                store.rollback_all();
                Outcome::error(ErrorCode::Internal, "internal server error", kind)
            }
        };
        let lost = !store.batch_open();
        answers.push(Answer { conn, kind, outcome });
        if lost {
            log::error!(
                "the writer's transaction was lost; {} writes failed",
                answers.len() - open_from
            );
            let error = Error::Internal("the transaction was lost".into());
            fail_from(&mut answers[open_from..], &error);
            open_from = answers.len();
            if let Err(e) = store.begin_batch() {
                log::error!("the writer cannot begin a transaction: {e}");
            }
        }
    }
    let committing = Instant::now();
    let committed = store.commit_batch();
    commit_latency.observe(committing.elapsed());
    if let Err(e) = committed {
        let error = Error::from(e);
        log::error!("a batch of {} writes failed: {error}", answers.len() - open_from);
        fail_from(&mut answers[open_from..], &error);
    }
    answers
}

/// The room whose row a task's write may lock (its messages' counters and
/// numbers, its members' markers): locked up front, in order, with the
/// batch's others (`Transactions::lock_rooms`).
fn room_written(task: &Task) -> Option<i64> {
    use crate::protocol::Request as R;
    match task {
        Task::StoreUpload { upload, .. } => Some(upload.room_id),
        Task::Request(job) => match &job.request {
            R::Msg(r) => Some(r.room_id),
            R::EditMsg(r) => Some(r.room_id),
            R::DelMsg(r) => Some(r.room_id),
            R::DelHist(r) | R::DelRoom(r) | R::LeaveRoom(r) | R::JoinRoom(r) => Some(r.room_id),
            R::UpdRoomName(r) => Some(r.room_id),
            R::UpdRoomDesc(r) => Some(r.room_id),
            R::SetRole(r) => Some(r.room_id),
            R::AddMember(r) => Some(r.room_id),
            R::BanMember(r) | R::UnbanMember(r) => Some(r.room_id),
            R::MarkRead(r) => Some(r.room_id),
            R::React(r) => Some(r.room_id),
            R::Pin(r) => Some(r.room_id),
            _ => None,
        },
        _ => None,
    }
}

/// How a task's savepoint ends other than in success.
enum TaskEnd {
    /// The task refused or failed: its answer, its writes undone.
    Refused(Box<Outcome>),
    /// Releasing or rolling back the savepoint failed.
    Db(crate::store::Error),
}

impl From<crate::store::Error> for TaskEnd {
    fn from(e: crate::store::Error) -> TaskEnd {
        TaskEnd::Db(e)
    }
}

/// An answer that is only an error: the task changed nothing.
fn is_refusal(outcome: &Outcome) -> bool {
    outcome.pushes.is_empty() && outcome.reply.as_ref().is_some_and(|r| r.kind == Kind::ErrorMsg)
}

/// Every task fails with `error`.
fn fail_all(tasks: Vec<Task>, error: &Error) -> Vec<Answer> {
    tasks
        .into_iter()
        .map(|task| {
            let kind = task.kind();
            Answer {
                conn: task.conn(),
                kind,
                outcome: Outcome::reply(error.to_outgoing(Some(kind))),
            }
        })
        .collect()
}

/// The writes among `answers` did not happen: they fail with `error`
/// (refusals keep their own answer; they wrote nothing).
fn fail_from(answers: &mut [Answer], error: &Error) {
    for answer in answers {
        if !is_refusal(&answer.outcome) {
            answer.outcome = Outcome::reply(error.to_outgoing(Some(answer.kind)));
        }
    }
}

fn wake(waker: &Waker) {
    if let Err(e) = waker.wake() {
        log::error!("waking the reactor failed: {e}");
    }
}

/// Sends a completion; when the channel is full, wakes the reactor first so
/// that it drains the channel (waking only after the batch could block
/// forever on a channel nobody is told to drain). False once the reactor is gone.
fn hand_over(done: &Sender<Completion>, waker: &Waker, completion: Completion) -> bool {
    match done.try_send(completion) {
        Ok(()) => true,
        Err(TrySendError::Disconnected(_)) => false,
        Err(TrySendError::Full(completion)) => {
            wake(waker);
            done.send(completion).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::NO_CONN;
    use mio::{Events, Poll, Token};

    /// The writer, finding the completion channel full, wakes the reactor
    /// before it waits, so the reactor drains the channel and nothing
    /// stalls (waking only after a batch could wait forever).
    #[test]
    fn a_full_channel_wakes_the_reactor_before_waiting() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(1)).unwrap());
        let (done, completions) = crossbeam_channel::bounded(1);
        let completion = || Completion {
            conn: 7,
            outcome: Outcome::default(),
        };
        assert!(hand_over(&done, &waker, completion()), "room for one");
        let sender = {
            let (done, waker) = (done.clone(), waker.clone());
            std::thread::spawn(move || hand_over(&done, &waker, completion()))
        };
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(!events.is_empty(), "the reactor was not woken");
        assert_eq!(completions.recv().unwrap().conn, 7);
        assert!(sender.join().unwrap());
        assert_eq!(completions.recv().unwrap().conn, 7);
    }

    fn store() -> (tempfile::TempDir, Box<Store>) {
        let (dir, store) = crate::store::temp_store();
        let mut store: Box<Store> = Box::new(store);
        store.keep_room_cache();
        (dir, store)
    }

    fn tasks(n: usize) -> Vec<Task> {
        (0..n).map(|_| Task::Maintenance).collect()
    }

    fn users(store: &mut Store) -> i64 {
        store.user_by_login("u0").unwrap().map_or(0, |_| 1)
            + (1..10)
                .filter(|i| store.user_by_login(&format!("u{i}")).unwrap().is_some())
                .count() as i64
    }

    /// A task that fails mid-batch undoes its own writes only; the others
    /// are committed.
    #[test]
    fn a_failing_write_fails_only_itself() {
        let (_dir, mut store) = store();
        let mut n = 0;
        let answers = execute_batch(store.as_mut(), tasks(3), &Histogram::default(), |s, _| {
            let i = n;
            n += 1;
            s.create_user(&format!("u{i}"), "u", "", "x", 1).unwrap();
            if i == 1 {
                // Written, then failed: undone.
                return Outcome::reply(Error::Internal("a failure after writing".into()).to_outgoing(None));
            }
            Outcome::default()
        });
        assert_eq!(answers.len(), 3);
        assert!(answers[0].outcome.reply.is_none());
        assert_eq!(answers[1].outcome.reply.as_ref().unwrap().kind, Kind::ErrorMsg);
        assert!(answers[2].outcome.reply.is_none());
        assert_eq!(users(store.as_mut()), 2, "u0 and u2; u1 was undone");
    }

    /// A panic fails the tasks of its transaction, not the writer: the
    /// tasks after it run in a new transaction.
    #[test]
    fn a_panic_fails_its_batch_and_the_writer_goes_on() {
        let (_dir, mut store) = store();
        let mut n = 0;
        let answers = execute_batch(store.as_mut(), tasks(4), &Histogram::default(), |s, _| {
            let i = n;
            n += 1;
            s.create_user(&format!("u{i}"), "u", "", "x", 1).unwrap();
            if i == 1 {
                panic!("a bug while storing");
            }
            Outcome::default()
        });
        let failed: Vec<bool> = answers
            .iter()
            .map(|a| {
                a.outcome
                    .reply
                    .as_ref()
                    .is_some_and(|r| r.to_value(crate::compat::Dialect::Names)["error_code"] == "ER_INTERNAL")
            })
            .collect();
        assert_eq!(failed, vec![true, true, false, false]);
        assert_eq!(users(store.as_mut()), 2, "u2 and u3, committed after the panic");
        assert_eq!(answers[0].conn, NO_CONN);
    }
}
