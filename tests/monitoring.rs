//! Prometheus metrics on their own listener, scraped over HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::json;

use crate::util::{assert_error, assert_type, start_with};

/// GET `path` from `addr`; returns the status line and the body.
fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: parley\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

/// The value of the sample `name` (with its labels) in a scrape.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn metrics_count_what_happens() {
    let server = start_with(|c| c.metrics = Some("127.0.0.1:0".parse().unwrap()));
    let metrics = server.metrics_addr.expect("a metrics listener");
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let room = alice.new_room("counted", "DB_GLOBAL_CHAT");
    assert_type(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    for i in 0..5 {
        assert_type(
            &alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("m{i}")})),
            "RQ_MSG",
        );
    }
    assert_error(
        &alice.req(json!({"type": "RQ_JOIN_ROOM", "room_id": 9999})),
        "ER_NOT_FOUND",
    );
    for _ in 0..5 {
        bob.expect("RQ_MSG");
    }

    let (status, body) = get(metrics, "/metrics");
    assert!(status.contains("200"), "{status}");
    let at = |name: &str| sample(&body, name).unwrap_or_else(|| panic!("no {name} in\n{body}"));
    assert_eq!(at("parley_connections_open"), 2.0);
    assert!(at("parley_connections_total") >= 2.0);
    assert_eq!(at("parley_logged_in_users"), 2.0);
    assert_eq!(at("parley_requests_total{type=\"RQ_MSG\"}"), 5.0);
    assert_eq!(at("parley_requests_total{type=\"RQ_SIGN_UP\"}"), 2.0);
    assert_eq!(at("parley_errors_total{code=\"ER_NOT_FOUND\"}"), 1.0);
    assert_eq!(at("parley_messages_stored_total"), 5.0);
    assert!(at("parley_pushes_delivered_total") >= 5.0, "bob's copies");
    assert!(at("parley_outbound_bytes_total") > 0.0);
    assert_eq!(at("parley_slow_consumer_disconnects_total"), 0.0);
    assert_eq!(at("parley_read_queue_depth"), 0.0);
    assert_eq!(at("parley_write_queue_depth"), 0.0);
    assert!(at("parley_request_duration_seconds_count") >= 9.0);
    assert_eq!(
        at("parley_request_duration_seconds_bucket{le=\"+Inf\"}"),
        at("parley_request_duration_seconds_count")
    );
    assert!(at("parley_commit_duration_seconds_count") >= 1.0);
    assert!(body.contains("# TYPE parley_request_duration_seconds histogram"));

    drop(bob);
    crate::util::wait_until(std::time::Duration::from_secs(5), || {
        sample(&get(metrics, "/metrics").1, "parley_connections_open") == Some(1.0)
    });
    let (status, _) = get(metrics, "/elsewhere");
    assert!(status.contains("404"), "{status}");
}
