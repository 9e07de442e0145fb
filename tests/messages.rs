//! Messages over real TCP: sending and its recipients, edits, deletes,
//! history paging, search, read markers, the rate limit, durability.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{
    assert_error, assert_silent, assert_type, message_ids as ids_of, start_in, start_with, TestServer, User,
};

const QUIET: Duration = Duration::from_millis(150);

/// A server without the message rate limit getting in the way of bulk sends.
fn fast_server() -> TestServer {
    start_with(|c| {
        c.msg_rate_per_sec = 1_000_000.0;
        c.msg_burst = 1_000_000;
        c.durability = parley::config::Durability::Normal;
    })
}

fn send(user: &mut User, room: i64, text: &str) -> Value {
    user.req(json!({"type": "RQ_MSG", "room_id": room, "message": text, "msg_type": "DB_TEXT_MSG"}))
}

/// Sends `n` messages pipelined, at most `SEND_WINDOW` unanswered at a
/// time (so a slower store is not asked for more than the overload limit
/// lets wait); returns their ids in order.
fn send_many(user: &mut User, room: i64, n: usize, prefix: &str) -> Vec<i64> {
    const SEND_WINDOW: usize = 250;
    let mut ids = Vec::with_capacity(n);
    let mut sent = 0;
    while ids.len() < n {
        if sent < n && sent - ids.len() < SEND_WINDOW {
            let window = (n - sent).min(SEND_WINDOW - (sent - ids.len()));
            let mut batch = String::new();
            for i in sent..sent + window {
                batch.push_str(&format!("{}\n", json!({"type": "RQ_MSG", "room_id": room, "message": format!("{prefix} {i}"), "req_id": format!("bulk{i}")})));
            }
            user.client.send_raw(batch.as_bytes()).unwrap();
            sent += window;
        }
        let msg = user.client.recv().unwrap();
        if msg["req_id"].as_str().is_some_and(|r| r.starts_with("bulk")) {
            assert_type(&msg, "RQ_MSG");
            ids.push(msg["message_id"].as_i64().unwrap());
        }
    }
    ids
}

fn two_in_a_room(server: &TestServer) -> (User, User, i64) {
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let room = alice.new_room("General", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    alice.expect("RQ_NEW_MEMBER");
    bob.expect("RQ_NEW_MEMBER");
    (alice, bob, room)
}

#[test]
fn a_message_reaches_every_member_connection_once() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let mut alice2 = server.connect();
    assert_type(&alice2.resume(&alice.token).unwrap(), "RQ_TOKEN");
    let mut carol = server.user("carol");
    let reply = send(&mut alice, room, "  hello bob  ");
    assert_type(&reply, "RQ_MSG");
    assert_eq!(reply["message"], "hello bob");
    assert_eq!(reply["room_id"], room);
    assert_eq!(reply["user_id"], alice.id);
    assert_eq!(reply["login"], "alice");
    assert_eq!(reply["msg_type"], "DB_TEXT_MSG");
    assert_eq!(reply["edited"], false);
    assert_eq!(reply["power"], 9, "a message's power is its text's bytes");
    assert!(reply["date"].as_i64().unwrap() > 1_600_000_000_000);
    let mut pushed = reply.clone();
    pushed.as_object_mut().unwrap().remove("req_id");
    assert_eq!(bob.expect("RQ_MSG"), pushed);
    assert_eq!(alice2.recv_type("RQ_MSG").unwrap(), pushed);
    assert_silent(&mut bob.client, QUIET);
    assert_silent(&mut alice2, QUIET);
    assert_silent(&mut carol.client, QUIET);
    let sticker = bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "smile", "msg_type": 3}));
    assert_eq!(sticker["msg_type"], "DB_STICKER");
    assert_eq!(sticker["power"], 5);
}

#[test]
fn send_errors_change_nothing() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let mut carol = server.user("carol");
    assert_error(&send(&mut carol, room, "hi"), "ER_FORBIDDEN");
    assert_error(&send(&mut alice, 9999, "hi"), "ER_NOT_FOUND");
    assert_error(&send(&mut alice, room, "   "), "ER_BAD_REQUEST");
    assert_error(&send(&mut alice, room, &"x".repeat(4001)), "ER_TOO_LARGE");
    assert_type(&send(&mut alice, room, &"é".repeat(4000)), "RQ_MSG");
    let file =
        alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "f", "msg_type": "DB_FILE_MSG"}));
    assert_error(&file, "ER_BAD_REQUEST");
    assert_error(
        &alice.req(json!({"type": "RQ_MSG", "room_id": room})),
        "ER_BAD_REQUEST",
    );
    alice.req(json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": bob.id}));
    assert_error(&send(&mut bob, room, "let me in"), "ER_BANNED");
    assert_error(
        &bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room})),
        "ER_BANNED",
    );
    assert_error(
        &bob.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "x", "room_id": room})),
        "ER_BANNED",
    );
    let history = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "date": 0, "count": 50}));
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
}

