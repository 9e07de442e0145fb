//! Attacks a hostile client can make, each reproduced while a well-behaved
//! bystander keeps talking: the bystander's ping (answered by the reactor)
//! and RQ_GET_FRIENDS (answered by a worker) must stay prompt, and nothing
//! the bystander does is lost. Bounds are generous (a busy shared machine
//! always meets them; the unfixed server took seconds); the tight figures
//! are measured by hand (see the issue notes and BENCHMARKS.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{
    assert_type, closed_by_server, connect_from, default_limits, ping, rss_kib, spawn_parleyd_configured,
    start_with, TestServer, User,
};

/// The slowest answer a bystander may see during an attack.
const PROMPT: Duration = Duration::from_secs(1);

/// A logged-in user who measures how long the server takes to answer.
struct Bystander {
    user: User,
    worst: Duration,
    answered: usize,
    /// Every answer's latency, for the figures measured by hand.
    samples: Vec<Duration>,
}

impl Bystander {
    fn new(server: &TestServer, login: &str) -> Bystander {
        Bystander {
            user: server.user(login),
            worst: Duration::ZERO,
            answered: 0,
            samples: Vec::new(),
        }
    }

    /// One ping and one worker-served request, timed.
    fn probe(&mut self) {
        for msg in [ping(), json!({"type": "RQ_GET_FRIENDS"})] {
            let started = Instant::now();
            let reply = self.user.req(msg.clone());
            let took = started.elapsed();
            assert_ne!(reply["type"], "RQ_ERROR_MSG", "{msg} refused: {reply}");
            self.worst = self.worst.max(took);
            self.answered += 1;
            self.samples.push(took);
        }
    }

    /// Probes every 50 ms for `how_long`, then asserts every answer was prompt.
    #[track_caller]
    fn probe_for(&mut self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.probe();
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(self.answered >= 4, "only {} answers", self.answered);
        assert!(
            self.worst < PROMPT,
            "a bystander waited {:?} for an answer during the attack",
            self.worst
        );
    }
}

impl Bystander {
    /// Probes every `every` for `how_long`; returns (p50, p99, max) in ms.
    fn measure(&mut self, how_long: Duration, every: Duration) -> (f64, f64, f64) {
        self.samples.clear();
        let until = Instant::now() + how_long;
        while Instant::now() < until {
            self.probe();
            std::thread::sleep(every);
        }
        let mut s: Vec<f64> = self.samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        (at(0.5), at(0.99), s[s.len() - 1])
    }
}

/// Runs `attack` on its own thread until told to stop.
struct Attacker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Attacker {
    fn start(attack: impl FnOnce(Arc<AtomicBool>) + Send + 'static) -> Attacker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || attack(flag));
        Attacker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Attacker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads and discards whatever arrives on `stream` until `stop` is set.
fn drain_in_background(mut stream: TcpStream, stop: Arc<AtomicBool>) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        while !stop.load(Ordering::SeqCst) {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        total
    })
}

/// Row 1: a megabyte of bare newlines, sent again and again.
#[test]
fn a_flood_of_empty_lines_does_not_stall_others() {
    let server = start_with(|_| {});
    let mut bystander = Bystander::new(&server, "bystander");
    let addr = server.addr;
    let attacker = Attacker::start(move |stop| {
        let mut s = TcpStream::connect(addr).unwrap();
        let flood = vec![b'\n'; 1024 * 1024];
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(&flood).is_err() {
                break;
            }
        }
    });
    bystander.probe_for(Duration::from_secs(3));
    drop(attacker);
    assert_type(&server.connect().request(ping()).unwrap(), "RQ_PING");
}

/// Row 1: pipelined pings, read by the attacker as fast as they come.
#[test]
fn a_flood_of_pipelined_pings_does_not_stall_others() {
    let server = start_with(|_| {});
    let mut bystander = Bystander::new(&server, "bystander");
    let addr = server.addr;
    let attacker = Attacker::start(move |stop| {
        let s = TcpStream::connect(addr).unwrap();
        let reader = drain_in_background(s.try_clone().unwrap(), stop.clone());
        let mut s = s;
        let flood = "{\"type\":\"RQ_PING\"}\n".repeat(50_000);
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(flood.as_bytes()).is_err() {
                break;
            }
        }
        let received = reader.join().unwrap();
        assert!(received > 0, "the flooder's own pings were never answered");
    });
    bystander.probe_for(Duration::from_secs(3));
    drop(attacker);
}

