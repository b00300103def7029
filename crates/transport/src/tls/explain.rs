//! Turning rustls' verdicts into messages that name the cause: which certificate expired and
//! when, which names were expected and presented, which issuer is not the farm CA.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, DigitallySignedStruct, DistinguishedName, Error,
    OtherError, SignatureScheme,
};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// What a message needs to say about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// The full subject, e.g. `CN=w1, OU=worker, O=hybridgrid farm`.
    pub subject: String,
    /// The full issuer.
    pub issuer: String,
    /// Subject CN.
    pub common_name: Option<String>,
    /// Subject OU (the hybridgrid role).
    pub role: Option<String>,
    /// Start of validity, human-readable (UTC).
    pub not_before: String,
    /// End of validity, human-readable (UTC).
    pub not_after: String,
    /// DNS names and IP addresses in the subject alternative names.
    pub names: Vec<String>,
}

impl CertSummary {
    /// Parses a DER certificate; `None` when it is not one.
    pub fn parse(der: &CertificateDer<'_>) -> Option<CertSummary> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let first = |it: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >| { it.next().and_then(|a| a.as_str().ok()).map(str::to_owned) };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => names.push((*d).to_owned()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => names
                            .push(std::net::Ipv4Addr::from([b[0], b[1], b[2], b[3]]).to_string()),
                        16 => {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(b);
                            names.push(std::net::Ipv6Addr::from(a).to_string());
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Some(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name: first(&mut cert.subject().iter_common_name()),
            role: first(&mut cert.subject().iter_organizational_unit()),
            not_before: cert.validity().not_before.to_string(),
            not_after: cert.validity().not_after.to_string(),
            names,
        })
    }
}

/// A verification failure with its explanation; carried inside rustls'
/// `CertificateError::Other` so the original cause still decides the alert sent.
#[derive(Debug)]
pub(crate) struct Explained(pub(crate) String);

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Explained {}

fn fmt_time(t: UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(dt) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        ),
        Err(_) => format!("{secs} s after the epoch"),
    }
}

/// Explains why the certificate `der` that `whose` peer presented was refused.
pub(crate) fn explain_refusal(
    whose: &str,
    der: &CertificateDer<'_>,
    err: &Error,
    ca: &std::path::Path,
) -> String {
    let s = CertSummary::parse(der);
    let subject = s
        .as_ref()
        .map_or_else(|| "(unparsable)".to_owned(), |s| s.subject.clone());
    let Error::InvalidCertificate(ce) = err else {
        return format!("{whose} certificate {subject} refused: {err}");
    };
    match ce {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let when = match ce {
                CertificateError::ExpiredContext { not_after, time } => {
                    format!("{} (checked at {})", fmt_time(*not_after), fmt_time(*time))
                }
                _ => s
                    .as_ref()
                    .map_or_else(|| "?".into(), |s| s.not_after.clone()),
            };
            format!("{whose} certificate {subject} expired at {when}")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            let from = s
                .as_ref()
                .map_or_else(|| "?".into(), |s| s.not_before.clone());
            format!("{whose} certificate {subject} is not valid before {from}")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let (expected, presented) = match ce {
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => (expected.to_str().into_owned(), presented.clone()),
                _ => (
                    "?".to_owned(),
                    s.as_ref().map(|s| s.names.clone()).unwrap_or_default(),
                ),
            };
            format!(
                "hostname mismatch: expected {expected:?}, but the {whose} certificate {subject} presents {presented:?}"
            )
        }
        CertificateError::BadSignature => {
            let issuer = s
                .as_ref()
                .map_or_else(|| "?".to_owned(), |s| s.issuer.clone());
            format!(
                "unknown CA: the {whose} certificate {subject} names the issuer {issuer} but was not signed by the farm CA in {}",
                ca.display()
            )
        }
        CertificateError::UnknownIssuer => {
            let issuer = s
                .as_ref()
                .map_or_else(|| "?".to_owned(), |s| s.issuer.clone());
            format!(
                "unknown CA: the {whose} certificate {subject} was issued by {issuer}, which is not the farm CA in {}",
                ca.display()
            )
        }
        other => format!("{whose} certificate {subject} refused: {other}"),
    }
}

/// Explains a handshake error seen by the side that presented `own`: an alert from the peer
/// refusing this side's certificate, or this side's own verdict on the peer's.
pub fn explain_handshake(peer: &str, own: Option<&CertSummary>, err: &Error) -> String {
    let own_subject = own.map_or_else(|| "(none)".to_owned(), |s| s.subject.clone());
    match err {
        Error::AlertReceived(AlertDescription::CertificateExpired) => format!(
            "{peer} refused this side's certificate {own_subject}: it expired at {}",
            own.map_or("?", |s| s.not_after.as_str())
        ),
        Error::AlertReceived(AlertDescription::UnknownCA) => format!(
            "{peer} refused this side's certificate {own_subject}: unknown CA (issued by {}, which {peer} does not trust)",
            own.map_or("?", |s| s.issuer.as_str())
        ),
        Error::AlertReceived(AlertDescription::DecryptError) if own.is_some() => format!(
            "{peer} refused this side's certificate {own_subject}: unknown CA (not signed by the CA {peer} trusts, though issued in the name {})",
            own.map_or("?", |s| s.issuer.as_str())
        ),
        Error::AlertReceived(AlertDescription::CertificateRequired) => format!(
            "{peer} requires a client certificate from the farm CA (set tls.cert and tls.key)"
        ),
        Error::AlertReceived(
            a @ (AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate),
        ) => {
            format!("{peer} refused this side's certificate {own_subject} ({a:?})")
        }
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            format!("TLS handshake with {peer} failed: {inner}")
        }
        other => format!("TLS handshake with {peer} failed: {other}"),
    }
}

fn wrap(message: String) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Explained(
        message,
    )))))
}

/// Checks a server's certificate with webpki, explaining a refusal.
#[derive(Debug)]
pub(crate) struct ExplainingServerVerifier {
    pub(crate) inner: Arc<rustls::client::WebPkiServerVerifier>,
    pub(crate) ca: PathBuf,
}

impl ServerCertVerifier for ExplainingServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|e| wrap(explain_refusal("server", end_entity, &e, &self.ca)))
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks a client's certificate with webpki and logs the explained reason of a refusal; the
/// original error is returned so the client receives the matching alert (`certificate_expired`,
/// `unknown_ca`), from which it explains the refusal on its side.
#[derive(Debug)]
pub(crate) struct ExplainingClientVerifier {
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    pub(crate) ca: PathBuf,
}

impl ClientCertVerifier for ExplainingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| {
                tracing::warn!(error = %explain_refusal("client", end_entity, e, &self.ca), "TLS client certificate refused");
            })
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
