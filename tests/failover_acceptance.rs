//! Automatic failover and switchover through real Terraform: Sentinel promotes a replica when
//! the primary dies, Terraform sees the new roles, and apply brings the old primary back as a
//! replica; `promote = true` switches over without losing an acknowledged write.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Terraform, connect, kill9, wait_for};

fn group(down_after_ms: u32, promote_us: bool) -> String {
    format!(
        r#"
resource "valkey_service" "primary" {{
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
  failover {{
    down_after_ms = {down_after_ms}
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
  promote           = {promote_us}
}}

output "uris" {{
  value = {{
    primary = valkey_service.primary.service_uri
    eu      = valkey_read_replica.eu.service_uri
    us      = valkey_read_replica.us.service_uri
  }}
  sensitive = true
}}
"#
    )
}

/// host:port -> URI of every member, from the `uris` output.
fn uris(tf: &Terraform) -> Vec<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(&tf.ok(&["output", "-json", "uris"])).unwrap();
    json.as_object()
        .unwrap()
        .values()
        .map(|v| {
            let uri = v.as_str().unwrap().to_string();
            let addr = uri.rsplit('@').next().unwrap().to_string();
            (addr, uri)
        })
        .collect()
}

fn uri_of(uris: &[(String, String)], addr: &str) -> String {
    uris.iter()
        .find(|(a, _)| a == addr)
        .map(|(_, u)| u.clone())
        .unwrap_or_else(|| panic!("no member at {addr}"))
}

fn addr_of(state: &serde_json::Value) -> String {
    format!("{}:{}", state["host"].as_str().unwrap(), state["port"])
}

/// The group's primary as a Sentinel reports it.
fn sentinel_primary(tf: &Terraform) -> String {
    let state = tf.state_attributes("valkey_service.primary");
    let password = state["sentinel_password"].as_str().unwrap();
    for addr in state["sentinel_addresses"].as_array().unwrap() {
        let uri = format!("redis://:{password}@{}", addr.as_str().unwrap());
        let Ok(mut conn) = redis::Client::open(uri.as_str()).unwrap().get_connection() else {
            continue;
        };
        if let Ok(reply) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg("primary")
            .query::<Vec<String>>(&mut conn)
        {
            return format!("{}:{}", reply[0], reply[1]);
        }
    }
    panic!("no Sentinel answered");
}

/// The Sentinels' logs, to tell why a failover happened when a test did not expect one.
fn sentinel_logs(tf: &Terraform) -> String {
    (0..3)
        .map(|i| {
            let log = tf.data_dir().join(format!("services/primary/sentinel-{i}/valkey.log"));
            format!("sentinel-{i}:\n{}", std::fs::read_to_string(log).unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The node's role and the primary it follows; empty while it cannot answer (Sentinel kills
/// the client connections of every node it reconfigures, the one being set up included), as
/// the callers poll.
fn replication(uri: &str) -> (String, String) {
    let unanswered = || (String::new(), String::new());
    let Ok(mut conn) = redis::Client::open(uri).and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
    else {
        return unanswered();
    };
    let Ok(info) = redis::cmd("INFO").arg("replication").query::<String>(&mut conn) else {
        return unanswered();
    };
    let field = |k: &str| support::info_field(&info, k).unwrap_or_default();
    (
        field("role"),
        format!("{}:{}", field("master_host"), field("master_port")),
    )
}

/// Waits until `key` has reached the member at `uri`; returns a connection to it.
fn wait_for_key(uri: &str, key: &str, what: &str) -> redis::Connection {
    let mut conn = connect(uri);
    wait_for(what, Duration::from_secs(5), || {
        redis::cmd("GET")
            .arg(key)
            .query::<Option<String>>(&mut conn)
            .unwrap()
            .is_some()
    });
    conn
}

#[test]
fn a_killed_primary_fails_over_and_rejoins_as_a_replica() {
    let tf = Terraform::new(&group(2000, false));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let primary_state = tf.state_attributes("valkey_service.primary");
    assert_eq!(primary_state["sentinel_addresses"].as_array().unwrap().len(), 3);
    assert_eq!(
        primary_state["current_primary"].as_str().unwrap(),
        addr_of(&primary_state)
    );
    let members = uris(&tf);
    let eu_addr = addr_of(&tf.state_attributes("valkey_read_replica.eu"));
    let us_uri = uri_of(&members, &addr_of(&tf.state_attributes("valkey_read_replica.us")));
    let eu_uri = uri_of(&members, &eu_addr);
    let mut primary = connect(&uri_of(&members, &addr_of(&primary_state)));
    redis::cmd("SET")
        .arg("before")
        .arg("failover")
        .exec(&mut primary)
        .unwrap();
    redis::cmd("WAIT").arg(2).arg(5000).exec(&mut primary).unwrap();

    // Kill -9 the primary's node: eu (lowest failover_priority) takes writes in time.
    let pid = tf.node_pid("primary", "node-0");
    kill9(pid);
    let took = wait_for("promotion of eu", Duration::from_millis(2000 + 5000), || {
        redis::Client::open(eu_uri.as_str())
            .unwrap()
            .get_connection()
            .and_then(|mut c| redis::cmd("SET").arg("after").arg("failover").exec(&mut c))
            .is_ok()
    });
    eprintln!("failover: kill to first accepted write {took:?}");
    wait_for("us to follow eu", Duration::from_secs(10), || {
        replication(&us_uri) == ("slave".into(), eu_addr.clone())
    });
    let mut us = wait_for_key(&us_uri, "after", "the new write to reach us");
    let kept: String = redis::cmd("GET").arg("before").query(&mut us).unwrap();
    assert_eq!(kept, "failover");
    wait_for("Sentinel to report eu", Duration::from_secs(5), || {
        sentinel_primary(&tf) == eu_addr
    });

    // Terraform sees the new roles; only the dead node plans a change (its restart).
    let (changes, plan) = tf.plan_has_changes();
    assert!(changes, "{plan}");
    let flat = support::flatten(&plan);
    assert!(flat.contains("0 to add, 1 to change, 0 to destroy"), "{plan}");
    assert!(
        flat.contains("# valkey_service.primary will be updated in-place"),
        "{plan}"
    );
    assert!(flat.contains("powered = false -> true"), "{plan}");
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let eu = tf.state_attributes("valkey_read_replica.eu");
    assert_eq!(eu["role"], "primary");
    assert_eq!(eu["current_primary"].as_str().unwrap(), eu_addr);
    assert_eq!(tf.state_attributes("valkey_read_replica.us")["role"], "replica");

    // Apply restarts the old primary as a replica of the group's primary: no split brain,
    // data intact. That is eu, unless Sentinel has failed over again meanwhile (it should
    // not, but should it, the old primary must follow the new one, not eu).
    tf.apply();
    let old = tf.state_attributes("valkey_service.primary");
    assert_eq!(old["role"], "replica");
    let old_uri = uri_of(&members, &addr_of(&old));
    let (mut seen, mut group_primary) = ((String::new(), String::new()), String::new());
    let following = (0..500).any(|_| {
        seen = replication(&old_uri);
        group_primary = sentinel_primary(&tf);
        std::thread::sleep(Duration::from_millis(20));
        seen == ("slave".into(), group_primary.clone())
    });
    assert!(
        following,
        "the old primary does not follow the group's primary {group_primary} (eu is {eu_addr}) after 10 s: \
         role {}, following {}\n{}",
        seen.0,
        seen.1,
        sentinel_logs(&tf)
    );
    assert_eq!(
        group_primary,
        eu_addr,
        "Sentinel failed over a second time:\n{}",
        sentinel_logs(&tf)
    );
    wait_for_key(&old_uri, "after", "the old primary to catch up");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "the topology after failover must be stable:\n{plan}");
}

#[test]
fn promote_switches_over_without_losing_acknowledged_writes() {
    let tf = Terraform::new(&group(5000, false));
    tf.apply();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let members = uris(&tf);
    let us_addr = addr_of(&tf.state_attributes("valkey_read_replica.us"));

    // A steady writer that follows the primary through Sentinel and records what was acked.
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sentinel_state = tf.state_attributes("valkey_service.primary");
    let writer = {
        let (acked, stop, members) = (acked.clone(), stop.clone(), members.clone());
        let password = sentinel_state["sentinel_password"].as_str().unwrap().to_string();
        let sentinels: Vec<String> = sentinel_state["sentinel_addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        std::thread::spawn(move || {
            let current = || -> Option<String> {
                for s in &sentinels {
                    let uri = format!("redis://:{password}@{s}");
                    let mut c = redis::Client::open(uri.as_str()).ok()?.get_connection().ok()?;
                    if let Ok(r) = redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg("primary")
                        .query::<Vec<String>>(&mut c)
                    {
                        return Some(format!("{}:{}", r[0], r[1]));
                    }
                }
                None
            };
            let mut i = 0u64;
            let mut conn: Option<redis::Connection> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = current()
                        .and_then(|addr| members.iter().find(|(a, _)| *a == addr).map(|(_, u)| u.clone()))
                        .and_then(|uri| redis::Client::open(uri.as_str()).ok()?.get_connection().ok());
                }
                let Some(c) = conn.as_mut() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                match redis::cmd("SET").arg(format!("w:{i}")).arg(i).exec(c) {
                    Ok(()) => {
                        acked.lock().unwrap().push(i);
                        i += 1;
                    }
                    Err(_) => {
                        conn = None;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    tf.write_config(&group(5000, true));
    tf.apply();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    assert_eq!(sentinel_primary(&tf), us_addr);
    let us = tf.state_attributes("valkey_read_replica.us");
    assert_eq!(us["role"], "primary");
    let mut new_primary = connect(&uri_of(&members, &us_addr));
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 100,
        "the writer should have kept writing ({} acked)",
        acked.len()
    );
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|i| {
            redis::cmd("EXISTS")
                .arg(format!("w:{i}"))
                .query::<i64>(&mut new_primary)
                .unwrap()
                == 0
        })
        .collect();
    eprintln!("switchover: {} writes acknowledged, {} lost", acked.len(), lost.len());
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // After a refresh, the old primary shows as a replica of the new one; the topology is
    // stable.
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    let old = tf.state_attributes("valkey_service.primary");
    assert_eq!(old["current_primary"].as_str().unwrap(), us_addr);
    assert_eq!(
        replication(&uri_of(&members, &addr_of(&old))),
        ("slave".to_string(), us_addr.clone())
    );
    assert_eq!(old["role"], "replica");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "plan after switchover should be empty:\n{plan}");
}

#[test]
fn a_killed_sentinel_and_a_detached_replica_show_as_drift_and_apply_repairs_them() {
    let tf = Terraform::new(&group(5000, false));
    tf.apply();
    let members = uris(&tf);
    let primary_addr = addr_of(&tf.state_attributes("valkey_service.primary"));
    let us_uri = uri_of(&members, &addr_of(&tf.state_attributes("valkey_read_replica.us")));

    // A Sentinel killed out of band.
    let pid = tf.node_pid("primary", "sentinel-1");
    kill9(pid);
    // Replication broken by hand on a replica.
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .exec(&mut connect(&us_uri))
        .unwrap();

    let (changes, plan) = tf.plan_has_changes();
    let flat = support::flatten(&plan);
    assert!(changes, "{plan}");
    assert!(
        flat.contains("# valkey_service.primary will be updated in-place"),
        "{plan}"
    );
    assert!(flat.contains(r#"sentinel_status = "degraded" -> "running""#), "{plan}");
    assert!(
        flat.contains("# valkey_read_replica.us will be updated in-place"),
        "{plan}"
    );
    assert!(flat.contains(r#"role = "primary" -> (known after apply)"#), "{plan}");
    assert!(!flat.contains("valkey_read_replica.eu will be"), "{plan}");

    tf.apply();
    assert!(support::is_alive(tf.node_pid("primary", "sentinel-1")));
    assert_eq!(replication(&us_uri), ("slave".to_string(), primary_addr));
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "repairs must leave a clean plan:\n{plan}");
}

/// The group's Sentinels as state lists them after a refresh (the primary's state learns of
/// Sentinels made for a replica at its next refresh).
fn sentinel_addresses(tf: &Terraform) -> Vec<String> {
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    tf.state_attributes("valkey_service.primary")["sentinel_addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The peers the Sentinel at `addr` counts for the group, as `ip:port`; None if it does not answer.
fn sentinel_peers(tf: &Terraform, addr: &str) -> Option<Vec<String>> {
    let password = tf.state_attributes("valkey_service.primary")["sentinel_password"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("redis://:{password}@{addr}");
    let mut conn = redis::Client::open(uri.as_str()).ok()?.get_connection().ok()?;
    let peers: Vec<Vec<String>> = redis::cmd("SENTINEL")
        .arg("SENTINELS")
        .arg("primary")
        .query(&mut conn)
        .ok()?;
    let field = |fields: &[String], name: &str| {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .map(|kv| kv[1].clone())
            .unwrap_or_default()
    };
    let mut peers: Vec<String> = peers
        .iter()
        .map(|fields| format!("{}:{}", field(fields, "ip"), field(fields, "port")))
        .collect();
    peers.sort();
    Some(peers)
}

/// A Sentinel that died and found its port taken starts elsewhere at the next apply: state
/// shows where, every Sentinel counts exactly the group's other Sentinels, and the two left
/// when it dies with the primary fail the group over (one still counting the old address
/// would wait for its vote).
#[test]
fn a_sentinel_whose_port_was_taken_moves_and_the_others_forget_where_it_was() {
    let tf = Terraform::new(&group(5000, false));
    tf.apply();
    let before = sentinel_addresses(&tf);
    assert_eq!(before.len(), 3, "{before:?}");
    let pid = tf.node_pid("primary", "sentinel-1");
    kill9(pid);
    let mut gone = None;
    wait_for("the killed Sentinel's port to close", Duration::from_secs(10), || {
        gone = before
            .iter()
            .find(|a| std::net::TcpStream::connect(a.as_str()).is_err())
            .cloned();
        gone.is_some()
    });
    let gone = gone.unwrap();
    let _squatter = std::net::TcpListener::bind(gone.as_str()).unwrap();

    tf.apply();
    let after = sentinel_addresses(&tf);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        !after.contains(&gone),
        "the Sentinel stayed at its taken address {gone}: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|a| before.contains(a)).count(),
        2,
        "only the moved Sentinel changes address: {before:?} -> {after:?}"
    );
    for addr in &after {
        let mut others: Vec<String> = after.iter().filter(|a| *a != addr).cloned().collect();
        others.sort();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = sentinel_peers(&tf, addr);
        while seen.as_ref() != Some(&others) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            seen = sentinel_peers(&tf, addr);
        }
        assert_eq!(
            seen.as_ref(),
            Some(&others),
            "the Sentinel at {addr} counts other peers"
        );
    }
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "a moved Sentinel leaves a clean plan:\n{plan}");

    // The moved Sentinel and the primary die: the two Sentinels left are a majority of the
    // three they count, so they fail the group over (still counting the old address, they
    // would be 2 of 4 and wait for ever).
    let primary_at = sentinel_primary(&tf);
    kill9(tf.node_pid("primary", "sentinel-1"));
    kill9(tf.node_pid("primary", "node-0"));
    wait_for(
        "the two Sentinels left to fail the group over",
        Duration::from_secs(60),
        || sentinel_primary(&tf) != primary_at,
    );
}

/// Sends SIGCONT to a stopped process when dropped, so a failing test leaves nothing frozen.
struct Frozen(i32);

impl Frozen {
    fn freeze(pid: i32) -> Frozen {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
}

#[test]
fn a_hung_primary_is_failed_over_refresh_still_finishes_and_it_rejoins_when_it_wakes() {
    let tf = Terraform::new(&group(2000, false));
    tf.apply();
    let primary_state = tf.state_attributes("valkey_service.primary");
    let members = uris(&tf);
    let old_uri = uri_of(&members, &addr_of(&primary_state));
    let eu_addr = addr_of(&tf.state_attributes("valkey_read_replica.eu"));
    let eu_uri = uri_of(&members, &eu_addr);
    let mut primary = connect(&old_uri);
    redis::cmd("SET").arg("before").arg("hang").exec(&mut primary).unwrap();
    redis::cmd("WAIT").arg(2).arg(5000).exec(&mut primary).unwrap();

    // SIGSTOP: the process lives and its port accepts connections, but it never answers.
    let pid = tf.node_pid("primary", "node-0");
    let frozen = Frozen::freeze(pid);
    wait_for("promotion of eu", Duration::from_secs(10), || {
        redis::Client::open(eu_uri.as_str())
            .unwrap()
            .get_connection()
            .and_then(|mut c| redis::cmd("SET").arg("after").arg("hang").exec(&mut c))
            .is_ok()
    });
    let started = Instant::now();
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    eprintln!("refresh with a hung primary took {:?}", started.elapsed());
    assert_eq!(tf.state_attributes("valkey_service.primary")["role"], "unknown");
    assert_eq!(tf.state_attributes("valkey_read_replica.eu")["role"], "primary");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "a hung node is reported, not killed by a plan:\n{plan}");

    // Woken up, the old primary is demoted by Sentinel and follows eu, with eu's writes.
    drop(frozen);
    wait_for("the old primary to follow eu", Duration::from_secs(30), || {
        replication(&old_uri) == ("slave".into(), eu_addr.clone())
    });
    let mut old = wait_for_key(&old_uri, "after", "the old primary to catch up");
    let kept: String = redis::cmd("GET").arg("before").query(&mut old).unwrap();
    assert_eq!(kept, "hang");
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    assert_eq!(tf.state_attributes("valkey_service.primary")["role"], "replica");
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "the topology after the wake-up must be stable:\n{plan}");
}
