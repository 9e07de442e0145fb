//! The web front end (design.md §8): a listener whose connections speak
//! HTTP, serve the bundled client's files, and upgrade `GET /ws` to a
//! WebSocket carrying one protocol object per text frame.
//!
//! A web connection is one more transport ([`WebStream`]) under the same
//! connection state machine as TCP: each frame that arrives becomes one
//! line for the framing above, and each line that leaves becomes one text
//! frame; so limits, rate limits, caps and handlers are TCP's. tungstenite
//! does the frames (masks, fragments, pings, the close handshake, UTF-8)
//! over in-memory buffers, so nothing blocks and the socket stays the
//! reactor's. With TLS the stream below is the TLS transport.
//!
//! Files go over plain HTTP requests, so the page needs no raw-byte mode:
//! `POST /files` and `GET /files/ID` become the protocol's token-authorized
//! RQ_UPLOAD_FILE and RQ_DOWNLOAD_FILE on the same connection, so size
//! limits, quotas, membership and streaming are exactly TCP's.

mod assets;
pub mod http;

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig};
use tungstenite::Message;

use crate::transport::{Layer, Transport};

/// What the web listener serves, shared by its connections.
#[derive(Debug, Clone)]
pub struct WebSite {
    /// Origins allowed besides the page's own (`web_origins`).
    pub origins: Vec<String>,
    /// A frame (one request) longer than this ends the socket; lines over
    /// the line limit get ER_TOO_LARGE from the framing above first.
    pub max_frame: usize,
}

impl WebSite {
    /// Whether a page from `origin` may open a WebSocket here: its own
    /// (the host it was served from, over http or https), or a listed one.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        if origin.is_empty() {
            // Not a browser: nobody's visit can be abused through it.
            return true;
        }
        if self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return true;
        }
        let served_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        matches!((served_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
    }
}

/// Bytes kept between tungstenite and the socket.
#[derive(Default)]
struct Memory {
    incoming: VecDeque<u8>,
    outgoing: Vec<u8>,
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.incoming.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.incoming.read(buf)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Phase {
    /// Reading the request head.
    Http(Vec<u8>),
    /// Upgraded.
    Socket(Box<WebSocket<Memory>>),
    /// A file coming in: its bytes wait (bounded) for the go-ahead.
    FileUp {
        body: VecDeque<u8>,
        started: bool,
        left: u64,
    },
    /// A file going out: its head is sent once the server offers it.
    FileDown { left: Option<u64> },
    /// Answered or closed: what is queued goes out, then the end.
    Done,
}

/// Bytes of an upload held before the server's go-ahead.
const MAX_EARLY_BODY: usize = 256 * 1024;

/// Above this much output waiting for the socket, no more is taken (the
/// connection's own bounded buffer holds the rest, as with TLS).
const MAX_QUEUED_OUT: usize = 64 * 1024;

pub struct WebStream {
    inner: Transport,
    site: Arc<WebSite>,
    phase: Phase,
    /// Bytes for the socket: HTTP answers and frames.
    out: Vec<u8>,
    /// Lines made from frames, for the connection to read.
    lines: VecDeque<u8>,
    /// Part of an outgoing line not yet ended by `\n`.
    partial: Vec<u8>,
    /// The peer closed its side.
    eof: bool,
}

impl WebStream {
    pub fn new(inner: Transport, site: Arc<WebSite>) -> WebStream {
        WebStream {
            inner,
            site,
            phase: Phase::Http(Vec::new()),
            out: Vec::new(),
            lines: VecDeque::new(),
            partial: Vec::new(),
            eof: false,
        }
    }

