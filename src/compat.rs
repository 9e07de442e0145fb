//! The rules old uchat clients depend on, kept in one place (design.md §3).
//!
//! The uchat GTK client is the reference: it speaks integer codes, exits on a
//! message type it does not know, checks the token's form, and reads `power`
//! and member `id` fields. Each rule it relies on is a function or constant
//! here, so that nobody breaks one by accident somewhere else:
//!
//! - the first request fixes a connection's dialect ([`dialect_for_first_request`]);
//! - unsolicited pushes with Parley's own codes reach an integer-dialect
//!   connection only once it has used such a code itself ([`push_allowed`]);
//! - tokens are 64 lowercase hex characters followed by the login
//!   ([`format_token`], [`split_token`]);
//! - room, message and edit objects carry `power`, member objects carry `id`,
//!   and string fields are never null (the object types in `protocol`);
//! - history pages are newest first (`store`'s history queries);
//! - it accepts error codes 0 to 2 only ([`old_client_error`]);
//! - a room search lists no room it is in ([`search_lists_own_rooms`]);
//! - a file message's text is `<message id>__<file name>` ([`file_message_text`]);
//! - `power` is bytes of text: a message's own, a room's summed, and the
//!   room's new figure pushed as RQ_UPD_ROOM_POWR ([`message_power`],
//!   [`push_allowed`]).
//!
//! The log-in timeout that lets a person sit at the client's log-in dialog
//! is a setting (`login_timeout_ms`, 15 minutes by default), not a rule here.

/// The language a connection is answered in, fixed by its first request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Symbolic names: `"type":"RQ_MSG"`, `"error_code":"ER_NOT_FOUND"`.
    Names,
    /// The original integer codes: `"type":3`, `"error_code":103`.
    Codes,
}

/// Codes from here up are Parley's additions, unknown to old clients.
pub const FIRST_PARLEY_CODE: i64 = 100;

/// The dialect a connection takes from its first request: integers if that
/// request gave `type` as an integer, names otherwise.
pub fn dialect_for_first_request(type_was_code: bool) -> Dialect {
    if type_was_code {
        Dialect::Codes
    } else {
        Dialect::Names
    }
}

/// `RQ_UPD_ROOM_POWR`: a room's new power, for old clients only.
pub const UPD_ROOM_POWR: i64 = 17;

/// Whether an unsolicited push of the given code may go to a connection.
///
/// Name-dialect connections get every push but RQ_UPD_ROOM_POWR (they read
/// `power` from room and message objects and need no second line per
/// message). An integer-dialect connection gets a push with a Parley code
/// only after it sent such a code itself, because the uchat client exits on
/// any type it does not know. Direct replies are not pushes and are always
/// sent.
pub fn push_allowed(dialect: Dialect, used_parley_codes: bool, push_code: i64) -> bool {
    match dialect {
        Dialect::Names => push_code != UPD_ROOM_POWR,
        Dialect::Codes => used_parley_codes || push_code < FIRST_PARLEY_CODE,
    }
}

/// A message's `power`: the byte length of its text. A room's is the sum
/// over its stored messages (kept by the database's triggers).
pub fn message_power(text: &str) -> i64 {
    text.len() as i64
}

/// A file message's `message` text as a connection of `dialect` reads it.
/// The uchat client shows the text after the first `__` as the file's name,
/// so old clients get `<message id>__<name>` (the id makes it unique, and a
/// name holding `__` itself survives); name-dialect clients get the name.
pub fn file_message_text(dialect: Dialect, message_id: i64, name: &str) -> std::borrow::Cow<'_, str> {
    match dialect {
        Dialect::Names => std::borrow::Cow::Borrowed(name),
        Dialect::Codes => std::borrow::Cow::Owned(format!("{message_id}__{name}")),
    }
}

/// The request codes of signing up, logging in and resuming: the requests
/// whose refusals an old client shows (in codes 0 to 2).
const ACCOUNT_REQUESTS: [i64; 3] = [0, 1, 2];

/// `ER_AUTH_DATA`: the closest of the old codes to any refused log-in.
const ER_AUTH_DATA: i64 = 0;

/// The highest error code the uchat client knows (it exits on others).
const LAST_OLD_ERROR: i64 = 2;

