//! Field validation shared by the handlers: lengths in characters, trimming.

use crate::error::{Error, Result};

/// Longest user display name, in characters.
pub const MAX_USER_NAME_CHARS: usize = 64;
/// Longest user or room description, in characters.
pub const MAX_DESC_CHARS: usize = 800;

/// `^[a-z0-9_-]{3,22}$`
pub fn login(login: &str) -> Result<()> {
    let ok = (3..=22).contains(&login.len())
        && login
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "login must be 3 to 22 characters of a-z, 0-9, '_' and '-'",
        ))
    }
}

/// Trims `text` and checks it holds `min..=max` characters.
pub fn trimmed<'a>(field: &str, text: &'a str, min: usize, max: usize) -> Result<&'a str> {
    let text = text.trim();
    let n = text.chars().count();
    if n < min || n > max {
        return Err(Error::bad_request(if min > 0 {
            format!("{field} must be {min} to {max} characters")
        } else {
            format!("{field} must be at most {max} characters")
        }));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins() {
        assert!(login("bob").is_ok());
        assert!(login("a_b-9").is_ok());
        assert!(login("ab").is_err());
        assert!(login("Bob").is_err());
        assert!(login(&"a".repeat(23)).is_err());
        assert!(login("bö b").is_err());
    }

    #[test]
    fn lengths_count_characters_after_trimming() {
        assert_eq!(trimmed("name", "  é  ", 1, 1).unwrap(), "é");
        assert!(trimmed("name", "   ", 1, 5).is_err());
        assert!(trimmed("desc", "", 0, 5).is_ok());
    }
}
