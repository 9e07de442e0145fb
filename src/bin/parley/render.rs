//! What the user sees: rooms and users known so far, and every message and
//! push rendered as one readable line.

use std::collections::HashMap;

use chrono::{Local, TimeZone};
use parley::model::{MsgType, Role};
use parley::protocol::Kind;
use serde_json::Value;

/// A room as the client knows it.
#[derive(Clone, Debug, Default)]
pub struct RoomEntry {
    pub name: String,
    /// For direct-message rooms: the other user's login.
    pub peer: Option<String>,
    /// Messages by others after the read marker.
    pub unread: i64,
    /// Of those, how many name the user (`@login`).
    pub mentions: i64,
}

/// Rooms, users and read positions learnt from the server.
#[derive(Default)]
pub struct Directory {
    pub rooms: HashMap<i64, RoomEntry>,
    pub users: HashMap<i64, String>,
    pub current: Option<i64>,
    /// The newest message id seen in each room (to catch up after a reconnect).
    pub last_seen: HashMap<i64, i64>,
    pub me: Option<String>,
    /// Read markers to send: the newest message shown in each room.
    pub to_mark: HashMap<i64, i64>,
    /// The user's own reactions, by message (so /react can toggle).
    pub my_reactions: HashMap<i64, Vec<String>>,
    /// Who is typing where, and until when.
    pub typing: HashMap<i64, (String, std::time::Instant)>,
}

impl Directory {
    /// `#name` for rooms, `@peer` for direct messages, `#id` if unknown.
    pub fn label(&self, room_id: i64) -> String {
        match self.rooms.get(&room_id) {
            Some(RoomEntry { peer: Some(peer), .. }) => format!("@{peer}"),
            Some(room) => format!("#{}", room.name),
            None => format!("#{room_id}"),
        }
    }

    /// Remembers a room object (RQ_NEW_ROOM, RQ_JOIN_ROOM, room lists).
    pub fn learn_room(&mut self, room: &Value) {
        let Some(id) = room["id"].as_i64() else { return };
        let known = self.rooms.get(&id).cloned().unwrap_or_default();
        let entry = RoomEntry {
            name: room["name"].as_str().unwrap_or_default().to_owned(),
            peer: room["peer"]["login"].as_str().map(str::to_owned).or(known.peer),
            unread: room["unread"].as_i64().unwrap_or(known.unread),
            mentions: room["mentions"].as_i64().unwrap_or(known.mentions),
        };
        if let (Some(uid), Some(login)) = (room["peer"]["user_id"].as_i64(), &entry.peer) {
            self.users.insert(uid, login.clone());
        }
        self.rooms.insert(id, entry);
    }

    /// Shown: the room's messages up to `msg_id` are read (sent in batches).
    pub fn shown(&mut self, room_id: i64, msg_id: i64) {
        let marker = self.to_mark.entry(room_id).or_insert(0);
        *marker = (*marker).max(msg_id);
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.unread = 0;
            room.mentions = 0;
        }
    }

    /// Whether a text names this user as `@login`.
    pub fn mentions_me(&self, text: &str) -> bool {
        let Some(me) = &self.me else { return false };
        text.match_indices('@').any(|(at, _)| {
            let rest = &text[at + 1..];
            rest.len() >= me.len()
                && rest.is_char_boundary(me.len())
                && rest[..me.len()].eq_ignore_ascii_case(me)
                && !rest[me.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        })
    }

    /// Leaves a room: forgets it, and it is current no more.
    pub fn forget_room(&mut self, room_id: i64) {
        self.rooms.remove(&room_id);
        if self.current == Some(room_id) {
            self.current = None;
        }
    }

    fn user(&self, user_id: &Value) -> String {
        user_id
            .as_i64()
            .and_then(|id| self.users.get(&id).cloned())
            .unwrap_or_else(|| format!("user {user_id}"))
    }

    /// Finds a room the user is in by id, name, or `@login` for a DM.
    pub fn find_room(&self, what: &str) -> Option<i64> {
        if let Ok(id) = what.parse::<i64>() {
            return self.rooms.contains_key(&id).then_some(id);
        }
        let what = what.trim_start_matches('#');
        if let Some(peer) = what.strip_prefix('@') {
            return self
                .rooms
                .iter()
                .find(|(_, r)| r.peer.as_deref() == Some(peer))
                .map(|(id, _)| *id);
        }
        let mut matches: Vec<i64> = self
            .rooms
            .iter()
            .filter(|(_, r)| r.peer.is_none() && r.name.eq_ignore_ascii_case(what))
            .map(|(id, _)| *id)
            .collect();
        matches.sort();
        matches.first().copied()
    }
}

/// The first line of a text, shortened to 60 characters.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 60 {
        format!("{}…", line.chars().take(60).collect::<String>())
    } else {
        line.to_owned()
    }
}

