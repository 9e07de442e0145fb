//! The wire protocol: message kinds and codes, request decoding, reply encoding.
//!
//! No sockets and no SQL here. A line becomes a typed [`Request`] through
//! [`decode`]; a reply or push is an [`Outgoing`] (a kind plus a typed body)
//! that [`Outgoing::encode`] writes in a connection's [`Dialect`].
//!
//! Requests cannot be decoded by serde's tagged enums alone: `type` is a name
//! or a code, and old clients send `type` twice in a new-room request. So the
//! line is first read into its `type` values plus the other fields, the kind
//! is looked up in one table ([`Kind`]), and the fields are then deserialized
//! into that kind's own struct, with errors that name the field.

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

pub use crate::compat::Dialect;
use crate::model::{MsgType, Role, RoomType};

/// Declares a table of (variant, code, wire name) and the lookups both ways.
macro_rules! wire_table {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub fn code(self) -> i64 { match self { $($name::$variant => $code),* } }
            pub fn name(self) -> &'static str { match self { $($name::$variant => $wire),* } }
            pub fn from_code(code: i64) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
            pub fn from_name(name: &str) -> Option<$name> {
                match name { $($wire => Some($name::$variant),)* _ => None }
            }
        }
    };
}

wire_table!(
    /// Every request and push type, with its integer code and its name.
    Kind {
        LogIn = 0 "RQ_LOG_IN",
        SignUp = 1 "RQ_SIGN_UP",
        Token = 2 "RQ_TOKEN",
        Msg = 3 "RQ_MSG",
        EditMsg = 4 "RQ_EDIT_MSG",
        DelMsg = 5 "RQ_DEL_MSG",
        DelHist = 6 "RQ_DEL_HIST",
        GetNewMsgs = 7 "RQ_GET_NEW_MSGS",
        SearchMsgs = 8 "RQ_SEARCH_MSGS",
        ErrorMsg = 9 "RQ_ERROR_MSG",
        OldMsgs = 10 "RQ_OLD_MSGS",
        GetRooms = 11 "RQ_GET_ROOMS",
        NewRoom = 12 "RQ_NEW_ROOM",
        DelRoom = 13 "RQ_DEL_ROOM",
        JoinRoom = 14 "RQ_JOIN_ROOM",
        UpdRoomName = 15 "RQ_UPD_ROOM_NAME",
        UpdRoomDesc = 16 "RQ_UPD_ROOM_DESC",
        UpdRoomPowr = 17 "RQ_UPD_ROOM_POWR",
        SearchCh = 18 "RQ_SEARCH_CH",
        GetMembers = 19 "RQ_GET_MEMBERS",
        MemberInfo = 20 "RQ_MEMBER_INFO",
        NewMember = 21 "RQ_NEW_MEMBER",
        BanMember = 22 "RQ_BAN_MEMBER",
        UpdUserDesc = 23 "RQ_UPD_USER_DESC",
        UploadFile = 24 "RQ_UPLOAD_FILE",
        DownloadFile = 25 "RQ_DOWNLOAD_FILE",
        LogOut = 26 "RQ_LOG_OUT",
        ReadyRead = 27 "RQ_READY_READ",
        AddFriend = 100 "RQ_ADD_FRIEND",
        DelFriend = 101 "RQ_DEL_FRIEND",
        GetFriends = 102 "RQ_GET_FRIENDS",
        OpenDm = 103 "RQ_OPEN_DM",
        AddMember = 104 "RQ_ADD_MEMBER",
        LeaveRoom = 105 "RQ_LEAVE_ROOM",
        UpdUserName = 106 "RQ_UPD_USER_NAME",
        SetRole = 107 "RQ_SET_ROLE",
        UnbanMember = 108 "RQ_UNBAN_MEMBER",
        MarkRead = 109 "RQ_MARK_READ",
        Presence = 110 "RQ_PRESENCE",
        Ping = 111 "RQ_PING",
    }
);

impl Kind {
    /// Looks a request name up, accepting the documented aliases.
    pub fn from_request_name(name: &str) -> Option<Kind> {
        match name {
            "RQ_SEARCH_MSG" => Some(Kind::SearchMsgs),
            other => Kind::from_name(other),
        }
    }
}

wire_table!(
    /// The `error_code` of an `RQ_ERROR_MSG`.
    ErrorCode {
        AuthData = 0 "ER_AUTH_DATA",
        UserExists = 1 "ER_USER_EXST",
        ClientExists = 2 "ER_CLI_EXST",
        BadRequest = 100 "ER_BAD_REQUEST",
        Unauthorized = 101 "ER_UNAUTHORIZED",
        Forbidden = 102 "ER_FORBIDDEN",
        NotFound = 103 "ER_NOT_FOUND",
        TooLarge = 104 "ER_TOO_LARGE",
        RateLimited = 105 "ER_RATE_LIMITED",
        Banned = 106 "ER_BANNED",
        Busy = 107 "ER_BUSY",
        Internal = 108 "ER_INTERNAL",
        Conflict = 109 "ER_CONFLICT",
    }
);