#[test]
fn edit_is_for_the_author_and_marks_the_message() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let id = send(&mut alice, room, "teh typo")["message_id"].as_i64().unwrap();
    bob.expect("RQ_MSG");
    let reply = alice.req(json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id, "msg": "the typo"}));
    assert_eq!(reply["type"], "RQ_EDIT_MSG");
    assert_eq!(
        bob.expect("RQ_EDIT_MSG"),
        json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id, "msg": "the typo", "power": 8})
    );
    assert_error(
        &bob.req(json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id, "msg": "mine now"})),
        "ER_FORBIDDEN",
    );
    let other = alice.new_room("Other", "DB_GLOBAL_CHAT");
    assert_error(
        &alice.req(json!({"type": "RQ_EDIT_MSG", "room_id": other, "msg_id": id, "msg": "x"})),
        "ER_NOT_FOUND",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id + 50, "msg": "x"})),
        "ER_NOT_FOUND",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id, "msg": ""})),
        "ER_BAD_REQUEST",
    );
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(history["messages"][0]["message"], "the typo");
    assert_eq!(history["messages"][0]["edited"], true);
}

#[test]
fn delete_by_author_or_moderator_in_the_named_room_only() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let mut carol = server.user("carol");
    carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    let by_alice = send(&mut alice, room, "alice's")["message_id"].as_i64().unwrap();
    let by_bob = send(&mut bob, room, "bob's")["message_id"].as_i64().unwrap();
    let by_bob2 = send(&mut bob, room, "bob's again")["message_id"]
        .as_i64()
        .unwrap();
    // A simple member cannot delete others' messages.
    assert_error(
        &carol.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": by_alice})),
        "ER_FORBIDDEN",
    );
    // A mismatched room deletes nothing.
    let other = alice.new_room("Other", "DB_GLOBAL_CHAT");
    assert_error(
        &alice.req(json!({"type": "RQ_DEL_MSG", "room_id": other, "msg_id": by_bob})),
        "ER_NOT_FOUND",
    );
    // The author may; so may a moderator (alice promotes carol).
    let reply = bob.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": by_bob}));
    assert_eq!(reply["type"], "RQ_DEL_MSG");
    assert_eq!(
        alice.expect("RQ_DEL_MSG"),
        json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": by_bob})
    );
    alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": carol.id, "role": "DB_MODERATOR"}));
    assert_type(
        &carol.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": by_bob2})),
        "RQ_DEL_MSG",
    );
    let history = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(ids_of(&history, "messages"), vec![by_alice]);
    assert_eq!(
        history["messages"][0]["power"],
        history["messages"][0]["message"].as_str().unwrap().len()
    );
    assert_error(
        &alice.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": by_bob})),
        "ER_NOT_FOUND",
    );
}

#[test]
fn clearing_history_is_for_owner_and_admins() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    send(&mut alice, room, "searchable words");
    send(&mut bob, room, "more searchable words");
    alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": bob.id, "role": "DB_MODERATOR"}));
    assert_error(
        &bob.req(json!({"type": "RQ_DEL_HIST", "room_id": room})),
        "ER_FORBIDDEN",
    );
    let reply = alice.req(json!({"type": "RQ_DEL_HIST", "room_id": room}));
    assert_eq!(reply["type"], "RQ_DEL_HIST");
    assert_eq!(
        bob.expect("RQ_DEL_HIST"),
        json!({"type": "RQ_DEL_HIST", "room_id": room})
    );
    assert_eq!(
        ids_of(
            &alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room})),
            "messages"
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        ids_of(
            &alice.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "searchable"})),
            "msgs"
        ),
        Vec::<i64>::new()
    );
    let rooms = alice.req(json!({"type": "RQ_GET_ROOMS"}));
    assert_eq!(rooms["rooms"][0]["power"], 0);
}

