//! The valkey.conf a node starts from. Secrets live here (file mode 0600), never in process
//! arguments, so `ps` shows none.

use std::fmt::Write;

/// The ACL user standbys and read replicas authenticate as: it may only replicate.
pub const REPLICATION_USER: &str = "replicator";
/// The ACL user Sentinels authenticate as: what Sentinel needs to watch, promote and demote.
pub const SENTINEL_USER: &str = "sentinel";
const SENTINEL_PERMISSIONS: &str = "-@all allchannels +multi +exec +slaveof +replicaof +ping +subscribe \
+config|rewrite +role +publish +info +client|setname +client|setinfo +client|kill +client|pause +client|unpause \
+script|kill +failover";

/// Everything in one node's config file that does not depend on where the node runs: the
/// runtime adds the address, port and paths.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Password of the `default` user, which clients use.
    pub password: String,
    /// Password of the replication user.
    pub replication_password: String,
    /// Password of the Sentinel user (what Sentinels authenticate with, never a client);
    /// no Sentinel user when empty.
    pub sentinel_auth_password: String,
    pub maxmemory_bytes: u64,
    pub maxmemory_policy: String,
    pub timeout_seconds: i64,
    /// "off" or "rdb".
    pub persistence: String,
    pub io_threads: i64,
    /// Seconds without traffic from the primary before a replica drops the link.
    pub repl_timeout_seconds: i64,
    /// The primary this node replicates from, if it is a standby or a read replica.
    pub upstream: Option<UpstreamAuth>,
    /// replica-priority: lower is promoted first by Sentinel, 0 never.
    pub replica_priority: Option<i64>,
    /// When the group speaks TLS: whether nodes ask clients for a certificate (`no`,
    /// `optional` or `yes`). The runtime adds the TLS port and the certificate files.
    pub tls_auth_clients: Option<String>,
    /// The group's application ACL users, as config file `user` lines (password hashes only).
    pub acl_users: Vec<String>,
    /// Logical databases (`databases`): fixed while the node runs.
    pub databases: i64,
    /// Replicas the node, as a primary, must hear from within `min_replicas_max_lag` seconds
    /// to take writes (0: none).
    pub min_replicas_to_write: i64,
    pub min_replicas_max_lag: i64,
    /// Further settings CONFIG SET can change on a running node, as valkey-server names them.
    pub extra_settings: Vec<(&'static str, String)>,
}

/// The TLS directives of a node or Sentinel of a group that speaks TLS, beyond where it listens
/// and its files: its own links to other nodes use TLS too, and clients are asked for a
/// certificate as `auth_clients` says.
pub fn tls_directives(auth_clients: &str) -> String {
    format!("tls-replication yes\ntls-auth-clients {auth_clients}\n")
}

/// The names of the settings that make a primary refuse writes once it hears from too few
/// replicas: how many, and within how many seconds.
pub const WRITE_BOUND_SETTINGS: [&str; 2] = ["min-replicas-to-write", "min-replicas-max-lag"];

