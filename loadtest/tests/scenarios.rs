//! Runs every scenario of the parley-load binary for two seconds against a
//! real server on 127.0.0.1, and checks that its figures add up.

use std::process::Command;

use parley::{Config, Server};
use serde_json::Value;

struct TestServer {
    addr: String,
    handle: parley::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn server() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        workers: 2,
        msg_rate_per_sec: 1e9,
        msg_burst: 1_000_000_000,
        // Set-up signs up and logs in hundreds of users from one address at once.
        sign_ups_per_addr_per_min: 1e9,
        sign_up_burst_per_addr: 1_000_000_000,
        sign_ups_per_min: 1e12,
        log_ins_per_addr_per_min: 1e9,
        log_in_burst_per_addr: 1_000_000_000,
        log_ins_per_min: 1e12,
        reads_per_sec: 1e9,
        reads_burst: 1_000_000_000,
        rooms_burst: 1_000_000_000,
        friend_adds_burst: 1_000_000_000,
        max_anonymous_per_addr: 1_000_000,
        durability: parley::config::Durability::Normal,
        ..Config::default()
    };
    let server = Server::bind(config).unwrap();
    let addr = server.local_addr().to_string();
    let handle = server.shutdown_handle();
    let thread = Some(std::thread::spawn(move || server.run()));
    TestServer {
        addr,
        handle,
        thread,
        _dir: dir,
    }
}

/// Runs parley-load with `args` for 2 s against a fresh server; returns its JSON.
fn run(args: &[&str]) -> Value {
    let server = server();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("out.json");
    let plot = out_dir.path().join("out.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_parley-load"))
        .args([
            "--target",
            &server.addr,
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--quiet",
        ])
        .args(["--server-pid", &std::process::id().to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "parley-load {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "a plot was drawn");
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["errors"], serde_json::json!({}), "no errors: {report}");
    assert!(report["server_rss_kib"].as_u64().unwrap() > 0);
    assert!(report["server_cpu_s"].as_f64().unwrap() >= 0.0);
    for p in ["p50", "p90", "p99", "p999", "max"] {
        assert!(report["latency_ms"][p].is_number(), "{p} in {report}");
    }
    report
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[test]
fn fanout_delivers_every_message_to_every_member() {
    for protocol in ["parley", "parley-int"] {
        let r = run(&[
            "--scenario",
            "fanout",
            "--protocol",
            protocol,
            "--clients",
            "30",
            "--room-size",
            "10",
            "--rate",
            "100",
        ]);
        let sent = u(&r["sent"]);
        // Open loop: 100/s for 2 s, give or take the edges of the window.
        assert!((190..=210).contains(&sent), "{protocol} sent {sent}");
        assert_eq!(
            u(&r["expected_deliveries"]),
            sent * 10,
            "each of 10 members receives each message"
        );
        assert_eq!(
            u(&r["delivered"]),
            u(&r["expected_deliveries"]),
            "{protocol}: {r}"
        );
        assert!(r["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn ingest_counts_acknowledged_messages() {
    let r = run(&["--scenario", "ingest", "--clients", "10", "--room-size", "5"]);
    assert!(u(&r["sent"]) > 20, "{r}");
    assert_eq!(u(&r["delivered"]), u(&r["sent"]));
}

#[test]
fn connections_are_held() {
    let r = run(&["--scenario", "connections", "--clients", "300"]);
    assert_eq!(u(&r["connections"]["established"]), 300, "{r}");
    assert_eq!(u(&r["connections"]["failed"]), 0);
    assert!(r["server_rss_kib_per_connection"].as_f64().is_some());
}

#[test]
fn history_queries_are_answered_at_the_rate() {
    let r = run(&[
        "--scenario",
        "history",
        "--clients",
        "10",
        "--room-size",
        "5",
        "--rate",
        "50",
        "--history-msgs",
        "60",
    ]);
    let sent = u(&r["sent"]);
    assert!((90..=110).contains(&sent), "answered {sent}: {r}");
}

#[test]
fn log_ins_by_password_and_by_token() {
    // Argon2 costs real CPU, and other tests share the machine: a modest rate.
    let r = run(&[
        "--scenario",
        "login",
        "--mode",
        "password",
        "--clients",
        "4",
        "--rate",
        "10",
    ]);
    let sent = u(&r["sent"]);
    assert!((15..=23).contains(&sent), "password log-ins {sent}: {r}");
    let r = run(&[
        "--scenario",
        "login",
        "--mode",
        "token",
        "--clients",
        "4",
        "--rate",
        "0",
    ]);
    assert!(u(&r["sent"]) > 20, "token log-ins as fast as they come: {r}");
}
