//! Rooms over real TCP: every request, who receives each push, and the
//! permission matrix of the role ladder.

use std::time::Duration;

use serde_json::{json, Value};

use crate::util::{assert_error, assert_silent, assert_type, start_server, TestServer, User};

const QUIET: Duration = Duration::from_millis(150);

fn roles_of(user: &mut User, room: i64) -> Vec<(i64, String)> {
    let reply = user.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room}));
    assert_type(&reply, "RQ_GET_MEMBERS");
    let mut roles: Vec<_> = reply["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_i64().unwrap(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    roles.sort();
    roles
}

fn room_ids(reply: &Value) -> Vec<i64> {
    reply["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn create_room_and_list_it() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut alice2 = server.connect();
    assert_type(&alice2.resume(&alice.token).unwrap(), "RQ_TOKEN");
    let reply = alice.req(json!({"type": "RQ_NEW_ROOM", "name": "  General  ", "desc": "chat"}));
    assert_type(&reply, "RQ_NEW_ROOM");
    assert_eq!(reply["name"], "General");
    assert_eq!(reply["desc"], "chat");
    assert_eq!(reply["room_type"], "DB_GLOBAL_CHAT", "global by default");
    assert_eq!(reply["role"], "DB_CUSTOMER");
    assert_eq!(reply["customer_id"], alice.id);
    assert_eq!(reply["power"], 0);
    assert!(reply["date"].as_i64().unwrap() > 1_600_000_000_000);
    let id = reply["id"].as_i64().unwrap();
    // The creator's other connection hears of the room, without the req_id.
    let other = alice2.recv().unwrap();
    assert_eq!(other["id"], id);
    assert!(other.get("req_id").is_none());

    let private = alice.new_room("Secret", "DB_PRIVAT_CHAT");
    let rooms = alice.req(json!({"type": "RQ_GET_ROOMS", "date": 0}));
    assert_eq!(room_ids(&rooms), vec![id, private]);
    assert_eq!(rooms["rooms"][1]["room_type"], "DB_PRIVAT_CHAT");
    assert_eq!(rooms["rooms"][1]["role"], "DB_CUSTOMER");
    let later = alice.req(json!({"type": "RQ_GET_ROOMS", "date": 4_000_000_000_000i64}));
    assert_eq!(room_ids(&later), Vec::<i64>::new());
}

#[test]
fn new_room_validation() {
    let server = start_server();
    let mut alice = server.user("alice");
    for bad in [
        json!({"type": "RQ_NEW_ROOM", "name": "   "}),
        json!({"type": "RQ_NEW_ROOM", "name": "x".repeat(101)}),
        json!({"type": "RQ_NEW_ROOM", "name": "ok", "desc": "d".repeat(801)}),
        json!({"type": "RQ_NEW_ROOM", "name": "ok", "room_type": "DB_LS_CHAT"}),
        json!({"type": "RQ_NEW_ROOM", "name": "ok", "room_type": 9}),
        json!({"type": "RQ_NEW_ROOM", "name": 5}),
    ] {
        assert_error(&alice.req(bad), "ER_BAD_REQUEST");
    }
    assert_eq!(
        room_ids(&alice.req(json!({"type": "RQ_GET_ROOMS"}))),
        Vec::<i64>::new()
    );
    assert_type(
        &alice.req(json!({"type": "RQ_NEW_ROOM", "name": "é".repeat(100)})),
        "RQ_NEW_ROOM",
    );
}

#[test]
fn old_client_new_room_with_two_type_keys() {
    let server = start_server();
    let alice = server.user("alice");
    let mut old = server.connect();
    let login = json!({"type": 2, "token": alice.token});
    old.send(&login).unwrap();
    assert_eq!(old.recv().unwrap()["type"], 2);
    old.send_raw(b"{\"type\":12,\"name\":\"old\",\"desc\":\"d\",\"type\":0}\n")
        .unwrap();
    let reply = old.recv().unwrap();
    assert_eq!(reply["type"], 12);
    assert_eq!(reply["room_type"], 0, "second type is the room type: private");
    assert_eq!(reply["role"], 0);
    assert_eq!(reply["power"], 0);
    assert!(reply["id"].is_i64());
}

#[test]
fn join_global_room_broadcasts_new_member() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("General", "DB_GLOBAL_CHAT");
    let reply = bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    assert_type(&reply, "RQ_JOIN_ROOM");
    assert_eq!(reply["id"], room);
    assert_eq!(reply["name"], "General");
    assert_eq!(reply["role"], "DB_SIMPLE");
    let expected = json!({"type": "RQ_NEW_MEMBER", "room_id": room, "user_id": bob.id, "login": "bob"});
    assert_eq!(alice.expect("RQ_NEW_MEMBER"), expected);
    assert_eq!(bob.expect("RQ_NEW_MEMBER"), expected);
    assert_silent(&mut carol.client, QUIET);
    // Joining again answers again with no broadcast.
    assert_type(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    assert_silent(&mut alice.client, QUIET);
    assert_silent(&mut bob.client, QUIET);
    // Errors.
    assert_error(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": 9999})),
        "ER_NOT_FOUND",
    );
    let private = alice.new_room("Private", "DB_PRIVAT_CHAT");
    assert_error(
        &carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": private})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": "1"})),
        "ER_BAD_REQUEST",
    );
    assert_eq!(roles_of(&mut alice, private).len(), 1);
}

