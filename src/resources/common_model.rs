//! Model parts shared by valkey_service and valkey_read_replica.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Valkey settings of a service or read replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserConfigModel {
    /// What a node does when it reaches its plan's memory: `noeviction` (refuse writes),
    /// `allkeys-lru`, `allkeys-lfu`, `allkeys-random`, `volatile-lru`, `volatile-lfu`,
    /// `volatile-random` or `volatile-ttl`.
    #[schemars(extend("default" = "noeviction"))]
    pub maxmemory_policy: Option<String>,

    /// Seconds after which an idle client connection is closed; 0 keeps idle clients forever.
    #[schemars(extend("default" = 300))]
    pub timeout: Option<i64>,

    /// `rdb` writes periodic snapshots to disk, so even a node that crashed comes back with
    /// its data as of the last one; `off` writes none while the node runs. Either way a node
    /// the provider stops (power off, a restart by apply) saves its dataset on the way down
    /// and comes back with it, so its replicas resume with a partial resync.
    #[schemars(extend("default" = "rdb"))]
    pub persistence: Option<String>,

    /// I/O threads per node, 1 to 16. Changing it restarts the nodes (the replication group's
    /// primary in place: its Sentinels pause meanwhile, as for a power-off).
    #[schemars(extend("default" = 1))]
    pub io_threads: Option<i64>,

    /// Seconds a replica waits for traffic from its primary before it counts the link as
    /// broken and reconnects, 5 to 3600 (Valkey's `repl-timeout`). A network partition that
    /// silently drops packets shows as `replication_status = "down"` after this long. The
    /// primary must ping more often than that: nodes this provider runs ping every second; a
    /// server given as `primary_uri` pings every `repl-ping-replica-period` (10 s by default).
    #[schemars(extend("default" = 60))]
    pub repl_timeout: Option<i64>,

    /// Keyspace events published to Pub/Sub (Valkey's `notify-keyspace-events` flags), such as
    /// `Ex` (expired keys, on the keyevent channel); `""`, the default, publishes none.
    #[schemars(extend("default" = ""))]
    pub notify_keyspace_events: Option<String>,

    /// Logical databases per node, 1 to 128 (Valkey's `databases`). It can only grow (keys in
    /// the databases a smaller count drops would be lost), and changing it restarts the nodes.
    /// A read replica with fewer than its primary is refused at plan (the primary's writes to
    /// the others would land in the wrong database there).
    #[schemars(extend("default" = 16))]
    pub number_of_databases: Option<i64>,

    /// How slowly the LFU counter of a key grows with hits, 0 to 100 (`lfu-log-factor`); for the
    /// `*-lfu` maxmemory policies.
    #[schemars(extend("default" = 10))]
    pub lfu_log_factor: Option<i64>,

    /// Minutes after which an idle key's LFU counter halves, 1 to 120 (`lfu-decay-time`).
    #[schemars(extend("default" = 1))]
    pub lfu_decay_time: Option<i64>,

    /// How much CPU a node spends expiring keys, 1 to 10 (`active-expire-effort`): higher frees
    /// memory held by expired keys sooner.
    #[schemars(extend("default" = 1))]
    pub active_expire_effort: Option<i64>,

    /// Active defragmentation (`activedefrag`). Needs a valkey-server built with Valkey's own
    /// jemalloc (the source release and the official images; not libc malloc builds such as
    /// PyPI's, nor Debian's): the plan refuses it on a build without, naming the binary or image.
    #[schemars(extend("default" = false))]
    pub activedefrag: Option<bool>,

    /// Output buffer hard limit of a Pub/Sub client, MiB, 32 to 512: a subscriber that falls
    /// this far behind is disconnected (also after 60 s above a quarter of it).
    #[schemars(extend("default" = 32))]
    pub pubsub_client_output_buffer_limit: Option<i64>,

    /// Channels an ACL user may use when its rules name none (`acl-pubsub-default`):
    /// `resetchannels` (none, the default) or `allchannels`.
    #[schemars(extend("default" = "resetchannels"))]
    pub acl_channels_default: Option<String>,

    /// Replication backlog, MiB (`repl-backlog-size`): the writes a primary keeps so that a
    /// replica that lost its link (a network cut between regions, a restart) resumes with a
    /// partial sync instead of a full resync of the dataset. 64 MiB keeps about 30 s at 2 MiB/s
    /// of writes; size it to your write rate times the longest outage to ride out. A plan
    /// allows up to a quarter of its memory.
    #[schemars(extend("default" = 64))]
    pub repl_backlog_size: Option<i64>,

    /// Whether snapshots compress strings (`rdbcompression`), on disk and in the stream a full
    /// sync sends a replica. Compression saves bandwidth between regions on compressible data;
    /// on incompressible data over a fast link, turning it off made a 1 GB full sync twice as
    /// fast (docs/performance.md).
    #[schemars(extend("default" = true))]
    pub rdb_compression: Option<bool>,

    /// The replication stream the primary produces at peak, KiB/s, 1 to 4194304: with
    /// `longest_link_outage_seconds`, sizes `repl_backlog_size` (leave that unset) to hold that
    /// many seconds of writes plus a quarter for bursts. The primary's `INFO stats`
    /// `instantaneous_output_repl_kbps` divided by its replicas shows the rate now.
    pub expected_write_kib_per_second: Option<i64>,

    /// The longest outage of a replica's link (or a replica stopped) that must end in a
    /// partial resync rather than a full copy of the dataset, seconds, 1 to 86400: with
    /// `expected_write_kib_per_second`, sizes `repl_backlog_size`. The plan refuses a size
    /// beyond a quarter of the plan's memory.
    pub longest_link_outage_seconds: Option<i64>,
}

