//! How long the group primary's replication backlog lets a replica's link stay down (a cut
//! between regions, a replica restarting) and still resume with a partial resync: the
//! backlog's size over the rate writes fill it.

use std::time::Duration;

use super::group_view;
use crate::runtime::{Endpoint, ServiceRecord};
use crate::valkey::Info;

/// A stream below this many KiB/s per replica is an idle primary's: its pings to replicas and
/// the Sentinels' hello messages, which vary from one second to the next.
const IDLE_KIB_PER_SECOND: f64 = 16.0;

/// Seconds of writes a backlog of `backlog_bytes` holds at the larger of the declared rate and
/// the rate the primary streams to each of its `replicas` now (`output_kib_per_second` is
/// what it sends them all); None while neither rate is known (nothing declared, no writes).
pub fn reach_seconds(backlog_bytes: i64, output_kib_per_second: f64, replicas: i64, declared_kib: i64) -> Option<i64> {
    let observed = output_kib_per_second / replicas.max(1) as f64;
    let observed = if observed < IDLE_KIB_PER_SECOND { 0.0 } else { observed };
    let rate = observed.max(declared_kib as f64);
    (rate > 0.0 && backlog_bytes > 0).then(|| (backlog_bytes as f64 / (rate * 1024.0)) as i64)
}

/// The reach of the backlog of the primary whose INFO replication and stats `info` holds;
/// None when that node is not a primary.
pub fn reach_of(info: &Info, declared_kib: i64) -> Option<i64> {
    if info.role() != Some("primary") {
        return None;
    }
    reach_seconds(
        info.get_i64("repl_backlog_size")?,
        info.get("instantaneous_output_repl_kbps")?.parse().ok()?,
        info.get_i64("connected_slaves").unwrap_or(0),
        declared_kib,
    )
}

/// The reach of the backlog of the group's primary at `current_primary`, read from it now.
pub async fn observed_reach(record: &ServiceRecord, current_primary: Option<&str>, declared_kib: i64) -> Option<i64> {
    let at = Endpoint::parse(current_primary?)?;
    let mut client = group_view::connect_member(record, &at, Duration::from_secs(2))
        .await
        .ok()?;
    reach_of(&client.info(&["replication", "stats"]).await.ok()?, declared_kib)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_is_the_backlog_over_the_larger_rate_per_replica() {
        let mib64 = 64 * 1024 * 1024;
        // 2048 KiB/s sent to 2 replicas is 1 MiB/s each: 64 s.
        assert_eq!(reach_seconds(mib64, 2048.0, 2, 0), Some(64));
        // A declared rate above what flows now counts.
        assert_eq!(reach_seconds(mib64, 10.0, 1, 4096), Some(16));
        // Idle (pings and Sentinel hellos only) and nothing declared: unknown.
        assert_eq!(reach_seconds(mib64, 0.0, 1, 0), None);
        assert_eq!(reach_seconds(mib64, 0.4, 1, 0), None);
    }
}
