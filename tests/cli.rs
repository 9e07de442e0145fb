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

    /// Closes stdin and waits for the exit.
    pub(crate) fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
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

    alice.quit();
    bob.quit();
}

#[test]
fn the_session_is_saved_privately_and_resumed() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let mut first = Cli::start(&server, home.path(), "password-one");
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
    let mut dave = Cli::start(&server, &dave_home, "password-two");
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
    // What was missed is shown, not only counted.
    again.expect("missed in #notes");
    again.expect("#notes dave: carol, you missed this");
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
    let mut cli = Cli::start(&server, home.path(), "password-erin");
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

/// Two people in their own homes, signed up, in one room.
fn two_in_a_room(server: &TestServer, home: &Path) -> (Cli, Cli) {
    let (a, b) = (home.join("ann"), home.join("ben"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let mut ann = Cli::start_with(&server.addr.to_string(), &a, "ann-password", &["--keep-going"]);
    let mut ben = Cli::start_with(&server.addr.to_string(), &b, "ben-password", &["--keep-going"]);
    ann.send("/signup ann");
    ann.expect("logged in as ann");
    ann.send("/new studio");
    ann.expect("now in #studio");
    ben.send("/signup ben");
    ben.expect("logged in as ben");
    ben.send("/join studio");
    ben.expect("now in #studio");
    ann.expect("#studio ben joined");
    (ann, ben)
}

/// A script stops at its first failed command and exits 1; with
/// --keep-going it goes on, and still exits 1; a clean run exits 0.
#[test]
fn scripts_stop_at_the_first_failure_and_say_so_in_the_exit_code() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let mut cli = Cli::start_with(&addr, home.path(), "password-fay", &[]);
    cli.send("/signup fay");
    cli.expect("logged in as fay");
    cli.send("/go nowhere");
    cli.send("/new never-made");
    let status = cli.finish();
    assert_eq!(status.code(), Some(1), "a failed command fails the script");
    let mut look = server.user("looker");
    let found = look.req(serde_json::json!({"type": "RQ_SEARCH_CH", "name": "never"}));
    assert_eq!(
        found["rooms"],
        serde_json::json!([]),
        "nothing after the failure ran"
    );

    let mut going = Cli::start_with(&addr, home.path(), "password-fay", &["--keep-going"]);
    going.send("/bogus");
    going.expect("error: unknown command /bogus");
    going.send("/new made-anyway");
    going.expect("now in #made-anyway");
    assert_eq!(going.finish().code(), Some(1));

    let mut clean = Cli::start_with(&addr, home.path(), "password-fay", &[]);
    clean.send("/rooms");
    clean.expect("#made-anyway");
    assert_eq!(clean.finish().code(), Some(0));
}

/// A failed /login leaves nobody logged in: the next line is not posted as
/// the saved session's user. Short passwords are refused at /signup; after
/// /logout, writing says to log in.
#[test]
fn a_failed_log_in_never_falls_back_to_the_saved_user() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let addr = server.addr.to_string();
    let mut first = Cli::start_with(&addr, home.path(), "password-gus", &[]);
    first.send("/signup gus");
    first.expect("logged in as gus");
    first.send("/new den");
    first.expect("now in #den");
    first.quit();

    let mut other = Cli::start_with(&addr, home.path(), "not gus's password", &["--keep-going"]);
    other.expect("resumed the session of gus");
    other.send("/login gus");
    other.expect("error:");
    other.send("/go den");
    other.expect("error: log in first");
    other.send("posted by mistake?");
    other.expect("error: log in first");
    assert_eq!(other.finish().code(), Some(1));
    let mut gus = server.connect();
    gus.log_in("gus", "password-gus").unwrap();
    let history = gus
        .request(serde_json::json!({"type": "RQ_GET_NEW_MSGS", "room_id": 1}))
        .unwrap();
    assert_eq!(history["messages"], serde_json::json!([]), "{history}");

    let fresh = home.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    let mut short = Cli::start_with(&addr, &fresh, "short", &["--keep-going"]);
    short.send("/signup hal");
    short.expect("error: a password needs at least 8 characters");
    assert_eq!(short.finish().code(), Some(1));

    let mut out = Cli::start_with(&addr, &fresh, "password-ida", &["--keep-going"]);
    out.send("/signup ida");
    out.expect("logged in as ida");
    out.send("/new nook");
    out.expect("now in #nook");
    out.send("/logout");
    out.expect("logged out");
    out.send("hello?");
    out.expect("error: log in first");
    out.finish();
}