/// An enumeration that travels as a name or as its integer code.
pub trait WireEnum: Sized + Copy + 'static {
    /// What the field holds, for error messages.
    const WHAT: &'static str;
    fn wire_name(self) -> &'static str;
    fn from_wire_name(name: &str) -> Option<Self>;
    fn wire_code(self) -> i64;
    fn from_wire_code(code: i64) -> Option<Self>;
}

macro_rules! wire_enum_impl {
    ($ty:ty, $what:literal, $names:expr) => {
        impl WireEnum for $ty {
            const WHAT: &'static str = $what;
            fn wire_name(self) -> &'static str {
                $names
                    .iter()
                    .find(|(v, _)| *v == self)
                    .map(|(_, n)| *n)
                    .unwrap_or("")
            }
            fn from_wire_name(name: &str) -> Option<Self> {
                $names.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
            }
            fn wire_code(self) -> i64 {
                self.code()
            }
            fn from_wire_code(code: i64) -> Option<Self> {
                Self::from_code(code)
            }
        }
    };
}

const ROOM_TYPE_NAMES: [(RoomType, &str); 3] = [
    (RoomType::Private, "DB_PRIVAT_CHAT"),
    (RoomType::Global, "DB_GLOBAL_CHAT"),
    (RoomType::Direct, "DB_LS_CHAT"),
];
const MSG_TYPE_NAMES: [(MsgType, &str); 4] = [
    (MsgType::Text, "DB_TEXT_MSG"),
    (MsgType::File, "DB_FILE_MSG"),
    (MsgType::FileText, "DB_FILE_TEXT_MSG"),
    (MsgType::Sticker, "DB_STICKER"),
];
const ROLE_NAMES: [(Role, &str); 5] = [
    (Role::Owner, "DB_CUSTOMER"),
    (Role::Admin, "DB_ADMIN"),
    (Role::Moderator, "DB_MODERATOR"),
    (Role::Simple, "DB_SIMPLE"),
    (Role::Banned, "DB_BANNED"),
];

wire_enum_impl!(RoomType, "room type", ROOM_TYPE_NAMES);
wire_enum_impl!(MsgType, "message type", MSG_TYPE_NAMES);
wire_enum_impl!(Role, "role", ROLE_NAMES);

impl WireEnum for ErrorCode {
    const WHAT: &'static str = "error code";
    fn wire_name(self) -> &'static str {
        self.name()
    }
    fn from_wire_name(name: &str) -> Option<Self> {
        ErrorCode::from_name(name)
    }
    fn wire_code(self) -> i64 {
        self.code()
    }
    fn from_wire_code(code: i64) -> Option<Self> {
        ErrorCode::from_code(code)
    }
}

impl WireEnum for Kind {
    const WHAT: &'static str = "message type";
    fn wire_name(self) -> &'static str {
        self.name()
    }
    fn from_wire_name(name: &str) -> Option<Self> {
        Kind::from_request_name(name)
    }
    fn wire_code(self) -> i64 {
        self.code()
    }
    fn from_wire_code(code: i64) -> Option<Self> {
        Kind::from_code(code)
    }
}

/// Serializes a wire enum by name; integer-dialect connections get the codes
/// substituted at encoding time (see [`Outgoing::encode`]).
pub fn ser_wire<T: WireEnum, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.wire_name())
}

fn parse_wire<T: WireEnum>(value: &Value) -> Result<T, String> {
    let found = match value {
        Value::String(s) => T::from_wire_name(s),
        Value::Number(n) => n.as_i64().and_then(T::from_wire_code),
        _ => None,
    };
    found.ok_or_else(|| format!("unknown {}: {}", T::WHAT, value))
}

/// Deserializes a wire enum given as a name or a code.
pub fn de_wire<'de, T: WireEnum, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    parse_wire(&value).map_err(de::Error::custom)
}

/// Like [`de_wire`] for an optional field (absent or null is `None`).
pub fn de_wire_opt<'de, T: WireEnum, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => parse_wire(&value).map(Some).map_err(de::Error::custom),
    }
}

/// The request correlation value a client may attach; echoed on the reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ReqId(Value);

/// The longest string `req_id` accepted, in bytes.
pub const MAX_REQ_ID_BYTES: usize = 64;