/// Row 1: shutdown is prompt while a flood is under way.
#[test]
fn shutdown_is_prompt_during_a_flood() {
    let server = start_with(|_| {});
    let addr = server.addr;
    let _attacker = Attacker::start(move |stop| {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        let flood = vec![b'\n'; 1024 * 1024];
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(&flood).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (result, _dir) = server.stop();
    result.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// Sends sign-ups for fresh logins on `conns` connections in a loop until
/// `stop`; returns how many accounts were made and how many were refused
/// with ER_RATE_LIMITED (each refusal checked for its retry time).
fn sign_up_storm(addr: std::net::SocketAddr, conns: usize, stop: Arc<AtomicBool>) -> (usize, usize) {
    let workers: Vec<_> = (0..conns)
        .map(|n| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let Ok(mut c) = parley::client::Client::connect(addr) else {
                    return (0, 0);
                };
                let (mut made, mut limited) = (0, 0);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let login = format!("storm{n}x{i}");
                    let Ok(reply) = c.request(json!({"type": "RQ_SIGN_UP", "login": login,
                        "pass": parley::client::password_digest("pw")}))
                    else {
                        break;
                    };
                    match reply["type"].as_str() {
                        Some("RQ_TOKEN") => {
                            made += 1;
                            // A new connection for the next account.
                            match parley::client::Client::connect(addr) {
                                Ok(next) => c = next,
                                Err(_) => break,
                            }
                        }
                        _ if reply["error_code"] == "ER_RATE_LIMITED" => {
                            assert!(
                                reply["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                                "{reply}"
                            );
                            limited += 1;
                        }
                        _ if reply["error_code"] == "ER_BUSY" => {}
                        _ => panic!("unexpected answer to a sign-up: {reply}"),
                    }
                }
                (made, limited)
            })
        })
        .collect();
    workers
        .into_iter()
        .map(|w| w.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// Row 2: 32 connections signing up in a loop, with the default limits.
#[test]
fn a_sign_up_storm_is_limited_per_address() {
    let server = start_with(default_limits);
    let mut bystander = Bystander::new(&server, "bystander");
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || sign_up_storm(addr, 32, stop))
    };
    bystander.probe_for(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (made, limited) = storm.join().unwrap();
    let burst = parley::Config::default().sign_up_burst_per_addr as usize;
    // The bystander's own sign-up took one of the address's burst.
    assert!(made < burst + 2, "{made} accounts made from one address in 3 s");
    assert!(limited > 100, "only {limited} refusals");
}

/// Row 2: with the per-address limits lifted, a storm of sign-ups keeps the
/// hashing threads busy, and chat (workers, reactor) never waits for them.
#[test]
fn password_hashing_never_delays_chat() {
    let server = start_with(|_| {});
    let mut bystander = Bystander::new(&server, "bystander");
    let addr = server.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || sign_up_storm(addr, 32, stop))
    };
    bystander.probe_for(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (made, _) = storm.join().unwrap();
    assert!(
        made > 5,
        "the storm made only {made} accounts: it did not load the hashing threads"
    );
}

/// Row 4: failed log-ins with long random logins are refused before they
/// are hashed, keyed or logged in full; the server's memory does not grow.
#[test]
fn long_random_logins_cost_no_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The log-in admission rate is lifted so that every attempt reaches the throttle.
    let (mut child, addr, log) = spawn_parleyd_configured(
        dir.path(),
        "log_ins_per_addr_per_min = 1e9\nlog_in_burst_per_addr = 1000000000\nlog_ins_per_min = 1e12\n",
        None,
    );
    let rss_before = rss_kib(child.id());
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    let mut seed = 0x1234_5678u64;
    for _ in 0..1000 {
        let login: String = (0..60_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect();
        let reply = c
            .request(
                json!({"type": "RQ_LOG_IN", "login": login, "pass": parley::client::password_digest("x")}),
            )
            .unwrap();
        assert_eq!(reply["error_code"], "ER_AUTH_DATA", "{reply}");
    }
    let rss_after = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        rss_after < rss_before + 30 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() < 256 * 1024, "the log grew to {} bytes", text.len());
}

