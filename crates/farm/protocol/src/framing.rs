//! The stored forms of cached values: a compile result ([`CachedResult`], magic `HGCR`) and a
//! direct-mode entry ([`DirectEntry`], magic `HGCD`), versioned so a format change is a miss, not
//! a misread.
//!
//! ```
//! use hybridgrid_farm_protocol::CachedResult;
//! let r = CachedResult { exit_code: 0, stderr: b"warning: x\n".to_vec(), diag_env: [0; 32], object: b"\x7fELF".to_vec() };
//! assert_eq!(CachedResult::decode(&r.encode()).unwrap(), r);
//! ```

use hybridgrid_core::Digest;

const RESULT_MAGIC: [u8; 4] = *b"HGCR";
const DIRECT_MAGIC: [u8; 4] = *b"HGCD";
const FORMAT_VERSION: u8 = 1;

/// A stored value that cannot be read (the frame checksum passed, so this is a format mismatch).
#[derive(Debug, thiserror::Error)]
#[error("cache value unreadable: {0}")]
pub struct FormatError(&'static str);

/// A successful compile as stored: exit code, what it printed on stderr (under which diagnostics
/// environment) and the object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResult {
    /// Always 0 today (failures are not cached); kept so the format can say otherwise.
    pub exit_code: i32,
    /// The compiler's standard error (warnings), replayed on a hit.
    pub stderr: Vec<u8>,
    /// [`diag_env_digest`] of the compile that printed `stderr`.
    pub diag_env: [u8; 32],
    /// The object file.
    pub object: Vec<u8>,
}

impl CachedResult {
    /// The stored form: magic `HGCR`, version, exit code, diag env, stderr, object.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49 + self.stderr.len() + self.object.len());
        out.extend_from_slice(&RESULT_MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.exit_code.to_le_bytes());
        out.extend_from_slice(&self.diag_env);
        out.extend_from_slice(&(self.stderr.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.stderr);
        out.extend_from_slice(&self.object);
        out
    }

    /// Reads what [`CachedResult::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<CachedResult, FormatError> {
        let mut r = Reader(b);
        if r.take(4)? != RESULT_MAGIC || r.take(1)? != [FORMAT_VERSION] {
            return Err(FormatError("not a compile result of this version"));
        }
        let exit_code = i32::from_le_bytes(r.array()?);
        let diag_env = r.array()?;
        let n = u32::from_le_bytes(r.array()?) as usize;
        let stderr = r.take(n)?.to_vec();
        Ok(CachedResult {
            exit_code,
            stderr,
            diag_env,
            object: r.0.to_vec(),
        })
    }

    /// Whether this result may be served where the diagnostics environment digests to `env`:
    /// always when it printed nothing, else only under the same values.
    pub fn servable_under(&self, env: &[u8; 32]) -> bool {
        self.stderr.is_empty() || &self.diag_env == env
    }
}

/// What a direct-mode manifest entry points to: the result key and the depfile to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectEntry {
    /// Key of the [`CachedResult`].
    pub result: Digest,
    /// The depfile bytes, when the compile writes one.
    pub depfile: Option<Vec<u8>>,
}

impl DirectEntry {
    /// The stored form: magic `HGCD`, version, result key, depfile flag and bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(38 + self.depfile.as_ref().map_or(0, Vec::len));
        out.extend_from_slice(&DIRECT_MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.result.0);
        match &self.depfile {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(d);
            }
            None => out.push(0),
        }
        out
    }

    /// Reads what [`DirectEntry::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<DirectEntry, FormatError> {
        let mut r = Reader(b);
        if r.take(4)? != DIRECT_MAGIC || r.take(1)? != [FORMAT_VERSION] {
            return Err(FormatError("not a direct entry of this version"));
        }
        let result = Digest(r.array()?);
        let depfile = match r.take(1)? {
            [0] if r.0.is_empty() => None,
            [1] => Some(r.0.to_vec()),
            _ => return Err(FormatError("bad depfile flag")),
        };
        Ok(DirectEntry { result, depfile })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError("ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_and_refuse_damage() {
        let d = DirectEntry {
            result: Digest([5; 32]),
            depfile: Some(b"a.o: a.c\n".to_vec()),
        };
        assert_eq!(DirectEntry::decode(&d.encode()).unwrap(), d);
        let n = DirectEntry {
            result: Digest([5; 32]),
            depfile: None,
        };
        assert_eq!(DirectEntry::decode(&n.encode()).unwrap(), n);
        assert!(DirectEntry::decode(&d.encode()[..20]).is_err());
        let r = CachedResult {
            exit_code: 0,
            stderr: vec![],
            diag_env: [1; 32],
            object: vec![9; 100],
        };
        assert_eq!(CachedResult::decode(&r.encode()).unwrap(), r);
        assert!(CachedResult::decode(&r.encode()[..30]).is_err());
        assert!(CachedResult::decode(&n.encode()).is_err());
        assert!(r.servable_under(&[2; 32]), "silent results serve anywhere");
        let w = CachedResult {
            stderr: b"w".to_vec(),
            ..r
        };
        assert!(w.servable_under(&[1; 32]) && !w.servable_under(&[2; 32]));
    }
}
