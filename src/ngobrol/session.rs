//! One Parley connection the bridge speaks on: a local connection to the
//! reactor (`crate::local`), in the name dialect, with requests matched to
//! their replies by `req_id` and everything else handed on as pushes.

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use smol::channel::{Receiver, Sender};
use smol::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use smol::Async;

use crate::local::LocalConnector;

/// How long a request may wait for its reply (the server's own bound on a
/// request is shorter; this only guards against a server that has gone).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Pushes read but not yet passed on. Beyond it the session stops reading,
/// and the server cuts it off as a slow reader if that lasts.
const PUSH_BACKLOG: usize = 4096;

/// Replies awaited, by `req_id`.
type Waiting = Arc<Mutex<HashMap<u64, Sender<Value>>>>;

pub struct Session {
    stream: Arc<Async<UnixStream>>,
    writing: smol::lock::Mutex<()>,
    waiting: Waiting,
    next_id: AtomicU64,
}

impl Session {
    /// Opens a connection; the pushes it receives come out of the receiver,
    /// which closes when the connection does.
    pub fn open(connector: &LocalConnector) -> io::Result<(Session, Receiver<Value>)> {
        let stream = Arc::new(Async::new(connector.connect()?)?);
        let waiting: Waiting = Arc::default();
        let (pushes, pushed) = smol::channel::bounded(PUSH_BACKLOG);
        smol::spawn(read_lines(stream.clone(), waiting.clone(), pushes)).detach();
        let session = Session {
            stream,
            writing: smol::lock::Mutex::new(()),
            waiting,
            next_id: AtomicU64::new(1),
        };
        Ok((session, pushed))
    }

    /// Sends a request and waits for its reply (an `RQ_ERROR_MSG` included).
    pub async fn request(&self, mut msg: Value) -> io::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        msg["req_id"] = json!(id);
        let (tx, rx) = smol::channel::bounded(1);
        lock(&self.waiting).insert(id, tx);
        let mut line = msg.to_string().into_bytes();
        line.push(b'\n');
        {
            let _turn = self.writing.lock().await;
            if let Err(e) = (&*self.stream).write_all(&line).await {
                lock(&self.waiting).remove(&id);
                return Err(e);
            }
        }
        let reply = async { rx.recv().await.map_err(|_| closed()) };
        let timeout = async {
            smol::Timer::after(REPLY_TIMEOUT).await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the server did not answer",
            ))
        };
        let result = smol::future::or(reply, timeout).await;
        lock(&self.waiting).remove(&id);
        result
    }

    /// Closes the connection (the server logs the session out).
    pub fn close(&self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.close();
    }
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server closed the connection",
    )
}

fn lock(waiting: &Waiting) -> std::sync::MutexGuard<'_, HashMap<u64, Sender<Value>>> {
    waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads the server's lines: replies go to their waiting request, the rest
/// are pushes. Ends with the connection, failing whatever still waits.
async fn read_lines(stream: Arc<Async<UnixStream>>, waiting: Waiting, pushes: Sender<Value>) {
    let mut lines = BufReader::new(&*stream).lines();
    while let Some(Ok(line)) = smol::stream::StreamExt::next(&mut lines).await {
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            log::warn!(
                "ngobrol: a line from the server that is not JSON ({} bytes)",
                line.len()
            );
            continue;
        };
        let waiter = msg["req_id"].as_u64().and_then(|id| lock(&waiting).remove(&id));
        match waiter {
            Some(tx) => {
                let _ = tx.send(msg).await;
            }
            None => {
                if pushes.send(msg).await.is_err() {
                    break;
                }
            }
        }
    }
    lock(&waiting).clear();
    pushes.close();
}
