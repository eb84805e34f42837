//! The catalog: plans, clouds, and every limit that goes with them. This is the
//! one place limits live; validation and the runtime read them from here.

/// A service plan: how many nodes a service gets and how much memory each may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub name: &'static str,
    /// Nodes per service: one primary, the rest standbys replicating from it.
    pub nodes: usize,
    /// `maxmemory` of each node.
    pub memory_bytes: u64,
    /// Whether read-replica services may use this plan.
    pub offered_for_read_replicas: bool,
}

const GIB: u64 = 1024 * 1024 * 1024;

pub const PLANS: &[Plan] = &[
    Plan {
        name: "hobbyist",
        nodes: 1,
        memory_bytes: GIB,
        offered_for_read_replicas: false,
    },
    Plan {
        name: "startup-4",
        nodes: 1,
        memory_bytes: 4 * GIB,
        offered_for_read_replicas: true,
    },
    Plan {
        name: "business-4",
        nodes: 2,
        memory_bytes: 4 * GIB,
        offered_for_read_replicas: false,
    },
    Plan {
        name: "premium-4",
        nodes: 3,
        memory_bytes: 4 * GIB,
        offered_for_read_replicas: false,
    },
];

/// The cloud whose nodes are processes on the machine running Terraform.
pub const LOCAL_CLOUD: &str = "local";
/// The cloud whose nodes are containers on Docker Engines (configured in the provider block).
pub const DOCKER_CLOUD: &str = "docker";
pub const CLOUDS: &[&str] = &[LOCAL_CLOUD, DOCKER_CLOUD];

/// Eviction policies valkey-server accepts for `maxmemory-policy`.
pub const MAXMEMORY_POLICIES: &[&str] = &[
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
];

pub const PERSISTENCE_MODES: &[&str] = &["off", "rdb"];

/// Most read replicas one primary service may have.
pub const MAX_READ_REPLICAS: usize = 5;
/// The only plan read replicas are offered on.
pub const READ_REPLICA_PLAN: &str = "startup-4";
/// A read replica's failover priority (Valkey's replica-priority): lower is promoted first, 0
/// never.
pub const FAILOVER_PRIORITY_RANGE: (i64, i64) = (0, 1000);
pub const DEFAULT_FAILOVER_PRIORITY: i64 = 100;

/// Sentinels watching each replication group with more than one data node (standbys or read
/// replicas), and how many must agree that the primary is down before a failover starts.
pub const SENTINELS_PER_GROUP: usize = 3;
pub const SENTINEL_QUORUM: usize = 2;
/// How long a primary must be unreachable before it counts as down, milliseconds. Sentinel
/// pings every second: at 1000 ms, the first ping to a primary it has just promoted can be
/// answered just after the deadline, and the quorum fails over that healthy primary again
/// (seen in 1 of about 6 failover tests). 2000 ms leaves a whole ping period of room.
pub const DOWN_AFTER_MS_RANGE: (i64, i64) = (2000, 60_000);
/// Replicas a primary must hear from to take writes (Valkey's min-replicas-to-write): at most
/// every other data node a group can have (a premium-4 primary's 2 standbys and 5 read
/// replicas).
pub const MIN_REPLICAS_TO_WRITE_RANGE: (i64, i64) = (0, 7);
/// Seconds within which those replicas must have acknowledged the replication stream (Valkey's
/// min-replicas-max-lag; replicas acknowledge every second). Measured with a 20 s cut at
/// down_after_ms 2000: with 2 the cut-off primary refused writes 2.3 to 3.1 s after the cut
/// (Valkey counts lag in whole seconds and recounts good replicas once a second); below 2 a
/// healthy primary would refuse writes whenever an acknowledgement is a little late.
pub const MIN_REPLICAS_MAX_LAG_RANGE: (i64, i64) = (1, 60);
pub const DEFAULT_MIN_REPLICAS_MAX_LAG: i64 = 2;

/// Idle client timeout bounds, seconds (0 disables the timeout).
pub const CLIENT_TIMEOUT_RANGE: (i64, i64) = (0, 31_536_000);
/// Replication timeout bounds, seconds (Valkey's repl-timeout), and Valkey's default. The lower
/// bound leaves room for a few of the pings primaries send every second.
pub const REPL_TIMEOUT_RANGE: (i64, i64) = (5, 3600);
pub const DEFAULT_REPL_TIMEOUT: i64 = 60;
/// I/O threads per node.
pub const IO_THREADS_RANGE: (i64, i64) = (1, 16);
/// Logical databases per node (Valkey's `databases`); it only grows, since keys in a database
/// a smaller count drops would be lost.
pub const DATABASES_RANGE: (i64, i64) = (1, 128);
pub const DEFAULT_DATABASES: i64 = 16;
/// LFU counter logarithm factor and decay minutes (`lfu-log-factor`, `lfu-decay-time`).
pub const LFU_LOG_FACTOR_RANGE: (i64, i64) = (0, 100);
pub const LFU_DECAY_TIME_RANGE: (i64, i64) = (1, 120);
/// How hard a node works to expire keys, 1 (Valkey's default) to 10.
pub const ACTIVE_EXPIRE_EFFORT_RANGE: (i64, i64) = (1, 10);
/// Pub/Sub client output buffer hard limit, MiB (the soft limit is a quarter of it, for 60 s).
pub const PUBSUB_BUFFER_LIMIT_MB_RANGE: (i64, i64) = (32, 512);
/// What a new ACL user may publish and subscribe to when its rules name no channel.
pub const ACL_CHANNELS_DEFAULTS: &[&str] = &["resetchannels", "allchannels"];
/// Replication backlog, MiB: the writes a primary keeps for replicas that lose their link, so
/// they resume with a partial sync instead of a full one. 64 MiB holds about 30 s of writes at
/// 2 MiB/s. A plan allows up to a quarter of its memory.
pub const DEFAULT_REPL_BACKLOG_MB: i64 = 64;
/// A declared replication stream rate, KiB/s (up to 4 GiB/s).
pub const WRITE_RATE_KIB_RANGE: (i64, i64) = (1, 4 * 1024 * 1024);
/// A declared longest link outage to ride out, seconds (up to a day).
pub const LINK_OUTAGE_SECONDS_RANGE: (i64, i64) = (1, 86_400);
/// Keyspace notification classes Valkey knows (`notify-keyspace-events`).
pub const KEYSPACE_EVENT_FLAGS: &str = "KEg$lshzxetdmnA";

