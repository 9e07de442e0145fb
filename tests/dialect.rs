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
    // A Parley code (RQ_PING) opens the connection to Parley's error codes.
    let reply = c.request(json!({"type": 111})).unwrap();
    assert_eq!(reply["type"], 111);
    // A later request by name does not change the dialect.
    let reply = c
        .request(json!({"type": "RQ_MEMBER_INFO", "user_id": 999}))
        .unwrap();
    assert_eq!(reply["type"], 9);
    assert_eq!(reply["error_code"], 103);
    assert_eq!(reply["request"], 20);
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
    // A refused log-in, told to an old client in the code it knows.
    assert_eq!(reply["error_code"], 0);
    assert!(reply["msg"].as_str().unwrap().contains("login"), "{reply}");
}

/// The uchat client accepts error codes 0 to 2 only and exits on others
/// (design.md §3): refused log-ins come as ER_AUTH_DATA with the reason in
/// `msg`, other errors are not sent to it, until it uses a Parley code.
#[test]
fn old_clients_are_told_only_the_error_codes_they_know() {
    let server = start_server();
    server.user("olduser");
    let mut old = server.connect();
    let wrong =
        json!({"type": 0, "login": "olduser", "pass": password_digest("wrong"), "name": "", "desc": ""});
    let mut last = json!(null);
    for _ in 0..7 {
        last = old.request(wrong.clone()).unwrap();
        assert_eq!(last["type"], 9, "{last}");
        assert_eq!(last["error_code"], 0, "{last}");
    }
    assert!(
        last["msg"].as_str().unwrap().contains("too many"),
        "throttled: {last}"
    );

    // Logged in, as the client is: a refused message is not answered (the
    // old server sent nothing), and the next request is served as usual.
    // (olduser is throttled now: another account, as a second person.)
    server.user("another");
    let right =
        json!({"type": 0, "login": "another", "pass": password_digest("pw-another"), "name": "", "desc": ""});
    let mut old = server.connect();
    let logged = old.request(right).unwrap();
    assert_eq!(logged["type"], 2, "{logged}");
    old.send(&json!({"type": 3, "room_id": 4242, "message": "nowhere", "req_id": 1}))
        .unwrap();
    let rooms = old.request(json!({"type": 11, "date": 0})).unwrap();
    assert_eq!(rooms["type"], 11, "{rooms}");
    assert!(
        old.pending().is_empty(),
        "an unknown error code reached an old client: {:?}",
        old.pending()
    );

    // Once it has used a Parley code, it gets every code.
    assert_eq!(old.request(json!({"type": 111})).unwrap()["type"], 111);
    let refused = old
        .request(json!({"type": 3, "room_id": 4242, "message": "nowhere"}))
        .unwrap();
    assert_eq!(refused["error_code"], 103, "{refused}");
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

/// A room search from an old (integer-dialect) client lists only rooms it
/// could join, not its own (it would add a second copy of a room it joins
/// again); a name-dialect client gets them too, marked with its role.
#[test]
fn old_clients_search_only_rooms_they_are_not_in() {
    let server = start_server();
    let mut bob = server.user("bob");
    let theirs = bob.new_room("club theirs", "DB_GLOBAL_CHAT");
    server.user("olduser");
    let mut old = server.connect();
    let logged = old
        .request(json!({"type": 0, "login": "olduser", "pass": password_digest("pw-olduser"), "name": "", "desc": ""}))
        .unwrap();
    assert_eq!(logged["type"], 2, "{logged}");
    // The client's new-room request: the room type is a second `type`.
    old.send_raw(b"{\"type\":12,\"name\":\"club mine\",\"desc\":\"\",\"type\":1,\"req_id\":77}\n")
        .unwrap();
    let created = loop {
        let msg = old.recv().unwrap();
        if msg["req_id"] == 77 {
            break msg;
        }
    };
    assert_eq!(created["type"], 12, "{created}");
    let found = old.request(json!({"type": 18, "name": "club"})).unwrap();
    assert_eq!(found["type"], 18, "{found}");
    let ids: Vec<i64> = found["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![theirs], "{found}");

    let found = bob.req(json!({"type": "RQ_SEARCH_CH", "name": "club"}));
    assert_eq!(found["rooms"].as_array().unwrap().len(), 2, "{found}");
}

/// Logs in as the uchat client does: integer codes, name and desc along.
fn old_client(server: &crate::util::TestServer, login: &str) -> (parley::client::Client, String) {
    server.user(login);
    let mut old = server.connect();
    let logged = old
        .request(json!({"type": 0, "login": login, "pass": password_digest(&format!("pw-{login}")), "name": "", "desc": ""}))
        .unwrap();
    assert_eq!(logged["type"], 2, "{logged}");
    let token = logged["token"].as_str().unwrap().to_owned();
    (old, token)
}

/// The next message of the given integer type, skipping others.
fn next_of_type(c: &mut parley::client::Client, kind: i64) -> serde_json::Value {
    loop {
        let msg = c.recv().unwrap();
        if msg["type"] == kind {
            return msg;
        }
    }
}

/// The uchat client connects before its log-in dialog and exits when the
/// connection closes: a person may sit at that dialog for minutes. With the
/// default settings an idle connection that has not logged in is still
/// served after well over the old 30 s.
#[test]
fn old_clients_may_sit_at_the_log_in_dialog() {
    let defaults = parley::config::Config::default();
    assert!(
        defaults.login_timeout_ms >= 10 * 60 * 1000,
        "the default log-in timeout is minutes"
    );
    let server = crate::util::start_with(|c| c.login_timeout_ms = defaults.login_timeout_ms);
    server.user("patient");
    let mut old = server.connect();
    std::thread::sleep(std::time::Duration::from_secs(35));
    let logged = old
        .request(json!({"type": 0, "login": "patient", "pass": password_digest("pw-patient"), "name": "", "desc": ""}))
        .unwrap();
    assert_eq!(logged["type"], 2, "{logged}");
}

/// The uchat client shows a file message's name as the text after the
/// first `__`: old clients get `<message id>__<name>` in the live push and
/// in history; name-dialect clients keep the plain name.
#[test]
fn old_clients_read_file_names_after_the_first_double_underscore() {
    use std::io::{Read, Write};
    let server = crate::util::start_server();
    let (mut old, token) = old_client(&server, "olduser");
    old.send_raw(b"{\"type\":12,\"name\":\"files\",\"desc\":\"\",\"type\":1}\n")
        .unwrap();
    let room = next_of_type(&mut old, 12)["id"].as_i64().unwrap();
    let mut bob = server.user("bob");
    assert_eq!(
        bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}))["type"],
        "RQ_JOIN_ROOM"
    );
    for name in ["report.pdf", "with__two__marks.txt"] {
        // The client's upload: a second connection, the token, the bytes after RQ_READY_READ, hang up.
        let data = vec![7u8; 3000];
        let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
        writeln!(
            raw,
            "{}",
            json!({"type": 24, "name": name, "size": data.len(), "room_id": room, "token": token})
        )
        .unwrap();
        let mut ready = [0u8; 64];
        let n = raw.read(&mut ready).unwrap();
        assert_eq!(&ready[..n], b"{\"type\":27}\n");
        raw.write_all(&data).unwrap();
        drop(raw);
        let pushed = next_of_type(&mut old, 3);
        let id = pushed["message_id"].as_i64().unwrap();
        assert_eq!(pushed["msg_type"], 1, "{pushed}");
        let text = pushed["message"].as_str().unwrap();
        assert_eq!(text, format!("{id}__{name}"));
        assert_eq!(text.split_once("__").map(|(_, shown)| shown), Some(name));
        let seen = bob.expect("RQ_MSG");
        assert_eq!(seen["message"], name, "name-dialect clients keep the name");
        assert_eq!(seen["file_name"], name);
        let history = old.request(json!({"type": 7, "room_id": room})).unwrap();
        assert_eq!(
            history["messages"][0]["message"],
            format!("{id}__{name}"),
            "{history}"
        );
    }
}

