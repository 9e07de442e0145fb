//! Passwords and tokens: Argon2id hashing and random session tokens.
//!
//! Clients send the SHA-256 of the password (64 hex characters); the server
//! stores only an Argon2id hash of that with a per-user salt, so a stolen
//! database gives neither passwords nor anything that logs in. Tokens are 32
//! random bytes from the OS, and only their SHA-256 is stored.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::compat;

/// Hashes and verifies passwords with fixed Argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// A hash verified for unknown logins, so that they take as long as known ones.
    decoy: String,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32, iterations: u32) -> Result<PasswordHasher, String> {
        let params =
            Params::new(memory_kib, iterations, 1, None).map_err(|e| format!("argon2 parameters: {e}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut hasher = PasswordHasher {
            argon2,
            decoy: String::new(),
        };
        hasher.decoy = hasher.hash(&"0".repeat(64))?;
        Ok(hasher)
    }

    /// An Argon2id PHC string of the client's password digest, with a fresh salt.
    pub fn hash(&self, client_digest: &str) -> Result<String, String> {
        self.argon2
            .hash_password(client_digest.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| format!("argon2 hash: {e}"))
    }

    /// Whether the digest matches a stored PHC string.
    pub fn verify(&self, client_digest: &str, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(parsed) => self
                .argon2
                .verify_password(client_digest.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Spends the time of one verification, for a login that does not exist.
    pub fn verify_decoy(&self, client_digest: &str) {
        let _ = self.verify(client_digest, &self.decoy);
    }
}

/// Whether a client's password field has the required form: 64 hex characters.
pub fn is_password_digest(pass: &str) -> bool {
    pass.len() == 64 && pass.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh token for `login`: the string for the client and the hash to store.
pub fn new_token(login: &str) -> Result<(String, [u8; 32]), String> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| format!("OS randomness: {e}"))?;
    Ok((compat::format_token(&random, login), token_hash(&random)))
}

/// What is stored for a token: the SHA-256 of its random part.
pub fn token_hash(random: &[u8; 32]) -> [u8; 32] {
    Sha256::digest(random).into()
}

/// Splits a client's token into the stored hash to look up and its login.
pub fn parse_token(token: &str) -> Option<([u8; 32], &str)> {
    compat::split_token(token).map(|(random, login)| (token_hash(&random), login))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_same_digest() {
        let hasher = PasswordHasher::new(1024, 1).unwrap();
        let digest = "a".repeat(64);
        let stored = hasher.hash(&digest).unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(hasher.verify(&digest, &stored));
        assert!(!hasher.verify(&"b".repeat(64), &stored));
        assert!(!hasher.verify(&digest, "garbage"));
        assert_ne!(stored, hasher.hash(&digest).unwrap(), "salt differs per hash");
    }

    #[test]
    fn tokens_are_unique_and_parse_back() {
        let (a, hash_a) = new_token("bob").unwrap();
        let (b, _) = new_token("bob").unwrap();
        assert_ne!(a, b);
        assert_eq!(parse_token(&a), Some((hash_a, "bob")));
    }
}
