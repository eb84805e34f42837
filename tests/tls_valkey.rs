//! The TLS-capable valkey-server the TLS work runs on (Debian 13's, which `scripts/valkey-tls.sh`
//! builds and CI exports as VALKEY_TLS_SERVER): it serves a TLS client that trusts its CA, as
//! a server and as a Sentinel, and nothing in plaintext on its TLS port. Missing, it fails the
//! test (CI builds it); it never skips.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;

/// Writes a self-signed certificate for 127.0.0.1 and its key; returns their paths.
fn certificate(dir: &Path) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("node.crt"), dir.join("node.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path.display().to_string(), key_path.display().to_string())
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(binary: &str, dir: &Path, port: u16, cert: &str, key: &str, sentinel: bool) -> Running {
    let config = dir.join(if sentinel { "sentinel.conf" } else { "valkey.conf" });
    let mut text = format!(
        "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {cert}\n\
         tls-auth-clients no\ndir {}\n",
        dir.display()
    );
    if !sentinel {
        text += "save \"\"\n";
    }
    std::fs::write(&config, text).unwrap();
    let mut command = Command::new(binary);
    command.arg(&config);
    if sentinel {
        command.arg("--sentinel");
    }
    let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{binary} never listened on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

/// What valkey-py says to PING over TLS trusting `ca`, or over plaintext without it.
fn ping(port: u16, ca: Option<&str>) -> String {
    let connect = match ca {
        Some(ca) => {
            format!("valkey.Valkey(host='127.0.0.1', port={port}, ssl=True, ssl_ca_certs='{ca}', socket_timeout=2)")
        }
        None => format!("valkey.Valkey(host='127.0.0.1', port={port}, socket_timeout=2)"),
    };
    let script = format!(
        "import valkey\ntry:\n    print({connect}.ping())\nexcept Exception as e:\n    print(type(e).__name__)"
    );
    let out = Command::new("python3").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_tls_valkey_server_serves_tls_clients_and_no_plaintext() {
    let binary = std::env::var("VALKEY_TLS_SERVER").expect(
        "VALKEY_TLS_SERVER is not set: run `export VALKEY_TLS_SERVER=$(scripts/valkey-tls.sh)` (as root), as CI does",
    );
    let version = Command::new(&binary).arg("--version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout).to_string();
    assert!(version.contains("v=8.") || version.contains("v=9."), "{version}");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    for sentinel in [false, true] {
        let port = support::free_port();
        let _node = start(&binary, dir.path(), port, &cert, &key, sentinel);
        assert_eq!(ping(port, Some(&cert)), "True", "sentinel: {sentinel}");
        assert_ne!(
            ping(port, None),
            "True",
            "plaintext answered on the TLS port (sentinel: {sentinel})"
        );
    }
}
