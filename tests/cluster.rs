//! Several nodes as one server (design.md §9): three `parleyd` processes on
//! one PostgreSQL database (127.0.0.1:5432) and one NATS bus (the machine's
//! at 127.0.0.1:4222, or a private `nats-server` for the test that restarts
//! it). Every test has a database and a bus subject of its own.

use std::collections::HashSet;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use parley::client::Client;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::util::{assert_type, on_postgres, postgres_database, spawn_parleyd_with, Stop};

/// The machine's NATS server.
const NATS: &str = "nats://127.0.0.1:4222";
/// The PostgreSQL server the test databases live on.
const POSTGRES: &str = "postgres://postgres@127.0.0.1";

/// The cluster tests run in the SQLite pass of the suite only (they make
/// their own PostgreSQL databases either way).
fn skipped() -> bool {
    if on_postgres() {
        eprintln!("the cluster tests run in the suite's first pass");
    }
    on_postgres()
}

/// Nodes sharing one database and one bus subject.
struct Cluster {
    dir: TempDir,
    store: String,
    bus: String,
    subject: String,
    /// The rate limits in every node's configuration.
    limits: String,
    nodes: Vec<Option<Node>>,
}

/// Limits no test reaches, but for those of the test about limits.
const NO_LIMITS: &str = "sign_ups_per_addr_per_min = 1000000.0\nsign_up_burst_per_addr = 1000000\n\
     sign_ups_per_min = 1000000.0\nlog_ins_per_addr_per_min = 1000000.0\n\
     log_in_burst_per_addr = 1000000\nlog_ins_per_min = 1000000.0\nrooms_burst = 1000000\n\
     msg_rate_per_sec = 1000000.0\nmsg_burst = 1000000\n";

struct Node {
    addr: String,
    process: Stop,
}

impl Cluster {
    fn start(nodes: usize, bus: &str) -> Cluster {
        Cluster::start_with_limits(nodes, bus, NO_LIMITS)
    }

    fn start_with_limits(nodes: usize, bus: &str, limits: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let store = postgres_database(POSTGRES, dir.path());
        // A subject of the test's own: tests run in parallel on one bus.
        let subject = format!(
            "parleytest.{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        let mut cluster = Cluster {
            dir,
            store,
            bus: bus.to_owned(),
            subject,
            limits: limits.to_owned(),
            nodes: Vec::new(),
        };
        for i in 0..nodes {
            let node = cluster.spawn(i);
            cluster.nodes.push(Some(node));
        }
        cluster
    }

    fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}"))
    }

    fn spawn(&self, i: usize) -> Node {
        self.spawn_on(i, &self.subject)
    }

    /// Adds a node that listens on a subject of its own: it hears nothing
    /// the others publish, as if the bus lost all of it.
    fn add_deaf_node(&mut self) {
        let node = self.spawn_on(self.nodes.len(), &format!("{}_deaf", self.subject));
        self.nodes.push(Some(node));
    }

    /// Node `i`, on bus subject prefix `subject`.
    fn spawn_on(&self, i: usize, subject: &str) -> Node {
        let dir = self.node_dir(i);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("parley.toml");
        std::fs::write(
            &config,
            format!(
                "cluster_store = {:?}\ncluster_bus = {:?}\ncluster_subject = {:?}\nweb = \"off\"\n\
                 log_level = \"debug\"\n{}",
                self.store, self.bus, subject, self.limits
            ),
        )
        .unwrap();
        // The nodes share one data directory: file bytes live there, for
        // every node to serve.
        // A node says it listens once it is on the bus.
        let (child, addr) =
            spawn_parleyd_with(&self.dir.path().join("data"), &config, &dir.join("parleyd.log"));
        Node {
            addr,
            process: Stop(child),
        }
    }

    /// `n` new users, user i on node i modulo the number of nodes.
    fn members(&self, n: usize) -> Vec<Member> {
        (0..n)
            .map(|i| Member::sign_up(self.addr(i % self.nodes.len()), &format!("user{i}")))
            .collect()
    }

    fn addr(&self, i: usize) -> &str {
        &self.nodes[i].as_ref().expect("node running").addr
    }

    /// Kills node `i` as a crash would (SIGKILL).
    fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            node.process.0.kill().unwrap();
            node.process.0.wait().unwrap();
        }
    }

    /// Stops node `i` as an operator would (SIGTERM); it must exit in time.
    fn stop(&mut self, i: usize) {
        let Some(mut node) = self.nodes[i].take() else {
            return;
        };
        let pid = node.process.0.id() as libc::pid_t;
        // SAFETY: kill(2) on a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let asked = Instant::now();
        while node.process.0.try_wait().unwrap().is_none() {
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "node {i} did not stop on SIGTERM; its log ends:\n{}",
                self.log_tail(i, 20)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self, i: usize, lines: usize) -> String {
        let log = self.log(i);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_dir(i).join("parleyd.log")).unwrap_or_default()
    }
}

