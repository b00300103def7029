//! Making a farm CA and issuing certificates from it (rcgen), so nobody needs openssl recipes:
//! `hg-coord cert init` and `hg-coord cert issue` are thin wrappers, and the TLS tests make their
//! certificates (expired ones, other CAs) with the same functions.
//!
//! ```
//! use hybridgrid_transport::tls::{certgen, Role};
//! let ca = certgen::new_ca("test farm", 30).unwrap();
//! let leaf = certgen::issue(&ca, Role::Worker, "w1", &["127.0.0.1".into()], certgen::Validity::days(30)).unwrap();
//! assert!(leaf.cert_pem.contains("BEGIN CERTIFICATE"));
//! ```

use super::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::Path;
use time::{Duration, OffsetDateTime};

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    /// rcgen refused the parameters or the CA material.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A value is unusable.
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pair {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (keep it secret).
    pub key_pem: String,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clock skew) to `days` days from now.
    pub fn days(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - Duration::hours(1),
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    /// A window that ended `ago` before now (for tests of expired certificates).
    pub fn expired(ago: std::time::Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        let ago = Duration::try_from(ago).unwrap_or(Duration::days(1));
        Self {
            not_before: now - ago - Duration::days(1),
            not_after: now - ago,
        }
    }
}

fn dn(params: &mut CertificateParams, cn: &str, ou: &str) {
    params
        .distinguished_name
        .push(DnType::OrganizationName, "hybridgrid farm");
    params
        .distinguished_name
        .push(DnType::OrganizationalUnitName, ou);
    params.distinguished_name.push(DnType::CommonName, cn);
}

/// A new self-signed farm CA named `name`, valid for `days` days.
pub fn new_ca(name: &str, days: u32) -> Result<Pair, CertGenError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    dn(&mut params, name, "ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let v = Validity::days(days);
    params.not_before = v.not_before;
    params.not_after = v.not_after;
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `role` `name` from `ca`, valid for the DNS names / IP addresses in
/// `hosts` (needed for servers: the coordinator, and workers the coordinator dials).
pub fn issue(
    ca: &Pair,
    role: Role,
    name: &str,
    hosts: &[String],
    validity: Validity,
) -> Result<Pair, CertGenError> {
    if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control() || c == ':') {
        return Err(CertGenError::Invalid(format!(
            "certificate name {name:?} must be 1-128 printable characters without ':'"
        )));
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for h in hosts {
        let san = match h.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                h.clone()
                    .try_into()
                    .map_err(|e| CertGenError::Invalid(format!("host {h:?}: {e}")))?,
            ),
        };
        params.subject_alt_names.push(san);
    }
    dn(&mut params, name, role.as_str());
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Pair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `pair` as `<dir>/<stem>.crt` and `<dir>/<stem>.key` (the key readable by its owner only);
/// refuses to overwrite existing files.
pub fn write_pair(dir: &Path, stem: &str, pair: &Pair) -> Result<(), CertGenError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|source| CertGenError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    for (ext, text, mode) in [
        ("crt", &pair.cert_pem, 0o644),
        ("key", &pair.key_pem, 0o600),
    ] {
        let path = dir.join(format!("{stem}.{ext}"));
        let io = |source| CertGenError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
    }
    Ok(())
}

/// Reads `<dir>/<stem>.crt` and `<dir>/<stem>.key`.
pub fn read_pair(dir: &Path, stem: &str) -> Result<Pair, CertGenError> {
    let read = |ext: &str| {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::read_to_string(&path).map_err(|source| CertGenError::Io {
            path: path.display().to_string(),
            source,
        })
    };
    Ok(Pair {
        cert_pem: read("crt")?,
        key_pem: read("key")?,
    })
}
