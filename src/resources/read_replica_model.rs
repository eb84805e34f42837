//! The valkey_read_replica resource model: the single description of its attributes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::common_model::{EndpointModel, TimeoutsModel, TopologyModel, UserConfigModel, VersionTagsModel};

/// A read replica: a single-node service in its own region that replicates asynchronously
/// from a primary. Only writes to the primary propagate; the replica refuses writes. A primary
/// can have at most 5 read replicas, and replicas run on the `startup-4` plan only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReadReplicaModel {
    /// Identifier of the replica; the same as its name. Use it with `terraform import`.
    #[schemars(extend("x-computed" = true))]
    pub id: Option<String>,

    /// Name of the replica, unique among the services and replicas of its cloud's store (the
    /// data_dir, for the local cloud):
    /// 1 to 63 lower-case letters, digits and hyphens, starting with a letter. Changing it
    /// replaces the replica.
    #[schemars(extend("x-force-new" = true))]
    pub name: String,

    /// Name of the `valkey_service` to replicate. Refer to the resource
    /// (`valkey_service.primary.name`) so Terraform creates the primary first and destroys it
    /// last. Exactly one of `primary_service` and `primary_uri` is set. Changing it replaces
    /// the replica.
    #[schemars(extend("x-force-new" = true))]
    pub primary_service: Option<String>,

    /// URI of a Valkey server this provider does not manage, `valkey://USER:PASSWORD@HOST:PORT`,
    /// for replicating or migrating an existing server. The user needs the permissions to
    /// replicate (PSYNC, REPLCONF, PING) and to run INFO, which tells the server type. Only
    /// Valkey servers are accepted: a Redis or other
    /// server is refused, judged by its INFO server fields. Changing it replaces the replica.
    #[schemars(extend("x-force-new" = true, "x-sensitive" = true))]
    pub primary_uri: Option<String>,

    /// Service plan. Read replicas are offered on `startup-4` only (1 node, 4 GiB).
    pub plan: String,

    /// Cloud that runs the node, `local` or `docker`: the cloud of its `primary_service`, whose
    /// records it shares. Changing it replaces the replica.
    #[schemars(extend("default" = "local", "x-force-new" = true))]
    pub cloud: Option<String>,

    /// Region the replica runs in: `local-1` to `local-6`, or one declared in the provider's
    /// `regions`. Usually another region than the primary's. Changing it replaces the replica.
    #[schemars(extend("x-force-new" = true))]
    pub region: String,

    /// Order in which replicas are promoted when the primary fails: lower goes first, 0 never.
    /// 0 to 1000.
    #[schemars(extend("default" = 100))]
    pub failover_priority: Option<i64>,

    /// Makes this replica the primary of its replication group with a coordinated switchover
    /// (writes pause briefly; no acknowledged write is lost). The former primary becomes a
    /// replica of this one, and keeps following it while this stays true. Needs failover
    /// enabled on the primary service. Destroying a replica that is the group's primary first
    /// hands the group over, the same way, to the member with the lowest failover_priority.
    #[schemars(extend("default" = false))]
    pub promote: Option<bool>,

    /// Valkey settings of the replica's node. When present, settings changed outside Terraform
    /// are reported and put back on apply.
    #[schemars(extend("x-block" = true))]
    pub valkey_user_config: Option<UserConfigModel>,

    /// Whether the node runs. False stops it and keeps its data. Powering off never moves the
    /// group's primary: when this replica is the primary (after a failover or `promote`), the
    /// group's Sentinels stop with it and start again once it is back on. A node that stopped
    /// outside Terraform reads as false, so the next apply restarts it.
    #[schemars(extend("default" = true))]
    pub powered: Option<bool>,

    /// When true, `terraform destroy` refuses to delete the replica. Set it to false and apply
    /// before destroying.
    #[schemars(extend("default" = false))]
    pub termination_protection: Option<bool>,

    #[serde(flatten)]
    pub endpoint: EndpointModel,

    #[serde(flatten)]
    pub about: VersionTagsModel,

    /// `RUNNING` when the node answers, `POWEROFF` when it does not run.
    #[schemars(extend("x-computed" = true))]
    pub state: Option<String>,

    /// Role of the node as Valkey reports it: `replica`, or `primary` after a promotion.
    #[schemars(extend("x-computed" = true))]
    pub role: Option<String>,

    /// `up` when the replication link to the group's primary works, `down` when it does not,
    /// `none` while this replica is itself the group's primary (it replicates from no one).
    #[schemars(extend("x-computed" = true))]
    pub replication_status: Option<String>,

    /// `host:port` of the node the replica replicates from, as it reports it: the group's
    /// current primary when all is well; empty while it replicates from no one.
    #[schemars(extend("x-computed" = true))]
    pub replicates_from: Option<String>,

    /// How far the replica is behind, in bytes of the replication stream (the primary's
    /// offset minus the replica's), when refreshed. Null when the primary cannot be reached.
    #[schemars(extend("x-computed" = true))]
    pub replication_lag_bytes: Option<i64>,

    /// Seconds of writes the replication group primary's backlog holds: how long a replica's
    /// link may be down (or a replica stopped) and still resume with a partial resync. At the
    /// larger of `expected_write_kib_per_second` and the rate the primary streams to each
    /// replica at the last refresh (below 16 KiB/s, what an idle primary sends, counts as
    /// none); null while neither is known.
    #[schemars(extend("x-computed" = true))]
    pub backlog_reach_seconds: Option<i64>,

    /// Full resyncs (a whole copy of the dataset from the primary) this replica needed since
    /// it was created, beyond the first sync that made it, as its own log records them. A
    /// restart, a failover, a switchover or a link cut the backlog covers resume with a
    /// partial resync and do not count: alert when it grows. As of the last refresh; kept as
    /// last read while the node's log cannot be read.
    #[schemars(extend("x-computed" = true))]
    pub full_resyncs: Option<i64>,

    #[serde(flatten)]
    pub topology: TopologyModel,

    /// How long create, update and delete may take.
    #[schemars(extend("x-block" = true))]
    pub timeouts: Option<TimeoutsModel>,
}
