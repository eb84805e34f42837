//! The valkey_user resource model: an application ACL user of a replication group.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ACL user on every member of a service's replication group: the primary service, its
/// standbys, its read replicas, and read replicas created later. Valkey does not replicate ACL
/// changes, so the provider sets the user on each member itself; a member promoted by a
/// failover already has it. A user changed or deleted outside Terraform shows as drift in
/// `acl_rules`, and the next apply puts it back. Named `default`, it manages the password of
/// the group's `default` user instead (no access rules then).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AclUserModel {
    /// `SERVICE/USERNAME`. Use it with `terraform import`.
    #[schemars(extend("x-computed" = true))]
    pub id: Option<String>,

    /// Name of the primary service whose replication group has the user (not a read replica's:
    /// the user is on the whole group). Changing it replaces the user.
    #[schemars(extend("x-force-new" = true))]
    pub service: String,

    /// Cloud of that service: `local` or `docker`. Changing it replaces the user.
    #[schemars(extend("default" = "local", "x-force-new" = true))]
    pub cloud: Option<String>,

    /// Name clients log in with (`AUTH USERNAME PASSWORD`): 1 to 64 letters, digits, `-`, `_`,
    /// `.` or `@`. `replicator` and `sentinel` are the provider's own. Changing it replaces the
    /// user.
    #[schemars(extend("x-force-new" = true))]
    pub username: String,

    /// Command categories allowed (`+@NAME`) or denied (`-@NAME`), applied in order, such as
    /// `["+@read", "+@write", "-@dangerous"]`. The names are Valkey's (`ACL CAT`).
    pub categories: Option<Vec<String>>,

    /// Single commands allowed (`+NAME`, `+NAME|SUBCOMMAND`) or denied (`-NAME`), applied in
    /// order after `categories`, such as `["+ping", "-flushall"]`.
    pub commands: Option<Vec<String>>,

    /// Key patterns the user may touch, such as `["app:*"]`; `%R~PATTERN` or `%W~PATTERN`
    /// grants only reads or only writes. None: no key.
    pub keys: Option<Vec<String>>,

    /// Pub/Sub channel patterns the user may use, such as `["events:*"]`. None: no channel.
    pub channels: Option<Vec<String>>,

    /// The user's password, 8 to 256 characters, kept in state (sensitive); generated when
    /// neither it nor `password_wo` is set; empty with `password_wo`.
    #[schemars(extend("x-computed" = true, "x-optional" = true, "x-sensitive" = true))]
    pub password: Option<String>,

    /// A password of yours, 8 to 256 characters, instead of `password`. Write-only: Terraform
    /// keeps it in no plan and no state, and the nodes keep only its SHA-256. Needs
    /// `password_wo_version`.
    #[schemars(extend("x-write-only" = true))]
    pub password_wo: Option<String>,

    /// Change it (to any other number) to set a new `password_wo`: Terraform cannot see a
    /// write-only value change, so this is what makes the plan show the update.
    pub password_wo_version: Option<i64>,

    /// The user's rules as the provider gives them to Valkey after the password, such as
    /// `~app:* &events:* +@read +set`; when a member has the user otherwise (changed or deleted
    /// outside Terraform), which member and what it has, so the plan shows the update that puts
    /// it back.
    #[schemars(extend("x-computed" = true))]
    pub acl_rules: Option<String>,
}
