//! A typed client for one Sentinel of a monitored group: each SENTINEL subcommand the provider
//! uses is a method, and replies of field/value pairs are read in one place ([`Fields`]).

use std::time::Duration;

use super::client::{NodeClient, TlsIdentity, ValkeyError};

/// A reply made of name, value, name, value, ... (`SENTINEL MASTER`, `REPLICAS`, `SENTINELS`,
/// `DEBUG`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Vec<String>);

impl Fields {
    pub fn new(items: Vec<String>) -> Self {
        Fields(items)
    }

    /// The value of field `name`, when the reply has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .chunks(2)
            .find(|pair| pair[0] == name)
            .and_then(|pair| pair.get(1))
            .map(String::as_str)
    }

    /// The value of field `name` read as a number.
    pub fn number(&self, name: &str) -> Option<i64> {
        self.get(name)?.parse().ok()
    }

    /// The comma-separated flags of an instance (`master`, `slave`, `s_down`, ...).
    pub fn flags(&self) -> Vec<&str> {
        self.get("flags").map(|f| f.split(',').collect()).unwrap_or_default()
    }

    /// `ip:port` of the instance the reply describes.
    pub fn address(&self) -> Option<(String, u16)> {
        Some((self.get("ip")?.to_string(), self.get("port")?.parse().ok()?))
    }
}

impl<const N: usize> From<[&str; N]> for Fields {
    fn from(items: [&str; N]) -> Self {
        Fields(items.iter().map(|s| s.to_string()).collect())
    }
}

/// A connection to a Sentinel, scoped to the group it monitors under `group`.
pub struct SentinelClient {
    node: NodeClient,
    group: String,
}

impl SentinelClient {
    /// Connects as `user` (the peer user may change the group; the `default` user may only
    /// read it).
    pub async fn connect(
        host: &str,
        port: u16,
        user: &str,
        password: &str,
        tls: Option<&TlsIdentity>,
        group: &str,
        timeout: Duration,
    ) -> Result<Self, ValkeyError> {
        let node = NodeClient::connect_as(host, port, Some(user), password, tls, timeout).await?;
        Ok(SentinelClient {
            node,
            group: group.to_string(),
        })
    }

    /// Where this Sentinel says the group's primary is.
    pub async fn primary_address(&mut self) -> Result<Option<(String, u16)>, ValkeyError> {
        let addr: Option<Vec<String>> = self
            .node
            .command(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.group])
            .await?;
        Ok(match addr.as_deref() {
            Some([host, port]) => port.parse().ok().map(|port| (host.clone(), port)),
            _ => None,
        })
    }

    /// What this Sentinel knows of the group's primary (`SENTINEL MASTER`).
    pub async fn primary(&mut self) -> Result<Fields, ValkeyError> {
        let fields: Vec<String> = self.node.command(&["SENTINEL", "MASTER", &self.group]).await?;
        Ok(Fields(fields))
    }

    /// The replicas this Sentinel knows in the group.
    pub async fn replicas(&mut self) -> Result<Vec<Fields>, ValkeyError> {
        let replicas: Vec<Vec<String>> = self.node.command(&["SENTINEL", "REPLICAS", &self.group]).await?;
        Ok(replicas.into_iter().map(Fields).collect())
    }

    /// The other Sentinels of the group this one knows.
    pub async fn peers(&mut self) -> Result<Vec<Fields>, ValkeyError> {
        let peers: Vec<Vec<String>> = self.node.command(&["SENTINEL", "SENTINELS", &self.group]).await?;
        Ok(peers.into_iter().map(Fields).collect())
    }

    /// Changes one of the group's options (`down-after-milliseconds`, ...). Sentinel rewrites
    /// and fsyncs its config file on each call.
    pub async fn set(&mut self, option: &str, value: &str) -> Result<(), ValkeyError> {
        let _: String = self
            .node
            .command(&["SENTINEL", "SET", &self.group, option, value])
            .await?;
        Ok(())
    }

    /// Sentinel's internal periods and timeouts (`SENTINEL DEBUG`).
    pub async fn periods(&mut self) -> Result<Fields, ValkeyError> {
        let fields: Vec<String> = self.node.command(&["SENTINEL", "DEBUG"]).await?;
        Ok(Fields(fields))
    }

    /// Sets one internal period, in milliseconds; not kept across restarts.
    pub async fn set_period(&mut self, name: &str, millis: &str) -> Result<(), ValkeyError> {
        let _: String = self.node.command(&["SENTINEL", "DEBUG", name, millis]).await?;
        Ok(())
    }

    /// Forgets the group's replicas and peers, which the Sentinel then rediscovers.
    pub async fn reset(&mut self) -> Result<(), ValkeyError> {
        let _: i64 = self.node.command(&["SENTINEL", "RESET", &self.group]).await?;
        Ok(())
    }

    /// The major version of Valkey this Sentinel runs.
    pub async fn major_version(&mut self) -> Result<Option<u32>, ValkeyError> {
        Ok(self.node.info(&["server"]).await?.major_version())
    }

    /// Asks for a failover at once, without coordination: the chosen replica is promoted with
    /// whatever it has (the caller pauses the primary's writes first).
    pub async fn failover(&mut self) -> Result<(), ValkeyError> {
        let _: String = self.node.command(&["SENTINEL", "FAILOVER", &self.group]).await?;
        Ok(())
    }

    /// Asks for a coordinated failover: the primary pauses writes until the chosen replica has
    /// every one of them, then the replica is promoted (Valkey 9).
    pub async fn failover_coordinated(&mut self) -> Result<(), ValkeyError> {
        let _: String = self
            .node
            .command(&["SENTINEL", "FAILOVER", &self.group, "COORDINATED"])
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_read_by_field_name() {
        let fields = Fields::from(["name", "primary", "down-after-milliseconds", "1000", "odd"]);
        assert_eq!(fields.get("down-after-milliseconds"), Some("1000"));
        assert_eq!(fields.number("down-after-milliseconds"), Some(1000));
        assert_eq!(fields.get("name"), Some("primary"));
        assert_eq!(fields.get("odd"), None);
        assert_eq!(fields.get("quorum"), None);
    }

    #[test]
    fn flags_and_address_come_apart() {
        let fields = Fields::from(["ip", "127.0.2.1", "port", "7000", "flags", "slave,s_down"]);
        assert_eq!(fields.address(), Some(("127.0.2.1".to_string(), 7000)));
        assert_eq!(fields.flags(), ["slave", "s_down"]);
        assert!(Fields::default().flags().is_empty());
    }
}
