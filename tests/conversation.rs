//! Conversation features (design.md §7) over real sockets: replies,
//! reactions, mentions, typing and pins, with their limits, permissions,
//! audiences, and the old-client rule.

use std::time::Duration;

use parley::client::password_digest;
use serde_json::{json, Value};

use crate::util::{assert_error, assert_silent, start_server, TestServer, User};

/// alice (owner) and bob in a room; carol signed up but not in it.
fn three(server: &TestServer) -> (User, User, User, i64) {
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let carol = server.user("carol");
    let room = alice.new_room("talk", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    alice.expect("RQ_NEW_MEMBER");
    bob.expect("RQ_NEW_MEMBER");
    (alice, bob, carol, room)
}

fn send(user: &mut User, room: i64, text: &str) -> Value {
    let reply = user.req(json!({"type": "RQ_MSG", "room_id": room, "message": text}));
    assert_eq!(reply["type"], "RQ_MSG", "{reply}");
    reply
}

fn id(msg: &Value) -> i64 {
    msg["message_id"].as_i64().unwrap()
}

#[test]
fn replies_quote_their_original_within_the_room() {
    let server = start_server();
    let (mut alice, mut bob, _carol, room) = three(&server);
    let original = send(&mut alice, room, "shall we meet at noon?");
    bob.expect("RQ_MSG");
    assert_eq!(original["reply_to"], 0);
    assert_eq!(original["reactions"], json!([]));
    let reply =
        bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "yes", "reply_to": id(&original)}));
    assert_eq!(reply["reply_to"], id(&original));
    assert_eq!(
        reply["reply_preview"],
        json!({"user_id": alice.id, "login": "alice", "message": "shall we meet at noon?"})
    );
    let pushed = alice.expect("RQ_MSG");
    assert_eq!(pushed["reply_preview"]["login"], "alice");
    let history = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(history["messages"][0]["reply_to"], id(&original));
    assert_eq!(
        history["messages"][0]["reply_preview"]["message"],
        "shall we meet at noon?"
    );

    // A reply to another room's message, or to none, is refused and stores nothing.
    let other = alice.new_room("elsewhere", "DB_GLOBAL_CHAT");
    let there = send(&mut alice, other, "over here");
    let refused = bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "x", "reply_to": id(&there)}));
    assert_error(&refused, "ER_NOT_FOUND");
    let refused = bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": "x", "reply_to": 999_999}));
    assert_error(&refused, "ER_NOT_FOUND");
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);

    // The original goes: the reply keeps its id, the preview goes.
    alice.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": id(&original)}));
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(history["messages"][0]["reply_to"], id(&original));
    assert!(history["messages"][0].get("reply_preview").is_none(), "{history}");
}

#[test]
fn reactions_toggle_are_counted_and_limited() {
    let server = start_server();
    let (mut alice, mut bob, mut carol, room) = three(&server);
    let msg = send(&mut alice, room, "lunch?");
    bob.expect("RQ_MSG");
    let react = |u: &mut User, emoji: &str, on: bool| {
        u.req(json!({"type": "RQ_REACT", "room_id": room, "msg_id": id(&msg), "emoji": emoji, "on": on}))
    };
    let r = react(&mut bob, "👍", true);
    assert_eq!(
        r,
        json!({"type": "RQ_REACT", "req_id": r["req_id"], "room_id": room, "msg_id": id(&msg), "user_id": bob.id,
               "login": "bob", "emoji": "👍", "on": true})
    );
    assert_eq!(alice.expect("RQ_REACT")["emoji"], "👍");
    react(&mut alice, "👍", true);
    bob.expect("RQ_REACT");
    react(&mut alice, "🎉", true);
    bob.expect("RQ_REACT");
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    let m = &history["messages"][0];
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "🎉", "count": 1}, {"emoji": "👍", "count": 2}])
    );
    assert_eq!(m["my_reactions"], json!(["👍"]));
    // Off again: one's own only.
    react(&mut bob, "👍", false);
    let history = alice.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(
        history["messages"][0]["reactions"],
        json!([{"emoji": "🎉", "count": 1}, {"emoji": "👍", "count": 1}])
    );
    assert_eq!(history["messages"][0]["my_reactions"], json!(["🎉", "👍"]));

    // Limits: whitespace, length, the 21st kind; strangers.
    assert_error(&react(&mut bob, "a b", true), "ER_BAD_REQUEST");
    assert_error(&react(&mut bob, &"x".repeat(33), true), "ER_BAD_REQUEST");
    for i in 0..18 {
        assert_eq!(react(&mut bob, &format!("e{i}"), true)["type"], "RQ_REACT");
    }
    assert_error(&react(&mut bob, "one-too-many", true), "ER_TOO_LARGE");
    assert_eq!(
        react(&mut bob, "👍", true)["type"],
        "RQ_REACT",
        "an emoji already there is no new kind"
    );
    assert_error(&react(&mut carol, "👍", true), "ER_FORBIDDEN");
    let elsewhere = carol.new_room("mine", "DB_GLOBAL_CHAT");
    let refused = bob.req(
        json!({"type": "RQ_REACT", "room_id": elsewhere, "msg_id": id(&msg), "emoji": "👍", "on": true}),
    );
    assert_error(&refused, "ER_FORBIDDEN");
}

