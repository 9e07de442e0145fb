//! The ngobrol bridge against the real RabbitMQ broker (127.0.0.1:5672,
//! guest/guest): a test client publishes exactly as the ngobrol client
//! does (the `ngobrol` queue, declared durable with no arguments; JSON
//! with a `method`; replies on its own queue, then on `ngobrol_<user>`),
//! beside Parley TCP users in the same groups and DMs.
//!
//! Each test uses its own request queue and users, and deletes its queues.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use serde_json::{json, Value};

use crate::util::{start_with, TestServer};

const BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Broker restarts affect every test using it: they run alone.
static BROKER_LOCK: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

/// A name no other test or run uses.
fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{}x{}x{}",
        std::process::id() % 10_000,
        nanos % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A server with the bridge on its own request queue.
fn bridged_server() -> (TestServer, String) {
    let queue = unique("ngobrol-test-");
    let q = queue.clone();
    let server = start_with(move |c| {
        c.ngobrol_amqp = Some(BROKER.into());
        c.ngobrol_queue = q;
    });
    (server, queue)
}

/// Speaks to the broker as the ngobrol client does.
struct NgClient {
    channel: Channel,
    _connection: Connection,
    request_queue: String,
    /// The client's own server-named queue, for register and login replies.
    own_queue: String,
    user_queue: Option<String>,
}

impl NgClient {
    fn new(request_queue: &str) -> NgClient {
        smol::block_on(async {
            let connection = Connection::connect(BROKER, ConnectionProperties::default())
                .await
                .expect("the broker at 127.0.0.1:5672 answers");
            let channel = connection.create_channel().await.unwrap();
            // channel.queueDeclare(): server-named, exclusive, auto-delete.
            let own = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
            NgClient {
                channel,
                _connection: connection,
                request_queue: request_queue.to_owned(),
                own_queue: own.name().to_string(),
                user_queue: None,
            }
        })
    }

    /// Publishes a request as the client does: declare the queue, then a
    /// bare publish through the default exchange.
    fn send(&self, request: Value) {
        self.send_raw(request.to_string().as_bytes());
    }