/// Row 8: a guesser at one address, then at many, neither locks out the
/// owner (at the address the account was made from) nor a valid token.
#[test]
fn guessing_does_not_lock_out_the_owner() {
    let server = start_with(|_| {});
    let owner_addr: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut owner = connect_from(server.addr, owner_addr);
    let signed = owner.sign_up("alice", "right").unwrap();
    assert_type(&signed, "RQ_TOKEN");
    let token = signed["token"].as_str().unwrap().to_owned();
    // One address: five wrong guesses, then refused even with the right password.
    let mut guesser = server.connect();
    for _ in 0..5 {
        assert_eq!(
            guesser.log_in("alice", "wrong").unwrap()["error_code"],
            "ER_AUTH_DATA"
        );
    }
    let refused = guesser.log_in("alice", "right").unwrap();
    assert_eq!(refused["error_code"], "ER_RATE_LIMITED", "{refused}");
    assert!(refused["retry_after_ms"].as_u64().is_some());
    // Many addresses, a guess or two each: limited per login all the same.
    let mut got_through = 0;
    for host in 10..60u8 {
        let mut c = connect_from(server.addr, [127, 0, 1, host].into());
        for _ in 0..2 {
            if c.log_in("alice", "wrong").unwrap()["error_code"] == "ER_AUTH_DATA" {
                got_through += 1;
            }
        }
    }
    let all = parley::Config::default().login_failures_per_login_all as usize;
    assert!(got_through <= all, "{got_through} spread guesses were tried");
    // The owner's own address, and any valid token, still work.
    let again = connect_from(server.addr, owner_addr)
        .log_in("alice", "right")
        .unwrap();
    assert_type(&again, "RQ_TOKEN");
    assert_type(&server.connect().resume(&token).unwrap(), "RQ_TOKEN");
}

/// Row 6: thousands of idle anonymous sockets from one address neither
/// keep others out nor hold more than the per-address cap.
#[test]
fn idle_anonymous_sockets_from_one_address_are_capped() {
    let server = start_with(|_| {});
    let mut bystander = Bystander::new(&server, "bystander");
    let mut idle: Vec<TcpStream> = (0..2600)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    bystander.probe_for(Duration::from_millis(500));
    // Newcomers get in at once, from another address and from the same one.
    for source in [[127, 0, 0, 5], [127, 0, 0, 1]] {
        let started = Instant::now();
        let mut c = connect_from(server.addr, source.into());
        assert_type(&c.request(ping()).unwrap(), "RQ_PING");
        assert!(
            started.elapsed() < PROMPT,
            "a newcomer waited {:?}",
            started.elapsed()
        );
    }
    let newcomer = connect_from(server.addr, [127, 0, 0, 6].into())
        .sign_up("newcomer", "pw")
        .unwrap();
    assert_type(&newcomer, "RQ_TOKEN");
    // All but the newest 32 of the idle ones were closed.
    let cap = parley::Config::default().max_anonymous_per_addr;
    let oldest = &mut idle[..2600 - cap - 1];
    let mut closed = 0;
    for s in oldest.iter_mut().take(200) {
        if closed_by_server(s, Duration::from_millis(200)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 200, "the oldest idle connections were not closed");
    let mut newest = idle.pop().unwrap();
    assert!(
        !closed_by_server(&mut newest, Duration::from_millis(200)),
        "the newest is kept"
    );
}

/// Row 5: after the process ran out of descriptors and the sockets holding
/// them closed, a client already waiting is accepted without anyone else
/// connecting.
#[test]
fn accepting_resumes_after_running_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, log) = spawn_parleyd_configured(
        dir.path(),
        "max_anonymous_per_addr = 100000\nmax_anonymous = 100000\n",
        Some(600),
    );
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let holders: Vec<TcpStream> = (0..700).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut waiting = parley::client::Client::connect(addr).unwrap();
    waiting.send(&ping()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(holders);
    waiting.set_timeout(Duration::from_secs(5)).unwrap();
    let answer = waiting.recv();
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("out of file descriptors"), "never ran out: {text}");
    assert_type(&answer.expect("the waiting client was never served"), "RQ_PING");
    assert_eq!(
        text.matches("out of file descriptors").count(),
        1,
        "reported once: {text}"
    );
}