fn clock(ms: &Value) -> String {
    ms.as_i64()
        .and_then(|ms| Local.timestamp_millis_opt(ms).single())
        .map_or_else(|| "--:--".into(), |t| t.format("%H:%M").to_string())
}

fn size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// One message object as a line: `[HH:MM] #room login: text`.
pub fn message_line(dir: &mut Directory, m: &Value) -> String {
    let room_id = m["room_id"].as_i64().unwrap_or(0);
    let id = m["message_id"].as_i64().unwrap_or(0);
    if let (Some(uid), Some(login)) = (m["user_id"].as_i64(), m["login"].as_str()) {
        dir.users.insert(uid, login.to_owned());
    }
    let seen = dir.last_seen.entry(room_id).or_insert(0);
    *seen = (*seen).max(id);
    if let Some(mine) = m["my_reactions"].as_array() {
        let mine: Vec<String> = mine
            .iter()
            .filter_map(|e| e.as_str().map(str::to_owned))
            .collect();
        dir.my_reactions.insert(id, mine);
    }
    // A reply shows what it answers on a line of its own above it.
    let quoted = match (&m["reply_preview"]["login"], &m["reply_preview"]["message"]) {
        (Value::String(who), Value::String(what)) => format!("  ┌ {who}: {}\n", first_line(what)),
        _ if m["reply_to"].as_i64().unwrap_or(0) > 0 => format!("  ┌ (message #{} is gone)\n", m["reply_to"]),
        _ => String::new(),
    };
    let reactions: String = m["reactions"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| format!("  {} {}", r["emoji"].as_str().unwrap_or("?"), r["count"]))
                .collect()
        })
        .unwrap_or_default();
    let login = m["login"].as_str().unwrap_or("?");
    let label = dir.label(room_id);
    let time = clock(&m["date"]);
    let edited = if m["edited"] == true { " (edited)" } else { "" };
    match m["msg_type"].as_str().and_then(MsgType::from_name) {
        Some(MsgType::File) => format!(
            "[{time}] {label} {login} sent a file: {} ({}); /download {id}",
            m["file_name"].as_str().unwrap_or("?"),
            size(m["file_size"].as_i64().unwrap_or(0))
        ),
        Some(MsgType::Sticker) => format!(
            "{quoted}[{time}] {label} {login}: [sticker {}]{edited}  (#{id}){reactions}",
            m["message"].as_str().unwrap_or("")
        ),
        _ => {
            let text = m["message"].as_str().unwrap_or("");
            let mention = if login != dir.me.as_deref().unwrap_or_default() && dir.mentions_me(text) {
                "  <- you"
            } else {
                ""
            };
            format!("{quoted}[{time}] {label} {login}: {text}{edited}  (#{id}){reactions}{mention}")
        }
    }
}

