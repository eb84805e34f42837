//! The certificates of a replication group that speaks TLS, as its records keep them: the
//! group's CA, made (or taken from the user) with the primary service and copied to each
//! member's record; a certificate per node and Sentinel, issued when it is placed and renewed
//! by an apply once fewer than `renew_before` seconds of it remain.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::common_model::TlsModel;
use crate::runtime::{CertRecord, GroupTls, ServiceRecord};
use crate::valkey::TlsIdentity;
use crate::valkey::certs::{self, Issued};

/// Defaults of the `tls` block.
pub const DEFAULT_VALIDITY: &str = "8760h";
pub const DEFAULT_RENEW_BEFORE: &str = "720h";
/// The shortest certificate validity allowed.
const MIN_VALIDITY: Duration = Duration::from_secs(3600);
/// How long a CA the provider makes lasts, and the longest validity allowed: node
/// certificates never outlive their CA.
const CA_VALIDITY: Duration = Duration::from_secs(87600 * 3600);
/// The name the provider's own client certificate has.
const CLIENT_NAME: &str = "terraform-provider-valkey";

/// What the user declared about a group's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsChoice {
    pub auth_clients: String,
    pub validity: Duration,
    pub renew_before: Duration,
    /// The user's CA certificate and key, PEM; the provider makes one when None.
    pub user_ca: Option<(String, String)>,
}

/// What a `tls` block declares; Err names the attribute and says what is wrong.
pub fn choice_of(model: &TlsModel) -> Result<TlsChoice, (&'static str, String)> {
    let duration = |name: &'static str, value: Option<&String>, default: &str| {
        let text = value.map_or(default, String::as_str);
        let parsed = if text.len() > 32 {
            Err("it is longer than 32 characters".to_string())
        } else {
            humantime::parse_duration(text).map_err(|e| e.to_string())
        };
        parsed.map_err(|e| {
            let shown: String = text.chars().take(32).collect();
            (
                name,
                format!("{name} {shown:?} is not a duration ({e}); write it like \"8760h\" or \"30m\""),
            )
        })
    };
    let validity = duration(
        "certificate_validity",
        model.certificate_validity.as_ref(),
        DEFAULT_VALIDITY,
    )?;
    let renew_before = duration("renew_before", model.renew_before.as_ref(), DEFAULT_RENEW_BEFORE)?;
    if validity < MIN_VALIDITY {
        return Err((
            "certificate_validity",
            format!(
                "certificate_validity {} is shorter than 1h; give certificates at least an hour",
                humantime::format_duration(validity)
            ),
        ));
    }
    if validity > CA_VALIDITY {
        return Err((
            "certificate_validity",
            format!(
                "certificate_validity {} is longer than 87600h, the life of the group's CA; shorten it",
                humantime::format_duration(validity)
            ),
        ));
    }
    if renew_before >= validity {
        return Err((
            "renew_before",
            format!(
                "renew_before {} is not shorter than certificate_validity {}: every apply would renew; shorten it",
                humantime::format_duration(renew_before),
                humantime::format_duration(validity)
            ),
        ));
    }
    let auth_clients = model.auth_clients.clone().unwrap_or_else(|| "no".into());
    if !AUTH_CLIENTS.contains(&auth_clients.as_str()) {
        return Err((
            "auth_clients",
            format!("auth_clients {auth_clients:?} is not one of \"no\", \"optional\" or \"yes\""),
        ));
    }
    let user_ca = match (&model.ca_certificate, &model.ca_private_key_wo) {
        (Some(cert), Some(key)) => {
            let ca = certs::authority_from(cert, key).map_err(|e| {
                let e = e.to_string();
                match e.starts_with("the CA key") {
                    true => ("ca_private_key_wo", format!("ca_private_key_wo: {e}")),
                    false => ("ca_certificate", format!("ca_certificate: {e}")),
                }
            })?;
            Some((ca.cert_pem, ca.key_pem))
        }
        (Some(_), None) => {
            return Err((
                "ca_private_key_wo",
                "ca_private_key_wo is required with ca_certificate: give the CA's private key (PEM)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "ca_certificate",
                "ca_certificate is required with ca_private_key_wo: give the CA's certificate (PEM)".into(),
            ));
        }
        (None, None) => None,
    };
    if auth_clients != "no" && user_ca.is_none() {
        return Err((
            "auth_clients",
            format!(
                "auth_clients = {auth_clients:?} needs ca_certificate and ca_private_key_wo: clients show certificates \
                 signed by the group's CA, so the CA must be one you hold"
            ),
        ));
    }
    Ok(TlsChoice {
        auth_clients,
        validity,
        renew_before,
        user_ca,
    })
}