/// Code finding: the data directory and what is in it are private.
#[test]
fn the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    if crate::util::skipped_on_postgres("the database file's mode") {
        return;
    }
    let server = start_with(|_| {});
    let mut alice = server.user("alice");
    let room = alice.new_room("r", "DB_GLOBAL_CHAT");
    let reply = alice
        .client
        .upload(room, "secret.txt", b"private bytes", None)
        .unwrap();
    assert_type(&reply, "RQ_MSG");
    let data = server.dir.path().join("data");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("files")), 0o700);
    assert_eq!(mode(&data.join("parley.db")), 0o600);
    assert_eq!(mode(&data.join("parley.db-wal")), 0o600);
    let stored: Vec<_> = std::fs::read_dir(data.join("files"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(mode(&stored[0]), 0o600);
}

/// Code finding: expired tokens are deleted on a timer, not only when presented.
#[test]
fn expired_tokens_are_purged() {
    let server = start_with(|c| c.token_ttl_days = 0);
    let _alice = server.user("alice");
    let data = server.dir.path().join("data");
    let count = || crate::util::Database::open(&data).number("SELECT count(*) FROM tokens");
    assert_eq!(count(), 1);
    crate::util::wait_until(Duration::from_secs(15), || count() == 0);
}

/// Row 3: parallel uploads cannot together pass the quota: it is reserved
/// when an upload starts, not counted when it ends.
#[test]
fn parallel_uploads_cannot_pass_the_quota() {
    let server = start_with(|c| c.user_quota_bytes = 1_000_000);
    let mut alice = server.user("alice");
    let room = alice.new_room("files", "DB_GLOBAL_CHAT");
    let mut conns: Vec<_> = (0..8).map(|_| server.connect()).collect();
    let mut ready = Vec::new();
    for (i, c) in conns.iter_mut().enumerate() {
        let reply = c
            .request(
                json!({"type": "RQ_UPLOAD_FILE", "name": format!("f{i}.bin"), "size": 600_000,
                "room_id": room, "token": alice.token}),
            )
            .unwrap();
        match reply["type"].as_str() {
            Some("RQ_READY_READ") => ready.push(i),
            _ => assert_eq!(reply["error_code"], "ER_TOO_LARGE", "{reply}"),
        }
    }
    assert_eq!(
        ready.len(),
        1,
        "{} uploads of 600 KB started under a 1 MB quota",
        ready.len()
    );
    let c = &mut conns[ready[0]];
    c.send_raw(&vec![7u8; 600_000]).unwrap();
    assert_type(&c.recv().unwrap(), "RQ_MSG");
    // The stored file counts now: another 600 KB is refused.
    let reply = server
        .connect()
        .request(
            json!({"type": "RQ_UPLOAD_FILE", "name": "more.bin", "size": 600_000,
            "room_id": room, "token": alice.token}),
        )
        .unwrap();
    assert_eq!(reply["error_code"], "ER_TOO_LARGE", "{reply}");
}

/// Row 3: there is a quota by default, and the file limit is the contract's 10 MB.
#[test]
fn files_have_a_default_quota_and_a_10_mb_limit() {
    let defaults = parley::Config::default();
    assert_eq!(defaults.user_quota_bytes, 1 << 30);
    assert!(defaults.disk_reserve_bytes > 0);
    let server = start_with(|_| {});
    let mut alice = server.user("alice");
    let room = alice.new_room("files", "DB_GLOBAL_CHAT");
    let over =
        alice.req(json!({"type": "RQ_UPLOAD_FILE", "name": "big.bin", "size": 10_000_001, "room_id": room}));
    assert_eq!(over["error_code"], "ER_TOO_LARGE", "{over}");
    let exact =
        alice.req(json!({"type": "RQ_UPLOAD_FILE", "name": "ok.bin", "size": 10_000_000, "room_id": room}));
    assert_type(&exact, "RQ_READY_READ");
}

/// Row 3: below the free-space reserve, uploads are refused.
#[test]
fn uploads_are_refused_below_the_free_space_reserve() {
    let server = start_with(|c| c.disk_reserve_bytes = u64::MAX / 4);
    let mut alice = server.user("alice");
    let room = alice.new_room("files", "DB_GLOBAL_CHAT");
    let reply = alice.req(json!({"type": "RQ_UPLOAD_FILE", "name": "a.bin", "size": 10, "room_id": room}));
    assert_eq!(reply["error_code"], "ER_TOO_LARGE", "{reply}");
    assert!(reply["msg"].as_str().unwrap().contains("no room"), "{reply}");
}

/// Row 3: on a full disk, deleting a message (and its file) and clearing a
/// history still work, so space can be freed through the protocol. Runs on
/// a small tmpfs of its own (needs the right to mount, as CI's root has).
#[test]
fn deleting_works_on_a_full_disk() {
    if crate::util::skipped_on_postgres("SQLite on a full disk") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mount_point = dir.path().join("small");
    std::fs::create_dir(&mount_point).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&mount_point)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("deleting_works_on_a_full_disk: cannot mount a tmpfs here (not root?); not run");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount_point.clone());
    let data = mount_point.join("data");
    let server = crate::util::start_in(tempfile::tempdir().unwrap(), |c| {
        c.data_dir = data.clone();
        c.disk_reserve_bytes = 0;
    });
    let mut alice = server.user("alice");
    let room = alice.new_room("files", "DB_GLOBAL_CHAT");
    let file_msg = alice
        .client
        .upload(room, "one.bin", &vec![1u8; 2_000_000], None)
        .unwrap();
    assert_type(&file_msg, "RQ_MSG");
    for i in 0..30 {
        let m = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("filler text {i} {}", "x".repeat(500))}));
        assert_type(&m, "RQ_MSG");
    }
    // Fill the disk to the last byte.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(mount_point.join("filler")).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let small = vec![0u8; 512];
        while filler.write_all(&small).is_ok() {}
        let _ = filler.sync_all();
    }
    // Writes fail with a clear error and store nothing...
    let refused = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "x".repeat(3000)}));
    assert_eq!(refused["error_code"], "ER_INTERNAL", "{refused}");
    assert!(
        refused["msg"].as_str().unwrap().contains("disk is full"),
        "{refused}"
    );
    // ...reads keep working...
    let history = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 500}));
    assert_eq!(history["messages"].as_array().unwrap().len(), 31, "{history}");
    // ...and so do deletes, which free space.
    let msg_id = file_msg["message_id"].as_i64().unwrap();
    let deleted = alice.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": msg_id}));
    assert_type(&deleted, "RQ_DEL_MSG");
    let cleared = alice.req(json!({"type": "RQ_DEL_HIST", "room_id": room}));
    assert_type(&cleared, "RQ_DEL_HIST");
    let files: Vec<_> = std::fs::read_dir(data.join("files")).unwrap().collect();
    assert!(files.is_empty(), "the file went with its message");
    // When space returns, the server carries on by itself.
    std::fs::remove_file(mount_point.join("filler")).unwrap();
    let sent = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "space again"}));
    assert_type(&sent, "RQ_MSG");
    drop(server);
}