#[test]
fn mentions_name_members_and_wait_for_them() {
    let server = start_server();
    let (mut alice, bob, _carol, room) = three(&server);
    // carol is no member: her name is text only. bob is offline meanwhile.
    let bob_token = bob.token.clone();
    drop(bob);
    let msg = send(&mut alice, room, "@bob and @carol, and mail@bob.org");
    assert_eq!(msg["mentions"], json!([server_user_id(&server, "bob")]));
    send(&mut alice, room, "no names here");
    let other = alice.new_room("second", "DB_GLOBAL_CHAT");
    let mut bob = server.connect();
    bob.resume(&bob_token).unwrap();
    bob.request(json!({"type": "RQ_JOIN_ROOM", "room_id": other}))
        .unwrap();
    let second = send(&mut alice, other, "@BOB over here too");

    let rooms = bob.request(json!({"type": "RQ_GET_ROOMS", "date": 0})).unwrap();
    let counts: Vec<(i64, i64)> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["mentions"].as_i64().unwrap()))
        .collect();
    assert_eq!(counts, vec![(room, 1), (other, 1)], "{rooms}");
    let mentions = bob.request(json!({"type": "RQ_GET_MENTIONS"})).unwrap();
    let ids: Vec<i64> = mentions["msgs"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids, vec![id(&second), id(&msg)], "newest first, across rooms");
    let older = bob
        .request(json!({"type": "RQ_GET_MENTIONS", "before_id": id(&second), "count": 5}))
        .unwrap();
    assert_eq!(older["msgs"][0]["message_id"], id(&msg));

    // The read marker clears the room's count.
    bob.request(json!({"type": "RQ_MARK_READ", "room_id": room, "msg_id": id(&msg)}))
        .unwrap();
    let rooms = bob.request(json!({"type": "RQ_GET_ROOMS", "date": 0})).unwrap();
    assert_eq!(rooms["rooms"][0]["mentions"], 0);
    assert_eq!(rooms["rooms"][1]["mentions"], 1);
    // Stickers name nobody.
    let sticker =
        alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "@bob", "msg_type": "DB_STICKER"}));
    assert_eq!(sticker["mentions"], json!([]));
}

fn server_user_id(server: &TestServer, login: &str) -> i64 {
    let mut c = server.connect();
    c.log_in(login, &format!("pw-{login}")).unwrap()["user_id"]
        .as_i64()
        .unwrap()
}

#[test]
fn typing_reaches_the_others_at_most_every_three_seconds() {
    let server = start_server();
    let (mut alice, mut bob, mut carol, room) = three(&server);
    let answer = alice.req(json!({"type": "RQ_TYPING", "room_id": room}));
    assert_eq!(
        answer,
        json!({"type": "RQ_TYPING", "req_id": answer["req_id"], "room_id": room})
    );
    assert_eq!(
        bob.expect("RQ_TYPING"),
        json!({"type": "RQ_TYPING", "room_id": room, "user_id": alice.id, "login": "alice"})
    );
    // Again at once: answered, not passed on.
    assert_eq!(
        alice.req(json!({"type": "RQ_TYPING", "room_id": room}))["type"],
        "RQ_TYPING"
    );
    assert_silent(&mut bob.client, Duration::from_millis(300));
    assert_silent(&mut alice.client, Duration::from_millis(100));
    assert_error(
        &carol.req(json!({"type": "RQ_TYPING", "room_id": room})),
        "ER_FORBIDDEN",
    );
    // Not stored: history has nothing of it.
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room}));
    assert_eq!(history["messages"], json!([]));
    std::thread::sleep(Duration::from_millis(3100));
    alice.req(json!({"type": "RQ_TYPING", "room_id": room}));
    bob.expect("RQ_TYPING");
}

