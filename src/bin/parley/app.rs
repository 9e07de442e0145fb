//! The commands, shared by line mode and full-screen mode: each input line
//! becomes requests to the server, and what it did becomes lines for `Out`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use parley::client::{password_digest, Client, Link};
use parley::client_stream::Connector;
use parley::model::{Role, RoomType};
use parley::protocol::Kind;
use serde_json::{json, Value};

use crate::out::Out;
use crate::render::{message_line, push_line, role_name, Directory};
use crate::session;

pub const HELP: &str = "\
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
  /reply MSG_ID TEXT     answer a message (it is quoted above yours)
  /react MSG_ID EMOJI    react to a message (again to take it back)
  /mentions              messages that name you, across your rooms
  /pin MSG_ID, /unpin MSG_ID, /pins  pinned messages of the current room
  /edit MSG_ID TEXT      edit your message
  /delete MSG_ID         delete a message
  /clear                 clear the current room's history (asks first; /clear --yes in scripts)
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
  /download MSG_ID [PATH]  save a file from the current room (never overwrites)
  /whois LOGIN           about someone
  /quit
anything else is a message to the current room";

/// Shortest password `/signup` accepts.
const MIN_PASSWORD_CHARS: usize = 8;

/// Messages shown per room when a resumed session catches up.
const MISSED_SHOWN: i64 = 20;

pub struct App {
    pub link: Link,
    pub server: String,
    pub out: Out,
    pub dir: Arc<Mutex<Directory>>,
    token: Option<String>,
    /// How the server is reached (TLS or not); transfers connect the same way.
    connector: Connector,
    /// With TLS, the CA file trusted: saved with the session.
    tls_ca: Option<PathBuf>,
    /// Whether a person is typing (not a script): passwords may be asked.
    interactive: bool,
    /// A command waiting for the user's yes.
    confirming: Option<String>,
    /// A password typed into the full-screen view's masked prompt.
    pub supplied_password: Option<String>,
    /// File transfers running on their own connections.
    transfers: Vec<JoinHandle<()>>,
}

/// A command's failure, shown as one line.
type CmdResult = Result<(), String>;

pub fn error_text(reply: &Value) -> Option<String> {
    (reply["type"] == Kind::ErrorMsg.name()).then(|| {
        format!(
            "{} ({})",
            reply["msg"].as_str().unwrap_or("error"),
            reply["error_code"].as_str().unwrap_or("?")
        )
    })
}

/// `dir/name`, or `dir/name (1).ext`, `(2)`... : the first that does not exist,
/// created empty so that nobody else takes it meanwhile.
fn fresh_file(dir: &Path, name: &str) -> std::io::Result<(PathBuf, std::fs::File)> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (name.to_owned(), String::new()),
    };
    for n in 0..1000 {
        let candidate = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "too many files of that name",
    ))
}

impl App {
    pub fn new(
        link: Link,
        server: String,
        out: Out,
        connector: Connector,
        tls_ca: Option<PathBuf>,
        interactive: bool,
    ) -> App {
        App {
            link,
            server,
            out,
            dir: Arc::new(Mutex::new(Directory::default())),
            token: None,
            connector,
            tls_ca,
            interactive,
            confirming: None,
            supplied_password: None,
            transfers: Vec::new(),
        }
    }

    /// Resumes a saved session's token.
    pub fn run_resume(&mut self, token: &str) -> CmdResult {
        let reply = self.req(json!({"type": Kind::Token.name(), "token": token}))?;
        self.logged_in(&reply);
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        self.connector.is_tls()
    }

    /// Whether the user is logged in.
    pub fn logged_in_as(&self) -> Option<String> {
        self.token.as_ref().and(self.dir.lock().me.clone())
    }

    fn req(&mut self, msg: Value) -> Result<Value, String> {
        let reply = self.link.request(msg).map_err(|e| format!("server: {e}"))?;
        match error_text(&reply) {
            Some(e) => Err(e),
            None => Ok(reply),
        }
    }

    pub fn say(&self, text: impl AsRef<str>) {
        self.out.line(text);
    }

