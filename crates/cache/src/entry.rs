//! The framed entry format shared by every backend of this crate (disk files and Redis values).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "HGCE"
//!      4     2  format version (little endian): 1 checksummed, 2 authenticated
//!      6     2  reserved, 0
//!      8     8  payload length in bytes (little endian)
//!     16    32  the key the entry was stored under
//!     48    32  version 1: BLAKE3 of the payload
//!               version 2: BLAKE3 keyed hash (the tier's MAC key) of bytes 0..48 + payload
//!     80     n  payload
//! ```
//!
//! A reader checks all of it before it serves a byte: a truncated, extended, corrupted or
//! misplaced entry is a [`Defect`], which backends turn into "drop it, count it, report a miss".
//!
//! Version 2 is for shared tiers ([`Integrity::Mac`]): anyone who can write the server can write
//! a version-1 entry with a valid checksum, but only holders of the farm's secret can write an
//! entry that a reader with the same secret accepts. The MAC covers the header (key and length
//! included), so an entry cannot be moved to another key or cut short either.

use bytes::Bytes;
use hybridgrid_core::Digest;
use std::fmt;

/// The four bytes every entry starts with.
pub const MAGIC: [u8; 4] = *b"HGCE";
/// The format version of checksummed entries ([`Integrity::Checksum`]).
pub const VERSION: u16 = 1;
/// The format version of authenticated entries ([`Integrity::Mac`]).
pub const VERSION_MAC: u16 = 2;

/// How an entry's last header field protects it.
#[derive(Clone, PartialEq, Eq)]
pub enum Integrity {
    /// A plain BLAKE3 of the payload: detects damage, not forgery (local disk).
    Checksum,
    /// A BLAKE3 keyed hash under this 32-byte key: detects forgery by anyone without the key.
    Mac([u8; 32]),
}

impl Integrity {
    /// The MAC key derived from a farm's shared secret (`cache.shared_secret`), with BLAKE3's
    /// key derivation under a fixed context string.
    pub fn from_secret(secret: &str) -> Integrity {
        Integrity::Mac(blake3::derive_key(
            "hybridgrid 2026-12 shared compile cache entry MAC",
            secret.as_bytes(),
        ))
    }
}

impl fmt::Debug for Integrity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Integrity::Checksum => f.write_str("Checksum"),
            Integrity::Mac(_) => f.write_str("Mac(<key redacted>)"),
        }
    }
}
/// Size of the header in front of the payload.
pub const HEADER_LEN: usize = 80;

/// Why a stored entry was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Defect {
    /// Shorter than a header.
    Truncated {
        /// Bytes found.
        len: usize,
    },
    /// The magic is not `HGCE`.
    BadMagic,
    /// A format version this build does not read.
    Version(u16),
    /// The header's payload length does not match the bytes present.
    Length {
        /// Length announced by the header.
        header: u64,
        /// Payload bytes present.
        actual: u64,
    },
    /// The entry was written for another key.
    WrongKey,
    /// The payload does not hash to the recorded BLAKE3.
    Checksum,
    /// The keyed MAC does not verify: forged, altered, or written with another secret.
    Forged,
    /// A checksummed (unauthenticated) entry where this reader requires a MAC.
    Unsigned,
    /// An authenticated entry, but this reader has no secret to check it with.
    NoSecret,
}

impl Defect {
    /// Whether the defect is a failed authentication (counted as forged, never deleted by the
    /// reader: the entry may be valid for holders of another secret, and a read-only client
    /// could not delete it anyway) rather than damage.
    pub fn is_authentication(&self) -> bool {
        matches!(self, Defect::Forged | Defect::Unsigned | Defect::NoSecret)
    }
}

impl fmt::Display for Defect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Defect::Truncated { len } => write!(
                f,
                "truncated: {len} bytes, shorter than the {HEADER_LEN}-byte header"
            ),
            Defect::BadMagic => f.write_str("bad magic"),
            Defect::Version(v) => {
                write!(f, "unknown format version {v} (this build reads {VERSION})")
            }
            Defect::Length { header, actual } => {
                write!(
                    f,
                    "header announces {header} payload bytes, {actual} present"
                )
            }
            Defect::WrongKey => f.write_str("entry was written for another key"),
            Defect::Checksum => f.write_str("payload BLAKE3 mismatch"),
            Defect::Forged => f.write_str(
                "MAC does not verify (forged or altered, or written with another cache.shared_secret)",
            ),
            Defect::Unsigned => {
                f.write_str("entry carries no MAC, and this reader requires one (cache.shared_secret)")
            }
            Defect::NoSecret => f.write_str(
                "entry carries a MAC, and this reader has no cache.shared_secret to check it",
            ),
        }
    }
}

/// The header for `payload` stored under `key` (checksummed, version 1).
pub fn header(key: &Digest, payload: &[u8]) -> [u8; HEADER_LEN] {
    header_with(&Integrity::Checksum, key, payload)
}

/// The header for `payload` stored under `key`, protected as `integrity` says.
pub fn header_with(integrity: &Integrity, key: &Digest, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    let version = match integrity {
        Integrity::Checksum => VERSION,
        Integrity::Mac(_) => VERSION_MAC,
    };
    h[4..6].copy_from_slice(&version.to_le_bytes());
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[16..48].copy_from_slice(&key.0);
    let tag = match integrity {
        Integrity::Checksum => blake3::hash(payload),
        Integrity::Mac(k) => mac(k, &h[..48], payload),
    };
    h[48..80].copy_from_slice(tag.as_bytes());
    h
}

fn mac(key: &[u8; 32], head: &[u8], payload: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(head);
    hasher.update(payload);
    hasher.finalize()
}

