//! Accounts over real TCP: every request's success and error paths.

use std::time::Duration;

use parley::client::password_digest;
use serde_json::json;

use crate::util::{assert_error, assert_silent, assert_type, ping, start_server, start_with, wait_until};

#[test]
fn sign_up_returns_a_token_and_logs_the_connection_in() {
    let server = start_server();
    let mut c = server.connect();
    let reply = c
        .request(json!({"type": "RQ_SIGN_UP", "login": "alice", "pass": password_digest("pw"), "desc": "hi"}))
        .unwrap();
    assert_type(&reply, "RQ_TOKEN");
    assert_eq!(reply["login"], "alice");
    assert_eq!(reply["name"], "alice", "name defaults to the login");
    assert_eq!(reply["desc"], "hi");
    let token = reply["token"].as_str().unwrap();
    assert_eq!(token.len(), 64 + "alice".len());
    assert!(token.ends_with("alice"));
    let id = reply["user_id"].as_i64().unwrap();
    let info = c
        .request(json!({"type": "RQ_MEMBER_INFO", "user_id": id}))
        .unwrap();
    assert_eq!(
        info,
        json!({"type": "RQ_MEMBER_INFO", "user_id": id, "login": "alice", "name": "alice", "desc": "hi", "online": true, "req_id": 2})
    );
}

#[test]
fn sign_up_errors() {
    let server = start_server();
    let mut c = server.connect();
    let digest = password_digest("pw");
    for login in [
        "ab",
        "Alice",
        "has space",
        "toolong_toolong_toolong",
        "dot.ted",
        "",
    ] {
        let reply = c
            .request(json!({"type": "RQ_SIGN_UP", "login": login, "pass": digest}))
            .unwrap();
        assert_error(&reply, "ER_BAD_REQUEST");
    }
    for pass in ["plaintext", &"g".repeat(64), &"a".repeat(63)] {
        let reply = c
            .request(json!({"type": "RQ_SIGN_UP", "login": "bob", "pass": pass}))
            .unwrap();
        assert_error(&reply, "ER_BAD_REQUEST");
    }
    let reply = c
        .request(json!({"type": "RQ_SIGN_UP", "login": "bob", "pass": digest, "name": "n".repeat(65)}))
        .unwrap();
    assert_error(&reply, "ER_BAD_REQUEST");
    let reply = c
        .request(json!({"type": "RQ_SIGN_UP", "login": "bob", "pass": digest, "desc": "d".repeat(801)}))
        .unwrap();
    assert_error(&reply, "ER_BAD_REQUEST");
    // Nothing above created the account.
    assert_type(&c.sign_up("bob", "pw").unwrap(), "RQ_TOKEN");
    let mut other = server.connect();
    assert_error(&other.sign_up("bob", "pw2").unwrap(), "ER_USER_EXST");
    // A logged-in connection cannot sign up a second account.
    assert_error(&c.sign_up("carol", "pw").unwrap(), "ER_CLI_EXST");
}

