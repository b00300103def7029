//! The values a spec carries: [`SecretUrl`] and [`Secret`], which never show their secrets, and
//! [`ByteSize`] (`512MiB`, `10GB`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A service URL that may carry a password or token. `Debug` and `Display` show it redacted
/// (`redis://:***@host:6379`); [`SecretUrl::expose`] gives the real one to the client library.
/// Deserializing checks the shape `scheme://rest`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps `url`, checking it looks like `scheme://rest`.
    pub fn new(url: impl Into<String>) -> Result<Self, String> {
        let url = url.into();
        let ok = url.split_once("://").is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !rest.is_empty()
        });
        if ok {
            Ok(Self(url))
        } else {
            Err(format!(
                "expected a URL like scheme://host:port, got {:?}",
                redact(&url)
            ))
        }
    }

    /// The URL with its secrets, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The scheme (`redis`, `nats`, `postgres`).
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(s, _)| s)
    }

    /// `text` with this URL's password or token replaced by `***` wherever it occurs.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.0, &redact(&self.0));
        for secret in secrets(&self.0) {
            if secret.len() >= 3 {
                out = out.replace(secret, "***");
            }
        }
        out
    }
}

/// The userinfo secret (password, or a bare token) and `password=`/`token=` query values of `url`.
fn secrets(url: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        match userinfo.split_once(':') {
            Some((_, password)) if !password.is_empty() => out.push(password),
            Some(_) => {}
            None if !userinfo.is_empty() => out.push(userinfo),
            None => {}
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                let k = k.to_ascii_lowercase();
                if (k.contains("password") || k.contains("token") || k.contains("secret"))
                    && !v.is_empty()
                {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// `url` with its secrets replaced by `***` (`redis://user:***@host`, `nats://***@host`).
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    for secret in secrets(url) {
        out = out.replace(secret, "***");
    }
    out
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", redact(&self.0))
    }
}

impl FromStr for SecretUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::new(s)
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

/// A secret string from config (a shared key or password). `Debug` and `Display` show
/// `<redacted>`; [`Secret::expose`] gives the value to the code that needs it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A size in bytes written as `512MiB`, `10GB`, `64k` or a bare number of bytes. Decimal units
/// (`kB`, `MB`, `GB`, `TB`) are powers of 1000, binary ones (`KiB`, `MiB`, `GiB`, `TiB`, and `k`,
/// `m`, `g` alone) powers of 1024.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(input: &str) -> Result<Self, String> {
        let s = input.trim();
        let bad = || format!("invalid size {input:?}: expected e.g. 512MiB, 10GB or a byte count");
        let split = s
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000_u64.pow(2),
            "gb" => 1000_u64.pow(3),
            "tb" => 1000_u64.pow(4),
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            _ => return Err(bad()),
        };
        if let Ok(n) = num.parse::<u64>() {
            return n
                .checked_mul(scale)
                .map(ByteSize)
                .ok_or_else(|| format!("invalid size {input:?}: too large"));
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let bytes = n * scale as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
            return Err(format!("invalid size {input:?}: out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::Int(n) => Ok(ByteSize(n)),
        }
    }
}