#[test]
fn paging_a_thousand_messages_has_no_gap_and_no_duplicate() {
    let server = fast_server();
    let (mut alice, _bob, room) = two_in_a_room(&server);
    let sent = send_many(&mut alice, room, 1000, "message");
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "ids increase");

    // Backwards from the newest, 37 at a time (1000 is not a multiple of 37).
    let mut seen: Vec<i64> = Vec::new();
    let mut page = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 37}));
    loop {
        let ids = ids_of(&page, "messages");
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
        seen.extend(&ids);
        if ids.len() < 37 {
            break;
        }
        let oldest = *ids.last().unwrap();
        page = alice.req(json!({"type": "RQ_OLD_MSGS", "room_id": room, "before_id": oldest, "count": 37}));
        assert_type(&page, "RQ_OLD_MSGS");
    }
    seen.reverse();
    assert_eq!(seen, sent);

    // Catching up from a message in the middle: newest page after it, then
    // back with before_id/after_id until a short page.
    let last_seen = sent[136];
    let mut caught: Vec<i64> = Vec::new();
    let mut page =
        alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "after_id": last_seen, "count": 41}));
    loop {
        let ids = ids_of(&page, "messages");
        caught.extend(&ids);
        if ids.len() < 41 {
            break;
        }
        page = alice.req(json!({"type": "RQ_OLD_MSGS", "room_id": room, "before_id": ids.last(), "after_id": last_seen, "count": 41}));
    }
    caught.sort();
    assert_eq!(caught, sent[137..].to_vec());
    let unique: HashSet<_> = caught.iter().collect();
    assert_eq!(unique.len(), caught.len());

    // Many messages share a millisecond; date cursors are exclusive bounds.
    let all =
        alice.req(json!({"type": "RQ_OLD_MSGS", "room_id": room, "count": 500, "before_id": sent[500]}));
    let msgs = all["messages"].as_array().unwrap();
    let date = msgs[250]["date"].as_i64().unwrap();
    let newer = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "date": date, "count": 500}));
    assert!(newer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["date"].as_i64().unwrap() > date));
    let older = alice.req(json!({"type": "RQ_OLD_MSGS", "room_id": room, "date": date, "count": 500}));
    assert!(older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["date"].as_i64().unwrap() < date));
    let at_date = msgs.iter().filter(|m| m["date"] == date).count();
    let total =
        newer["messages"].as_array().unwrap().len() + older["messages"].as_array().unwrap().len() + at_date;
    assert!(total <= 1000);
    // Page sizes: default 50, capped at 500, at least 1.
    assert_eq!(
        ids_of(
            &alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room})),
            "messages"
        )
        .len(),
        50
    );
    assert_eq!(
        ids_of(
            &alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 9999})),
            "messages"
        )
        .len(),
        500
    );
    assert_error(
        &alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 0})),
        "ER_BAD_REQUEST",
    );
}

#[test]
fn search_edge_cases() {
    let server = fast_server();
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let other = alice.new_room("Other", "DB_GLOBAL_CHAT");
    let hidden = bob.new_room("Bob only", "DB_PRIVAT_CHAT");
    let cafe = send(&mut alice, room, "Meet at the Café Müller, 5pm!")["message_id"]
        .as_i64()
        .unwrap();
    let quoted = send(
        &mut alice,
        room,
        "he said \"quote\" (twice) OR maybe NEAR the end* - done",
    )["message_id"]
        .as_i64()
        .unwrap();
    let in_other = send(&mut alice, other, "café in the other room")["message_id"]
        .as_i64()
        .unwrap();
    send(&mut bob, hidden, "café secret")["message_id"]
        .as_i64()
        .unwrap();
    bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "cafe", "msg_type": "DB_STICKER"}));
    let search = |u: &mut User, q: &str, room: Option<i64>| {
        let mut msg = json!({"type": "RQ_SEARCH_MSGS", "msg": q});
        if let Some(r) = room {
            msg["room_id"] = json!(r);
        }
        let reply = u.req(msg);
        assert_type(&reply, "RQ_SEARCH_MSGS");
        ids_of(&reply, "msgs")
    };
    // Prefixes, case and accents.
    assert_eq!(search(&mut alice, "caf", Some(room)), vec![cafe]);
    assert_eq!(search(&mut alice, "CAFE mul", Some(room)), vec![cafe]);
    assert_eq!(search(&mut alice, "muller", Some(room)), vec![cafe]);
    assert_eq!(search(&mut alice, "café müller 5pm", Some(room)), vec![cafe]);
    assert_eq!(
        search(&mut alice, "afe", Some(room)),
        Vec::<i64>::new(),
        "prefixes, not substrings"
    );
    assert_eq!(
        search(&mut alice, "cafe nowhere", Some(room)),
        Vec::<i64>::new(),
        "every word must match"
    );
    // FTS syntax in a query is text, never an error.
    for q in [
        "\"quote\"",
        "(twice)",
        "OR",
        "NEAR(the end)",
        "end*",
        "- done",
        "\"",
        "*",
        "())(",
        "a:b",
        "AND OR NOT",
        "^start",
    ] {
        let reply = alice.req(json!({"type": "RQ_SEARCH_MSGS", "msg": q, "room_id": room}));
        assert_type(&reply, "RQ_SEARCH_MSGS");
    }
    assert_eq!(search(&mut alice, "\"quote\" (twice)", Some(room)), vec![quoted]);
    assert_eq!(search(&mut alice, "NEAR the end*", Some(room)), vec![quoted]);
    assert_eq!(search(&mut alice, "!!!", Some(room)), Vec::<i64>::new());
    // Scope: all of the caller's rooms, newest first, never others' rooms.
    assert_eq!(search(&mut alice, "café", None), vec![in_other, cafe]);
    assert_eq!(search(&mut bob, "café", None), {
        let mut v = search(&mut bob, "secret", None);
        v.push(cafe);
        v
    });
    assert_error(
        &alice.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "x", "room_id": hidden})),
        "ER_FORBIDDEN",
    );
    // The old name is accepted.
    let reply = alice.req(json!({"type": "RQ_SEARCH_MSG", "msg": "cafe", "room_id": room}));
    assert_eq!(reply["type"], "RQ_SEARCH_MSGS");
    // At most 50, newest first.
    let ids = send_many(&mut alice, room, 60, "bulkword");
    let found = search(&mut alice, "bulkw", Some(room));
    assert_eq!(found.len(), 50);
    assert_eq!(found[0], *ids.last().unwrap());
    assert!(found.windows(2).all(|w| w[0] > w[1]));
    // A banned user's search no longer reaches the room.
    alice.req(json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": bob.id}));
    assert_eq!(search(&mut bob, "café", None), search(&mut bob, "secret", None));
}

