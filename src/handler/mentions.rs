//! Mentions in a message's text: `@login`, as design.md §7 reads them.

/// Most people one message mentions.
pub const MAX_MENTIONS: usize = 50;

/// The logins a text names as `@login` (lowercase, each once, at most
/// [`MAX_MENTIONS`]): an `@` not inside a word, then a login's characters.
pub fn mentioned_logins(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let bytes = text.as_bytes();
    for (at, _) in text.match_indices('@') {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue; // an address, not a mention
        }
        let login: String = text[at + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<String>()
            .to_lowercase();
        if (3..=22).contains(&login.len()) && !found.contains(&login) {
            found.push(login);
            if found.len() == MAX_MENTIONS {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_logins_after_an_at_not_inside_a_word() {
        assert_eq!(
            mentioned_logins("hi @Alice and @bob_2, @alice again"),
            vec!["alice", "bob_2"]
        );
        assert_eq!(
            mentioned_logins("mail me at me@example.org"),
            Vec::<String>::new()
        );
        assert_eq!(mentioned_logins("@ab is too short, @x-y-z fits"), vec!["x-y-z"]);
        let many: String = (0..60).map(|i| format!("@user{i:03} ")).collect();
        assert_eq!(mentioned_logins(&many).len(), MAX_MENTIONS);
    }
}
