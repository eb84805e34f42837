//! The valkey_service resource model: the single description of its attributes. Serde gives
//! the state form, schemars the Terraform schema, doc comments the descriptions and docs.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use super::common_model::{
    EndpointModel, FailoverModel, NodeModel, TimeoutsModel, TlsModel, TopologyModel, UserConfigModel, VersionTagsModel,
};

/// A Valkey service: a primary node, plus standby nodes on the business and premium plans,
/// run by the provider's runtime (processes on this host for the `local` cloud).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceModel {
    /// Identifier of the service; the same as its name. Use it with `terraform import`.
    #[schemars(extend("x-computed" = true))]
    pub id: Option<String>,

    /// Name of the service, unique among the services and replicas of its cloud's store (the
    /// data_dir, for the local cloud): 1 to 63 lower-case letters,
    /// digits and hyphens, starting with a letter. Changing it replaces the service.
    #[schemars(extend("x-force-new" = true))]
    pub name: String,

    /// Service plan, which sets the node count and each node's memory (maxmemory):
    /// `hobbyist` (1 node, 1 GiB), `startup-4` (1 node, 4 GiB), `business-4` (2 nodes, 4 GiB),
    /// `premium-4` (3 nodes, 4 GiB). Changed in place: nodes are added or removed.
    pub plan: String,

    /// Cloud that runs the nodes: `local` (processes on the machine running Terraform) or
    /// `docker` (containers on the Docker Engines of the provider's `docker` block). Changing it
    /// replaces the service.
    #[schemars(extend("default" = "local", "x-force-new" = true))]
    pub cloud: Option<String>,

    /// Region of the cloud the nodes run in. The local cloud has regions `local-1` to
    /// `local-6`, each with its own loopback address (127.0.N.1). Changing it replaces the
    /// service.
    #[schemars(extend("x-force-new" = true))]
    pub region: String,

    /// Valkey settings. When the block is present, the provider also reports settings changed
    /// outside Terraform (for example with CONFIG SET) and puts them back on apply.
    #[schemars(extend("x-block" = true))]
    pub valkey_user_config: Option<UserConfigModel>,

    /// When true, `terraform destroy` refuses to delete the service. Set it to false and apply
    /// before destroying.
    #[schemars(extend("default" = false))]
    pub termination_protection: Option<bool>,

    /// Whether the nodes run. False stops them and keeps their data (saved on the way down,
    /// whatever `persistence` says). Powering off never moves the group's primary: when a node of this service is
    /// the primary, the group's Sentinels stop with it and start again once it is back on, so
    /// no replica is promoted meanwhile (the group takes no writes while its primary is off).
    /// True starts the nodes again, as replicas of the group's primary where they are not it.
    /// A node that stopped outside Terraform reads as false, so the next apply restarts it
    /// (a Sentinel that stopped shows in `sentinel_status`).
    #[schemars(extend("default" = true))]
    pub powered: Option<bool>,

    #[serde(flatten)]
    pub endpoint: EndpointModel,

    #[serde(flatten)]
    pub about: VersionTagsModel,

    /// `RUNNING` when every node answers, `POWEROFF` when none runs, `DEGRADED` in between.
    #[schemars(extend("x-computed" = true))]
    pub state: Option<String>,

    /// Role of the service's first node as Valkey reports it: `primary`, or `replica` after a
    /// failover or switchover to another member of the group.
    #[schemars(extend("x-computed" = true))]
    pub role: Option<String>,

    /// The service's nodes as they really are.
    #[schemars(extend("x-computed" = true))]
    pub nodes: Option<Vec<NodeModel>>,

    /// Names of the read replicas that replicate from this service.
    #[schemars(extend("x-computed" = true))]
    pub read_replicas: Option<Vec<String>>,

    /// TLS on every link of the replication group: with the block, every node and Sentinel of
    /// the service and its read replicas listens with TLS only (no plaintext port), replication
    /// and Sentinel links use TLS, `service_uri` is `valkeys://...`, and clients trust
    /// `ca_certificate`. The provider makes the group's CA and a certificate per node naming its
    /// address. The block cannot be added to or removed from an existing service (the plan
    /// says so): create the service with it.
    #[schemars(extend("x-block" = true))]
    pub tls: Option<TlsModel>,

    /// Automatic failover to a standby or read replica when the primary fails, and the bound on
    /// what a primary cut off from its group acknowledges.
    #[schemars(extend("x-block" = true))]
    pub failover: Option<FailoverModel>,

    /// The replication group's Sentinels: `running`, `degraded` (one or more stopped outside
    /// Terraform: the next plan puts them back), `unreachable` (none known stopped, one or more
    /// on a host that does not answer: nothing is planned for them until it does), `paused`
    /// (stopped on purpose while the group's primary is powered off) or `none` (a single data
    /// node: no standby and no read replica; or failover disabled).
    #[schemars(extend("x-computed" = true))]
    pub sentinel_status: Option<String>,

    /// Seconds of writes the replication group primary's backlog holds: how long a replica's
    /// link may be down (or a replica stopped) and still resume with a partial resync. At the
    /// larger of `expected_write_kib_per_second` and the rate the primary streams to each
    /// replica at the last refresh (below 16 KiB/s, what an idle primary sends, counts as
    /// none); null while neither is known.
    #[schemars(extend("x-computed" = true))]
    pub backlog_reach_seconds: Option<i64>,

    #[serde(flatten)]
    pub topology: TopologyModel,

    /// How long create, update and delete may take.
    #[schemars(extend("x-block" = true))]
    pub timeouts: Option<TimeoutsModel>,
}
