//! The ngobrol wire format: the JSON objects its clients publish to the
//! `ngobrol` queue, and the replies and pushes they read back. Pure data:
//! no broker, no sockets.

use serde::Deserialize;
use serde_json::{json, Value};

/// The queue every ngobrol client publishes its requests to.
pub const REQUEST_QUEUE: &str = "ngobrol";

/// The durable queue a logged-in user's replies and pushes go to.
pub fn user_queue(username: &str) -> String {
    format!("ngobrol_{username}")
}

/// Whom group notices (joins and leaves) come from.
pub const NOTICE_SENDER: &str = "admin";

/// One request, by its `method`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Register {
        username: String,
        password: String,
        queue_name: String,
    },
    Login {
        username: String,
        password: String,
        queue_name: String,
    },
    AddFriend {
        username: String,
        friend: String,
        token: String,
    },
    GetFriend {
        username: String,
        token: String,
    },
    CreateGroup {
        username: String,
        group_name: String,
        token: String,
    },
    GetGroup {
        username: String,
        token: String,
    },
    AddMember {
        username: String,
        member: String,
        group_id: i64,
        token: String,
    },
    QuitGroup {
        username: String,
        group_id: i64,
        token: String,
    },
    SendClient {
        username: String,
        to: String,
        message: String,
        token: String,
    },
    SendGroup {
        username: String,
        group_id: i64,
        message: String,
        token: String,
    },
}

/// A request that could not be read, and where its error reply may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// `<method>_reply`, or `error_reply` when the method is unknown.
    pub reply_method: String,
    /// Where to answer: the request's `queue_name`, or its user's queue;
    /// `None` when neither can be told (the request is only logged).
    pub reply_to: Option<String>,
    pub why: String,
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
    queue_name: String,
}

#[derive(Deserialize)]
struct AddFriendFields {
    username_from: String,
    username_to: String,
    token: String,
}

#[derive(Deserialize)]
struct UserFields {
    username: String,
    token: String,
}

#[derive(Deserialize)]
struct CreateGroupFields {
    username: String,
    group_name: String,
    token: String,
}

#[derive(Deserialize)]
struct AddMemberFields {
    username_adder: String,
    username_to_add: String,
    group_id: i64,
    token: String,
}

#[derive(Deserialize)]
struct QuitGroupFields {
    username: String,
    group_id: i64,
    token: String,
}

#[derive(Deserialize)]
struct SendClientFields {
    username_from: String,
    username_to: String,
    message: String,
    token: String,
}

#[derive(Deserialize)]
struct SendGroupFields {
    username_from: String,
    group_id_to: i64,
    message: String,
    token: String,
}

/// The user a request speaks for, by the field its method names them in.
fn requester(method: &str, obj: &serde_json::Map<String, Value>) -> Option<String> {
    let field = match method {
        "add_friend" | "send_client" | "send_group" => "username_from",
        "add_member_to_group" => "username_adder",
        _ => "username",
    };
    obj.get(field).and_then(Value::as_str).map(str::to_owned)
}