#[test]
fn add_member_by_login_or_id() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Team", "DB_PRIVAT_CHAT");
    let reply = alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "login": "bob"}));
    assert_eq!(
        reply,
        json!({"type": "RQ_NEW_MEMBER", "room_id": room, "user_id": bob.id, "login": "bob", "req_id": reply["req_id"]})
    );
    let joined = bob.expect("RQ_JOIN_ROOM");
    assert_eq!(joined["id"], room);
    assert_eq!(joined["room_type"], "DB_PRIVAT_CHAT");
    bob.expect("RQ_NEW_MEMBER");
    // A simple member may not add; errors change nothing.
    assert_error(
        &bob.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "user_id": carol.id})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "login": "bob"})),
        "ER_CONFLICT",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "login": "nobody"})),
        "ER_NOT_FOUND",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "login": "carol"})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": 777, "login": "carol"})),
        "ER_NOT_FOUND",
    );
    assert_eq!(roles_of(&mut alice, room).len(), 2);
    assert_silent(&mut carol.client, QUIET);
    let reply = alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "user_id": carol.id}));
    assert_type(&reply, "RQ_NEW_MEMBER");
    assert_eq!(carol.expect("RQ_JOIN_ROOM")["id"], room);
    assert_eq!(roles_of(&mut alice, room).len(), 3);
}

#[test]
fn leaving_hands_ownership_over_and_the_last_one_out_deletes() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Club", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    assert_type(
        &alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": carol.id, "role": "DB_ADMIN"})),
        "RQ_SET_ROLE",
    );

    let reply = alice.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room}));
    assert_type(&reply, "RQ_LEAVE_ROOM");
    assert_eq!(reply["room_id"], room);
    let left = json!({"type": "RQ_LEAVE_ROOM", "room_id": room, "user_id": alice.id, "login": "alice"});
    assert_eq!(bob.expect("RQ_LEAVE_ROOM"), left);
    assert_eq!(carol.expect("RQ_LEAVE_ROOM"), left);
    // Carol, the admin, becomes owner though Bob joined first.
    let handover =
        json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": carol.id, "role": "DB_CUSTOMER"});
    loop {
        let msg = bob.expect("RQ_SET_ROLE");
        if msg["role"] == "DB_CUSTOMER" {
            assert_eq!(msg, handover);
            break;
        }
    }
    assert_eq!(
        roles_of(&mut bob, room),
        vec![(bob.id, "DB_SIMPLE".into()), (carol.id, "DB_CUSTOMER".into())]
    );
    assert_error(
        &alice.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room})),
        "ER_FORBIDDEN",
    );
    assert_eq!(
        room_ids(&alice.req(json!({"type": "RQ_GET_ROOMS"}))),
        Vec::<i64>::new()
    );

    carol.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room}));
    assert_eq!(roles_of(&mut bob, room), vec![(bob.id, "DB_CUSTOMER".into())]);
    assert_type(
        &bob.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room})),
        "RQ_LEAVE_ROOM",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "ER_NOT_FOUND",
    );
    let found = alice.req(json!({"type": "RQ_SEARCH_CH", "name": "club"}));
    assert_eq!(room_ids(&found), Vec::<i64>::new());
}