    /// Says what a broadcast answer did, as the others see it.
    fn confirm(&self, reply: &Value) {
        let line = push_line(&mut self.dir.lock(), reply);
        if let Some(line) = line {
            self.say(line);
        }
    }

    fn need_login(&self) -> CmdResult {
        if self.token.is_none() || self.dir.lock().me.is_none() {
            return Err("log in first: /login LOGIN (or /signup LOGIN)".into());
        }
        Ok(())
    }

    fn current(&self) -> Result<i64, String> {
        self.need_login()?;
        self.dir
            .lock()
            .current
            .ok_or_else(|| "no current room: /rooms, then /go ROOM".to_owned())
    }

    fn password(&mut self, confirm: bool) -> Result<String, String> {
        if let Some(p) = self.supplied_password.take() {
            return Ok(p);
        }
        if let Ok(p) = std::env::var("PARLEY_PASSWORD") {
            return Ok(p);
        }
        if !self.interactive {
            return Err("set PARLEY_PASSWORD when stdin is not a terminal".into());
        }
        let p = self.out.ask_secret("password: ")?;
        if confirm && self.out.ask_secret("again: ")? != p {
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
        *dir = Directory::default();
        dir.me = Some(login.clone());
        if let Some(id) = reply["user_id"].as_i64() {
            dir.users.insert(id, login);
        }
    }

    /// Forgets who was logged in (after logging out), so nothing is sent as
    /// them by mistake.
    fn forget_login(&mut self) {
        self.link.set_token(None);
        self.token = None;
        *self.dir.lock() = Directory::default();
    }

    /// Before another log-in or sign-up: whoever is logged in here is logged
    /// out first (the connection is then free for the new one), so a failed
    /// attempt leaves nobody logged in, never the previous user.
    fn log_out_first(&mut self) {
        if let Some(token) = self.token.clone() {
            let _ = self.req(json!({"type": Kind::LogOut.name(), "token": token}));
            session::remove(&self.server);
            if let Some(me) = self.dir.lock().me.clone() {
                self.say(format!("logged out {me} first"));
            }
        }
        self.forget_login();
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
    pub fn rooms(&mut self, show: bool) -> CmdResult {
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
                let mentions = room["mentions"].as_i64().unwrap_or(0);
                let news = match (unread, mentions) {
                    (0, _) => String::new(),
                    (n, 0) => format!("  {n} unread"),
                    (n, 1) => format!("  {n} unread, 1 mentions you"),
                    (n, m) => format!("  {n} unread, {m} mention you"),
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

    /// The newest `count` messages of a room, oldest first; fails (changing
    /// nothing) when the user may not read it.
    pub fn fetch_history(&mut self, room: i64, count: i64) -> Result<Vec<Value>, String> {
        let reply = self.req(json!({"type": Kind::GetNewMsgs.name(), "room_id": room, "count": count}))?;
        let mut msgs = reply["messages"].as_array().cloned().unwrap_or_default();
        msgs.reverse();
        Ok(msgs)
    }

    /// A page of older messages of a room, before `before_id`, oldest first,
    /// as lines.
    pub fn older_lines(
        &mut self,
        room: i64,
        before_id: i64,
        count: i64,
    ) -> Result<Vec<(i64, String)>, String> {
        let reply = self.req(
            json!({"type": Kind::OldMsgs.name(), "room_id": room, "before_id": before_id, "count": count}),
        )?;
        let msgs = reply["messages"].as_array().cloned().unwrap_or_default();
        let mut dir = self.dir.lock();
        Ok(msgs
            .iter()
            .rev()
            .map(|m| (m["message_id"].as_i64().unwrap_or(0), message_line(&mut dir, m)))
            .collect())
    }

    /// Shows messages of a room and counts them as read.
    fn show_messages(&mut self, room: i64, msgs: &[Value]) {
        let lines: Vec<(i64, String)> = {
            let mut dir = self.dir.lock();
            msgs.iter()
                .map(|m| (m["message_id"].as_i64().unwrap_or(0), message_line(&mut dir, m)))
                .collect()
        };
        for (id, line) in lines {
            self.out.message(room, id, line);
        }
        if let Some(newest) = msgs.last().and_then(|m| m["message_id"].as_i64()) {
            self.dir.lock().shown(room, newest);
            // Marked at once (live messages are marked in batches): the room
            // list asked for next must not count them.
            let marker = self.dir.lock().to_mark.remove(&room).unwrap_or(newest);
            if let Err(e) =
                self.req(json!({"type": Kind::MarkRead.name(), "room_id": room, "msg_id": marker}))
            {
                self.say(format!("(could not mark {room} read: {e})"));
            }
        }
    }

    fn show_history(&mut self, room: i64, count: i64) -> CmdResult {
        let msgs = self.fetch_history(room, count)?;
        if msgs.is_empty() {
            self.say("(no messages yet)");
        }
        self.show_messages(room, &msgs);
        Ok(())
    }

    /// Switches to a room: its history first, so a refusal changes nothing.
    pub fn go(&mut self, room: i64) -> CmdResult {
        let msgs = self.fetch_history(room, 20)?;
        let (label, unread) = {
            let mut dir = self.dir.lock();
            dir.current = Some(room);
            (dir.label(room), dir.rooms.get(&room).map_or(0, |r| r.unread))
        };
        let first_new = usize::try_from(unread)
            .ok()
            .filter(|n| *n > 0 && *n <= msgs.len())
            .and_then(|n| msgs[msgs.len() - n]["message_id"].as_i64());
        self.out.entered(room, first_new);
        self.say(format!("now in {label}"));
        if msgs.is_empty() {
            self.say("(no messages yet)");
        }
        self.show_messages(room, &msgs);
        Ok(())
    }

    /// After resuming: the messages missed in each room, not only their count.
    pub fn catch_up(&mut self) -> CmdResult {
        let unread: Vec<(i64, i64)> = {
            let dir = self.dir.lock();
            let mut rooms: Vec<(i64, i64)> = dir
                .rooms
                .iter()
                .filter(|(_, r)| r.unread > 0)
                .map(|(id, r)| (*id, r.unread))
                .collect();
            rooms.sort_unstable();
            rooms
        };
        for (room, count) in unread {
            let label = self.dir.lock().label(room);
            let shown = count.min(MISSED_SHOWN);
            let more = if count > shown {
                format!(" (the last {shown} of {count}; /go {label} and /history for more)")
            } else {
                String::new()
            };
            self.say(format!("missed in {label}{more}:"));
            let msgs = self.fetch_history(room, shown)?;
            self.show_messages(room, &msgs);
        }
        Ok(())
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
        self.need_login()?;
        self.token.clone().ok_or_else(|| "log in first".to_owned())
    }

    fn upload(&mut self, path: &str) -> CmdResult {
        let room = self.current()?;
        let token = self.transfer_token()?;
        let data = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        let name = Path::new(path)
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
                Ok(reply) => out.failed(format!(
                    "upload failed: {}",
                    error_text(&reply).unwrap_or_default()
                )),
                Err(e) => out.failed(format!("upload failed: {e}")),
            }
        }));
        Ok(())
    }