/// Reads one request. Errors say what is wrong and where to answer.
pub fn parse(payload: &[u8]) -> Result<Request, BadRequest> {
    let unanswerable = |why: String| BadRequest {
        reply_method: "error_reply".into(),
        reply_to: None,
        why,
    };
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| unanswerable(format!("invalid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(unanswerable("a request is a JSON object".into()));
    };
    let Some(method) = obj.get("method").and_then(Value::as_str).map(str::to_owned) else {
        return Err(unanswerable("a request needs a string `method`".into()));
    };
    let reply_to = match method.as_str() {
        "register" | "login" => obj.get("queue_name").and_then(Value::as_str).map(str::to_owned),
        _ => requester(&method, &obj).map(|u| user_queue(&u)),
    };
    let bad = |why: String| BadRequest {
        reply_method: format!("{method}_reply"),
        reply_to: reply_to.clone(),
        why,
    };
    fn fields<T: serde::de::DeserializeOwned>(obj: &serde_json::Map<String, Value>) -> Result<T, String> {
        // The error names the field (`group_id_to: invalid type ...`).
        serde_path_to_error::deserialize(Value::Object(obj.clone())).map_err(|e| e.to_string())
    }
    let request = match method.as_str() {
        "register" => fields::<Credentials>(&obj).map(|c| Request::Register {
            username: c.username,
            password: c.password,
            queue_name: c.queue_name,
        }),
        "login" => fields::<Credentials>(&obj).map(|c| Request::Login {
            username: c.username,
            password: c.password,
            queue_name: c.queue_name,
        }),
        "add_friend" => fields::<AddFriendFields>(&obj).map(|f| Request::AddFriend {
            username: f.username_from,
            friend: f.username_to,
            token: f.token,
        }),
        "get_friend" => fields::<UserFields>(&obj).map(|f| Request::GetFriend {
            username: f.username,
            token: f.token,
        }),
        "create_group" => fields::<CreateGroupFields>(&obj).map(|f| Request::CreateGroup {
            username: f.username,
            group_name: f.group_name,
            token: f.token,
        }),
        "get_group" => fields::<UserFields>(&obj).map(|f| Request::GetGroup {
            username: f.username,
            token: f.token,
        }),
        "add_member_to_group" => fields::<AddMemberFields>(&obj).map(|f| Request::AddMember {
            username: f.username_adder,
            member: f.username_to_add,
            group_id: f.group_id,
            token: f.token,
        }),
        "quit_from_group" => fields::<QuitGroupFields>(&obj).map(|f| Request::QuitGroup {
            username: f.username,
            group_id: f.group_id,
            token: f.token,
        }),
        "send_client" => fields::<SendClientFields>(&obj).map(|f| Request::SendClient {
            username: f.username_from,
            to: f.username_to,
            message: f.message,
            token: f.token,
        }),
        "send_group" => fields::<SendGroupFields>(&obj).map(|f| Request::SendGroup {
            username: f.username_from,
            group_id: f.group_id_to,
            message: f.message,
            token: f.token,
        }),
        _ => return Err(bad(format!("unknown method {method:?}"))),
    };
    request.map_err(bad)
}

impl Request {
    /// The method's name, as the client sent it.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Register { .. } => "register",
            Request::Login { .. } => "login",
            Request::AddFriend { .. } => "add_friend",
            Request::GetFriend { .. } => "get_friend",
            Request::CreateGroup { .. } => "create_group",
            Request::GetGroup { .. } => "get_group",
            Request::AddMember { .. } => "add_member_to_group",
            Request::QuitGroup { .. } => "quit_from_group",
            Request::SendClient { .. } => "send_client",
            Request::SendGroup { .. } => "send_group",
        }
    }

    /// The user the request speaks for (requests of one user are served
    /// one at a time, in order).
    pub fn username(&self) -> &str {
        match self {
            Request::Register { username, .. }
            | Request::Login { username, .. }
            | Request::AddFriend { username, .. }
            | Request::GetFriend { username, .. }
            | Request::CreateGroup { username, .. }
            | Request::GetGroup { username, .. }
            | Request::AddMember { username, .. }
            | Request::QuitGroup { username, .. }
            | Request::SendClient { username, .. }
            | Request::SendGroup { username, .. } => username,
        }
    }

    /// Where the reply goes: register and login answer on the client's own
    /// queue, everything else on the user's queue.
    pub fn reply_to(&self) -> String {
        match self {
            Request::Register { queue_name, .. } | Request::Login { queue_name, .. } => queue_name.clone(),
            other => user_queue(other.username()),
        }
    }
}

/// A successful reply: `{method:"<method>_reply", status:"ok", description}`
/// and the method's own fields.
pub fn ok_reply(method: &str, description: &str, extra: Value) -> Vec<u8> {
    let mut reply = json!({"method": format!("{method}_reply"), "status": "ok", "description": description});
    if let (Value::Object(reply), Value::Object(extra)) = (&mut reply, extra) {
        reply.extend(extra);
    }
    reply.to_string().into_bytes()
}