impl ReqId {
    fn from_value(value: Value) -> Result<ReqId, String> {
        match &value {
            Value::Number(_) => Ok(ReqId(value)),
            Value::String(s) if s.len() <= MAX_REQ_ID_BYTES => Ok(ReqId(value)),
            _ => Err(format!(
                "`req_id` must be a number or a string of at most {MAX_REQ_ID_BYTES} bytes"
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// RQ_SIGN_UP.
#[derive(Debug, Deserialize)]
pub struct SignUp {
    pub login: String,
    pub pass: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub desc: String,
}

/// RQ_LOG_IN (old clients also send `name` and `desc`; they are ignored).
#[derive(Debug, Deserialize)]
pub struct LogIn {
    pub login: String,
    pub pass: String,
}

/// RQ_TOKEN: resume a session with a token.
#[derive(Debug, Deserialize)]
pub struct TokenResume {
    pub token: String,
}

/// RQ_LOG_OUT: revoke one of the caller's tokens.
#[derive(Debug, Deserialize)]
pub struct LogOut {
    pub token: String,
}

/// RQ_UPD_USER_DESC.
#[derive(Debug, Deserialize)]
pub struct UpdUserDesc {
    pub desc: String,
}

/// RQ_UPD_USER_NAME.
#[derive(Debug, Deserialize)]
pub struct UpdUserName {
    pub name: String,
}

/// RQ_MEMBER_INFO: a user by id, or by login.
#[derive(Debug, Deserialize)]
pub struct MemberInfo {
    #[serde(default)]
    pub user_id: Option<i64>,
    #[serde(default)]
    pub login: Option<String>,
}

/// RQ_NEW_ROOM (old clients give the room type as a second `type`).
#[derive(Debug, Deserialize)]
pub struct NewRoom {
    pub name: String,
    #[serde(default)]
    pub desc: String,
    #[serde(default, deserialize_with = "de_wire_opt")]
    pub room_type: Option<RoomType>,
}

/// RQ_GET_ROOMS.
#[derive(Debug, Deserialize)]
pub struct GetRooms {
    /// Only rooms created or joined after this time (ms); 0 for all.
    #[serde(default)]
    pub date: i64,
}

/// A request naming only a room: join, leave, delete, members.
#[derive(Debug, Deserialize)]
pub struct RoomRef {
    pub room_id: i64,
}

/// RQ_ADD_MEMBER: the user by `login` or by `user_id`.
#[derive(Debug, Deserialize)]
pub struct AddMember {
    pub room_id: i64,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub user_id: Option<i64>,
}

/// RQ_UPD_ROOM_NAME.
#[derive(Debug, Deserialize)]
pub struct UpdRoomName {
    pub room_id: i64,
    pub room_name: String,
}

/// RQ_UPD_ROOM_DESC.
#[derive(Debug, Deserialize)]
pub struct UpdRoomDesc {
    pub room_id: i64,
    pub desc: String,
}

/// RQ_SEARCH_CH: global rooms by name prefix.
#[derive(Debug, Deserialize)]
pub struct SearchCh {
    #[serde(default)]
    pub name: String,
}

/// RQ_SET_ROLE.
#[derive(Debug, Deserialize)]
pub struct SetRole {
    pub room_id: i64,
    pub user_id: i64,
    #[serde(deserialize_with = "de_wire")]
    pub role: Role,
}

/// RQ_BAN_MEMBER and RQ_UNBAN_MEMBER.
#[derive(Debug, Deserialize)]
pub struct MemberAction {
    pub room_id: i64,
    pub user_id: i64,
}

/// RQ_MSG.
#[derive(Debug, Deserialize)]
pub struct SendMsg {
    pub room_id: i64,
    pub message: String,
    #[serde(default, deserialize_with = "de_wire_opt")]
    pub msg_type: Option<MsgType>,
}

/// RQ_EDIT_MSG.
#[derive(Debug, Deserialize)]
pub struct EditMsg {
    pub room_id: i64,
    pub msg_id: i64,
    pub msg: String,
}

/// RQ_DEL_MSG.
#[derive(Debug, Deserialize)]
pub struct DelMsg {
    pub room_id: i64,
    pub msg_id: i64,
}

/// RQ_GET_NEW_MSGS and RQ_OLD_MSGS: a page of history.
#[derive(Debug, Deserialize)]
pub struct HistoryPage {
    pub room_id: i64,
    #[serde(default)]
    pub date: Option<i64>,
    #[serde(default)]
    pub count: Option<i64>,
    #[serde(default)]
    pub after_id: Option<i64>,
    #[serde(default)]
    pub before_id: Option<i64>,
}

/// RQ_SEARCH_MSGS.
#[derive(Debug, Deserialize)]
pub struct SearchMsgs {
    pub msg: String,
    #[serde(default)]
    pub room_id: Option<i64>,
}

/// RQ_MARK_READ.
#[derive(Debug, Deserialize)]
pub struct MarkRead {
    pub room_id: i64,
    pub msg_id: i64,
}

/// RQ_ADD_FRIEND, RQ_DEL_FRIEND and RQ_OPEN_DM: another user by login.
#[derive(Debug, Deserialize)]
pub struct UserRef {
    pub login: String,
}

/// RQ_UPLOAD_FILE: `size` raw bytes follow the server's RQ_READY_READ.
#[derive(Debug, Deserialize)]
pub struct UploadFile {
    pub name: String,
    pub size: i64,
    pub room_id: i64,
    /// Authorizes a connection that has not logged in.
    #[serde(default)]
    pub token: Option<String>,
}

/// RQ_DOWNLOAD_FILE.
#[derive(Debug, Deserialize)]
pub struct DownloadFile {
    pub room_id: i64,
    pub msg_id: i64,
    /// Authorizes a connection that has not logged in.
    #[serde(default)]
    pub token: Option<String>,
}

/// A decoded request, one variant per request kind the server serves.
#[derive(Debug)]
pub enum Request {
    SignUp(SignUp),
    LogIn(LogIn),
    Token(TokenResume),
    LogOut(LogOut),
    UpdUserDesc(UpdUserDesc),
    UpdUserName(UpdUserName),
    MemberInfo(MemberInfo),
    Ping,
    NewRoom(NewRoom),
    GetRooms(GetRooms),
    JoinRoom(RoomRef),
    AddMember(AddMember),
    LeaveRoom(RoomRef),
    DelRoom(RoomRef),
    UpdRoomName(UpdRoomName),
    UpdRoomDesc(UpdRoomDesc),
    SearchCh(SearchCh),
    GetMembers(RoomRef),
    SetRole(SetRole),
    BanMember(MemberAction),
    UnbanMember(MemberAction),
    Msg(SendMsg),
    EditMsg(EditMsg),
    DelMsg(DelMsg),
    DelHist(RoomRef),
    GetNewMsgs(HistoryPage),
    OldMsgs(HistoryPage),
    SearchMsgs(SearchMsgs),
    MarkRead(MarkRead),
    AddFriend(UserRef),
    DelFriend(UserRef),
    GetFriends,
    OpenDm(UserRef),
    UploadFile(UploadFile),
    DownloadFile(DownloadFile),
    /// The client is ready for a download's bytes.
    ReadyRead,
}

/// A decoded line: the request with what the envelope said about it.
#[derive(Debug)]
pub struct Envelope {
    pub kind: Kind,
    pub req_id: Option<ReqId>,
    /// True when `type` was given as an integer code.
    pub type_was_code: bool,
    pub request: Request,
}

/// Why a line could not be decoded, with whatever was learnt before failing.
#[derive(Debug)]
pub struct DecodeError {
    pub code: ErrorCode,
    pub msg: String,
    pub kind: Option<Kind>,
    pub req_id: Option<ReqId>,
    /// Whether `type` was an integer, when `type` was read at all.
    pub type_was_code: Option<bool>,
}

impl DecodeError {
    fn bad(msg: impl Into<String>) -> DecodeError {
        DecodeError {
            code: ErrorCode::BadRequest,
            msg: msg.into(),
            kind: None,
            req_id: None,
            type_was_code: None,
        }
    }
}

/// A JSON object read key by key, so that repeated `type` keys are all kept.
struct RawObject {
    types: Vec<Value>,
    fields: Map<String, Value>,
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut raw = RawObject {
                    types: Vec::new(),
                    fields: Map::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    if key == "type" {
                        raw.types.push(value);
                    } else {
                        raw.fields.insert(key, value);
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(RawVisitor)
    }
}

/// Deserializes a request body, naming the offending field on failure.
fn body<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, String> {
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("field `{path}`: {inner}")
        }
    })
}

/// Decodes one line (without its line ending) into a request.
pub fn decode(line: &[u8]) -> Result<Envelope, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::bad("line is not valid UTF-8"))?;
    let raw: RawObject = serde_json::from_str(text).map_err(|e| {
        let what = if e.is_data() {
            "not a JSON object"
        } else {
            "invalid JSON"
        };
        DecodeError::bad(format!("{what}: {e}"))
    })?;
    let RawObject { types, mut fields } = raw;

    let req_id = match fields.remove("req_id") {
        None | Some(Value::Null) => None,
        Some(value) => Some(ReqId::from_value(value).map_err(DecodeError::bad)?),
    };
    let fail = |msg: String, kind: Option<Kind>, type_was_code: Option<bool>| DecodeError {
        code: ErrorCode::BadRequest,
        msg,
        kind,
        req_id: req_id.clone(),
        type_was_code,
    };

    let (kind, type_was_code) = match types.first() {
        None => return Err(fail("missing field `type`".into(), None, None)),
        Some(Value::String(name)) => match Kind::from_request_name(name) {
            Some(kind) => (kind, false),
            None => return Err(fail(format!("unknown type {name:?}"), None, Some(false))),
        },
        Some(Value::Number(n)) => match n.as_i64().and_then(Kind::from_code) {
            Some(kind) => (kind, true),
            None => return Err(fail(format!("unknown type {n}"), None, Some(true))),
        },
        Some(other) => {
            return Err(fail(
                format!("`type` must be a request name or integer code, not {other}"),
                None,
                None,
            ))
        }
    };
    // The uchat client's new-room request: the second `type` is the room type.
    if kind == Kind::NewRoom && !fields.contains_key("room_type") {
        if let Some(room_type) = types.get(1) {
            fields.insert("room_type".into(), room_type.clone());
        }
    }

    let request = match kind {
        Kind::SignUp => body(fields).map(Request::SignUp),
        Kind::LogIn => body(fields).map(Request::LogIn),
        Kind::Token => body(fields).map(Request::Token),
        Kind::LogOut => body(fields).map(Request::LogOut),
        Kind::UpdUserDesc => body(fields).map(Request::UpdUserDesc),
        Kind::UpdUserName => body(fields).map(Request::UpdUserName),
        Kind::MemberInfo => body(fields).map(Request::MemberInfo),
        Kind::Ping => Ok(Request::Ping),
        Kind::NewRoom => body(fields).map(Request::NewRoom),
        Kind::GetRooms => body(fields).map(Request::GetRooms),
        Kind::JoinRoom => body(fields).map(Request::JoinRoom),
        Kind::AddMember => body(fields).map(Request::AddMember),
        Kind::LeaveRoom => body(fields).map(Request::LeaveRoom),
        Kind::DelRoom => body(fields).map(Request::DelRoom),
        Kind::UpdRoomName => body(fields).map(Request::UpdRoomName),
        Kind::UpdRoomDesc => body(fields).map(Request::UpdRoomDesc),
        Kind::SearchCh => body(fields).map(Request::SearchCh),
        Kind::GetMembers => body(fields).map(Request::GetMembers),
        Kind::SetRole => body(fields).map(Request::SetRole),
        Kind::BanMember => body(fields).map(Request::BanMember),
        Kind::UnbanMember => body(fields).map(Request::UnbanMember),
        Kind::Msg => body(fields).map(Request::Msg),
        Kind::EditMsg => body(fields).map(Request::EditMsg),
        Kind::DelMsg => body(fields).map(Request::DelMsg),
        Kind::DelHist => body(fields).map(Request::DelHist),
        Kind::GetNewMsgs => body(fields).map(Request::GetNewMsgs),
        Kind::OldMsgs => body(fields).map(Request::OldMsgs),
        Kind::SearchMsgs => body(fields).map(Request::SearchMsgs),
        Kind::MarkRead => body(fields).map(Request::MarkRead),
        Kind::AddFriend => body(fields).map(Request::AddFriend),
        Kind::DelFriend => body(fields).map(Request::DelFriend),
        Kind::GetFriends => Ok(Request::GetFriends),
        Kind::OpenDm => body(fields).map(Request::OpenDm),
        Kind::UploadFile => body(fields).map(Request::UploadFile),
        Kind::DownloadFile => body(fields).map(Request::DownloadFile),
        Kind::ReadyRead => Ok(Request::ReadyRead),
        Kind::ErrorMsg | Kind::NewMember | Kind::Presence => {
            Err(format!("{} is sent by the server, not a request", kind.name()))
        }
        other => Err(format!("{} is not served by this server yet", other.name())),
    }
    .map_err(|msg| fail(msg, Some(kind), Some(type_was_code)))?;

    Ok(Envelope {
        kind,
        req_id,
        type_was_code,
        request,
    })
}

// ---------------------------------------------------------------------------
// Replies and pushes
// ---------------------------------------------------------------------------

/// A message from the server: a kind and its body fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    pub kind: Kind,
    pub body: Map<String, Value>,
}