/// Header followed by payload, as one buffer (checksummed, version 1).
pub fn encode(key: &Digest, payload: &[u8]) -> Vec<u8> {
    encode_with(&Integrity::Checksum, key, payload)
}

/// Header followed by payload, as one buffer, protected as `integrity` says.
pub fn encode_with(integrity: &Integrity, key: &Digest, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header_with(integrity, key, payload));
    out.extend_from_slice(payload);
    out
}

/// Checks a checksummed `frame` (as written by [`encode`] for `key`) and returns its payload
/// without copying.
pub fn decode(key: &Digest, frame: Bytes) -> Result<Bytes, Defect> {
    decode_with(&Integrity::Checksum, key, frame)
}

/// Checks `frame` for `key` as `integrity` requires and returns its payload without copying.
/// With [`Integrity::Mac`] only a version-2 entry whose MAC verifies is accepted; with
/// [`Integrity::Checksum`] only a version-1 entry whose checksum matches.
pub fn decode_with(integrity: &Integrity, key: &Digest, frame: Bytes) -> Result<Bytes, Defect> {
    if frame.len() < HEADER_LEN {
        return Err(Defect::Truncated { len: frame.len() });
    }
    let h = &frame[..HEADER_LEN];
    if h[0..4] != MAGIC {
        return Err(Defect::BadMagic);
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    match (integrity, version) {
        (Integrity::Checksum, VERSION) | (Integrity::Mac(_), VERSION_MAC) => {}
        (Integrity::Mac(_), VERSION) => return Err(Defect::Unsigned),
        (Integrity::Checksum, VERSION_MAC) => return Err(Defect::NoSecret),
        (_, v) => return Err(Defect::Version(v)),
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[8..16]);
    let announced = u64::from_le_bytes(len);
    let actual = (frame.len() - HEADER_LEN) as u64;
    if announced != actual {
        return Err(match integrity {
            // Unauthenticated bytes: name nothing more specific than "not ours".
            Integrity::Mac(_) => Defect::Forged,
            Integrity::Checksum => Defect::Length {
                header: announced,
                actual,
            },
        });
    }
    if h[16..48] != key.0 {
        return Err(match integrity {
            Integrity::Mac(_) => Defect::Forged,
            Integrity::Checksum => Defect::WrongKey,
        });
    }
    let payload = frame.slice(HEADER_LEN..);
    let mut recorded = [0u8; 32];
    recorded.copy_from_slice(&h[48..80]);
    // `blake3::Hash` compares in constant time.
    let recorded = blake3::Hash::from_bytes(recorded);
    match integrity {
        Integrity::Checksum if blake3::hash(&payload) != recorded => Err(Defect::Checksum),
        Integrity::Mac(k) if mac(k, &h[..48], &payload) != recorded => Err(Defect::Forged),
        _ => Ok(payload),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(b: u8) -> Digest {
        Digest([b; 32])
    }

    #[test]
    fn round_trip() {
        for payload in [&b""[..], b"x", &[7u8; 10_000]] {
            let frame = Bytes::from(encode(&key(1), payload));
            assert_eq!(frame.len(), HEADER_LEN + payload.len());
            assert_eq!(decode(&key(1), frame).unwrap(), payload);
        }
    }

    #[test]
    fn every_defect_is_named() {
        let good = encode(&key(1), b"hello world");
        let check = |bytes: Vec<u8>| decode(&key(1), Bytes::from(bytes)).unwrap_err();

        assert_eq!(check(good[..10].to_vec()), Defect::Truncated { len: 10 });
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(check(b), Defect::BadMagic);
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(check(b), Defect::Version(9));
        assert_eq!(
            check(good[..good.len() - 1].to_vec()),
            Defect::Length {
                header: 11,
                actual: 10
            }
        );
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            check(b),
            Defect::Length {
                header: 11,
                actual: 12
            }
        );
        assert_eq!(
            decode(&key(2), Bytes::from(good.clone())).unwrap_err(),
            Defect::WrongKey
        );
        let mut b = good.clone();
        *b.last_mut().unwrap() ^= 1;
        assert_eq!(check(b), Defect::Checksum);
    }

    #[test]
    fn only_the_secret_holder_writes_what_a_mac_reader_accepts() {
        let farm = Integrity::from_secret("the farm's secret");
        let other = Integrity::from_secret("another secret");
        let good = encode_with(&farm, &key(1), b"object");
        assert_eq!(
            decode_with(&farm, &key(1), Bytes::from(good.clone())).unwrap(),
            &b"object"[..]
        );
        // An attacker without the secret: a well-formed checksummed entry, or a MAC under
        // another key, or a real entry altered, moved or cut.
        let check = |b: Vec<u8>| decode_with(&farm, &key(1), Bytes::from(b)).unwrap_err();
        assert_eq!(check(encode(&key(1), b"evil")), Defect::Unsigned);
        assert_eq!(check(encode_with(&other, &key(1), b"evil")), Defect::Forged);
        let mut b = good.clone();
        *b.last_mut().unwrap() ^= 1;
        assert_eq!(check(b), Defect::Forged);
        let mut b = good.clone();
        b[20] ^= 1;
        assert_eq!(check(b), Defect::Forged);
        assert_eq!(check(good[..good.len() - 1].to_vec()), Defect::Forged);
        let mut forged_header = good.clone();
        forged_header[48..80].copy_from_slice(blake3::hash(b"object").as_bytes());
        assert_eq!(check(forged_header), Defect::Forged);
        // A reader without the secret cannot check it, so it refuses it too.
        assert_eq!(
            decode(&key(1), Bytes::from(good)).unwrap_err(),
            Defect::NoSecret
        );
        assert!(Defect::Forged.is_authentication() && !Defect::Checksum.is_authentication());
        assert_eq!(format!("{farm:?}"), "Mac(<key redacted>)");
    }
}
