//! One ordered write path: pushes leave in commit order, every member sees
//! the same order, presence settles to the truth, and a small write queue
//! under many senders still answers everyone.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{assert_error, assert_type, message_ids, start_with, TestServer, User};

/// A server that lets these tests send as fast as they can.
fn unthrottled() -> TestServer {
    start_with(|c| {
        c.msg_burst = 1_000_000;
        c.msg_rate_per_sec = 1e6;
    })
}

/// The events of one room as a member saw them, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Msg(i64),
    Edit(i64),
    Del(i64),
    Clear,
}

fn event_of(msg: &Value, room: i64) -> Option<Event> {
    if msg["room_id"] != room {
        return None;
    }
    let id = |field: &str| msg[field].as_i64().unwrap();
    match msg["type"].as_str()? {
        "RQ_MSG" => Some(Event::Msg(id("message_id"))),
        "RQ_EDIT_MSG" => Some(Event::Edit(id("msg_id"))),
        "RQ_DEL_MSG" => Some(Event::Del(id("msg_id"))),
        "RQ_DEL_HIST" => Some(Event::Clear),
        _ => None,
    }
}

/// Reads a member's pushes until the message with `last` as its text.
fn events_until(user: &mut User, room: i64, last: &str) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let msg = user.client.recv().expect("pushes keep coming");
        if let Some(event) = event_of(&msg, room) {
            events.push(event);
        }
        if msg["type"] == "RQ_MSG" && msg["message"] == last {
            return events;
        }
    }
}

fn joined(server: &TestServer, login: &str, room: i64) -> User {
    let mut user = server.user(login);
    assert_type(
        &user.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    user
}

/// Messages, edits, deletes, history clears and file messages from three
/// concurrent writers: two members see exactly the same sequence, message
/// ids only grow, and the history that remains is exactly what the pushes
/// say (no message pushed before a clear survives it, none after is lost).
#[test]
fn pushes_follow_commit_order_and_every_member_sees_the_same() {
    let server = unthrottled();
    let mut owner = server.user("owner");
    let room = owner.new_room("busy", "DB_GLOBAL_CHAT");
    let editor = joined(&server, "editor", room);
    let uploader = joined(&server, "uploader", room);
    let mut watchers = [joined(&server, "watch1", room), joined(&server, "watch2", room)];
    // Everyone has joined: what the watchers get from here on is the test.
    for watcher in &mut watchers {
        assert_type(&watcher.req(json!({"type": "RQ_PING"})), "RQ_PING");
        while watcher.client.pending().front().is_some() {
            watcher.client.recv().unwrap();
        }
    }

    let owner_thread = std::thread::spawn(move || {
        for i in 0..60 {
            let reply = if i % 15 == 14 {
                owner.req(json!({"type": "RQ_DEL_HIST", "room_id": room}))
            } else {
                owner.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("owner {i}")}))
            };
            assert!(reply["type"] != "RQ_ERROR_MSG", "{reply}");
        }
        owner
    });
    let editor_thread = std::thread::spawn(move || {
        let mut editor = editor;
        for i in 0..60 {
            let sent =
                editor.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("editor {i}")}));
            assert_type(&sent, "RQ_MSG");
            let id = sent["message_id"].as_i64().unwrap();
            // Either may meet a clear that came first: then the message is gone.
            let reply = if i % 2 == 0 {
                editor.req(json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": id, "msg": format!("edited {i}")}))
            } else {
                editor.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": id}))
            };
            if reply["type"] == "RQ_ERROR_MSG" {
                assert_error(&reply, "ER_NOT_FOUND");
            }
        }
    });
    let uploader_thread = std::thread::spawn(move || {
        let mut uploader = uploader;
        for i in 0..15 {
            let bytes = vec![i as u8; 1000 + i];
            let reply = uploader
                .client
                .upload(room, &format!("f{i}.bin"), &bytes, None)
                .unwrap();
            assert_type(&reply, "RQ_MSG");
            let sent =
                uploader.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("uploader {i}")}));
            assert_type(&sent, "RQ_MSG");
        }
    });
    editor_thread.join().unwrap();
    uploader_thread.join().unwrap();
    let mut owner = owner_thread.join().unwrap();
    assert_type(
        &owner.req(json!({"type": "RQ_MSG", "room_id": room, "message": "the end"})),
        "RQ_MSG",
    );

    let [mut first, mut second] = watchers;
    let seen = events_until(&mut first, room, "the end");
    assert_eq!(
        seen,
        events_until(&mut second, room, "the end"),
        "members saw different orders"
    );

    let ids: Vec<i64> = seen
        .iter()
        .filter_map(|e| match e {
            Event::Msg(id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 60 - 4 + 60 + 30 + 1, "every message was pushed");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids out of order: {ids:?}");
    assert_eq!(seen.iter().filter(|e| **e == Event::Clear).count(), 4);

    // What the pushes say must survive: messages after the last clear that
    // were not deleted.
    let last_clear = seen.iter().rposition(|e| *e == Event::Clear).unwrap();
    let mut expected = Vec::new();
    for (i, event) in seen.iter().enumerate() {
        match event {
            Event::Msg(id) if i > last_clear => expected.push(*id),
            Event::Del(id) => expected.retain(|m| m != id),
            Event::Edit(id) => assert!(
                seen[..i].contains(&Event::Msg(*id)),
                "an edit of {id} arrived before its message"
            ),
            _ => {}
        }
    }
    let history = first.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 500}));
    let mut stored = message_ids(&history, "messages");
    stored.sort_unstable();
    assert_eq!(stored, expected, "the history disagrees with the pushes");
}

