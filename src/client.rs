//! A small blocking client: one TCP connection, JSON lines in and out.
//!
//! Used by the integration tests, and meant for the `parley` CLI and the load
//! generator. [`Client::request`] tags a request with a fresh `req_id` and
//! returns its answer, keeping pushes that arrive meanwhile for [`Client::recv`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use serde_json::{json, Value};

use crate::client_stream::{Connector, ReadHalf, WriteHalf};
use crate::protocol::Kind;
use sha2::{Digest, Sha256};

/// How long a read waits before giving up, unless changed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    writer: WriteHalf,
    reader: BufReader<ReadHalf>,
    /// Messages received while waiting for a particular reply.
    pending: VecDeque<Value>,
    next_req_id: u64,
}

/// The SHA-256 of a password as 64 lowercase hex characters (the `pass` field).
pub fn password_digest(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Client {
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::from_stream(TcpStream::connect(addr)?)
    }

    /// A client on an already connected stream (one bound to a chosen source address, say).
    pub fn from_stream(stream: TcpStream) -> io::Result<Client> {
        Client::with(&Connector::plain(), stream)
    }

    /// Connects as `connector` says: plain TCP, or TLS.
    pub fn connect_with(connector: &Connector, addr: &str) -> io::Result<Client> {
        Client::with(connector, TcpStream::connect(addr)?)
    }

    fn with(connector: &Connector, stream: TcpStream) -> io::Result<Client> {
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        let (reader, writer) = connector.wrap(stream)?;
        Ok(Client {
            writer,
            reader: BufReader::new(reader),
            pending: VecDeque::new(),
            next_req_id: 1,
        })
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer.socket().set_read_timeout(Some(timeout))
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends one JSON message followed by `\n`.
    pub fn send(&mut self, msg: &Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(|e| invalid(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)
    }

    /// Reads the next line from the socket, ignoring anything kept aside.
    fn read_message(&mut self) -> io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        serde_json::from_str(&line).map_err(|e| invalid(format!("bad line from server {line:?}: {e}")))
    }

    /// The next message: one kept aside earlier, or the next from the socket.
    pub fn recv(&mut self) -> io::Result<Value> {
        match self.pending.pop_front() {
            Some(msg) => Ok(msg),
            None => self.read_message(),
        }
    }

    /// The next message of the given type, keeping others aside.
    pub fn recv_type(&mut self, kind: &str) -> io::Result<Value> {
        if let Some(pos) = self.pending.iter().position(|m| m["type"] == kind) {
            return Ok(self.pending.remove(pos).unwrap_or_default());
        }
        loop {
            let msg = self.read_message()?;
            if msg["type"] == kind {
                return Ok(msg);
            }
            self.pending.push_back(msg);
        }
    }

    /// Sends `msg` with a fresh `req_id` and returns the message answering it.
    pub fn request(&mut self, mut msg: Value) -> io::Result<Value> {
        let id = self.next_req_id;
        self.next_req_id += 1;
        msg["req_id"] = json!(id);
        self.send(&msg)?;
        loop {
            let reply = self.read_message()?;
            if reply["req_id"] == json!(id) {
                return Ok(reply);
            }
            self.pending.push_back(reply);
        }
    }

    /// Messages kept aside so far.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    /// Signs up; returns the RQ_TOKEN reply (or the error).
    pub fn sign_up(&mut self, login: &str, password: &str) -> io::Result<Value> {
        self.request(json!({"type": Kind::SignUp.name(), "login": login, "pass": password_digest(password), "name": "", "desc": ""}))
    }

    /// Logs in with a password; returns the RQ_TOKEN reply (or the error).
    pub fn log_in(&mut self, login: &str, password: &str) -> io::Result<Value> {
        self.request(json!({"type": Kind::LogIn.name(), "login": login, "pass": password_digest(password)}))
    }

    /// Uploads a file to a room: RQ_UPLOAD_FILE, RQ_READY_READ, the bytes.
    /// Returns the message that answers it (the RQ_MSG, or an error).
    pub fn upload(
        &mut self,
        room_id: i64,
        name: &str,
        data: &[u8],
        token: Option<&str>,
    ) -> io::Result<Value> {
        self.upload_with_progress(room_id, name, data, token, |_| {})
    }

    /// [`Client::upload`], calling `progress` with the bytes sent so far.
    pub fn upload_with_progress(
        &mut self,
        room_id: i64,
        name: &str,
        data: &[u8],
        token: Option<&str>,
        mut progress: impl FnMut(u64),
    ) -> io::Result<Value> {
        let mut msg =
            json!({"type": Kind::UploadFile.name(), "room_id": room_id, "name": name, "size": data.len()});
        if let Some(token) = token {
            msg["token"] = json!(token);
        }
        let ready = self.request(msg)?;
        if ready["type"] != Kind::ReadyRead.name() {
            return Ok(ready);
        }
        let id = ready["req_id"].clone();
        let mut sent = 0u64;
        for chunk in data.chunks(64 * 1024) {
            self.writer.write_all(chunk)?;
            sent += chunk.len() as u64;
            progress(sent);
        }
        loop {
            let reply = self.read_message()?;
            if reply["req_id"] == id {
                return Ok(reply);
            }
            self.pending.push_back(reply);
        }
    }

    /// Downloads a file message's bytes. Returns the RQ_DOWNLOAD_FILE reply
    /// (or the error) and the bytes.
    pub fn download(
        &mut self,
        room_id: i64,
        msg_id: i64,
        token: Option<&str>,
    ) -> io::Result<(Value, Vec<u8>)> {
        self.download_with_progress(room_id, msg_id, token, |_, _| {})
    }

    /// [`Client::download`], calling `progress(received, size)` as bytes arrive.
    pub fn download_with_progress(
        &mut self,
        room_id: i64,
        msg_id: i64,
        token: Option<&str>,
        mut progress: impl FnMut(u64, u64),
    ) -> io::Result<(Value, Vec<u8>)> {
        let mut msg = json!({"type": Kind::DownloadFile.name(), "room_id": room_id, "msg_id": msg_id});
        if let Some(token) = token {
            msg["token"] = json!(token);
        }
        let offer = self.request(msg)?;
        let Some(size) = offer["size"]
            .as_u64()
            .filter(|_| offer["type"] == Kind::DownloadFile.name())
        else {
            return Ok((offer, Vec::new()));
        };
        self.send(&json!({"type": Kind::ReadyRead.name()}))?;
        let mut data = vec![0u8; size as usize];
        let mut got = 0usize;
        while got < data.len() {
            let end = (got + 64 * 1024).min(data.len());
            self.reader.read_exact(&mut data[got..end])?;
            got = end;
            progress(got as u64, size);
        }
        Ok((offer, data))
    }

    /// Reads exactly `buf.len()` raw bytes (a download's body).
    pub fn recv_raw_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)
    }

    /// Resumes a session with a token; returns the RQ_TOKEN reply (or the error).
    pub fn resume(&mut self, token: &str) -> io::Result<Value> {
        self.request(json!({"type": Kind::Token.name(), "token": token}))
    }
}