    /// Reads plaintext lines made from frames. `Ok(0)` is the end: the peer
    /// went, or an HTTP answer (not an upgrade) has been sent.
    fn read_lines(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.read_upload(buf)? {
            return Ok(n);
        }
        if self.lines.is_empty() && !self.eof && self.takes_socket_bytes() {
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match self.inner.read(&mut chunk) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => self.take_in(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
                if !self.lines.is_empty() || !self.takes_socket_bytes() {
                    break;
                }
            }
            // Pongs and close replies tungstenite wrote go out with the rest.
            self.collect_frames();
            let _ = self.send_queued();
        }
        if !self.lines.is_empty() {
            return self.lines.read(buf);
        }
        if self.eof || (matches!(self.phase, Phase::Done) && !self.queued()) {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// An upload's bytes once the server said go: first those held, then
    /// straight from the socket. `None` when no upload is under way.
    fn read_upload(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let Phase::FileUp { body, started, left } = &mut self.phase else {
            return Ok(None);
        };
        if !*started || !self.lines.is_empty() {
            return Ok(None);
        }
        let room = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
        if room == 0 {
            // All arrived: what more comes is not the file's.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if !body.is_empty() {
            let n = body.read(&mut buf[..room])?;
            *left -= n as u64;
            return Ok(Some(n));
        }
        match self.inner.read(&mut buf[..room]) {
            Ok(n) => {
                *left -= n as u64;
                Ok(Some(n))
            }
            Err(e) => Err(e),
        }
    }

    /// Takes bytes from the socket: the request head, then frames.
    fn take_in(&mut self, bytes: &[u8]) {
        match &mut self.phase {
            Phase::Http(head) => {
                head.extend_from_slice(bytes);
                let site = self.site.clone();
                let allows = |origin: &str, host: Option<&str>| site.allows(origin, host);
                let parsed = http::parse(head, &allows);
                let rest = match &parsed {
                    Ok(Some((_, len))) => head[*len..].to_vec(),
                    _ => Vec::new(),
                };
                let head_only = head.starts_with(b"HEAD ");
                match parsed {
                    Ok(None) => {}
                    Ok(Some((http::Request::Upgrade { key }, _))) => {
                        self.out.extend_from_slice(&http::upgraded(&key));
                        let config = WebSocketConfig::default()
                            .max_message_size(Some(self.site.max_frame))
                            .max_frame_size(Some(self.site.max_frame));
                        let mut memory = Memory::default();
                        memory.incoming.extend(rest);
                        let socket = WebSocket::from_raw_socket(memory, Role::Server, Some(config));
                        self.phase = Phase::Socket(Box::new(socket));
                        self.read_frames();
                    }
                    Ok(Some((
                        http::Request::Upload {
                            room_id,
                            name,
                            size,
                            token,
                        },
                        _,
                    ))) => {
                        let line = serde_json::json!({"type": "RQ_UPLOAD_FILE", "room_id": room_id, "name": name,
                            "size": size, "token": token, "req_id": "http"});
                        push_line(&mut self.lines, line.to_string().as_bytes());
                        self.phase = Phase::FileUp {
                            body: rest.into_iter().collect(),
                            started: false,
                            left: size,
                        };
                    }
                    Ok(Some((
                        http::Request::Download {
                            room_id,
                            msg_id,
                            token,
                        },
                        _,
                    ))) => {
                        let line = serde_json::json!({"type": "RQ_DOWNLOAD_FILE", "room_id": room_id,
                            "msg_id": msg_id, "token": token, "req_id": "http"});
                        push_line(&mut self.lines, line.to_string().as_bytes());
                        self.phase = Phase::FileDown { left: None };
                    }
                    Ok(Some((http::Request::Asset { path, etag }, _))) => {
                        let answer = match assets::find(&path) {
                            Some(a) => {
                                http::asset(a.body, a.content_type, &a.etag(), etag.as_deref(), head_only)
                            }
                            None => http::refusal(404, "no such page"),
                        };
                        self.answer(answer);
                    }
                    Ok(Some((http::Request::Refused { status, why }, _)))
                    | Err(http::Request::Refused { status, why }) => {
                        self.answer(http::refusal(status, why));
                    }
                    Err(_) => self.answer(http::refusal(400, "bad request")),
                }
            }
            Phase::Socket(socket) => {
                socket.get_mut().incoming.extend(bytes);
                self.read_frames();
            }
            Phase::FileUp { body, .. } => body.extend(bytes),
            Phase::FileDown { .. } | Phase::Done => {}
        }
    }

    /// Whether bytes from the socket are wanted now (an upload waiting for
    /// its go-ahead holds a bounded amount; a download's request is read).
    fn takes_socket_bytes(&self) -> bool {
        match &self.phase {
            Phase::Http(_) | Phase::Socket(_) => true,
            Phase::FileUp { body, started, .. } => !started && body.len() < MAX_EARLY_BODY,
            Phase::FileDown { .. } | Phase::Done => false,
        }
    }

    fn answer(&mut self, response: Vec<u8>) {
        self.out.extend_from_slice(&response);
        self.phase = Phase::Done;
    }

    /// Turns the frames that arrived into lines.
    fn read_frames(&mut self) {
        let Phase::Socket(socket) = &mut self.phase else {
            return;
        };
        loop {
            match socket.read() {
                Ok(Message::Text(text)) => push_line(&mut self.lines, text.as_bytes()),
                // Binary frames carry the same objects; UTF-8 is checked above.
                Ok(Message::Binary(bytes)) => push_line(&mut self.lines, &bytes),
                Ok(_) => {} // pings are answered by tungstenite; pongs need nothing
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::Capacity(_)) => {
                    log::debug!(
                        "web: a frame over {} bytes; closing with 1009",
                        self.site.max_frame
                    );
                    let _ = socket.close(Some(CloseFrame {
                        code: CloseCode::Size,
                        reason: "frame too large".into(),
                    }));
                    let _ = socket.flush();
                    self.out.append(&mut socket.get_mut().outgoing);
                    self.phase = Phase::Done;
                    break;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.out.append(&mut socket.get_mut().outgoing);
                    self.phase = Phase::Done;
                    break;
                }
                Err(e) => {
                    log::debug!("web: closing a WebSocket: {e}");
                    let _ = socket.close(Some(CloseFrame {
                        code: CloseCode::Protocol,
                        reason: "protocol error".into(),
                    }));
                    let _ = socket.flush();
                    self.out.append(&mut socket.get_mut().outgoing);
                    self.phase = Phase::Done;
                    break;
                }
            }
        }
    }

    /// Moves frames tungstenite wrote to the socket's queue.
    fn collect_frames(&mut self) {
        if let Phase::Socket(socket) = &mut self.phase {
            let _ = socket.flush();
            self.out.append(&mut socket.get_mut().outgoing);
        }
    }

    /// Takes plaintext lines to send; each becomes one text frame. Returns 0
    /// while too much waits for the socket (send, then try again).
    fn write_lines(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.out.len() > MAX_QUEUED_OUT {
            return Ok(0);
        }
        if let Phase::FileDown { left: Some(left) } = &mut self.phase {
            // The file's bytes, as they are.
            let n = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            self.out.extend_from_slice(&data[..n]);
            *left -= n as u64;
            if *left == 0 {
                self.phase = Phase::Done;
            }
            return Ok(data.len());
        }
        if matches!(self.phase, Phase::FileUp { .. } | Phase::FileDown { .. }) {
            self.partial.extend_from_slice(data);
            while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.partial.drain(..=end).collect();
                self.file_answer(&line);
            }
            return Ok(data.len());
        }
        let Phase::Socket(socket) = &mut self.phase else {
            // Nothing is sent to a page before it upgrades, or after the end.
            return Ok(data.len());
        };
        self.partial.extend_from_slice(data);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).into_owned();
            if let Err(e) = socket.write(Message::text(text)) {
                log::debug!("web: writing a frame: {e}");
            }
        }
        let _ = socket.flush();
        self.out.append(&mut socket.get_mut().outgoing);
        Ok(data.len())
    }

    /// What the server said to a file request, as HTTP.
    fn file_answer(&mut self, line: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<serde_json::Value>(line) else {
            return;
        };
        let kind = msg["type"].as_str().unwrap_or_default();
        match (&mut self.phase, kind) {
            (Phase::FileUp { started, .. }, "RQ_READY_READ") => *started = true,
            (Phase::FileUp { .. }, "RQ_MSG") => {
                let body = String::from_utf8_lossy(line.trim_ascii_end()).into_owned();
                self.answer(http::json_response(200, &body));
            }
            (Phase::FileDown { left }, "RQ_DOWNLOAD_FILE") if left.is_none() => {
                let size = msg["size"].as_u64().unwrap_or(0);
                let name = msg["name"].as_str().unwrap_or("download");
                self.out.extend_from_slice(&http::download_head(name, size));
                *left = Some(size);
                if size == 0 {
                    self.phase = Phase::Done;
                } else {
                    push_line(&mut self.lines, br#"{"type":"RQ_READY_READ"}"#);
                }
            }
            (_, "RQ_ERROR_MSG") => {
                let code = msg["error_code"].as_str().unwrap_or("ER_BAD_REQUEST");
                let why = msg["msg"].as_str().unwrap_or("refused");
                self.answer(http::file_refusal(code, why));
            }
            _ => {}
        }
    }

    /// Writes what is queued to the socket; returns how much went out.
    fn send_queued(&mut self) -> io::Result<usize> {
        let mut sent = 0;
        while !self.out.is_empty() {
            match self.inner.write(&self.out) {
                Ok(0) => {
                    // TLS's buffer is full: its records go first.
                    match self.inner.send_records() {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Ok(n) => {
                    self.out.drain(..n);
                    sent += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        self.inner.send_records()?;
        Ok(sent)
    }

    fn queued(&self) -> bool {
        !self.out.is_empty() || self.inner.wants_write()
    }
}

impl Layer for WebStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_lines(buf)
    }

    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_lines(data)
    }

    fn send_records(&mut self) -> io::Result<usize> {
        self.send_queued()
    }

    fn wants_write(&self) -> bool {
        self.queued()
    }

    fn inner_mut(&mut self) -> &mut Transport {
        &mut self.inner
    }
}

/// One frame's object as one line: line breaks inside it are JSON
/// whitespace (a string cannot hold a raw one), so they become spaces.
fn push_line(lines: &mut VecDeque<u8>, payload: &[u8]) {
    lines.extend(
        payload
            .iter()
            .map(|b| if *b == b'\n' || *b == b'\r' { b' ' } else { *b }),
    );
    lines.push_back(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_the_page_s_own_or_listed() {
        let site = WebSite {
            origins: vec!["https://chat.example.org".into()],
            max_frame: 1024,
        };
        assert!(site.allows("http://127.0.0.1:7780", Some("127.0.0.1:7780")));
        assert!(site.allows("https://chat.example.org", Some("10.0.0.1:7780")));
        assert!(!site.allows("http://evil.example", Some("127.0.0.1:7780")));
        assert!(!site.allows("null", Some("127.0.0.1:7780")));
        assert!(site.allows("", Some("127.0.0.1:7780")), "not a browser");
    }

    #[test]
    fn frames_become_lines() {
        let mut lines = VecDeque::new();
        push_line(&mut lines, b"{\n\"type\": \"RQ_PING\"\r\n}");
        assert_eq!(
            lines.iter().copied().collect::<Vec<u8>>(),
            b"{ \"type\": \"RQ_PING\"  }\n"
        );
    }
}