/// What a service or read replica reports about itself beyond its nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionTagsModel {
    /// Valkey version the nodes run (`INFO server`), such as `8.1.4`; kept as last read while
    /// no node answers.
    #[schemars(extend("x-computed" = true))]
    pub valkey_version: Option<String>,

    /// Labels of yours (team, cost centre, environment) kept with the resource: in its record,
    /// so an import and the data sources return them. Changing them touches no node.
    pub tags: Option<std::collections::BTreeMap<String, String>>,
}

/// One node of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeModel {
    /// Node name, `SERVICE-INDEX`.
    pub name: String,
    /// Address the node listens on.
    pub host: String,
    /// TCP port of the node.
    pub port: i64,
    /// `primary` or `replica`, as the node reports it; `unknown` when it does not answer.
    pub role: String,
    /// `running` or `stopped`.
    pub state: String,
    /// `host:port` of the node this one replicates from; empty when it replicates from no
    /// one (the group's primary) or does not answer.
    #[serde(default)]
    pub replicates_from: String,
}

/// Durations such as `30s`, `10m` or `1h30m`, from 1s to 24h.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimeoutsModel {
    /// Longest time a create may take (default 20m).
    pub create: Option<String>,
    /// Longest time an update may take (default 20m).
    pub update: Option<String>,
    /// Longest time a delete may take (default 20m).
    pub delete: Option<String>,
}

/// How clients reach a service or replica; computed at creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EndpointModel {
    /// Address clients connect to: the region's address the first node listens on.
    #[schemars(extend("x-computed" = true))]
    pub host: Option<String>,

    /// TCP port of the first node.
    #[schemars(extend("x-computed" = true))]
    pub port: Option<i64>,

    /// Password of the `default` user, generated with the primary service. Every member of a
    /// replication group (the primary service, its standbys and its read replicas) has the
    /// same one, so it works on whichever member is the primary after a failover. Empty once
    /// a `valkey_user` named `default` gave it write-only (`password_wo`).
    #[schemars(extend("x-computed" = true, "x-sensitive" = true))]
    pub password: Option<String>,

    /// Connection URI of this service's or replica's own first node,
    /// `valkey://default:PASSWORD@HOST:PORT`, with the group's password (`valkey://HOST:PORT`
    /// once the password was given write-only). On a read replica it
    /// serves reads, and writes only while that replica is the group's primary; clients that
    /// must always reach the primary use the Sentinels.
    #[schemars(extend("x-computed" = true, "x-sensitive" = true))]
    pub service_uri: Option<String>,

    /// PEM certificate of the replication group's certificate authority, when the group
    /// speaks TLS (the primary service's `tls` block): clients trust it to verify the nodes and
    /// Sentinels. Empty without TLS.
    #[schemars(extend("x-computed" = true))]
    pub ca_certificate: Option<String>,

    /// When the first certificate of this service's or replica's nodes (and, on a primary
    /// service, its Sentinels) ends, RFC 3339; empty without TLS. A plan made once fewer than
    /// the group's `tls.renew_before` remain shows the update that renews them.
    #[schemars(extend("x-computed" = true))]
    pub certificate_expires_at: Option<String>,
}

