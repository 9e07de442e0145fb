//! What nodes tell each other: pushes (with a stored message's place in its
//! room), revoked tokens, failed log-ins and who is online, as JSON. A push carries its body written for
//! both dialects, so the receiving node sends exactly what the first did.

use serde::{Deserialize, Serialize};

use crate::job::RoomOrder;
use crate::protocol::{Dialect, Kind, Outgoing};

/// The most users in one part of a node's roster (about 200 KB of JSON).
pub const ROSTER_PART: usize = 10_000;

/// One bus message: which node sent it, and what happened there, in
/// order (a node publishes what one pass of its reactor made at once).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node's id: a node ignores its own messages.
    pub node: String,
    pub events: Vec<Event>,
}

/// What a node tells the others.
// Externally tagged: the raw bodies cannot pass through serde's buffering
// of internally tagged enums.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A push for every online connection of these users.
    Push {
        to: Vec<i64>,
        msg: WireMessage,
        /// For a stored message: its room and number there.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room_seq: Option<(i64, i64)>,
    },
    /// A log-in failed: every node counts it against the login and address.
    LoginFailure { login: String, addr: std::net::IpAddr },
    /// A sign-up (or else a password log-in) from `addr` was admitted:
    /// every node counts it against the address's allowance.
    AuthAttempt { sign_up: bool, addr: std::net::IpAddr },
    /// A token was revoked: its connections are told and logged out.
    Revoke {
        user_id: i64,
        /// The token's hash, in hex.
        token_hash: String,
        notice: WireMessage,
    },
    /// A user's first connection on the sending node logged in (online),
    /// or its last one went.
    Presence { user_id: i64, online: bool },
    /// The sending node is alive, has `users` users online, and this
    /// digest of them (`presence::digest`).
    Heartbeat { users: u64, digest: u64 },
    /// Asks `node` for its whole list of online users.
    RosterWanted { node: String },
    /// The sending node's online users, all of them, in parts of at most
    /// [`ROSTER_PART`] (NATS bounds a message's size): the first part
    /// replaces what the receiver held, the others add to it.
    Roster { users: Vec<i64>, first: bool },
    /// The sending node is stopping: its users are gone from it.
    Leaving,
}

/// A message from the server, written once per dialect.
#[derive(Debug, Serialize, Deserialize)]
pub struct WireMessage {
    /// The kind's code.
    pub kind: i64,
    /// The body's fields for clients that read names.
    pub names: Box<serde_json::value::RawValue>,
    /// The body's fields for clients that read codes.
    pub codes: Box<serde_json::value::RawValue>,
}

impl WireMessage {
    pub fn from_outgoing(msg: &Outgoing) -> Option<WireMessage> {
        let raw = |dialect| {
            serde_json::value::RawValue::from_string(String::from_utf8(msg.body_json(dialect)).ok()?).ok()
        };
        Some(WireMessage {
            kind: msg.kind.code(),
            names: raw(Dialect::Names)?,
            codes: raw(Dialect::Codes)?,
        })
    }

    /// The message again; `None` for a kind this node does not know.
    pub fn to_outgoing(&self) -> Option<Outgoing> {
        let kind = Kind::from_code(self.kind)?;
        Some(Outgoing::prewritten(
            kind,
            self.names.get().as_bytes().to_vec(),
            self.codes.get().as_bytes().to_vec(),
        ))
    }
}

impl Event {
    /// The place of a push's stored message, as the sequencer takes it.
    pub fn order(room_seq: Option<(i64, i64)>) -> Option<RoomOrder> {
        room_seq.map(|(room_id, seq)| RoomOrder { room_id, seq })
    }
}

/// A node's online users as [`Event::Roster`] parts of at most
/// [`ROSTER_PART`] (one, empty, for none: the receiver still forgets what
/// it held).
pub fn roster(users: &[i64]) -> Vec<Event> {
    if users.is_empty() {
        return vec![Event::Roster {
            users: Vec::new(),
            first: true,
        }];
    }
    users
        .chunks(ROSTER_PART)
        .enumerate()
        .map(|(i, part)| Event::Roster {
            users: part.to_vec(),
            first: i == 0,
        })
        .collect()
}

/// Encodes an envelope for the bus.
pub fn encode(envelope: &Envelope) -> Vec<u8> {
    serde_json::to_vec(envelope).unwrap_or_default()
}

/// Decodes a bus message; `None` (and nothing else) for one that is not ours.
pub fn decode(bytes: &[u8]) -> Option<Envelope> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RoomIdBody;

    #[test]
    fn a_push_arrives_as_it_left_in_both_dialects() {
        let msg = Outgoing::new(Kind::DelRoom, RoomIdBody { room_id: 7 });
        let envelope = Envelope {
            node: "a".into(),
            events: vec![Event::Push {
                to: vec![1, 2],
                msg: WireMessage::from_outgoing(&msg).unwrap(),
                room_seq: Some((7, 3)),
            }],
        };
        let back = decode(&encode(&envelope)).unwrap();
        let Event::Push {
            to,
            msg: wire,
            room_seq,
        } = back.events.into_iter().next().unwrap()
        else {
            panic!("a push");
        };
        assert_eq!((to, room_seq), (vec![1, 2], Some((7, 3))));
        let again = wire.to_outgoing().unwrap();
        for dialect in [Dialect::Names, Dialect::Codes] {
            assert_eq!(again.encode(dialect, None), msg.encode(dialect, None));
        }
        assert!(decode(b"not json").is_none());
    }

    #[test]
    fn a_roster_goes_in_parts_the_first_of_which_replaces() {
        let parts = |users: &[i64]| -> Vec<(usize, bool)> {
            roster(users)
                .into_iter()
                .map(|event| match event {
                    Event::Roster { users, first } => (users.len(), first),
                    _ => panic!("a roster part"),
                })
                .collect()
        };
        assert_eq!(parts(&[]), vec![(0, true)]);
        let many: Vec<i64> = (0..(ROSTER_PART as i64 + 1)).collect();
        assert_eq!(parts(&many), vec![(ROSTER_PART, true), (1, false)]);
    }
}
