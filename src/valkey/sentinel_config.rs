//! The config a Sentinel starts from. Sentinel rewrites this file with what it learns (peers,
//! replicas, epochs), so it is written once, at the Sentinel's creation.

use super::config_file::{SENTINEL_USER, tls_directives};

/// The ACL user Sentinels of a group authenticate to each other as, and the provider
/// administers them as (SENTINEL SET, FAILOVER, RESET).
pub const SENTINEL_PEER_USER: &str = "sentinel-peer";

/// What a client holding the Sentinel password may do: find the primary and the replicas,
/// and watch Sentinel's events. Nothing that changes the group (SENTINEL SET, FAILOVER,
/// RESET, REMOVE, MONITOR, CONFIG, DEBUG), and nothing on data nodes, whose passwords differ.
const CLIENT_PERMISSIONS: &str = "resetchannels allchannels -@all +ping +auth +hello +client|setname \
+client|getname +client|setinfo +client|id +role +info +subscribe +psubscribe +unsubscribe +punsubscribe \
+sentinel|get-master-addr-by-name +sentinel|get-primary-addr-by-name +sentinel|masters +sentinel|primaries \
+sentinel|master +sentinel|primary +sentinel|replicas +sentinel|slaves +sentinel|sentinels";

#[derive(Debug, Clone, PartialEq)]
/// Everything in a Sentinel's config file that does not depend on where it runs: the runtime
/// adds the address, port, announced address and paths.
pub struct SentinelConfig {
    /// The monitored group's name: the primary service's name.
    pub group: String,
    /// Where the group's primary is when this Sentinel is created.
    pub primary_host: String,
    pub primary_port: u16,
    pub quorum: usize,
    pub down_after_ms: i64,
    /// What clients authenticate with (the `default` user, read-only).
    pub client_password: String,
    /// What Sentinels authenticate with: to each other as [`SENTINEL_PEER_USER`], to the
    /// group's nodes as their Sentinel ACL user. The provider uses it too.
    pub auth_password: String,
    /// When the group speaks TLS: whether the Sentinel asks clients for a certificate; its
    /// links to nodes and other Sentinels use TLS.
    pub tls_auth_clients: Option<String>,
}

impl SentinelConfig {
    /// How long a failover may take before another is tried; also how long Sentinel waits
    /// before retrying a failed failover of the same primary.
    pub fn failover_timeout_ms(&self) -> i64 {
        (self.down_after_ms * 4).max(10_000)
    }

    pub fn render(&self) -> String {
        let g = &self.group;
        [
            format!("user default on >{} {CLIENT_PERMISSIONS}", self.client_password),
            format!("user {SENTINEL_PEER_USER} on >{} allchannels +@all", self.auth_password),
            format!("sentinel sentinel-user {SENTINEL_PEER_USER}"),
            format!("sentinel sentinel-pass {}", self.auth_password),
            "sentinel resolve-hostnames no".into(),
            format!(
                "sentinel monitor {g} {} {} {}",
                self.primary_host, self.primary_port, self.quorum
            ),
            format!("sentinel auth-user {g} {SENTINEL_USER}"),
            format!("sentinel auth-pass {g} {}", self.auth_password),
            format!("sentinel down-after-milliseconds {g} {}", self.down_after_ms),
            format!("sentinel failover-timeout {g} {}", self.failover_timeout_ms()),
            // Read replicas live in other regions; let them all resync at once.
            format!("sentinel parallel-syncs {g} 5"),
        ]
        .join("\n")
            + "\n"
            + &self.tls_auth_clients.as_deref().map(tls_directives).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_the_group_as_the_sentinel_user_with_quorum_and_timeouts() {
        let c = SentinelConfig {
            group: "main".into(),
            primary_host: "127.0.1.1".into(),
            primary_port: 7000,
            quorum: 2,
            down_after_ms: 1000,
            client_password: "cpw".into(),
            auth_password: "apw".into(),
            tls_auth_clients: None,
        };
        let text = c.render();
        assert!(text.contains("sentinel monitor main 127.0.1.1 7000 2\n"));
        assert!(text.contains("sentinel auth-user main sentinel\nsentinel auth-pass main apw\n"));
        assert!(text.contains("sentinel sentinel-user sentinel-peer\nsentinel sentinel-pass apw\n"));
        assert!(text.contains("sentinel down-after-milliseconds main 1000\n"));
        assert!(text.contains("sentinel failover-timeout main 10000\n"));
        assert!(!text.contains("bind ") && !text.contains("announce-ip"));
        // Clients get the read-only default user; the internal password is the peer user's.
        let default_user = text.lines().find(|l| l.starts_with("user default ")).unwrap();
        assert!(default_user.contains(">cpw -@all") || default_user.contains(">cpw resetchannels"));
        assert!(!default_user.contains("apw") && !default_user.contains("+@all"));
        assert!(!default_user.contains("sentinel|failover") && !default_user.contains("sentinel|set"));
        assert!(text.contains("user sentinel-peer on >apw allchannels +@all\n"));
    }
}
