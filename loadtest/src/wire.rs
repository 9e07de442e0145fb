//! The protocols the load generator speaks: Parley in names or integer
//! codes, and IRC for the comparison with a classic chat daemon.
//!
//! Only what the scenarios need is parsed, and cheaply: the hot path (a
//! message delivery) finds its stamp without decoding the whole JSON line.
//! The rare lines that matter in full (errors) go through serde_json and
//! the parley crate's own error-code table.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use parley::protocol::{ErrorCode, Kind};
use serde_json::{json, Value};

/// Which protocol and dialect to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Parley with symbolic names.
    Parley,
    /// Parley with the original integer codes.
    ParleyInt,
    /// IRC: NICK/USER, JOIN, PRIVMSG.
    Irc,
}

impl Protocol {
    pub fn parse(name: &str) -> Option<Protocol> {
        match name {
            "parley" => Some(Protocol::Parley),
            "parley-int" => Some(Protocol::ParleyInt),
            "irc" => Some(Protocol::Irc),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Parley => "parley",
            Protocol::ParleyInt => "parley-int",
            Protocol::Irc => "irc",
        }
    }

    /// How many connections of a room of `members` receive each message:
    /// Parley echoes a message to its sender's connection, IRC does not.
    pub fn recipients(self, members: u64) -> u64 {
        match self {
            Protocol::Irc => members.saturating_sub(1),
            _ => members,
        }
    }

    /// Writes `type` in this dialect.
    fn typed(self, kind: Kind, mut body: Value) -> Vec<u8> {
        body["type"] = match self {
            Protocol::ParleyInt => json!(kind.code()),
            _ => json!(kind.name()),
        };
        let mut line = serde_json::to_vec(&body).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// The first lines of a connection: log in (Parley) or register and
    /// join (IRC, which joins after the welcome; see [`Incoming::Welcome`]).
    pub fn hello(self, token: &str, nick: &str) -> Vec<u8> {
        match self {
            Protocol::Irc => format!("NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n").into_bytes(),
            _ => self.typed(Kind::Token, json!({"token": token, "req_id": 0})),
        }
    }

    pub fn password_log_in(self, login: &str, digest: &str, req_id: u64) -> Vec<u8> {
        self.typed(
            Kind::LogIn,
            json!({"login": login, "pass": digest, "req_id": req_id}),
        )
    }

    pub fn token_log_in(self, token: &str, req_id: u64) -> Vec<u8> {
        self.typed(Kind::Token, json!({"token": token, "req_id": req_id}))
    }

    pub fn irc_join(room: &str) -> Vec<u8> {
        format!("JOIN {room}\r\n").into_bytes()
    }

    /// A chat message whose text carries its intended send time.
    pub fn message(
        self,
        room_id: i64,
        room: &str,
        stamp_us: u64,
        payload: usize,
        req_id: Option<u64>,
    ) -> Vec<u8> {
        let text = stamped_text(stamp_us, payload);
        match self {
            Protocol::Irc => format!("PRIVMSG {room} :{text}\r\n").into_bytes(),
            // Written directly: the generator sends tens of thousands a
            // second on the server's cores, and the text needs no escaping
            // (`~`, digits, `:` and `x`).
            _ => {
                let kind = match self {
                    Protocol::ParleyInt => Kind::Msg.code().to_string(),
                    _ => format!("\"{}\"", Kind::Msg.name()),
                };
                let req_id = req_id.map_or_else(String::new, |id| format!(",\"req_id\":{id}"));
                format!("{{\"type\":{kind},\"room_id\":{room_id},\"message\":\"{text}\"{req_id}}}\n")
                    .into_bytes()
            }
        }
    }

    /// One of the history scenario's queries, chosen by `k` among `mix`.
    pub fn history_query(self, room_id: i64, k: u64, req_id: u64, mix: QueryMix) -> Vec<u8> {
        let choice = match mix {
            QueryMix::Both => k % 3,
            QueryMix::Pages => k % 2,
            QueryMix::Searches => 2,
        };
        match choice {
            0 => self.typed(Kind::GetNewMsgs, json!({"room_id": room_id, "count": 50, "req_id": req_id})),
            1 => self.typed(
                Kind::OldMsgs,
                json!({"room_id": room_id, "before_id": 1 + (k * 7919) % 100_000, "count": 50, "req_id": req_id}),
            ),
            _ => self.typed(
                Kind::SearchMsgs,
                json!({"room_id": room_id, "msg": SEARCH_WORDS[(k as usize / 3) % SEARCH_WORDS.len()], "req_id": req_id}),
            ),
        }
    }
}

/// Which queries the history scenario makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryMix {
    /// Newest pages, older pages and searches, a third each.
    Both,
    /// Newest and older pages, half each.
    Pages,
    /// Searches only.
    Searches,
}

