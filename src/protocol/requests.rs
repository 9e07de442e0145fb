//! The requests a client may send, one type per kind, as decoded from a line.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::kinds::{de_wire, de_wire_opt, Kind};
use crate::model::{MsgType, Role, RoomType};

/// The request correlation value a client may attach; echoed on the reply.
#[derive(Clone, Debug, PartialEq)]
pub struct ReqId(pub(super) Value);

/// The longest string `req_id` accepted, in bytes.
pub const MAX_REQ_ID_BYTES: usize = 64;

impl ReqId {
    pub(super) fn from_value(value: Value) -> Result<ReqId, String> {
        match &value {
            Value::Number(_) => Ok(ReqId(value)),
            Value::String(s) if s.len() <= MAX_REQ_ID_BYTES => Ok(ReqId(value)),
            _ => Err(format!(
                "`req_id` must be a number or a string of at most {MAX_REQ_ID_BYTES} bytes"
            )),
        }
    }
}

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
    /// The message of the same room this one answers.
    #[serde(default)]
    pub reply_to: Option<i64>,
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

/// RQ_REACT: add (`on`, the default) or remove one's emoji on a message.
#[derive(Debug, Deserialize)]
pub struct React {
    pub room_id: i64,
    pub msg_id: i64,
    pub emoji: String,
    #[serde(default = "yes")]
    pub on: bool,
}

/// RQ_PIN: pin (the default) or unpin a message.
#[derive(Debug, Deserialize)]
pub struct Pin {
    pub room_id: i64,
    pub msg_id: i64,
    #[serde(default = "yes")]
    pub pinned: bool,
}

fn yes() -> bool {
    true
}

/// RQ_GET_MENTIONS: a page of the caller's mentions, newest first.
#[derive(Debug, Deserialize)]
pub struct GetMentions {
    #[serde(default)]
    pub before_id: Option<i64>,
    #[serde(default)]
    pub count: Option<i64>,
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

/// Declares the request table: each kind a client may send, named as in
/// [`Kind`], with the type its fields decode into (none for a bare request).
/// It makes the [`Request`] enum and the decoding of each kind's fields, so
/// a new request is one line here.
macro_rules! request_table {
    ($( $(#[$meta:meta])* $kind:ident $(($body:ty))? ),* $(,)?) => {
        /// A decoded request, one variant per request kind the server serves.
        #[derive(Debug)]
        pub enum Request {
            $( $(#[$meta])* $kind $(($body))? ),*
        }

        impl Request {
            /// Decodes a request of `kind` from its fields (`type` and `req_id` removed).
            pub fn from_fields(kind: Kind, fields: Map<String, Value>) -> Result<Request, String> {
                match kind {
                    $( Kind::$kind => request_table!(@decode $kind fields $($body)?), )*
                    Kind::ErrorMsg | Kind::UpdRoomPowr | Kind::NewMember | Kind::Presence => {
                        Err(format!("{} is sent by the server, not a request", kind.name()))
                    }
                }
            }
        }
    };
    (@decode $kind:ident $fields:ident $body:ty) => { fields::<$body>($fields).map(Request::$kind) };
    (@decode $kind:ident $fields:ident) => { Ok(Request::$kind) };
}

request_table! {
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
    React(React),
    GetMentions(GetMentions),
    Typing(RoomRef),
    Pin(Pin),
    GetPins(RoomRef),
}

/// Deserializes a request's fields into its type, naming the offending
/// field on failure.
fn fields<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, String> {
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

/// A decoded line: the request with what the envelope said about it.
#[derive(Debug)]
pub struct Envelope {
    pub kind: Kind,
    pub req_id: Option<ReqId>,
    /// True when `type` was given as an integer code.
    pub type_was_code: bool,
    pub request: Request,
}
