//! The server as a process and under stress: start-up failures, the log-in
//! timeout, connection and queue limits, backpressure, graceful shutdown.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{
    assert_error, assert_type, closed_by_server, ping, spawn_parleyd, start_server, start_with,
};

#[test]
fn connections_that_never_log_in_are_closed() {
    let server = start_with(|c| c.login_timeout_ms = 300);
    let mut idle = TcpStream::connect(server.addr).unwrap();
    let mut alice = server.user("alice");
    let started = Instant::now();
    assert!(closed_by_server(&mut idle, Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(3));
    std::thread::sleep(Duration::from_millis(400));
    assert_type(&alice.req(ping()), "RQ_PING");
}

#[test]
fn connection_limit_refuses_extra_connections() {
    let server = start_with(|c| {
        c.max_connections = 2;
        c.max_anonymous = 10;
    });
    let mut a = server.connect();
    let mut b = server.connect();
    assert_type(&a.request(ping()).unwrap(), "RQ_PING");
    assert_type(&b.request(ping()).unwrap(), "RQ_PING");
    let mut third = TcpStream::connect(server.addr).unwrap();
    assert!(closed_by_server(&mut third, Duration::from_secs(5)));
    drop(a);
    std::thread::sleep(Duration::from_millis(200));
    assert_type(&server.connect().request(ping()).unwrap(), "RQ_PING");
}

#[test]
fn a_client_that_does_not_read_is_throttled_not_grown() {
    // With a tiny output cap, a client pipelining many requests without
    // reading gets every reply, in order, once it reads; the server stops
    // reading from it meanwhile instead of buffering without bound.
    let server = start_with(|c| c.max_outbound_bytes = 4096);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let count = 20_000;
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..count {
            batch.extend_from_slice(format!("{{\"type\":\"RQ_PING\",\"req_id\":{i}}}\n").as_bytes());
        }
        writer.write_all(&batch).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(&mut stream);
    for i in 0..count {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["req_id"], i);
    }
    sender.join().unwrap();
}

#[test]
fn a_full_job_queue_answers_busy() {
    let server = start_with(|c| {
        c.auth_workers = 1;
        c.auth_queue = 1;
    });
    // Sign-ups cost an Argon2 hash each: ten at once overflow a hashing queue of one.
    let mut clients: Vec<_> = (0..10).map(|_| server.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = json!({"type": "RQ_SIGN_UP", "login": format!("user{i}"), "pass": parley::client::password_digest("pw"), "req_id": i});
        c.send(&msg).unwrap();
    }
    let mut busy = 0;
    for c in clients.iter_mut() {
        let reply = c.recv().unwrap();
        match reply["type"].as_str() {
            Some("RQ_TOKEN") => {}
            _ => {
                assert_error(&reply, "ER_BUSY");
                busy += 1;
            }
        }
    }
    assert!(
        busy > 0,
        "expected some ER_BUSY with one worker and a queue of one"
    );
    assert!(busy < 10, "the first request must be served");
}

#[test]
fn disconnecting_with_a_request_in_flight_harms_nothing() {
    let server = start_server();
    let mut c = server.connect();
    c.send(&json!({"type": "RQ_SIGN_UP", "login": "ghost", "pass": parley::client::password_digest("pw")}))
        .unwrap();
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    let mut other = server.connect();
    assert_type(&other.request(ping()).unwrap(), "RQ_PING");
    assert_type(&other.log_in("ghost", "pw").unwrap(), "RQ_TOKEN");
}

#[test]
fn in_process_shutdown_finishes_and_stops_listening() {
    let server = start_server();
    let addr = server.addr;
    let mut c = server.connect();
    // A sign-up in flight when the shutdown begins is finished and answered.
    c.send(&json!({"type": "RQ_SIGN_UP", "login": "late", "pass": parley::client::password_digest("pw"), "req_id": 1})).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let (result, _dir) = server.stop();
    result.unwrap();
    assert_type(&c.recv().unwrap(), "RQ_TOKEN");
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

// --- the parleyd binary ---------------------------------------------------

fn parleyd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_parleyd"))
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("parleyd did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_shuts_parleyd_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = spawn_parleyd(dir.path());
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    assert_type(&c.sign_up("alice", "pw").unwrap(), "RQ_TOKEN");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    // The data is intact and the server starts again on it.
    let (mut child, addr) = spawn_parleyd(dir.path());
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    assert_type(&c.log_in("alice", "pw").unwrap(), "RQ_TOKEN");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut child, Duration::from_secs(15)).success());
}