impl QueryMix {
    pub fn parse(name: &str) -> Option<QueryMix> {
        match name {
            "both" => Some(QueryMix::Both),
            "pages" => Some(QueryMix::Pages),
            "searches" => Some(QueryMix::Searches),
            _ => None,
        }
    }
}

/// Words the history scenario's stored messages contain and its searches look for.
pub const SEARCH_WORDS: [&str; 6] = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];

/// `~<stamp>:` then padding up to `payload` bytes.
pub fn stamped_text(stamp_us: u64, payload: usize) -> String {
    // `~`, not `@`: a text starting "@digits" would name a user (a mention),
    // and the server would look the login up for every message.
    let mut text = format!("~{stamp_us}:");
    while text.len() < payload {
        text.push('x');
    }
    text
}

/// What a line from the server means to the load generator.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// The answer to one of our requests (it carried a `req_id`).
    Reply {
        error: Option<String>,
    },
    /// A chat message sent by the load generator, with its intended send time.
    Delivery {
        stamp_us: u64,
    },
    /// An error not tied to a request.
    Error(String),
    /// IRC: registered; time to join.
    Welcome,
    /// IRC: a JOIN went through.
    Joined,
    /// IRC: a PING to answer with this PONG.
    Ping(Vec<u8>),
    Other,
}

fn stamp_after(line: &[u8], marker: &Finder<'static>) -> Option<u64> {
    let at = marker.find(line)? + marker.needle().len();
    let digits = line[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&line[at..at + digits]).ok()?.parse().ok()
}

/// The markers the hot path looks for, each searched with SIMD (a naive
/// byte-window search was 40% of the load generator's time, more than
/// everything else it does for a delivery).
struct Markers {
    req_id: Finder<'static>,
    error_code: Finder<'static>,
    parley_stamp: Finder<'static>,
    irc_stamp: Finder<'static>,
    error_named: Finder<'static>,
    error_coded: Finder<'static>,
    /// An integer-dialect error whose `type` is the last field.
    error_coded_last: Vec<u8>,
}

static MARKERS: LazyLock<Markers> = LazyLock::new(|| {
    let kind = Kind::ErrorMsg;
    let owned = |s: String| Finder::new(s.as_bytes()).into_owned();
    Markers {
        req_id: Finder::new(b"\"req_id\":"),
        error_code: Finder::new(b"\"error_code\":"),
        parley_stamp: Finder::new(b"\"message\":\"~"),
        irc_stamp: Finder::new(b" :~"),
        error_named: owned(format!("\"type\":\"{}\"", kind.name())),
        error_coded: owned(format!("\"type\":{},", kind.code())),
        error_coded_last: format!("\"type\":{}}}", kind.code()).into_bytes(),
    }
});

/// The `error_code` of an error line, by name, without parsing the whole
/// line (an overloaded server answers tens of thousands a second).
fn error_name(line: &[u8]) -> String {
    let marker = &MARKERS.error_code;
    let Some(at) = marker.find(line) else {
        return "unreadable error".into();
    };
    let rest = &line[at + marker.needle().len()..];
    if let Some(quoted) = rest.strip_prefix(b"\"") {
        return match memchr::memchr(b'"', quoted) {
            Some(end) => String::from_utf8_lossy(&quoted[..end]).into_owned(),
            None => "unreadable error".into(),
        };
    }
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    match std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse::<i64>().ok())
    {
        Some(code) => {
            ErrorCode::from_code(code).map_or_else(|| format!("code {code}"), |c| c.name().to_owned())
        }
        None => "unreadable error".into(),
    }
}

/// Classifies one line (without its line ending).
pub fn classify(protocol: Protocol, line: &[u8]) -> Incoming {
    if protocol == Protocol::Irc {
        return classify_irc(line);
    }
    let m = &*MARKERS;
    let is_error = || {
        m.error_named.find(line).is_some()
            || m.error_coded.find(line).is_some()
            || line.ends_with(&m.error_coded_last)
    };
    if m.req_id.find(line).is_some() {
        return Incoming::Reply {
            error: is_error().then(|| error_name(line)),
        };
    }
    // The hot path: a message someone sent (errors carry `msg`, not `message`).
    if let Some(stamp_us) = stamp_after(line, &m.parley_stamp) {
        return Incoming::Delivery { stamp_us };
    }
    if is_error() {
        return Incoming::Error(error_name(line));
    }
    Incoming::Other
}