#[test]
fn delete_room_is_for_the_owner_and_tells_every_member() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Doomed", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": bob.id, "role": "DB_ADMIN"}));
    assert_error(
        &bob.req(json!({"type": "RQ_DEL_ROOM", "room_id": room})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_DEL_ROOM", "room_id": room})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_DEL_ROOM", "room_id": room + 100})),
        "ER_NOT_FOUND",
    );
    let reply = alice.req(json!({"type": "RQ_DEL_ROOM", "room_id": room}));
    assert_eq!(reply["type"], "RQ_DEL_ROOM");
    assert_eq!(reply["room_id"], room);
    assert_eq!(
        bob.expect("RQ_DEL_ROOM"),
        json!({"type": "RQ_DEL_ROOM", "room_id": room})
    );
    assert_silent(&mut carol.client, QUIET);
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_GET_ROOMS"}))),
        Vec::<i64>::new()
    );
    assert_error(
        &bob.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room})),
        "ER_NOT_FOUND",
    );
}

#[test]
fn rename_and_describe_broadcast_to_members_only() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Old name", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    let reply = alice.req(json!({"type": "RQ_UPD_ROOM_NAME", "room_id": room, "room_name": "New name"}));
    assert_eq!(reply["room_name"], "New name");
    assert_eq!(
        bob.expect("RQ_UPD_ROOM_NAME"),
        json!({"type": "RQ_UPD_ROOM_NAME", "room_id": room, "room_name": "New name"})
    );
    let reply = alice.req(json!({"type": "RQ_UPD_ROOM_DESC", "room_id": room, "desc": "about"}));
    assert_eq!(reply["desc"], "about");
    assert_eq!(
        bob.expect("RQ_UPD_ROOM_DESC"),
        json!({"type": "RQ_UPD_ROOM_DESC", "room_id": room, "desc": "about"})
    );
    assert_silent(&mut carol.client, QUIET);
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_ROOM_NAME", "room_id": room, "room_name": ""})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_ROOM_DESC", "room_id": room, "desc": "x".repeat(801)})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_ROOM_NAME", "room_id": 4040, "room_name": "x"})),
        "ER_NOT_FOUND",
    );
    let rooms = bob.req(json!({"type": "RQ_GET_ROOMS"}));
    assert_eq!(rooms["rooms"][0]["name"], "New name");
    assert_eq!(rooms["rooms"][0]["desc"], "about");
}

#[test]
fn search_is_a_case_insensitive_prefix_over_global_rooms() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let rust = alice.new_room("Rust Users", "DB_GLOBAL_CHAT");
    let rustaceans = alice.new_room("rustaceans", "DB_GLOBAL_CHAT");
    alice.new_room("Rust secret", "DB_PRIVAT_CHAT");
    alice.new_room("Trust", "DB_GLOBAL_CHAT");
    let unicode = alice.new_room("École", "DB_GLOBAL_CHAT");
    let found = bob.req(json!({"type": "RQ_SEARCH_CH", "name": "RUST"}));
    assert_type(&found, "RQ_SEARCH_CH");
    assert_eq!(room_ids(&found), vec![rust, rustaceans]);
    assert!(found["rooms"][0].get("role").is_none(), "bob is not a member");
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_SEARCH_CH", "name": "éco"}))),
        vec![unicode]
    );
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_SEARCH_CH", "name": "%"}))),
        Vec::<i64>::new()
    );
    // Bans hide a room from the banned user.
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": rust}));
    alice.req(json!({"type": "RQ_BAN_MEMBER", "room_id": rust, "user_id": bob.id}));
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_SEARCH_CH", "name": "rust"}))),
        vec![rustaceans]
    );
    // At most 50.
    for i in 0..55 {
        alice.new_room(&format!("bulk {i:02}"), "DB_GLOBAL_CHAT");
    }
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_SEARCH_CH", "name": "Bulk"}))).len(),
        50
    );
}

