//! Friends, direct messages, presence and offline catch-up over real TCP.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{assert_error, assert_silent, assert_type, start_with, wait_until, TestServer, User};

const QUIET: Duration = Duration::from_millis(150);

fn server() -> TestServer {
    start_with(|c| {
        c.msg_rate_per_sec = 1_000_000.0;
        c.msg_burst = 1_000_000;
        c.durability = parley::config::Durability::Normal;
    })
}

fn befriend(a: &mut User, b: &mut User) {
    let reply = a.req(json!({"type": "RQ_ADD_FRIEND", "login": b.login}));
    assert_eq!(reply["type"], "RQ_ADD_FRIEND", "{reply}");
    b.expect("RQ_ADD_FRIEND");
}

fn open_dm(a: &mut User, login: &str) -> Value {
    let reply = a.req(json!({"type": "RQ_OPEN_DM", "login": login}));
    assert_type(&reply, "RQ_OPEN_DM");
    reply["room"].clone()
}

#[test]
fn friendship_is_mutual_and_both_sides_are_told() {
    let server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let reply = alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "bob"}));
    assert_eq!(reply["user_id"], bob.id);
    assert_eq!(reply["login"], "bob");
    assert_eq!(
        bob.expect("RQ_ADD_FRIEND"),
        json!({"type": "RQ_ADD_FRIEND", "user_id": alice.id, "login": "alice"})
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "bob"})),
        "ER_CONFLICT",
    );
    assert_error(
        &bob.req(json!({"type": "RQ_ADD_FRIEND", "login": "alice"})),
        "ER_CONFLICT",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "alice"})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_FRIEND", "login": "nobody"})),
        "ER_NOT_FOUND",
    );
    let friends = bob.req(json!({"type": "RQ_GET_FRIENDS"}));
    assert_eq!(
        friends["friends"],
        json!([{"user_id": alice.id, "login": "alice", "name": "alice", "online": true}])
    );

    let reply = bob.req(json!({"type": "RQ_DEL_FRIEND", "login": "alice"}));
    assert_eq!(reply["type"], "RQ_DEL_FRIEND");
    assert_eq!(
        alice.expect("RQ_DEL_FRIEND"),
        json!({"type": "RQ_DEL_FRIEND", "user_id": bob.id, "login": "bob"})
    );
    assert_eq!(alice.req(json!({"type": "RQ_GET_FRIENDS"}))["friends"], json!([]));
    assert_error(
        &bob.req(json!({"type": "RQ_DEL_FRIEND", "login": "alice"})),
        "ER_NOT_FOUND",
    );
}

