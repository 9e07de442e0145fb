//! The measuring engine: a few threads, each a mio event loop driving its
//! share of the connections, open-loop where the scenario says so.
//!
//! A run goes: connect and log in (paced), wait until every thread is ready,
//! then the main thread sets the start time; warm-up, measured window,
//! drain. Only operations *intended* inside the measured window count.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::{Events, Interest, Poll, Token};
use parley::client_stream::Connector;
use parley::transport::Transport;

use crate::net;
use crate::rate::Schedule;
use crate::stats::{Interval, Recorder};
use crate::wire::{classify, Incoming, Protocol, QueryMix};

/// What the connections do once everyone is ready.
#[derive(Clone, Copy, Debug)]
pub enum Traffic {
    /// Open-loop chat messages at `rate` per second in total; every member
    /// of the sender's room receives each one.
    Fanout { rate: f64 },
    /// Each connection sends its next message as soon as the last is acknowledged.
    Ingest,
    /// Nothing: the connections are held open.
    Hold,
    /// Open-loop history pages and searches at `rate` per second in total.
    History { rate: f64, mix: QueryMix },
    /// Log-ins at `rate` per second in total (0: each connection as fast as
    /// its answers come), by password or by token.
    Login { rate: f64, password: bool },
}

/// One connection's part in the run.
#[derive(Clone, Debug)]
pub struct ConnPlan {
    pub room_id: i64,
    pub room_name: String,
    /// Connections that receive each message this one sends.
    pub recipients: u64,
    pub login: String,
    pub token: String,
    pub nick: String,
    /// The node this connection goes to.
    pub target: SocketAddr,
    pub source: Option<IpAddr>,
}

/// Settings shared by every engine thread.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub protocol: Protocol,
    pub traffic: Traffic,
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// After sending stops, how long to wait for what is still on its way.
    pub drain: Duration,
    /// New connections per second per thread during set-up.
    pub connect_rate: f64,
    pub password_digest: String,
    /// Plain TCP or TLS.
    pub connector: Connector,
}

/// Shared between the engine threads and the main thread.
pub struct Shared {
    /// The clock every timestamp is counted from.
    pub epoch: Instant,
    /// Connections logged in and ready, over all threads.
    pub ready: AtomicUsize,
    /// Connections that failed to connect or log in.
    pub failed: AtomicUsize,
    /// Set by the main thread once all are ready: the start, in µs since `epoch`.
    pub start_us: OnceLock<u64>,
    /// Set by the main thread to stop everything early.
    pub abort: AtomicBool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            epoch: Instant::now(),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            start_us: OnceLock::new(),
            abort: AtomicBool::new(false),
        }
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// What a thread hands back at the end.
pub struct ThreadResult {
    /// Everything intended inside the measured window.
    pub window: Recorder,
    /// Log-in latencies of set-up (the connections scenario's figure).
    pub setup: Recorder,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Connecting,
    LoggingIn,
    Ready,
    Dead,
}

struct Conn {
    plan: ConnPlan,
    stream: Option<Transport>,
    phase: Phase,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    started_us: u64,
    /// Intended (or send) times of requests awaiting their answer, in order.
    pending: VecDeque<u64>,
}

const READ_CHUNK: usize = 64 * 1024;

struct Thread {
    cfg: EngineConfig,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Vec<Conn>,
    /// Index of the next connection to open.
    to_open: usize,
    window: Recorder,
    setup: Recorder,
    interval: Recorder,
    interval_second: u64,
    progress: Sender<Interval>,
    next_req_id: u64,
    /// Share of the total rate this thread sends.
    share: f64,
    /// The read buffer, reused.
    chunk: Vec<u8>,
}

/// Runs one engine thread over its connections until the run is over.
pub fn run_thread(
    cfg: EngineConfig,
    plans: Vec<ConnPlan>,
    total_conns: usize,
    shared: Arc<Shared>,
    progress: Sender<Interval>,
) -> io::Result<ThreadResult> {
    let share = plans.len() as f64 / total_conns.max(1) as f64;
    let conns = plans
        .into_iter()
        .map(|plan| Conn {
            plan,
            stream: None,
            phase: Phase::Connecting,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            started_us: 0,
            pending: VecDeque::new(),
        })
        .collect();
    let mut thread = Thread {
        cfg,
        shared,
        poll: Poll::new()?,
        conns,
        to_open: 0,
        window: Recorder::default(),
        setup: Recorder::default(),
        interval: Recorder::default(),
        interval_second: 0,
        progress,
        next_req_id: 1,
        share,
        chunk: vec![0; READ_CHUNK],
    };
    thread.run()?;
    Ok(ThreadResult {
        window: thread.window,
        setup: thread.setup,
    })
}

