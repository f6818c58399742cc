//! HEP auth keys (chunk 14): which secrets are let in, and the name stored
//! in their place, so no row ever holds a secret.
use std::collections::HashMap;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthKeyError {
    #[error("HEP auth key #{0} is empty")]
    Empty(usize),
    #[error("HEP auth key name '{0}' is used twice")]
    DuplicateName(String),
    #[error("HEP auth key #{0} is listed twice")]
    DuplicateSecret(usize),
    #[error(
        "HEP auth key #{0} is {1} characters; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 16`)"
    )]
    TooShort(usize, usize),
}

/// Shorter secrets are refused at start, as API tokens are: they can be guessed.
pub const MIN_SECRET_LEN: usize = 16;

/// The verdict on one packet's auth key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck<'a> {
    /// No keys configured: the packet passes as sent.
    Open,
    /// A configured key: store this name in place of the secret.
    Allowed(&'a str),
    /// Missing or unknown key: counted as rejected, dropped.
    Refused,
}

/// Allowed auth keys; empty = every packet passes, as sent.
#[derive(Clone, Default)]
pub struct AuthKeys {
    /// secret → name
    by_secret: HashMap<String, String>,
}

impl std::fmt::Debug for AuthKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.by_secret.values().collect();
        names.sort();
        write!(f, "AuthKeys{names:?}")
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl AuthKeys {
    /// Entries are `name=secret`, or a bare secret named `key<N>` (N its
    /// position). Blank entries are skipped.
    pub fn new<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, AuthKeyError> {
        let mut by_secret = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, e) in entries.into_iter().enumerate() {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            let n = i + 1;
            let (name, secret) = match e.split_once('=') {
                Some((name, secret)) if is_name(name) => (name.to_owned(), secret),
                _ => (format!("key{n}"), e),
            };
            if secret.is_empty() {
                return Err(AuthKeyError::Empty(n));
            }
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(AuthKeyError::TooShort(n, secret.chars().count()));
            }
            if !names.insert(name.clone()) {
                return Err(AuthKeyError::DuplicateName(name));
            }
            if by_secret.insert(secret.to_owned(), name).is_some() {
                return Err(AuthKeyError::DuplicateSecret(n));
            }
        }
        Ok(Self { by_secret })
    }

    /// Keys from a file: one entry per line, `#` comments.
    pub fn parse_file(text: &str) -> Result<Self, AuthKeyError> {
        Self::new(
            text.lines()
                .map(|l| l.split('#').next().unwrap_or_default()),
        )
    }

    pub fn merged(mut self, other: AuthKeys) -> Result<Self, AuthKeyError> {
        for (secret, name) in other.by_secret {
            if self.by_secret.values().any(|n| *n == name) {
                return Err(AuthKeyError::DuplicateName(name));
            }
            self.by_secret.insert(secret, name);
        }
        Ok(self)
    }

    pub fn is_empty(&self) -> bool {
        self.by_secret.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_secret.len()
    }

    /// What becomes of a packet carrying `presented`.
    pub fn check(&self, presented: Option<&str>) -> KeyCheck<'_> {
        if self.by_secret.is_empty() {
            return KeyCheck::Open;
        }
        match presented.and_then(|p| self.by_secret.get(p)) {
            Some(name) => KeyCheck::Allowed(name),
            None => KeyCheck::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_secrets_and_refusals() {
        let k = AuthKeys::new([
            "edge=s3cret-of-the-edge",
            "plain-secret-of-16",
            "",
            "x y=z-and-more-to-be-long",
        ])
        .unwrap();
        assert_eq!(k.len(), 3);
        assert_eq!(
            k.check(Some("s3cret-of-the-edge")),
            KeyCheck::Allowed("edge")
        );
        assert_eq!(
            k.check(Some("plain-secret-of-16")),
            KeyCheck::Allowed("key2")
        );
        // "x y" is no name: the whole entry is the secret.
        assert_eq!(
            k.check(Some("x y=z-and-more-to-be-long")),
            KeyCheck::Allowed("key4")
        );
        assert_eq!(k.check(Some("edge")), KeyCheck::Refused);
        assert_eq!(k.check(None), KeyCheck::Refused);
        assert_eq!(AuthKeys::default().check(Some("any")), KeyCheck::Open);
        assert_eq!(
            AuthKeys::new(["a=0123456789abcdef", "a=0123456789abcdeF"]).unwrap_err(),
            AuthKeyError::DuplicateName("a".into())
        );
        assert_eq!(AuthKeys::new(["a="]).unwrap_err(), AuthKeyError::Empty(1));
        assert_eq!(
            AuthKeys::new(["", "edge=s3cret"]).unwrap_err(),
            AuthKeyError::TooShort(2, 6)
        );
        let f = AuthKeys::parse_file(
            "# keys\nedge=s3cret-of-the-edge # the edge\n\ncore=other-secret-of-core\n",
        )
        .unwrap();
        assert_eq!(
            f.check(Some("other-secret-of-core")),
            KeyCheck::Allowed("core")
        );
        assert_eq!(
            f.check(Some("s3cret-of-the-edge")),
            KeyCheck::Allowed("edge")
        );
    }
}