/// A user of the cluster: a connection to one node and what it was sent.
struct Member {
    login: String,
    token: String,
    client: Client,
    /// Message ids of the RQ_MSG pushes received, in arrival order.
    seen: Vec<i64>,
}

impl Member {
    /// Stands in for a member moved elsewhere.
    fn placeholder() -> Member {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Member {
            login: String::new(),
            token: String::new(),
            client: Client::connect(listener.local_addr().unwrap()).unwrap(),
            seen: Vec::new(),
        }
    }

    fn sign_up(addr: &str, login: &str) -> Member {
        let mut client = Client::connect(addr).unwrap();
        let reply = client.sign_up(login, &format!("pw-{login}")).unwrap();
        assert_type(&reply, "RQ_TOKEN");
        Member {
            login: login.to_owned(),
            token: reply["token"].as_str().unwrap().to_owned(),
            client,
            seen: Vec::new(),
        }
    }

    /// A request and its answer (pushes that come first stay queued in
    /// the client for `read_until`).
    fn req(&mut self, msg: Value) -> Value {
        self.client.request(msg).expect("answered")
    }

    /// Reads pushes until `want` messages were seen or `within` passed.
    fn read_until(&mut self, want: usize, within: Duration) {
        self.read_while(within, |member| member.seen.len() < want);
    }

    /// Reads pushes until message `id` was among them, or `within` passed.
    fn heard_within(&mut self, id: i64, within: Duration) -> bool {
        self.read_while(within, |member| !member.seen.contains(&id));
        self.seen.contains(&id)
    }

    /// Reads pushes while `more` holds, for at most `within`.
    fn read_while(&mut self, within: Duration, more: impl Fn(&Member) -> bool) {
        let start = Instant::now();
        self.client.set_timeout(Duration::from_millis(100)).unwrap();
        while more(self) && start.elapsed() < within {
            match self.client.recv() {
                Ok(msg) => self.note(&msg),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("{}: {e}", self.login),
            }
        }
    }

    fn note(&mut self, msg: &Value) {
        if msg["type"] == "RQ_MSG" && msg.get("req_id").is_none() {
            self.seen.push(msg["message_id"].as_i64().unwrap());
        }
    }
}

/// Sends `n` messages from `member` into `room`, pipelined; returns the ids
/// acknowledged, in order. Pushes read meanwhile are noted.
fn send_burst(member: &mut Member, room: i64, n: usize, tag: &str) -> Vec<i64> {
    let (acked, answered) = send_until_cut(member, room, n, tag);
    assert_eq!(answered, n, "{}: every message answered", member.login);
    assert_eq!(acked.len(), n, "{}: every message stored", member.login);
    acked
}

