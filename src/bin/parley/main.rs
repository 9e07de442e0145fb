//! parley: the interactive terminal client.
//!
//! `parley [--server HOST:PORT]` connects, resumes the saved session if
//! there is one, and reads commands: readline editing and history on a
//! terminal, with pushes printed above the prompt; plain lines in and out
//! when stdin is not a terminal, so it can be scripted.

mod render;
mod session;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use parley::client::{password_digest, Client, Link, LinkEvent};
use parley::client_stream::Connector;
use parley::model::{Role, RoomType};
use parley::protocol::Kind;
use render::{message_line, push_line, role_name, Directory};
use rustyline::ExternalPrinter;
use serde_json::{json, Value};

const HELP: &str = "\
commands:
  /signup LOGIN [NAME]   create an account (password asked, or PARLEY_PASSWORD)
  /login LOGIN           log in; the session is saved and resumed next time
  /logout                log out and forget the saved session
  /rooms                 your rooms, with unread counts
  /new NAME [--private]  create a room (global unless --private)
  /join ROOM             join a global room (id or name)
  /find PREFIX           find global rooms by name
  /go ROOM               switch to a room (id, name or @login); shows its latest messages
  /members               members of the current room
  /history [N]           the last N messages of the current room (default 20)
  /search WORDS          search the current room (or all rooms if none)
  /edit MSG_ID TEXT      edit your message
  /delete MSG_ID         delete a message
  /clear                 clear the current room's history
  /rename NAME           rename the current room
  /topic TEXT            set the current room's description
  /add LOGIN             add someone to the current room
  /leave                 leave the current room
  /ban LOGIN, /unban LOGIN
  /role LOGIN ROLE       ROLE: admin, moderator or member
  /friends               your friends, with who is online
  /friend LOGIN, /unfriend LOGIN
  /dm LOGIN              open a direct conversation with a friend
  /upload PATH           send a file to the current room
  /download MSG_ID [PATH]  save a file from the current room
  /whois LOGIN           about someone
  /quit
anything else is a message to the current room";

/// Where lines go: above the prompt on a terminal, plain stdout otherwise.
#[derive(Clone)]
struct Out {
    printer: Option<Arc<Mutex<Box<dyn ExternalPrinter + Send>>>>,
}

impl Out {
    fn line(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        match &self.printer {
            Some(printer) => {
                let _ = printer.lock().print(format!("{text}\n"));
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{text}");
                let _ = stdout.flush();
            }
        }
    }
}

struct App {
    link: Link,
    server: String,
    out: Out,
    dir: Arc<Mutex<Directory>>,
    token: Option<String>,
    /// How the server is reached (TLS or not); transfers connect the same way.
    connector: Connector,
    /// With TLS, the CA file trusted: saved with the session.
    tls_ca: Option<PathBuf>,
    interactive: bool,
    /// File transfers running on their own connections.
    transfers: Vec<JoinHandle<()>>,
}

/// A command's failure, shown as one line.
type CmdResult = Result<(), String>;

fn error_text(reply: &Value) -> Option<String> {
    (reply["type"] == Kind::ErrorMsg.name()).then(|| {
        format!(
            "{} ({})",
            reply["msg"].as_str().unwrap_or("error"),
            reply["error_code"].as_str().unwrap_or("?")
        )
    })
}

impl App {
    fn req(&mut self, msg: Value) -> Result<Value, String> {
        let reply = self.link.request(msg).map_err(|e| format!("server: {e}"))?;
        match error_text(&reply) {
            Some(e) => Err(e),
            None => Ok(reply),
        }
    }

    fn say(&self, text: impl AsRef<str>) {
        self.out.line(text);
    }

    fn current(&self) -> Result<i64, String> {
        self.dir
            .lock()
            .current
            .ok_or_else(|| "no current room: /rooms, then /go ROOM".to_owned())
    }

