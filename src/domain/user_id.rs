use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// A user's id: a UUIDv7, so ids are time-ordered and index-friendly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Uuid);

impl UserId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The `uid` of activation and reset links: URL-safe base64, unpadded, of the hyphenated id.
    pub fn to_uid(self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.hyphenated().to_string())
    }

    /// Reverses [`UserId::to_uid`]; any malformed input is simply `None`.
    pub fn from_uid(uid: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(uid.trim()).ok()?;
        std::str::from_utf8(&bytes).ok()?.parse().ok()
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UserId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_round_trips_and_rejects_garbage() {
        let id = UserId::new();
        let uid = id.to_uid();
        assert!(!uid.contains('=') && !uid.contains('+') && !uid.contains('/'));
        assert_eq!(UserId::from_uid(&uid), Some(id));
        assert_eq!(UserId::from_uid("not-base64!"), None);
        assert_eq!(
            UserId::from_uid(&URL_SAFE_NO_PAD.encode("not a uuid")),
            None
        );
    }
}
