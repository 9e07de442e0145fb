//! Request decoding under arbitrary bytes: an envelope or a refusal, never a
//! panic; a decoded request's reply encodes in both dialects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::compat::Dialect;
use parley::protocol::{decode, Outgoing};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(envelope) => {
            let reply = Outgoing::empty(envelope.kind);
            for dialect in [Dialect::Names, Dialect::Codes] {
                let line = reply.encode(dialect, envelope.req_id.as_ref());
                assert_eq!(line.last(), Some(&b'\n'));
            }
        }
        Err(err) => {
            let reply = Outgoing::error(err.code, err.msg, err.kind);
            let line = reply.encode(Dialect::Codes, err.req_id.as_ref());
            assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok());
        }
    }
});
