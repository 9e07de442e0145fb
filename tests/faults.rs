//! Storage faults beyond a full disk: an fsync that fails is fatal for the
//! write it was to make durable (never acknowledged, never half-stored),
//! and the server carries on once the disk works again.

use std::process::Command;

use parley::client::Client;
use serde_json::json;

use crate::util::{assert_error, assert_type, spawn_command};

/// A shared library that makes fsync and fdatasync fail with EIO while a
/// trigger file exists (loaded into parleyd with LD_PRELOAD).
const FAILING_FSYNC: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

static int failing(void) {
    const char *trigger = getenv("PARLEY_FAIL_FSYNC_IF");
    return trigger && access(trigger, F_OK) == 0;
}

int fsync(int fd) {
    if (failing()) { errno = EIO; return -1; }
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return real(fd);
}

int fdatasync(int fd) {
    if (failing()) { errno = EIO; return -1; }
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
