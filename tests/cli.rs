//! The `parley` terminal client, driven through stdin against a real server:
//! two users chatting in a room and a DM, a file both ways, a saved session.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use crate::util::{start_server, TestServer};

/// One running `parley` process.
pub(crate) struct Cli {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Everything printed so far, for failure messages.
    seen: Vec<String>,
}

impl Cli {
    fn start(server: &TestServer, config_home: &Path, password: &str) -> Cli {
        Cli::start_with(&server.addr.to_string(), config_home, password, &[])
    }

    /// Runs `parley --server ADDR` with more arguments.
    pub(crate) fn start_with(addr: &str, config_home: &Path, password: &str, args: &[&str]) -> Cli {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .args(["--server", addr])
            .args(args)
            .env("XDG_CONFIG_HOME", config_home)
            .env("PARLEY_PASSWORD", password)
            .current_dir(config_home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Cli {
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for a printed line containing `needle`; returns it.
    #[track_caller]
    pub(crate) fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    pub(crate) fn quit(mut self) {
        self.send("/quit");
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

#[test]
fn two_users_chat_in_a_room_and_a_dm_and_send_a_file() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let (alice_home, bob_home) = (home.path().join("alice"), home.path().join("bob"));
    std::fs::create_dir_all(&alice_home).unwrap();
    std::fs::create_dir_all(&bob_home).unwrap();
    let mut alice = Cli::start(&server, &alice_home, "alice-secret");
    let mut bob = Cli::start(&server, &bob_home, "bob-secret");

    alice.send("/signup alice Alice");
    alice.expect("signed up and logged in as alice");
    alice.send("/new lobby");
    alice.expect("now in #lobby");
    bob.send("/signup bob");
    bob.expect("logged in as bob");
    bob.send("/find lob");
    bob.expect("#lobby");
    bob.send("/join lobby");
    bob.expect("now in #lobby");
    alice.expect("#lobby bob joined");

    bob.send("hi alice");
    alice.expect("#lobby bob: hi alice");
    alice.send("hi bob, welcome");
    bob.expect("#lobby alice: hi bob, welcome");

    // A direct conversation between friends.
    alice.send("/friend bob");
    alice.expect("bob is now your friend");
    bob.expect("alice is now your friend");
    alice.send("/dm bob");
    alice.expect("now in @bob");
    alice.send("just between us");
    bob.expect("@alice alice: just between us");

    // A file, byte-exact both ways through the server.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let path = alice_home.join("photo.bin");
    std::fs::write(&path, &data).unwrap();
    alice.send(&format!("/upload {}", path.display()));
    alice.expect("uploaded photo.bin");
    let line = bob.expect("sent a file: photo.bin");
    let id = line.rsplit("/download ").next().unwrap().trim().to_owned();
    bob.send("/go @alice");
    bob.expect("now in @alice");
    let target = bob_home.join("copy.bin");
    bob.send(&format!("/download {id} {}", target.display()));
    bob.expect("saved");
    assert_eq!(std::fs::read(&target).unwrap(), data);

    // Errors are one readable line, and the client carries on.
    bob.send("/go nowhere");
    bob.expect("error: you are not in a room");
    bob.send("/bogus");
    bob.expect("error: unknown command /bogus");
    alice.quit();
    bob.quit();
}

#[test]
fn the_session_is_saved_privately_and_resumed() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let mut first = Cli::start(&server, home.path(), "pw1");
    first.send("/signup carol");
    first.expect("logged in as carol");
    first.send("/new notes");
    first.expect("now in #notes");
    first.send("remember the milk");
    first.expect("#notes carol: remember the milk");
    first.quit();

    let saved = home.path().join("parley");
    let file = std::fs::read_dir(&saved).unwrap().next().unwrap().unwrap().path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the token file is private");
    }

    // Someone writes while carol is away.
    let dave_home = home.path().join("dave");
    std::fs::create_dir_all(&dave_home).unwrap();
    let mut dave = Cli::start(&server, &dave_home, "pw2");
    dave.send("/signup dave");
    dave.expect("logged in as dave");
    dave.send("/join notes");
    dave.expect("now in #notes");
    dave.send("carol, you missed this");
    dave.expect("#notes dave: carol, you missed this");
    dave.quit();

    // She comes back: no password needed, the unread count, then the messages.
    let mut again = Cli::start(&server, home.path(), "wrong password, not needed");
    again.expect("resumed the session of carol");
    again.expect("#notes (room 1, owner)  1 unread");
    again.send("/go notes");
    again.expect("#notes carol: remember the milk");
    again.expect("#notes dave: carol, you missed this");
    again.send("/rooms");
    let listed = again.expect("#notes (room 1");
    assert!(!listed.contains("unread"), "read on entering the room: {listed}");
    again.send("/logout");
    again.expect("logged out");
    again.quit();
    assert!(!file.exists(), "/logout forgets the session");
}

#[test]
fn the_client_reconnects_and_catches_up() {
    let server = start_server();
    let addr = server.addr;
    let home = tempfile::tempdir().unwrap();
    let mut bob = server.user("bob");
    let mut cli = Cli::start(&server, home.path(), "pw");
    cli.send("/signup erin");
    cli.expect("logged in as erin");
    cli.send("/new lounge");
    cli.expect("now in #lounge");
    let room =
        bob.req(serde_json::json!({"type": "RQ_SEARCH_CH", "name": "lounge"}))["rooms"][0]["id"].clone();
    bob.req(serde_json::json!({"type": "RQ_JOIN_ROOM", "room_id": room}));
    cli.expect("#lounge bob joined");
    let bob_token = bob.token.clone();
    drop(bob);

    // The server goes away, and comes back on the same address and data.
    let (result, dir) = server.stop();
    result.unwrap();
    cli.expect("connection lost; reconnecting");
    let server = crate::util::start_in(dir, |c| c.listen = addr);
    let mut bob = server.connect();
    bob.resume(&bob_token).unwrap();
    bob.request(serde_json::json!({"type": "RQ_MSG", "room_id": room, "message": "while you were away"}))
        .unwrap();
    cli.expect("reconnected");
    cli.expect("#lounge bob: while you were away");
    // And the session goes on.
    cli.send("back again");
    cli.expect("#lounge erin: back again");
    cli.quit();
}

/// `parley --version` and `parleyd -V` say the same version.
#[test]
fn both_programs_say_their_version() {
    let version = |exe: &str, flag: &str| {
        let out = Command::new(exe).arg(flag).output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let client = version(env!("CARGO_BIN_EXE_parley"), "--version");
    let server = version(env!("CARGO_BIN_EXE_parleyd"), "-V");
    assert_eq!(client, format!("parley {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(server, format!("parleyd {}", env!("CARGO_PKG_VERSION")));
}
