//! File upload and download over real TCP: byte-exact round trips, token-only
//! connections, refusals and cut transfers that leave nothing, a stalled
//! transfer that delays nobody, and files going with their messages.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use parley::client::Client;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::util::{assert_error, assert_type, start_in, start_with, wait_until, TestServer, User};

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn files_in(server: &TestServer) -> Vec<String> {
    let dir = server.dir.path().join("data").join("files");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn history_len(user: &mut User, room: i64) -> usize {
    user.req(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 500}))["messages"]
        .as_array()
        .unwrap()
        .len()
}

fn setup(adjust: impl FnOnce(&mut parley::Config)) -> (TestServer, User, User, i64) {
    let server = start_with(adjust);
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let room = alice.new_room("Files", "DB_GLOBAL_CHAT");
    bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    (server, alice, bob, room)
}

#[test]
fn binary_files_round_trip_byte_exact() {
    let (server, mut alice, mut bob, room) = setup(|c| c.max_file_bytes = 1024 * 1024);
    let mut nul_lines = Vec::new();
    for i in 0..5000u32 {
        nul_lines.extend_from_slice(&[0, b'\n', b'\r', (i % 251) as u8, b'{', b'"']);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("one byte", vec![0]),
        ("nul and newlines.bin", nul_lines),
        ("random.bin", noise(300_001, 7)),
        ("max size.bin", noise(1024 * 1024, 9)),
        (
            "looks like json.txt",
            b"{\"type\":\"RQ_PING\"}\n{\"type\":\"RQ_PING\"}\n".to_vec(),
        ),
    ];
    for (name, data) in &cases {
        let msg = alice.client.upload(room, name, data, None).unwrap();
        assert_type(&msg, "RQ_MSG");
        assert_eq!(msg["msg_type"], "DB_FILE_MSG");
        assert_eq!(msg["message"], *name);
        assert_eq!(msg["file_name"], *name);
        assert_eq!(msg["file_size"], data.len());
        // Bob is told, like for any message.
        let told = bob.expect("RQ_MSG");
        assert_eq!(told["message_id"], msg["message_id"]);
        let (offer, got) = bob
            .client
            .download(room, msg["message_id"].as_i64().unwrap(), None)
            .unwrap();
        assert_eq!(offer["type"], "RQ_DOWNLOAD_FILE");
        assert_eq!(offer["size"], data.len());
        assert_eq!(offer["name"], *name);
        assert_eq!(sha(&got), sha(data), "{name}");
        // The connection is back in line mode.
        assert_type(&bob.req(json!({"type": "RQ_PING"})), "RQ_PING");
    }
    assert_eq!(files_in(&server).len(), cases.len());
    // Size edge cases: 0 and one over the limit are refused.
    let zero = alice.req(json!({"type": "RQ_UPLOAD_FILE", "room_id": room, "name": "empty", "size": 0}));
    assert_error(&zero, "ER_BAD_REQUEST");
    let over =
        alice.req(json!({"type": "RQ_UPLOAD_FILE", "room_id": room, "name": "big", "size": 1024 * 1024 + 1}));
    assert_error(&over, "ER_TOO_LARGE");
    assert_eq!(files_in(&server).len(), cases.len());
}

