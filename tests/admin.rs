//! `parleyd admin` against the data directory of a running server, and
//! `parleyd --check-config`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use parley::client::Client;
use serde_json::json;

use crate::util::{assert_error, assert_type, start_server};

/// Runs `parleyd admin --data DATA ARGS` with `input` on stdin; returns
/// whether it succeeded, and its output and errors.
fn admin(data: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parleyd"))
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_admin_command_works_while_the_server_runs() {
    if crate::util::skipped_on_postgres("parleyd admin works on the SQLite store") {
        return;
    }
    let server = start_server();
    let data = server.dir.path().join("data");
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let room = alice.new_room("doomed", "DB_GLOBAL_CHAT");
    assert_type(
        &bob.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room})),
        "RQ_JOIN_ROOM",
    );
    assert_type(
        &alice.req(json!({"type": "RQ_MSG", "room_id": room, "message": "hello"})),
        "RQ_MSG",
    );
    let file = alice.client.upload(room, "a.txt", b"some bytes", None).unwrap();
    assert_type(&file, "RQ_MSG");

    let (ok, out, err) = admin(&data, &["users"], "");
    assert!(ok, "{err}");
    assert!(out.contains("alice") && out.contains("bob"), "{out}");
    let (ok, out, _) = admin(&data, &["rooms"], "");
    assert!(ok);
    let line = out
        .lines()
        .find(|l| l.contains("doomed"))
        .expect("the room is listed");
    assert!(line.contains("global"), "{line}");
    let (ok, out, _) = admin(&data, &["stats"], "");
    assert!(ok);
    for expected in [
        "users     2",
        "rooms     1",
        "messages  2",
        "files     1 (10 bytes)",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from\n{out}");
    }

    // A new password, while alice is connected: the old one and her
    // sessions stop working, the new one works.
    let (ok, out, err) = admin(&data, &["reset-password", "alice"], "brand-new-password\n");
    assert!(ok, "{err}");
    assert!(out.contains("new password set for alice"), "{out}");
    let mut c = server.connect();
    assert_error(&c.log_in("alice", "pw-alice").unwrap(), "ER_AUTH_DATA");
    assert_error(&c.resume(&alice.token).unwrap(), "ER_AUTH_DATA");
    let mut alice_again = server.connect();
    assert_type(
        &alice_again.log_in("alice", "brand-new-password").unwrap(),
        "RQ_TOKEN",
    );
    let (ok, _, err) = admin(&data, &["reset-password", "alice"], "short\n");
    assert!(!ok && err.contains("at least 8"), "{err}");

    let (ok, out, _) = admin(&data, &["revoke", "bob"], "");
    assert!(ok);
    assert!(out.contains("1 sessions of bob revoked"), "{out}");
    assert_error(
        &Client::connect(server.addr).unwrap().resume(&bob.token).unwrap(),
        "ER_AUTH_DATA",
    );

    // Deleting a room the running server has in memory: it notices.
    let (ok, out, err) = admin(&data, &["delete-room", &room.to_string()], "");
    assert!(ok, "{err}");
    assert!(out.contains("deleted with 1 files"), "{out}");
    let sent = alice_again
        .request(json!({"type": "RQ_MSG", "room_id": room, "message": "anyone?"}))
        .unwrap();
    assert_error(&sent, "ER_NOT_FOUND");
    let rooms = alice_again
        .request(json!({"type": "RQ_GET_ROOMS", "date": 0}))
        .unwrap();
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 0, "{rooms}");
    let files: Vec<_> = std::fs::read_dir(data.join("files"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(files.is_empty(), "{files:?}");

    let (ok, _, err) = admin(&data, &["revoke", "nobody"], "");
    assert!(!ok && err.contains("no user"), "{err}");
    let (ok, _, err) = admin(&data, &["explode"], "");
    assert!(!ok && err.contains("unknown admin command"), "{err}");
    let (ok, _, err) = admin(&server.dir.path().join("elsewhere"), &["users"], "");
    assert!(!ok && err.contains("no Parley database"), "{err}");
}

#[test]
fn check_config_says_ok_or_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("parley.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_parleyd"))
            .arg("--check-config")
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = check("listen = \"127.0.0.1:7700\"\nworkers = 2\n");
    assert!(ok && out.contains(": ok"), "{out}");
    let (ok, out) = check("workers = 0\n");
    assert!(!ok && out.contains("workers must be at least 1"), "{out}");
    let (ok, out) = check("wrokers = 2\n");
    assert!(!ok && out.contains("unknown field"), "{out}");
    let (ok, out) = check("log_level = \"loud\"\n");
    assert!(!ok && out.contains("log_level"), "{out}");
    let (ok, out) = check("tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"\n");
    assert!(!ok && out.contains("cert.pem"), "{out}");
    let (ok, out) = check("tls_cert = \"cert.pem\"\n");
    assert!(!ok && out.contains("both"), "{out}");
}

/// deploy/parley.toml lists every setting, each set line holding the
/// default (but for the service's `listen` and `data_dir`), and passes
/// --check-config; deploy/parleyd.service passes systemd-analyze verify.
#[test]
fn the_deploy_files_are_true() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example_path = root.join("deploy/parley.toml");
    let example = std::fs::read_to_string(&example_path).unwrap();
    let set: toml::Table = toml::from_str(&example).unwrap();
    let defaults = toml::Table::try_from(parley::Config::default()).unwrap();
    for (key, default) in &defaults {
        let listed = example
            .lines()
            .any(|l| l.trim_start_matches('#').starts_with(&format!("{key} =")));
        assert!(listed, "deploy/parley.toml does not list {key}");
        if let Some(value) = set.get(key) {
            if key != "listen" && key != "data_dir" {
                assert_eq!(value, default, "deploy/parley.toml: {key} is not the default");
            }
        }
    }
    for key in ["tls_cert", "tls_key", "listen_plain", "metrics", "log_file"] {
        assert!(example.contains(&format!("#{key} =")), "{key} is not listed");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_parleyd"))
        .arg("--check-config")
        .arg(&example_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let unit = std::fs::read_to_string(root.join("deploy/parleyd.service")).unwrap();
    for needed in [
        "User=parley",
        "StateDirectory=parley",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(needed), "parleyd.service lacks {needed}");
    }
    let verify = Command::new("systemd-analyze").arg("--version").output();
    if verify.is_err() {
        eprintln!("the_deploy_files_are_true: no systemd-analyze here; the unit was not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("parleyd.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/parleyd", env!("CARGO_BIN_EXE_parleyd")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
