//! A small blocking client: one TCP connection, JSON lines in and out.
//!
//! Used by the integration tests, and meant for the `parley` CLI and the load
//! generator. [`Client::request`] tags a request with a fresh `req_id` and
//! returns its answer, keeping pushes that arrive meanwhile for [`Client::recv`].

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// How long a read waits before giving up, unless changed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
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
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(DEFAULT_TIMEOUT))?;
        Ok(Client {
            writer: stream.try_clone()?,
            reader: BufReader::new(stream),
            pending: VecDeque::new(),
            next_req_id: 1,
        })
    }

    pub fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
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
        self.request(json!({"type": "RQ_SIGN_UP", "login": login, "pass": password_digest(password), "name": "", "desc": ""}))
    }

    /// Logs in with a password; returns the RQ_TOKEN reply (or the error).
    pub fn log_in(&mut self, login: &str, password: &str) -> io::Result<Value> {
        self.request(json!({"type": "RQ_LOG_IN", "login": login, "pass": password_digest(password)}))
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
        let mut msg = json!({"type": "RQ_UPLOAD_FILE", "room_id": room_id, "name": name, "size": data.len()});
        if let Some(token) = token {
            msg["token"] = json!(token);
        }
        let ready = self.request(msg)?;
        if ready["type"] != "RQ_READY_READ" {
            return Ok(ready);
        }
        let id = ready["req_id"].clone();
        self.writer.write_all(data)?;
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
        let mut msg = json!({"type": "RQ_DOWNLOAD_FILE", "room_id": room_id, "msg_id": msg_id});
        if let Some(token) = token {
            msg["token"] = json!(token);
        }
        let offer = self.request(msg)?;
        let Some(size) = offer["size"]
            .as_u64()
            .filter(|_| offer["type"] == "RQ_DOWNLOAD_FILE")
        else {
            return Ok((offer, Vec::new()));
        };
        self.send(&json!({"type": "RQ_READY_READ"}))?;
        let mut data = vec![0u8; size as usize];
        self.reader.read_exact(&mut data)?;
        Ok((offer, data))
    }

    /// Reads exactly `buf.len()` raw bytes (a download's body).
    pub fn recv_raw_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.reader.read_exact(buf)
    }

    /// Resumes a session with a token; returns the RQ_TOKEN reply (or the error).
    pub fn resume(&mut self, token: &str) -> io::Result<Value> {
        self.request(json!({"type": "RQ_TOKEN", "token": token}))
    }
}
