//! Secrets and exposure: no password in the provider's logs or in process arguments, private
//! files, nodes bound to their region's address with protected mode, and ACL users that can do
//! only their job.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::{Terraform, connect};

const GROUP: &str = r#"
resource "valkey_service" "primary" {
  name   = "vault"
  plan   = "startup-4"
  region = "local-1"
}

resource "valkey_read_replica" "replica" {
  name            = "vault-copy"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}
"#;

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        out.push(entry.path());
        if entry.path().is_dir() {
            walk(&entry.path(), out);
        }
    }
}

#[test]
fn secrets_stay_secret_and_nodes_are_locked_down() {
    let tf = Terraform::new(GROUP);
    let log = tf.dir.path().join("provider.log");
    let out = tf.run_with_env(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[
            ("TF_LOG_PROVIDER", "TRACE"),
            ("TF_LOG_CORE", "OFF"),
            ("TF_LOG_PATH", log.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let primary = tf.state_attributes("valkey_service.primary");
    let replica = tf.state_attributes("valkey_read_replica.replica");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tf.data_dir().join("services/vault/service.json")).unwrap())
            .unwrap();
    let secrets: Vec<String> = [
        primary["password"].as_str(),
        replica["password"].as_str(),
        primary["sentinel_password"].as_str(),
        record["replication_password"].as_str(),
    ]
    .into_iter()
    .map(|s| s.unwrap().to_string())
    .collect();

    // Provider logs at TRACE and Terraform's output hold no password.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("terraform-provider-valkey"),
        "the provider log was not captured"
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in &secrets {
        assert!(!logged.contains(secret.as_str()), "a password reached the provider log");
        assert!(
            !printed.contains(secret.as_str()),
            "a password reached terraform's output"
        );
    }

    // No password in any node's or Sentinel's process arguments.
    for pid in tf.live_node_pids() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        for secret in &secrets {
            assert!(
                !cmdline.contains(secret.as_str()),
                "pid {pid} shows a password in ps: {cmdline}"
            );
        }
    }

    // Files 0600, directories 0700, everywhere under data_dir (snapshots included).
    let mut paths = Vec::new();
    walk(&tf.data_dir(), &mut paths);
    let mut rdb = connect(primary["service_uri"].as_str().unwrap());
    redis::cmd("SAVE").exec(&mut rdb).unwrap();
    walk(&tf.data_dir(), &mut paths);
    assert!(
        paths.iter().any(|p| p.ends_with("dump.rdb")),
        "expected a snapshot to check"
    );
    for path in paths.iter().filter(|p| p.exists()) {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, expected, "{} has mode {mode:o}", path.display());
    }

    // Nodes listen on their region's address only, with protected mode on.
    for (state, address) in [(&primary, "127.0.1.1"), (&replica, "127.0.2.1")] {
        let mut conn = connect(state["service_uri"].as_str().unwrap());
        let bind: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("bind").query(&mut conn).unwrap();
        assert_eq!(bind[1], address);
        let protected: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("protected-mode")
            .query(&mut conn)
            .unwrap();
        assert_eq!(protected[1], "yes");
        let port = state["port"].as_i64().unwrap();
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port as u16)).is_err(),
            "node reachable on 127.0.0.1"
        );
    }

    // The replication and Sentinel users can do their job and nothing else.
    let host_port = format!("127.0.1.1:{}", primary["port"]);
    let replication = redis::Client::open(format!("redis://replicator:{}@{host_port}", secrets[3]).as_str()).unwrap();
    let mut as_replicator = replication.get_connection().unwrap();
    let denied = redis::cmd("GET")
        .arg("anything")
        .query::<Option<String>>(&mut as_replicator)
        .unwrap_err();
    assert!(denied.to_string().to_lowercase().contains("noperm"), "{denied}");
    let sentinel = redis::Client::open(format!("redis://sentinel:{}@{host_port}", secrets[2]).as_str()).unwrap();
    let mut as_sentinel = sentinel.get_connection().unwrap();
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut as_sentinel)
        .unwrap();
    let denied = redis::cmd("SET").arg("k").arg("v").exec(&mut as_sentinel).unwrap_err();
    assert!(denied.to_string().to_lowercase().contains("noperm"), "{denied}");
}

#[test]
fn a_config_line_the_binary_rejects_is_shown_without_its_password() {
    // A valkey-server that rejects the requirepass line, as an older or differently built
    // binary may reject a line of the config the provider writes; valkey-server then echoes
    // the line, password included, before it exits.
    let tf = Terraform::new("");
    let wrapper = tf.dir.path().join("valkey-server");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = --version ] && exec '{real}' --version\n\
             sed 's/^requirepass .*$/& unexpected-argument/' \"$1\" > \"$1.rejected\"\n\
             exec '{real}' \"$1.rejected\"\n",
            real = support::valkey_server().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    tf.write_config_with_provider(
        &format!("  valkey_server = \"{}\"\n", wrapper.display()),
        r#"
resource "valkey_service" "primary" {
  name   = "picky"
  plan   = "startup-4"
  region = "local-1"
}
"#,
    );
    let text = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let config = std::fs::read_to_string(tf.data_dir().join("services/picky/node-0/valkey.conf")).unwrap();
    let password = config
        .lines()
        .find_map(|l| l.strip_prefix("requirepass "))
        .expect("the config has a password");
    assert!(
        text.contains("FATAL CONFIG FILE ERROR") && text.contains("requirepass (redacted) unexpected-argument"),
        "the error shows what valkey-server said:\n{text}"
    );
    assert!(!text.contains(password), "the error shows the password:\n{text}");
}
