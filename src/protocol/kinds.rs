//! The message kinds and error codes, and how every coded enumeration
//! (these and `model`'s) travels: as its name, or as its integer code for
//! connections of the integer dialect.

use std::cell::Cell;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serializer};
use serde_json::Value;

use crate::compat::Dialect;
use crate::model::{coded_enum, CodedEnum};

coded_enum!(
    /// Every request and push type, with its integer code and its name.
    Kind ("message type") {
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
        React = 112 "RQ_REACT",
        GetMentions = 113 "RQ_GET_MENTIONS",
        Typing = 114 "RQ_TYPING",
        Pin = 115 "RQ_PIN",
        GetPins = 116 "RQ_GET_PINS",
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

coded_enum!(
    /// The `error_code` of an `RQ_ERROR_MSG`.
    ErrorCode ("error code") {
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

thread_local! {
    /// The dialect being written on this thread (see [`with_dialect`]).
    static WRITING: Cell<Dialect> = const { Cell::new(Dialect::Names) };
}

/// Runs `write` with coded enumerations serialized for `dialect`: names,
/// or integer codes. Serde has no context to pass down, and a body is
/// written straight from its typed value, once per dialect.
pub fn with_dialect<T>(dialect: Dialect, write: impl FnOnce() -> T) -> T {
    let before = WRITING.with(|w| w.replace(dialect));
    let result = write();
    WRITING.with(|w| w.set(before));
    result
}

/// The dialect being written on this thread (names outside [`with_dialect`]).
pub fn writing_dialect() -> Dialect {
    WRITING.with(Cell::get)
}

/// Serializes a coded enumeration in the dialect being written.
pub fn ser_wire<T: CodedEnum, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    match WRITING.with(Cell::get) {
        Dialect::Names => s.serialize_str(value.name()),
        Dialect::Codes => s.serialize_i64(value.code()),
    }
}

/// Like [`ser_wire`] for an optional field.
pub fn ser_wire_opt<T: CodedEnum, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => ser_wire(v, s),
        None => s.serialize_none(),
    }
}

fn parse_wire<T: CodedEnum>(value: &Value) -> Result<T, String> {
    let found = match value {
        Value::String(s) => T::from_name(s),
        Value::Number(n) => n.as_i64().and_then(T::from_code),
        _ => None,
    };
    found.ok_or_else(|| format!("unknown {}: {}", T::WHAT, value))
}

/// Deserializes a coded enumeration given as a name or a code.
pub fn de_wire<'de, T: CodedEnum, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    let value = Value::deserialize(d)?;
    parse_wire(&value).map_err(de::Error::custom)
}

/// Like [`de_wire`] for an optional field (absent or null is `None`).
pub fn de_wire_opt<'de, T: CodedEnum, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => parse_wire(&value).map(Some).map_err(de::Error::custom),
    }
}
