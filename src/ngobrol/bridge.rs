//! Each ngobrol method as Parley requests, and Parley's pushes back as
//! ngobrol pushes. Users are Parley accounts; groups are private rooms
//! (group_id = room id); a direct message goes to the friends' DM room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use smol::channel::Receiver;

use super::session::Session;
use super::wire::{self, text, Request};
use super::Outbox;
use crate::client::password_digest;
use crate::compat;
use crate::local::LocalConnector;

/// A room as a bridged user knows it.
#[derive(Clone, Debug)]
struct RoomInfo {
    name: String,
    direct: bool,
}

/// A user logged in through the bridge: the Parley connection their
/// requests go through, and the rooms they are in.
pub struct UserSession {
    username: String,
    token: String,
    parley: Session,
    rooms: Mutex<HashMap<i64, RoomInfo>>,
}

/// What the bridge shares between its users' tasks.
pub struct Bridge {
    connector: LocalConnector,
    outbox: Outbox,
    /// One session per username: a new log-in replaces (and revokes) the old.
    sessions: Mutex<HashMap<String, Arc<UserSession>>>,
}

/// A refusal to report: the description the client prints.
type Refusal = String;

/// The text of a Parley error reply, or `None` if `reply` is not one.
fn parley_error(reply: &Value) -> Option<String> {
    (reply["type"] == "RQ_ERROR_MSG").then(|| reply["msg"].as_str().unwrap_or("refused").to_owned())
}

/// `Ok(reply)` unless the server refused, in which case its reason.
fn accepted(reply: std::io::Result<Value>) -> Result<Value, Refusal> {
    let reply = reply.map_err(|e| format!("the server could not be reached: {e}"))?;
    match parley_error(&reply) {
        Some(why) => Err(why),
        None => Ok(reply),
    }
}

