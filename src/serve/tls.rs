//! TLS for a listener: PEM certificates and keys read from files (or a web
//! config's inline PEM), built into a rustls server config, with optional
//! client certificate verification.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::security::KeyProblem;

/// A PEM source: a file (named by the `[listen]` key that gave it) or
/// inline text from a web config.
pub(super) enum Pem {
    File(PathBuf, &'static str),
    Inline(String),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, KeyProblem> {
        match self {
            Pem::File(p, key) => {
                std::fs::read(p).map_err(|e| (*key, format!("cannot read {}: {e}", p.display())))
            }
            Pem::Inline(s) => Ok(s.clone().into_bytes()),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Pem::File(_, k) => k,
            Pem::Inline(_) => "web_config_file",
        }
    }

    fn name(&self) -> String {
        match self {
            Pem::File(p, _) => p.display().to_string(),
            Pem::Inline(_) => "the inline PEM".into(),
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Versions {
    Both,
    Only12,
    Only13,
}

pub(super) struct TlsFiles {
    pub(super) cert: Pem,
    pub(super) key: Pem,
    pub(super) client_ca: Option<Pem>,
    /// Verify a client certificate when one is given, accept clients
    /// without one (exporter-toolkit's VerifyClientCertIfGiven).
    pub(super) client_optional: bool,
    pub(super) versions: Versions,
}

impl TlsFiles {
    pub(super) fn server_config(&self) -> Result<rustls::ServerConfig, KeyProblem> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_pem = self.cert.read()?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                (
                    self.cert.key(),
                    format!("{}: not a PEM certificate: {e}", self.cert.name()),
                )
            })?;
        if certs.is_empty() {
            return Err((
                self.cert.key(),
                format!("{}: no certificate in it", self.cert.name()),
            ));
        }
        let key_pem = self.key.read()?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            (
                self.key.key(),
                format!("{}: not a PEM private key: {e}", self.key.name()),
            )
        })?;
        let versions: &[&rustls::SupportedProtocolVersion] = match self.versions {
            Versions::Both => rustls::ALL_VERSIONS,
            Versions::Only12 => &[&rustls::version::TLS12],
            Versions::Only13 => &[&rustls::version::TLS13],
        };
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions)
            .map_err(|e| (self.cert.key(), e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let pem = ca.read()?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    let c = c.map_err(|e| {
                        (
                            ca.key(),
                            format!("{}: not a PEM certificate: {e}", ca.name()),
                        )
                    })?;
                    roots.add(c).map_err(|e| {
                        (
                            ca.key(),
                            format!("{}: unusable CA certificate: {e}", ca.name()),
                        )
                    })?;
                }
                if roots.is_empty() {
                    return Err((ca.key(), format!("{}: no certificate in it", ca.name())));
                }
                let mut v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                );
                if self.client_optional {
                    v = v.allow_unauthenticated();
                }
                let verifier = v.build().map_err(|e| (ca.key(), e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            (
                self.key.key(),
                format!(
                    "{} and {} do not make a usable certificate: {e}",
                    self.cert.name(),
                    self.key.name()
                ),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
