//! The framed entry format shared by every backend of this crate (disk files and Redis values).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "HGCE"
//!      4     2  format version (little endian), currently 1
//!      6     2  reserved, 0
//!      8     8  payload length in bytes (little endian)
//!     16    32  the key the entry was stored under
//!     48    32  BLAKE3 of the payload
//!     80     n  payload
//! ```
//!
//! A reader checks all of it before it serves a byte: a truncated, extended, corrupted or
//! misplaced entry is a [`Defect`], which backends turn into "drop it, count it, report a miss".

use bytes::Bytes;
use hybridgrid_core::Digest;
use std::fmt;

/// The four bytes every entry starts with.
pub const MAGIC: [u8; 4] = *b"HGCE";
/// The format version written by this crate.
pub const VERSION: u16 = 1;
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
        }
    }
}

/// The header for `payload` stored under `key`.
pub fn header(key: &Digest, payload: &[u8]) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    h[16..48].copy_from_slice(&key.0);
    h[48..80].copy_from_slice(blake3::hash(payload).as_bytes());
    h
}

/// Header followed by payload, as one buffer.
pub fn encode(key: &Digest, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(key, payload));
    out.extend_from_slice(payload);
    out
}

/// Checks `frame` (as written by [`encode`] for `key`) and returns its payload without copying.
pub fn decode(key: &Digest, frame: Bytes) -> Result<Bytes, Defect> {
    if frame.len() < HEADER_LEN {
        return Err(Defect::Truncated { len: frame.len() });
    }
    let h = &frame[..HEADER_LEN];
    if h[0..4] != MAGIC {
        return Err(Defect::BadMagic);
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(Defect::Version(version));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&h[8..16]);
    let announced = u64::from_le_bytes(len);
    let actual = (frame.len() - HEADER_LEN) as u64;
    if announced != actual {
        return Err(Defect::Length {
            header: announced,
            actual,
        });
    }
    if h[16..48] != key.0 {
        return Err(Defect::WrongKey);
    }
    let payload = frame.slice(HEADER_LEN..);
    // Constant-time comparison is not needed here; `blake3::Hash` provides it anyway.
    let mut recorded = [0u8; 32];
    recorded.copy_from_slice(&h[48..80]);
    if blake3::hash(&payload) != blake3::Hash::from_bytes(recorded) {
        return Err(Defect::Checksum);
    }
    Ok(payload)
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
}