/// Fields holding enumerations, rewritten to codes for integer-dialect connections.
const ENUM_FIELDS: [&str; 4] = ["error_code", "msg_type", "room_type", "role"];

fn rewrite_enum_to_code(key: &str, value: &mut Value) {
    let Value::String(name) = value else { return };
    let code = match key {
        "error_code" => ErrorCode::from_name(name).map(ErrorCode::code),
        "msg_type" => MsgType::from_wire_name(name).map(MsgType::code),
        "room_type" => RoomType::from_wire_name(name).map(RoomType::code),
        "role" => Role::from_wire_name(name).map(Role::code),
        "type" | "request" => Kind::from_name(name).map(Kind::code),
        _ => None,
    };
    if let Some(code) = code {
        *value = Value::from(code);
    }
}

fn rewrite_nested(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if ENUM_FIELDS.contains(&key.as_str()) {
                    rewrite_enum_to_code(key, v);
                } else {
                    rewrite_nested(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_nested),
        _ => {}
    }
}

impl Outgoing {
    /// A message whose body is the serialized `body` struct.
    pub fn new<T: Serialize>(kind: Kind, body: &T) -> Outgoing {
        let body = match serde_json::to_value(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) | Err(_) => {
                log::error!("{} body did not serialize to an object", kind.name());
                Map::new()
            }
        };
        Outgoing { kind, body }
    }

    /// A message with no fields besides `type`.
    pub fn empty(kind: Kind) -> Outgoing {
        Outgoing {
            kind,
            body: Map::new(),
        }
    }

    /// An `RQ_ERROR_MSG`.
    pub fn error(code: ErrorCode, msg: impl Into<String>, request: Option<Kind>) -> Outgoing {
        Outgoing::new(
            Kind::ErrorMsg,
            &ErrorBody {
                error_code: code,
                msg: msg.into(),
                request,
            },
        )
    }

    /// An `RQ_ERROR_MSG` with ER_RATE_LIMITED and `retry_after_ms`.
    pub fn rate_limited(msg: impl Into<String>, request: Option<Kind>, retry_after: Duration) -> Outgoing {
        let mut out = Outgoing::error(ErrorCode::RateLimited, msg, request);
        let ms = u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX).max(1);
        out.body.insert("retry_after_ms".into(), Value::from(ms));
        out
    }

    /// The line sent to a connection of the given dialect, `\n` included.
    pub fn encode(&self, dialect: Dialect, req_id: Option<&ReqId>) -> Vec<u8> {
        let mut map = self.body.clone();
        map.insert("type".into(), Value::from(self.kind.name()));
        if let Some(ReqId(id)) = req_id {
            map.insert("req_id".into(), id.clone());
        }
        let mut value = Value::Object(map);
        if dialect == Dialect::Codes {
            if let Value::Object(map) = &mut value {
                for (key, v) in map.iter_mut() {
                    if key == "type" || key == "request" || ENUM_FIELDS.contains(&key.as_str()) {
                        rewrite_enum_to_code(key, v);
                    } else {
                        rewrite_nested(v);
                    }
                }
            }
        }
        let mut line = serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        line
    }
}

