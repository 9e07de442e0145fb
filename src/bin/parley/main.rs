//! parley: the interactive terminal client.
//!
//! `parley [--server HOST:PORT]` connects, resumes the saved session if
//! there is one, and reads commands: readline editing and history on a
//! terminal, with pushes printed above the prompt; plain lines in and out
//! when stdin is not a terminal, so it can be scripted.

mod app;
mod out;
mod render;
mod session;
mod tui;

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use app::{App, HELP};
use out::Out;
use parking_lot::Mutex;
use parley::client::{Link, LinkEvent};
use parley::client_stream::Connector;
use parley::protocol::Kind;
use render::{push_line, Directory};
use serde_json::json;

/// Where to connect, and how.
pub struct Target {
    pub server: String,
    /// `--line`: line mode even on a terminal.
    line: bool,
    /// `--keep-going`: a script goes on after a failed command (and still exits 1).
    keep_going: bool,
    /// `--tls`, and the CA file from `--ca` (`None`: not given).
    tls: bool,
    ca: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Target>, String> {
    let mut target = Target {
        server: "127.0.0.1:7700".to_owned(),
        line: false,
        keep_going: false,
        tls: false,
        ca: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" | "-s" => {
                target.server = args.next().ok_or("--server needs HOST:PORT[,HOST:PORT...]")?
            }
            "--tls" => target.tls = true,
            "--line" => target.line = true,
            "--keep-going" => target.keep_going = true,
            "--ca" => {
                target.ca = Some(args.next().ok_or("--ca needs a PEM file")?.into());
                target.tls = true;
            }
            "-V" | "--version" => {
                println!("parley {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-h" | "--help" => {
                println!(
                    "parley [--server HOST:PORT[,HOST:PORT...]] [--tls [--ca FILE]] [--line] [--keep-going]: chat with a\n\
                     Parley server (default 127.0.0.1:7700). Several addresses are the nodes of a cluster: parley\n\
                     starts at one of them at random and moves to the next when its connection is lost. On a terminal it runs full-screen; --line (or a pipe, or TERM=dumb)\n\
                     reads one command per line. Scripted, it stops at the first failed command and exits 1\n\
                     (--keep-going goes on, and still exits 1).\n\
                     --tls connects with TLS; --ca trusts the CA certificate in FILE (a self-signed server's\n\
                     certificate, say). The choice is saved with the session and used again next time.\n\n{HELP}"
                );
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}; parley --help")),
        }
    }
    Ok(Some(target))
}

/// How to reach the server: as the flags say, else as the saved session did.
fn connector_for(
    target: &Target,
    saved: Option<&session::Saved>,
) -> Result<(Connector, Option<PathBuf>), String> {
    let ca = match (&target.ca, target.tls) {
        (Some(ca), _) => Some(ca.clone()),
        (None, true) => match saved.and_then(|s| s.tls_ca.clone()) {
            Some(ca) => Some(ca),
            None => return Err("--tls needs --ca FILE: the CA certificate to trust".into()),
        },
        (None, false) => saved.and_then(|s| s.tls_ca.clone()),
    };
    match ca {
        None => Ok((Connector::plain(), None)),
        Some(ca) => {
            // The nodes of a cluster share one certificate name: the first's.
            let first = target.server.split(',').next().unwrap_or_default().trim();
            let connector = Connector::tls(first, &ca).map_err(|e| format!("{e:#}"))?;
            Ok((connector, Some(ca)))
        }
    }
}

/// Builds the link: pushes become lines (or screen events), connection
/// changes are reported, and a reconnect catches up on every known room.
fn connect(
    target: &Target,
    connector: &Connector,
    out: &Out,
    dir: &Arc<Mutex<Directory>>,
) -> std::io::Result<Link> {
    let (push_out, push_dir, restore_dir) = (out.clone(), dir.clone(), dir.clone());
    Link::connect(
        &target.server,
        connector.clone(),
        move |event| match event {
            LinkEvent::Push(p) => {
                let room = p["room_id"].as_i64();
                let id = p["message_id"].as_i64();
                let line = push_line(&mut push_dir.lock(), &p);
                match (line, room, id) {
                    (Some(line), Some(room), Some(id)) if p["type"] == Kind::Msg.name() => {
                        push_out.message(room, id, line)
                    }
                    (Some(line), _, _) => push_out.line(line),
                    (None, _, _) => {}
                }
                push_out.redraw();
            }
            LinkEvent::Lost => push_out.link(Some("connection lost; reconnecting...".into())),
            LinkEvent::Retrying(secs) => push_out.link(Some(format!("reconnecting in {secs} s"))),
            LinkEvent::Restored => push_out.link(None),
        },
        move || {
            // Catch up on every room seen so far from its newest known message.
            let dir = restore_dir.lock();
            dir.rooms
                .keys()
                .map(|id| {
                    let after = dir.last_seen.get(id).copied().unwrap_or(0);
                    json!({"type": Kind::GetNewMsgs.name(), "room_id": id, "after_id": after, "count": 200, "req_id": "catch-up"})
                })
                .collect()
        },
    )
}

/// Sends the read markers of what was shown, twice a second, until the
/// process ends: another device, or the next start, counts them as read.
fn mark_read_in_background(link: &Link, dir: Arc<Mutex<Directory>>) {
    let notifier = link.notifier();
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let marks: Vec<(i64, i64)> = dir.lock().to_mark.drain().collect();
        for (room, msg_id) in marks {
            if notifier
                .send(json!({"type": Kind::MarkRead.name(), "room_id": room, "msg_id": msg_id}))
                .is_err()
            {
                // Disconnected: try again after the reconnect.
                let mut dir = dir.lock();
                let marker = dir.to_mark.entry(room).or_insert(0);
                *marker = (*marker).max(msg_id);
            }
        }
    });
}