    fn send_raw(&self, payload: &[u8]) {
        smol::block_on(async {
            self.channel
                .queue_declare(
                    self.request_queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("the client's declaration of the request queue is accepted");
            self.channel
                .basic_publish(
                    "".into(),
                    self.request_queue.as_str().into(),
                    BasicPublishOptions::default(),
                    payload,
                    BasicProperties::default(),
                )
                .await
                .unwrap();
        })
    }

    /// The next message on a queue, waiting up to `within`.
    fn next_on(&self, queue: &str, within: Duration) -> Option<Value> {
        let until = Instant::now() + within;
        smol::block_on(async {
            loop {
                let got = self
                    .channel
                    .basic_get(queue.into(), BasicGetOptions::default())
                    .await
                    .unwrap();
                if let Some(message) = got {
                    message.delivery.ack(BasicAckOptions::default()).await.unwrap();
                    return Some(serde_json::from_slice(&message.delivery.data).unwrap());
                }
                if Instant::now() >= until {
                    return None;
                }
                smol::Timer::after(Duration::from_millis(20)).await;
            }
        })
    }

    /// The next reply on the client's own queue (register and login).
    #[track_caller]
    fn own_reply(&self) -> Value {
        self.next_on(&self.own_queue.clone(), Duration::from_secs(10))
            .expect("a reply on the client's queue")
    }

    /// The next message on the user's queue.
    #[track_caller]
    fn next(&self) -> Value {
        let queue = self.user_queue.clone().expect("logged in");
        self.next_on(&queue, Duration::from_secs(10))
            .expect("a message on the user's queue")
    }

    /// Nothing more arrives on the user's queue for a moment.
    #[track_caller]
    fn quiet(&self) {
        let queue = self.user_queue.clone().expect("logged in");
        if let Some(extra) = self.next_on(&queue, Duration::from_millis(400)) {
            panic!("unexpected message on {queue}: {extra}");
        }
    }

    /// register, then login; returns the token.
    #[track_caller]
    fn register_and_log_in(&mut self, username: &str, password: &str) -> String {
        self.send(json!({"method": "register", "username": username, "password": password, "queue_name": self.own_queue}));
        let reply = self.own_reply();
        assert_eq!(
            reply,
            json!({"method": "register_reply", "status": "ok", "description": "Akun berhasil dibuat."})
        );
        self.log_in(username, password)
    }

    #[track_caller]
    fn log_in(&mut self, username: &str, password: &str) -> String {
        self.send(json!({"method": "login", "username": username, "password": password, "queue_name": self.own_queue}));
        let reply = self.own_reply();
        assert_eq!(reply["method"], "login_reply", "{reply}");
        assert_eq!(reply["status"], "ok", "{reply}");
        assert_eq!(reply["description"], "Login berhasil.");
        let queue = format!("ngobrol_{username}");
        // The client consumes its queue at once: it must exist already.
        smol::block_on(self.channel.basic_consume(
            queue.as_str().into(),
            "probe".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .expect("the user's queue was declared before the login reply");
        smol::block_on(self.channel.basic_cancel("probe".into(), Default::default())).unwrap();
        self.user_queue = Some(queue);
        reply["token"].as_str().unwrap().to_owned()
    }

    /// create_group, then get_group: the new group's id.
    #[track_caller]
    fn create_group(&self, username: &str, token: &str, name: &str) -> i64 {
        self.send(
            json!({"method": "create_group", "username": username, "group_name": name, "token": token}),
        );
        assert_eq!(self.next()["status"], "ok");
        self.send(json!({"method": "get_group", "username": username, "token": token}));
        let groups = self.next();
        groups["groups"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["group_name"] == name))
            .and_then(|g| g["group_id"].as_i64())
            .expect("the new group is listed")
    }

    fn delete_queues(&self, extra: &[&str]) {
        smol::block_on(async {
            for queue in self
                .user_queue
                .iter()
                .map(String::as_str)
                .chain(extra.iter().copied())
            {
                let _ = self
                    .channel
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
                    .await;
            }
        })
    }
}

#[test]
fn every_method_with_its_exact_texts() {
    let _turn = BROKER_LOCK.read();
    let (server, queue) = bridged_server();
    let budi = unique("budi");
    let sari = unique("sari");
    let mut b = NgClient::new(&queue);
    let mut s = NgClient::new(&queue);
    let bt = b.register_and_log_in(&budi, "rahasia");
    assert!(bt.ends_with(&budi), "a Parley token: {bt}");
    let st = s.register_and_log_in(&sari, "sandi");

    b.send(json!({"method": "add_friend", "username_from": budi, "username_to": sari, "token": bt}));
    assert_eq!(
        b.next(),
        json!({"method": "add_friend_reply", "status": "ok", "description": "Teman berhasil ditambahkan."})
    );
    // Mutual at once.
    s.send(json!({"method": "get_friend", "username": sari, "token": st}));
    assert_eq!(
        s.next(),
        json!({"method": "get_friend_reply", "status": "ok", "description": "Teman berhasil diambil.", "usernames": [budi]})
    );

    b.send(json!({"method": "create_group", "username": budi, "group_name": "kelas", "token": bt}));
    assert_eq!(
        b.next(),
        json!({"method": "create_group_reply", "status": "ok", "description": "Group berhasil ditambahkan."})
    );
    b.send(json!({"method": "get_group", "username": budi, "token": bt}));
    let groups = b.next();
    assert_eq!(groups["description"], "Group berhasil diambil");
    assert_eq!(groups["groups"][0]["group_name"], "kelas", "{groups}");
    let gid = groups["groups"][0]["group_id"]
        .as_i64()
        .expect("an integer group_id");

    b.send(json!({"method": "add_member_to_group", "username_adder": budi, "username_to_add": sari, "group_id": gid, "token": bt}));
    let notice = json!({"method": "send_group", "username_from": "admin", "group_id_to": gid, "group_name_to": "kelas", "message": format!("{sari} telah masuk ke dalam grup.")});
    let mut got = vec![b.next(), b.next()];
    got.sort_by_key(|v| v["method"].to_string());
    assert_eq!(
        got,
        vec![
            json!({"method": "add_member_to_group_reply", "status": "ok", "description": format!("{sari} berhasil ditambahkan.")}),
            notice.clone(),
        ]
    );
    assert_eq!(s.next(), notice);

    b.send(json!({"method": "send_group", "username_from": budi, "group_id_to": gid, "message": "halo kelas", "token": bt}));
    let said = json!({"method": "send_group", "username_from": budi, "group_id_to": gid, "group_name_to": "kelas", "message": "halo kelas"});
    assert_eq!(b.next(), said, "echoed to the sender");
    assert_eq!(
        b.next(),
        json!({"method": "send_group_reply", "status": "ok", "description": "Message berhasil dikirim"})
    );
    assert_eq!(s.next(), said);

    s.send(json!({"method": "send_client", "username_from": sari, "username_to": budi, "message": "hai budi", "token": st}));
    assert_eq!(
        s.next(),
        json!({"method": "send_client_reply", "status": "ok", "description": "Message berhasil dikirim"})
    );
    assert_eq!(
        b.next(),
        json!({"method": "send_client", "username_from": sari, "message": "hai budi"})
    );

    s.send(json!({"method": "quit_from_group", "username": sari, "group_id": gid, "token": st}));
    assert_eq!(
        s.next(),
        json!({"method": "quit_from_group_reply", "status": "ok", "description": format!("{sari} berhasil keluar grup")})
    );
    assert_eq!(
        b.next(),
        json!({"method": "send_group", "username_from": "admin", "group_id_to": gid, "group_name_to": "kelas", "message": format!("{sari} telah keluar dari grup.")})
    );
    b.quiet();
    s.quiet();
    b.delete_queues(&[&queue]);
    s.delete_queues(&[]);
    drop(server);
}

/// ngobrol users and Parley TCP users share accounts, groups and DMs.
#[test]
fn ngobrol_and_tcp_users_talk_in_the_same_group_and_dm() {
    let _turn = BROKER_LOCK.read();
    let (server, queue) = bridged_server();
    let budi = unique("budi");
    let mut b = NgClient::new(&queue);
    let bt = b.register_and_log_in(&budi, "rahasia");
    // The same account over TCP, with the same password.
    let mut tcp_budi = server.connect();
    let logged = tcp_budi.log_in(&budi, "rahasia").unwrap();
    assert_eq!(
        logged["type"], "RQ_TOKEN",
        "an account made through ngobrol logs in with parley: {logged}"
    );

    let mut ani = server.user(&unique("ani"));
    b.send(json!({"method": "add_friend", "username_from": budi, "username_to": ani.login, "token": bt}));
    assert_eq!(b.next()["status"], "ok");
    let gid = b.create_group(&budi, &bt, "campur");
    b.send(json!({"method": "add_member_to_group", "username_adder": budi, "username_to_add": ani.login, "group_id": gid, "token": bt}));
    b.next();
    b.next();
    assert_eq!(ani.expect("RQ_JOIN_ROOM")["id"], gid);

    b.send(json!({"method": "send_group", "username_from": budi, "group_id_to": gid, "message": "dari ngobrol", "token": bt}));
    b.next();
    b.next();
    let got = ani.expect("RQ_MSG");
    assert_eq!(
        (got["login"].as_str(), got["message"].as_str()),
        (Some(budi.as_str()), Some("dari ngobrol"))
    );

    ani.req(json!({"type": "RQ_MSG", "room_id": gid, "message": "dari parley"}));
    assert_eq!(
        b.next(),
        json!({"method": "send_group", "username_from": ani.login, "group_id_to": gid, "group_name_to": "campur", "message": "dari parley"})
    );

    b.send(json!({"method": "send_client", "username_from": budi, "username_to": ani.login, "message": "dm dari ngobrol", "token": bt}));
    assert_eq!(b.next()["status"], "ok");
    let dm = ani.expect("RQ_MSG");
    assert_eq!(dm["message"], "dm dari ngobrol");
    let dm_room = dm["room_id"].as_i64().unwrap();
    ani.req(json!({"type": "RQ_MSG", "room_id": dm_room, "message": "balas dari parley"}));
    assert_eq!(
        b.next(),
        json!({"method": "send_client", "username_from": ani.login, "message": "balas dari parley"})
    );
    b.quiet();
    b.delete_queues(&[&queue]);
    drop(server);
}

/// Bad input gets an error reply that says why, never a crash; the
/// original's token flaws do not exist here.
#[test]
fn refusals_say_why_and_tokens_are_checked() {
    let _turn = BROKER_LOCK.read();
    let (server, queue) = bridged_server();
    let budi = unique("budi");
    let eve = unique("eve");
    let mut b = NgClient::new(&queue);
    let bt = b.register_and_log_in(&budi, "rahasia");
    let mut e = NgClient::new(&queue);
    let et = e.register_and_log_in(&eve, "jahat");

    b.send_raw(b"{this is not json");
    b.send_raw(b"[1,2,3]");
    b.send(json!({"method": "send_group", "username_from": budi, "group_id_to": "satu", "message": "x", "token": bt}));
    let reply = b.next();
    assert_eq!(
        (reply["method"].as_str(), reply["status"].as_str()),
        (Some("send_group_reply"), Some("error"))
    );
    assert!(
        reply["description"].as_str().unwrap().contains("group_id_to"),
        "{reply}"
    );
    b.send(json!({"method": "drop_table", "username": budi}));
    let reply = b.next();
    assert_eq!(reply["status"], "error");
    assert!(
        reply["description"].as_str().unwrap().contains("unknown method"),
        "{reply}"
    );

    // Eve's token does not speak for budi, nor a made-up one.
    e.send(json!({"method": "get_friend", "username": budi, "token": et}));
    let reply = b.next();
    assert_eq!(reply["status"], "error", "{reply}");
    e.send(json!({"method": "get_friend", "username": budi, "token": format!("{}{budi}", "a".repeat(64))}));
    assert_eq!(b.next()["status"], "error");
    // Unknown groups, strangers, and a DM to a non-friend.
    b.send(json!({"method": "send_group", "username_from": budi, "group_id_to": 999_999, "message": "x", "token": bt}));
    let reply = b.next();
    assert_eq!(reply["status"], "error");
    b.send(json!({"method": "send_client", "username_from": budi, "username_to": eve, "message": "x", "token": bt}));
    let reply = b.next();
    assert_eq!(reply["status"], "error");
    assert!(
        reply["description"].as_str().unwrap().contains("friends"),
        "{reply}"
    );
    b.send(
        json!({"method": "add_friend", "username_from": budi, "username_to": unique("nobody"), "token": bt}),
    );
    assert_eq!(b.next()["status"], "error");
    // Only the group's admin adds members.
    let gid = b.create_group(&budi, &bt, "tertutup");
    e.send(json!({"method": "add_member_to_group", "username_adder": eve, "username_to_add": eve, "group_id": gid, "token": et}));
    assert_eq!(e.next()["status"], "error");
    // A wrong password, and a taken username.
    let other = NgClient::new(&queue);
    other.send(
        json!({"method": "login", "username": budi, "password": "salah", "queue_name": other.own_queue}),
    );
    assert_eq!(other.own_reply()["status"], "error");
    other.send(
        json!({"method": "register", "username": budi, "password": "x", "queue_name": other.own_queue}),
    );
    assert_eq!(other.own_reply()["status"], "error");
    // Still serving.
    b.send(json!({"method": "get_friend", "username": budi, "token": bt}));
    assert_eq!(b.next()["status"], "ok");
    b.quiet();
    b.delete_queues(&[&queue]);
    e.delete_queues(&[]);
    drop(server);
}

/// Runs `rabbitmqctl` with the arguments; panics if it fails.
fn rabbitmqctl(args: &[&str]) {
    let status = std::process::Command::new("rabbitmqctl")
        .args(args)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {args:?} failed");
}

/// The broker goes away and comes back: what was said meanwhile reaches the
/// ngobrol user's durable queue afterwards, and requests are served again.
#[test]
fn the_bridge_reconnects_when_the_broker_restarts() {
    let _alone = BROKER_LOCK.write();
    let (server, queue) = bridged_server();
    let budi = unique("budi");
    let mut b = NgClient::new(&queue);
    let bt = b.register_and_log_in(&budi, "rahasia");
    let gid = b.create_group(&budi, &bt, "tahan");
    let mut ani = server.user(&unique("ani"));
    let mut tcp_budi = server.connect();
    assert_eq!(tcp_budi.log_in(&budi, "rahasia").unwrap()["type"], "RQ_TOKEN");
    tcp_budi
        .request(json!({"type": "RQ_ADD_MEMBER", "room_id": gid, "login": ani.login}))
        .unwrap();
    b.next(); // the join notice
    drop(b);

    rabbitmqctl(&["stop_app"]);
    let said = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ani.req(json!({"type": "RQ_MSG", "room_id": gid, "message": "selagi broker mati"}))
    }));
    rabbitmqctl(&["start_app"]);
    rabbitmqctl(&["await_startup"]);
    assert_eq!(
        said.expect("Parley chats on without the broker")["type"],
        "RQ_MSG"
    );

    let mut b = NgClient::new(&queue);
    b.user_queue = Some(format!("ngobrol_{budi}"));
    let got = b
        .next_on(&format!("ngobrol_{budi}"), Duration::from_secs(20))
        .expect("the message said while the broker was down arrives");
    assert_eq!(
        got,
        json!({"method": "send_group", "username_from": ani.login, "group_id_to": gid, "group_name_to": "tahan", "message": "selagi broker mati"})
    );
    // Requests are served again (the bridge reconnects within seconds).
    b.send(json!({"method": "get_friend", "username": budi, "token": bt}));
    assert_eq!(
        b.next_on(&format!("ngobrol_{budi}"), Duration::from_secs(20))
            .unwrap()["status"],
        "ok"
    );
    b.delete_queues(&[&queue]);
    drop(server);
}

