//! Dialects: the first request fixes names or integer codes for everything
//! the server sends that connection, enum-valued fields included.

use parley::client::password_digest;
use serde_json::json;

use crate::util::{assert_type, start_server};

#[test]
fn integer_dialect_gets_integer_types_and_codes() {
    let server = start_server();
    let mut c = server.connect();
    let reply = c
        .request(
            json!({"type": 1, "login": "intuser", "pass": password_digest("pw"), "name": "Int", "desc": "d"}),
        )
        .unwrap();
    assert_eq!(reply["type"], 2, "RQ_TOKEN as an integer: {reply}");
    assert_eq!(reply["login"], "intuser");
    // A later request by name does not change the dialect.
    let reply = c
        .request(json!({"type": "RQ_MEMBER_INFO", "user_id": 999}))
        .unwrap();
    assert_eq!(reply["type"], 9);
    assert_eq!(reply["error_code"], 103);
    assert_eq!(reply["request"], 20);
    let reply = c.request(json!({"type": 111})).unwrap();
    assert_eq!(reply["type"], 111);
}

#[test]
fn name_dialect_stays_names_after_integer_requests() {
    let server = start_server();
    let mut c = server.connect();
    assert_type(&c.request(json!({"type": "RQ_PING"})).unwrap(), "RQ_PING");
    let reply = c.request(json!({"type": 20, "user_id": 1})).unwrap();
    assert_eq!(reply["type"], "RQ_ERROR_MSG");
    assert_eq!(reply["error_code"], "ER_UNAUTHORIZED");
}

#[test]
fn first_bad_request_with_integer_type_fixes_integer_dialect() {
    let server = start_server();
    let mut c = server.connect();
    c.send_raw(b"{\"type\":0}\n").unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply["type"], 9);
    assert_eq!(reply["error_code"], 100);
}

#[test]
fn integer_log_in_round_trip_like_the_old_client() {
    let server = start_server();
    let mut a = server.connect();
    let token = a.sign_up("olduser", "secret").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // The uchat client: integer codes, name and desc sent along with log-in, token check.
    let mut old = server.connect();
    let reply = old
        .request(
            json!({"type": 0, "login": "olduser", "pass": password_digest("secret"), "name": "", "desc": ""}),
        )
        .unwrap();
    assert_eq!(reply["type"], 2);
    let new_token = reply["token"].as_str().unwrap();
    assert_ne!(new_token, token, "each device gets its own token");
    assert!(new_token.ends_with("olduser"));
    assert!(new_token[..64]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    for field in ["login", "name", "desc"] {
        assert!(reply[field].is_string(), "{field} must be a string: {reply}");
    }
}