    fn password(&self, confirm: bool) -> Result<String, String> {
        if let Ok(p) = std::env::var("PARLEY_PASSWORD") {
            return Ok(p);
        }
        if !self.interactive {
            return Err("set PARLEY_PASSWORD when stdin is not a terminal".into());
        }
        let p = rpassword::prompt_password("password: ").map_err(|e| e.to_string())?;
        if confirm && rpassword::prompt_password("again: ").map_err(|e| e.to_string())? != p {
            return Err("the passwords differ".into());
        }
        Ok(p)
    }

    fn logged_in(&mut self, reply: &Value) {
        let login = reply["login"].as_str().unwrap_or_default().to_owned();
        let token = reply["token"].as_str().unwrap_or_default().to_owned();
        if let Err(e) = session::save(&self.server, &login, &token, self.tls_ca.as_deref()) {
            self.say(format!("(could not save the session: {e})"));
        }
        self.link.set_token(Some(token.clone()));
        self.token = Some(token);
        let mut dir = self.dir.lock();
        dir.me = Some(login.clone());
        if let Some(id) = reply["user_id"].as_i64() {
            dir.users.insert(id, login);
        }
    }

    fn user_id(&mut self, login: &str) -> Result<i64, String> {
        if let Ok(id) = login.parse::<i64>() {
            return Ok(id);
        }
        let reply = self.req(json!({"type": Kind::MemberInfo.name(), "login": login}))?;
        reply["user_id"]
            .as_i64()
            .ok_or_else(|| format!("no user {login}"))
    }

    /// Loads the room list; prints it with unread counts when `show`.
    fn rooms(&mut self, show: bool) -> CmdResult {
        let reply = self.req(json!({"type": Kind::GetRooms.name(), "date": 0}))?;
        let rooms = reply["rooms"].as_array().cloned().unwrap_or_default();
        let mut lines = Vec::new();
        {
            let mut dir = self.dir.lock();
            for room in &rooms {
                dir.learn_room(room);
                let id = room["id"].as_i64().unwrap_or(0);
                let unread = room["unread"].as_i64().unwrap_or(0);
                let mark = if dir.current == Some(id) { "*" } else { " " };
                let role = role_name(room["role"].as_str().unwrap_or(""));
                let news = if unread > 0 {
                    format!("  {unread} unread")
                } else {
                    String::new()
                };
                lines.push(format!("{mark} {} (room {id}, {role}){news}", dir.label(id)));
            }
        }
        if show {
            if lines.is_empty() {
                self.say("no rooms yet: /new NAME, /find PREFIX, /join ROOM");
            }
            for line in lines {
                self.say(line);
            }
        }
        Ok(())
    }

    fn show_history(&mut self, room: i64, count: i64) -> CmdResult {
        let reply = self.req(json!({"type": Kind::GetNewMsgs.name(), "room_id": room, "count": count}))?;
        let msgs = reply["messages"].as_array().cloned().unwrap_or_default();
        let lines: Vec<String> = {
            let mut dir = self.dir.lock();
            msgs.iter().rev().map(|m| message_line(&mut dir, m)).collect()
        };
        if lines.is_empty() {
            self.say("(no messages yet)");
        }
        for line in lines {
            self.say(line);
        }
        if let Some(newest) = msgs.first().and_then(|m| m["message_id"].as_i64()) {
            self.req(json!({"type": Kind::MarkRead.name(), "room_id": room, "msg_id": newest}))?;
        }
        Ok(())
    }

    fn go(&mut self, room: i64) -> CmdResult {
        self.dir.lock().current = Some(room);
        let label = self.dir.lock().label(room);
        self.say(format!("now in {label}"));
        self.show_history(room, 20)
    }

    fn find_or_load_room(&mut self, what: &str) -> Result<i64, String> {
        if let Some(id) = self.dir.lock().find_room(what) {
            return Ok(id);
        }
        self.rooms(false)?;
        self.dir
            .lock()
            .find_room(what)
            .ok_or_else(|| format!("you are not in a room {what:?}; /rooms lists yours"))
    }

    fn transfer_token(&self) -> Result<String, String> {
        self.token.clone().ok_or_else(|| "log in first".to_owned())
    }