fn classify_irc(line: &[u8]) -> Incoming {
    if let Some(rest) = line.strip_prefix(b"PING ") {
        let mut pong = b"PONG ".to_vec();
        pong.extend_from_slice(rest);
        pong.extend_from_slice(b"\r\n");
        return Incoming::Ping(pong);
    }
    let mut words = line.split(|&b| b == b' ');
    let _prefix = words.next();
    match words.next() {
        Some(b"001") => Incoming::Welcome,
        Some(b"JOIN") => Incoming::Joined,
        Some(b"PRIVMSG") => match stamp_after(line, &MARKERS.irc_stamp) {
            Some(stamp_us) => Incoming::Delivery { stamp_us },
            None => Incoming::Other,
        },
        Some(code) if code.len() == 3 && (code[0] == b'4' || code[0] == b'5') => {
            Incoming::Error(format!("IRC {}", String::from_utf8_lossy(code)))
        }
        _ => Incoming::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parley_lines_are_classified() {
        let delivery = br#"{"date":1,"edited":false,"login":"u","message":"~12345:xxxx","message_id":9,"type":"RQ_MSG"}"#;
        assert_eq!(
            classify(Protocol::Parley, delivery),
            Incoming::Delivery { stamp_us: 12345 }
        );
        let reply = br#"{"message":"~77:x","req_id":4,"type":"RQ_MSG"}"#;
        assert_eq!(classify(Protocol::Parley, reply), Incoming::Reply { error: None });
        let err = br#"{"error_code":"ER_RATE_LIMITED","msg":"slow","req_id":4,"type":"RQ_ERROR_MSG"}"#;
        assert_eq!(
            classify(Protocol::Parley, err),
            Incoming::Reply {
                error: Some("ER_RATE_LIMITED".into())
            }
        );
        let int_err = br#"{"error_code":107,"msg":"busy","type":9}"#;
        assert_eq!(
            classify(Protocol::ParleyInt, int_err),
            Incoming::Error("ER_BUSY".into())
        );
        assert_eq!(
            classify(Protocol::Parley, br#"{"type":"RQ_NEW_MEMBER"}"#),
            Incoming::Other
        );
    }

    #[test]
    fn irc_lines_are_classified() {
        assert_eq!(
            classify(Protocol::Irc, b":srv 001 l1 :Welcome"),
            Incoming::Welcome
        );
        assert_eq!(
            classify(Protocol::Irc, b":l1!~l1@localhost JOIN :#r0"),
            Incoming::Joined
        );
        assert_eq!(
            classify(Protocol::Irc, b":l2!~l2@h PRIVMSG #r0 :~999:xx"),
            Incoming::Delivery { stamp_us: 999 }
        );
        assert_eq!(
            classify(Protocol::Irc, b"PING :srv"),
            Incoming::Ping(b"PONG :srv\r\n".to_vec())
        );
        assert_eq!(
            classify(Protocol::Irc, b":srv 433 * l1 :Nickname already in use"),
            Incoming::Error("IRC 433".into())
        );
    }

    #[test]
    fn messages_carry_their_stamp_and_payload_size() {
        let line = Protocol::ParleyInt.message(3, "#r3", 42, 64, Some(7));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["type"], 3);
        assert_eq!(v["message"].as_str().unwrap().len(), 64);
        assert!(v["message"].as_str().unwrap().starts_with("~42:"));
        assert_eq!(v["req_id"], 7);
        assert_eq!(v["room_id"], 3);
        let named: Value = serde_json::from_slice(&Protocol::Parley.message(3, "#r3", 42, 64, None)).unwrap();
        assert_eq!(named["type"], "RQ_MSG");
        assert!(named.get("req_id").is_none());
        let irc = Protocol::Irc.message(3, "#r3", 42, 8, None);
        assert_eq!(irc, b"PRIVMSG #r3 :~42:xxxx\r\n");
        assert_eq!(Protocol::Irc.recipients(10), 9);
        assert_eq!(Protocol::Parley.recipients(10), 10);
    }
}