/// Every command says what it did; renames reach the renamer's own view;
/// /clear needs --yes in a script; a refused /go changes nothing.
#[test]
fn every_command_confirms_and_state_follows() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let (mut ann, mut ben) = two_in_a_room(&server, home.path());
    ben.send("tpyo here");
    let line = ann.expect("#studio ben: tpyo here");
    let id = line.rsplit("(#").next().unwrap().trim_end_matches(')').to_owned();
    ben.send(&format!("/edit {id} typo here"));
    ben.expect(&format!("#studio message #{id} edited: typo here"));
    ann.send("/topic drawing club");
    ann.expect("#studio topic: drawing club");
    ann.send("/rename atelier");
    ann.expect("#studio is now called #atelier");
    ann.send("/rooms");
    ann.expect("* #atelier (room 1");
    ann.send(&format!("/delete {id}"));
    ann.expect(&format!("#atelier message #{id} deleted"));
    ann.send("/role ben moderator");
    ann.expect("#atelier ben is now moderator");
    ann.send("/clear");
    ann.expect("error: Clear all of #atelier's history, for every member? In a script, say /clear --yes");
    ann.send("/clear --yes");
    ann.expect("#atelier history cleared");
    ann.send("/ban ben");
    ann.expect("#atelier ben was banned");
    ben.expect("you were banned from #atelier");
    ben.send("/go atelier");
    ben.expect("error:");
    ben.send("still here?");
    ben.expect("error: no current room");
    ann.send("/unban ben");
    ann.expect("#atelier ben was unbanned");
    ann.send("/leave");
    ann.expect("you left #atelier");
    ann.finish();
    ben.finish();
}

/// Notices read as people expect: a DM someone opened says so, one's own
/// join is not told back as an id; /download never overwrites.
#[test]
fn notices_and_downloads_are_clear() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let (mut ann, mut ben) = two_in_a_room(&server, home.path());
    ann.send("/friend ben");
    ann.expect("ben is now your friend");
    ann.send("/dm ben");
    ann.expect("now in @ben");
    ben.expect("ann opened a direct conversation with you: /go @ann");
    let data = b"the same bytes".to_vec();
    let path = home.path().join("ann").join("note.txt");
    std::fs::write(&path, &data).unwrap();
    ann.send(&format!("/upload {}", path.display()));
    let line = ben.expect("sent a file: note.txt");
    let id = line.rsplit("/download ").next().unwrap().trim().to_owned();
    ben.send("/go @ann");
    ben.expect("now in @ann");
    let ben_dir = home.path().join("ben");
    ben.send(&format!("/download {id}"));
    let first = ben.expect("saved ");
    ben.send(&format!("/download {id}"));
    let second = ben.expect("saved ");
    assert!(
        first.contains(&ben_dir.join("note.txt").display().to_string()),
        "{first}"
    );
    assert!(second.contains("note (1).txt"), "{second}");
    assert_eq!(std::fs::read(ben_dir.join("note (1).txt")).unwrap(), data);
    let seen = ann.seen.join("\n") + &ben.seen.join("\n");
    assert!(!seen.contains("#1 ben joined"), "{seen}");
    ann.finish();
    ben.finish();
}

/// Messages read live in the current room are marked read: another device
/// sees no unread count for them.
#[test]
fn messages_seen_live_are_marked_read() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let (mut ann, mut ben) = two_in_a_room(&server, home.path());
    for i in 0..3 {
        ben.send(&format!("note {i}"));
        ann.expect(&format!("#studio ben: note {i}"));
    }
    let mut phone = server.connect();
    phone.log_in("ann", "ann-password").unwrap();
    crate::util::wait_until(Duration::from_secs(5), || {
        let rooms = phone
            .request(serde_json::json!({"type": "RQ_GET_ROOMS", "date": 0}))
            .unwrap();
        rooms["rooms"][0]["unread"] == 0
    });
    ann.finish();
    ben.finish();
}

/// Replies are quoted, reactions shown and toggled, mentions listed and
/// counted, pins made and listed, from the line client.
#[test]
fn replies_reactions_mentions_and_pins_in_line_mode() {
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let (mut ann, mut ben) = two_in_a_room(&server, home.path());
    ann.send("shall we meet at noon?");
    let line = ben.expect("#studio ann: shall we meet at noon?");
    let id = line.rsplit("(#").next().unwrap().trim_end_matches(')').to_owned();
    ben.send(&format!("/reply {id} yes @ann, noon it is"));
    ben.expect("┌ ann: shall we meet at noon?");
    ann.expect("┌ ann: shall we meet at noon?");
    let mention = ann.expect("ben: yes @ann, noon it is");
    assert!(mention.ends_with("<- you"), "{mention}");
    ben.send(&format!("/react {id} 👍"));
    ann.expect(&format!("#studio ben reacted 👍 to #{id}"));
    ben.send("/history 5");
    let shown = ben.expect("shall we meet at noon?");
    assert!(shown.contains("👍 1"), "{shown}");
    ben.send(&format!("/react {id} 👍"));
    ann.expect(&format!("#studio ben took back 👍 from #{id}"));
    ben.send(&format!("/pin {id}"));
    ben.expect("error:");
    ann.send(&format!("/pin {id}"));
    ben.expect(&format!("#studio ann pinned #{id}"));
    ben.send("/pins");
    ben.expect("pinned in #studio:");
    ben.expect("#studio ann: shall we meet at noon?");
    ann.send("/mentions");
    ann.expect("ben: yes @ann, noon it is");
    ann.finish();
    ben.finish();
}