#[test]
fn token_only_connections_transfer_and_are_closed() {
    let (server, alice, mut bob, room) = setup(|_| {});
    let data = noise(200_000, 3);
    let mut up = server.connect();
    let msg = up
        .upload(room, "by token.bin", &data, Some(&alice.token))
        .unwrap();
    assert_type(&msg, "RQ_MSG");
    assert!(
        matches!(up.recv(), Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "closed after the upload"
    );
    let id = msg["message_id"].as_i64().unwrap();
    bob.expect("RQ_MSG");
    let mut down = server.connect();
    let (offer, got) = down.download(room, id, Some(&bob.token)).unwrap();
    assert_eq!(offer["msg_id"], id);
    assert_eq!(sha(&got), sha(&data));
    assert!(
        matches!(down.recv(), Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "closed after the download"
    );
}

#[test]
fn an_old_client_may_close_right_after_its_bytes() {
    let (server, alice, mut bob, room) = setup(|_| {});
    let mut raw = TcpStream::connect(server.addr).unwrap();
    let data = noise(70_000, 5);
    writeln!(
        raw,
        "{}",
        json!({"type": 24, "name": "quick.bin", "size": data.len(), "room_id": room, "token": alice.token})
    )
    .unwrap();
    let mut ready = [0u8; 64];
    let n = raw.read(&mut ready).unwrap();
    assert_eq!(&ready[..n], b"{\"type\":27}\n");
    raw.write_all(&data).unwrap();
    drop(raw);
    let msg = bob.expect("RQ_MSG");
    assert_eq!(msg["file_size"], data.len());
    let (_, got) = bob
        .client
        .download(room, msg["message_id"].as_i64().unwrap(), None)
        .unwrap();
    assert_eq!(got, data);
}

#[test]
fn refused_uploads_leave_nothing_behind() {
    let (server, mut alice, mut bob, room) = setup(|c| c.max_file_bytes = 1000);
    let mut carol = server.user("carol");
    let up = |c: &mut Client, name: &str, size: i64, token: Option<&str>| {
        let mut msg = json!({"type": "RQ_UPLOAD_FILE", "room_id": room, "name": name, "size": size});
        if let Some(t) = token {
            msg["token"] = json!(t);
        }
        c.request(msg).unwrap()
    };
    assert_error(&up(&mut carol.client, "x", 10, None), "ER_FORBIDDEN");
    assert_error(&up(&mut alice.client, "x", 1001, None), "ER_TOO_LARGE");
    assert_error(&up(&mut alice.client, "x", -5, None), "ER_BAD_REQUEST");
    for bad_name in ["", "/", "a/b/", "..", "\u{1}\u{7}"] {
        assert_error(&up(&mut alice.client, bad_name, 10, None), "ER_BAD_REQUEST");
    }
    let mut anonymous = server.connect();
    assert_error(&up(&mut anonymous, "x", 10, None), "ER_UNAUTHORIZED");
    assert_error(&up(&mut anonymous, "x", 10, Some("not a token")), "ER_AUTH_DATA");
    let wrong_room = anonymous
        .request(
            json!({"type": "RQ_UPLOAD_FILE", "room_id": 999, "name": "x", "size": 3, "token": bob.token}),
        )
        .unwrap();
    assert_error(&wrong_room, "ER_NOT_FOUND");
    alice.req(json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": bob.id}));
    assert_error(&up(&mut bob.client, "x", 10, None), "ER_BANNED");
    // Each refused connection is still usable, and nothing was kept.
    assert_type(&alice.req(json!({"type": "RQ_PING"})), "RQ_PING");
    assert_eq!(files_in(&server), Vec::<String>::new());
    assert_eq!(history_len(&mut alice, room), 0);
}

#[test]
fn cut_short_and_idle_uploads_leave_nothing() {
    let (server, mut alice, _bob, room) = setup(|c| c.transfer_idle_timeout_ms = 400);
    // Cut short: the client disconnects midway.
    let mut raw = TcpStream::connect(server.addr).unwrap();
    writeln!(raw, "{}", json!({"type": "RQ_UPLOAD_FILE", "name": "cut.bin", "size": 100_000, "room_id": room, "token": alice.token})).unwrap();
    let mut buf = [0u8; 64];
    let _ = raw.read(&mut buf).unwrap();
    raw.write_all(&noise(40_000, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(raw);
    // Idle: the client stops sending and stays connected.
    let mut idle = TcpStream::connect(server.addr).unwrap();
    writeln!(idle, "{}", json!({"type": "RQ_UPLOAD_FILE", "name": "idle.bin", "size": 100_000, "room_id": room, "token": alice.token})).unwrap();
    let _ = idle.read(&mut buf).unwrap();
    idle.write_all(&noise(10_000, 2)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = idle.read_to_end(&mut rest);
    assert!(
        closed.is_ok(),
        "the idle upload's connection is closed: {closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    wait_until(Duration::from_secs(5), || files_in(&server).is_empty());
    assert_eq!(history_len(&mut alice, room), 0);
}

#[test]
fn a_stalled_download_delays_no_one() {
    let (server, mut alice, bob, room) = setup(|c| c.transfer_idle_timeout_ms = 1500);
    let data = noise(8 * 1024 * 1024, 11);
    let id = alice.client.upload(room, "big.bin", &data, None).unwrap()["message_id"]
        .as_i64()
        .unwrap();
    // One client asks and never says RQ_READY_READ; another says it and never reads.
    let mut never_ready = server.connect();
    let offer = never_ready
        .request(json!({"type": "RQ_DOWNLOAD_FILE", "room_id": room, "msg_id": id, "token": bob.token}))
        .unwrap();
    assert_eq!(offer["size"], data.len());
    let mut never_reads = TcpStream::connect(server.addr).unwrap();
    writeln!(
        never_reads,
        "{}",
        json!({"type": "RQ_DOWNLOAD_FILE", "room_id": room, "msg_id": id, "token": bob.token})
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    writeln!(never_reads, "{}", json!({"type": "RQ_READY_READ"})).unwrap();
    // Meanwhile a third keeps chatting with no delay worth the name.
    let mut carol = server.user("carol");
    let mut worst = Duration::ZERO;
    for _ in 0..50 {
        let t = Instant::now();
        assert_type(&carol.req(json!({"type": "RQ_PING"})), "RQ_PING");
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(worst < Duration::from_millis(500), "a ping took {worst:?}");
    // Both stalled connections are dropped after the idle timeout.
    never_ready.set_timeout(Duration::from_secs(5)).unwrap();
    assert!(matches!(never_ready.recv(), Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
    never_reads
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut sink = Vec::new();
    let got = never_reads.read_to_end(&mut sink);
    assert!(got.is_ok() || got.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
}

#[test]
fn pushes_wait_until_a_download_is_done() {
    let (_server, mut alice, mut bob, room) = setup(|_| {});
    let data = noise(3 * 1024 * 1024, 13);
    let id = alice.client.upload(room, "f.bin", &data, None).unwrap()["message_id"]
        .as_i64()
        .unwrap();
    bob.expect("RQ_MSG");
    bob.client
        .send(&json!({"type": "RQ_DOWNLOAD_FILE", "room_id": room, "msg_id": id, "req_id": "d"}))
        .unwrap();
    assert_eq!(bob.client.recv_type("RQ_DOWNLOAD_FILE").unwrap()["req_id"], "d");
    // Alice chats while bob's download is offered and under way.
    for i in 0..5 {
        alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("during {i}")}));
    }
    bob.client.send(&json!({"type": "RQ_READY_READ"})).unwrap();
    let mut got = vec![0u8; data.len()];
    bob.client.recv_raw_exact(&mut got).unwrap();
    assert_eq!(sha(&got), sha(&data), "no push was mixed into the bytes");
    for i in 0..5 {
        assert_eq!(bob.expect("RQ_MSG")["message"], format!("during {i}"));
    }
}

#[test]
fn files_go_with_their_message_history_and_room() {
    let (server, mut alice, mut bob, room) = setup(|_| {});
    let upload = |u: &mut User, room: i64| {
        u.client.upload(room, "f", b"data", None).unwrap()["message_id"]
            .as_i64()
            .unwrap()
    };
    let first = upload(&mut alice, room);
    upload(&mut alice, room);
    assert_eq!(files_in(&server).len(), 2);
    assert_type(
        &alice.req(json!({"type": "RQ_DEL_MSG", "room_id": room, "msg_id": first})),
        "RQ_DEL_MSG",
    );
    assert_eq!(files_in(&server).len(), 1);
    assert_type(
        &alice.req(json!({"type": "RQ_DEL_HIST", "room_id": room})),
        "RQ_DEL_HIST",
    );
    assert_eq!(files_in(&server).len(), 0);
    let other = alice.new_room("Other", "DB_GLOBAL_CHAT");
    upload(&mut alice, other);
    upload(&mut alice, other);
    assert_type(
        &alice.req(json!({"type": "RQ_DEL_ROOM", "room_id": other})),
        "RQ_DEL_ROOM",
    );
    assert_eq!(files_in(&server).len(), 0);
    // Downloads of what is not a file, or by non-members, are refused.
    let text = alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "not a file"}))["message_id"]
        .as_i64()
        .unwrap();
    let (offer, _) = bob.client.download(room, text, None).unwrap();
    assert_error(&offer, "ER_NOT_FOUND");
    let mut carol = server.user("carol");
    let id = upload(&mut alice, room);
    let (offer, _) = carol.client.download(room, id, None).unwrap();
    assert_error(&offer, "ER_FORBIDDEN");
    let (offer, _) = bob.client.download(room + 77, id, None).unwrap();
    assert_error(&offer, "ER_NOT_FOUND");
    assert_error(&bob.req(json!({"type": "RQ_READY_READ"})), "ER_BAD_REQUEST");
}

#[test]
fn start_up_sweeps_leftovers_and_quota_applies() {
    let (server, mut alice, _bob, room) = setup(|c| c.user_quota_bytes = 1000);
    assert_type(
        &alice.client.upload(room, "a", &[1u8; 600], None).unwrap(),
        "RQ_MSG",
    );
    let refused = alice.req(json!({"type": "RQ_UPLOAD_FILE", "room_id": room, "name": "b", "size": 600}));
    assert_error(&refused, "ER_TOO_LARGE");
    let kept = files_in(&server);
    assert_eq!(kept.len(), 1);
    let (result, dir) = server.stop();
    result.unwrap();
    let files: &Path = &dir.path().join("data").join("files");
    std::fs::write(files.join(".upload-9-deadbeef"), b"half an upload").unwrap();
    std::fs::write(
        files.join("0123456789abcdef0123456789abcdef"),
        b"stored, never announced",
    )
    .unwrap();
    let server = start_in(dir, |_| {});
    assert_eq!(files_in(&server), kept);
}

#[test]
fn ten_megabytes_between_two_users_while_a_third_chats() {
    let (server, mut alice, mut bob, room) = setup(|_| {});
    let mut carol = server.user("carol");
    carol.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    // The contract's limit: 10 MB, not 10 MiB.
    let data = noise(10_000_000, 17);
    let expected = sha(&data);
    let chat = std::thread::spawn(move || {
        let mut worst = Duration::ZERO;
        for i in 0..40 {
            let t = Instant::now();
            let reply = carol.req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("chat {i}")}));
            assert_type(&reply, "RQ_MSG");
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        worst
    });
    let msg = alice.client.upload(room, "ten.bin", &data, None).unwrap();
    assert_type(&msg, "RQ_MSG");
    let id = msg["message_id"].as_i64().unwrap();
    let (offer, got) = bob.client.download(room, id, None).unwrap();
    assert_eq!(offer["size"], data.len());
    assert_eq!(sha(&got), expected);
    let worst = chat.join().unwrap();
    assert!(worst < Duration::from_secs(1), "chat was held up {worst:?}");
    let _: Value = bob.req(json!({"type": "RQ_PING"}));
}