/// The settings that make a primary refuse writes once it hears from fewer than `to_write`
/// replicas within `max_lag` seconds, as valkey-server names them.
pub fn write_bound_settings(to_write: i64, max_lag: i64) -> [(&'static str, String); 2] {
    let [to_write_name, max_lag_name] = WRITE_BOUND_SETTINGS;
    [
        (to_write_name, to_write.to_string()),
        (max_lag_name, max_lag.to_string()),
    ]
}

/// Where and as whom a node replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAuth {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

/// How often a primary pings its replicas, seconds: below the shortest repl-timeout allowed.
const PING_REPLICA_PERIOD_SECONDS: i64 = 1;

/// RDB snapshot points used when persistence is "rdb" (valkey-server's own defaults).
const RDB_SAVE_POINTS: &str = "3600 1 300 100 60 10000";

impl NodeConfig {
    pub fn save_setting(&self) -> &'static str {
        if self.persistence == "rdb" { RDB_SAVE_POINTS } else { "" }
    }

    /// The settings that CONFIG SET can change on a running node, as valkey-server names them.
    pub fn runtime_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("maxmemory", self.maxmemory_bytes.to_string()),
            ("maxmemory-policy", self.maxmemory_policy.clone()),
            ("timeout", self.timeout_seconds.to_string()),
            ("save", self.save_setting().to_string()),
            ("repl-timeout", self.repl_timeout_seconds.to_string()),
            // Pings every second keep an idle link alive under any repl-timeout allowed.
            ("repl-ping-replica-period", PING_REPLICA_PERIOD_SECONDS.to_string()),
        ];
        if let Some(priority) = self.replica_priority {
            settings.push(("replica-priority", priority.to_string()));
        }
        settings.extend(write_bound_settings(
            self.min_replicas_to_write,
            self.min_replicas_max_lag,
        ));
        settings.extend(self.extra_settings.iter().cloned());
        settings
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            let _ = writeln!(out, "{s}");
        };
        line("protected-mode yes".into());
        line(format!("requirepass {}", self.password));
        line(format!(
            "user {REPLICATION_USER} on >{} -@all +psync +replconf +ping",
            self.replication_password
        ));
        if !self.sentinel_auth_password.is_empty() {
            line(format!(
                "user {SENTINEL_USER} on >{} {SENTINEL_PERMISSIONS}",
                self.sentinel_auth_password
            ));
        }
        for user in &self.acl_users {
            line(user.clone());
        }
        for (name, value) in self.runtime_settings() {
            line(format!("{name} {}", quote(&value)));
        }
        line("appendonly no".into());
        // SIGTERM (a restart: a setting that needs one, power off/on, a host stopping its
        // containers) saves the dataset even with persistence off, so the node reloads it with
        // its replication ID and offset and resumes with a partial resync instead of copying
        // the whole dataset again. SIGINT (a delete) does not save: see process::discard.
        line("shutdown-on-sigterm save".into());
        line("shutdown-on-sigint nosave".into());
        line(format!("io-threads {}", self.io_threads));
        line(format!("databases {}", self.databases));
        // Measured: the default 5 s diskless-sync delay dominates an empty initial sync.
        line("repl-diskless-sync yes".into());
        line("repl-diskless-sync-delay 0".into());
        line("repl-diskless-load on-empty-db".into());
        line("replica-read-only yes".into());
        if let Some(auth_clients) = &self.tls_auth_clients {
            out += &tls_directives(auth_clients);
        }
        let mut line = |s: String| {
            let _ = writeln!(out, "{s}");
        };
        match &self.upstream {
            Some(up) => {
                line(format!("replicaof {} {}", up.host, up.port));
                line(format!("masteruser {}", up.user));
                line(format!("masterauth {}", up.password));
            }
            // A primary may be demoted by a switchover and must then authenticate to the new
            // primary: the group shares one replication user and password.
            None => {
                line(format!("masteruser {REPLICATION_USER}"));
                line(format!("masterauth {}", self.replication_password));
            }
        }
        out
    }
}

/// `text` (a node's log, say) with every password of the config file `config_text` replaced:
/// valkey-server echoes a config line it rejects, and that line may hold one.
pub fn redact_secrets(text: &str, config_text: &str) -> String {
    let mut secrets: Vec<&str> = Vec::new();
    for line in config_text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["requirepass" | "masterauth", secret] => secrets.push(secret),
            ["sentinel", "sentinel-pass", secret] | ["sentinel", "auth-pass", _, secret] => secrets.push(secret),
            ["user", ..] => secrets.extend(words.iter().filter_map(|w| w.strip_prefix('>'))),
            _ => {}
        }
    }
    secrets
        .into_iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |text, secret| text.replace(secret, "(redacted)"))
}

