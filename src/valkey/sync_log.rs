//! What a replica's log says about its syncs: valkey-server keeps no counter of the full syncs
//! a replica took (INFO's `sync_full` counts those a node served as a primary), but logs each.

/// The line a replica logs once it has loaded a full copy of its primary's dataset, whichever
/// way it came (diskless or through a file); a partial resync logs "accepted a Partial
/// Resynchronization" instead. Valkey 8 and later say PRIMARY, earlier versions MASTER.
const FULL_SYNC_DONE: &str = "<-> REPLICA sync: Finished with success";

/// How many full syncs the replica whose log this is completed.
pub fn full_syncs(log: &str) -> u64 {
    log.lines().filter(|line| line.contains(FULL_SYNC_DONE)).count() as u64
}

/// The full resyncs after a replica's first sync (the one that made it): what a user alerts on.
pub fn full_resyncs(log: &str) -> u64 {
    full_syncs(log).saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
1:S 03 Dec 2026 20:29:01.780 * Full resync from primary: 2d8b:0
1:S 03 Dec 2026 20:29:01.781 * PRIMARY <-> REPLICA sync: Finished with success
1:S 03 Dec 2026 20:29:04.753 * Successful partial resynchronization with primary.
1:S 03 Dec 2026 20:29:04.753 * PRIMARY <-> REPLICA sync: Primary accepted a Partial Resynchronization.
1:S 03 Dec 2026 20:30:00.000 * MASTER <-> REPLICA sync: Finished with success
";

    #[test]
    fn full_syncs_are_counted_and_partial_ones_are_not() {
        assert_eq!(full_syncs(LOG), 2);
        assert_eq!(full_resyncs(LOG), 1);
        assert_eq!(full_resyncs(""), 0);
    }
}