#[test]
fn direct_messages_between_friends() {
    let server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    assert_error(
        &alice.req(json!({"type": "RQ_OPEN_DM", "login": "bob"})),
        "ER_FORBIDDEN",
    );
    befriend(&mut alice, &mut bob);
    let room = open_dm(&mut alice, "bob");
    let room_id = room["id"].as_i64().unwrap();
    assert_eq!(room["room_type"], "DB_LS_CHAT");
    assert_eq!(room["peer"], json!({"user_id": bob.id, "login": "bob"}));
    let told = bob.expect("RQ_JOIN_ROOM");
    assert_eq!(told["id"], room_id);
    assert_eq!(told["peer"], json!({"user_id": alice.id, "login": "alice"}));
    // Asking again, from either side, gives the same room and tells nobody.
    assert_eq!(open_dm(&mut alice, "bob")["id"], room_id);
    assert_eq!(open_dm(&mut bob, "alice")["id"], room_id);
    assert_silent(&mut alice.client, QUIET);
    assert_silent(&mut bob.client, QUIET);

    // Messages work as in any room.
    let sent = alice.req(json!({"type": "RQ_MSG", "room_id": room_id, "message": "psst, bob"}));
    let id = sent["message_id"].as_i64().unwrap();
    assert_eq!(bob.expect("RQ_MSG")["message"], "psst, bob");
    assert_type(
        &alice.req(json!({"type": "RQ_EDIT_MSG", "room_id": room_id, "msg_id": id, "msg": "psst, Bob"})),
        "RQ_EDIT_MSG",
    );
    let found = bob.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "pss"}));
    assert_eq!(found["msgs"][0]["message_id"], id);
    let history = bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room_id}));
    assert_eq!(history["messages"][0]["message"], "psst, Bob");
    let rooms = bob.req(json!({"type": "RQ_GET_ROOMS"}));
    assert_eq!(rooms["rooms"][0]["peer"]["login"], "alice");
    assert_eq!(rooms["rooms"][0]["unread"], 1);

    // Strangers can neither read, post nor join; nobody leaves, renames, bans or adds.
    assert_error(
        &carol.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room_id})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_MSG", "room_id": room_id, "message": "hi"})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room_id})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "psst", "room_id": room_id})),
        "ER_FORBIDDEN",
    );
    assert_eq!(
        carol.req(json!({"type": "RQ_SEARCH_MSGS", "msg": "psst"}))["msgs"],
        json!([])
    );
    for refused in [
        json!({"type": "RQ_LEAVE_ROOM", "room_id": room_id}),
        json!({"type": "RQ_UPD_ROOM_NAME", "room_id": room_id, "room_name": "x"}),
        json!({"type": "RQ_BAN_MEMBER", "room_id": room_id, "user_id": bob.id}),
        json!({"type": "RQ_ADD_MEMBER", "room_id": room_id, "login": "carol"}),
        json!({"type": "RQ_DEL_ROOM", "room_id": room_id}),
    ] {
        assert_error(&alice.req(refused), "ER_FORBIDDEN");
    }
    assert_eq!(
        carol.req(json!({"type": "RQ_SEARCH_CH", "name": ""}))["rooms"],
        json!([])
    );

    // Unfriended: the history stays readable, but no more posting.
    alice.req(json!({"type": "RQ_DEL_FRIEND", "login": "bob"}));
    assert_error(
        &bob.req(json!({"type": "RQ_MSG", "room_id": room_id, "message": "hello?"})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_OPEN_DM", "login": "bob"})),
        "ER_FORBIDDEN",
    );
    assert_type(
        &bob.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room_id})),
        "RQ_GET_NEW_MSGS",
    );
    // Friends again: the same room.
    befriend(&mut alice, &mut bob);
    assert_eq!(open_dm(&mut bob, "alice")["id"], room_id);
}