fn start_up_failure(args: &[&str], data: &std::path::Path) -> String {
    let out = parleyd().args(args).arg("--data").arg(data).output().unwrap();
    assert!(!out.status.success(), "parleyd should have failed");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("parleyd: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "one clear line expected, got {stderr:?}");
    errors[0].to_owned()
}

#[test]
fn start_up_failures_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    // Port taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let line = start_up_failure(&["--listen", &port], &dir.path().join("a"));
    assert!(line.contains("cannot listen on"), "{line}");
    assert!(
        !dir.path().join("a").exists(),
        "the data directory was made before the port was found taken"
    );
    // Data directory that cannot be created (its parent is a file).
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let line = start_up_failure(&["--listen", "127.0.0.1:0"], &file.join("data"));
    assert!(line.contains("data directory"), "{line}");
    // A database from a newer schema.
    let newer = dir.path().join("newer");
    std::fs::create_dir_all(&newer).unwrap();
    let conn = rusqlite::Connection::open(newer.join("parley.db")).unwrap();
    conn.pragma_update(None, "user_version", 9999).unwrap();
    drop(conn);
    let line = start_up_failure(&["--listen", "127.0.0.1:0"], &newer);
    assert!(line.contains("newer"), "{line}");
    // A corrupt database (here: not a database at all).
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("parley.db"), vec![0x5a; 8192]).unwrap();
    let line = start_up_failure(&["--listen", "127.0.0.1:0"], &corrupt);
    assert!(
        line.contains("parley.db") && line.contains("not a database"),
        "{line}"
    );
    // A bad flag.
    let out = parleyd().arg("--bogus").output().unwrap();
    assert!(!out.status.success());
}

/// A start with the default settings says what it does and warns of nothing.
#[test]
fn a_default_start_has_no_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = parleyd()
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("listening on"), "{log}");
    assert!(
        !log.contains("WARN") && !log.contains("ERROR"),
        "a default start warned:\n{log}"
    );
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    let data = dir.path().join("from-config");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\ndata_dir = {:?}\nlog_level = \"warn\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    // --listen overrides the config's unusable port 1; data_dir comes from the file.
    let mut child = parleyd()
        .args(["--listen", "127.0.0.1:0", "--log-level", "info", "--config"])
        .arg(&config)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0);
    }
    assert!(
        data.join("parley.db").exists(),
        "data_dir from the config file is used"
    );
    let _ = child.kill();
    let _ = child.wait();
    // A config file with a mistake is a start-up failure.
    std::fs::write(&config, "listn = 3\n").unwrap();
    let out = parleyd().arg("--config").arg(&config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parley.toml"));
}

/// Retention: messages older than `retention_days` go (files too) in the
/// background, and what remains keeps its counts right.
#[test]
fn retention_deletes_old_messages_and_their_files() {
    let server = crate::util::start_server();
    let mut alice = server.user("alice");
    let room = alice.new_room("kept short", "DB_GLOBAL_CHAT");
    for text in ["old one", "old two", "old three"] {
        assert_type(
            &alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": text})),
            "RQ_MSG",
        );
    }
    let file = alice.client.upload(room, "old.bin", &[1u8; 5000], None).unwrap();
    assert_type(&file, "RQ_MSG");
    let mut bob = server.user("bob");
    assert_type(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    for text in ["new one", "new two"] {
        assert_type(
            &alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": text})),
            "RQ_MSG",
        );
    }
    let (result, dir) = server.stop();
    result.unwrap();
    // Forty days pass for the old ones.
    let mut db = crate::util::Database::open(&dir.path().join("data"));
    let forty_days = 40 * 24 * 60 * 60 * 1000i64;
    let aged = db.execute(
        "UPDATE messages SET date = date - $1 WHERE body LIKE 'old%'",
        forty_days,
    );
    assert_eq!(aged, 4);
    drop(db);

    let server = crate::util::start_in(dir, |c| c.retention_days = 30);
    let mut alice = server.connect();
    assert_type(&alice.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    let texts = |c: &mut parley::client::Client| -> Vec<String> {
        let page = c
            .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 50}))
            .unwrap();
        let mut texts: Vec<String> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect();
        texts.sort();
        texts
    };
    crate::util::wait_until(Duration::from_secs(15), || texts(&mut alice).len() == 2);
    assert_eq!(texts(&mut alice), vec!["new one", "new two"]);
    let files: Vec<_> = std::fs::read_dir(server.dir.path().join("data").join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(files.is_empty(), "the old file stayed: {files:?}");
    let mut bob = server.connect();
    assert_type(&bob.log_in("bob", "pw-bob").unwrap(), "RQ_TOKEN");
    let rooms = bob.request(json!({"type": "RQ_GET_ROOMS", "date": 0})).unwrap();
    assert_eq!(rooms["rooms"][0]["unread"], 2, "{rooms}");
    assert_eq!(
        rooms["rooms"][0]["power"],
        "new one".len() + "new two".len(),
        "{rooms}"
    );
}