/// Which error code an integer-dialect connection that never used a Parley
/// code may be told, given the error's `code` and the `request` it answers:
/// the code itself when the client knows it; for a refused sign-up, log-in
/// or resume, ER_AUTH_DATA (the reason stays in `msg`); for anything else,
/// nothing (`None`: the old server sent no error there either, and the
/// client would exit on an unknown code). Other connections get every code.
pub fn old_client_error(
    dialect: Dialect,
    used_parley_codes: bool,
    code: i64,
    request: Option<i64>,
) -> Option<i64> {
    if dialect == Dialect::Names || used_parley_codes || code <= LAST_OLD_ERROR {
        return Some(code);
    }
    match request {
        Some(r) if ACCOUNT_REQUESTS.contains(&r) => Some(ER_AUTH_DATA),
        _ => None,
    }
}

/// Whether a room search lists the rooms the caller already belongs to.
/// Integer-dialect (old) clients get only rooms they could join: the old
/// server's rule, since the uchat client adds a second copy of a room it
/// joins again. Name-dialect clients get them, marked with their role.
pub fn search_lists_own_rooms(dialect: Dialect) -> bool {
    dialect == Dialect::Names
}

/// Length of the random part of a token, in hex characters.
pub const TOKEN_HEX_LEN: usize = 64;

/// A token as the client sees it: the random part in lowercase hex, then the login.
pub fn format_token(random: &[u8; 32], login: &str) -> String {
    let mut token = hex::encode(random);
    token.push_str(login);
    token
}

/// Splits a client's token into its random bytes and the login after them.
/// `None` when the token does not have the documented form.
pub fn split_token(token: &str) -> Option<([u8; 32], &str)> {
    if token.len() <= TOKEN_HEX_LEN || !token.is_char_boundary(TOKEN_HEX_LEN) {
        return None;
    }
    let (hex_part, login) = token.split_at(TOKEN_HEX_LEN);
    if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut random = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut random).ok()?;
    Some((random, login))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        let random = [0xabu8; 32];
        let token = format_token(&random, "alice");
        assert_eq!(token.len(), 64 + 5);
        assert!(token[..64]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(split_token(&token), Some((random, "alice")));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        assert_eq!(split_token(""), None);
        assert_eq!(split_token(&"a".repeat(64)), None, "no login");
        assert_eq!(split_token(&format!("{}bob", "A".repeat(64))), None);
        assert_eq!(split_token(&format!("{}bob", "g".repeat(64))), None);
        assert_eq!(split_token(&format!("{}é{}", "a".repeat(63), "bob")), None);
    }

    #[test]
    fn room_power_pushes_go_to_old_clients_only() {
        assert!(push_allowed(Dialect::Codes, false, UPD_ROOM_POWR));
        assert!(!push_allowed(Dialect::Names, false, UPD_ROOM_POWR));
        assert!(!push_allowed(Dialect::Codes, false, 110));
        assert!(push_allowed(Dialect::Codes, true, 110));
        assert!(push_allowed(Dialect::Names, false, 110));
    }

    #[test]
    fn file_names_follow_the_first_double_underscore_for_old_clients() {
        let text = file_message_text(Dialect::Codes, 42, "a__b.txt");
        assert_eq!(text, "42__a__b.txt");
        assert_eq!(text.split_once("__").map(|(_, name)| name), Some("a__b.txt"));
        assert_eq!(file_message_text(Dialect::Names, 42, "a.txt"), "a.txt");
        assert_eq!(message_power("héllo"), 6);
    }

    #[test]
    fn old_clients_get_only_the_error_codes_they_know() {
        // A throttled log-in (105) becomes ER_AUTH_DATA; a refused message is withheld.
        assert_eq!(old_client_error(Dialect::Codes, false, 105, Some(0)), Some(0));
        assert_eq!(old_client_error(Dialect::Codes, false, 100, Some(2)), Some(0));
        assert_eq!(old_client_error(Dialect::Codes, false, 1, Some(1)), Some(1));
        assert_eq!(old_client_error(Dialect::Codes, false, 103, Some(3)), None);
        assert_eq!(old_client_error(Dialect::Codes, false, 100, None), None);
        // Clients that speak Parley's codes, or names, get every code.
        assert_eq!(old_client_error(Dialect::Codes, true, 103, Some(3)), Some(103));
        assert_eq!(old_client_error(Dialect::Names, false, 103, Some(3)), Some(103));
    }

    #[test]
    fn old_clients_never_see_unknown_pushes() {
        assert!(push_allowed(Dialect::Names, false, 110));
        assert!(push_allowed(Dialect::Codes, false, 21));
        assert!(!push_allowed(Dialect::Codes, false, 110));
        assert!(push_allowed(Dialect::Codes, true, 110));
    }
}
