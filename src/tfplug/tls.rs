//! AutoMTLS as go-plugin does it: the client passes its certificate in PLUGIN_CLIENT_CERT, the
//! plugin makes a fresh self-signed server certificate and announces it in the handshake, and
//! each side accepts exactly the other's certificate.
//!
//! go-plugin's client certificate is ECDSA P-521 and marked CA:TRUE, which a webpki verifier
//! refuses as an end-entity certificate, so the client is checked by pinning: its DER must
//! equal the one Terraform announced, and its handshake signature must verify.
//!
//! TLS runs on ring, whose first use costs well under a millisecond (aws-lc's costs about
//! 22 ms, which every Terraform command would pay at plugin start). ring has no P-521, so the
//! client's P-521 signature is checked with the RustCrypto `p521` crate against the pinned
//! certificate's key.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("PLUGIN_CLIENT_CERT does not hold a PEM certificate: {0}")]
    ClientCertificate(String),
    #[error("could not create the server certificate: {0}")]
    ServerCertificate(String),
    #[error("could not configure TLS: {0}")]
    Config(String),
}

/// The server side of AutoMTLS: the rustls configuration and the certificate to announce.
pub struct AutoMtls {
    pub config: Arc<rustls::ServerConfig>,
    pub server_cert_der: Vec<u8>,
}

/// Accepts exactly one client certificate.
#[derive(Debug)]
pub struct PinnedClientCert {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
    /// The pinned certificate's key when it is a P-521 key, which ring cannot verify.
    p521_key: Option<p521::ecdsa::VerifyingKey>,
}

/// The P-521 public key of a certificate, if that is the kind of key it holds.
fn p521_key_of(cert: &CertificateDer<'_>) -> Option<p521::ecdsa::VerifyingKey> {
    use p521::pkcs8::DecodePublicKey;
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let spki = parsed.subject_public_key_info();
    let key = p521::PublicKey::from_public_key_der(spki.as_ref()).ok()?;
    p521::ecdsa::VerifyingKey::from_sec1_bytes(&key.to_sec1_bytes()).ok()
}

impl PinnedClientCert {
    pub fn new(expected: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        PinnedClientCert {
            p521_key: p521_key_of(&expected),
            expected,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Checks a TLS 1.3 CertificateVerify signature made with the pinned P-521 key.
    fn verify_p521(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        use p521::ecdsa::signature::Verifier;
        let bad = || rustls::Error::InvalidCertificate(CertificateError::BadSignature);
        let key = self
            .p521_key
            .as_ref()
            .filter(|_| cert.as_ref() == self.expected.as_ref())
            .ok_or_else(bad)?;
        let signature = p521::ecdsa::Signature::from_der(dss.signature()).map_err(|_| bad())?;
        key.verify(message, &signature).map_err(|_| bad())?;
        Ok(HandshakeSignatureValid::assertion())
    }
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!("rejected a TLS client whose certificate is not the one Terraform announced");
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return self.verify_p521(message, cert, dss);
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if dss.scheme == SignatureScheme::ECDSA_NISTP521_SHA512 {
            return self.verify_p521(message, cert, dss);
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        let mut schemes = self.algorithms.supported_schemes();
        if self.p521_key.is_some() {
            schemes.push(SignatureScheme::ECDSA_NISTP521_SHA512);
        }
        schemes
    }
}

/// A self-signed certificate for "localhost", shaped as go-plugin's client expects to use it
/// as its only root (CA:TRUE, server and client auth).
fn server_certificate() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), TlsSetupError> {
    let err = |e: rcgen::Error| TlsSetupError::ServerCertificate(e.to_string());
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(err)?;
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "terraform-provider-valkey");
    params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(err)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key_der))
}

/// Builds the server configuration for a client certificate given as PEM.
pub fn auto_mtls(client_cert_pem: &str) -> Result<AutoMtls, TlsSetupError> {
    let client_cert = CertificateDer::from_pem_slice(client_cert_pem.as_bytes())
        .map_err(|e| TlsSetupError::ClientCertificate(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClientCert::new(client_cert, &provider));
    let (cert, key) = server_certificate()?;
    let server_cert_der = cert.as_ref().to_vec();
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    // gRPC clients insist on negotiating HTTP/2 through ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(AutoMtls {
        config: Arc::new(config),
        server_cert_der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client certificate like go-plugin's: P-521, CA:TRUE.
    fn go_plugin_like_client_cert() -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.pem(), cert.der().clone(), key_der)
    }

    #[derive(Debug)]
    struct TrustExactly(Vec<u8>, WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for TrustExactly {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            assert_eq!(end_entity.as_ref(), self.0.as_slice());
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.1)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.1)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.1.supported_schemes()
        }
    }

    async fn connect(server: &AutoMtls, cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> bool {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = TrustExactly(
            server.server_cert_der.clone(),
            provider.signature_verification_algorithms,
        );
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![cert], key)
            .unwrap();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server.config.clone());
        let server_task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            match acceptor.accept(tcp).await {
                Ok(mut tls) => {
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await.is_ok() && &buf == b"ping"
                }
                Err(_) => false,
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        if let Ok(mut tls) = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await {
            let _ = tls.write_all(b"ping").await;
            let _ = tls.flush().await;
        }
        server_task.await.unwrap()
    }

    #[tokio::test]
    async fn accepts_the_announced_p521_ca_client_certificate() {
        let (pem, der, key) = go_plugin_like_client_cert();
        let server = auto_mtls(&pem).unwrap();
        assert!(connect(&server, der, key).await);
    }

    #[tokio::test]
    async fn rejects_any_other_client_certificate() {
        let (pem, _, _) = go_plugin_like_client_cert();
        let (_, other_der, other_key) = go_plugin_like_client_cert();
        let server = auto_mtls(&pem).unwrap();
        assert!(!connect(&server, other_der, other_key).await);
    }

    #[test]
    fn garbage_client_certificate_is_a_clear_error() {
        let err = auto_mtls("not a certificate").err().unwrap();
        assert!(err.to_string().contains("PLUGIN_CLIENT_CERT"));
    }
}
