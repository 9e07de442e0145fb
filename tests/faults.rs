//! Storage faults beyond a full disk: an fsync that fails is fatal for the
//! write it was to make durable (never acknowledged, never half-stored),
//! and the server carries on once the disk works again; a disk too slow
//! for the writes offered makes the server refuse the excess early.

use std::process::Command;
use std::time::{Duration, Instant};

use parley::client::Client;
use serde_json::json;

use crate::util::{assert_error, assert_type, message_ids, spawn_command};

/// A shared library (loaded into parleyd with LD_PRELOAD) that makes
/// fsync and fdatasync fail with EIO while the file named by
/// `PARLEY_FAIL_FSYNC_IF` exists, and take `PARLEY_SLOW_FSYNC_MS` longer
/// while the file named by `PARLEY_SLOW_FSYNC_IF` exists.
const FAILING_FSYNC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int present(const char *variable) {
    const char *trigger = getenv(variable);
    return trigger && access(trigger, F_OK) == 0;
}

static int fault(void) {
    if (present("PARLEY_FAIL_FSYNC_IF")) { errno = EIO; return -1; }
    if (present("PARLEY_SLOW_FSYNC_IF")) {
        const char *ms = getenv("PARLEY_SLOW_FSYNC_MS");
        usleep((useconds_t)(ms ? atoi(ms) : 0) * 1000);
    }
    return 0;
}

int fsync(int fd) {
    if (fault() < 0) return -1;
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (fault() < 0) return -1;
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    return real(fd);
}
"#;

/// Builds the library with the system's C compiler; `None` if there is none.
fn failing_fsync_library(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let source = dir.join("failing_fsync.c");
    let library = dir.join("failing_fsync.so");
    std::fs::write(&source, FAILING_FSYNC).unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .arg("-ldl")
        .status()
        .is_ok_and(|s| s.success());
    built.then_some(library)
}

#[test]
fn a_failing_fsync_fails_its_write_and_the_server_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = failing_fsync_library(dir.path()) else {
        eprintln!("a_failing_fsync_fails_its_write: no C compiler here; not run");
        return;
    };
    let trigger = dir.path().join("fail-fsync");
    let config = dir.path().join("parley.toml");
    std::fs::write(&config, "msg_burst = 1000\n").unwrap();
    let log = dir.path().join("parleyd.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_parleyd"));
    command
        .env("LD_PRELOAD", &library)
        .env("PARLEY_FAIL_FSYNC_IF", &trigger);
    let (child, addr) = spawn_command(command, &dir.path().join("data"), &config, &log);
    let _server = crate::util::Stop(child);

    let mut alice = Client::connect(&addr).unwrap();
    assert_type(&alice.sign_up("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    let room = alice
        .request(json!({"type": "RQ_NEW_ROOM", "name": "faults", "room_type": "DB_GLOBAL_CHAT"}))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let send = |c: &mut Client, text: &str| {
        c.request(json!({"type": "RQ_MSG", "room_id": room, "message": text}))
            .unwrap()
    };
    assert_type(&send(&mut alice, "before"), "RQ_MSG");
    let mut uploader = Client::connect(&addr).unwrap();
    assert_type(&uploader.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");

    // The disk stops syncing: writes fail and are not acknowledged...
    std::fs::write(&trigger, b"").unwrap();
    for text in ["lost one", "lost two"] {
        assert_error(&send(&mut alice, text), "ER_INTERNAL");
    }
    // ...log-ins fail too (a token is a write)...
    let mut late = Client::connect(&addr).unwrap();
    assert_error(&late.log_in("alice", "pw-alice").unwrap(), "ER_INTERNAL");
    // ...a file's bytes that cannot be synced are not kept...
    let upload = uploader.upload(room, "lost.bin", &[7u8; 100_000], None);
    assert!(
        upload.as_ref().map_or(true, |r| r["type"] == "RQ_ERROR_MSG"),
        "an upload was acknowledged without its fsync: {upload:?}"
    );
    // ...and reads go on.
    let history = alice
        .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 50}))
        .unwrap();
    assert_type(&history, "RQ_GET_NEW_MSGS");

    // The disk works again: so does the server, and nothing unacknowledged is there.
    std::fs::remove_file(&trigger).unwrap();
    assert_type(&send(&mut alice, "after"), "RQ_MSG");
    let history = alice
        .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 50}))
        .unwrap();
    let mut texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    texts.sort_unstable();
    assert_eq!(texts, vec!["after", "before"], "{history}");
    let files: Vec<_> = std::fs::read_dir(dir.path().join("data").join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(files.is_empty(), "a file whose fsync failed was kept: {files:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("I/O error") || text.contains("fsync"),
        "the failure is not in the log:\n{text}"
    );
}

