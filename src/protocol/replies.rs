//! The bodies of replies and pushes, one type per shape. Coded
//! enumerations are written in the connection's dialect (see `encode`).

use serde::Serialize;

use super::kinds::{ser_wire, ser_wire_opt, writing_dialect, ErrorCode, Kind};
use crate::compat;
use crate::model::{MsgType, Role, RoomType};

/// Body of `RQ_ERROR_MSG`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    #[serde(serialize_with = "ser_wire")]
    pub error_code: ErrorCode,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ser_wire_opt")]
    pub request: Option<Kind>,
    /// With ER_RATE_LIMITED: when to try again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
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

/// A room object. `role` is the caller's (absent where the caller is not a
/// member); `power` is the bytes of text it stores (old clients read it).
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
    /// In room lists: unread messages that mention the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<i64>,
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

/// A message object; `power` is its text's length in bytes (old clients read it).
#[derive(Debug, Serialize)]
pub struct MessageBody {
    pub message_id: i64,
    pub room_id: i64,
    pub user_id: i64,
    pub login: String,
    pub date: i64,
    pub message: MessageText,
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
    /// The message this one answers (0: none).
    pub reply_to: i64,
    /// The answered message, while it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_preview: Option<ReplyPreview>,
    pub reactions: Vec<ReactionCount>,
    /// In replies to reads (history, search, mentions, pins): the caller's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_reactions: Option<Vec<String>>,
    /// Who the message names (user ids).
    pub mentions: Vec<i64>,
}

/// The answered message of a reply: its author and first 100 characters.
#[derive(Clone, Debug, Serialize)]
pub struct ReplyPreview {
    pub user_id: i64,
    pub login: String,
    pub message: String,
}

/// One emoji on a message and how many put it there.
#[derive(Clone, Debug, Serialize)]
pub struct ReactionCount {
    pub emoji: String,
    pub count: i64,
}

/// Body of `RQ_REACT`.
#[derive(Debug, Serialize)]
pub struct ReactBody {
    pub room_id: i64,
    pub msg_id: i64,
    pub user_id: i64,
    pub login: String,
    pub emoji: String,
    pub on: bool,
}

/// Body of `RQ_PIN`: `user_id` pinned (or unpinned) it.
#[derive(Debug, Serialize)]
pub struct PinBody {
    pub room_id: i64,
    pub msg_id: i64,
    pub pinned: bool,
    pub user_id: i64,
}

/// Body of `RQ_TYPING`: to the sender `{room_id}`, to others who types.
#[derive(Debug, Serialize)]
pub struct TypingBody {
    pub room_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
}

/// Body of `RQ_GET_MENTIONS`.
#[derive(Debug, Serialize)]
pub struct MentionsBody {
    pub msgs: Vec<MessageBody>,
}

/// Body of `RQ_GET_PINS`.
#[derive(Debug, Serialize)]
pub struct PinsBody {
    pub room_id: i64,
    pub msgs: Vec<MessageBody>,
}

/// A message's `message` field: its text, or for a file message its file's
/// name, written as each dialect reads it (`compat::file_message_text`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageText {
    pub text: String,
    /// For file messages: the message's id (old clients get it as a prefix).
    pub file_of: Option<i64>,
}

impl MessageText {
    pub fn plain(text: impl Into<String>) -> MessageText {
        MessageText {
            text: text.into(),
            file_of: None,
        }
    }
}

impl Serialize for MessageText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.file_of {
            None => s.serialize_str(&self.text),
            Some(id) => s.serialize_str(&compat::file_message_text(writing_dialect(), id, &self.text)),
        }
    }
}

/// Body of `RQ_DOWNLOAD_FILE`: `size` raw bytes follow the client's RQ_READY_READ.
#[derive(Debug, Serialize)]
pub struct DownloadBody {
    pub size: i64,
    pub name: String,
    pub room_id: i64,
    pub msg_id: i64,
}

/// Body of `RQ_UPD_ROOM_POWR`: the room's new power (old clients only).
#[derive(Debug, Serialize)]
pub struct RoomPowerBody {
    pub room_id: i64,
    pub power: i64,
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