/// The most replication backlog, MiB, a plan's nodes may keep: a quarter of their memory.
pub fn max_repl_backlog_mb(plan: &Plan) -> i64 {
    i64::try_from(plan.memory_bytes / 4 / (1024 * 1024)).unwrap_or(i64::MAX)
}

/// A `notify-keyspace-events` value: Valkey's flags, with K or E when not empty.
pub fn keyspace_events(flags: &str) -> Result<(), String> {
    if let Some(c) = flags.chars().find(|c| !KEYSPACE_EVENT_FLAGS.contains(*c)) {
        return Err(format!(
            "{c:?} is not a keyspace event class; use the flags of Valkey's notify-keyspace-events ({KEYSPACE_EVENT_FLAGS})"
        ));
    }
    if !flags.is_empty() && !flags.contains(['K', 'E']) {
        return Err(format!(
            "{flags:?} names no channel: add K (keyspace), E (keyevent) or both, such as \"Ex\", or use \"\" to send none"
        ));
    }
    Ok(())
}

pub fn acl_channels_default(value: &str) -> Result<(), String> {
    if ACL_CHANNELS_DEFAULTS.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "unknown value {value:?}; choose one of {}",
            one_of(ACL_CHANNELS_DEFAULTS)
        ))
    }
}

/// Longest create, update or delete timeout: a day covers the initial sync of a very large
/// dataset; a longer wait is better split into re-runs of apply.
pub const MAX_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Longest service name: it becomes a directory name and part of node names.
pub const MAX_SERVICE_NAME_LEN: usize = 63;

fn one_of(values: &[&str]) -> String {
    values.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", ")
}

pub fn plan(name: &str) -> Result<&'static Plan, String> {
    PLANS.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = PLANS.iter().map(|p| p.name).collect();
        format!("unknown plan {name:?}; choose one of {}", one_of(&names))
    })
}

pub fn cloud(name: &str) -> Result<&'static str, String> {
    CLOUDS
        .iter()
        .copied()
        .find(|c| *c == name)
        .ok_or_else(|| format!("unknown cloud {name:?}; choose one of {}", one_of(CLOUDS)))
}

/// A plan read replicas may use.
pub fn read_replica_plan(name: &str) -> Result<(), String> {
    let plan = plan(name)?;
    if plan.offered_for_read_replicas {
        Ok(())
    } else {
        Err(format!(
            "read replicas are offered only on plan {READ_REPLICA_PLAN:?}, not {name:?}; set plan = {READ_REPLICA_PLAN:?}"
        ))
    }
}

pub fn maxmemory_policy(name: &str) -> Result<(), String> {
    if MAXMEMORY_POLICIES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown policy {name:?}; choose one of {}",
            one_of(MAXMEMORY_POLICIES)
        ))
    }
}

pub fn persistence(mode: &str) -> Result<(), String> {
    if PERSISTENCE_MODES.contains(&mode) {
        Ok(())
    } else {
        Err(format!(
            "unknown persistence {mode:?}; choose one of {}",
            one_of(PERSISTENCE_MODES)
        ))
    }
}

pub fn in_range(value: i64, (min, max): (i64, i64)) -> Result<(), String> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{value} is out of range; use a whole number from {min} to {max}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_have_the_documented_node_counts() {
        let counts: Vec<(&str, usize)> = PLANS.iter().map(|p| (p.name, p.nodes)).collect();
        assert_eq!(
            counts,
            [("hobbyist", 1), ("startup-4", 1), ("business-4", 2), ("premium-4", 3)]
        );
        assert!(plan("startup-4").unwrap().offered_for_read_replicas);
        assert!(!plan("business-4").unwrap().offered_for_read_replicas);
    }

    #[test]
    fn unknown_names_list_the_choices() {
        let err = plan("startup-8").unwrap_err();
        assert!(err.contains("\"startup-8\"") && err.contains("\"premium-4\""), "{err}");
        assert!(cloud("aws").unwrap_err().contains("\"local\""));
        assert!(maxmemory_policy("lru").is_err());
        assert!(persistence("aof").is_err());
    }

    #[test]
    fn only_startup_4_is_offered_for_read_replicas() {
        assert!(read_replica_plan("startup-4").is_ok());
        let err = read_replica_plan("business-4").unwrap_err();
        assert!(err.contains("only on plan \"startup-4\""), "{err}");
        assert!(read_replica_plan("nope").is_err());
    }

    #[test]
    fn ranges_are_inclusive() {
        assert!(in_range(0, CLIENT_TIMEOUT_RANGE).is_ok());
        assert!(in_range(-1, CLIENT_TIMEOUT_RANGE).is_err());
        assert!(in_range(17, IO_THREADS_RANGE).unwrap_err().contains("from 1 to 16"));
    }
}