/// Quotes a config value when it is empty or has spaces, as valkey.conf expects.
fn quote(value: &str) -> String {
    if value.is_empty() || value.contains(' ') {
        format!("\"{value}\"")
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> NodeConfig {
        NodeConfig {
            password: "secretpw".into(),
            replication_password: "replpw".into(),
            sentinel_auth_password: "sentpw".into(),
            maxmemory_bytes: 1024,
            maxmemory_policy: "allkeys-lru".into(),
            timeout_seconds: 300,
            repl_timeout_seconds: 60,
            persistence: "off".into(),
            io_threads: 2,
            upstream: None,
            replica_priority: None,
            tls_auth_clients: None,
            acl_users: vec!["user app on #ab ~app:* +get".into()],
            databases: 16,
            min_replicas_to_write: 0,
            min_replicas_max_lag: 2,
            extra_settings: vec![("client-output-buffer-limit", "pubsub 32mb 8mb 60".into())],
        }
    }

    #[test]
    fn every_password_of_a_node_or_sentinel_config_is_redacted_from_a_log() {
        let mut standby = config();
        standby.upstream = Some(UpstreamAuth {
            host: "127.0.1.1".into(),
            port: 7001,
            user: REPLICATION_USER.into(),
            password: "upstreampw".into(),
        });
        let node_config = standby.render();
        let log = ">>> 'requirepass secretpw extra'\nuser replicator on >replpw; sentinel >sentpw; upstreampw";
        let redacted = redact_secrets(log, &node_config);
        for secret in ["secretpw", "replpw", "sentpw", "upstreampw"] {
            assert!(!redacted.contains(secret), "{secret} shows in {redacted}");
        }
        assert!(redacted.contains(">>> 'requirepass (redacted) extra'"));
        let sentinel_config = "requirepass spw\nsentinel sentinel-pass spw\nsentinel auth-pass main apw\n";
        assert_eq!(
            redact_secrets("spw apw ok", sentinel_config),
            "(redacted) (redacted) ok"
        );
    }

    #[test]
    fn primary_config_is_protected_and_disables_snapshots_when_persistence_is_off() {
        let text = config().render();
        assert!(!text.contains("bind ") && !text.contains("port ") && !text.contains("dir "));
        assert!(text.contains("protected-mode yes\n"));
        assert!(text.contains("save \"\"\n"));
        assert!(text.contains("maxmemory-policy allkeys-lru\n"));
        assert!(text.contains("io-threads 2\n"));
        assert!(text.contains("databases 16\n"));
        assert!(text.contains("client-output-buffer-limit \"pubsub 32mb 8mb 60\"\n"));
        assert!(text.contains("repl-diskless-sync-delay 0\n"));
        // Replicas with the shortest repl_timeout allowed (5 s) still hear a ping in time.
        assert!(text.contains("repl-timeout 60\n"));
        assert!(text.contains("repl-ping-replica-period 1\n"));
        // Deletes stop nodes with SIGINT and must not save first; restarts (SIGTERM) do.
        assert!(text.contains("shutdown-on-sigint nosave\n"));
        assert!(text.contains("shutdown-on-sigterm save\n"));
        assert!(!text.contains("\nreplicaof "));
        assert!(text.contains("user sentinel on >sentpw -@all allchannels"));
        assert!(!text.contains("tls-"));
        assert!(text.contains("\nuser app on #ab ~app:* +get\n"));
    }

    #[test]
    fn a_node_of_a_tls_group_replicates_over_tls_and_asks_clients_as_told() {
        let mut c = config();
        c.tls_auth_clients = Some("optional".into());
        let text = c.render();
        assert!(text.contains("tls-replication yes\ntls-auth-clients optional\n"));
        // Where it listens and its certificate files are the runtime's to add.
        assert!(!text.contains("tls-port") && !text.contains("tls-cert-file"));
    }

    #[test]
    fn standby_config_replicates_as_the_replication_user() {
        let mut c = config();
        c.persistence = "rdb".into();
        c.upstream = Some(UpstreamAuth {
            host: "127.0.1.1".into(),
            port: 7001,
            user: REPLICATION_USER.into(),
            password: "primarypw".into(),
        });
        c.replica_priority = Some(10);
        let text = c.render();
        assert!(text.contains("save \"3600 1 300 100 60 10000\"\n"));
        assert!(text.contains("replicaof 127.0.1.1 7001\n"));
        assert!(text.contains("masteruser replicator\nmasterauth primarypw\n"));
        assert!(text.contains("replica-priority 10\n"));
        assert!(text.contains("user replicator on >replpw -@all +psync +replconf +ping\n"));
    }
}
