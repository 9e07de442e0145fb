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

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

use super::message::{may_post, message_body};
use super::room::{audience_of, membership};
use crate::error::Error;
use crate::job::{Completion, ConnId, Outcome, Push};
use crate::model::{now_ms, Message, MsgType};
use crate::protocol::{Kind, Outgoing};
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
                let results = store_batch(&mut store, &batch);
                for (message, result) in batch.iter().zip(results) {
                    let outcome = match result.and_then(|(msg, power)| broadcast(&store, &shared, msg, power))
                    {
                        Ok(outcome) => outcome,
                        Err(err) => {
                            if !matches!(err, Error::Client { .. }) {
                                log::error!("storing a message from conn {} failed: {err}", message.conn);
                            }
                            let (code, msg) = err.to_wire();
                            Outcome::error(code, msg, Kind::Msg)
                        }
                    };
                    if done
                        .send(Completion {
                            conn: message.conn,
                            outcome,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
                if let Err(e) = waker.wake() {
                    log::error!("waking the reactor failed: {e}");
                }
            }
        })
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