/// A push as a line, or `None` for pushes not worth a line.
pub fn push_line(dir: &mut Directory, p: &Value) -> Option<String> {
    let room = |dir: &Directory| dir.label(p["room_id"].as_i64().unwrap_or(0));
    let kind = p["type"].as_str().and_then(Kind::from_name)?;
    Some(match kind {
        Kind::Msg => {
            let room_id = p["room_id"].as_i64().unwrap_or(0);
            let id = p["message_id"].as_i64().unwrap_or(0);
            let mine = p["login"].as_str().is_some_and(|l| dir.me.as_deref() == Some(l));
            let text = p["message"].as_str().unwrap_or_default();
            if dir.current == Some(room_id) {
                dir.shown(room_id, id);
            } else if !mine {
                let mentioned = dir.mentions_me(text);
                if let Some(room) = dir.rooms.get_mut(&room_id) {
                    room.unread += 1;
                    room.mentions += i64::from(mentioned);
                }
            }
            message_line(dir, p)
        }
        Kind::EditMsg => format!(
            "{} message #{} edited: {}",
            room(dir),
            p["msg_id"],
            p["msg"].as_str().unwrap_or("")
        ),
        Kind::DelMsg => format!("{} message #{} deleted", room(dir), p["msg_id"]),
        Kind::DelHist => format!("{} history cleared", room(dir)),
        Kind::NewMember => {
            if let (Some(uid), Some(login)) = (p["user_id"].as_i64(), p["login"].as_str()) {
                dir.users.insert(uid, login.to_owned());
            }
            // One's own join is told by its own answer.
            if dir.me.as_deref() == p["login"].as_str() {
                return None;
            }
            format!("{} {} joined", room(dir), p["login"].as_str().unwrap_or("?"))
        }
        Kind::LeaveRoom => {
            if dir.me.as_deref() == p["login"].as_str() {
                let line = format!("you left {}", room(dir));
                if let Some(id) = p["room_id"].as_i64() {
                    dir.forget_room(id);
                }
                return Some(line);
            }
            format!("{} {} left", room(dir), p["login"].as_str().unwrap_or("?"))
        }
        Kind::BanMember => {
            let who = dir.user(&p["user_id"]);
            if dir.me.as_deref() == Some(who.as_str()) {
                let line = format!("you were banned from {}", room(dir));
                if let Some(id) = p["room_id"].as_i64() {
                    dir.forget_room(id);
                }
                return Some(line);
            }
            format!("{} {who} was banned", room(dir))
        }
        Kind::UnbanMember => format!("{} {} was unbanned", room(dir), dir.user(&p["user_id"])),
        Kind::SetRole => format!(
            "{} {} is now {}",
            room(dir),
            dir.user(&p["user_id"]),
            role_name(p["role"].as_str().unwrap_or(""))
        ),
        Kind::JoinRoom | Kind::NewRoom | Kind::OpenDm => {
            // Someone else put this user in a room (or another of their devices did).
            let room = if kind == Kind::OpenDm { &p["room"] } else { p };
            dir.learn_room(room);
            let id = room["id"].as_i64().unwrap_or(0);
            let label = dir.label(id);
            match room["peer"]["login"].as_str() {
                Some(peer) if kind == Kind::OpenDm => {
                    format!("your direct conversation with {peer}: /go {label}")
                }
                Some(peer) => format!("{peer} opened a direct conversation with you: /go {label}"),
                None if kind == Kind::NewRoom => format!("{label} was created: /go {label}"),
                None => format!("you were added to {label}: /go {label}"),
            }
        }
        Kind::DelRoom => {
            let line = format!("{} was deleted", room(dir));
            if let Some(id) = p["room_id"].as_i64() {
                dir.forget_room(id);
            }
            line
        }
        Kind::UpdRoomName => {
            let old = room(dir);
            if let (Some(id), Some(name)) = (p["room_id"].as_i64(), p["room_name"].as_str()) {
                if let Some(r) = dir.rooms.get_mut(&id) {
                    r.name = name.to_owned();
                }
            }
            format!("{old} is now called {}", room(dir))
        }
        Kind::UpdRoomDesc => format!("{} topic: {}", room(dir), p["desc"].as_str().unwrap_or("")),
        Kind::React => {
            let (msg, emoji) = (
                p["msg_id"].as_i64().unwrap_or(0),
                p["emoji"].as_str().unwrap_or("?"),
            );
            let who = p["login"].as_str().unwrap_or("?");
            let on = p["on"] != false;
            if dir.me.as_deref() == Some(who) {
                let mine = dir.my_reactions.entry(msg).or_default();
                mine.retain(|e| e != emoji);
                if on {
                    mine.push(emoji.to_owned());
                }
            }
            if on {
                format!("{} {who} reacted {emoji} to #{msg}", room(dir))
            } else {
                format!("{} {who} took back {emoji} from #{msg}", room(dir))
            }
        }
        Kind::Pin => {
            let who = dir.user(&p["user_id"]);
            let what = if p["pinned"] == true { "pinned" } else { "unpinned" };
            format!("{} {who} {what} #{}", room(dir), p["msg_id"])
        }
        Kind::Typing => {
            if let (Some(room_id), Some(login)) = (p["room_id"].as_i64(), p["login"].as_str()) {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
                dir.typing.insert(room_id, (login.to_owned(), until));
            }
            // Shown in the status line of the full-screen view, not as a line.
            return None;
        }
        Kind::AddFriend => format!("{} is now your friend", p["login"].as_str().unwrap_or("?")),
        Kind::DelFriend => format!("{} is no longer your friend", p["login"].as_str().unwrap_or("?")),
        Kind::Presence => format!(
            "{} is {}",
            dir.user(&p["user_id"]),
            if p["online"] == true { "online" } else { "offline" }
        ),
        Kind::LogOut => {
            dir.me = None;
            dir.current = None;
            "this session was logged out: /login LOGIN".into()
        }
        Kind::ErrorMsg => format!("error: {}", p["msg"].as_str().unwrap_or("")),
        Kind::GetNewMsgs => {
            // Messages missed while reconnecting, oldest first.
            let mut lines: Vec<String> = Vec::new();
            if let Some(msgs) = p["messages"].as_array() {
                for m in msgs.iter().rev() {
                    lines.push(message_line(dir, m));
                }
            }
            if lines.is_empty() {
                return None;
            }
            lines.join("\n")
        }
        _ => return None,
    })
}

pub fn role_name(role: &str) -> &str {
    match Role::from_name(role) {
        Some(Role::Owner) => "owner",
        Some(Role::Admin) => "admin",
        Some(Role::Moderator) => "moderator",
        Some(Role::Simple) => "member",
        Some(Role::Banned) => "banned",
        None => role,
    }
}