#[test]
fn members_list_roles_and_online() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Room", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    let reply = alice.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room}));
    assert_type(&reply, "RQ_GET_MEMBERS");
    assert_eq!(reply["room_id"], room);
    let members = reply["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(
        members[0],
        json!({"id": alice.id, "user_id": alice.id, "login": "alice", "name": "alice", "role": "DB_CUSTOMER", "online": true})
    );
    assert_eq!(members[1]["role"], "DB_SIMPLE");
    drop(bob);
    crate::util::wait_until(Duration::from_secs(5), || {
        alice.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room}))["members"][1]["online"] == false
    });
    assert_error(
        &carol.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room})),
        "ER_FORBIDDEN",
    );
    assert_error(
        &carol.req(json!({"type": "RQ_GET_MEMBERS", "room_id": 31337})),
        "ER_NOT_FOUND",
    );
}

#[test]
fn a_ban_takes_effect_at_once_and_unban_lets_back_in() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut bob2 = server.connect();
    assert_type(&bob2.resume(&bob.token).unwrap(), "RQ_TOKEN");
    let room = alice.new_room("Room", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    bob.expect("RQ_NEW_MEMBER");
    bob2.recv_type("RQ_JOIN_ROOM").unwrap();
    bob2.recv_type("RQ_NEW_MEMBER").unwrap();
    let ban = json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": bob.id});
    assert_eq!(alice.req(ban.clone())["type"], "RQ_BAN_MEMBER");
    assert_eq!(
        bob.expect("RQ_BAN_MEMBER"),
        json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": bob.id})
    );
    assert_eq!(bob2.recv_type("RQ_BAN_MEMBER").unwrap()["user_id"], bob.id);
    // From now on nothing of the room reaches bob.
    alice.req(json!({"type": "RQ_UPD_ROOM_NAME", "room_id": room, "room_name": "Renamed"}));
    assert_silent(&mut bob.client, QUIET);
    assert_silent(&mut bob2, QUIET);
    assert_error(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "ER_BANNED",
    );
    assert_error(
        &bob.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room})),
        "ER_BANNED",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "user_id": bob.id})),
        "ER_BANNED",
    );
    assert_error(&alice.req(ban), "ER_CONFLICT");
    assert_eq!(
        room_ids(&bob.req(json!({"type": "RQ_GET_ROOMS"}))),
        Vec::<i64>::new()
    );
    assert_eq!(roles_of(&mut alice, room), vec![(alice.id, "DB_CUSTOMER".into())]);

    let unban = json!({"type": "RQ_UNBAN_MEMBER", "room_id": room, "user_id": bob.id});
    assert_type(&alice.req(unban.clone()), "RQ_UNBAN_MEMBER");
    assert_eq!(bob.expect("RQ_UNBAN_MEMBER")["room_id"], room);
    assert_error(&alice.req(unban), "ER_NOT_FOUND");
    // No longer a member, but free to come back.
    assert_error(
        &bob.req(json!({"type": "RQ_GET_MEMBERS", "room_id": room})),
        "ER_FORBIDDEN",
    );
    assert_type(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    assert_eq!(roles_of(&mut alice, room).len(), 2);
}

#[test]
fn old_clients_get_parley_pushes_only_after_using_parley_codes() {
    let server = start_server();
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    let mut carol = server.user("carol");
    let room = alice.new_room("Room", "DB_GLOBAL_CHAT");
    let mut old = server.connect();
    old.send(&json!({"type": 2, "token": bob.token})).unwrap();
    assert_eq!(old.recv().unwrap()["type"], 2);
    old.send(&json!({"type": 14, "room_id": room})).unwrap();
    assert_eq!(old.recv().unwrap()["type"], 14);
    assert_eq!(
        old.recv().unwrap()["type"],
        21,
        "RQ_NEW_MEMBER is an original code"
    );
    carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    assert_eq!(
        old.recv().unwrap(),
        json!({"type": 21, "room_id": room, "user_id": carol.id, "login": "carol"})
    );
    carol.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room}));
    assert_silent(&mut old, QUIET); // RQ_LEAVE_ROOM is 105: unknown to old clients
    old.send(&json!({"type": 111})).unwrap();
    assert_eq!(old.recv().unwrap()["type"], 111);
    carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    assert_eq!(old.recv().unwrap()["type"], 21);
    carol.req(json!({"type": "RQ_LEAVE_ROOM", "room_id": room}));
    assert_eq!(
        old.recv().unwrap(),
        json!({"type": 105, "room_id": room, "user_id": carol.id, "login": "carol"})
    );
}

// --- the permission matrix ---------------------------------------------------