/// Body of `RQ_ERROR_MSG`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(serialize_with = "ser_wire")]
    pub error_code: ErrorCode,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_opt_kind")]
    pub request: Option<Kind>,
}

fn ser_opt_kind<S: Serializer>(kind: &Option<Kind>, s: S) -> Result<S::Ok, S::Error> {
    match kind {
        Some(kind) => s.serialize_str(kind.name()),
        None => s.serialize_none(),
    }
}

/// Body of `RQ_TOKEN` (the answer to sign-up, log-in and resume).
#[derive(Debug, Serialize)]
pub struct TokenBody {
    pub token: String,
    pub login: String,
    pub name: String,
    pub desc: String,
    pub user_id: i64,
}

/// Body of `RQ_LOG_OUT`.
#[derive(Debug, Serialize)]
pub struct LogOutBody {
    pub token: String,
}

/// Body of `RQ_UPD_USER_DESC`.
#[derive(Debug, Serialize)]
pub struct DescBody {
    pub desc: String,
}

/// Body of `RQ_UPD_USER_NAME`.
#[derive(Debug, Serialize)]
pub struct NameBody {
    pub name: String,
}

/// Body of `RQ_MEMBER_INFO`.
#[derive(Debug, Serialize)]
pub struct MemberInfoBody {
    pub user_id: i64,
    pub login: String,
    pub name: String,
    pub desc: String,
    pub online: bool,
}