#[test]
fn pins_are_for_moderators_and_limited_to_fifty() {
    let server = start_server();
    let (mut alice, mut bob, mut carol, room) = three(&server);
    let first = send(&mut alice, room, "the agenda");
    bob.expect("RQ_MSG");
    let pin = |u: &mut User, msg: i64, pinned: bool| {
        u.req(json!({"type": "RQ_PIN", "room_id": room, "msg_id": msg, "pinned": pinned}))
    };
    assert_error(&pin(&mut bob, id(&first), true), "ER_FORBIDDEN");
    let pinned = pin(&mut alice, id(&first), true);
    assert_eq!(
        pinned,
        json!({"type": "RQ_PIN", "req_id": pinned["req_id"], "room_id": room, "msg_id": id(&first), "pinned": true,
               "user_id": alice.id})
    );
    assert_eq!(bob.expect("RQ_PIN")["msg_id"], id(&first));
    alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": bob.id, "role": "DB_MODERATOR"}));
    let second = send(&mut bob, room, "the minutes");
    assert_eq!(
        pin(&mut bob, id(&second), true)["type"],
        "RQ_PIN",
        "moderators pin"
    );
    let pins = bob.req(json!({"type": "RQ_GET_PINS", "room_id": room}));
    let ids: Vec<i64> = pins["msgs"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids, vec![id(&second), id(&first)], "most recently pinned first");
    assert_error(
        &carol.req(json!({"type": "RQ_GET_PINS", "room_id": room})),
        "ER_FORBIDDEN",
    );
    pin(&mut alice, id(&second), false);
    let pins = alice.req(json!({"type": "RQ_GET_PINS", "room_id": room}));
    assert_eq!(pins["msgs"].as_array().unwrap().len(), 1);
    // The 51st pin is refused.
    for i in 0..49 {
        let m = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("m{i}")}));
        let m = if m["type"] == "RQ_MSG" {
            m
        } else {
            std::thread::sleep(Duration::from_millis(1100));
            send(&mut alice, room, &format!("m{i} again"))
        };
        assert_eq!(pin(&mut alice, id(&m), true)["type"], "RQ_PIN");
    }
    let last = send(&mut bob, room, "one more");
    assert_error(&pin(&mut alice, id(&last), true), "ER_TOO_LARGE");
}

/// Old (integer-dialect) clients get none of these pushes until they use a
/// code of 100 or more themselves, and the new fields do not disturb them.
#[test]
fn old_clients_get_no_conversation_pushes_until_they_ask() {
    let server = start_server();
    let (mut alice, _bob, _carol, room) = three(&server);
    server.user("olduser");
    let mut old = server.connect();
    let logged = old
        .request(json!({"type": 0, "login": "olduser", "pass": password_digest("pw-olduser"), "name": "", "desc": ""}))
        .unwrap();
    assert_eq!(logged["type"], 2);
    let joined = old.request(json!({"type": 14, "room_id": room})).unwrap();
    assert_eq!(joined["type"], 14, "{joined}");
    let msg = send(&mut alice, room, "hello @olduser");
    let got = loop {
        let m = old.recv().unwrap();
        if m["type"] == 3 {
            break m;
        }
    };
    assert_eq!(got["message"], "hello @olduser");
    alice.req(json!({"type": "RQ_REACT", "room_id": room, "msg_id": id(&msg), "emoji": "👍"}));
    alice.req(json!({"type": "RQ_TYPING", "room_id": room}));
    alice.req(json!({"type": "RQ_PIN", "room_id": room, "msg_id": id(&msg)}));
    old.set_timeout(Duration::from_millis(400)).unwrap();
    while let Ok(m) = old.recv() {
        assert!(m["type"].as_i64().unwrap() < 100, "an old client got {m}");
    }
    old.set_timeout(parley::client::DEFAULT_TIMEOUT).unwrap();
    // Once it speaks a Parley code, it gets them.
    let pins = old.request(json!({"type": 116, "room_id": room})).unwrap();
    assert_eq!(pins["type"], 116);
    std::thread::sleep(Duration::from_millis(3100));
    alice.req(json!({"type": "RQ_TYPING", "room_id": room}));
    let typing = loop {
        let m = old.recv().unwrap();
        if m["type"] == 114 {
            break m;
        }
    };
    assert_eq!(typing["login"], "alice");
}