/// Sends `n` messages pipelined, for a member whose node may die under it: returns
/// what was acknowledged before the connection broke, and how many
/// requests were answered at all (a node may refuse what it cannot take in
/// time with ER_BUSY: answered, not stored).
fn send_until_cut(member: &mut Member, room: i64, n: usize, tag: &str) -> (Vec<i64>, usize) {
    let mut lines = String::new();
    for i in 0..n {
        lines.push_str(&format!(
            "{}\n",
            json!({"type": "RQ_MSG", "room_id": room, "message": format!("{tag} {i}"), "req_id": format!("{tag}-{i}")})
        ));
    }
    let mut acked = Vec::new();
    let mut answered = 0;
    if member.client.send_raw(lines.as_bytes()).is_err() {
        return (acked, answered);
    }
    member.client.set_timeout(Duration::from_secs(20)).unwrap();
    while answered < n {
        let Ok(msg) = member.client.recv() else { break };
        match msg["req_id"].as_str() {
            Some(id) if id.starts_with(&format!("{tag}-")) => {
                answered += 1;
                if msg["type"] == "RQ_MSG" {
                    acked.push(msg["message_id"].as_i64().unwrap());
                } else {
                    assert_eq!(msg["error_code"], "ER_BUSY", "{msg}");
                }
            }
            _ => member.note(&msg),
        }
    }
    (acked, answered)
}

/// Every member joins a new global room made by the first.
fn shared_room(members: &mut [Member]) -> i64 {
    let reply =
        members[0].req(json!({"type": "RQ_NEW_ROOM", "name": "everyone", "room_type": "DB_GLOBAL_CHAT"}));
    let room = reply["id"].as_i64().unwrap_or_else(|| panic!("{reply}"));
    for member in &mut members[1..] {
        let reply = member.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
        assert!(reply["type"] != "RQ_ERROR_MSG", "{reply}");
    }
    room
}

/// Asserts `member` saw exactly `expected` (every id once), in id order.
#[track_caller]
fn saw_all_in_order(member: &Member, expected: &HashSet<i64>) {
    let seen: HashSet<i64> = member.seen.iter().copied().collect();
    assert_eq!(
        seen.len(),
        member.seen.len(),
        "{} saw a message twice",
        member.login
    );
    let missing: Vec<_> = expected.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} missed {} messages: {missing:?}",
        member.login,
        missing.len()
    );
    let extra: Vec<_> = seen.difference(expected).collect();
    assert!(
        extra.is_empty(),
        "{} saw unexpected messages {extra:?}",
        member.login
    );
    assert!(
        member.seen.windows(2).all(|w| w[0] < w[1]),
        "{} saw the room's messages out of order",
        member.login
    );
}

/// The room's whole history, read from node `addr` as the user of
/// `token`, oldest first.
fn history(addr: &str, token: &str, room: i64) -> Vec<i64> {
    let mut client = Client::connect(addr).unwrap();
    assert_type(&client.resume(token).unwrap(), "RQ_TOKEN");
    let mut ids = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let mut req = json!({"type": "RQ_OLD_MSGS", "room_id": room, "limit": 100});
        if let Some(b) = before {
            req["before_id"] = json!(b);
        }
        let page = client.request(req).unwrap();
        let page_ids = crate::util::message_ids(&page, "messages");
        if page_ids.is_empty() {
            break;
        }
        before = page_ids.iter().min().copied();
        ids.extend(page_ids);
    }
    ids.sort_unstable();
    ids
}

