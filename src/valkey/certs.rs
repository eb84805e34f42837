//! Certificates of a replication group that speaks TLS: its certificate authority, and the
//! certificates it issues to nodes, Sentinels and the provider itself. Pure: makes and checks
//! PEM text, writes nothing.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType,
};
use time::OffsetDateTime;

/// How long before its issue a certificate counts as valid, so a peer whose clock is a little
/// behind accepts it.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot make a certificate: {0}")]
    Make(#[from] rcgen::Error),
    #[error("{0}")]
    Invalid(String),
}

/// A certificate and its private key, PEM, and when the certificate ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// Seconds since the Unix epoch after which the certificate is no longer valid.
    pub not_after_unix: i64,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn after(from: OffsetDateTime, lasting: Duration) -> OffsetDateTime {
    from + time::Duration::seconds(i64::try_from(lasting.as_secs()).unwrap_or(i64::MAX / 4))
}

fn backdated(from: OffsetDateTime) -> OffsetDateTime {
    from - time::Duration::seconds(BACKDATE.as_secs() as i64)
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "terraform-provider-valkey");
    name.push(DnType::CommonName, common_name);
    name
}

/// A new certificate authority for the group `group`, valid for `validity`.
pub fn new_authority(group: &str, validity: Duration) -> Result<Issued, CertError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = named(&format!("{group} replication group CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issued_at = now();
    params.not_before = backdated(issued_at);
    params.not_after = after(issued_at, validity);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after_unix: params.not_after.unix_timestamp(),
    })
}

/// A certificate signed by `authority` for `name`, valid for `validity`, naming `addresses`
/// (IP addresses or host names) as the subject alternative names peers check. It serves both
/// ends of a link: a node's listening side and its replication or Sentinel connections, which
/// present it when the group verifies clients.
pub fn issue(authority: &Issued, name: &str, addresses: &[String], validity: Duration) -> Result<Issued, CertError> {
    let signing_key = KeyPair::from_pem(&authority.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&authority.cert_pem, signing_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = named(name);
    params.subject_alt_names = addresses
        .iter()
        .map(|a| match a.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(a.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let issued_at = now();
    params.not_before = backdated(issued_at);
    // A node's certificate never outlives the authority that signed it.
    let ends = after(issued_at, validity)
        .unix_timestamp()
        .min(authority.not_after_unix);
    params.not_after = OffsetDateTime::from_unix_timestamp(ends).map_err(|e| CertError::Invalid(e.to_string()))?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after_unix: ends,
    })
}

/// When the first certificate in `pem` ends, in seconds since the Unix epoch.
pub fn not_after(pem: &str) -> Result<i64, CertError> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| CertError::Invalid(format!("not PEM: {e}")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| CertError::Invalid(format!("not an X.509 certificate: {e}")))?;
    Ok(cert.validity().not_after.timestamp())
}

/// A certificate authority a user brings: `cert_pem` must be a CA certificate that is valid
/// now and `key_pem` its private key.
pub fn authority_from(cert_pem: &str, key_pem: &str) -> Result<Issued, CertError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| CertError::Invalid(format!("the CA certificate is not PEM: {e}")))?;
    let cert = block
        .parse_x509()
        .map_err(|e| CertError::Invalid(format!("the CA certificate is not an X.509 certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CertError::Invalid(
            "the certificate is not a CA certificate (its basic constraints do not allow signing others)".into(),
        ));
    }
    if !cert.validity().is_valid() {
        return Err(CertError::Invalid(format!(
            "the CA certificate is not valid now (valid from {} to {})",
            cert.validity().not_before,
            cert.validity().not_after
        )));
    }
    let key =
        KeyPair::from_pem(key_pem).map_err(|_| CertError::Invalid("the CA key is not a PEM private key".into()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
        return Err(CertError::Invalid(
            "the CA key is not the CA certificate's private key".into(),
        ));
    }
    Ok(Issued {
        cert_pem: cert_pem.to_string(),
        key_pem: key_pem.to_string(),
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

    #[test]
    fn a_node_certificate_names_its_addresses_and_ends_with_its_validity() {
        let ca = new_authority("main", YEAR * 10).unwrap();
        let node = issue(&ca, "main-0", &["127.0.1.1".into(), "node.example".into()], YEAR).unwrap();
        assert_eq!(not_after(&node.cert_pem).unwrap(), node.not_after_unix);
        let expected = now().unix_timestamp() + YEAR.as_secs() as i64;
        assert!((node.not_after_unix - expected).abs() < 5);
        let (_, block) = x509_parser::pem::parse_x509_pem(node.cert_pem.as_bytes()).unwrap();
        let cert = block.parse_x509().unwrap();
        let sans = format!("{:?}", cert.subject_alternative_name().unwrap().unwrap().value);
        assert!(
            sans.contains("[127, 0, 1, 1]") && sans.contains("node.example"),
            "{sans}"
        );
        assert!(!cert.is_ca());
        assert!(node.key_pem.contains("PRIVATE KEY") && !node.cert_pem.contains("PRIVATE"));
    }

    #[test]
    fn a_node_certificate_never_outlives_its_authority() {
        let ca = new_authority("main", Duration::from_secs(3600)).unwrap();
        let node = issue(&ca, "main-0", &["127.0.1.1".into()], YEAR).unwrap();
        assert_eq!(node.not_after_unix, ca.not_after_unix);
    }

    #[test]
    fn a_users_authority_must_be_a_ca_with_its_own_key() {
        let ca = new_authority("main", YEAR).unwrap();
        assert_eq!(authority_from(&ca.cert_pem, &ca.key_pem).unwrap(), ca);
        let other = new_authority("other", YEAR).unwrap();
        let wrong_key = authority_from(&ca.cert_pem, &other.key_pem).unwrap_err().to_string();
        assert!(
            wrong_key.contains("not the CA certificate's private key"),
            "{wrong_key}"
        );
        let leaf = issue(&ca, "main-0", &["127.0.1.1".into()], YEAR).unwrap();
        let not_ca = authority_from(&leaf.cert_pem, &leaf.key_pem).unwrap_err().to_string();
        assert!(not_ca.contains("not a CA certificate"), "{not_ca}");
        assert!(
            authority_from("junk", &ca.key_pem)
                .unwrap_err()
                .to_string()
                .contains("not PEM")
        );
    }
}