const RANKS: [&str; 4] = ["DB_CUSTOMER", "DB_ADMIN", "DB_MODERATOR", "DB_SIMPLE"];

fn rank(role: &str) -> usize {
    RANKS.iter().position(|r| *r == role).unwrap()
}

/// A room with one owner and two members of each other rank.
struct Cast {
    room: i64,
    /// (user index, role), the owner first.
    people: Vec<(usize, &'static str)>,
}

fn cast_room(users: &mut [User], name: &str) -> Cast {
    let room = users[0].new_room(name, "DB_GLOBAL_CHAT");
    let mut people = vec![(0, "DB_CUSTOMER")];
    for (i, role) in [
        (1, "DB_ADMIN"),
        (2, "DB_ADMIN"),
        (3, "DB_MODERATOR"),
        (4, "DB_MODERATOR"),
        (5, "DB_SIMPLE"),
        (6, "DB_SIMPLE"),
    ] {
        let id = users[i].id;
        assert_type(
            &users[0].req(json!({"type": "RQ_ADD_MEMBER", "room_id": room, "user_id": id})),
            "RQ_NEW_MEMBER",
        );
        if role != "DB_SIMPLE" {
            let r =
                users[0].req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": id, "role": role}));
            assert_type(&r, "RQ_SET_ROLE");
        }
        people.push((i, role));
    }
    Cast { room, people }
}

/// Someone of `role` other than `not`, if any.
fn someone(cast: &Cast, role: &str, not: usize) -> Option<usize> {
    cast.people
        .iter()
        .find(|(i, r)| *r == role && *i != not)
        .map(|(i, _)| *i)
}

#[test]
fn permission_matrix() {
    let server: TestServer = start_server();
    let mut users: Vec<User> = (0..7).map(|i| server.user(&format!("user{i}"))).collect();
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut case = 0;
    for actor_role in RANKS {
        for target_role in RANKS {
            for action in ["ban", "to_admin", "to_moderator", "to_simple"] {
                case += 1;
                let cast = cast_room(&mut users, &format!("case {case}"));
                let actor = someone(&cast, actor_role, usize::MAX).unwrap();
                // Equal ranks act on another person of the same rank; the owner on itself.
                let target = someone(&cast, target_role, actor).unwrap_or(actor);
                let outranks = rank(actor_role) < rank(target_role);
                let (request, allowed) = match action {
                    "ban" => (
                        json!({"type": "RQ_BAN_MEMBER", "room_id": cast.room, "user_id": ids[target]}),
                        rank(actor_role) <= 2 && outranks,
                    ),
                    _ => {
                        let new_role = match action {
                            "to_admin" => "DB_ADMIN",
                            "to_moderator" => "DB_MODERATOR",
                            _ => "DB_SIMPLE",
                        };
                        let admin_change = new_role == "DB_ADMIN" || target_role == "DB_ADMIN";
                        let allowed = rank(actor_role) <= 1
                            && outranks
                            && (!admin_change || actor_role == "DB_CUSTOMER");
                        (
                            json!({"type": "RQ_SET_ROLE", "room_id": cast.room, "user_id": ids[target], "role": new_role}),
                            allowed,
                        )
                    }
                };
                let before = roles_of(&mut users[0], cast.room);
                let reply = users[actor].req(request.clone());
                let what = format!("{actor_role} doing {action} on {target_role}: {reply}");
                if allowed {
                    assert_ne!(reply["type"], "RQ_ERROR_MSG", "{what}");
                    assert_eq!(reply["user_id"], ids[target], "{what}");
                } else {
                    assert_error(&reply, "ER_FORBIDDEN");
                    assert_eq!(
                        roles_of(&mut users[0], cast.room),
                        before,
                        "refusal changed state: {what}"
                    );
                }
            }
        }
    }
    // Room-wide actions by each rank.
    for actor_role in RANKS {
        let cast = cast_room(&mut users, &format!("wide {actor_role}"));
        let actor = someone(&cast, actor_role, usize::MAX).unwrap();
        let rename =
            users[actor].req(json!({"type": "RQ_UPD_ROOM_NAME", "room_id": cast.room, "room_name": "x"}));
        let describe =
            users[actor].req(json!({"type": "RQ_UPD_ROOM_DESC", "room_id": cast.room, "desc": "x"}));
        let outsider = server.user(&format!("out{}", rank(actor_role)));
        let add =
            users[actor].req(json!({"type": "RQ_ADD_MEMBER", "room_id": cast.room, "user_id": outsider.id}));
        for (reply, allowed) in [
            (rename, rank(actor_role) <= 1),
            (describe, rank(actor_role) <= 1),
            (add, rank(actor_role) <= 2),
        ] {
            if allowed {
                assert_ne!(reply["type"], "RQ_ERROR_MSG", "{actor_role}: {reply}");
            } else {
                assert_error(&reply, "ER_FORBIDDEN");
            }
        }
        let del = users[actor].req(json!({"type": "RQ_DEL_ROOM", "room_id": cast.room}));
        if actor_role == "DB_CUSTOMER" {
            assert_type(&del, "RQ_DEL_ROOM");
        } else {
            assert_error(&del, "ER_FORBIDDEN");
        }
    }
}

#[test]
fn set_role_refusals() {
    let server = start_server();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let carol = server.user("carol");
    let room = alice.new_room("Room", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    let set = |user: i64, role: &str| json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": user, "role": role});
    assert_error(&alice.req(set(bob.id, "DB_CUSTOMER")), "ER_BAD_REQUEST");
    assert_error(&alice.req(set(bob.id, "DB_BANNED")), "ER_BAD_REQUEST");
    assert_error(&alice.req(set(bob.id, "DB_KING")), "ER_BAD_REQUEST");
    assert_error(&alice.req(set(carol.id, "DB_ADMIN")), "ER_NOT_FOUND");
    assert_error(&alice.req(set(alice.id, "DB_SIMPLE")), "ER_FORBIDDEN");
    // Integer role codes are accepted too.
    let reply = alice.req(json!({"type": "RQ_SET_ROLE", "room_id": room, "user_id": bob.id, "role": 2}));
    assert_eq!(reply["role"], "DB_MODERATOR");
    assert_eq!(bob.expect("RQ_SET_ROLE")["role"], "DB_MODERATOR");
}

#[test]
fn slow_consumer_is_disconnected_not_buffered_forever() {
    let server = crate::util::start_with(|c| {
        c.max_outbound_bytes = 16 * 1024;
        c.durability = parley::config::Durability::Normal;
    });
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    let room = alice.new_room("Busy", "DB_GLOBAL_CHAT");
    // Bob joins on a raw socket and then never reads.
    let mut raw = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::Write;
    writeln!(raw, "{}", json!({"type": "RQ_TOKEN", "token": bob.token})).unwrap();
    writeln!(raw, "{}", json!({"type": "RQ_JOIN_ROOM", "room_id": room})).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Each push is ~850 bytes: 17 MB in all, more than loopback socket
    // buffers (about 10 MB) and the 16 KiB cap can hold. Pipelined for speed.
    let count = 20_000;
    let line = format!(
        "{}\n",
        json!({"type": "RQ_UPD_ROOM_DESC", "room_id": room, "desc": "d".repeat(800)})
    );
    let mut writer = std::net::TcpStream::connect(server.addr).unwrap();
    let mut reader = std::io::BufReader::new(writer.try_clone().unwrap());
    writeln!(writer, "{}", json!({"type": "RQ_TOKEN", "token": alice.token})).unwrap();
    let sender = std::thread::spawn(move || writer.write_all(line.repeat(count).as_bytes()).unwrap());
    use std::io::BufRead;
    let mut answered = 0;
    let mut buf = String::new();
    while answered < count {
        buf.clear();
        assert!(reader.read_line(&mut buf).unwrap() > 0);
        answered += buf.contains("RQ_UPD_ROOM_DESC") as usize;
    }
    sender.join().unwrap();
    // Bob's connection was cut (so was alice's first one, which was not
    // reading its pushes either); the connection that read everything was not.
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = Vec::new();
    use std::io::Read;
    let result = raw.read_to_end(&mut sink);
    assert!(result.is_ok() || result.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    let mut fresh = server.connect();
    assert_type(&fresh.resume(&alice.token).unwrap(), "RQ_TOKEN");
    let members = fresh
        .request(json!({"type": "RQ_GET_MEMBERS", "room_id": room}))
        .unwrap();
    assert_eq!(members["members"][1]["login"], "bob");
    assert_eq!(members["members"][1]["online"], false);
    drop(reader);
}
