//! Bearer tokens for gRPC and HTTP, and bounding what peers say before it is logged.
//!
//! ```
//! use hybridgrid_transport::auth::{TokenSet, sanitize};
//! let set = TokenSet::new(["s3cret"]);
//! assert!(set.check(Some("Bearer s3cret")).is_ok());
//! assert!(set.check(Some("Bearer guess")).unwrap_err().contains("not accepted"));
//! assert!(set.check(None).unwrap_err().contains("requires a token"));
//! assert_eq!(sanitize("w1\n[fake] log line", 64), "w1?[fake] log line");
//! assert_eq!(sanitize(&"x".repeat(100), 8).chars().count(), 9);
//! ```

/// The metadata / header name that carries a token.
pub const AUTHORIZATION: &str = "authorization";

/// Accepted tokens, kept as BLAKE3 hashes (compared in constant time, never logged).
#[derive(Clone, Default)]
pub struct TokenSet {
    hashes: Vec<blake3::Hash>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSet({} tokens)", self.hashes.len())
    }
}

impl TokenSet {
    /// The set of `tokens` (empty strings are ignored).
    pub fn new<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self {
            hashes: tokens
                .into_iter()
                .filter(|t| !t.as_ref().is_empty())
                .map(|t| blake3::hash(t.as_ref().as_bytes()))
                .collect(),
        }
    }

    /// Whether any token is configured.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Checks an `authorization` value (`Bearer <token>`); the error says what is wrong without
    /// repeating the value.
    pub fn check(&self, header: Option<&str>) -> Result<(), String> {
        let Some(value) = header else {
            return Err("this endpoint requires a token (authorization: Bearer <token>)".into());
        };
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                "the authorization value is not of the form \"Bearer <token>\"".to_owned()
            })?;
        let h = blake3::hash(token.trim().as_bytes());
        // `blake3::Hash` compares in constant time.
        if self
            .hashes
            .iter()
            .fold(false, |hit, known| hit | (*known == h))
        {
            Ok(())
        } else {
            Err("the token was not accepted".into())
        }
    }
}

/// A client interceptor that adds `authorization: Bearer <token>` to every call (or nothing).
#[derive(Clone, Default)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(***)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    /// Sends `token` with every call; `None` or empty sends nothing. The error says why a
    /// token cannot be sent (without repeating it).
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(Self(None)),
            Some(t) => {
                let mut v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                    format!("Bearer {t}").parse().map_err(|_| {
                        "the token must be printable ASCII without spaces".to_owned()
                    })?;
                v.set_sensitive(true);
                Ok(Self(Some(v)))
            }
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// `s` made safe to log: control characters (newlines, escapes) replaced with `?`, and cut to
/// `max` characters (marked with `…`), so a peer cannot forge log lines or flood the log.
pub fn sanitize(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tokens_are_never_accepted() {
        let set = TokenSet::new(["", "a"]);
        assert!(set.check(Some("Bearer ")).is_err());
        assert!(set.check(Some("Bearer a")).is_ok());
        assert!(TokenSet::new([""]).is_empty());
    }

    #[test]
    fn sanitize_is_char_safe() {
        assert_eq!(sanitize("héllo", 2), "hé…");
        assert_eq!(sanitize("\u{1b}[31m", 10), "?[31m");
    }
}