#[test]
fn log_in_and_its_errors() {
    let server = start_server();
    let alice = server.user("alice");
    let mut c = server.connect();
    let wrong = c.log_in("alice", "nope").unwrap();
    assert_error(&wrong, "ER_AUTH_DATA");
    let unknown = c.log_in("nobody", "nope").unwrap();
    assert_error(&unknown, "ER_AUTH_DATA");
    assert_eq!(
        wrong["msg"], unknown["msg"],
        "unknown login and wrong password look the same"
    );
    let reply = c.log_in("alice", "pw-alice").unwrap();
    assert_type(&reply, "RQ_TOKEN");
    assert_eq!(reply["user_id"], alice.id);
    assert_ne!(reply["token"], alice.token.as_str());
    // Same user again on the same connection is fine; another user is not.
    assert_type(&c.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    server.user("bob");
    assert_error(&c.log_in("bob", "pw-bob").unwrap(), "ER_CLI_EXST");
}

#[test]
fn token_resumes_a_session_on_a_new_connection() {
    let server = start_server();
    let alice = server.user("alice");
    let mut c = server.connect();
    let reply = c.resume(&alice.token).unwrap();
    assert_type(&reply, "RQ_TOKEN");
    assert_eq!(reply["token"], alice.token.as_str());
    assert_eq!(reply["user_id"], alice.id);
    assert_type(
        &c.request(json!({"type": "RQ_MEMBER_INFO", "user_id": alice.id}))
            .unwrap(),
        "RQ_MEMBER_INFO",
    );

    let mut bad = server.connect();
    let mut tampered = alice.token.clone();
    tampered.replace_range(0..1, if tampered.starts_with('0') { "1" } else { "0" });
    let wrong_login = format!("{}bob", &alice.token[..64]);
    for token in ["", "short", &tampered, &wrong_login, &alice.token.to_uppercase()] {
        assert_error(&bad.resume(token).unwrap(), "ER_AUTH_DATA");
    }
    assert_error(
        &bad.request(json!({"type": "RQ_MEMBER_INFO", "user_id": 1}))
            .unwrap(),
        "ER_UNAUTHORIZED",
    );
}

#[test]
fn requests_before_log_in_are_unauthorized() {
    let server = start_server();
    let mut c = server.connect();
    for msg in [
        json!({"type": "RQ_MEMBER_INFO", "user_id": 1}),
        json!({"type": "RQ_UPD_USER_DESC", "desc": "x"}),
        json!({"type": "RQ_UPD_USER_NAME", "name": "x"}),
        json!({"type": "RQ_LOG_OUT", "token": "x"}),
    ] {
        assert_error(&c.request(msg).unwrap(), "ER_UNAUTHORIZED");
    }
    assert_type(&c.request(ping()).unwrap(), "RQ_PING");
}

#[test]
fn log_out_revokes_the_token_on_every_connection_using_it() {
    let server = start_server();
    let mut first = server.user("alice");
    let mut same_token = server.connect();
    assert_type(&same_token.resume(&first.token).unwrap(), "RQ_TOKEN");
    let mut other_device = server.connect();
    assert_type(&other_device.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");

    let token = first.token.clone();
    let reply = first.req(json!({"type": "RQ_LOG_OUT", "token": token}));
    assert_type(&reply, "RQ_LOG_OUT");
    assert_eq!(reply["token"], token.as_str());
    let notice = same_token.recv().unwrap();
    assert_eq!(notice, json!({"type": "RQ_LOG_OUT", "token": token}));
    assert_silent(&mut other_device, Duration::from_millis(200));

    // Both connections on the token are logged out but still open.
    assert_error(
        &first.req(json!({"type": "RQ_MEMBER_INFO", "user_id": first.id})),
        "ER_UNAUTHORIZED",
    );
    assert_error(
        &same_token
            .request(json!({"type": "RQ_MEMBER_INFO", "user_id": first.id}))
            .unwrap(),
        "ER_UNAUTHORIZED",
    );
    assert_type(&same_token.request(ping()).unwrap(), "RQ_PING");
    // The token no longer works anywhere.
    assert_error(&server.connect().resume(&token).unwrap(), "ER_AUTH_DATA");
    // A logged-out connection may log in again.
    assert_type(&first.client.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");
}

#[test]
fn log_out_refuses_tokens_of_other_users() {
    let server = start_server();
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    let reply = alice.req(json!({"type": "RQ_LOG_OUT", "token": bob.token}));
    assert_error(&reply, "ER_AUTH_DATA");
    assert_type(&server.connect().resume(&bob.token).unwrap(), "RQ_TOKEN");
}

#[test]
fn profile_updates() {
    let server = start_server();
    let mut alice = server.user("alice");
    let reply = alice.req(json!({"type": "RQ_UPD_USER_DESC", "desc": "  likes tea  "}));
    assert_eq!(reply["type"], "RQ_UPD_USER_DESC");
    assert_eq!(reply["desc"], "likes tea");
    let reply = alice.req(json!({"type": "RQ_UPD_USER_NAME", "name": "Alice Liddell"}));
    assert_eq!(reply["name"], "Alice Liddell");
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_USER_NAME", "name": "   "})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_USER_NAME", "name": "é".repeat(65)})),
        "ER_BAD_REQUEST",
    );
    assert_error(
        &alice.req(json!({"type": "RQ_UPD_USER_DESC", "desc": "d".repeat(801)})),
        "ER_BAD_REQUEST",
    );
    let mut bob = server.user("bob");
    let info = bob.req(json!({"type": "RQ_MEMBER_INFO", "user_id": alice.id}));
    assert_eq!(info["name"], "Alice Liddell");
    assert_eq!(info["desc"], "likes tea");
    assert_error(
        &bob.req(json!({"type": "RQ_MEMBER_INFO", "user_id": 424242})),
        "ER_NOT_FOUND",
    );
    let by_login = bob.req(json!({"type": "RQ_MEMBER_INFO", "login": "alice"}));
    assert_eq!(by_login["user_id"], alice.id);
    assert_error(
        &bob.req(json!({"type": "RQ_MEMBER_INFO", "login": "nobody"})),
        "ER_NOT_FOUND",
    );
    assert_error(&bob.req(json!({"type": "RQ_MEMBER_INFO"})), "ER_BAD_REQUEST");
}

