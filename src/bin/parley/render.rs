//! What the user sees: rooms and users known so far, and every message and
//! push rendered as one readable line.

use std::collections::HashMap;

use chrono::{Local, TimeZone};
use parley::model::{MsgType, Role};
use parley::protocol::Kind;
use serde_json::Value;

/// A room as the client knows it.
#[derive(Clone, Debug)]
pub struct RoomEntry {
    pub name: String,
    /// For direct-message rooms: the other user's login.
    pub peer: Option<String>,
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
        let entry = RoomEntry {
            name: room["name"].as_str().unwrap_or_default().to_owned(),
            peer: room["peer"]["login"].as_str().map(str::to_owned),
        };
        if let (Some(uid), Some(login)) = (room["peer"]["user_id"].as_i64(), &entry.peer) {
            self.users.insert(uid, login.clone());
        }
        self.rooms.insert(id, entry);
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
            "[{time}] {label} {login}: [sticker {}]{edited}  (#{id})",
            m["message"].as_str().unwrap_or("")
        ),
        _ => format!(
            "[{time}] {label} {login}: {}{edited}  (#{id})",
            m["message"].as_str().unwrap_or("")
        ),
    }
}

/// A push as a line, or `None` for pushes not worth a line.
pub fn push_line(dir: &mut Directory, p: &Value) -> Option<String> {
    let room = |dir: &Directory| dir.label(p["room_id"].as_i64().unwrap_or(0));
    let kind = p["type"].as_str().and_then(Kind::from_name)?;
    Some(match kind {
        Kind::Msg => message_line(dir, p),
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
            format!("{} {} joined", room(dir), p["login"].as_str().unwrap_or("?"))
        }
        Kind::LeaveRoom => {
            let line = format!("{} {} left", room(dir), p["login"].as_str().unwrap_or("?"));
            if dir.me.as_deref() == p["login"].as_str() {
                if let Some(id) = p["room_id"].as_i64() {
                    dir.rooms.remove(&id);
                }
            }
            line
        }
        Kind::BanMember => format!("{} {} was banned", room(dir), dir.user(&p["user_id"])),
        Kind::UnbanMember => format!("{} {} was unbanned", room(dir), dir.user(&p["user_id"])),
        Kind::SetRole => format!(
            "{} {} is now {}",
            room(dir),
            dir.user(&p["user_id"]),
            role_name(p["role"].as_str().unwrap_or(""))
        ),
        Kind::JoinRoom | Kind::NewRoom => {
            dir.learn_room(p);
            format!("you are in {} now", dir.label(p["id"].as_i64().unwrap_or(0)))
        }
        Kind::DelRoom => {
            let line = format!("{} was deleted", room(dir));
            if let Some(id) = p["room_id"].as_i64() {
                dir.rooms.remove(&id);
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
        Kind::AddFriend => format!("{} is now your friend", p["login"].as_str().unwrap_or("?")),
        Kind::DelFriend => format!("{} is no longer your friend", p["login"].as_str().unwrap_or("?")),
        Kind::Presence => format!(
            "{} is {}",
            dir.user(&p["user_id"]),
            if p["online"] == true { "online" } else { "offline" }
        ),
        Kind::LogOut => "this session was logged out".into(),
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