/// TLS on every link of a replication group: clients, replication (across regions too) and
/// Sentinel.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TlsModel {
    /// How long the certificates the group's CA issues to nodes and Sentinels last: a
    /// duration such as `8760h` (the default, a year), at least `1h`.
    #[schemars(extend("default" = "8760h"))]
    pub certificate_validity: Option<String>,

    /// How long before a certificate ends an apply renews it (a plan shows the update), such as
    /// `720h` (the default, 30 days); shorter than `certificate_validity`. Nodes take a renewed
    /// certificate without a restart; Sentinels restart one at a time.
    #[schemars(extend("default" = "720h"))]
    pub renew_before: Option<String>,

    /// Whether nodes and Sentinels ask clients for a certificate signed by the group's CA:
    /// `no` (the default; clients authenticate with the password only), `optional` (a client
    /// that shows one must show a valid one) or `yes` (every client must). Anything but `no`
    /// needs `ca_certificate`, so you can issue client certificates. Set at creation.
    #[schemars(extend("default" = "no"))]
    pub auth_clients: Option<String>,

    /// A CA certificate (PEM) of yours for the group, instead of one the provider makes: it
    /// signs the nodes' certificates, and the client certificates you issue with it. Needs
    /// `ca_private_key_wo`. Set at creation.
    pub ca_certificate: Option<String>,

    /// The private key (PEM) of `ca_certificate`. Write-only: Terraform keeps it in no plan
    /// and no state; the provider keeps it with the group's other secrets (files of mode
    /// 0600), to sign node certificates and their renewals.
    #[schemars(extend("x-write-only" = true))]
    pub ca_private_key_wo: Option<String>,
}

/// How the replication group fails over when its primary fails, and how long a primary cut
/// off from the group goes on acknowledging writes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailoverModel {
    /// Watch the primary with Valkey Sentinel (3 Sentinels, quorum 2, spread over the hosts and
    /// regions of the group's data nodes) and promote a standby or read replica when it fails.
    /// Sentinels run while the group has more than one data node: a business-4 or premium-4
    /// service, or any service with read replicas.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,

    /// Milliseconds the primary must be unreachable before it counts as down, 2000 to 60000.
    /// Lower fails over sooner; too low risks failing over a primary that is only busy. (Below
    /// 2000, Sentinel's once-a-second pings could fail over a primary it has just promoted.)
    #[schemars(extend("default" = 5000))]
    pub down_after_ms: Option<i64>,

    /// Replicas (standbys and read replicas) a primary must hear from within
    /// `min_replicas_max_lag` seconds to take writes (Valkey's `min-replicas-to-write`), 0 to 7.
    /// It bounds what a primary cut off from its group acknowledges in a split brain: such a
    /// primary refuses writes (`NOREPLICAS`) once it has heard from too few replicas for
    /// `min_replicas_max_lag` seconds, instead of acknowledging writes for as long as the cut
    /// lasts and losing them all when it heals. Unset, the provider requires 1 replica when
    /// the group has at least 3 data nodes powered on, and none with fewer, so that the loss
    /// of any one node never stops writes (with 2 data nodes, a failover leaves the new primary
    /// with no replica to hear from). A number requires that many, never more than the group's
    /// other powered-on nodes; 0 turns the bound off. While the provider itself stops or
    /// removes nodes (power off, destroy, scale down, restart, switchover) it lowers the
    /// requirement first and restores it after.
    pub min_replicas_to_write: Option<i64>,

    /// Seconds, 1 to 60, within which a replica must have acknowledged the replication stream
    /// to count for `min_replicas_to_write`. A cut-off primary stops taking writes this long
    /// into the cut, plus up to 2 s (Valkey counts lag in whole seconds and recounts once a
    /// second): with the default 2, the writes a split brain lost were all acknowledged in the
    /// first 2.3 to 3.1 s of the cut (measured at `down_after_ms = 2000`). Lower than 2 risks
    /// refusing writes on a healthy primary whose replica's once-a-second acknowledgement is a
    /// little late.
    #[schemars(extend("default" = 2))]
    pub min_replicas_max_lag: Option<i64>,
}

/// Where a replication group's Sentinels and current primary are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopologyModel {
    /// Addresses (`host:port`) of the Sentinels watching the replication group; empty while
    /// the group has a single data node (no standby, no read replica) or failover is disabled. Sentinel-aware clients use them to
    /// find the current primary after a failover without a configuration change.
    #[schemars(extend("x-computed" = true))]
    pub sentinel_addresses: Option<Vec<String>>,

    /// Password for the Sentinels (`AUTH` with it before asking them anything). It lets a
    /// client find the primary and the replicas and watch Sentinel's events, nothing more: it
    /// changes nothing on the Sentinels and opens no data node.
    #[schemars(extend("x-computed" = true, "x-sensitive" = true))]
    pub sentinel_password: Option<String>,

    /// `host:port` of the replication group's primary now, as Sentinel reports it (while that
    /// primary is powered off on purpose: where it was).
    #[schemars(extend("x-computed" = true))]
    pub current_primary: Option<String>,
}