impl Thread {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(4096);
        let connect_gap_us = (1_000_000.0 / self.cfg.connect_rate.max(1.0)) as u64;
        let mut next_connect_us = self.shared.now_us();
        // Set-up: connect (paced) and log in; wait for the start signal.
        loop {
            let now = self.shared.now_us();
            while self.to_open < self.conns.len() && next_connect_us <= now {
                self.open(self.to_open, now);
                self.to_open += 1;
                next_connect_us += connect_gap_us;
            }
            if self.shared.start_us.get().is_some() || self.shared.abort.load(Ordering::Relaxed) {
                break;
            }
            self.poll.poll(&mut events, Some(Duration::from_millis(5)))?;
            self.handle_events(&events);
        }
        let Some(&start) = self.shared.start_us.get() else {
            return Ok(());
        };
        let window_start = start + self.cfg.warmup.as_micros() as u64;
        let send_end = window_start + self.cfg.duration.as_micros() as u64;
        let stop = send_end + self.cfg.drain.as_micros() as u64;
        let mut schedule = match self.cfg.traffic {
            Traffic::Fanout { rate } | Traffic::History { rate, .. } => {
                Schedule::new(start, rate * self.share)
            }
            Traffic::Login { rate, .. } => Schedule::new(start, rate * self.share),
            Traffic::Ingest | Traffic::Hold => Schedule::new(start, 0.0),
        };
        self.kick_closed_loop(start);
        loop {
            let now = self.shared.now_us();
            if now >= stop || self.shared.abort.load(Ordering::Relaxed) {
                break;
            }
            if now >= send_end && self.nothing_pending() {
                break;
            }
            self.send_due(&mut schedule, now, window_start, send_end);
            self.report_interval(now, start, false);
            let timeout_us = schedule
                .next_due()
                .filter(|d| *d < send_end)
                .map_or(5_000, |d| d.saturating_sub(self.shared.now_us()).min(5_000));
            self.poll
                .poll(&mut events, Some(Duration::from_micros(timeout_us)))?;
            self.handle_events_measured(&events, window_start, send_end);
        }
        let now = self.shared.now_us();
        self.report_interval(now, start, true);
        Ok(())
    }

    fn nothing_pending(&self) -> bool {
        !matches!(self.cfg.traffic, Traffic::Fanout { .. }) && self.conns.iter().all(|c| c.pending.is_empty())
    }

    fn open(&mut self, i: usize, now: u64) {
        let conn = &mut self.conns[i];
        conn.started_us = now;
        let opened = net::connect(conn.plan.target, conn.plan.source).and_then(|socket| {
            Ok(match self.cfg.connector.session()? {
                Some(session) => Transport::tls(socket, session),
                None => Transport::plain(socket),
            })
        });
        match opened {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(stream.source_mut(), Token(i), interest)
                    .is_err()
                {
                    self.fail(i, "register");
                    return;
                }
                conn.wbuf = self.cfg.protocol.hello(&conn.plan.token, &conn.plan.nick);
                conn.stream = Some(stream);
            }
            Err(_) => self.fail(i, "connect"),
        }
    }

    fn fail(&mut self, i: usize, what: &str) {
        let conn = &mut self.conns[i];
        if conn.phase != Phase::Dead {
            conn.phase = Phase::Dead;
            conn.stream = None;
            self.shared.failed.fetch_add(1, Ordering::Relaxed);
            self.setup.error(&format!("{what} failed"));
        }
    }

    fn handle_events(&mut self, events: &Events) {
        self.handle_events_measured(events, u64::MAX, u64::MAX);
    }

    fn handle_events_measured(&mut self, events: &Events, window_start: u64, send_end: u64) {
        for event in events.iter() {
            let i = event.token().0;
            if i >= self.conns.len() {
                continue;
            }
            if event.is_writable() && self.conns[i].phase == Phase::Connecting {
                let connected = self.conns[i]
                    .stream
                    .as_ref()
                    .and_then(Transport::tcp)
                    .is_some_and(|s| matches!(s.take_error(), Ok(None)) && s.peer_addr().is_ok());
                if connected {
                    self.conns[i].phase = Phase::LoggingIn;
                } else {
                    self.fail(i, "connect");
                    continue;
                }
            }
            if event.is_readable() || event.is_read_closed() {
                self.read(i, window_start, send_end);
            }
            self.flush(i);
        }
    }

    fn flush(&mut self, i: usize) {
        let conn = &mut self.conns[i];
        if conn.phase == Phase::Connecting || conn.phase == Phase::Dead {
            return;
        }
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        // Plaintext into the transport, and (for TLS) its records out,
        // until the socket takes no more.
        loop {
            let mut progressed = false;
            while !conn.wbuf.is_empty() {
                match stream.write(&conn.wbuf) {
                    Ok(0) => break,
                    Ok(n) => {
                        conn.wbuf.drain(..n);
                        progressed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        self.fail(i, "write");
                        return;
                    }
                }
            }
            match stream.send_records() {
                Ok(n) => progressed |= n > 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    self.fail(i, "write");
                    return;
                }
            }
            if (conn.wbuf.is_empty() && !stream.wants_write()) || !progressed {
                break;
            }
        }
    }

    fn read(&mut self, i: usize, window_start: u64, send_end: u64) {
        loop {
            let Some(stream) = self.conns[i].stream.as_mut() else {
                return;
            };
            // One buffer for every read (zeroing 64 KiB per read showed in profiles).
            match stream.read(&mut self.chunk) {
                Ok(0) => {
                    self.fail(i, "closed by server");
                    return;
                }
                Ok(n) => self.conns[i].rbuf.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.fail(i, "read");
                    return;
                }
            }
        }
        let mut buf = std::mem::take(&mut self.conns[i].rbuf);
        let mut start = 0;
        while let Some(pos) = memchr::memchr(b'\n', &buf[start..]) {
            let mut line = &buf[start..start + pos];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            self.line(i, line, window_start, send_end);
            start += pos + 1;
        }
        buf.drain(..start);
        self.conns[i].rbuf = buf;
    }

    fn line(&mut self, i: usize, line: &[u8], window_start: u64, send_end: u64) {
        let now = self.shared.now_us();
        let protocol = self.cfg.protocol;
        let incoming = classify(protocol, line);
        if self.conns[i].phase == Phase::LoggingIn {
            match incoming {
                Incoming::Reply { error: None } | Incoming::Joined => {
                    self.conns[i].phase = Phase::Ready;
                    self.setup.latency(now - self.conns[i].started_us);
                    self.setup.sent += 1;
                    self.shared.ready.fetch_add(1, Ordering::Relaxed);
                }
                Incoming::Reply { error: Some(code) } | Incoming::Error(code) => {
                    self.setup.error(&code);
                    self.fail(i, "log-in");
                }
                Incoming::Welcome => {
                    let join = Protocol::irc_join(&self.conns[i].plan.room_name);
                    self.conns[i].wbuf.extend_from_slice(&join);
                }
                Incoming::Ping(pong) => self.conns[i].wbuf.extend_from_slice(&pong),
                Incoming::Delivery { .. } | Incoming::Other => {}
            }
            return;
        }
        let in_window = |t: u64| t >= window_start && t < send_end;
        match incoming {
            Incoming::Delivery { stamp_us } => {
                self.interval.delivered += 1;
                self.interval.latency(now.saturating_sub(stamp_us));
                if in_window(stamp_us) {
                    self.window.delivered += 1;
                    self.window.latency(now.saturating_sub(stamp_us));
                }
            }
            Incoming::Reply { error } => {
                let Some(intended) = self.conns[i].pending.pop_front() else {
                    return;
                };
                if let Some(code) = &error {
                    self.interval.error(code);
                    if in_window(intended) {
                        self.window.error(code);
                    }
                } else if !matches!(self.cfg.traffic, Traffic::Fanout { .. }) {
                    // The answer is the delivery: acknowledged messages,
                    // answered queries, completed log-ins.
                    self.interval.sent += 1;
                    self.interval.latency(now.saturating_sub(intended));
                    if in_window(intended) {
                        self.window.sent += 1;
                        self.window.latency(now.saturating_sub(intended));
                    }
                }
                if now < send_end {
                    self.closed_loop_next(i, now);
                }
            }
            Incoming::Error(code) => {
                self.interval.error(&code);
                if now >= window_start && now < send_end {
                    self.window.error(&code);
                }
            }
            Incoming::Ping(pong) => self.conns[i].wbuf.extend_from_slice(&pong),
            Incoming::Welcome | Incoming::Joined | Incoming::Other => {}
        }
    }

    /// Closed-loop scenarios: every ready connection sends its first request.
    fn kick_closed_loop(&mut self, now: u64) {
        let closed = matches!(
            self.cfg.traffic,
            Traffic::Ingest | Traffic::Login { rate: 0.0, .. }
        );
        if !closed {
            return;
        }
        for i in 0..self.conns.len() {
            if self.conns[i].phase == Phase::Ready {
                self.closed_loop_next(i, now);
                self.flush(i);
            }
        }
    }

    fn closed_loop_next(&mut self, i: usize, now: u64) {
        match self.cfg.traffic {
            Traffic::Ingest => self.request_message(i, now),
            Traffic::Login { rate, password } if rate <= 0.0 => self.request_log_in(i, now, password),
            _ => {}
        }
    }

    fn req_id(&mut self) -> u64 {
        self.next_req_id += 1;
        self.next_req_id
    }

    /// Queues a chat message stamped with `intended` on connection `i`.
    fn queue_message(&mut self, i: usize, intended: u64, req_id: Option<u64>) {
        let conn = &mut self.conns[i];
        let line = self.cfg.protocol.message(
            conn.plan.room_id,
            &conn.plan.room_name,
            intended,
            self.cfg.payload,
            req_id,
        );
        conn.wbuf.extend_from_slice(&line);
    }

    fn request_message(&mut self, i: usize, intended: u64) {
        let req_id = self.req_id();
        self.queue_message(i, intended, Some(req_id));
        self.conns[i].pending.push_back(intended);
    }

    fn request_log_in(&mut self, i: usize, intended: u64, password: bool) {
        let req_id = self.req_id();
        let conn = &mut self.conns[i];
        let line = if password {
            self.cfg
                .protocol
                .password_log_in(&conn.plan.login, &self.cfg.password_digest, req_id)
        } else {
            self.cfg.protocol.token_log_in(&conn.plan.token, req_id)
        };
        conn.wbuf.extend_from_slice(&line);
        conn.pending.push_back(intended);
    }

    /// Open-loop scenarios: issue every operation that is due, round-robin
    /// over the ready connections, each stamped with its intended time.
    fn send_due(&mut self, schedule: &mut Schedule, now: u64, window_start: u64, send_end: u64) {
        let n = self.conns.len();
        if n == 0 {
            return;
        }
        let mut touched = Vec::new();
        while let Some(intended) = schedule.take_due(now, send_end) {
            let k = schedule.issued() - 1;
            // The next ready connection in turn.
            let Some(i) = (0..n)
                .map(|j| (k as usize + j) % n)
                .find(|&i| self.conns[i].phase == Phase::Ready)
            else {
                break;
            };
            match self.cfg.traffic {
                Traffic::Fanout { .. } => {
                    self.queue_message(i, intended, None);
                    self.interval.sent += 1;
                    if intended >= window_start {
                        self.window.sent += 1;
                        self.window.expected += self.conns[i].plan.recipients;
                    }
                }
                Traffic::History { mix, .. } => {
                    let req_id = self.req_id();
                    let conn = &mut self.conns[i];
                    let line = self.cfg.protocol.history_query(conn.plan.room_id, k, req_id, mix);
                    conn.wbuf.extend_from_slice(&line);
                    conn.pending.push_back(intended);
                }
                Traffic::Login { password, .. } => self.request_log_in(i, intended, password),
                Traffic::Ingest | Traffic::Hold => {}
            }
            touched.push(i);
        }
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            self.flush(i);
        }
    }

    /// Sends the finished second's figures to the main thread.
    fn report_interval(&mut self, now: u64, start: u64, last: bool) {
        let second = now.saturating_sub(start) / 1_000_000;
        if second > self.interval_second || last {
            let rec = std::mem::take(&mut self.interval);
            let _ = self.progress.send(Interval {
                second: self.interval_second,
                rec,
            });
            self.interval_second = second;
        }
    }
}