fn ser_wire_opt<T: WireEnum, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_str(v.wire_name()),
        None => s.serialize_none(),
    }
}

/// A room object. `role` is the caller's (absent where the caller is not a
/// member); `power` is the number of stored messages (old clients read it).
#[derive(Debug, Serialize)]
pub struct RoomBody {
    pub id: i64,
    pub name: String,
    pub desc: String,
    pub customer_id: i64,
    pub date: i64,
    #[serde(serialize_with = "ser_wire")]
    pub room_type: RoomType,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_wire_opt")]
    pub role: Option<Role>,
    pub power: i64,
    /// In room lists: messages after the caller's read marker, by others.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<i64>,
    /// In room lists: the newest message's id (0 when there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_msg_id: Option<i64>,
    /// For direct-message rooms: the other user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerBody>,
}

/// The other user of a direct-message room; also the body of
/// `RQ_ADD_FRIEND` and `RQ_DEL_FRIEND`.
#[derive(Clone, Debug, Serialize)]
pub struct PeerBody {
    pub user_id: i64,
    pub login: String,
}

/// One entry of `RQ_GET_FRIENDS`.
#[derive(Debug, Serialize)]
pub struct FriendBody {
    pub user_id: i64,
    pub login: String,
    pub name: String,
    pub online: bool,
}

/// Body of `RQ_GET_FRIENDS`.
#[derive(Debug, Serialize)]
pub struct FriendsBody {
    pub friends: Vec<FriendBody>,
}

/// Body of `RQ_OPEN_DM`.
#[derive(Debug, Serialize)]
pub struct OpenDmBody {
    pub room: RoomBody,
}

/// Body of `RQ_PRESENCE`.
#[derive(Debug, Serialize)]
pub struct PresenceBody {
    pub user_id: i64,
    pub online: bool,
}

/// Body of `RQ_GET_ROOMS` and `RQ_SEARCH_CH`.
#[derive(Debug, Serialize)]
pub struct RoomsBody {
    pub rooms: Vec<RoomBody>,
}

