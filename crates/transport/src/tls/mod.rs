//! TLS for every gRPC connection: rustls with the `ring` provider (installed once by
//! [`install_crypto_provider`]), a farm CA as the only trust anchor, and identities carried in the
//! certificates themselves (subject `OU` = role, `CN` = name, see [`PeerIdentity`]).
//!
//! Handshake failures are explained, not just reported: an expired certificate names which one
//! and when it expired, a hostname mismatch names the expected and the presented names, and a
//! certificate from another CA says that its issuer is not the farm CA (naming the issuer).

mod connector;
mod explain;

#[cfg(feature = "certgen")]
pub mod certgen;

pub use connector::{
    ConnectError, Dial, Expect, TlsConnector, chain, check_plaintext, dial, dial_lazy,
};
pub use explain::CertSummary;
pub use explain::explain_handshake;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};

/// Installs rustls' `ring` crypto provider as the process default. Idempotent; every TLS entry
/// point calls it, so callers never need to.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when another provider was installed first, which is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The role a certificate grants, from its subject's organizational unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The coordinator (server for clients and workers, client of workers).
    Coordinator,
    /// A compile worker.
    Worker,
    /// A build client (`hgbuild`).
    Client,
}

impl Role {
    /// The name used in certificates and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Worker => "worker",
            Role::Client => "client",
        }
    }

    /// Parses [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "coordinator" => Some(Role::Coordinator),
            "worker" => Some(Role::Worker),
            "client" => Some(Role::Client),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a verified certificate says its holder is: `worker:w1`, `client:ci`, `coordinator:main`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// Subject OU.
    pub role: Role,
    /// Subject CN (for a worker, its worker id).
    pub name: String,
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role, self.name)
    }
}

impl PeerIdentity {
    /// The identity in a DER certificate, if it names one.
    pub fn of(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let summary = CertSummary::parse(cert)?;
        Some(PeerIdentity {
            role: Role::parse(summary.role.as_deref()?)?,
            name: summary.common_name?,
        })
    }
}

/// Why TLS material could not be loaded. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// `tls.ca`, `tls.cert`, `tls.key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file held no usable PEM item of the expected kind.
    #[error("{what} {path}: {message}")]
    Invalid {
        /// `tls.ca`, `tls.cert`, `tls.key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The settings are incomplete.
    #[error("tls: {0}")]
    Incomplete(String),
    /// rustls refused the material.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where a daemon's or client's TLS material lives (the `tls:` config section).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The farm CA certificate (PEM): the only trust anchor.
    pub ca: PathBuf,
    /// This side's certificate (PEM), if it has one.
    pub cert: Option<PathBuf>,
    /// This side's private key (PEM).
    pub key: Option<PathBuf>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The certificates in a PEM file.
pub fn load_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(what, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what,
            path: path.to_owned(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid {
            what,
            path: path.to_owned(),
            message: "contains no certificate".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: "tls.key",
        path: path.to_owned(),
        message: format!("no private key found: {e}"),
    })
}

/// The loaded material of [`TlsFiles`], shared by server and client configs.
#[derive(Clone)]
pub struct TlsMaterial {
    files: TlsFiles,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: Option<Arc<PrivateKeyDer<'static>>>,
    /// This side's own certificate, for messages about it.
    pub own: Option<CertSummary>,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("files", &self.files)
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads the CA, and the certificate and key when both are set.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        install_crypto_provider();
        let mut roots = RootCertStore::empty();
        for ca in load_certs("tls.ca", &files.ca)? {
            roots.add(ca).map_err(|e| TlsError::Invalid {
                what: "tls.ca",
                path: files.ca.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let (chain, key) = match (&files.cert, &files.key) {
            (Some(c), Some(k)) => (load_certs("tls.cert", c)?, Some(Arc::new(load_key(k)?))),
            (None, None) => (Vec::new(), None),
            (Some(_), None) => {
                return Err(TlsError::Incomplete(
                    "tls.cert is set but tls.key is not".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete(
                    "tls.key is set but tls.cert is not".into(),
                ));
            }
        };
        let own = chain.first().and_then(|c| CertSummary::parse(c));
        Ok(Self {
            files: files.clone(),
            roots: Arc::new(roots),
            chain,
            key,
            own,
        })
    }

    /// Loads `ca` (+ `cert`, `key`) when `ca` is set: the `tls:` config section of any binary.
    pub fn load_optional(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<Self>>, TlsError> {
        let Some(ca) = ca.filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(None);
        };
        let files = TlsFiles {
            ca: ca.to_owned(),
            cert: cert.map(Path::to_owned),
            key: key.map(Path::to_owned),
        };
        Self::load(&files).map(|m| Some(Arc::new(m)))
    }

    /// The files this was loaded from.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The BLAKE3 hash (hex) of this side's certificate (DER), if it has one: what a worker
    /// announces in its mDNS TXT `tls` key, and what `openssl x509 -outform der | b3sum` prints.
    pub fn fingerprint(&self) -> Option<String> {
        self.chain
            .first()
            .map(|c| blake3::hash(c.as_ref()).to_hex().to_string())
    }

    /// This side's identity, from its own certificate.
    pub fn identity(&self) -> Option<PeerIdentity> {
        self.chain.first().and_then(PeerIdentity::of)
    }

    /// A server config presenting this side's certificate. With `require_client_cert` every peer
    /// must present a certificate from the farm CA; without, a peer may present one (clients may
    /// authenticate with a token instead), and when it does it must verify.
    pub fn server_config(&self, require_client_cert: bool) -> Result<Arc<ServerConfig>, TlsError> {
        let (Some(key), false) = (&self.key, self.chain.is_empty()) else {
            return Err(TlsError::Incomplete(
                "a server needs tls.cert and tls.key".into(),
            ));
        };
        let builder = WebPkiClientVerifier::builder(self.roots.clone());
        let builder = if require_client_cert {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let inner = builder
            .build()
            .map_err(|e| TlsError::Incomplete(format!("client verifier: {e}")))?;
        let verifier = Arc::new(explain::ExplainingClientVerifier {
            inner,
            ca: self.files.ca.clone(),
        });
        let mut cfg = ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), key.clone_key())?;
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// A client config trusting only the farm CA, presenting this side's certificate if it has
    /// one. With a certificate the connection uses TLS 1.2, where the server checks the client's
    /// certificate during the handshake, so a refused certificate is reported at connect time
    /// with the server's reason (with TLS 1.3 it would surface later as a bare transport error).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let inner = rustls::client::WebPkiServerVerifier::builder(self.roots.clone())
            .build()
            .map_err(|e| TlsError::Incomplete(format!("server verifier: {e}")))?;
        let verifier = Arc::new(explain::ExplainingServerVerifier {
            inner,
            ca: self.files.ca.clone(),
        });
        let mut cfg = match &self.key {
            Some(key) => ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_client_auth_cert(self.chain.clone(), key.clone_key())?,
            None => ClientConfig::builder()
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(cfg))
    }
}

/// The verified identity of the peer of a gRPC request served over TLS, if it presented a
/// certificate that names one.
#[cfg(feature = "server")]
pub fn peer_identity<T>(req: &tonic::Request<T>) -> Option<PeerIdentity> {
    let certs = req.peer_certs()?;
    PeerIdentity::of(certs.first()?)
}