/// A connection for interactive clients: a reader thread hands replies to
/// [`Link::request`] and everything else to a callback, and when the server
/// goes away it reconnects with back-off and resumes the session.
pub struct Link {
    shared: Arc<LinkShared>,
    replies: Receiver<Value>,
    next_req_id: u64,
}

/// What the reader thread and the requesting side share.
struct LinkShared {
    /// The server's addresses: several for the nodes of a cluster.
    addrs: Vec<String>,
    /// The one connected to last.
    current: Mutex<usize>,
    connector: Connector,
    writer: Mutex<Option<WriteHalf>>,
    /// The session token, for resuming after a reconnect.
    token: Mutex<Option<String>>,
}

/// What the reader thread tells the client about the connection itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A message that answers no request of this client: a push.
    Push(Value),
    /// The connection was lost; reconnecting.
    Lost,
    /// The next attempt to reconnect comes in this many seconds.
    Retrying(u64),
    /// Reconnected (and resumed, when there was a token).
    Restored,
}

/// Back-off between reconnection attempts: 1, 2, 4, ... up to 30 seconds.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30))
}

impl Link {
    /// Connects, and starts the reader thread. `on_event` receives pushes and
    /// connection events; `on_restore` gives the lines to send after a
    /// successful resume (catching up on missed messages).
    ///
    /// `addr` may list several addresses, comma-separated (the nodes of a
    /// cluster): the link starts at one chosen at random, so clients spread
    /// over the nodes, and when its connection is lost it goes to the next
    /// at once, backing off only once every one has failed.
    pub fn connect(
        addr: &str,
        connector: Connector,
        mut on_event: impl FnMut(LinkEvent) + Send + 'static,
        on_restore: impl Fn() -> Vec<Value> + Send + 'static,
    ) -> io::Result<Link> {
        let addrs: Vec<String> = addr
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no server address"));
        }
        let mut seed = [0u8; 4];
        let start = match getrandom::fill(&mut seed) {
            Ok(()) => u32::from_le_bytes(seed) as usize % addrs.len(),
            Err(_) => 0,
        };
        let mut last_error = None;
        let mut connected = None;
        for k in 0..addrs.len() {
            let i = (start + k) % addrs.len();
            match connector.connect(&addrs[i]) {
                Ok(halves) => {
                    connected = Some((halves, i));
                    break;
                }
                Err(e) => last_error = Some(e),
            }
        }
        let Some(((reader, writer), current)) = connected else {
            return Err(last_error.unwrap_or_else(|| io::Error::other("no server address answered")));
        };
        let shared = Arc::new(LinkShared {
            addrs,
            current: Mutex::new(current),
            connector,
            writer: Mutex::new(Some(writer)),
            token: Mutex::new(None),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader_shared = shared.clone();
        std::thread::Builder::new()
            .name("parley-link".into())
            .spawn(move || {
                let mut reader = reader;
                loop {
                    read_until_closed(reader, &tx, &mut on_event);
                    on_event(LinkEvent::Lost);
                    *reader_shared.writer.lock() = None;
                    let (new_reader, writer) = reconnect(&reader_shared, &mut on_event);
                    reader = new_reader;
                    let token = reader_shared.token.lock().clone();
                    let mut lines = Vec::new();
                    if let Some(token) = token {
                        lines.push(json!({"type": Kind::Token.name(), "token": token, "req_id": "resume"}));
                        lines.extend(on_restore());
                    }
                    let mut writer = writer;
                    for line in &lines {
                        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
                        bytes.push(b'\n');
                        let _ = writer.write_all(&bytes);
                    }
                    *reader_shared.writer.lock() = Some(writer);
                    on_event(LinkEvent::Restored);
                }
            })?;
        Ok(Link {
            shared,
            replies: rx,
            next_req_id: 1,
        })
    }

    /// Remembers the session token, for resuming after a reconnect.
    pub fn set_token(&self, token: Option<String>) {
        *self.shared.token.lock() = token;
    }

    /// Sends `msg` with a fresh `req_id` and waits for its answer.
    pub fn request(&mut self, mut msg: Value) -> io::Result<Value> {
        let id = self.next_req_id;
        self.next_req_id += 1;
        msg["req_id"] = json!(id);
        self.shared.send_line(&msg)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) if reply["req_id"] == json!(id) => return Ok(reply),
                Ok(_) => continue, // a late answer to a request that timed out
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the server",
                    ))
                }
            }
        }
    }

    /// A handle that sends lines whose answers nobody waits for (they come
    /// back as pushes): read markers, say, from another thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            shared: self.shared.clone(),
        }
    }

    /// The address this link is connected to (or was, last).
    pub fn addr(&self) -> String {
        let current = *self.shared.current.lock();
        self.shared.addrs[current].clone()
    }
}