/// Body of `RQ_NEW_MEMBER`.
#[derive(Debug, Serialize)]
pub struct NewMemberBody {
    pub room_id: i64,
    pub user_id: i64,
    pub login: String,
}

/// Body of `RQ_DEL_ROOM` (and other room-only messages).
#[derive(Debug, Serialize)]
pub struct RoomIdBody {
    pub room_id: i64,
}

/// Body of `RQ_LEAVE_ROOM`.
#[derive(Debug, Serialize)]
pub struct LeaveBody {
    pub room_id: i64,
    pub user_id: i64,
    pub login: String,
}

/// Body of `RQ_UPD_ROOM_NAME`.
#[derive(Debug, Serialize)]
pub struct RoomNameBody {
    pub room_id: i64,
    pub room_name: String,
}

/// Body of `RQ_UPD_ROOM_DESC`.
#[derive(Debug, Serialize)]
pub struct RoomDescBody {
    pub room_id: i64,
    pub desc: String,
}

/// A member object; `id` repeats `user_id` for old clients.
#[derive(Debug, Serialize)]
pub struct MemberBody {
    pub id: i64,
    pub user_id: i64,
    pub login: String,
    pub name: String,
    #[serde(serialize_with = "ser_wire")]
    pub role: Role,
    pub online: bool,
}

/// Body of `RQ_GET_MEMBERS`.
#[derive(Debug, Serialize)]
pub struct MembersBody {
    pub room_id: i64,
    pub members: Vec<MemberBody>,
}

/// Body of `RQ_SET_ROLE`.
#[derive(Debug, Serialize)]
pub struct RoleBody {
    pub room_id: i64,
    pub user_id: i64,
    #[serde(serialize_with = "ser_wire")]
    pub role: Role,
}

/// Body of `RQ_BAN_MEMBER` and `RQ_UNBAN_MEMBER`.
#[derive(Debug, Serialize)]
pub struct MemberActionBody {
    pub room_id: i64,
    pub user_id: i64,
}

/// A message object; `power` is the room's number of stored messages.
#[derive(Debug, Serialize)]
pub struct MessageBody {
    pub message_id: i64,
    pub room_id: i64,
    pub user_id: i64,
    pub login: String,
    pub date: i64,
    pub message: String,
    #[serde(serialize_with = "ser_wire")]
    pub msg_type: MsgType,
    pub edited: bool,
    pub power: i64,
    /// File messages: the file's display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// File messages: the file's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size: Option<i64>,
}

/// Body of `RQ_DOWNLOAD_FILE`: `size` raw bytes follow the client's RQ_READY_READ.
#[derive(Debug, Serialize)]
pub struct DownloadBody {
    pub size: i64,
    pub name: String,
    pub room_id: i64,
    pub msg_id: i64,
}

/// Body of `RQ_EDIT_MSG`.
#[derive(Debug, Serialize)]
pub struct EditBody {
    pub room_id: i64,
    pub msg_id: i64,
    pub msg: String,
    pub power: i64,
}

/// Body of `RQ_DEL_MSG` and `RQ_MARK_READ`.
#[derive(Debug, Serialize)]
pub struct MsgRefBody {
    pub room_id: i64,
    pub msg_id: i64,
}

/// Body of `RQ_GET_NEW_MSGS` and `RQ_OLD_MSGS`.
#[derive(Debug, Serialize)]
pub struct MessagesBody {
    pub room_id: i64,
    pub messages: Vec<MessageBody>,
}

