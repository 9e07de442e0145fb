//! Group commit of chat messages.
//!
//! Every message must be on disk before anyone sees it, and SQLite takes one
//! writer at a time, so storing each message in its own transaction bounds
//! the server by the disk's fsync rate (BENCHMARKS.md). Instead, handlers
//! check a message and hand it here; one thread stores every message waiting
//! at that moment in a single transaction with a single fsync, and only then
//! sends each one's broadcast. Workers do not wait, so batches grow with load.

use std::sync::Arc;
use std::thread::JoinHandle;

use std::panic::{catch_unwind, AssertUnwindSafe};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use super::message::{may_post, message_body};
use super::room::{audience_of, membership};
use crate::error::Error;
use crate::job::{Completion, ConnId, Outcome, Push};
use crate::model::{now_ms, Message, MsgType};
use crate::protocol::{ErrorCode, Kind, Outgoing};
use crate::shared::Shared;
use crate::store::Store;

/// Most messages stored in one transaction.
const MAX_BATCH: usize = 512;

/// A checked message waiting to be stored.
#[derive(Debug)]
pub struct NewMessage {
    /// The connection whose request this answers.
    pub conn: ConnId,
    pub room_id: i64,
    pub user_id: i64,
    pub text: String,
    pub msg_type: MsgType,
}

enum Order {
    Store(NewMessage),
    Stop,
}

/// The handle handlers use to hand messages over.
pub struct MessageCommitter {
    orders: Sender<Order>,
}

/// The committer thread's end, until it is started.
pub struct CommitterInbox {
    orders: Receiver<Order>,
}

/// A committer handle and the inbox its thread will read.
pub fn channel() -> (MessageCommitter, CommitterInbox) {
    let (orders, inbox) = crossbeam_channel::unbounded();
    (MessageCommitter { orders }, CommitterInbox { orders: inbox })
}

impl MessageCommitter {
    /// Queues a message; its completion will come from the committer thread.
    pub fn submit(&self, message: NewMessage) -> Result<(), Error> {
        self.orders
            .send(Order::Store(message))
            .map_err(|_| Error::Internal("the message committer has stopped".into()))
    }

    /// Asks the thread to store what is queued and stop.
    pub fn stop(&self) {
        let _ = self.orders.send(Order::Stop);
    }
}

/// Starts the committer thread with its own database connection.
pub fn start(
    inbox: CommitterInbox,
    mut store: Store,
    shared: Arc<Shared>,
    done: Sender<Completion>,
    waker: Arc<Waker>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("parley-committer".into())
        .spawn(move || {
            let mut stopping = false;
            while !stopping {
                let Ok(first) = inbox.orders.recv() else { break };
                let mut batch = Vec::new();
                match first {
                    Order::Store(m) => batch.push(m),
                    Order::Stop => break,
                }
                while batch.len() < MAX_BATCH {
                    match inbox.orders.try_recv() {
                        Ok(Order::Store(m)) => batch.push(m),
                        Ok(Order::Stop) => {
                            stopping = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let outcomes = guarded(batch.len(), || {
                    let results = store_batch(&mut store, &batch);
                    batch
                        .iter()
                        .zip(results)
                        .map(|(message, result)| outcome_of(&store, &shared, message, result))
                        .collect::<Vec<_>>()
                });
                for (message, outcome) in batch.iter().zip(outcomes) {
                    let completion = Completion {
                        conn: message.conn,
                        outcome,
                    };
                    if !hand_over(&done, &waker, completion) {
                        return;
                    }
                }
                wake(&waker);
            }
        })
}

/// Runs the work of a batch of `len` messages. A bug while storing must not
/// leave messaging dead in a live process: on a panic the batch fails with
/// ER_INTERNAL and the committer goes on with the next (the store rolls back
/// the transaction the panic left open when it next begins one).
fn guarded(len: usize, work: impl FnOnce() -> Vec<Outcome>) -> Vec<Outcome> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        log::error!("the message committer panicked; {len} messages failed");
        (0..len)
            .map(|_| Outcome::error(ErrorCode::Internal, "internal server error", Kind::Msg))
            .collect()
    })
}

/// The completion of one message of a batch.
fn outcome_of(
    store: &Store,
    shared: &Shared,
    message: &NewMessage,
    result: Result<(Message, i64), Error>,
) -> Outcome {
    match result.and_then(|(msg, power)| broadcast(store, shared, msg, power)) {
        Ok(outcome) => outcome,
        Err(err) => {
            if !matches!(err, Error::Client { .. }) {
                log::error!("storing a message from conn {} failed: {err}", message.conn);
            }
            Outcome::reply(err.to_outgoing(Some(Kind::Msg)))
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

/// Stores a batch in one transaction: each message is checked again under
/// the write lock (its author may have been banned since), refusals skip
/// that message only, a database failure fails the whole batch.
fn store_batch(store: &mut Store, batch: &[NewMessage]) -> Vec<Result<(Message, i64), Error>> {
    let stored = store.atomically(|s| {
        let mut results = Vec::with_capacity(batch.len());
        for m in batch {
            let result = (|| {
                let (room, _) = membership(s, m.room_id, m.user_id)?;
                may_post(s, &room, m.user_id)?;
                let id = s.insert_message(m.room_id, m.user_id, &m.text, m.msg_type, now_ms())?;
                let msg = s
                    .message(id)?
                    .ok_or_else(|| Error::Internal("stored message vanished".into()))?;
                Ok::<_, Error>(msg)
            })();
            match result {
                Err(e @ (Error::Db(_) | Error::Internal(_))) => return Err(e),
                other => results.push(other),
            }
        }
        Ok::<_, Error>(results)
    });
    match stored {
        Ok(results) => results
            .into_iter()
            .map(|r| {
                let msg = r?;
                let power = store.room(msg.room_id)?.map_or(0, |room| room.msg_count);
                Ok((msg, power))
            })
            .collect(),
        Err(e) => {
            let (code, text) = e.to_wire();
            log::error!("a batch of {} messages failed: {e}", batch.len());
            batch
                .iter()
                .map(|_| Err(Error::client(code, text.clone())))
                .collect()
        }
    }
}

/// The RQ_MSG broadcast of a stored message.
fn broadcast(store: &Store, shared: &Shared, msg: Message, power: i64) -> Result<Outcome, Error> {
    let room_id = msg.room_id;
    let audience = audience_of(store, shared, room_id)?;
    let body = message_body(msg, power);
    Ok(Outcome::pushes(vec![Push::answer(
        audience,
        Outgoing::new(Kind::Msg, &body),
    )]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};

    /// The committer, finding the completion channel full, wakes the
    /// reactor before it waits, so the reactor drains the channel and
    /// nothing stalls (waking only after a batch could wait forever).
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

    #[test]
    fn a_panic_fails_the_batch_not_the_committer() {
        let outcomes = guarded(3, || panic!("a bug while storing"));
        assert_eq!(outcomes.len(), 3);
        for outcome in outcomes {
            let reply = outcome.reply.expect("an error reply");
            assert_eq!(reply.kind, Kind::ErrorMsg);
            assert_eq!(reply.body["error_code"], "ER_INTERNAL");
        }
        assert_eq!(guarded(1, || vec![Outcome::default()]).len(), 1);
    }
}