/// ngobrol kept one token per user: a new login revokes the previous one,
/// and pushes reach the user's queue once, not once per login.
#[test]
fn a_new_login_replaces_the_previous_one() {
    let _turn = BROKER_LOCK.read();
    let (server, queue) = bridged_server();
    let budi = unique("budi");
    let mut b = NgClient::new(&queue);
    let first = b.register_and_log_in(&budi, "rahasia");
    let second = b.log_in(&budi, "rahasia");
    assert_ne!(first, second);
    b.send(json!({"method": "get_friend", "username": budi, "token": first}));
    let reply = b.next();
    assert_eq!(reply["status"], "error", "the previous token is revoked: {reply}");
    let gid = b.create_group(&budi, &second, "sekali");
    let mut ani = server.user(&unique("ani"));
    let mut tcp_budi = server.connect();
    assert_eq!(tcp_budi.log_in(&budi, "rahasia").unwrap()["type"], "RQ_TOKEN");
    tcp_budi
        .request(json!({"type": "RQ_ADD_MEMBER", "room_id": gid, "login": ani.login}))
        .unwrap();
    assert_eq!(
        b.next()["message"],
        format!("{} telah masuk ke dalam grup.", ani.login)
    );
    ani.req(json!({"type": "RQ_MSG", "room_id": gid, "message": "sekali saja"}));
    assert_eq!(b.next()["message"], "sekali saja");
    b.quiet();
    b.delete_queues(&[&queue]);
    drop(server);
}