    fn upload(&mut self, path: &str) -> CmdResult {
        let room = self.current()?;
        let token = self.transfer_token()?;
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let name = std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_owned(), |n| n.to_string_lossy().into_owned());
        let (out, server, connector) = (self.out.clone(), self.server.clone(), self.connector.clone());
        out.line(format!("uploading {name} ({} bytes)...", data.len()));
        // A second connection, so chat goes on meanwhile.
        self.transfers.push(std::thread::spawn(move || {
            let total = data.len() as u64;
            let mut shown = 0;
            let result = Client::connect_with(&connector, &server).and_then(|mut c| {
                c.upload_with_progress(room, &name, &data, Some(&token), |sent| {
                    let pct = sent * 100 / total.max(1);
                    if total > 1024 * 1024 && pct >= shown + 25 {
                        shown = pct;
                        out.line(format!("  {name}: {pct}%"));
                    }
                })
            });
            match result {
                Ok(reply) if reply["type"] == Kind::Msg.name() => out.line(format!("uploaded {name}")),
                Ok(reply) => out.line(format!(
                    "upload failed: {}",
                    error_text(&reply).unwrap_or_default()
                )),
                Err(e) => out.line(format!("upload failed: {e}")),
            }
        }));
        Ok(())
    }

    fn download(&mut self, msg_id: i64, path: Option<&str>) -> CmdResult {
        let room = self.current()?;
        let token = self.transfer_token()?;
        let (out, server, connector) = (self.out.clone(), self.server.clone(), self.connector.clone());
        let path = path.map(str::to_owned);
        self.transfers.push(std::thread::spawn(move || {
            let mut shown = 0;
            let result = Client::connect_with(&connector, &server).and_then(|mut c| {
                c.download_with_progress(room, msg_id, Some(&token), |got, size| {
                    let pct = got * 100 / size.max(1);
                    if size > 1024 * 1024 && pct >= shown + 25 {
                        shown = pct;
                        out.line(format!("  download: {pct}%"));
                    }
                })
            });
            match result {
                Ok((offer, data)) if offer["type"] == Kind::DownloadFile.name() => {
                    // The server's name is a display name: keep only its last part.
                    let name = offer["name"].as_str().unwrap_or("download");
                    let name = name.rsplit(['/', '\\']).next().unwrap_or("download");
                    let target = path.unwrap_or_else(|| name.to_owned());
                    match std::fs::write(&target, &data) {
                        Ok(()) => out.line(format!("saved {target} ({} bytes)", data.len())),
                        Err(e) => out.line(format!("saving {target}: {e}")),
                    }
                }
                Ok((offer, _)) => out.line(format!(
                    "download failed: {}",
                    error_text(&offer).unwrap_or_default()
                )),
                Err(e) => out.line(format!("download failed: {e}")),
            }
        }));
        Ok(())
    }

    fn member_action(&mut self, kind: &str, login: &str) -> CmdResult {
        let room = self.current()?;
        let user = self.user_id(login)?;
        self.req(json!({"type": kind, "room_id": room, "user_id": user}))?;
        Ok(())
    }

    /// Runs one input line. `Ok(false)` means quit.
    fn run_line(&mut self, line: &str) -> Result<bool, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(true);
        }
        if !line.starts_with('/') {
            let room = self.current()?;
            let reply = self.req(json!({"type": Kind::Msg.name(), "room_id": room, "message": line}))?;
            let text = message_line(&mut self.dir.lock(), &reply);
            self.say(text);
            return Ok(true);
        }
        let (cmd, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        let arg = |n: usize| rest.split_whitespace().nth(n);
        let need = |n: usize, usage: &str| arg(n).map(str::to_owned).ok_or_else(|| format!("usage: {usage}"));
        match cmd {
            "/quit" | "/exit" => return Ok(false),
            "/help" => self.say(HELP),
            "/signup" => {
                let login = need(0, "/signup LOGIN [NAME]")?;
                let name = rest.split_once(' ').map_or("", |(_, n)| n.trim()).to_owned();
                let pass = password_digest(&self.password(self.interactive)?);
                let reply = self.req(
                    json!({"type": Kind::SignUp.name(), "login": login, "pass": pass, "name": name, "desc": ""}),
                )?;
                self.logged_in(&reply);
                self.say(format!("signed up and logged in as {login}"));
            }
            "/login" => {
                let login = need(0, "/login LOGIN")?;
                let pass = password_digest(&self.password(false)?);
                let reply = self.req(json!({"type": Kind::LogIn.name(), "login": login, "pass": pass}))?;
                self.logged_in(&reply);
                self.say(format!("logged in as {login}"));
                self.rooms(true)?;
            }
            "/logout" => {
                let token = self.transfer_token()?;
                self.req(json!({"type": Kind::LogOut.name(), "token": token}))?;
                session::remove(&self.server);
                self.link.set_token(None);
                self.token = None;
                *self.dir.lock() = Directory::default();
                self.say("logged out");
            }
            "/rooms" => self.rooms(true)?,
            "/new" => {
                let private = rest.split_whitespace().any(|w| w == "--private");
                let name: Vec<&str> = rest.split_whitespace().filter(|w| *w != "--private").collect();
                if name.is_empty() {
                    return Err("usage: /new NAME [--private]".into());
                }
                let kind = if private {
                    RoomType::Private.name()
                } else {
                    RoomType::Global.name()
                };
                let reply = self
                    .req(json!({"type": Kind::NewRoom.name(), "name": name.join(" "), "room_type": kind}))?;
                self.dir.lock().learn_room(&reply);
                let id = reply["id"].as_i64().unwrap_or(0);
                self.say(format!("created {} (room {id})", self.dir.lock().label(id)));
                self.go(id)?;
            }
            "/join" => {
                let what = need(0, "/join ROOM")?;
                let id = match what.parse::<i64>() {
                    Ok(id) => id,
                    Err(_) => {
                        let found = self.req(json!({"type": Kind::SearchCh.name(), "name": rest}))?;
                        let rooms = found["rooms"].as_array().cloned().unwrap_or_default();
                        let exact = rooms
                            .iter()
                            .find(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(rest)));
                        exact
                            .or(rooms.first())
                            .and_then(|r| r["id"].as_i64())
                            .ok_or_else(|| format!("no global room named {rest:?}"))?
                    }
                };
                let reply = self.req(json!({"type": Kind::JoinRoom.name(), "room_id": id}))?;
                self.dir.lock().learn_room(&reply);
                self.go(id)?;
            }
            "/find" => {
                let found = self.req(json!({"type": Kind::SearchCh.name(), "name": rest}))?;
                let rooms = found["rooms"].as_array().cloned().unwrap_or_default();
                if rooms.is_empty() {
                    self.say("no such global room");
                }
                for r in rooms {
                    self.say(format!(
                        "  #{} (room {}) {}",
                        r["name"].as_str().unwrap_or(""),
                        r["id"],
                        r["desc"].as_str().unwrap_or("")
                    ));
                }
            }
            "/go" => {
                let what = need(0, "/go ROOM")?;
                let id = self.find_or_load_room(&what)?;
                self.go(id)?;
            }
            "/members" => {
                let room = self.current()?;
                let reply = self.req(json!({"type": Kind::GetMembers.name(), "room_id": room}))?;
                for m in reply["members"].as_array().cloned().unwrap_or_default() {
                    let online = if m["online"] == true { "online" } else { "" };
                    self.say(format!(
                        "  {} ({}) {online}",
                        m["login"].as_str().unwrap_or(""),
                        role_name(m["role"].as_str().unwrap_or(""))
                    ));
                }
            }
            "/history" => {
                let room = self.current()?;
                let n = arg(0).map_or(Ok(20), |n| {
                    n.parse::<i64>().map_err(|_| "usage: /history [N]".to_owned())
                })?;
                self.show_history(room, n.clamp(1, 500))?;
            }
            "/search" => {
                if rest.is_empty() {
                    return Err("usage: /search WORDS".into());
                }
                let mut msg = json!({"type": Kind::SearchMsgs.name(), "msg": rest});
                if let Some(room) = self.dir.lock().current {
                    msg["room_id"] = json!(room);
                }
                let reply = self.req(msg)?;
                let msgs = reply["msgs"].as_array().cloned().unwrap_or_default();
                if msgs.is_empty() {
                    self.say("nothing found");
                }
                let lines: Vec<String> = {
                    let mut dir = self.dir.lock();
                    msgs.iter().map(|m| message_line(&mut dir, m)).collect()
                };
                for l in lines {
                    self.say(l);
                }
            }
            "/edit" => {
                let room = self.current()?;
                let id: i64 = need(0, "/edit MSG_ID TEXT")?
                    .parse()
                    .map_err(|_| "usage: /edit MSG_ID TEXT")?;
                let text = rest.split_once(' ').map(|(_, t)| t.trim()).unwrap_or("");
                self.req(json!({"type": Kind::EditMsg.name(), "room_id": room, "msg_id": id, "msg": text}))?;
            }
            "/delete" => {
                let room = self.current()?;
                let id: i64 = need(0, "/delete MSG_ID")?
                    .parse()
                    .map_err(|_| "usage: /delete MSG_ID")?;
                self.req(json!({"type": Kind::DelMsg.name(), "room_id": room, "msg_id": id}))?;
            }
            "/clear" => {
                let room = self.current()?;
                self.req(json!({"type": Kind::DelHist.name(), "room_id": room}))?;
            }
            "/rename" => {
                let room = self.current()?;
                self.req(json!({"type": Kind::UpdRoomName.name(), "room_id": room, "room_name": rest}))?;
            }
            "/topic" => {
                let room = self.current()?;
                self.req(json!({"type": Kind::UpdRoomDesc.name(), "room_id": room, "desc": rest}))?;
            }
            "/add" => {
                let room = self.current()?;
                let login = need(0, "/add LOGIN")?;
                self.req(json!({"type": Kind::AddMember.name(), "room_id": room, "login": login}))?;
            }
            "/leave" => {
                let room = self.current()?;
                self.req(json!({"type": Kind::LeaveRoom.name(), "room_id": room}))?;
                let mut dir = self.dir.lock();
                dir.rooms.remove(&room);
                dir.current = None;
            }
            "/ban" => self.member_action(Kind::BanMember.name(), &need(0, "/ban LOGIN")?)?,
            "/unban" => self.member_action(Kind::UnbanMember.name(), &need(0, "/unban LOGIN")?)?,
            "/role" => {
                let room = self.current()?;
                let login = need(0, "/role LOGIN ROLE")?;
                let role = match need(1, "/role LOGIN ROLE")?.as_str() {
                    "admin" => Role::Admin.name(),
                    "moderator" | "mod" => Role::Moderator.name(),
                    "member" | "simple" => Role::Simple.name(),
                    other => return Err(format!("unknown role {other:?}: admin, moderator or member")),
                };
                let user = self.user_id(&login)?;
                self.req(
                    json!({"type": Kind::SetRole.name(), "room_id": room, "user_id": user, "role": role}),
                )?;
            }
            "/friends" => {
                let reply = self.req(json!({"type": Kind::GetFriends.name()}))?;
                let friends = reply["friends"].as_array().cloned().unwrap_or_default();
                if friends.is_empty() {
                    self.say("no friends yet: /friend LOGIN");
                }
                for f in friends {
                    let online = if f["online"] == true { "online" } else { "offline" };
                    self.say(format!("  {} ({online})", f["login"].as_str().unwrap_or("")));
                }
            }
            "/friend" => {
                let login = need(0, "/friend LOGIN")?;
                self.req(json!({"type": Kind::AddFriend.name(), "login": login}))?;
                self.say(format!("{login} is now your friend"));
            }
            "/unfriend" => {
                let login = need(0, "/unfriend LOGIN")?;
                self.req(json!({"type": Kind::DelFriend.name(), "login": login}))?;
                self.say(format!("{login} is no longer your friend"));
            }
            "/dm" => {
                let login = need(0, "/dm LOGIN")?;
                let reply = self.req(json!({"type": Kind::OpenDm.name(), "login": login}))?;
                self.dir.lock().learn_room(&reply["room"]);
                let id = reply["room"]["id"].as_i64().unwrap_or(0);
                self.go(id)?;
            }
            "/upload" => self.upload(&need(0, "/upload PATH")?)?,
            "/download" => {
                let id: i64 = need(0, "/download MSG_ID [PATH]")?
                    .parse()
                    .map_err(|_| "usage: /download MSG_ID [PATH]")?;
                self.download(id, arg(1))?;
            }
            "/whois" => {
                let login = need(0, "/whois LOGIN")?;
                let info = self.req(json!({"type": Kind::MemberInfo.name(), "login": login}))?;
                let online = if info["online"] == true {
                    "online"
                } else {
                    "offline"
                };
                self.say(format!(
                    "{} ({}), {online}{}",
                    info["login"].as_str().unwrap_or(""),
                    info["name"].as_str().unwrap_or(""),
                    match info["desc"].as_str() {
                        Some(d) if !d.is_empty() => format!(": {d}"),
                        _ => String::new(),
                    }
                ));
            }
            other => return Err(format!("unknown command {other}; /help lists them")),
        }
        Ok(true)
    }
}

