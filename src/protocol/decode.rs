//! Decoding one line into a request.
//!
//! Requests cannot be decoded by serde's tagged enums alone: `type` is a name
//! or a code, and old clients send `type` twice in a new-room request. So the
//! line is first read into its `type` values plus the other fields, the kind
//! is looked up in one table ([`Kind`]), and the fields are then deserialized
//! into that kind's own struct, with errors that name the field.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::kinds::{ErrorCode, Kind};
use super::requests::{Envelope, ReqId, Request};

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

    let request =
        Request::from_fields(kind, fields).map_err(|msg| fail(msg, Some(kind), Some(type_was_code)))?;

    Ok(Envelope {
        kind,
        req_id,
        type_was_code,
        request,
    })
}