#[test]
fn member_info_tracks_online_across_connections() {
    let server = start_server();
    let mut alice = server.user("alice");
    let bob = server.user("bob");
    let mut bob2 = server.connect();
    assert_type(&bob2.resume(&bob.token).unwrap(), "RQ_TOKEN");
    let bob_id = bob.id;
    let online = |alice: &mut crate::util::User| {
        alice.req(json!({"type": "RQ_MEMBER_INFO", "user_id": bob_id}))["online"].clone()
    };
    assert_eq!(online(&mut alice), true);
    drop(bob);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(online(&mut alice), true, "bob still has a second connection");
    drop(bob2);
    wait_until(Duration::from_secs(5), || online(&mut alice) == false);
}

#[test]
fn failed_log_ins_are_throttled_per_login() {
    let server = start_with(|c| {
        c.login_failures_per_login = 3;
        c.login_failures_per_addr = 100;
    });
    server.user("alice");
    server.user("bob");
    let mut c = server.connect();
    for _ in 0..3 {
        assert_error(&c.log_in("alice", "wrong").unwrap(), "ER_AUTH_DATA");
    }
    // Even the right password is refused while throttled...
    assert_error(&c.log_in("alice", "pw-alice").unwrap(), "ER_RATE_LIMITED");
    // ...but other logins are not affected.
    assert_type(&server.connect().log_in("bob", "pw-bob").unwrap(), "RQ_TOKEN");
}

#[test]
fn failed_log_ins_are_throttled_per_address() {
    let server = start_with(|c| {
        c.login_failures_per_login = 100;
        c.login_failures_per_addr = 4;
    });
    server.user("alice");
    let mut c = server.connect();
    for login in ["user1", "user2", "user3", "user4"] {
        assert_error(&c.log_in(login, "wrong").unwrap(), "ER_AUTH_DATA");
    }
    assert_error(
        &server.connect().log_in("alice", "pw-alice").unwrap(),
        "ER_RATE_LIMITED",
    );
}

#[test]
fn only_hashes_are_stored() {
    let server = start_server();
    let alice = server.user("alice");
    let mut db = crate::util::Database::open(&server.dir.path().join("data"));
    let stored = db.text("SELECT pass_hash FROM users WHERE login = 'alice'");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(&password_digest("pw-alice")));
    let hashes = db.blobs("SELECT hash FROM tokens");
    assert_eq!(hashes.len(), 1);
    let random = hex::decode(&alice.token[..64]).unwrap();
    assert_ne!(hashes[0], random, "the raw token is not stored");
}