/// Where to connect, and how.
struct Target {
    server: String,
    /// `--tls`, and the CA file from `--ca` (`None`: not given).
    tls: bool,
    ca: Option<PathBuf>,
}

fn parse_args() -> Result<Option<Target>, String> {
    let mut target = Target {
        server: "127.0.0.1:7700".to_owned(),
        tls: false,
        ca: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" | "-s" => target.server = args.next().ok_or("--server needs HOST:PORT")?,
            "--tls" => target.tls = true,
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
                    "parley [--server HOST:PORT] [--tls [--ca FILE]]: chat with a Parley server (default 127.0.0.1:7700)\n\
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
            let connector = Connector::tls(&target.server, &ca).map_err(|e| format!("{e:#}"))?;
            Ok((connector, Some(ca)))
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
    let server = target.server.clone();
    let saved = session::load(&server);
    let (connector, tls_ca) = match connector_for(&target, saved.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let interactive = std::io::stdin().is_terminal();
    let mut editor = if interactive {
        rustyline::DefaultEditor::new().ok()
    } else {
        None
    };
    let printer = editor
        .as_mut()
        .and_then(|e| e.create_external_printer().ok())
        .map(|p| Arc::new(Mutex::new(Box::new(p) as Box<dyn ExternalPrinter + Send>)));
    let out = Out { printer };
    let dir = Arc::new(Mutex::new(Directory::default()));

    let (push_out, push_dir, restore_dir) = (out.clone(), dir.clone(), dir.clone());
    let link = Link::connect(
        &server,
        connector.clone(),
        move |event| match event {
            LinkEvent::Push(p) => {
                if let Some(line) = push_line(&mut push_dir.lock(), &p) {
                    push_out.line(line);
                }
            }
            LinkEvent::Lost => push_out.line("connection lost; reconnecting..."),
            LinkEvent::Restored => push_out.line("reconnected"),
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
    );
    let link = match link {
        Ok(link) => link,
        Err(e) => {
            eprintln!("parley: cannot connect to {server}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut app = App {
        link,
        server: server.clone(),
        out,
        dir,
        token: None,
        connector,
        tls_ca,
        interactive,
        transfers: Vec::new(),
    };
    let secure = if app.connector.is_tls() { " with TLS" } else { "" };
    app.say(format!("connected to {server}{secure}; /help lists the commands"));
    if let Some(session::Saved { login, token, .. }) = saved {
        match app.req(json!({"type": Kind::Token.name(), "token": token})) {
            Ok(reply) => {
                app.logged_in(&reply);
                app.say(format!("resumed the session of {login}"));
                if let Err(e) = app.rooms(true) {
                    app.say(format!("error: {e}"));
                }
            }
            Err(_) => {
                session::remove(&server);
                app.say("the saved session has expired: /login LOGIN");
            }
        }
    } else {
        app.say("/signup LOGIN or /login LOGIN to start");
    }

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
            Err(e) => app.say(format!("error: {e}")),
        }
    }
    // Let transfers under way finish before leaving.
    for transfer in app.transfers.drain(..) {
        let _ = transfer.join();
    }
    std::process::ExitCode::SUCCESS
}