/// A data directory holding one global room ("big") with `n` text messages.
fn data_with_a_big_room(n: usize) -> tempfile::TempDir {
    use parley::model::{MsgType, RoomType};
    use parley::store::prelude::*;
    use parley::store::{migrate, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let path = data.join("parley.db");
    migrate(&path).unwrap();
    let mut store = SqliteStore::open(&path, parley::config::Durability::Normal).unwrap();
    let owner = store.create_user("bulk", "bulk", "", "x", 1).unwrap().unwrap().id;
    let room = store
        .create_room(owner, "big", "", RoomType::Global, 1)
        .unwrap()
        .id;
    // "reader" (password "pw") was there before every message: all unread.
    let hasher = parley::auth::PasswordHasher::new(1024, 1).unwrap();
    let hash = hasher.hash(&parley::client::password_digest("pw")).unwrap();
    let reader = store
        .create_user("reader", "reader", "", &hash, 1)
        .unwrap()
        .unwrap()
        .id;
    store
        .add_member(room, reader, parley::model::Role::Simple, 1)
        .unwrap();
    store
        .atomically(|s| {
            for i in 0..n {
                s.insert_message(
                    room,
                    owner,
                    &format!("hello there number {i} hey"),
                    MsgType::Text,
                    2,
                )?;
            }
            Ok::<_, parley::store::Error>(())
        })
        .unwrap();
    dir
}

/// Row 7: searches for a short prefix by users in no room (or other rooms),
/// and room lists of a member far behind in a big room, do not scan the
/// big room, and a bystander stays prompt.
#[test]
fn scans_are_bounded_by_the_callers_rooms() {
    if crate::util::skipped_on_postgres("a big SQLite database built directly") {
        return;
    }
    let server = crate::util::start_in(data_with_a_big_room(150_000), |_| {});
    let mut bystander = Bystander::new(&server, "bystander");
    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    for i in 0..4 {
        let mut user = if i == 0 {
            // One of them is in the big room, with everything unread.
            let mut client = server.connect();
            let reply = client.log_in("reader", "pw").unwrap();
            assert_type(&reply, "RQ_TOKEN");
            User {
                client,
                token: reply["token"].as_str().unwrap().to_owned(),
                id: reply["user_id"].as_i64().unwrap(),
                login: "reader".into(),
            }
        } else {
            server.user(&format!("searcher{i}"))
        };
        let stop = stop.clone();
        attackers.push(std::thread::spawn(move || {
            let (mut searches, mut limited) = (0, 0);
            while !stop.load(Ordering::SeqCst) {
                let req = if i == 0 {
                    json!({"type": "RQ_GET_ROOMS"})
                } else {
                    json!({"type": "RQ_SEARCH_MSGS", "msg": "he"})
                };
                let reply = user.req(req);
                match reply["type"].as_str() {
                    Some("RQ_SEARCH_MSGS") => {
                        assert_eq!(reply["msgs"], json!([]), "a non-member found messages");
                        searches += 1;
                    }
                    Some("RQ_GET_ROOMS") => {
                        assert_eq!(reply["rooms"][0]["unread"], 150_000, "{reply}");
                        searches += 1;
                    }
                    _ => {
                        assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
                        limited += 1;
                    }
                }
            }
            (searches, limited)
        }));
    }
    bystander.probe_for(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    // Read limits are lifted here (test settings), so the attackers run flat
    // out: a search that scanned the big room's index, or a room list that
    // counted its 150,000 unread messages (tens of ms each before), would
    // allow a hundred or so in 3 s on two workers; from the caller's rooms
    // and from counters they cost next to nothing (thousands here).
    let answered: Vec<usize> = attackers.into_iter().map(|a| a.join().unwrap().0).collect();
    assert!(
        answered[0] > 600,
        "only {} room lists answered in 3 s",
        answered[0]
    );
    let searches: usize = answered[1..].iter().sum();
    assert!(searches > 600, "only {searches} searches answered in 3 s");
}

/// Row 7: searches and history pages are limited per user.
#[test]
fn searches_are_rate_limited_per_user() {
    let server = start_with(default_limits);
    let mut alice = server.user("alice");
    let burst = parley::Config::default().reads_burst as usize;
    let mut limited = None;
    for i in 0..(burst + 20) {
        let reply = alice.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "anything"}));
        if reply["type"] == "RQ_ERROR_MSG" {
            assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
            assert!(reply["retry_after_ms"].as_u64().is_some(), "{reply}");
            limited = Some(i);
            break;
        }
    }
    let at = limited.expect("never limited");
    assert!(at >= burst - 5, "limited after only {at} searches");
}