/// `power` (design.md §3): a message's is its text's bytes, a room's the sum
/// over its stored messages, and after every change old clients get the
/// room's figure as RQ_UPD_ROOM_POWR (17); name-dialect clients do not.
#[test]
fn old_clients_see_power_as_bytes_and_room_power_pushes() {
    let server = crate::util::start_server();
    let (mut old, _) = old_client(&server, "olduser");
    old.send_raw(b"{\"type\":12,\"name\":\"watts\",\"desc\":\"\",\"type\":1}\n")
        .unwrap();
    let room = next_of_type(&mut old, 12)["id"].as_i64().unwrap();
    let mut bob = server.user("bob");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));

    let sent = old
        .request(json!({"type": 3, "room_id": room, "message": "héllo"}))
        .unwrap();
    assert_eq!(sent["type"], 3, "{sent}");
    assert_eq!(sent["power"], 6, "bytes, not characters");
    assert_eq!(
        next_of_type(&mut old, 17),
        json!({"type": 17, "room_id": room, "power": 6})
    );
    let first = sent["message_id"].as_i64().unwrap();

    bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "abcd"}));
    assert_eq!(next_of_type(&mut old, 17)["power"], 10, "the sum over the room");

    let edited = old
        .request(json!({"type": 4, "room_id": room, "msg_id": first, "msg": "hi"}))
        .unwrap();
    assert_eq!(edited["power"], 2, "{edited}");
    assert_eq!(
        next_of_type(&mut old, 17)["power"],
        6,
        "an edit counts the difference"
    );

    let rooms = old.request(json!({"type": 11, "date": 0})).unwrap();
    assert_eq!(rooms["rooms"][0]["power"], 6, "{rooms}");
    let history = old.request(json!({"type": 7, "room_id": room})).unwrap();
    let powers: Vec<i64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["power"].as_i64().unwrap())
        .collect();
    assert_eq!(powers, vec![4, 2], "each message its own, newest first");

    old.request(json!({"type": 5, "room_id": room, "msg_id": first}))
        .unwrap();
    assert_eq!(next_of_type(&mut old, 17)["power"], 4, "a delete lowers it");
    old.request(json!({"type": 6, "room_id": room})).unwrap();
    assert_eq!(next_of_type(&mut old, 17)["power"], 0, "a cleared room has none");

    // The name-dialect member got the messages and no power pushes.
    bob.client
        .set_timeout(std::time::Duration::from_millis(300))
        .unwrap();
    while let Ok(msg) = bob.client.recv() {
        assert_ne!(msg["type"], "RQ_UPD_ROOM_POWR", "{msg}");
    }
    bob.client.set_timeout(parley::client::DEFAULT_TIMEOUT).unwrap();
    // Nor may anyone send one.
    let refused = bob.req(json!({"type": "RQ_UPD_ROOM_POWR", "room_id": room, "power": 1}));
    assert_eq!(refused["error_code"], "ER_BAD_REQUEST", "{refused}");
}