/// What `auth_clients` may be, as Valkey's `tls-auth-clients` takes it.
const AUTH_CLIENTS: [&str; 3] = ["no", "optional", "yes"];

/// The `tls` block that describes a record's group, for state after an import.
pub fn model_of(tls: &GroupTls) -> TlsModel {
    // In the largest whole unit, as users write them ("8760h", not humantime's "1year 5h ...").
    let text = |seconds: u64| match seconds {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    };
    TlsModel {
        certificate_validity: Some(text(tls.validity_seconds)),
        renew_before: Some(text(tls.renew_before_seconds)),
        auth_clients: Some(tls.auth_clients.clone()),
        ca_certificate: tls.user_ca.then(|| tls.ca.cert.clone()),
        ca_private_key_wo: None,
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn record_of(issued: Issued, host: &str) -> CertRecord {
    CertRecord {
        cert: issued.cert_pem,
        key: issued.key_pem,
        not_after_unix: issued.not_after_unix,
        host: host.to_string(),
    }
}

fn issued_of(cert: &CertRecord) -> Issued {
    Issued {
        cert_pem: cert.cert.clone(),
        key_pem: cert.key.clone(),
        not_after_unix: cert.not_after_unix,
    }
}

/// The TLS of a new group named `group`: its CA and the provider's client certificate.
pub fn new_group(group: &str, choice: &TlsChoice) -> Result<GroupTls, String> {
    let ca = match &choice.user_ca {
        Some((cert, key)) => certs::authority_from(cert, key).map_err(|e| e.to_string())?,
        None => certs::new_authority(group, CA_VALIDITY).map_err(|e| e.to_string())?,
    };
    let client = certs::issue(&ca, CLIENT_NAME, &[], choice.validity).map_err(|e| e.to_string())?;
    Ok(GroupTls {
        ca: record_of(ca, ""),
        user_ca: choice.user_ca.is_some(),
        auth_clients: choice.auth_clients.clone(),
        validity_seconds: choice.validity.as_secs(),
        renew_before_seconds: choice.renew_before.as_secs(),
        client: record_of(client, ""),
    })
}

/// Whether `cert` must be issued anew: there is none, it names another host, or (when
/// `renewing`) fewer than `renew_before` seconds of it remain.
fn due_for(tls: &GroupTls, cert: Option<&CertRecord>, host: &str, renewing: bool) -> bool {
    let renew_before = i64::try_from(tls.renew_before_seconds).unwrap_or(i64::MAX);
    cert.is_none_or(|c| c.host != host || (renewing && c.not_after_unix.saturating_sub(now_unix()) < renew_before))
}

fn due(tls: &GroupTls, cert: Option<&CertRecord>, host: &str) -> bool {
    due_for(tls, cert, host, true)
}

/// Issues a certificate to each data node of the record that has none or names another host,
/// and renews those (and the provider's own) that are due when `renewing`: an update renews
/// only what its plan showed. Returns the nodes issued one. Nothing on a group without TLS.
/// The Sentinels' certificates are `issue_sentinels_due`'s: issuing one restarts its Sentinel.
pub fn issue_due(record: &mut ServiceRecord, renewing: bool) -> Result<Vec<usize>, String> {
    let Some(tls) = record.tls.clone() else {
        return Ok(Vec::new());
    };
    let mut issued = Vec::new();
    for node in record.nodes.iter_mut() {
        if due_for(&tls, node.cert.as_ref(), &node.host, renewing) {
            node.cert = Some(issue_for(&tls, format!("{}-{}", record.name, node.index), &node.host)?);
            issued.push(node.index);
        }
    }
    if due_for(&tls, Some(&tls.client), "", renewing) {
        let client = issue_for(&tls, CLIENT_NAME.to_string(), "")?;
        if let Some(t) = record.tls.as_mut() {
            t.client = client;
        }
    }
    Ok(issued)
}

/// Issues a certificate to each Sentinel of the record that has none, names another host or is
/// due; returns their indices.
pub fn issue_sentinels_due(record: &mut ServiceRecord) -> Result<Vec<usize>, String> {
    let Some(tls) = record.tls.clone() else {
        return Ok(Vec::new());
    };
    let mut issued = Vec::new();
    for s in record.sentinels.iter_mut() {
        if due(&tls, s.cert.as_ref(), &s.host) {
            s.cert = Some(issue_for(
                &tls,
                format!("{}-sentinel-{}", record.name, s.index),
                &s.host,
            )?);
            issued.push(s.index);
        }
    }
    Ok(issued)
}

/// A certificate from the group's CA for `name` at `host` (none for the provider's own).
fn issue_for(tls: &GroupTls, name: String, host: &str) -> Result<CertRecord, String> {
    let addresses: Vec<String> = (!host.is_empty()).then(|| host.to_string()).into_iter().collect();
    certs::issue(
        &issued_of(&tls.ca),
        &name,
        &addresses,
        Duration::from_secs(tls.validity_seconds),
    )
    .map(|i| record_of(i, host))
    .map_err(|e| e.to_string())
}

/// In the plan of an update of a member whose group speaks TLS: when a certificate of it is
/// due, `certificate_expires_at` becomes unknown, so the plan shows the update that renews it.
pub async fn plan_renewal(ctx: &super::Context, prior: &crate::tfplug::Value, planned: &mut crate::tfplug::Value) {
    let uses_tls = prior.attr("ca_certificate").as_str().is_some_and(|c| !c.is_empty());
    let Some(name) = prior.attr("name").as_str().filter(|_| uses_tls && !planned.is_null()) else {
        return;
    };
    if let Ok(Some(record)) = ctx.runtime.store().load(name).await
        && renewal_due(&record)
    {
        planned.set_attr("certificate_expires_at", crate::tfplug::Value::Unknown);
    }
}

/// Whether an apply would renew a certificate of the record now.
pub fn renewal_due(record: &ServiceRecord) -> bool {
    let Some(tls) = &record.tls else { return false };
    record.nodes.iter().any(|n| due(tls, n.cert.as_ref(), &n.host))
        || record.sentinels.iter().any(|s| due(tls, s.cert.as_ref(), &s.host))
        || due(tls, Some(&tls.client), "")
}

/// When the first of the record's node and Sentinel certificates ends, seconds since the Unix
/// epoch.
pub fn earliest_end(record: &ServiceRecord) -> Option<i64> {
    let nodes = record.nodes.iter().filter_map(|n| n.cert.as_ref());
    let sentinels = record.sentinels.iter().filter_map(|s| s.cert.as_ref());
    nodes.chain(sentinels).map(|c| c.not_after_unix).min()
}

fn identity(tls: &GroupTls, cert: &CertRecord) -> TlsIdentity {
    TlsIdentity {
        ca_pem: tls.ca.cert.clone(),
        cert_pem: cert.cert.clone(),
        key_pem: cert.key.clone(),
    }
}

/// What the provider connects to the record's group with: its client certificate.
pub fn client_identity(record: &ServiceRecord) -> Option<TlsIdentity> {
    record.tls.as_ref().map(|tls| identity(tls, &tls.client))
}

/// What data node `index` of the record serves with.
pub fn node_identity(record: &ServiceRecord, index: usize) -> Option<TlsIdentity> {
    let tls = record.tls.as_ref()?;
    let node = record.nodes.iter().find(|n| n.index == index)?;
    Some(identity(tls, node.cert.as_ref()?))
}

/// What Sentinel `index` of the record serves with.
pub fn sentinel_identity(record: &ServiceRecord, index: usize) -> Option<TlsIdentity> {
    let tls = record.tls.as_ref()?;
    let s = record.sentinels.iter().find(|s| s.index == index)?;
    Some(identity(tls, s.cert.as_ref()?))
}

/// An RFC 3339 time for state, from seconds since the Unix epoch.
pub fn rfc3339(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{NodeRecord, SentinelRecord};

    fn choice(validity: u64, renew_before: u64) -> TlsChoice {
        TlsChoice {
            auth_clients: "no".into(),
            validity: Duration::from_secs(validity),
            renew_before: Duration::from_secs(renew_before),
            user_ca: None,
        }
    }

    fn record(tls: GroupTls) -> ServiceRecord {
        ServiceRecord {
            name: "main".into(),
            nodes: vec![NodeRecord {
                index: 0,
                host: "127.0.1.1".into(),
                port: 7000,
                cert: None,
            }],
            sentinels: vec![SentinelRecord {
                index: 0,
                region: "local-2".into(),
                host: "127.0.2.1".into(),
                port: 26379,
                cert: None,
            }],
            tls: Some(tls),
            ..Default::default()
        }
    }

    #[test]
    fn every_node_and_sentinel_gets_a_certificate_once_and_again_when_it_moves() {
        let mut r = record(new_group("main", &choice(86400, 3600)).unwrap());
        assert_eq!(issue_due(&mut r, true).unwrap(), vec![0]);
        assert!(renewal_due(&r), "the Sentinel has none yet");
        assert_eq!(issue_sentinels_due(&mut r).unwrap(), vec![0]);
        assert!(!renewal_due(&r));
        assert!(issue_due(&mut r, true).unwrap().is_empty());
        let identity = node_identity(&r, 0).unwrap();
        assert_eq!(identity.ca_pem, r.tls.as_ref().unwrap().ca.cert);
        assert!(sentinel_identity(&r, 0).is_some() && client_identity(&r).is_some());
        r.nodes[0].host = "127.0.3.1".into();
        assert!(renewal_due(&r));
        assert_eq!(
            issue_due(&mut r, false).unwrap(),
            vec![0],
            "a moved node gets one at any update"
        );
        assert_eq!(r.nodes[0].cert.as_ref().unwrap().host, "127.0.3.1");
    }

    #[test]
    fn certificates_with_less_than_renew_before_left_are_due() {
        // Valid for 100 s, renewed once fewer than 200 s remain: due at once.
        let mut r = record(new_group("main", &choice(100, 200)).unwrap());
        issue_due(&mut r, true).unwrap();
        issue_sentinels_due(&mut r).unwrap();
        assert!(renewal_due(&r));
        assert!(
            issue_due(&mut r, false).unwrap().is_empty(),
            "only a planned renewal renews"
        );
        let end = earliest_end(&r).unwrap();
        assert!((end - now_unix() - 100).abs() < 5);
        assert_eq!(issue_due(&mut r, true).unwrap(), vec![0]);
        assert_eq!(issue_sentinels_due(&mut r).unwrap(), vec![0]);
    }

    #[test]
    fn a_group_without_tls_has_no_certificates() {
        let mut r = record(new_group("main", &choice(100, 10)).unwrap());
        r.tls = None;
        assert!(issue_due(&mut r, true).unwrap().is_empty() && issue_sentinels_due(&mut r).unwrap().is_empty());
        assert!(!renewal_due(&r) && earliest_end(&r).is_none() && client_identity(&r).is_none());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