#[test]
fn concurrent_first_dm_requests_make_one_room() {
    let server = server();
    for pair in 0..10 {
        let mut a = server.user(&format!("left{pair}"));
        let mut b = server.user(&format!("right{pair}"));
        befriend(&mut a, &mut b);
        let (a_token, b_token) = (a.token.clone(), b.token.clone());
        let (a_login, b_login) = (a.login.clone(), b.login.clone());
        let addr = server.addr;
        let open = move |token: String, peer: String| {
            std::thread::spawn(move || {
                let mut c = parley::client::Client::connect(addr).unwrap();
                c.resume(&token).unwrap();
                let reply = c.request(json!({"type": "RQ_OPEN_DM", "login": peer})).unwrap();
                reply["room"]["id"].as_i64().unwrap()
            })
        };
        let from_a = open(a_token, b_login);
        let from_b = open(b_token, a_login);
        let (x, y) = (from_a.join().unwrap(), from_b.join().unwrap());
        assert_eq!(x, y, "pair {pair} got two rooms");
        let rooms = a.req(json!({"type": "RQ_GET_ROOMS"}));
        assert_eq!(rooms["rooms"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn presence_follows_first_and_last_connection() {
    let server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    befriend(&mut alice, &mut bob);
    let bob_id = bob.id;
    let token = bob.token.clone();
    drop(bob);
    let offline = json!({"type": "RQ_PRESENCE", "user_id": bob_id, "online": false});
    let online = json!({"type": "RQ_PRESENCE", "user_id": bob_id, "online": true});
    // Presence is coalesced for up to a second: bob's own "online" (from his
    // sign-up) may be announced after the friendship, before his "offline".
    let mut first = alice.expect("RQ_PRESENCE");
    if first == online {
        first = alice.expect("RQ_PRESENCE");
    }
    assert_eq!(first, offline, "abrupt close of the only connection");
    // Two connections: one announcement when the first logs in.
    let mut b1 = server.connect();
    assert_type(&b1.resume(&token).unwrap(), "RQ_TOKEN");
    assert_eq!(alice.expect("RQ_PRESENCE"), online);
    let mut b2 = server.connect();
    assert_type(&b2.resume(&token).unwrap(), "RQ_TOKEN");
    assert_silent(&mut alice.client, QUIET);
    let friends = alice.req(json!({"type": "RQ_GET_FRIENDS"}));
    assert_eq!(friends["friends"][0]["online"], true);
    drop(b1);
    assert_silent(&mut alice.client, QUIET);
    let info = alice.req(json!({"type": "RQ_MEMBER_INFO", "user_id": bob_id}));
    assert_eq!(info["online"], true, "bob still has a connection");
    // Logging out the last connection is going offline too.
    b2.request(json!({"type": "RQ_LOG_OUT", "token": token})).unwrap();
    assert_eq!(alice.expect("RQ_PRESENCE"), offline);
    let info = alice.req(json!({"type": "RQ_MEMBER_INFO", "user_id": bob_id}));
    assert_eq!(info["online"], false);
    // Non-friends hear nothing.
    let mut carol = server.user("carol");
    let mut b3 = server.connect();
    b3.log_in("bob", "pw-bob").unwrap();
    assert_eq!(alice.expect("RQ_PRESENCE"), online);
    assert_silent(&mut carol.client, QUIET);
}

#[test]
fn offline_catch_up_recovers_everything_exactly_once() {
    let server = server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    befriend(&mut alice, &mut bob);
    let mut rooms = Vec::new();
    for name in ["one", "two", "three"] {
        let id = alice.new_room(name, "DB_GLOBAL_CHAT");
        bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": id}));
        rooms.push(id);
    }
    let dm = open_dm(&mut bob, "alice")["id"].as_i64().unwrap();
    rooms.push(dm);
    // Alice has seen everything so far; she notes the newest id of each room.
    let listing = alice.req(json!({"type": "RQ_GET_ROOMS"}));
    let seen: HashMap<i64, i64> = listing["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), r["last_msg_id"].as_i64().unwrap()))
        .collect();
    let token = alice.token.clone();
    drop(alice);
    wait_until(Duration::from_secs(5), || {
        bob.expect("RQ_PRESENCE")["online"] == false
    });

    // 300 messages arrive while she is away: 80, 70, 60 in the rooms, 90 in the DM.
    let mut expected: HashMap<i64, Vec<i64>> = HashMap::new();
    for (room, n) in rooms.iter().zip([80, 70, 60, 90]) {
        for i in 0..n {
            let reply =
                bob.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("while away {i}")}));
            expected
                .entry(*room)
                .or_default()
                .push(reply["message_id"].as_i64().unwrap());
        }
    }

    // She comes back: the recommended sequence of protocol.md.
    let mut c = server.connect();
    assert_type(&c.resume(&token).unwrap(), "RQ_TOKEN");
    let listing = c.request(json!({"type": "RQ_GET_ROOMS", "date": 0})).unwrap();
    let listed = listing["rooms"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    let mut total = 0;
    for room in listed {
        let id = room["id"].as_i64().unwrap();
        let want = &expected[&id];
        assert_eq!(room["unread"], want.len(), "unread of room {id}");
        let last = seen[&id];
        let page = 25;
        let mut got: Vec<i64> = Vec::new();
        let mut reply = c
            .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": id, "after_id": last, "count": page}))
            .unwrap();
        loop {
            let ids: Vec<i64> = reply["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["message_id"].as_i64().unwrap())
                .collect();
            got.extend(&ids);
            if ids.len() < page {
                break;
            }
            reply = c
                .request(json!({"type": "RQ_OLD_MSGS", "room_id": id, "before_id": ids.last(), "after_id": last, "count": page}))
                .unwrap();
        }
        got.reverse();
        assert_eq!(&got, want, "room {id}: every missed message once, in order");
        total += got.len();
        let newest = room["last_msg_id"].as_i64().unwrap();
        c.request(json!({"type": "RQ_MARK_READ", "room_id": id, "msg_id": newest}))
            .unwrap();
    }
    assert_eq!(total, 300);
    let listing = c.request(json!({"type": "RQ_GET_ROOMS"})).unwrap();
    assert!(listing["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["unread"] == 0));
}
