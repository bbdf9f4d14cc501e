//! How proxdeck trusts Proxmox's certificate: the system roots, a CA file, a pinned SHA-256
//! fingerprint of the certificate itself (a custom rustls verifier), or nothing at all when
//! `insecure` is set explicitly.
//!
//! Owns the `reqwest::ClientBuilder` TLS settings and the words used when a certificate is
//! refused. It must not relax verification on its own: only `insecure = true` does, and a pin
//! always wins over `insecure`.

use crate::config::ProxmoxConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// How the certificate is checked; shown by `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// The system's (webpki) roots: a certificate from a public CA.
    SystemRoots,
    /// Signed by the CA in this file (e.g. the cluster's pve-root-ca.pem).
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint.
    Pinned(String),
    /// Not verified at all (`proxmox.insecure`).
    Insecure,
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsMode::SystemRoots => f.write_str("verified against the system's CA roots"),
            TlsMode::CaFile(p) => write!(f, "verified against the CA file {}", p.display()),
            TlsMode::Pinned(fp) => write!(f, "pinned certificate SHA-256 {fp}"),
            TlsMode::Insecure => f.write_str("NOT VERIFIED (proxmox.insecure = true)"),
        }
    }
}

/// `AB:CD:...` as Proxmox shows fingerprints.
pub fn format_fingerprint(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint_of(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// What the TLS layer needs from the configuration, and what it saw of the server.
pub(super) struct TlsSetup {
    pub mode: TlsMode,
    /// The fingerprint the server presented last (pinned mode), for the error message.
    pub seen: Arc<Mutex<Option<String>>>,
}

/// Applies the configured trust to `builder`.
pub(super) fn configure(
    builder: reqwest::ClientBuilder,
    config: &ProxmoxConfig,
) -> Result<(reqwest::ClientBuilder, TlsSetup), String> {
    let seen = Arc::new(Mutex::new(None));
    if let Some(pin) = config.fingerprint {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = PinnedVerifier {
            pin,
            provider: provider.clone(),
            seen: seen.clone(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        return Ok((
            builder.use_preconfigured_tls(tls),
            TlsSetup {
                mode: TlsMode::Pinned(format_fingerprint(&pin)),
                seen,
            },
        ));
    }
    if config.insecure {
        return Ok((
            builder.danger_accept_invalid_certs(true),
            TlsSetup {
                mode: TlsMode::Insecure,
                seen,
            },
        ));
    }
    if let Some(path) = &config.ca_file {
        let pem =
            std::fs::read(path).map_err(|e| format!("proxmox.ca_file {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "proxmox.ca_file {} holds no PEM certificate: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "proxmox.ca_file {} holds no PEM certificate",
                path.display()
            ));
        }
        // The file replaces the system roots, as SSL_CERT_FILE does for terraform.
        let mut builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
        return Ok((
            builder,
            TlsSetup {
                mode: TlsMode::CaFile(path.clone()),
                seen,
            },
        ));
    }
    Ok((
        builder,
        TlsSetup {
            mode: TlsMode::SystemRoots,
            seen,
        },
    ))
}

/// What to do about a refused certificate, per mode.
pub(super) fn hint(mode: &TlsMode, seen: Option<&str>) -> String {
    match mode {
        TlsMode::Pinned(pin) => match seen {
            Some(seen) => format!(
                "the server presented SHA-256 {seen}, not the pinned {pin}; if the certificate was renewed, read the new fingerprint on the node (System > Certificates) and update proxmox.fingerprint"
            ),
            None => format!(
                "the server's certificate does not match the pinned SHA-256 {pin} (proxmox.fingerprint)"
            ),
        },
        TlsMode::CaFile(p) => format!(
            "it is not signed by the CA in proxmox.ca_file ({}); copy the cluster's /etc/pve/pve-root-ca.pem there, or pin the certificate with proxmox.fingerprint",
            p.display()
        ),
        TlsMode::SystemRoots => "Proxmox's certificate is self-signed by default: set proxmox.ca_file to the cluster's /etc/pve/pve-root-ca.pem, or proxmox.fingerprint to the certificate's SHA-256 fingerprint".to_string(),
        TlsMode::Insecure => "verification is off (proxmox.insecure), so this is not a trust problem; check the endpoint".to_string(),
    }
}

/// Accepts exactly the certificate whose SHA-256 is pinned; the handshake's signatures are
/// still checked with the provider's algorithms, so the server must hold the key.
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    seen: Arc<Mutex<Option<String>>>,
}

#[derive(Debug)]
struct PinMismatch;

impl std::fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("certificate fingerprint does not match the pinned one")
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = fingerprint_of(end_entity.as_ref());
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(format_fingerprint(&got));
        }
        // Constant time is not needed: the fingerprint is public.
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_print_as_proxmox_shows_them() {
        assert_eq!(format_fingerprint(&[0xab, 0x01, 0xff]), "AB:01:FF");
        let fp = fingerprint_of(b"x");
        assert_eq!(fp.len(), 32);
        // The config's parser reads what this prints.
        let parsed = crate::config::parse_fingerprint(&format_fingerprint(&fp)).unwrap();
        assert_eq!(parsed, fp);
    }

    #[test]
    fn hints_name_the_setting_to_change() {
        assert!(hint(&TlsMode::SystemRoots, None).contains("proxmox.ca_file"));
        assert!(hint(&TlsMode::Pinned("AA".into()), Some("BB")).contains("BB"));
        assert!(hint(&TlsMode::CaFile("/x.pem".into()), None).contains("/x.pem"));
    }
}