    fn download(&mut self, msg_id: i64, path: Option<&str>) -> CmdResult {
        let room = self.current()?;
        let token = self.transfer_token()?;
        let (out, server, connector) = (self.out.clone(), self.server.clone(), self.connector.clone());
        let path = path.map(PathBuf::from);
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
                    let name = name
                        .rsplit(['/', '\\'])
                        .next()
                        .filter(|n| !n.is_empty())
                        .unwrap_or("download");
                    // A given path that is a directory gets the name; nothing is overwritten.
                    let (dir, name) = match &path {
                        Some(p) if p.is_dir() => (p.clone(), name.to_owned()),
                        Some(p) => (
                            p.parent()
                                .filter(|d| !d.as_os_str().is_empty())
                                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                            p.file_name()
                                .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned()),
                        ),
                        None => (PathBuf::from("."), name.to_owned()),
                    };
                    let saved = fresh_file(&dir, &name).and_then(|(target, mut file)| {
                        use std::io::Write;
                        file.write_all(&data)?;
                        Ok(std::fs::canonicalize(&target).unwrap_or(target))
                    });
                    match saved {
                        Ok(target) => out.line(format!("saved {} ({} bytes)", target.display(), data.len())),
                        Err(e) => out.failed(format!("saving {name}: {e}")),
                    }
                }
                Ok((offer, _)) => out.failed(format!(
                    "download failed: {}",
                    error_text(&offer).unwrap_or_default()
                )),
                Err(e) => out.failed(format!("download failed: {e}")),
            }
        }));
        Ok(())
    }

    fn member_action(&mut self, kind: &str, login: &str) -> CmdResult {
        let room = self.current()?;
        let user = self.user_id(login)?;
        let reply = self.req(json!({"type": kind, "room_id": room, "user_id": user}))?;
        self.confirm(&reply);
        Ok(())
    }

    /// Tells the room's other members that the user is typing (the server
    /// passes it on at most every 3 s; this sends no more often either).
    pub fn typing(&mut self, last_sent: &mut Option<std::time::Instant>) {
        let Some(room) = self.dir.lock().current else {
            return;
        };
        if self.token.is_none() || last_sent.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3))
        {
            return;
        }
        *last_sent = Some(std::time::Instant::now());
        let _ = self
            .link
            .notifier()
            .send(json!({"type": Kind::Typing.name(), "room_id": room}));
    }

    /// Waits for the transfers under way.
    pub fn finish_transfers(&mut self) {
        for transfer in self.transfers.drain(..) {
            let _ = transfer.join();
        }
    }

    /// Asks before running `command` again with `--yes`.
    fn ask_first(&mut self, question: String, command: &str) -> CmdResult {
        if !self.interactive {
            return Err(format!("{question} In a script, say {command} --yes"));
        }
        self.say(format!("{question} [y/N]"));
        self.confirming = Some(format!("{command} --yes"));
        Ok(())
    }

    /// Runs one input line. `Ok(false)` means quit.
    pub fn run_line(&mut self, line: &str) -> Result<bool, String> {
        let line = line.trim();
        if let Some(command) = self.confirming.take() {
            if matches!(line.to_lowercase().as_str(), "y" | "yes") {
                return self.run_line(&command);
            }
            self.say("cancelled");
            return Ok(true);
        }
        if line.is_empty() {
            return Ok(true);
        }
        if !line.starts_with('/') {
            let room = self.current()?;
            let reply = self.req(json!({"type": Kind::Msg.name(), "room_id": room, "message": line}))?;
            let id = reply["message_id"].as_i64().unwrap_or(0);
            let text = {
                let mut dir = self.dir.lock();
                dir.shown(room, id);
                message_line(&mut dir, &reply)
            };
            self.out.message(room, id, text);
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
                let password = self.password(self.interactive)?;
                if password.chars().count() < MIN_PASSWORD_CHARS {
                    return Err(format!(
                        "a password needs at least {MIN_PASSWORD_CHARS} characters"
                    ));
                }
                let pass = password_digest(&password);
                self.log_out_first();
                let reply = self.req(
                    json!({"type": Kind::SignUp.name(), "login": login, "pass": pass, "name": name, "desc": ""}),
                )?;
                self.logged_in(&reply);
                self.say(format!("signed up and logged in as {login}"));
            }
            "/login" => {
                let login = need(0, "/login LOGIN")?;
                let pass = password_digest(&self.password(false)?);
                // A failed log-in leaves nobody logged in here, not the previous user.
                self.log_out_first();
                let reply = self.req(json!({"type": Kind::LogIn.name(), "login": login, "pass": pass}))?;
                self.logged_in(&reply);
                self.say(format!("logged in as {login}"));
                self.rooms(true)?;
            }
            "/logout" => {
                let token = self.transfer_token()?;
                self.req(json!({"type": Kind::LogOut.name(), "token": token}))?;
                session::remove(&self.server);
                self.forget_login();
                self.out.entered(0, None);
                self.say("logged out");
            }
            "/rooms" => {
                self.need_login()?;
                self.rooms(true)?
            }
            "/new" => {
                self.need_login()?;
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
                self.need_login()?;
                need(0, "/join ROOM")?;
                let id = match rest.parse::<i64>() {
                    Ok(id) => id,
                    Err(_) => {
                        let name = rest.trim_start_matches('#');
                        let found = self.req(json!({"type": Kind::SearchCh.name(), "name": name}))?;
                        let rooms = found["rooms"].as_array().cloned().unwrap_or_default();
                        rooms
                            .iter()
                            .find(|r| r["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
                            .or(rooms.first())
                            .and_then(|r| r["id"].as_i64())
                            .ok_or_else(|| format!("no global room named {name:?}"))?
                    }
                };
                let reply = self.req(json!({"type": Kind::JoinRoom.name(), "room_id": id}))?;
                self.dir.lock().learn_room(&reply);
                self.say(format!("joined {}", self.dir.lock().label(id)));
                self.go(id)?;
            }
            "/find" => {
                self.need_login()?;
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
                self.need_login()?;
                let what = need(0, "/go ROOM")?;
                let id = self
                    .find_or_load_room(rest)
                    .or_else(|_| self.find_or_load_room(&what))?;
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
                self.need_login()?;
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
            "/reply" => {
                let room = self.current()?;
                let id: i64 = need(0, "/reply MSG_ID TEXT")?
                    .parse()
                    .map_err(|_| "usage: /reply MSG_ID TEXT")?;
                let text = rest.split_once(' ').map(|(_, t)| t.trim()).unwrap_or("");
                if text.is_empty() {
                    return Err("usage: /reply MSG_ID TEXT".into());
                }
                let reply = self.req(
                    json!({"type": Kind::Msg.name(), "room_id": room, "message": text, "reply_to": id}),
                )?;
                let id = reply["message_id"].as_i64().unwrap_or(0);
                let line = {
                    let mut dir = self.dir.lock();
                    dir.shown(room, id);
                    message_line(&mut dir, &reply)
                };
                self.out.message(room, id, line);
            }
            "/react" => {
                let room = self.current()?;
                let usage = "usage: /react MSG_ID EMOJI";
                let id: i64 = need(0, usage)?.parse().map_err(|_| usage)?;
                let emoji = need(1, usage)?;
                let on = !self
                    .dir
                    .lock()
                    .my_reactions
                    .get(&id)
                    .is_some_and(|mine| mine.contains(&emoji));
                let reply = self.req(
                    json!({"type": Kind::React.name(), "room_id": room, "msg_id": id, "emoji": emoji, "on": on}),
                )?;
                self.confirm(&reply);
            }
            "/pin" | "/unpin" => {
                let room = self.current()?;
                let usage = format!("usage: {cmd} MSG_ID");
                let id: i64 = need(0, &usage)?.parse().map_err(|_| usage)?;
                let reply = self.req(
                    json!({"type": Kind::Pin.name(), "room_id": room, "msg_id": id, "pinned": cmd == "/pin"}),
                )?;
                self.confirm(&reply);
            }
            "/pins" => {
                let room = self.current()?;
                let reply = self.req(json!({"type": Kind::GetPins.name(), "room_id": room}))?;
                let msgs = reply["msgs"].as_array().cloned().unwrap_or_default();
                let label = self.dir.lock().label(room);
                if msgs.is_empty() {
                    self.say(format!("nothing is pinned in {label}"));
                } else {
                    self.say(format!("pinned in {label}:"));
                }
                let lines: Vec<String> = {
                    let mut dir = self.dir.lock();
                    msgs.iter().map(|m| message_line(&mut dir, m)).collect()
                };
                for line in lines {
                    self.say(line);
                }
            }
            "/mentions" => {
                self.need_login()?;
                let reply = self.req(json!({"type": Kind::GetMentions.name(), "count": 20}))?;
                let msgs = reply["msgs"].as_array().cloned().unwrap_or_default();
                if msgs.is_empty() {
                    self.say("nobody has mentioned you yet");
                }
                // Oldest first, like everything else.
                let lines: Vec<String> = {
                    let mut dir = self.dir.lock();
                    msgs.iter().rev().map(|m| message_line(&mut dir, m)).collect()
                };
                for line in lines {
                    self.say(line);
                }
            }
            "/edit" => {
                let room = self.current()?;
                let id: i64 = need(0, "/edit MSG_ID TEXT")?
                    .parse()
                    .map_err(|_| "usage: /edit MSG_ID TEXT")?;
                let text = rest.split_once(' ').map(|(_, t)| t.trim()).unwrap_or("");
                let reply = self
                    .req(json!({"type": Kind::EditMsg.name(), "room_id": room, "msg_id": id, "msg": text}))?;
                self.confirm(&reply);
            }
            "/delete" => {
                let room = self.current()?;
                let id: i64 = need(0, "/delete MSG_ID")?
                    .parse()
                    .map_err(|_| "usage: /delete MSG_ID")?;
                let reply = self.req(json!({"type": Kind::DelMsg.name(), "room_id": room, "msg_id": id}))?;
                self.confirm(&reply);
            }
            "/clear" => {
                let room = self.current()?;
                if rest != "--yes" {
                    let label = self.dir.lock().label(room);
                    return self
                        .ask_first(
                            format!("Clear all of {label}'s history, for every member?"),
                            "/clear",
                        )
                        .map(|()| true);
                }
                let reply = self.req(json!({"type": Kind::DelHist.name(), "room_id": room}))?;
                self.confirm(&reply);
            }
            "/rename" => {
                let room = self.current()?;
                if rest.is_empty() {
                    return Err("usage: /rename NAME".into());
                }
                let reply =
                    self.req(json!({"type": Kind::UpdRoomName.name(), "room_id": room, "room_name": rest}))?;
                self.confirm(&reply);
            }
            "/topic" => {
                let room = self.current()?;
                let reply =
                    self.req(json!({"type": Kind::UpdRoomDesc.name(), "room_id": room, "desc": rest}))?;
                self.confirm(&reply);
            }
            "/add" => {
                let room = self.current()?;
                let login = need(0, "/add LOGIN")?;
                let reply =
                    self.req(json!({"type": Kind::AddMember.name(), "room_id": room, "login": login}))?;
                let label = self.dir.lock().label(room);
                self.say(format!(
                    "{label} {} was added",
                    reply["login"].as_str().unwrap_or(&login)
                ));
            }
            "/leave" => {
                let room = self.current()?;
                self.req(json!({"type": Kind::LeaveRoom.name(), "room_id": room}))?;
                let label = self.dir.lock().label(room);
                self.dir.lock().forget_room(room);
                self.out.entered(0, None);
                self.say(format!("you left {label}"));
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
                self.dir.lock().users.insert(user, login);
                let reply = self.req(
                    json!({"type": Kind::SetRole.name(), "room_id": room, "user_id": user, "role": role}),
                )?;
                self.confirm(&reply);
            }
            "/friends" => {
                self.need_login()?;
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
                self.need_login()?;
                let login = need(0, "/friend LOGIN")?;
                self.req(json!({"type": Kind::AddFriend.name(), "login": login}))?;
                self.say(format!("{login} is now your friend"));
            }
            "/unfriend" => {
                self.need_login()?;
                let login = need(0, "/unfriend LOGIN")?;
                self.req(json!({"type": Kind::DelFriend.name(), "login": login}))?;
                self.say(format!("{login} is no longer your friend"));
            }
            "/dm" => {
                self.need_login()?;
                let login = need(0, "/dm LOGIN")?;
                let reply =
                    self.req(json!({"type": Kind::OpenDm.name(), "login": login.trim_start_matches('@')}))?;
                self.dir.lock().learn_room(&reply["room"]);
                let id = reply["room"]["id"].as_i64().unwrap_or(0);
                self.go(id)?;
            }
            "/upload" => self.upload(rest)?,
            "/download" => {
                let id: i64 = need(0, "/download MSG_ID [PATH]")?
                    .parse()
                    .map_err(|_| "usage: /download MSG_ID [PATH]")?;
                self.download(id, arg(1))?;
            }
            "/whois" => {
                self.need_login()?;
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
