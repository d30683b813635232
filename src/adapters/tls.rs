//! TLS for every connection the process opens: rustls with the ring provider, trusting the
//! system's CA bundle. One stack for Redis (`rediss://`, the redis crate's rustls support),
//! PostgreSQL (`sslmode`, through tokio-postgres-rustls) and HTTP (Storage, embeddings, webhooks,
//! through ureq); no OpenSSL is linked, so the image carries no libssl/libcrypto.
//!
//! Trusted roots are the system's, read by rustls-native-certs: `SSL_CERT_FILE`/`SSL_CERT_DIR`
//! when set, else the distribution's bundle (`/etc/ssl/certs/ca-certificates.crt` on Debian and
//! in the image). A site trusts a private CA by mounting a bundle that includes it over that file,
//! as with OpenSSL before, and now for HTTP too. Not webpki-roots: a bundle compiled into the
//! binary could not take a private CA and would age with the binary instead of the image's
//! `ca-certificates` updates. The redis crate reads the same sources itself on each connect.

use std::sync::{Arc, OnceLock};

use log::{debug, warn};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The crypto provider every TLS connection uses (ring; the only one compiled in).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted CA certificates, read once per process. Unreadable entries are logged and
/// skipped; with none at all every verified connection fails (`UnknownIssuer`), which is logged
/// once here.
fn trusted() -> &'static (Vec<CertificateDer<'static>>, Arc<RootCertStore>) {
    static TRUSTED: OnceLock<(Vec<CertificateDer<'static>>, Arc<RootCertStore>)> = OnceLock::new();
    TRUSTED.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            warn!("reading the trusted CA certificates: {e}");
        }
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(loaded.certs.iter().cloned());
        debug!("trusted CA certificates: {added} loaded, {ignored} unusable");
        if added == 0 {
            warn!(
                "no trusted CA certificates found (SSL_CERT_FILE, SSL_CERT_DIR, \
                 /etc/ssl/certs/ca-certificates.crt): verified TLS connections will fail"
            );
        }
        (loaded.certs, Arc::new(store))
    })
}

/// The trusted roots, for a rustls configuration.
pub fn roots() -> Arc<RootCertStore> {
    trusted().1.clone()
}

/// How a TLS connection treats the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root and match the host name (`verify-ca`/`verify-full`, HTTPS).
    Full,
    /// Encrypt without checking the certificate, as libpq's `sslmode=require`/`prefer` do. The
    /// handshake signatures are still checked, so the server must hold the certificate's key.
    EncryptOnly,
}

/// A rustls client configuration (TLS 1.2 and 1.3).
///
/// # Panics
///
/// Never: ring supports both protocol versions (the `expect` states an invariant of the build).
pub fn client_config(verify: Verify) -> ClientConfig {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3");
    match verify {
        Verify::Full => builder.with_root_certificates(roots()),
        Verify::EncryptOnly => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider()))),
    }
    .with_no_client_auth()
}

/// TLS settings for a ureq agent: the same provider and roots as the other connections (ureq
/// would otherwise need a provider installed process-wide and use its own root list).
pub fn ureq_tls() -> ureq::tls::TlsConfig {
    static CONFIG: OnceLock<ureq::tls::TlsConfig> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let certs = trusted()
                .0
                .iter()
                .map(|der| ureq::tls::Certificate::from_der(der).to_owned())
                .collect();
            ureq::tls::TlsConfig::builder()
                .unversioned_rustls_crypto_provider(provider())
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)))
                .build()
        })
        .clone()
}

/// Accepts any certificate; checks only that the server signed the handshake with its key.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