/// A refusal: `status:"error"` and a description of what went wrong.
pub fn error_reply(reply_method: &str, description: &str) -> Vec<u8> {
    json!({"method": reply_method, "status": "error", "description": description})
        .to_string()
        .into_bytes()
}

/// A direct message pushed to its recipient.
pub fn direct_push(from: &str, message: &str) -> Vec<u8> {
    json!({"method": "send_client", "username_from": from, "message": message})
        .to_string()
        .into_bytes()
}

/// A group message pushed to a member (the sender too).
pub fn group_push(from: &str, group_id: i64, group_name: &str, message: &str) -> Vec<u8> {
    json!({
        "method": "send_group",
        "username_from": from,
        "group_id_to": group_id,
        "group_name_to": group_name,
        "message": message,
    })
    .to_string()
    .into_bytes()
}

/// The success texts ngobrol users (and their scripts) read.
pub mod text {
    pub const REGISTERED: &str = "Akun berhasil dibuat.";
    pub const LOGGED_IN: &str = "Login berhasil.";
    pub const FRIEND_ADDED: &str = "Teman berhasil ditambahkan.";
    pub const FRIENDS: &str = "Teman berhasil diambil.";
    pub const GROUP_CREATED: &str = "Group berhasil ditambahkan.";
    pub const GROUPS: &str = "Group berhasil diambil";
    pub const SENT: &str = "Message berhasil dikirim";

    pub fn member_added(username: &str) -> String {
        format!("{username} berhasil ditambahkan.")
    }

    pub fn quit(username: &str) -> String {
        format!("{username} berhasil keluar grup")
    }

    pub fn joined_notice(username: &str) -> String {
        format!("{username} telah masuk ke dalam grup.")
    }

    pub fn left_notice(username: &str) -> String {
        format!("{username} telah keluar dari grup.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_method() {
        let login =
            parse(br#"{"method":"login","username":"budi","password":"rahasia","queue_name":"amq.gen-1"}"#)
                .unwrap();
        assert_eq!(login.reply_to(), "amq.gen-1");
        assert_eq!(login.username(), "budi");
        let add = parse(
            br#"{"method":"add_member_to_group","username_adder":"budi","username_to_add":"sari","group_id":3,"token":"t"}"#,
        )
        .unwrap();
        assert_eq!(
            add,
            Request::AddMember {
                username: "budi".into(),
                member: "sari".into(),
                group_id: 3,
                token: "t".into()
            }
        );
        assert_eq!(add.reply_to(), "ngobrol_budi");
        let group = parse(
            br#"{"method":"send_group","username_from":"budi","group_id_to":3,"message":"halo","token":"t"}"#,
        )
        .unwrap();
        assert_eq!(group.method(), "send_group");
    }

    #[test]
    fn bad_requests_say_why_and_where_to_answer() {
        let e = parse(b"{not json").unwrap_err();
        assert_eq!(e.reply_to, None);
        assert!(e.why.contains("invalid JSON"));
        let e = parse(
            br#"{"method":"send_group","username_from":"budi","group_id_to":"3","message":"x","token":"t"}"#,
        )
        .unwrap_err();
        assert_eq!(e.reply_method, "send_group_reply");
        assert_eq!(e.reply_to.as_deref(), Some("ngobrol_budi"));
        assert!(e.why.contains("group_id_to"), "{}", e.why);
        let e = parse(br#"{"method":"drop_tables","username":"budi"}"#).unwrap_err();
        assert!(e.why.contains("unknown method"));
        let e = parse(br#"{"method":"login","username":"budi","password":"x"}"#).unwrap_err();
        assert_eq!(e.reply_to, None, "no queue_name: nowhere to answer");
    }

    #[test]
    fn replies_carry_method_status_and_fields() {
        let reply: Value =
            serde_json::from_slice(&ok_reply("login", text::LOGGED_IN, json!({"token": "abc"}))).unwrap();
        assert_eq!(
            reply,
            json!({"method": "login_reply", "status": "ok", "description": "Login berhasil.", "token": "abc"})
        );
        let push: Value = serde_json::from_slice(&group_push("admin", 3, "kelas", "x")).unwrap();
        assert_eq!(push["group_name_to"], "kelas");
    }
}