/// The presence pushes `watcher` receives about `user_id` until nothing
/// more comes for `quiet`; returns the last one's `online`.
fn settled_presence(watcher: &mut User, user_id: i64, quiet: Duration) -> Option<bool> {
    watcher.client.set_timeout(quiet).unwrap();
    let mut last = None;
    while let Ok(msg) = watcher.client.recv() {
        if msg["type"] == "RQ_PRESENCE" && msg["user_id"] == user_id {
            last = msg["online"].as_bool();
        }
    }
    watcher
        .client
        .set_timeout(parley::client::DEFAULT_TIMEOUT)
        .unwrap();
    last
}

/// A user connecting and disconnecting on several connections at once, as
/// fast as it can: friends end up told the true state, both ways.
#[test]
fn presence_settles_to_the_truth_after_rapid_reconnects() {
    let server = unthrottled();
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    assert_type(
        &alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "bob"})),
        "RQ_ADD_FRIEND",
    );
    let (bob_id, token) = (bob.id, bob.token.clone());
    drop(bob);
    let quiet = Duration::from_millis(2500);
    assert_eq!(settled_presence(&mut alice, bob_id, quiet), Some(false));
    let addr = server.addr;
    let flap = |token: String| {
        std::thread::spawn(move || {
            for _ in 0..15 {
                let mut c = parley::client::Client::connect(addr).unwrap();
                assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
            }
        })
    };
    for stay_online in [true, false] {
        let threads: Vec<_> = (0..4).map(|_| flap(token.clone())).collect();
        for t in threads {
            t.join().unwrap();
        }
        let staying = if stay_online {
            let mut c = parley::client::Client::connect(addr).unwrap();
            assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
            Some(c)
        } else {
            None
        };
        // Announcements are coalesced to one a second: 2.5 s of quiet is settled.
        let told = settled_presence(&mut alice, bob_id, quiet);
        assert_eq!(told, Some(stay_online), "alice was last told the wrong state");
        let info = alice.req(json!({"type": "RQ_MEMBER_INFO", "user_id": bob_id}));
        assert_eq!(info["online"], stay_online, "{info}");
        drop(staying);
    }
}

/// With a writer queue of one, eight senders at once are all answered
/// promptly (stored, or ER_BUSY to retry), and everything retried is stored.
/// The server's own writes (presence, here) take no client's place.
#[test]
fn a_queue_of_one_answers_eight_concurrent_senders() {
    let server = start_with(|c| {
        c.job_queue = 1;
        c.msg_burst = 1_000_000;
        c.msg_rate_per_sec = 1e6;
    });
    let mut owner = server.user("owner");
    let room = owner.new_room("tight", "DB_GLOBAL_CHAT");
    let senders: Vec<User> = (0..8)
        .map(|i| joined(&server, &format!("sender{i}"), room))
        .collect();
    let threads: Vec<_> = senders
        .into_iter()
        .map(|mut sender| {
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                let mut busy = 0;
                for i in 0..40 {
                    loop {
                        let start = Instant::now();
                        let reply = sender.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("{} {i}", sender.login)}));
                        slowest = slowest.max(start.elapsed());
                        if reply["type"] == "RQ_MSG" {
                            break;
                        }
                        assert_error(&reply, "ER_BUSY");
                        busy += 1;
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
                (slowest, busy)
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for t in threads {
        let (s, _busy) = t.join().unwrap();
        slowest = slowest.max(s);
    }
    assert!(slowest < Duration::from_secs(3), "an answer took {slowest:?}");
    let history = owner.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 500}));
    let texts: HashSet<String> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts.len(), 320, "every acknowledged message is stored once");
}

/// Writes that fail in the writer's batch (refused by its checks) fail
/// alone: the messages batched with them are all stored and pushed.
#[test]
fn a_failing_write_in_a_batch_fails_only_itself() {
    let server = unthrottled();
    let mut owner = server.user("owner");
    let room = owner.new_room("mixed", "DB_GLOBAL_CHAT");
    let mut pest = joined(&server, "pest", room);
    let mut senders: Vec<User> = (0..4)
        .map(|i| joined(&server, &format!("fine{i}"), room))
        .collect();
    let first = senders[0].req(json!({"type": "RQ_MSG", "room_id": room, "message": "not yours"}));
    let not_yours = first["message_id"].as_i64().unwrap();
    let pest_thread = std::thread::spawn(move || {
        for i in 0..100 {
            let (req, code) = match i % 3 {
                0 => (
                    json!({"type": "RQ_EDIT_MSG", "room_id": room, "msg_id": not_yours, "msg": "mine now"}),
                    "ER_FORBIDDEN",
                ),
                1 => (json!({"type": "RQ_DEL_HIST", "room_id": room}), "ER_FORBIDDEN"),
                _ => (
                    json!({"type": "RQ_MSG", "room_id": room + 1000, "message": "nowhere"}),
                    "ER_NOT_FOUND",
                ),
            };
            assert_error(&pest.req(req), code);
        }
    });
    let threads: Vec<_> = senders
        .drain(..)
        .map(|mut sender| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let reply = sender.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("{} {i}", sender.login)}));
                    assert_type(&reply, "RQ_MSG");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    pest_thread.join().unwrap();
    let history = owner.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 500}));
    assert_eq!(history["messages"].as_array().unwrap().len(), 201, "{history}");
    let edited = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["message_id"] == not_yours)
        .unwrap();
    assert_eq!(edited["message"], "not yours");
}