/// Resumes the saved session, if any, and shows what was missed.
fn resume(app: &mut App, saved: Option<session::Saved>) {
    let Some(session::Saved { login, token, .. }) = saved else {
        app.say("/signup LOGIN or /login LOGIN to start");
        return;
    };
    match app.run_resume(&token) {
        Ok(()) => {
            app.say(format!("resumed the session of {login}"));
            if let Err(e) = app.rooms(true).and_then(|()| app.catch_up()) {
                app.say(format!("error: {e}"));
            }
        }
        Err(_) => {
            session::remove(&app.server);
            app.say("the saved session has expired: /login LOGIN");
        }
    }
}

fn main() -> std::process::ExitCode {
    let target = match parse_args() {
        Ok(Some(t)) => t,
        Ok(None) => return std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let saved = session::load(&target.server);
    let (connector, tls_ca) = match connector_for(&target, saved.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let dumb = std::env::var("TERM").map_or(true, |t| t.is_empty() || t == "dumb");
    if terminal && !dumb && !target.line {
        return tui::run(&target, connector, tls_ca, saved);
    }
    let interactive = std::io::stdin().is_terminal();
    let mut editor = if interactive {
        rustyline::DefaultEditor::new().ok()
    } else {
        None
    };
    let out = match editor.as_mut().and_then(|e| e.create_external_printer().ok()) {
        Some(printer) => Out::printer(Box::new(printer)),
        None => Out::stdout(),
    };
    let dir = Arc::new(Mutex::new(Directory::default()));
    let link = match connect(&target, &connector, &out, &dir) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("parley: cannot connect to {}: {e}", target.server);
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut app = App::new(
        link,
        target.server.clone(),
        out.clone(),
        connector,
        tls_ca,
        interactive,
    );
    app.dir = dir;
    mark_read_in_background(&app.link, app.dir.clone());
    let secure = if app.is_tls() { " with TLS" } else { "" };
    app.say(format!(
        "connected to {}{secure}; /help lists the commands",
        target.server
    ));
    resume(&mut app, saved);

    let mut stdin = std::io::stdin().lock();
    loop {
        let line = match editor.as_mut() {
            Some(editor) => {
                let prompt = {
                    let dir = app.dir.lock();
                    dir.current
                        .map_or_else(|| "> ".to_owned(), |id| format!("{}> ", dir.label(id)))
                };
                match editor.readline(&prompt) {
                    Ok(line) => {
                        let _ = editor.add_history_entry(line.as_str());
                        line
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => continue,
                    Err(_) => break,
                }
            }
            None => {
                let mut line = String::new();
                match stdin.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => line,
                }
            }
        };
        match app.run_line(&line) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                app.say(format!("error: {e}"));
                out.count_failure();
                // A script stops at its first failure, unless told to go on.
                if !interactive && !target.keep_going {
                    break;
                }
            }
        }
    }
    // Let transfers under way finish before leaving.
    app.finish_transfers();
    // Markers of what was shown last go out before leaving.
    std::thread::sleep(std::time::Duration::from_millis(600));
    if !interactive && out.failures() > 0 {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
