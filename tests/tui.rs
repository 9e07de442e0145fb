//! The full-screen `parley` in a real terminal: tmux runs it, keys are sent
//! with send-keys and the screen is read back with capture-pane.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::start_server;

/// A tmux session running one program; killed when dropped.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(name: &str, command: &str) -> Option<Tmux> {
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "100", "-y", "24", command])
            .status()
            .ok()?
            .success();
        ok.then(|| Tmux {
            name: name.to_owned(),
        })
    }

    fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.name])
            .args(keys)
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn type_line(&self, line: &str) {
        self.keys(&["-l", line]);
        self.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen holds `needle`; returns the screen.
    #[track_caller]
    fn wait_for(&self, needle: &str) -> String {
        self.wait_until(needle, true)
    }

    /// Waits until the screen no longer holds `needle` (a key took effect
    /// before the next is sent: an Escape followed at once by another key
    /// can be read as one Alt+key).
    #[track_caller]
    fn wait_gone(&self, needle: &str) -> String {
        self.wait_until(needle, false)
    }

    #[track_caller]
    fn wait_until(&self, needle: &str, shown: bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if screen.contains(needle) == shown {
                return screen;
            }
            if Instant::now() > deadline {
                let never = if shown { "never showed" } else { "kept showing" };
                panic!("the screen {never} {needle:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .status();
    }
}

fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("tmux is missing: .ci/run installs it");
    }
    found
}

fn parley_command(server: &str, home: &Path, exit_file: &Path) -> String {
    format!(
        "env XDG_CONFIG_HOME={home} PARLEY_PASSWORD=zoe-password TERM=xterm-256color {exe} --server {server}; echo $? > {exit}",
        home = home.display(),
        exe = env!("CARGO_BIN_EXE_parley"),
        exit = exit_file.display(),
    )
}

/// The room list shows unread counts and mention marks, the status line who
/// and how connected, Alt+digit switches rooms and shows the "new since last
/// read" line, and Ctrl+C leaves with the terminal restored.
#[test]
fn the_full_screen_client_shows_rooms_unread_and_switches() {
    if !tmux_available() {
        eprintln!("tmux is not installed: skipped");
        return;
    }
    let server = start_server();
    let home = tempfile::tempdir().unwrap();
    let exit_file = home.path().join("exit");
    let name = format!("parley-test-{}", std::process::id());
    let tmux = Tmux::start(
        &name,
        &parley_command(&server.addr.to_string(), home.path(), &exit_file),
    )
    .expect("tmux starts");
    tmux.wait_for("/signup LOGIN or /login LOGIN to start");
    tmux.type_line("/signup zoe");
    let screen = tmux.wait_for("signed up and logged in as zoe");
    assert!(screen.contains("· zoe · connected"), "status line:\n{screen}");
    tmux.type_line("/new general");
    tmux.wait_for("now in #general");
    tmux.type_line("first words");
    tmux.wait_for("#general zoe: first words");
    tmux.type_line("/new random");
    tmux.wait_for("now in #random");

    let mut yan = server.user("yan");
    let found = yan.req(json!({"type": "RQ_SEARCH_CH", "name": "general"}));
    let general = found["rooms"][0]["id"].as_i64().unwrap();
    yan.req(json!({"type": "RQ_JOIN_ROOM", "room_id": general}));
    yan.req(json!({"type": "RQ_MSG", "room_id": general, "message": "hi all"}));
    yan.req(json!({"type": "RQ_MSG", "room_id": general, "message": "hey @zoe look"}));
    let screen = tmux.wait_for("#general 2 @");
    assert!(
        screen.contains("2 #random"),
        "the room list numbers rooms:\n{screen}"
    );

    // Alt+1: the first room, with the line above what was not read yet.
    tmux.keys(&["M-1"]);
    let screen = tmux.wait_for("new since last read");
    let lines: Vec<&str> = screen.lines().collect();
    let marker = lines
        .iter()
        .position(|l| l.contains("new since last read"))
        .unwrap();
    let first = lines.iter().position(|l| l.contains("zoe: first words")).unwrap();
    let hi = lines.iter().position(|l| l.contains("yan: hi all")).unwrap();
    assert!(
        first < marker && marker < hi,
        "the marker sits before the unread:\n{screen}"
    );
    assert!(!screen.contains("#general 2"), "read once shown:\n{screen}");
    assert!(
        screen.contains("#general>"),
        "the prompt follows the room:\n{screen}"
    );
    // Seen here, so read everywhere.
    crate::util::wait_until(Duration::from_secs(5), || {
        let mut phone = server.connect();
        phone.log_in("zoe", "zoe-password").unwrap();
        let rooms = phone.request(json!({"type": "RQ_GET_ROOMS", "date": 0})).unwrap();
        rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["unread"] == 0)
    });

    // Someone typing shows in the status line.
    yan.req(json!({"type": "RQ_TYPING", "room_id": general}));
    tmux.wait_for("yan is typing…");
    // And this user's typing reaches the others (at most every 3 s).
    std::thread::sleep(Duration::from_millis(3100));
    tmux.keys(&["-l", "hel"]);
    let typing = yan.expect("RQ_TYPING");
    assert_eq!(
        (typing["login"].as_str(), typing["room_id"].as_i64()),
        (Some("zoe"), Some(general))
    );
    tmux.keys(&["Escape"]);
    tmux.wait_gone("#general> hel");

    // Ctrl+N goes on to the next room; Tab completes commands.
    tmux.keys(&["C-n"]);
    tmux.wait_for("#random>");
    tmux.keys(&["-l", "/he"]);
    tmux.keys(&["Tab"]);
    tmux.wait_for("#random> /help");
    tmux.keys(&["Escape"]);
    tmux.wait_gone("#random> /help");

    // PageUp scrolls back, loading older pages from the server at the top.
    tmux.keys(&["M-1"]);
    tmux.wait_for("#general>");
    let mut ann = server.user("ann");
    ann.req(json!({"type": "RQ_JOIN_ROOM", "room_id": general}));
    for i in 0..30 {
        let (who, n) = if i % 2 == 0 { (&mut yan, i) } else { (&mut ann, i) };
        let sent = who.req(json!({"type": "RQ_MSG", "room_id": general, "message": format!("line {n:02}")}));
        assert_eq!(sent["type"], "RQ_MSG", "{sent}");
    }
    tmux.wait_for("line 29");
    tmux.keys(&["Escape"]);
    tmux.type_line("/go general");
    tmux.wait_for("line 29");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !tmux.screen().contains("zoe: first words") {
        assert!(
            Instant::now() < deadline,
            "PageUp never reached the start:\n{}",
            tmux.screen()
        );
        tmux.keys(&["PageUp"]);
        std::thread::sleep(Duration::from_millis(150));
    }
    tmux.keys(&[
        "PageDown", "PageDown", "PageDown", "PageDown", "PageDown", "PageDown",
    ]);
    tmux.wait_for("line 29");

    // A smaller terminal: everything is drawn to its size.
    Command::new("tmux")
        .args(["resize-window", "-t", &name, "-x", "60", "-y", "12"])
        .status()
        .unwrap();
    let screen = tmux.wait_for("· zoe · connected");
    assert!(screen.lines().count() <= 12, "{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 60), "{screen}");
    assert!(screen.contains("#general>"), "{screen}");

    // The server goes away: the status line says when the next try comes.
    drop((yan, ann));
    let (result, _dir) = server.stop();
    result.unwrap();
    tmux.wait_for("reconnecting in");

    tmux.keys(&["C-c"]);
    crate::util::wait_until(Duration::from_secs(5), || exit_file.exists());
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "0");
}
