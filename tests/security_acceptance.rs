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
        record["sentinel_auth_password"].as_str(),
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

    // The internal users (replication, Sentinel) can do their job and nothing else; their
    // passwords are in no state attribute.
    let host_port = format!("127.0.1.1:{}", primary["port"]);
    let replication = redis::Client::open(format!("redis://replicator:{}@{host_port}", secrets[3]).as_str()).unwrap();
    let mut as_replicator = replication.get_connection().unwrap();
    let denied = redis::cmd("GET")
        .arg("anything")
        .query::<Option<String>>(&mut as_replicator)
        .unwrap_err();
    assert!(denied.to_string().to_lowercase().contains("noperm"), "{denied}");
    let sentinel = redis::Client::open(format!("redis://sentinel:{}@{host_port}", secrets[4]).as_str()).unwrap();
    let mut as_sentinel = sentinel.get_connection().unwrap();
    redis::cmd("INFO")
        .arg("replication")
        .query::<String>(&mut as_sentinel)
        .unwrap();
    let denied = redis::cmd("SET").arg("k").arg("v").exec(&mut as_sentinel).unwrap_err();
    assert!(denied.to_string().to_lowercase().contains("noperm"), "{denied}");
    let state = tf.ok(&["show", "-json"]);
    for internal in &secrets[3..] {
        assert!(
            !state.contains(internal.as_str()),
            "an internal password is in Terraform's state"
        );
    }
}

/// Every password a user can read from Terraform, tried where it must not work.
#[test]
fn each_password_a_user_can_read_opens_only_what_it_is_for() {
    let tf = Terraform::new(GROUP);
    tf.apply();
    // The service learns of its Sentinels (made with its first replica) on a refresh.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let primary = tf.state_attributes("valkey_service.primary");
    let replica = tf.state_attributes("valkey_read_replica.replica");
    let app_password = primary["password"].as_str().unwrap();
    let sentinel_password = primary["sentinel_password"].as_str().unwrap();
    assert_eq!(
        replica["password"], primary["password"],
        "one application password serves the whole group"
    );
    assert_ne!(app_password, sentinel_password);
    let data_nodes = [addr(&primary), addr(&replica)];
    let sentinels = support::group::GroupAccess::of(&tf, "valkey_service.primary").sentinels;
    assert_eq!(sentinels.len(), 3);

    // The Sentinel password opens no data node, as any user the provider makes there.
    for node in &data_nodes {
        for user in ["", "default", "sentinel", "replicator", "sentinel-peer"] {
            let uri = format!("redis://{user}:{sentinel_password}@{node}");
            let refused = redis::Client::open(uri.as_str()).unwrap().get_connection().is_err();
            assert!(refused, "the Sentinel password opens {node} as {user:?}");
        }
    }
    // The application password opens no Sentinel, as any user.
    for sentinel in &sentinels {
        for user in ["", "default", "sentinel-peer"] {
            let uri = format!("redis://{user}:{app_password}@{sentinel}");
            let refused = redis::Client::open(uri.as_str()).unwrap().get_connection().is_err();
            assert!(
                refused,
                "the application password opens Sentinel {sentinel} as {user:?}"
            );
        }
    }
    // On a Sentinel, the Sentinel password may find the primary and watch events, nothing more.
    for sentinel in &sentinels {
        let mut conn = connect(&format!("redis://:{sentinel_password}@{sentinel}"));
        let found: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("vault")
            .query(&mut conn)
            .unwrap();
        assert_eq!(format!("{}:{}", found[0], found[1]), data_nodes[0]);
        for allowed in [
            &["SENTINEL", "MASTERS"][..],
            &["SENTINEL", "REPLICAS", "vault"],
            &["SENTINEL", "SENTINELS", "vault"],
            &["PING"],
        ] {
            let mut cmd = redis::cmd(allowed[0]);
            cmd.arg(&allowed[1..]);
            assert!(cmd.query::<redis::Value>(&mut conn).is_ok(), "{allowed:?} is refused");
        }
        let forbidden: [&[&str]; 12] = [
            &["SENTINEL", "FAILOVER", "vault"],
            &["SENTINEL", "SET", "vault", "down-after-milliseconds", "100000"],
            &["SENTINEL", "RESET", "*"],
            &["SENTINEL", "REMOVE", "vault"],
            &["SENTINEL", "MONITOR", "other", "127.0.0.1", "1", "1"],
            &["SENTINEL", "CONFIG", "SET", "resolve-hostnames", "yes"],
            &["SENTINEL", "DEBUG", "info-period", "1"],
            &["SENTINEL", "SIMULATE-FAILURE", "CRASH-AFTER-ELECTION"],
            &["SENTINEL", "FLUSHCONFIG"],
            &["ACL", "SETUSER", "x", "on", ">x", "+@all"],
            &["CLIENT", "KILL", "TYPE", "normal"],
            &["SHUTDOWN"],
        ];
        for command in forbidden {
            let mut cmd = redis::cmd(command[0]);
            cmd.arg(&command[1..]);
            let result = cmd.query::<redis::Value>(&mut conn);
            let refused = result
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().to_lowercase().contains("permission"));
            assert!(refused, "the Sentinel password may run {command:?}: {result:?}");
        }
    }
    // And the group still works: nothing above changed it.
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "{plan}");
}

fn addr(state: &serde_json::Value) -> String {
    format!("{}:{}", state["host"].as_str().unwrap(), state["port"])
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