/// Design §4: removing a friend refuses them; only the remover can add them back.
#[test]
fn a_removed_friend_cannot_add_the_remover_again() {
    let server = start_with(|_| {});
    let mut alice = server.user("alice");
    let mut mallory = server.user("mallory");
    assert_type(
        &mallory.req(json!({"type": "RQ_ADD_FRIEND", "login": "alice"})),
        "RQ_ADD_FRIEND",
    );
    assert_type(
        &alice.req(json!({"type": "RQ_DEL_FRIEND", "login": "mallory"})),
        "RQ_DEL_FRIEND",
    );
    let again = mallory.req(json!({"type": "RQ_ADD_FRIEND", "login": "alice"}));
    assert_eq!(again["error_code"], "ER_FORBIDDEN", "{again}");
    // Alice may change her mind; then both may remove and add as before.
    assert_type(
        &alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "mallory"})),
        "RQ_ADD_FRIEND",
    );
    assert_type(
        &mallory.req(json!({"type": "RQ_DEL_FRIEND", "login": "alice"})),
        "RQ_DEL_FRIEND",
    );
    assert_eq!(
        alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "mallory"}))["error_code"],
        "ER_FORBIDDEN"
    );
}

/// Row 9: an attacker befriends people (mutual at once) and churns log-ins:
/// friend adds are limited, and each friend gets at most about one presence
/// push a second, however fast the attacker flaps.
#[test]
fn presence_flapping_is_coalesced_and_friend_adds_limited() {
    let server = start_with(|c| c.friend_adds_burst = parley::Config::default().friend_adds_burst);
    let mut attacker = server.user("attacker");
    let mut victims: Vec<User> = (0..5).map(|i| server.user(&format!("victim{i}"))).collect();
    for v in &victims {
        let reply = attacker.req(json!({"type": "RQ_ADD_FRIEND", "login": v.login}));
        assert_type(&reply, "RQ_ADD_FRIEND");
    }
    let burst = parley::Config::default().friend_adds_burst as usize;
    let mut limited = false;
    for i in 0..burst {
        let extra = server.user(&format!("extra{i}"));
        let reply = attacker.req(json!({"type": "RQ_ADD_FRIEND", "login": extra.login}));
        if reply["type"] == "RQ_ERROR_MSG" {
            assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
            limited = true;
            break;
        }
    }
    assert!(limited, "friend adds were never limited");
    let token = attacker.token.clone();
    let addr = server.addr;
    drop(attacker);
    let flapping = Duration::from_secs(3);
    let churn = Attacker::start(move |stop| {
        while !stop.load(Ordering::SeqCst) {
            let conns: Vec<_> = (0..4)
                .filter_map(|_| parley::client::Client::connect(addr).ok())
                .collect();
            for mut c in conns {
                let _ = c.resume(&token);
            }
        }
    });
    std::thread::sleep(flapping);
    drop(churn);
    std::thread::sleep(Duration::from_millis(1500));
    for v in victims.iter_mut() {
        v.client.set_timeout(Duration::from_millis(200)).unwrap();
        let mut pushes = Vec::new();
        while let Ok(msg) = v.client.recv() {
            pushes.push(msg);
        }
        let presence: Vec<_> = pushes.iter().filter(|m| m["type"] == "RQ_PRESENCE").collect();
        assert!(
            presence.len() <= 2 * flapping.as_secs() as usize + 4,
            "{} presence pushes in {flapping:?}",
            presence.len()
        );
        assert!(!presence.is_empty(), "no presence at all");
        assert_eq!(
            presence.last().unwrap()["online"],
            false,
            "friends end with the latest state"
        );
        v.client.set_timeout(parley::client::DEFAULT_TIMEOUT).unwrap();
        assert_type(&v.req(ping()), "RQ_PING");
    }
}