/// A disk whose every fsync takes 150 ms, and 70 senders each pipelining
/// 20 messages: about two seconds of work queued at once. The server
/// serves what its writer can and refuses the rest with ER_BUSY early, so
/// every sender has every answer within a bounded time (without the
/// refusals the last answers took three seconds and more); exactly the
/// acknowledged messages are stored; a bystander's reads stay prompt.
#[test]
fn a_disk_too_slow_for_the_writes_offered_makes_the_server_refuse_the_excess_early() {
    const SENDERS: usize = 70;
    const EACH: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let Some(library) = failing_fsync_library(dir.path()) else {
        eprintln!("a_disk_too_slow: no C compiler here; not run");
        return;
    };
    let slow = dir.path().join("slow-fsync");
    let config = dir.path().join("parley.toml");
    std::fs::write(
        &config,
        "msg_burst = 1000000\nmsg_rate_per_sec = 1e9\nsign_ups_per_addr_per_min = 1e9\n\
         sign_up_burst_per_addr = 1000000\nsign_ups_per_min = 1e12\nargon2_memory_kib = 1024\n\
         argon2_iterations = 1\nmax_anonymous_per_addr = 1000\n",
    )
    .unwrap();
    let log = dir.path().join("parleyd.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_parleyd"));
    command
        .env("LD_PRELOAD", &library)
        .env("PARLEY_SLOW_FSYNC_IF", &slow)
        .env("PARLEY_SLOW_FSYNC_MS", "150");
    let (child, addr) = spawn_command(command, &dir.path().join("data"), &config, &log);
    let _server = crate::util::Stop(child);

    let mut senders: Vec<(Client, i64)> = (0..SENDERS)
        .map(|i| {
            let mut c = Client::connect(&addr).unwrap();
            assert_type(&c.sign_up(&format!("sender{i}"), "pw").unwrap(), "RQ_TOKEN");
            let room = c
                .request(json!({"type": "RQ_NEW_ROOM", "name": format!("r{i}")}))
                .unwrap()["id"]
                .as_i64()
                .unwrap();
            (c, room)
        })
        .collect();
    let mut bystander = Client::connect(&addr).unwrap();
    assert_type(&bystander.sign_up("bystander", "pw").unwrap(), "RQ_TOKEN");

    std::fs::write(&slow, b"").unwrap();
    let started = Instant::now();
    let threads: Vec<_> = senders
        .drain(..)
        .map(|(mut c, room)| {
            std::thread::spawn(move || {
                let mut lines = String::new();
                for k in 0..EACH {
                    let msg =
                        json!({"type": "RQ_MSG", "room_id": room, "message": format!("m{k}"), "req_id": k});
                    lines.push_str(&format!("{msg}\n"));
                }
                c.set_timeout(Duration::from_secs(30)).unwrap();
                c.send_raw(lines.as_bytes()).unwrap();
                let (mut acked, mut busy) = (Vec::new(), 0);
                for _ in 0..EACH {
                    let reply = c.recv().unwrap();
                    match reply["type"].as_str() {
                        Some("RQ_MSG") => acked.push(reply["message_id"].as_i64().unwrap()),
                        _ => {
                            assert_error(&reply, "ER_BUSY");
                            busy += 1;
                        }
                    }
                }
                (c, room, acked, busy, started.elapsed())
            })
        })
        .collect();
    // A bystander's reads are served by the workers, not the slow writer.
    let mut slowest_read = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        assert_type(
            &bystander.request(json!({"type": "RQ_GET_FRIENDS"})).unwrap(),
            "RQ_GET_FRIENDS",
        );
        slowest_read = slowest_read.max(asked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    std::fs::remove_file(&slow).unwrap();

    let served: usize = results.iter().map(|r| r.2.len()).sum();
    let refused: usize = results.iter().map(|r| r.3).sum();
    let last_answer = results.iter().map(|r| r.4).max().unwrap();
    assert!(served > 0 && refused > 0, "served {served}, refused {refused}");
    assert!(
        last_answer < Duration::from_millis(2500),
        "the last answer came {last_answer:?} after sending ({served} served, {refused} refused)"
    );
    assert!(
        slowest_read < Duration::from_millis(500),
        "a bystander's read took {slowest_read:?}"
    );
    // Exactly the acknowledged messages are stored.
    for (mut c, room, acked, _, _) in results {
        let page = c
            .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "count": 100}))
            .unwrap();
        let mut stored = message_ids(&page, "messages");
        stored.sort_unstable();
        assert_eq!(stored, acked, "room {room}");
    }
}