#[test]
fn read_markers_and_unread_counts() {
    let server = start_with(|_| {});
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    let mut alice2 = server.connect();
    assert_type(&alice2.resume(&alice.token).unwrap(), "RQ_TOKEN");
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            send(&mut bob, room, &format!("m{i}"))["message_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    send(&mut alice, room, "my own message does not count");
    let rooms = alice.req(json!({"type": "RQ_GET_ROOMS", "date": 0}));
    assert_eq!(rooms["rooms"][0]["unread"], 5);
    let newest = rooms["rooms"][0]["last_msg_id"].as_i64().unwrap();
    assert!(newest > ids[4]);
    let reply = alice.req(json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": ids[2]}));
    assert_eq!(reply["type"], "RQ_MARK_READ");
    assert_eq!(reply["msg_id"], ids[2]);
    assert_eq!(
        alice2.recv_type("RQ_MARK_READ").unwrap(),
        json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": ids[2]})
    );
    assert_eq!(
        alice.req(json!({"type": "RQ_GET_ROOMS"}))["rooms"][0]["unread"],
        2
    );
    // Never backwards.
    assert_eq!(
        alice.req(json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": ids[0]}))["msg_id"],
        ids[2]
    );
    assert_eq!(
        alice.req(json!({"type": "RQ_GET_ROOMS"}))["rooms"][0]["unread"],
        2
    );
    // Never past the newest message.
    assert_eq!(
        alice.req(json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": newest + 1000}))["msg_id"],
        newest
    );
    assert_eq!(
        alice.req(json!({"type": "RQ_GET_ROOMS"}))["rooms"][0]["unread"],
        0
    );
    send(&mut bob, room, "new");
    assert_eq!(
        alice.req(json!({"type": "RQ_GET_ROOMS"}))["rooms"][0]["unread"],
        1
    );
    assert_eq!(
        bob.req(json!({"type": "RQ_GET_ROOMS"}))["rooms"][0]["unread"],
        1,
        "bob never marked alice's"
    );
    let mut carol = server.user("carol");
    assert_error(
        &carol.req(json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": 1})),
        "ER_FORBIDDEN",
    );
}

#[test]
fn message_rate_is_limited_per_user() {
    let server = start_with(|c| {
        c.msg_rate_per_sec = 1.0;
        c.msg_burst = 5;
    });
    let (mut alice, mut bob, room) = two_in_a_room(&server);
    for i in 0..5 {
        assert_type(&send(&mut alice, room, &format!("burst {i}")), "RQ_MSG");
    }
    assert_error(&send(&mut alice, room, "one too many"), "ER_RATE_LIMITED");
    assert_type(&send(&mut bob, room, "bob has his own bucket"), "RQ_MSG");
    std::thread::sleep(Duration::from_millis(1100));
    assert_type(&send(&mut alice, room, "refilled"), "RQ_MSG");
}

#[test]
fn history_survives_a_restart() {
    let server = start_with(|_| {});
    let (mut alice, _bob, room) = two_in_a_room(&server);
    let ids: Vec<i64> = (0..10)
        .map(|i| {
            send(&mut alice, room, &format!("keep {i}"))["message_id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let token = alice.token.clone();
    drop(alice);
    let (result, dir) = server.stop();
    result.unwrap();
    let server = start_in(dir, |_| {});
    let mut c = server.connect();
    assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
    let page = c
        .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 100}))
        .unwrap();
    let mut got = ids_of(&page, "messages");
    got.reverse();
    assert_eq!(got, ids);
    let found = c
        .request(json!({"type": "RQ_SEARCH_MSGS", "msg": "keep 7", "room_id": room}))
        .unwrap();
    assert_eq!(ids_of(&found, "msgs"), vec![ids[7]]);
}

/// What a client had acknowledged when its server was killed.
struct Killed {
    token: String,
    room: i64,
    acked: Vec<i64>,
}

/// Starts parleyd on `dir`, signs up, opens a room, sends `texts` (each
/// acknowledged), then kills the server with SIGKILL: no shutdown, no
/// checkpoint, no indexing pass.
fn send_then_kill(dir: &std::path::Path, texts: impl Iterator<Item = String>) -> Killed {
    let (mut child, addr) = crate::util::spawn_parleyd(dir);
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    let token = c.sign_up("alice", "pw").unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let room = c.request(json!({"type": "RQ_NEW_ROOM", "name": "r"})).unwrap()["id"]
        .as_i64()
        .unwrap();
    let acked = texts
        .map(|text| {
            let reply = c
                .request(json!({"type": "RQ_MSG", "room_id": room, "message": text}))
                .unwrap();
            reply["message_id"].as_i64().unwrap()
        })
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    Killed { token, room, acked }
}

#[test]
fn acknowledged_messages_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let start = || crate::util::spawn_parleyd(dir.path());
    let Killed { token, room, acked } = send_then_kill(dir.path(), (0..30).map(|i| format!("durable {i}")));
    let (mut child, addr) = start();
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
    let page = c
        .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 100}))
        .unwrap();
    let mut got = ids_of(&page, "messages");
    got.reverse();
    assert_eq!(got, acked);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Search is indexed behind the writer. Messages acknowledged just before
/// a kill -9 may be stored but not yet indexed; the next start indexes them
/// by itself (no search needed to ask), and search finds every one.
#[test]
fn messages_stored_but_not_indexed_at_a_crash_are_indexed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("parley.db");
    let start = || crate::util::spawn_parleyd(dir.path());
    // Killed well within the indexing delay.
    let Killed { token, room, acked } =
        send_then_kill(dir.path(), (0..10).map(|i| format!("crashproof {i}")));
    // (indexed up to, newest stored), read from the database directly.
    let progress = || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row(
            "SELECT (SELECT indexed_upto FROM search_progress), (SELECT max(id) FROM messages)",
            [],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?)),
        )
        .unwrap()
    };
    let (indexed, newest) = progress();
    assert_eq!(newest, *acked.last().unwrap());
    assert!(
        indexed < newest,
        "the last messages were not indexed before the kill"
    );

    let (mut child, addr) = start();
    crate::util::wait_until(Duration::from_secs(5), || {
        let (indexed, newest) = progress();
        indexed == newest
    });
    let mut c = parley::client::Client::connect(addr.as_str()).unwrap();
    assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
    let found = c
        .request(json!({"type": "RQ_SEARCH_MSGS", "msg": "crashpr", "room_id": room}))
        .unwrap();
    let mut got = ids_of(&found, "msgs");
    got.reverse();
    assert_eq!(got, acked);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A search finds a message the moment its sender has the acknowledgement,
/// even though the index is kept behind the writer.
#[test]
fn a_search_finds_every_message_acknowledged_before_it() {
    let server = start_with(|_| {});
    let mut alice = server.user("alice");
    let room = alice.new_room("r", "DB_PRIVAT_CHAT");
    for i in 0..20 {
        let reply = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("q{i}x word")}));
        assert_type(&reply, "RQ_MSG");
        let found = alice.req(json!({"type": "RQ_SEARCH_MSGS", "msg": format!("q{i}x"), "room_id": room}));
        assert_eq!(
            ids_of(&found, "msgs"),
            vec![reply["message_id"].as_i64().unwrap()],
            "{found}"
        );
    }
}
