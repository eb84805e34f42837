//! Parsing INFO replies: `key:value` lines grouped under `# Section` headers.

use std::collections::HashMap;

/// A parsed INFO reply (all sections flattened; Valkey's keys are unique across sections).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info(HashMap<String, String>);

impl Info {
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?.parse().ok()
    }

    /// "primary" or "replica", in this project's words (INFO says master/slave).
    pub fn role(&self) -> Option<&'static str> {
        match self.get("role")? {
            "master" => Some("primary"),
            "slave" => Some("replica"),
            _ => None,
        }
    }

    /// Whether this server is Valkey (not Redis or another server speaking the protocol).
    pub fn is_valkey(&self) -> bool {
        self.get("server_name") == Some("valkey")
    }

    /// The major version of Valkey (`valkey_version:8.1.1` is 8).
    pub fn major_version(&self) -> Option<u32> {
        self.get("valkey_version")?.split('.').next()?.parse().ok()
    }

    /// For a primary: its replicas that are online and acknowledged the stream within
    /// `max_lag` seconds (`slaveN:...,state=online,...,lag=L`), those a write bound counts.
    pub fn good_replicas(&self, max_lag: i64) -> usize {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("slave") && k[5..].parse::<u32>().is_ok())
            .filter(|(_, v)| {
                let field = |name: &str| v.split(',').find_map(|f| f.strip_prefix(name)?.strip_prefix('='));
                field("state") == Some("online") && field("lag").and_then(|l| l.parse::<i64>().ok()) <= Some(max_lag)
            })
            .count()
    }

    /// For a replica: whether its link to the primary is up.
    pub fn primary_link_up(&self) -> bool {
        self.get("master_link_status") == Some("up")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_replicas_are_online_and_recent() {
        let info = Info::parse(
            "role:master\r\nconnected_slaves:3\r\nslave0:ip=127.0.0.1,port=1,state=online,offset=5,lag=0\r\n\
             slave1:ip=127.0.0.1,port=2,state=wait_bgsave,offset=0,lag=0\r\n\
             slave2:ip=127.0.0.1,port=3,state=online,offset=5,lag=7\r\nslave_read_repl_offset:5\r\n",
        );
        assert_eq!(info.good_replicas(2), 1);
        assert_eq!(info.good_replicas(10), 2);
    }

    const REPLICA: &str = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:9.1.2\r\n\r\n# Replication\r\nrole:slave\r\nmaster_host:127.0.1.1\r\nmaster_link_status:up\r\nslave_repl_offset:1234\r\n";

    #[test]
    fn parses_sections_and_translates_roles() {
        let info = Info::parse(REPLICA);
        assert_eq!(info.role(), Some("replica"));
        assert!(info.is_valkey());
        assert!(info.primary_link_up());
        assert_eq!(info.get_i64("slave_repl_offset"), Some(1234));
        assert_eq!(info.get("master_host"), Some("127.0.1.1"));
    }

    #[test]
    fn redis_is_not_valkey_even_with_the_same_version_field() {
        let info = Info::parse("redis_version:7.2.4\r\nrole:master\r\n");
        assert!(!info.is_valkey());
        assert_eq!(info.role(), Some("primary"));
        assert!(!info.primary_link_up());
    }
}