/// What a bridged user reads for a message of another kind than text.
fn shown_text(msg: &Value) -> String {
    let text = msg["message"].as_str().unwrap_or_default();
    match msg["msg_type"].as_str() {
        Some("DB_FILE_MSG") | Some("DB_FILE_TEXT_MSG") => {
            format!("[file] {}", msg["file_name"].as_str().unwrap_or(text))
        }
        Some("DB_STICKER") => format!("[sticker] {text}"),
        _ => text.to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Bridge {
    pub fn new(connector: LocalConnector, outbox: Outbox) -> Bridge {
        Bridge {
            connector,
            outbox,
            sessions: Mutex::default(),
        }
    }

    /// Serves one request and publishes its reply.
    pub async fn serve(self: &Arc<Self>, request: Request) {
        let method = request.method();
        let reply_to = request.reply_to();
        let reply = match self.answer(&request).await {
            Ok((description, extra)) => wire::ok_reply(method, &description, extra),
            Err(why) => {
                log::debug!("ngobrol: {method} for {} refused: {why}", request.username());
                wire::error_reply(&format!("{method}_reply"), &why)
            }
        };
        self.outbox.publish(reply_to, reply).await;
    }

    async fn answer(self: &Arc<Self>, request: &Request) -> Result<(String, Value), Refusal> {
        let none = || json!({});
        match request {
            Request::Register {
                username, password, ..
            } => {
                let (parley, _) = Session::open(&self.connector).map_err(|e| e.to_string())?;
                let signed = accepted(
                    parley
                        .request(json!({"type": "RQ_SIGN_UP", "login": username, "pass": password_digest(password), "name": username, "desc": ""}))
                        .await,
                )?;
                // ngobrol's register does not log in: the token goes at once.
                if let Some(token) = signed["token"].as_str() {
                    let _ = parley
                        .request(json!({"type": "RQ_LOG_OUT", "token": token}))
                        .await;
                }
                Ok((text::REGISTERED.into(), none()))
            }
            Request::Login {
                username, password, ..
            } => {
                let (parley, pushes) = Session::open(&self.connector).map_err(|e| e.to_string())?;
                let logged = accepted(
                    parley
                        .request(json!({"type": "RQ_LOG_IN", "login": username, "pass": password_digest(password)}))
                        .await,
                )?;
                let token = logged["token"].as_str().unwrap_or_default().to_owned();
                let login = logged["login"].as_str().unwrap_or(username).to_owned();
                // One token per ngobrol user, as the original kept: the previous goes.
                if let Some(old) = self.install(&login, &token, parley, pushes).await? {
                    let _ = old
                        .parley
                        .request(json!({"type": "RQ_LOG_OUT", "token": old.token}))
                        .await;
                    old.parley.close();
                }
                // The client consumes its queue as soon as it reads the reply.
                self.outbox.declare(wire::user_queue(username)).await;
                Ok((text::LOGGED_IN.into(), json!({ "token": token })))
            }
            Request::AddFriend {
                username,
                friend,
                token,
            } => {
                let user = self.user(username, token).await?;
                accepted(
                    user.parley
                        .request(json!({"type": "RQ_ADD_FRIEND", "login": friend}))
                        .await,
                )?;
                Ok((text::FRIEND_ADDED.into(), none()))
            }
            Request::GetFriend { username, token } => {
                let user = self.user(username, token).await?;
                let reply = accepted(user.parley.request(json!({"type": "RQ_GET_FRIENDS"})).await)?;
                let usernames: Vec<&str> = reply["friends"]
                    .as_array()
                    .map(|fs| fs.iter().filter_map(|f| f["login"].as_str()).collect())
                    .unwrap_or_default();
                Ok((text::FRIENDS.into(), json!({ "usernames": usernames })))
            }
            Request::CreateGroup {
                username,
                group_name,
                token,
            } => {
                let user = self.user(username, token).await?;
                let room = accepted(
                    user.parley
                        .request(json!({"type": "RQ_NEW_ROOM", "name": group_name, "desc": "", "room_type": "DB_PRIVAT_CHAT"}))
                        .await,
                )?;
                user.learn_room(&room);
                Ok((text::GROUP_CREATED.into(), none()))
            }
            Request::GetGroup { username, token } => {
                let user = self.user(username, token).await?;
                user.refresh_rooms().await?;
                let mut groups: Vec<(i64, String)> = lock(&user.rooms)
                    .iter()
                    .filter(|(_, r)| !r.direct)
                    .map(|(id, r)| (*id, r.name.clone()))
                    .collect();
                groups.sort();
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(id, name)| json!({"group_id": id, "group_name": name}))
                    .collect();
                Ok((text::GROUPS.into(), json!({ "groups": groups })))
            }
            Request::AddMember {
                username,
                member,
                group_id,
                token,
            } => {
                let user = self.user(username, token).await?;
                let group_name = user.group(*group_id).await?;
                let added = accepted(
                    user.parley
                        .request(json!({"type": "RQ_ADD_MEMBER", "room_id": group_id, "login": member}))
                        .await,
                )?;
                // The others hear of it from their pushes; the adder's copy was this reply.
                let who = added["login"].as_str().unwrap_or(member);
                let notice = wire::group_push(
                    wire::NOTICE_SENDER,
                    *group_id,
                    &group_name,
                    &text::joined_notice(who),
                );
                self.outbox
                    .publish(wire::user_queue(&user.username), notice)
                    .await;
                Ok((text::member_added(member), none()))
            }
            Request::QuitGroup {
                username,
                group_id,
                token,
            } => {
                let user = self.user(username, token).await?;
                user.group(*group_id).await?;
                accepted(
                    user.parley
                        .request(json!({"type": "RQ_LEAVE_ROOM", "room_id": group_id}))
                        .await,
                )?;
                lock(&user.rooms).remove(group_id);
                Ok((text::quit(username), none()))
            }
            Request::SendClient {
                username,
                to,
                message,
                token,
            } => {
                let user = self.user(username, token).await?;
                let opened = accepted(
                    user.parley
                        .request(json!({"type": "RQ_OPEN_DM", "login": to}))
                        .await,
                )?;
                user.learn_room(&opened["room"]);
                let room_id = opened["room"]["id"]
                    .as_i64()
                    .ok_or("the server opened no conversation")?;
                accepted(
                    user.parley
                        .request(json!({"type": "RQ_MSG", "room_id": room_id, "message": message}))
                        .await,
                )?;
                Ok((text::SENT.into(), none()))
            }
            Request::SendGroup {
                username,
                group_id,
                message,
                token,
            } => {
                let user = self.user(username, token).await?;
                let group_name = user.group(*group_id).await?;
                let sent = accepted(
                    user.parley
                        .request(json!({"type": "RQ_MSG", "room_id": group_id, "message": message}))
                        .await,
                )?;
                // The sender sees their own group message, as ngobrol users expect.
                let echo = wire::group_push(&user.username, *group_id, &group_name, &shown_text(&sent));
                self.outbox.publish(wire::user_queue(&user.username), echo).await;
                Ok((text::SENT.into(), none()))
            }
        }
    }

    /// The session a request with this token speaks through: the user's
    /// current one, or one resumed from the token (after a restart of
    /// `parleyd`, say). The token must be well formed and name the user.
    async fn user(self: &Arc<Self>, username: &str, token: &str) -> Result<Arc<UserSession>, Refusal> {
        let names_user =
            compat::split_token(token).is_some_and(|(_, login)| login.eq_ignore_ascii_case(username));
        if !names_user {
            return Err(format!("that token is not {username}'s; log in again"));
        }
        if let Some(user) = lock(&self.sessions).get(&username.to_lowercase()) {
            if constant_time_eq(user.token.as_bytes(), token.as_bytes()) {
                return Ok(user.clone());
            }
        }
        let (parley, pushes) = Session::open(&self.connector).map_err(|e| e.to_string())?;
        let resumed = parley
            .request(json!({"type": "RQ_TOKEN", "token": token}))
            .await
            .map_err(|e| e.to_string())?;
        if parley_error(&resumed).is_some() {
            return Err("the token is not valid (it may have expired); log in again".into());
        }
        let login = resumed["login"].as_str().unwrap_or(username).to_owned();
        if let Some(old) = self.install(&login, token, parley, pushes).await? {
            // Its pushes would reach the same queue twice.
            old.parley.close();
        }
        lock(&self.sessions)
            .get(&login.to_lowercase())
            .cloned()
            .ok_or_else(|| "the session ended at once; log in again".into())
    }

    /// Makes a logged-in connection the user's session, learns their rooms
    /// and starts passing their pushes on; returns the session it replaced.
    async fn install(
        self: &Arc<Self>,
        login: &str,
        token: &str,
        parley: Session,
        pushes: Receiver<Value>,
    ) -> Result<Option<Arc<UserSession>>, Refusal> {
        let user = Arc::new(UserSession {
            username: login.to_owned(),
            token: token.to_owned(),
            parley,
            rooms: Mutex::default(),
        });
        user.refresh_rooms().await?;
        let old = lock(&self.sessions).insert(login.to_lowercase(), user.clone());
        smol::spawn(pass_pushes_on(self.clone(), user, pushes)).detach();
        Ok(old)
    }

    /// Publishes outside a request (an unreadable request's error reply).
    pub async fn outbox_publish(&self, queue: String, body: Vec<u8>) {
        self.outbox.publish(queue, body).await;
    }

    /// Forgets a session whose connection ended (if it is still the user's).
    fn forget(&self, user: &Arc<UserSession>) {
        let mut sessions = lock(&self.sessions);
        let key = user.username.to_lowercase();
        if sessions.get(&key).is_some_and(|s| Arc::ptr_eq(s, user)) {
            sessions.remove(&key);
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl UserSession {
    /// Learns a room from a room object (`RQ_NEW_ROOM`, `RQ_JOIN_ROOM`, ...).
    fn learn_room(&self, room: &Value) {
        if let Some(id) = room["id"].as_i64() {
            let info = RoomInfo {
                name: room["name"].as_str().unwrap_or_default().to_owned(),
                direct: room["room_type"] == "DB_LS_CHAT",
            };
            lock(&self.rooms).insert(id, info);
        }
    }

    async fn refresh_rooms(&self) -> Result<(), Refusal> {
        let listed = accepted(
            self.parley
                .request(json!({"type": "RQ_GET_ROOMS", "date": 0}))
                .await,
        )?;
        let mut rooms = HashMap::new();
        for room in listed["rooms"].as_array().into_iter().flatten() {
            if let Some(id) = room["id"].as_i64() {
                let info = RoomInfo {
                    name: room["name"].as_str().unwrap_or_default().to_owned(),
                    direct: room["room_type"] == "DB_LS_CHAT",
                };
                rooms.insert(id, info);
            }
        }
        *lock(&self.rooms) = rooms;
        Ok(())
    }

    /// The room, looked up again if not known yet.
    async fn room(&self, room_id: i64) -> Option<RoomInfo> {
        if let Some(room) = lock(&self.rooms).get(&room_id).cloned() {
            return Some(room);
        }
        self.refresh_rooms().await.ok()?;
        lock(&self.rooms).get(&room_id).cloned()
    }

    /// The name of a group the user is in; refuses anything else.
    async fn group(&self, group_id: i64) -> Result<String, Refusal> {
        match self.room(group_id).await {
            Some(room) if !room.direct => Ok(room.name),
            _ => Err(format!("you are not in a group with id {group_id}")),
        }
    }
}

/// Passes a bridged user's pushes on to their queue, as ngobrol pushes,
/// until their connection ends.
async fn pass_pushes_on(bridge: Arc<Bridge>, user: Arc<UserSession>, pushes: Receiver<Value>) {
    let queue = wire::user_queue(&user.username);
    while let Ok(push) = pushes.recv().await {
        let room_id = push["room_id"].as_i64().unwrap_or_default();
        let out = match push["type"].as_str().unwrap_or_default() {
            "RQ_MSG" => {
                let from = push["login"].as_str().unwrap_or_default();
                match user.room(room_id).await {
                    Some(room) if room.direct => {
                        // One's own direct messages (from another device) are not echoed.
                        (from != user.username).then(|| wire::direct_push(from, &shown_text(&push)))
                    }
                    Some(room) => Some(wire::group_push(from, room_id, &room.name, &shown_text(&push))),
                    None => None,
                }
            }
            "RQ_JOIN_ROOM" => {
                // Added to a group by someone else.
                user.learn_room(&push);
                None
            }
            "RQ_NEW_MEMBER" | "RQ_LEAVE_ROOM" => {
                let who = push["login"].as_str().unwrap_or_default();
                let notice = if push["type"] == "RQ_NEW_MEMBER" {
                    text::joined_notice(who)
                } else {
                    text::left_notice(who)
                };
                match user.room(room_id).await {
                    Some(room) if !room.direct => Some(wire::group_push(
                        wire::NOTICE_SENDER,
                        room_id,
                        &room.name,
                        &notice,
                    )),
                    _ => None,
                }
            }
            "RQ_UPD_ROOM_NAME" => {
                if let Some(room) = lock(&user.rooms).get_mut(&room_id) {
                    room.name = push["room_name"].as_str().unwrap_or_default().to_owned();
                }
                None
            }
            "RQ_DEL_ROOM" => {
                lock(&user.rooms).remove(&room_id);
                None
            }
            _ => None,
        };
        if let Some(out) = out {
            bridge.outbox.publish(queue.clone(), out).await;
        }
    }
    log::debug!("ngobrol: {}'s connection ended", user.username);
    bridge.forget(&user);
}
