//! Framing and malformed input over real sockets: every bad line gets an
//! RQ_ERROR_MSG and the connection keeps working.

use std::time::Duration;

use serde_json::json;

use crate::util::{assert_error, assert_type, ping, start_server};

#[test]
fn request_split_across_writes() {
    let server = start_server();
    let mut c = server.connect();
    c.send_raw(b"{\"type\":\"RQ_P").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.send_raw(b"ING\",\"req_id\":1}").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.send_raw(b"\n").unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply, json!({"type": "RQ_PING", "req_id": 1}));
}

#[test]
fn many_requests_in_one_write_are_answered_in_order() {
    let server = start_server();
    let mut c = server.connect();
    // Pings are answered by the reactor, member-info by workers: order must hold across both.
    let mut batch = String::new();
    for i in 0..60 {
        if i % 3 == 0 {
            batch.push_str(&format!(
                "{{\"type\":\"RQ_MEMBER_INFO\",\"user_id\":1,\"req_id\":{i}}}\n"
            ));
        } else {
            batch.push_str(&format!("{{\"type\":\"RQ_PING\",\"req_id\":{i}}}\r\n"));
        }
    }
    c.send_raw(batch.as_bytes()).unwrap();
    for i in 0..60 {
        let reply = c.recv().unwrap();
        assert_eq!(reply["req_id"], i, "reply {i} out of order: {reply}");
        if i % 3 == 0 {
            assert_error(&reply, "ER_UNAUTHORIZED");
        } else {
            assert_type(&reply, "RQ_PING");
        }
    }
}

#[test]
fn oversized_line_gets_too_large_and_connection_survives() {
    let server = start_server();
    let mut c = server.connect();
    let big = format!("{{\"type\":\"RQ_PING\",\"pad\":\"{}\"}}\n", "x".repeat(70 * 1024));
    // Sent in pieces, as a real client's large write would arrive.
    for chunk in big.as_bytes().chunks(8192) {
        c.send_raw(chunk).unwrap();
    }
    let reply = c.recv().unwrap();
    assert_error(&reply, "ER_TOO_LARGE");
    let reply = c.request(ping()).unwrap();
    assert_type(&reply, "RQ_PING");
}

#[test]
fn line_just_under_the_limit_is_served() {
    let server = start_server();
    let mut c = server.connect();
    let head = "{\"type\":\"RQ_PING\",\"req_id\":5,\"pad\":\"";
    let pad = 64 * 1024 - head.len() - 2;
    let line = format!("{head}{}\"}}\n", "y".repeat(pad));
    assert_eq!(line.len(), 64 * 1024 + 1);
    c.send_raw(line.as_bytes()).unwrap();
    assert_eq!(c.recv().unwrap()["type"], "RQ_PING");
}

#[test]
fn malformed_lines_get_bad_request_naming_the_problem() {
    let server = start_server();
    let mut c = server.connect();
    let cases: &[(&[u8], &str)] = &[
        (b"{\"type\":\"RQ_PING\",\"x\":\"\xff\xfe\"}\n", "UTF-8"),
        (b"{\"type\":\"RQ_PING\"\n", "invalid JSON"),
        (b"not json at all\n", "invalid JSON"),
        (b"[1,2,3]\n", "object"),
        (b"42\n", "object"),
        (b"\"RQ_PING\"\n", "object"),
        (b"{\"type\":\"RQ_NO_SUCH_THING\"}\n", "unknown type"),
        (b"{\"type\":4242}\n", "unknown type"),
        (b"{\"type\":null}\n", "type"),
        (b"{\"login\":\"bob\"}\n", "missing field `type`"),
        (
            b"{\"type\":\"RQ_MEMBER_INFO\",\"user_id\":\"seven\"}\n",
            "user_id",
        ),
        (b"{\"type\":\"RQ_LOG_IN\",\"login\":\"bob\"}\n", "pass"),
        (b"{\"type\":\"RQ_LOG_IN\",\"login\":5,\"pass\":\"x\"}\n", "login"),
        (b"{\"type\":\"RQ_ERROR_MSG\"}\n", "sent by the server"),
    ];
    for (line, needle) in cases {
        c.send_raw(line).unwrap();
        let reply = c.recv().unwrap();
        assert_error(&reply, "ER_BAD_REQUEST");
        let msg = reply["msg"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "for {:?}: {msg:?} should mention {needle:?}",
            String::from_utf8_lossy(line)
        );
    }
    // Still perfectly usable.
    assert_type(&c.request(ping()).unwrap(), "RQ_PING");
}

#[test]
fn errors_echo_req_id_and_name_the_request() {
    let server = start_server();
    let mut c = server.connect();
    c.send_raw(b"{\"type\":\"RQ_MEMBER_INFO\",\"user_id\":\"x\",\"req_id\":\"abc\"}\n")
        .unwrap();
    let reply = c.recv().unwrap();
    assert_error(&reply, "ER_BAD_REQUEST");
    assert_eq!(reply["req_id"], "abc");
    assert_eq!(reply["request"], "RQ_MEMBER_INFO");
    c.send_raw(b"{\"type\":\"RQ_NOPE\",\"req_id\":9}\n").unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply["req_id"], 9);
    assert!(
        reply.get("request").is_none(),
        "unknown request type is not named: {reply}"
    );
    let long = "r".repeat(65);
    c.send_raw(format!("{{\"type\":\"RQ_PING\",\"req_id\":\"{long}\"}}\n").as_bytes())
        .unwrap();
    let reply = c.recv().unwrap();
    assert_error(&reply, "ER_BAD_REQUEST");
    assert!(reply.get("req_id").is_none());
}

#[test]
fn empty_lines_are_ignored() {
    let server = start_server();
    let mut c = server.connect();
    c.send_raw(b"\n\r\n   \n{\"type\":\"RQ_PING\",\"req_id\":1}\n")
        .unwrap();
    assert_eq!(c.recv().unwrap(), json!({"type": "RQ_PING", "req_id": 1}));
}

#[test]
fn bad_input_on_one_connection_does_not_disturb_another() {
    let server = start_server();
    let mut good = server.connect();
    let mut bad = server.connect();
    bad.send_raw(&[0xff; 100_000]).unwrap();
    bad.send_raw(b"\n{{{{\n").unwrap();
    assert_type(&good.request(ping()).unwrap(), "RQ_PING");
    assert_error(&bad.recv().unwrap(), "ER_TOO_LARGE");
    assert_error(&bad.recv().unwrap(), "ER_BAD_REQUEST");
    assert_type(&bad.request(ping()).unwrap(), "RQ_PING");
}