/// SIGHUP reopens the log file (after logrotate moved it), applies the
/// settings that can change live, and names those that wait for a restart.
#[test]
fn sighup_reopens_the_log_and_applies_live_settings() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("parleyd.log");
    let config = dir.path().join("parley.toml");
    let settings = |burst: u32, rate: f64, level: &str, workers: u32| {
        format!(
            "log_file = {:?}\nlog_level = {level:?}\nmsg_burst = {burst}\nmsg_rate_per_sec = {rate}\nworkers = {workers}\n",
            log.display().to_string()
        )
    };
    std::fs::write(&config, settings(2, 0.001, "info", 2)).unwrap();
    let child = parleyd()
        .args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .spawn()
        .unwrap();
    let mut server = crate::util::Stop(child);
    let addr = {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "no start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut c = parley::client::Client::connect(&addr).unwrap();
    assert_type(&c.sign_up("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    let room = c
        .request(json!({"type": "RQ_NEW_ROOM", "name": "r", "room_type": "DB_GLOBAL_CHAT"}))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let send = |c: &mut parley::client::Client| {
        c.request(json!({"type": "RQ_MSG", "room_id": room, "message": "hi"}))
            .unwrap()
    };
    assert_type(&send(&mut c), "RQ_MSG");
    assert_type(&send(&mut c), "RQ_MSG");
    assert_error(&send(&mut c), "ER_RATE_LIMITED");

    // logrotate moves the log away; the settings change.
    let rotated = dir.path().join("parleyd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&config, settings(1000, 1000.0, "debug", 3)).unwrap();
    Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status()
        .unwrap();
    crate::util::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("applied only at restart"))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("settings applied: log_level, msg_burst, msg_rate_per_sec"),
        "{text}"
    );
    assert!(text.contains("applied only at restart: workers"), "{text}");
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap()
        .contains("settings applied"));
    // The new rate and burst are in effect (the bucket refills at the new
    // rate from where it was); the new level too.
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..10 {
        assert_type(&send(&mut c), "RQ_MSG");
    }
    // A new connection is logged at debug level.
    let _another = parley::client::Client::connect(&addr).unwrap();
    crate::util::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("[DEBUG]"))
    });
    Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(wait_exit(&mut server.0, Duration::from_secs(15)).success());
}

/// trace_lines logs each line both ways, with passwords and tokens masked.
#[test]
fn trace_lines_logs_a_connection_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr, log) = crate::util::spawn_parleyd_configured(dir.path(), "trace_lines = true\n", None);
    let _server = crate::util::Stop(child);
    let mut c = parley::client::Client::connect(&addr).unwrap();
    let reply = c.sign_up("alice", "a secret").unwrap();
    assert_type(&reply, "RQ_TOKEN");
    let token = reply["token"].as_str().unwrap().to_owned();
    assert_type(&c.request(ping()).unwrap(), "RQ_PING");
    crate::util::wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.lines().any(|l| l.contains(" > {") && l.contains("\"RQ_PING\"")))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("< {") && text.contains("RQ_SIGN_UP"), "{text}");
    assert!(
        text.contains("\"pass\":\"***\"") && text.contains("\"token\":\"***\""),
        "{text}"
    );
    let digest = parley::client::password_digest("a secret");
    assert!(
        !text.contains(&digest) && !text.contains(&token),
        "a secret reached the log"
    );
}

/// A local connection (how front ends inside the server, such as the
/// ngobrol bridge, reach the reactor) is served exactly like a TCP client:
/// the same requests, pushes both ways, and the same limits.
#[test]
fn local_connections_are_served_like_tcp_clients() {
    let server = crate::util::start_server();
    let stream = server.local.connect().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut ask = |msg: serde_json::Value| -> serde_json::Value {
        writeln!(writer, "{msg}").unwrap();
        loop {
            let mut line = String::new();
            assert!(
                lines.read_line(&mut line).unwrap() > 0,
                "the server closed the local connection"
            );
            let got: serde_json::Value = serde_json::from_str(&line).unwrap();
            // An over-long line's error cannot carry its req_id.
            if got["req_id"] == msg["req_id"] || got["error_code"] == "ER_TOO_LARGE" {
                return got;
            }
        }
    };
    let signed = ask(
        json!({"type": "RQ_SIGN_UP", "login": "localuser", "pass": parley::client::password_digest("pw"), "req_id": 1}),
    );
    assert_eq!(signed["type"], "RQ_TOKEN", "{signed}");
    let mut tcp = server.user("tcpuser");
    let room = tcp.new_room("bridge", "DB_GLOBAL_CHAT");
    assert_eq!(
        ask(json!({"type": "RQ_JOIN_ROOM", "room_id": room, "req_id": 2}))["type"],
        "RQ_JOIN_ROOM"
    );
    let sent = ask(json!({"type": "RQ_MSG", "room_id": room, "message": "from inside", "req_id": 3}));
    assert_eq!(sent["type"], "RQ_MSG", "{sent}");
    let got = tcp.expect("RQ_MSG");
    assert_eq!(
        (got["login"].as_str(), got["message"].as_str()),
        (Some("localuser"), Some("from inside"))
    );
    // The line limit holds here too.
    let huge = "x".repeat(100 * 1024);
    let refused = ask(json!({"type": "RQ_MSG", "room_id": room, "message": huge, "req_id": 4}));
    assert_eq!(refused["error_code"], "ER_TOO_LARGE", "{refused}");
    let after = ask(json!({"type": "RQ_PING", "req_id": 5}));
    assert_eq!(after["type"], "RQ_PING", "the connection stays after a refusal");
}