/// Sends requests without waiting for their answers; cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    shared: Arc<LinkShared>,
}

impl Notifier {
    /// Sends `msg` (its answer, if any, arrives as a push with `req_id`
    /// "notify"); fails while disconnected.
    pub fn send(&self, mut msg: Value) -> io::Result<()> {
        msg["req_id"] = json!("notify");
        self.shared.send_line(&msg)
    }
}

impl LinkShared {
    /// Writes one message as a line; fails while disconnected.
    fn send_line(&self, msg: &Value) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(|e| invalid(e.to_string()))?;
        line.push(b'\n');
        let mut writer = self.writer.lock();
        let stream = writer
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected; reconnecting"))?;
        stream.write_all(&line)
    }
}

/// Reads lines until the connection closes, routing answers and pushes.
fn read_until_closed(stream: ReadHalf, replies: &Sender<Value>, on_event: &mut impl FnMut(LinkEvent)) {
    let reader = BufReader::new(stream);
    for line in reader.lines() {
        let Ok(line) = line else { return };
        let Ok(msg) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match &msg["req_id"] {
            Value::Number(_) => {
                let _ = replies.send(msg);
            }
            // Answers to what the reader itself sent after a reconnect.
            Value::String(_) => on_event(LinkEvent::Push(msg)),
            _ => on_event(LinkEvent::Push(msg)),
        }
    }
}

/// Connects again, waiting longer after each failure.
/// Connects again: to the other addresses at once (the one that went away
/// last), then, once every one has failed, after a back-off.
fn reconnect(shared: &LinkShared, on_event: &mut impl FnMut(LinkEvent)) -> (ReadHalf, WriteHalf) {
    let n = shared.addrs.len();
    let mut attempt: u32 = 0;
    loop {
        if n == 1 || attempt > 0 {
            let wait = backoff(attempt.saturating_sub(u32::from(n > 1)));
            on_event(LinkEvent::Retrying(wait.as_secs()));
            std::thread::sleep(wait);
        }
        let from = *shared.current.lock();
        for k in 1..=n {
            let i = (from + k) % n;
            if let Ok(halves) = shared.connector.connect(&shared.addrs[i]) {
                *shared.current.lock() = i;
                return halves;
            }
        }
        attempt += 1;
    }
}
