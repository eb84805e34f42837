//! The secrets of a replication group: made once, shared by every member.

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::runtime::{GroupTls, ServiceRecord};

pub fn generate_secret() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// The secrets a replication group shares: every member has the same ones.
pub struct GroupSecrets {
    pub password: String,
    pub replication_password: String,
    pub sentinel_password: String,
    pub sentinel_auth_password: String,
    /// The group's CA and settings, when it speaks TLS.
    pub tls: Option<GroupTls>,
    /// Whether `password` was given write-only (see `ServiceRecord::password_write_only`).
    pub password_write_only: bool,
}

impl GroupSecrets {
    /// Fresh secrets, for a new group.
    pub fn generate() -> Self {
        GroupSecrets {
            password: generate_secret(),
            replication_password: generate_secret(),
            sentinel_password: generate_secret(),
            sentinel_auth_password: generate_secret(),
            tls: None,
            password_write_only: false,
        }
    }

    /// The secrets of the group `record` belongs to.
    pub fn of(record: ServiceRecord) -> Self {
        GroupSecrets {
            password: record.password,
            replication_password: record.replication_password,
            sentinel_password: record.sentinel_password,
            sentinel_auth_password: record.sentinel_auth_password,
            tls: record.tls,
            password_write_only: record.password_write_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_and_url_safe() {
        let s = generate_secret();
        assert_eq!(s.len(), 32);
        assert!(s.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(s, generate_secret());
    }
}