/// Row 10: room creation is limited per user.
#[test]
fn room_creation_is_rate_limited() {
    let server = start_with(default_limits);
    let mut alice = server.user("alice");
    let burst = parley::Config::default().rooms_burst as usize;
    for i in 0..burst {
        let reply = alice.req(json!({"type": "RQ_NEW_ROOM", "name": format!("room {i}")}));
        assert_type(&reply, "RQ_NEW_ROOM");
    }
    let reply = alice.req(json!({"type": "RQ_NEW_ROOM", "name": "one too many"}));
    assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
    assert!(
        reply["retry_after_ms"].as_u64().is_some_and(|ms| ms > 1000),
        "{reply}"
    );
}

/// The figures of the closing note, measured by hand on a quiet machine:
/// each attack for 5 s against a fresh server while a bystander pings and
/// asks for its friends every 10 ms. Run with
/// `cargo test --release --test integration abuse::figures -- --ignored --nocapture`.
#[test]
#[ignore = "measured by hand; prints a table"]
fn figures() {
    type Attack = Box<dyn FnOnce(std::net::SocketAddr, Arc<AtomicBool>) + Send>;
    type Scenario = (&'static str, fn(&mut parley::Config), Attack);
    let attacks: Vec<Scenario> = vec![
        ("none", |_| {}, Box::new(|_, _| {})),
        (
            "1 MiB of bare newlines, repeated",
            |_| {},
            Box::new(|addr, stop| {
                let mut s = TcpStream::connect(addr).unwrap();
                let flood = vec![b'\n'; 1024 * 1024];
                while !stop.load(Ordering::SeqCst) && s.write_all(&flood).is_ok() {}
            }),
        ),
        (
            "pipelined pings, read back",
            |_| {},
            Box::new(|addr, stop| {
                let s = TcpStream::connect(addr).unwrap();
                let reader = drain_in_background(s.try_clone().unwrap(), stop.clone());
                let mut s = s;
                let flood = "{\"type\":\"RQ_PING\"}\n".repeat(50_000);
                while !stop.load(Ordering::SeqCst) && s.write_all(flood.as_bytes()).is_ok() {}
                let _ = reader.join();
            }),
        ),
        (
            "32 connections signing up (default limits)",
            default_limits,
            Box::new(|addr, stop| {
                sign_up_storm(addr, 32, stop);
            }),
        ),
        (
            "32 connections signing up (limits lifted: hashing saturated)",
            |_| {},
            Box::new(|addr, stop| {
                sign_up_storm(addr, 32, stop);
            }),
        ),
        (
            "2,600 idle anonymous sockets from one address",
            |_| {},
            Box::new(|addr, stop| {
                let held: Vec<_> = (0..2600).filter_map(|_| TcpStream::connect(addr).ok()).collect();
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                drop(held);
            }),
        ),
        (
            "log-in guesses with 60 KB random logins",
            |c| {
                c.log_ins_per_addr_per_min = 1e9;
                c.log_in_burst_per_addr = 1_000_000_000;
                c.log_ins_per_min = 1e12;
            },
            Box::new(|addr, stop| {
                let mut c = parley::client::Client::connect(addr).unwrap();
                let login = "q".repeat(60_000);
                while !stop.load(Ordering::SeqCst) {
                    let _ = c.request(json!({"type": "RQ_LOG_IN", "login": login,
                        "pass": parley::client::password_digest("x")}));
                }
            }),
        ),
        (
            "4 users searching a 2-letter prefix, 4 churning log-ins of a friend",
            |_| {},
            Box::new(|addr, stop| {
                let mut threads = Vec::new();
                for i in 0..4 {
                    let stop = stop.clone();
                    threads.push(std::thread::spawn(move || {
                        let mut c = parley::client::Client::connect(addr).unwrap();
                        c.sign_up(&format!("searcher{i}"), "pw").unwrap();
                        while !stop.load(Ordering::SeqCst) {
                            let _ = c.request(json!({"type": "RQ_SEARCH_MSGS", "msg": "he"}));
                        }
                    }));
                }
                let mut c = parley::client::Client::connect(addr).unwrap();
                let token = c.sign_up("flapper", "pw").unwrap()["token"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let _ = c.request(json!({"type": "RQ_ADD_FRIEND", "login": "bystander"}));
                while !stop.load(Ordering::SeqCst) {
                    let conns: Vec<_> = (0..4)
                        .filter_map(|_| parley::client::Client::connect(addr).ok())
                        .collect();
                    for mut c in conns {
                        let _ = c.resume(&token);
                    }
                }
                for t in threads {
                    let _ = t.join();
                }
            }),
        ),
        (
            "one user uploading 10 MB files at will (1 GiB quota)",
            |_| {},
            Box::new(|addr, stop| {
                let mut c = parley::client::Client::connect(addr).unwrap();
                c.sign_up("uploader", "pw").unwrap();
                let room = c.request(json!({"type": "RQ_NEW_ROOM", "name": "dump"})).unwrap()["id"]
                    .as_i64()
                    .unwrap();
                let data = vec![0x5au8; 10_000_000];
                while !stop.load(Ordering::SeqCst) {
                    if c.upload(room, "big.bin", &data, None).is_err() {
                        break;
                    }
                }
            }),
        ),
    ];
    println!("| attack | answers | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    // PARLEY_FIGURES=text runs only the attacks whose name holds the text.
    let only = std::env::var("PARLEY_FIGURES").unwrap_or_default();
    for (name, adjust, attack) in attacks {
        if !name.contains(only.as_str()) {
            continue;
        }
        let server = crate::util::start_in(data_with_a_big_room(300_000), adjust);
        let mut bystander = Bystander::new(&server, "bystander");
        let addr = server.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || attack(addr, stop))
        };
        std::thread::sleep(Duration::from_millis(500));
        let (p50, p99, max) = bystander.measure(Duration::from_secs(5), Duration::from_millis(10));
        stop.store(true, Ordering::SeqCst);
        let _ = thread.join();
        println!(
            "| {name} | {} | {p50:.2} | {p99:.2} | {max:.2} |",
            bystander.samples.len()
        );
    }
}

/// Each defence is logged once per offender, not once per refused request.
#[test]
fn defences_are_logged_once_per_offender() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, log) = spawn_parleyd_configured(dir.path(), "", None);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    // A sign-up storm from one address...
    let stop = Arc::new(AtomicBool::new(false));
    let storm = {
        let stop = stop.clone();
        std::thread::spawn(move || sign_up_storm(addr, 8, stop))
    };
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (_, refused_sign_ups) = storm.join().unwrap();
    // ...and one user sending far too fast.
    let mut c = parley::client::Client::connect(addr).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut refused_msgs = 0;
    let mut logged_in = false;
    for _ in 0..20 {
        if c.log_in("storm0x1", "pw").unwrap()["type"] == "RQ_TOKEN" {
            logged_in = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(logged_in, "could not log in as a storm account");
    let room = c.request(json!({"type": "RQ_NEW_ROOM", "name": "fast"})).unwrap()["id"]
        .as_i64()
        .unwrap();
    for i in 0..300 {
        let reply = c
            .request(json!({"type": "RQ_MSG", "room_id": room, "message": format!("m{i}")}))
            .unwrap();
        if reply["error_code"] == "ER_RATE_LIMITED" {
            refused_msgs += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        refused_sign_ups > 50 && refused_msgs > 50,
        "{refused_sign_ups} {refused_msgs}"
    );
    let sign_up_lines = text.matches("RQ_SIGN_UP from 127.0.0.1 rate-limited").count();
    assert!(
        (1..=2).contains(&sign_up_lines),
        "{sign_up_lines} lines for one address: {text}"
    );
    let msg_lines = text
        .matches("rate-limited: you are sending messages too fast")
        .count();
    assert_eq!(msg_lines, 1, "{text}");
}
