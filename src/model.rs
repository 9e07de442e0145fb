//! Domain types shared by storage and handlers: users, and the enumerations
//! whose integer codes are both the wire codes and the stored values.
//!
//! Nothing here knows about JSON or sockets; the wire names of these enums
//! live in `protocol`.

/// Declares a fieldless enum with a fixed integer code per variant.
macro_rules! coded_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn code(self) -> i64 {
                match self { $($name::$variant => $code),* }
            }

            pub fn from_code(code: i64) -> Option<$name> {
                match code { $($code => Some($name::$variant),)* _ => None }
            }
        }
    };
}

coded_enum!(
    /// A room's kind.
    RoomType { Private = 0, Global = 1, Direct = 2 }
);

coded_enum!(
    /// A message's kind.
    MsgType { Text = 0, File = 1, FileText = 2, Sticker = 3 }
);

coded_enum!(
    /// A member's standing in a room, highest rank first.
    Role { Owner = 0, Admin = 1, Moderator = 2, Simple = 3, Banned = 4 }
);

impl Role {
    /// True when `self` ranks strictly above `other` (owner is the top).
    pub fn outranks(self, other: Role) -> bool {
        self.code() < other.code()
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
    /// Messages stored in the room (the protocol's `power`).
    pub msg_count: i64,
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