/// Body of `RQ_SEARCH_MSGS`.
#[derive(Debug, Serialize)]
pub struct SearchBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<i64>,
    pub msgs: Vec<MessageBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_str(s: &str) -> Result<Envelope, DecodeError> {
        decode(s.as_bytes())
    }

    #[test]
    fn kind_table_is_consistent_both_ways() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_code(kind.code()), Some(*kind));
            assert_eq!(Kind::from_name(kind.name()), Some(*kind));
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.code()), Some(*code));
        }
        for role in Role::ALL {
            assert_eq!(Role::from_wire_name(role.wire_name()), Some(*role));
        }
        assert_eq!(Kind::from_request_name("RQ_SEARCH_MSG"), Some(Kind::SearchMsgs));
    }

    #[test]
    fn decodes_names_and_codes() {
        let env = decode_str(r#"{"type":"RQ_LOG_IN","login":"a","pass":"b","req_id":7}"#).unwrap();
        assert_eq!(env.kind, Kind::LogIn);
        assert!(!env.type_was_code);
        assert_eq!(env.req_id, Some(ReqId(Value::from(7))));
        let env = decode_str(r#"{"type":0,"login":"a","pass":"b"}"#).unwrap();
        assert_eq!(env.kind, Kind::LogIn);
        assert!(env.type_was_code);
    }

    #[test]
    fn errors_name_the_problem() {
        let err = decode_str(r#"{"type":"RQ_MEMBER_INFO","user_id":"x","req_id":"r"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.msg.contains("user_id"), "{}", err.msg);
        assert_eq!(err.kind, Some(Kind::MemberInfo));
        assert_eq!(err.req_id, Some(ReqId(Value::from("r"))));
        let err = decode_str(r#"{"type":"RQ_LOG_IN","login":"a"}"#).unwrap_err();
        assert!(err.msg.contains("pass"), "{}", err.msg);
        assert!(decode_str("[1,2]").unwrap_err().msg.contains("object"));
        assert!(decode_str("{nope").unwrap_err().msg.contains("invalid JSON"));
        assert!(decode(b"{\"type\":\"\xff\"}").unwrap_err().msg.contains("UTF-8"));
        assert!(decode_str(r#"{"type":"RQ_NOPE"}"#)
            .unwrap_err()
            .msg
            .contains("unknown type"));
        assert!(decode_str(r#"{"type":999}"#)
            .unwrap_err()
            .msg
            .contains("unknown type"));
        assert!(decode_str(r#"{"login":"x"}"#).unwrap_err().msg.contains("type"));
        let long = "x".repeat(65);
        let err = decode_str(&format!(r#"{{"type":"RQ_PING","req_id":"{long}"}}"#)).unwrap_err();
        assert!(err.msg.contains("req_id"));
    }

    #[test]
    fn old_client_new_room_with_two_types() {
        let env = decode_str(r#"{"type":12,"name":"x","desc":"","type":0}"#).unwrap();
        match env.request {
            Request::NewRoom(r) => assert_eq!(r.room_type, Some(RoomType::Private)),
            other => panic!("{other:?}"),
        }
        let env = decode_str(r#"{"type":"RQ_NEW_ROOM","name":"x","type":"DB_GLOBAL_CHAT"}"#).unwrap();
        assert!(matches!(
            env.request,
            Request::NewRoom(NewRoom {
                room_type: Some(RoomType::Global),
                ..
            })
        ));
        let err = decode_str(r#"{"type":12,"name":"x","type":"DB_NOPE"}"#).unwrap_err();
        assert!(err.msg.contains("room_type"), "{}", err.msg);
    }

    #[test]
    fn encodes_in_both_dialects() {
        let msg = Outgoing::error(ErrorCode::NotFound, "no such user", Some(Kind::MemberInfo));
        let names: Value = serde_json::from_slice(&msg.encode(Dialect::Names, None)).unwrap();
        assert_eq!(names["type"], "RQ_ERROR_MSG");
        assert_eq!(names["error_code"], "ER_NOT_FOUND");
        assert_eq!(names["request"], "RQ_MEMBER_INFO");
        let id = ReqId(Value::from("abc"));
        let codes: Value = serde_json::from_slice(&msg.encode(Dialect::Codes, Some(&id))).unwrap();
        assert_eq!(codes["type"], 9);
        assert_eq!(codes["error_code"], 103);
        assert_eq!(codes["request"], 20);
        assert_eq!(codes["req_id"], "abc");
    }

    #[test]
    fn nested_enum_fields_become_codes() {
        let mut body = Map::new();
        body.insert(
            "rooms".into(),
            serde_json::json!([{"room_type":"DB_GLOBAL_CHAT","role":"DB_ADMIN","name":"DB_ADMIN"}]),
        );
        let msg = Outgoing {
            kind: Kind::GetRooms,
            body,
        };
        let v: Value = serde_json::from_slice(&msg.encode(Dialect::Codes, None)).unwrap();
        assert_eq!(v["rooms"][0]["room_type"], 1);
        assert_eq!(v["rooms"][0]["role"], 1);
        assert_eq!(
            v["rooms"][0]["name"], "DB_ADMIN",
            "only enum-valued fields change"
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes decode to a request or an error, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = decode(&data);
        }

        /// Objects with a real request type and arbitrary fields of arbitrary
        /// JSON shapes decode or are refused, never panic.
        #[test]
        fn arbitrary_fields_never_panic(
            code in 0i64..=120,
            named in proptest::bool::ANY,
            fields in proptest::collection::vec(
                (proptest::sample::select(vec!["room_id", "msg_id", "login", "pass", "name", "message",
                    "msg", "size", "token", "date", "count", "role", "user_id", "req_id", "type", "after_id"]),
                 proptest::sample::select(vec![
                    "0", "-1", "1e400", "9223372036854775808", "\"x\"", "null", "[]", "{}", "true",
                    "\"\\u0000\"", "3.5", "\"RQ_MSG\"", "[1,2]"])),
                0..6),
        ) {
            let kind = match Kind::from_code(code) {
                Some(k) => k,
                None => return Ok(()),
            };
            let ty = if named { format!("\"{}\"", kind.name()) } else { code.to_string() };
            let mut line = format!("{{\"type\":{ty}");
            for (k, v) in fields {
                line.push_str(&format!(",\"{k}\":{v}"));
            }
            line.push('}');
            let _ = decode(line.as_bytes());
        }
    }
}
