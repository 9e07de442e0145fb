//! The web client in a real headless Chromium (Debian's, driven by
//! playwright-core from `tests/browser/flow.mjs`), beside a TCP client, on a
//! real server: sign-up, a room, messages both ways, a reload, a second user
//! finding and joining, unread counts, a file both ways, a phone-sized
//! window, the keyboard, and logging out.
//!
//! `.ci/run` installs Chromium and playwright-core and sets
//! PARLEY_BROWSER_TESTS=1, so there a missing browser fails the test;
//! elsewhere it is skipped with a word.

use std::path::Path;
use std::process::Command;

use crate::util::start_with;

#[test]
fn the_web_client_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let ready =
        dir.join("node_modules").join("playwright-core").exists() && Path::new("/usr/bin/chromium").exists();
    if !ready {
        assert!(
            std::env::var_os("PARLEY_BROWSER_TESTS").is_none(),
            "Chromium or playwright-core is missing (apt install chromium; npm ci in tests/browser)"
        );
        eprintln!("Chromium or playwright-core is not installed: skipped");
        return;
    }
    let server = start_with(|c| c.web = "127.0.0.1:0".into());
    let web = server.web_addr.expect("the web listener is on");
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("web")
        .join("screenshot.png");
    let out = Command::new("node")
        .arg(dir.join("flow.mjs"))
        .arg(format!("http://{web}/"))
        .arg(server.addr.to_string())
        .arg(&screenshot)
        .output()
        .expect("node runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the browser flow failed:\n{said}");
    assert!(said.contains("all steps passed"), "{said}");
}
