//! The wire protocol: message kinds and codes, request decoding, reply encoding.
//!
//! No sockets and no SQL here. A line becomes a typed [`Request`] through
//! [`decode()`]; a reply or push is an [`Outgoing`] (a kind plus a typed body)
//! that [`Outgoing::encode`] writes in a connection's [`Dialect`].
//!
//! - [`kinds`]: the tables of kinds and error codes, and how coded
//!   enumerations travel in either dialect;
//! - [`requests`]: one type per request kind;
//! - [`decode`](mod@decode): a line into a request, with errors that name the field;
//! - [`replies`]: one type per reply and push body;
//! - [`encode`]: [`Outgoing`], written straight from the typed body.
//!
//! Adding a request kind: its entry in `kinds`, its type and its line of
//! the request table in `requests`, its handler (with its `handler::route`
//! entry), and its client command.

pub mod decode;
pub mod encode;
pub mod kinds;
pub mod replies;
pub mod requests;

pub use crate::compat::Dialect;
pub use decode::{decode, DecodeError};
pub use encode::Outgoing;
pub use kinds::{de_wire, de_wire_opt, ser_wire, ser_wire_opt, ErrorCode, Kind};
pub use replies::*;
pub use requests::*;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Role, RoomType};
    use serde_json::Value;
    use std::time::Duration;

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
            assert_eq!(Role::from_name(role.name()), Some(*role));
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
        let room = RoomBody {
            id: 1,
            name: "DB_ADMIN".into(),
            desc: String::new(),
            customer_id: 1,
            date: 0,
            room_type: RoomType::Global,
            role: Some(Role::Admin),
            power: 0,
            unread: None,
            last_msg_id: None,
            mentions: None,
            peer: None,
        };
        let msg = Outgoing::new(Kind::GetRooms, RoomsBody { rooms: vec![room] });
        let v = msg.to_value(Dialect::Codes);
        assert_eq!(v["type"], 11);
        assert_eq!(v["rooms"][0]["room_type"], 1);
        assert_eq!(v["rooms"][0]["role"], 1);
        assert_eq!(
            v["rooms"][0]["name"], "DB_ADMIN",
            "only enum-valued fields change"
        );
        let v = msg.to_value(Dialect::Names);
        assert_eq!(v["rooms"][0]["room_type"], "DB_GLOBAL_CHAT");
        assert_eq!(v["rooms"][0]["role"], "DB_ADMIN");
    }

    #[test]
    fn empty_bodies_and_retry_hints() {
        assert_eq!(
            Outgoing::empty(Kind::Ping).encode(Dialect::Names, None),
            b"{\"type\":\"RQ_PING\"}\n"
        );
        let id = ReqId(Value::from(7));
        assert_eq!(
            Outgoing::empty(Kind::Ping).encode(Dialect::Codes, Some(&id)),
            b"{\"type\":111,\"req_id\":7}\n"
        );
        let v = Outgoing::rate_limited("slow down", Some(Kind::Msg), Duration::from_micros(10))
            .to_value(Dialect::Names);
        assert_eq!(v["error_code"], "ER_RATE_LIMITED");
        assert_eq!(v["retry_after_ms"], 1, "never 0");
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