/// Sends `per_member` messages from every member at once, each on its own
/// node; returns the members with the ids each had acknowledged.
fn everyone_sends(
    members: Vec<Member>,
    room: i64,
    per_member: usize,
    round: &str,
) -> Vec<(Member, HashSet<i64>)> {
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let tag = format!("{round}m{i}");
            thread::spawn(move || {
                let acked = send_burst(&mut member, room, per_member, &tag);
                (member, acked.into_iter().collect())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn users_on_three_nodes_chat_and_every_push_arrives_once_in_order() {
    if skipped() {
        return;
    }
    let cluster = Cluster::start(3, NATS);
    let mut members = cluster.members(6);
    let room = shared_room(&mut members);
    let per_member = 40;
    let sent = everyone_sends(members, room, per_member, "a");
    let all: HashSet<i64> = sent.iter().flat_map(|(_, acked)| acked.iter().copied()).collect();
    assert_eq!(all.len(), 6 * per_member);
    let stored = history(cluster.addr(1), &sent[0].0.token, room);
    assert_eq!(stored.len(), all.len(), "every acknowledged message stored once");
    assert_eq!(stored.iter().copied().collect::<HashSet<_>>(), all);
    // Each hears everyone else's messages, once each, in the room's order
    // (its own came back as the answers).
    for (mut member, own) in sent {
        member.read_until(all.len() - own.len(), Duration::from_secs(20));
        let others: HashSet<i64> = all.difference(&own).copied().collect();
        saw_all_in_order(&member, &others);
    }
    let mut cluster = cluster;
    for i in 0..3 {
        assert!(!cluster.log(i).contains("panicked"), "node {i} panicked");
        cluster.stop(i);
    }
}

#[test]
fn a_node_killed_mid_traffic_loses_nothing_acknowledged() {
    if skipped() {
        return;
    }
    let mut cluster = Cluster::start(3, NATS);
    let mut members = cluster.members(6);
    let room = shared_room(&mut members);
    // Everyone sends; node 0 (users 0 and 3) is killed in the middle of it.
    let per_member = 150;
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            thread::spawn(move || {
                let (acked, answered) = send_until_cut(&mut member, room, per_member, &format!("a{i}"));
                (member, acked.into_iter().collect::<HashSet<i64>>(), answered)
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(150));
    cluster.kill(0);
    let results: Vec<(Member, HashSet<i64>, usize)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (i, (member, _, answered)) in results.iter().enumerate() {
        if i % 3 != 0 && *answered != per_member {
            panic!(
                "{} on a live node was answered {answered} of {per_member}; its node's log ends:\n{}",
                member.login,
                cluster.log_tail(i % 3, 40)
            );
        }
    }
    let cut_short = results[0].2 < per_member || results[3].2 < per_member;
    assert!(cut_short, "the node died while its users were sending");
    let mut sent: Vec<(Member, HashSet<i64>)> = results.into_iter().map(|(m, a, _)| (m, a)).collect();
    // Its users come back on node 1 with their tokens.
    for i in [0, 3] {
        let member = &mut sent[i].0;
        member.client = Client::connect(cluster.addr(1)).unwrap();
        assert_type(&member.client.resume(&member.token).unwrap(), "RQ_TOKEN");
    }
    // More traffic from everyone: what node 0 stored but never published
    // shows up as gaps, filled from the store.
    let members: Vec<Member> = sent
        .iter_mut()
        .map(|(m, _)| std::mem::replace(m, Member::placeholder()))
        .collect();
    let second = everyone_sends(members, room, 20, "b");
    let mut acked_all: HashSet<i64> = sent.iter().flat_map(|(_, a)| a.iter().copied()).collect();
    acked_all.extend(second.iter().flat_map(|(_, a)| a.iter().copied()));
    let stored = history(cluster.addr(2), &second[1].0.token, room);
    let stored_set: HashSet<i64> = stored.iter().copied().collect();
    assert_eq!(stored_set.len(), stored.len(), "nothing stored twice");
    let lost: Vec<_> = acked_all.difference(&stored_set).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    // The users who stayed connected heard every stored message but their own.
    for (i, (mut member, own_second)) in second.into_iter().enumerate() {
        if i % 3 == 0 {
            // Reconnected users catch up with history (read above) instead.
            continue;
        }
        let own: HashSet<i64> = sent[i].1.union(&own_second).copied().collect();
        let others: HashSet<i64> = stored_set.difference(&own).copied().collect();
        member.read_until(others.len(), Duration::from_secs(20));
        saw_all_in_order(&member, &others);
    }
    for i in 1..3 {
        assert!(!cluster.log(i).contains("panicked"), "node {i} panicked");
    }
}

/// A NATS server of the test's own, to stop and start again.
struct PrivateBus {
    port: u16,
    process: Option<Stop>,
}

impl PrivateBus {
    fn start() -> PrivateBus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut bus = PrivateBus { port, process: None };
        bus.restart();
        bus
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (apt install nats-server)");
        self.process = Some(Stop(child));
        let up = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.0.kill().unwrap();
            process.0.wait().unwrap();
        }
    }
}

#[test]
fn a_bus_restarted_mid_traffic_loses_nothing_and_order_holds() {
    if skipped() {
        return;
    }
    let mut bus = PrivateBus::start();
    let cluster = Cluster::start(2, &bus.url());
    let mut members = cluster.members(4);
    let room = shared_room(&mut members);
    let mut own: Vec<HashSet<i64>> = vec![HashSet::new(); 4];
    let round = |members: Vec<Member>, tag: &str, own: &mut Vec<HashSet<i64>>| -> Vec<Member> {
        everyone_sends(members, room, 20, tag)
            .into_iter()
            .enumerate()
            .map(|(i, (member, acked))| {
                own[i].extend(acked);
                member
            })
            .collect()
    };
    let members = round(members, "before", &mut own);
    bus.kill();
    // The bus is down: each node still stores, and answers its own users.
    let members = round(members, "down", &mut own);
    bus.restart();
    // Once the nodes are back on the bus, a message from node 0 reaches node 1.
    let mut members = members;
    let back = Instant::now();
    loop {
        let probe = members[0].req(json!({"type": "RQ_MSG", "room_id": room, "message": "probe"}));
        let probe = probe["message_id"].as_i64().unwrap();
        own[0].insert(probe);
        if members[1].heard_within(probe, Duration::from_secs(1)) {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "the nodes did not come back on the bus; node 1's log ends:\n{}",
            cluster.log_tail(1, 30)
        );
    }
    let members = round(members, "after", &mut own);
    let stored: HashSet<i64> = history(cluster.addr(0), &members[0].token, room)
        .into_iter()
        .collect();
    for (i, mut member) in members.into_iter().enumerate() {
        let others: HashSet<i64> = stored.difference(&own[i]).copied().collect();
        member.read_until(others.len(), Duration::from_secs(20));
        saw_all_in_order(&member, &others);
    }
}

#[test]
fn messages_whose_bus_copies_never_come_still_arrive_in_order() {
    if skipped() {
        return;
    }
    // Nothing node 0 publishes reaches node 1: as if the bus lost each
    // message, or node 0 died after each commit. No later message shows
    // node 1 a gap; it finds them by asking the store.
    let mut cluster = Cluster::start(1, NATS);
    cluster.add_deaf_node();
    let mut members = cluster.members(2);
    let room = shared_room(&mut members);
    let mut sent = HashSet::new();
    for i in 0..3 {
        let reply =
            members[0].req(json!({"type": "RQ_MSG", "room_id": room, "message": format!("unheard {i}")}));
        sent.insert(reply["message_id"].as_i64().unwrap());
        thread::sleep(Duration::from_millis(400));
    }
    let last = *sent.iter().max().unwrap();
    assert!(
        members[1].heard_within(last, Duration::from_secs(10)),
        "node 1 never delivered the room's last message; its log ends:\n{}",
        cluster.log_tail(1, 20)
    );
    members[1].read_while(Duration::from_millis(500), |_| true);
    saw_all_in_order(&members[1], &sent);
}

/// The RQ_PRESENCE pushes `client` gets within `within` (stopping at the
/// first that `wanted` accepts).
fn presence_within(client: &mut Client, within: Duration, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
    let start = Instant::now();
    let mut seen = Vec::new();
    client.set_timeout(Duration::from_millis(100)).unwrap();
    while start.elapsed() < within {
        match client.recv() {
            Ok(msg) if msg["type"] == "RQ_PRESENCE" => {
                let done = wanted(&msg);
                seen.push(msg);
                if done {
                    break;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
    }
    seen
}

/// Whether `friend` shows online in `client`'s friend list.
fn friend_online(client: &mut Client, friend: &str) -> bool {
    client.set_timeout(Duration::from_secs(10)).unwrap();
    let reply = client.request(json!({"type": "RQ_GET_FRIENDS"})).unwrap();
    let friends = reply["friends"].as_array().unwrap_or_else(|| panic!("{reply}"));
    friends
        .iter()
        .find(|f| f["login"] == friend)
        .unwrap_or_else(|| panic!("{friend} in {reply}"))["online"]
        .as_bool()
        .unwrap()
}

#[test]
fn presence_is_the_whole_clusters() {
    if skipped() {
        return;
    }
    let mut cluster = Cluster::start(3, NATS);
    // user0 on node 0, user1 on node 1.
    let mut members = cluster.members(2);
    let reply = members[0].req(json!({"type": "RQ_ADD_FRIEND", "login": "user1"}));
    assert_type(&reply, "RQ_ADD_FRIEND");
    let friends = members[1].req(json!({"type": "RQ_GET_FRIENDS"}));
    let user0 = friends["friends"][0]["user_id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{friends}"));
    let token0 = members[0].token.clone();
    let went = |online: bool| move |m: &Value| m["user_id"] == user0 && m["online"] == online;
    assert!(
        friend_online(&mut members[1].client, "user0"),
        "online on node 0, seen from node 1"
    );

    // user0 also connects on node 2, then leaves node 0: online throughout,
    // so user1 is told nothing.
    let mut second = Client::connect(cluster.addr(2)).unwrap();
    assert_type(&second.resume(&token0).unwrap(), "RQ_TOKEN");
    // Node 1 hears of node 2's connection before node 0's goes.
    thread::sleep(Duration::from_millis(500));
    members[0] = Member::placeholder();
    let told = presence_within(&mut members[1].client, Duration::from_millis(2500), |_| false);
    assert!(
        told.is_empty(),
        "user0 never left the cluster, yet user1 heard {told:?}"
    );
    assert!(friend_online(&mut members[1].client, "user0"), "online on node 2");

    // Node 2 dies with user0's only connection: the others count user0 gone
    // once the node has been silent long enough.
    cluster.kill(2);
    let told = presence_within(&mut members[1].client, Duration::from_secs(10), went(false));
    assert!(
        told.last().is_some_and(went(false)),
        "user1 never heard that user0 went with node 2: {told:?}; node 1's log ends:\n{}",
        cluster.log_tail(1, 20)
    );
    assert!(!friend_online(&mut members[1].client, "user0"));

    // user0 comes back on node 0, and then node 0 stops: each is told at once.
    let mut back = Client::connect(cluster.addr(0)).unwrap();
    assert_type(&back.resume(&token0).unwrap(), "RQ_TOKEN");
    let told = presence_within(&mut members[1].client, Duration::from_secs(3), went(true));
    assert!(told.last().is_some_and(went(true)), "user0 came back: {told:?}");
    assert!(friend_online(&mut members[1].client, "user0"));
    cluster.stop(0);
    let told = presence_within(&mut members[1].client, Duration::from_secs(3), went(false));
    assert!(
        told.last().is_some_and(went(false)),
        "node 0 stopped, taking user0: {told:?}"
    );
}

/// Sends `n` messages pipelined on `client`; returns how many were stored
/// (the rest must be refused with ER_RATE_LIMITED).
fn stored_of(client: &mut Client, room: i64, n: usize, tag: &str) -> usize {
    let mut lines = String::new();
    for i in 0..n {
        lines.push_str(&format!(
            "{}\n",
            json!({"type": "RQ_MSG", "room_id": room, "message": format!("{tag} {i}"), "req_id": format!("{tag}-{i}")})
        ));
    }
    client.send_raw(lines.as_bytes()).unwrap();
    client.set_timeout(Duration::from_secs(10)).unwrap();
    let (mut answered, mut stored) = (0, 0);
    while answered < n {
        let msg = client.recv().unwrap();
        if !msg["req_id"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("{tag}-")))
        {
            continue;
        }
        answered += 1;
        if msg["type"] == "RQ_MSG" {
            stored += 1;
        } else {
            assert_eq!(msg["error_code"], "ER_RATE_LIMITED", "{msg}");
        }
    }
    stored
}

#[test]
fn rate_limits_hold_across_nodes() {
    if skipped() {
        return;
    }
    // Three sign-ups per address, and a burst of six messages per user,
    // hardly refilled during the test.
    let cluster = Cluster::start_with_limits(
        3,
        NATS,
        "sign_ups_per_addr_per_min = 0.001\nsign_up_burst_per_addr = 3\n\
         msg_rate_per_sec = 0.001\nmsg_burst = 6\n",
    );
    // Sign-ups from one address, spread over the three nodes.
    let mut admitted = Vec::new();
    let mut who = Vec::new();
    for i in 0..9 {
        let mut client = Client::connect(cluster.addr(i % 3)).unwrap();
        let reply = client.sign_up(&format!("user{i}"), "pw-rates").unwrap();
        if reply["type"] == "RQ_TOKEN" {
            who.push(i);
            admitted.push((client, reply["token"].as_str().unwrap().to_owned()));
        } else {
            assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
        }
        // Time for the bus to carry it to the other nodes.
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        admitted.len(),
        3,
        "one address's three sign-ups count on every node; admitted: {who:?}"
    );

    // user0 (node 0) and user1 (node 1) share a room.
    let (mut user0, token0) = admitted.remove(0);
    let (mut user1, _) = admitted.remove(0);
    user0.set_timeout(Duration::from_secs(10)).unwrap();
    user1.set_timeout(Duration::from_secs(10)).unwrap();
    let reply = user0
        .request(json!({"type": "RQ_NEW_ROOM", "name": "rates", "room_type": "DB_GLOBAL_CHAT"}))
        .unwrap();
    let room = reply["id"].as_i64().unwrap_or_else(|| panic!("{reply}"));
    assert_type(
        &user1
            .request(json!({"type": "RQ_JOIN_ROOM", "room_id": room}))
            .unwrap(),
        "RQ_JOIN_ROOM",
    );
    // On one node, a user has the whole burst.
    assert_eq!(stored_of(&mut user1, room, 10, "alone"), 6);
    // user0 connects to every node: the burst is shared among them.
    let mut user0_elsewhere: Vec<Client> = (1..3)
        .map(|i| {
            let mut c = Client::connect(cluster.addr(i)).unwrap();
            assert_type(&c.resume(&token0).unwrap(), "RQ_TOKEN");
            c
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut stored = vec![stored_of(&mut user0, room, 10, "n0")];
    for (i, c) in user0_elsewhere.iter_mut().enumerate() {
        stored.push(stored_of(c, room, 10, &format!("n{}", i + 1)));
    }
    assert_eq!(
        stored.iter().sum::<usize>(),
        6,
        "one user's burst on three nodes is one burst; stored per node: {stored:?}"
    );
}

#[test]
fn a_file_sent_on_one_node_downloads_from_another() {
    if skipped() {
        return;
    }
    let cluster = Cluster::start(2, NATS);
    let mut members = cluster.members(2);
    let room = shared_room(&mut members);
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let sent = members[0]
        .client
        .upload(room, "notes.bin", &data, None)
        .unwrap_or_else(|e| panic!("upload: {e}; node 0's log ends:\n{}", cluster.log_tail(0, 40)));
    assert_type(&sent, "RQ_MSG");
    let id = sent["message_id"].as_i64().unwrap();
    // The other node's user hears of it, and fetches it from their node.
    assert!(
        members[1].heard_within(id, Duration::from_secs(10)),
        "the file message came over the bus"
    );
    members[1].client.set_timeout(Duration::from_secs(10)).unwrap();
    let (offer, got) = members[1].client.download(room, id, None).unwrap();
    assert_type(&offer, "RQ_DOWNLOAD_FILE");
    assert_eq!(got, data);
}

#[test]
fn log_outs_bans_and_log_in_throttles_reach_every_node() {
    if skipped() {
        return;
    }
    let cluster = Cluster::start(3, NATS);
    let mut members = cluster.members(2);
    let room = shared_room(&mut members);

    // The same session on two nodes: logging out on one ends it on both.
    let mut elsewhere = Client::connect(cluster.addr(2)).unwrap();
    assert_type(&elsewhere.resume(&members[1].token).unwrap(), "RQ_TOKEN");
    let token = members[1].token.clone();
    assert_type(
        &members[1].req(json!({"type": "RQ_LOG_OUT", "token": token})),
        "RQ_LOG_OUT",
    );
    crate::util::wait_until(Duration::from_secs(5), || {
        let reply = elsewhere.request(json!({"type": "RQ_GET_ROOMS"})).unwrap();
        reply["error_code"] == "ER_UNAUTHORIZED"
    });

    // A ban made on node 0 holds on node 2 at once.
    let mut banned = Client::connect(cluster.addr(2)).unwrap();
    let session = banned.log_in("user1", "pw-user1").unwrap();
    assert_type(&session, "RQ_TOKEN");
    let user1 = session["user_id"].as_i64().unwrap();
    let ban = members[0].req(json!({"type": "RQ_BAN_MEMBER", "room_id": room, "user_id": user1}));
    assert!(ban["type"] != "RQ_ERROR_MSG", "{ban}");
    let refused = banned
        .request(json!({"type": "RQ_MSG", "room_id": room, "message": "still here?"}))
        .unwrap();
    assert_eq!(refused["type"], "RQ_ERROR_MSG", "{refused}");

    // Failed log-ins spread over the nodes count as on one: five for one
    // login from one address, and the sixth is refused on any node.
    for (i, node) in [0, 1, 2, 0, 1].into_iter().enumerate() {
        let mut guesser = Client::connect(cluster.addr(node)).unwrap();
        let reply = guesser.log_in("user0", &format!("guess{i}")).unwrap();
        assert_eq!(reply["error_code"], "ER_AUTH_DATA", "{reply}");
        // The other nodes hear of it before the next guess.
        thread::sleep(Duration::from_millis(100));
    }
    let mut guesser = Client::connect(cluster.addr(2)).unwrap();
    let reply = guesser.log_in("user0", "pw-user0").unwrap();
    assert_eq!(reply["error_code"], "ER_RATE_LIMITED", "{reply}");
}

#[test]
fn writers_of_several_nodes_never_wait_on_each_other_in_a_circle() {
    if skipped() {
        return;
    }
    let cluster = Cluster::start(3, NATS);
    let mut members = cluster.members(6);
    let rooms: Vec<i64> = (0..4).map(|_| shared_room(&mut members)).collect();
    // Every user sends to every room, each in another order: batches on
    // different nodes touch the same rooms in opposite orders.
    let handles: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(i, mut member)| {
            let rooms = rooms.clone();
            thread::spawn(move || {
                let mut lines = String::new();
                for k in 0..60 {
                    let room = if i % 2 == 0 { rooms[k % 4] } else { rooms[3 - k % 4] };
                    lines.push_str(&format!(
                        "{}\n",
                        json!({"type": "RQ_MSG", "room_id": room, "message": format!("{i} {k}"), "req_id": format!("c{k}")})
                    ));
                }
                member.client.send_raw(lines.as_bytes()).unwrap();
                member.client.set_timeout(Duration::from_secs(30)).unwrap();
                let mut answers = Vec::new();
                while answers.len() < 60 {
                    let msg = member.client.recv().expect("answered");
                    if msg["req_id"].as_str().is_some_and(|r| r.starts_with('c')) {
                        answers.push(msg);
                    }
                }
                answers
            })
        })
        .collect();
    let started = Instant::now();
    for handle in handles {
        for answer in handle.join().unwrap() {
            assert_type(&answer, "RQ_MSG");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the writers waited on each other"
    );
}
