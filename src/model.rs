//! Domain types shared by storage and handlers: users, rooms, messages, and
//! the enumerations whose integer codes are both the wire codes and the
//! stored values.
//!
//! Each enumeration is declared once, by `coded_enum!`, with its code and
//! its symbolic name: the server, the `parley` client and `parley-load` all
//! read these tables (and `protocol`'s `Kind` and `ErrorCode`, declared the
//! same way). Nothing here knows about JSON or sockets.

/// An enumeration with a fixed integer code and a symbolic name per variant.
pub trait CodedEnum: Sized + Copy + 'static {
    /// What a value of it is called, for error messages.
    const WHAT: &'static str;
    const ALL: &'static [Self];
    fn code(self) -> i64;
    fn name(self) -> &'static str;
    fn from_code(code: i64) -> Option<Self>;
    fn from_name(name: &str) -> Option<Self>;
}

/// Declares a fieldless enum with a code and a name per variant, its
/// lookups both ways (as inherent methods, and as [`CodedEnum`]).
macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($variant:ident = $code:literal $wire:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn code(self) -> i64 {
                match self { $($name::$variant => $code),* }
            }

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $wire),* }
            }

            pub fn from_code(code: i64) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }

            pub fn from_name(name: &str) -> Option<$name> {
                match name { $($wire => Some($name::$variant),)* _ => None }
            }
        }

        impl $crate::model::CodedEnum for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [$name] = $name::ALL;
            fn code(self) -> i64 { $name::code(self) }
            fn name(self) -> &'static str { $name::name(self) }
            fn from_code(code: i64) -> Option<$name> { $name::from_code(code) }
            fn from_name(name: &str) -> Option<$name> { $name::from_name(name) }
        }
    };
}
pub(crate) use coded_enum;

coded_enum!(
    /// A room's kind.
    RoomType ("room type") {
        Private = 0 "DB_PRIVAT_CHAT",
        Global = 1 "DB_GLOBAL_CHAT",
        Direct = 2 "DB_LS_CHAT",
    }
);

coded_enum!(
    /// A message's kind.
    MsgType ("message type") {
        Text = 0 "DB_TEXT_MSG",
        File = 1 "DB_FILE_MSG",
        FileText = 2 "DB_FILE_TEXT_MSG",
        Sticker = 3 "DB_STICKER",
    }
);

coded_enum!(
    /// A member's standing in a room, highest rank first.
    Role ("role") {
        Owner = 0 "DB_CUSTOMER",
        Admin = 1 "DB_ADMIN",
        Moderator = 2 "DB_MODERATOR",
        Simple = 3 "DB_SIMPLE",
        Banned = 4 "DB_BANNED",
    }
);

impl Role {
    /// True when `self` ranks strictly above `other` (owner is the top).
    pub fn outranks(self, other: Role) -> bool {
        self.code() < other.code()
    }

    /// Owner, admin or moderator: may delete others' messages, add, ban and unban.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Moderator)
    }

    /// Owner or admin: may clear history, rename and describe, and set roles.
    pub fn administers(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }
}

/// A user account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub desc: String,
}

/// A room as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Room {
    pub id: i64,
    pub name: String,
    pub desc: String,
    pub room_type: RoomType,
    /// The owner (the protocol's `customer_id`).
    pub owner_id: i64,
    pub created_at: i64,
    /// Messages stored in the room.
    pub msg_count: i64,
    /// Bytes of text stored in the room: the protocol's `power` (design.md §3).
    pub power: i64,
}

/// A stored message, with its author's login.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub room_id: i64,
    pub user_id: i64,
    pub login: String,
    pub date: i64,
    pub body: String,
    pub msg_type: MsgType,
    pub edited: bool,
    /// For file messages: the file.
    pub file: Option<StoredFile>,
    /// The message this one answers (0: none).
    pub reply_to: i64,
}

/// A file attached to a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The sanitized name the sender gave, for display only.
    pub name: String,
    pub size: i64,
    /// The server-chosen name under `files/`.
    pub stored_name: String,
}

/// A room in a member's room list, with what the member has not read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomListing {
    pub room: Room,
    pub role: Role,
    /// Messages after the member's read marker, by others.
    pub unread: i64,
    /// The newest message's id, 0 if none.
    pub last_msg_id: i64,
    /// Messages after the read marker that mention the member.
    pub mentions: i64,
}

/// A user's place in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub user: User,
    pub role: Role,
}

/// Lower-cases a room name for case-insensitive prefix search.
pub fn fold_name(name: &str) -> String {
    name.to_lowercase()
}

/// Current time in milliseconds since the Unix epoch (the protocol's `date`).
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A room's newest stored message: its number in the room and its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomTail {
    pub room_id: i64,
    pub seq: i64,
    pub id: i64,
}
