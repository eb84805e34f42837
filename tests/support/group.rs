//! A replication group as its users see it: a Sentinel-aware client library writing through
//! it (tests/clients/sentinel_writer.py, valkey-py configured as the failover guide says), and
//! the invariants every member must satisfy once an apply has finished.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Terraform;

/// Milliseconds since the Unix epoch, the clock the writer logs with.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What a client needs to reach the group, read from the primary service's state.
#[derive(Debug, Clone)]
pub struct GroupAccess {
    pub group: String,
    pub sentinels: Vec<String>,
    pub sentinel_password: String,
    pub password: String,
    /// The application user the Sentinel client logs in to nodes as (with `password`); the
    /// `default` user when None.
    pub username: Option<String>,
    /// The group's CA certificate file, when the group speaks TLS: every connection then uses
    /// TLS trusting it.
    pub ca_file: Option<PathBuf>,
}

impl GroupAccess {
    /// From the state of `address` (a valkey_service), after a refresh.
    pub fn of(tf: &Terraform, address: &str) -> GroupAccess {
        let state = tf.state_attributes(address);
        let ca = state["ca_certificate"].as_str().unwrap_or_default();
        let ca_file = (!ca.is_empty()).then(|| {
            let path = tf
                .dir
                .path()
                .join(format!("{}-ca.pem", state["name"].as_str().unwrap()));
            std::fs::write(&path, ca).unwrap();
            path
        });
        GroupAccess {
            ca_file,
            group: state["name"].as_str().unwrap().to_string(),
            sentinels: state["sentinel_addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            sentinel_password: state["sentinel_password"].as_str().unwrap().to_string(),
            password: state["password"].as_str().unwrap().to_string(),
            username: None,
        }
    }

    /// The primary the first Sentinel that answers names.
    pub fn sentinel_primary(&self) -> Option<String> {
        self.sentinels.iter().find_map(|s| self.ask(s))
    }

    /// Waits until every Sentinel names the same primary, other than `old` (a failover has
    /// happened and they all know it); fails the test after `limit`.
    pub fn wait_new_primary(&self, old: &str, limit: Duration) -> String {
        let start = Instant::now();
        loop {
            let views = self.sentinel_views();
            if let Some(Some(first)) = views.first()
                && first != old
                && views.iter().all(|v| v.as_deref() == Some(first.as_str()))
            {
                return first.clone();
            }
            assert!(
                start.elapsed() < limit,
                "the Sentinels do not agree on a primary other than {old}: {views:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What each Sentinel names as the primary (None where it does not answer).
    pub fn sentinel_views(&self) -> Vec<Option<String>> {
        self.sentinels.iter().map(|s| self.ask(s)).collect()
    }

    fn ask(&self, sentinel: &str) -> Option<String> {
        let mut conn = self.sentinel_connection(sentinel)?;
        let reply: Vec<String> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.group)
            .query(&mut conn)
            .ok()?;
        Some(format!("{}:{}", reply.first()?, reply.get(1)?))
    }

    fn sentinel_connection(&self, sentinel: &str) -> Option<redis::Connection> {
        self.client(sentinel, &self.sentinel_password)
            .ok()?
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()
    }

    /// A client of the node or Sentinel at `addr` with `password`: over TLS trusting the
    /// group's CA when it speaks TLS.
    pub fn client(&self, addr: &str, password: &str) -> redis::RedisResult<redis::Client> {
        match &self.ca_file {
            None => redis::Client::open(format!("redis://:{password}@{addr}").as_str()),
            Some(ca) => super::tls_client(&format!("rediss://:{password}@{addr}"), &std::fs::read(ca).unwrap()),
        }
    }

    /// The replicas (host:port) each Sentinel that answers knows.
    pub fn sentinel_replicas(&self) -> Vec<Vec<String>> {
        self.sentinels
            .iter()
            .filter_map(|s| {
                let mut conn = self.sentinel_connection(s)?;
                let replicas: Vec<std::collections::HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(&self.group)
                    .query(&mut conn)
                    .ok()?;
                Some(replicas.iter().map(|r| format!("{}:{}", r["ip"], r["port"])).collect())
            })
            .collect()
    }

    /// A connection to one data node with the group's application password.
    pub fn node(&self, addr: &str) -> redis::RedisResult<redis::Connection> {
        self.client(addr, &self.password)?
            .get_connection_with_timeout(Duration::from_secs(1))
    }
}

/// How a data node reports its replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replication {
    pub role: String,
    /// host:port it replicates from (replicas only).
    pub following: Option<String>,
    pub link_up: bool,
}

pub fn replication(conn: &mut redis::Connection) -> redis::RedisResult<Replication> {
    let info: String = redis::cmd("INFO").arg("replication").query(conn)?;
    let field = |k: &str| super::info_field(&info, k);
    let following = match (field("master_host"), field("master_port")) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        _ => None,
    };
    Ok(Replication {
        role: field("role").unwrap_or_default(),
        following,
        link_up: field("master_link_status").as_deref() == Some("up"),
    })
}

/// Watches, from a thread, a primary that hung and has just woken up: it takes writes from
/// clients still connected to it until the Sentinels demote it. The thread returns when (ms)
/// it was first seen as a replica, or None once `stop` is set (it stayed the primary: no
/// failover happened, so nothing it took is lost) or after a minute.
pub fn watch_until_demoted(
    access: &GroupAccess,
    addr: &str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Option<u64>> {
    let (access, addr) = (access.clone(), addr.to_string());
    std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) && !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Ok(r) = access.node(&addr).and_then(|mut c| replication(&mut c))
                && r.role != "master"
            {
                return Some(now_ms());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
}

/// One acknowledged write of the Sentinel client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub n: u64,
    pub at_ms: u64,
}

/// The Sentinel-aware client, writing `PREFIX:N` keys through the group until stopped.
pub struct SentinelWriter {
    child: Child,
    log: PathBuf,
    pub prefix: String,
}

impl SentinelWriter {
    pub fn start(access: &GroupAccess, log: PathBuf, prefix: &str) -> SentinelWriter {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/sentinel_writer.py");
        let child = Command::new("python3")
            .arg(script)
            .args(["--sentinels", &access.sentinels.join(",")])
            .args(["--sentinel-password", &access.sentinel_password])
            .args(["--group", &access.group])
            .args(["--password", &access.password])
            .args(["--prefix", prefix])
            .args(access.username.iter().flat_map(|u| ["--username", u.as_str()]))
            .args(
                access
                    .ca_file
                    .iter()
                    .flat_map(|ca| [std::ffi::OsStr::new("--ca-file"), ca.as_os_str()]),
            )
            .arg("--log")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with valkey-py (pip install valkey) runs the Sentinel client");
        let writer = SentinelWriter {
            child,
            log,
            prefix: prefix.to_string(),
        };
        writer.wait_for_acks_after(now_ms(), Duration::from_secs(10));
        writer
    }

    /// Every acknowledged write so far.
    pub fn acks(&self) -> Vec<Ack> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut words = l.split(' ');
                (words.next()? == "A").then_some(())?;
                Some(Ack {
                    n: words.next()?.parse().ok()?,
                    at_ms: words.next()?.parse().ok()?,
                })
            })
            .collect()
    }

    /// The errors the client saw, as logged.
    pub fn errors(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("E "))
            .map(str::to_string)
            .collect()
    }

    /// The first write acknowledged after `since_ms`, waiting up to `limit` for one.
    pub fn wait_for_acks_after(&self, since_ms: u64, limit: Duration) -> Option<Ack> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(ack) = self.acks().into_iter().find(|a| a.at_ms > since_ms) {
                return Some(ack);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// The client's first write acknowledged after `fault` at `at_ms`, printed with how long it
    /// took; fails the test with the client's errors when none comes within 30 s.
    pub fn written_again_after(&self, at_ms: u64, fault: &str) -> Ack {
        let first = self
            .wait_for_acks_after(at_ms + 1, Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "the Sentinel client never wrote again after {fault}: {:?}",
                    self.errors()
                )
            });
        eprintln!(
            "{fault} -> the Sentinel client's first acknowledged write: {} ms",
            first.at_ms - at_ms
        );
        first
    }

    /// Stops the client and fails the test unless the node at `primary` has every write it
    /// acknowledged (a failover to a standby that was in sync loses none).
    pub fn stop_and_assert_none_lost(self, access: &GroupAccess, primary: &str) {
        let prefix = self.prefix.clone();
        let acks = self.stop();
        let lost = missing(&mut access.node(primary).unwrap(), &prefix, &acks);
        eprintln!("{prefix}: {} writes acknowledged, {} lost", acks.len(), lost.len());
        assert!(lost.is_empty(), "acknowledged writes were lost: {lost:?}");
    }

    /// Stops the client and returns everything it had acknowledged.
    pub fn stop(mut self) -> Vec<Ack> {
        self.terminate();
        self.acks()
    }

    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

impl Drop for SentinelWriter {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Stops the writer and checks the primary at `primary` has every write acknowledged after
/// `since_ms` (`event`, the fault, happened then); writes acknowledged before it may be lost
/// in the asynchronous window, and are counted.
pub fn stop_and_check_writes(writer: SentinelWriter, access: &GroupAccess, primary: &str, since_ms: u64, event: &str) {
    let prefix = writer.prefix.clone();
    let acks = writer.stop();
    let lost = missing(&mut access.node(primary).unwrap(), &prefix, &acks);
    let late: Vec<_> = lost.iter().filter(|a| a.at_ms > since_ms).collect();
    eprintln!(
        "{} writes acknowledged, {} lost in the asynchronous window before the {event}",
        acks.len(),
        lost.len()
    );
    assert!(
        late.is_empty(),
        "writes acknowledged after the {event} were lost: {late:?}"
    );
}

/// The acknowledged writes of `prefix` that the node behind `conn` does not have.
pub fn missing(conn: &mut redis::Connection, prefix: &str, acks: &[Ack]) -> Vec<Ack> {
    let mut missing = Vec::new();
    for chunk in acks.chunks(1000) {
        let mut pipe = redis::pipe();
        for a in chunk {
            pipe.cmd("EXISTS").arg(format!("{prefix}:{}", a.n));
        }
        let found: Vec<i64> = pipe.query(conn).expect("EXISTS on the primary");
        missing.extend(chunk.iter().zip(found).filter(|(_, f)| *f == 0).map(|(a, _)| *a));
    }
    missing
}

/// What a group looks like when it is consistent: one writable primary, every other running
/// node replicating from it with its link up, every Sentinel naming it. `nodes` are the
/// running data nodes (host:port). Returns the primary.
pub fn consistent(access: &GroupAccess, nodes: &[String], expected_primary: Option<&str>) -> Result<String, String> {
    let mut primaries = Vec::new();
    let mut reports = Vec::new();
    for addr in nodes {
        let mut conn = access
            .node(addr)
            .map_err(|e| format!("{addr} refuses the group's password: {e}"))?;
        let r = replication(&mut conn).map_err(|e| format!("{addr}: {e}"))?;
        if r.role == "master" {
            primaries.push(addr.clone());
        }
        reports.push((addr.clone(), r));
    }
    let [primary] = primaries.as_slice() else {
        return Err(format!("{} writable primaries: {reports:?}", primaries.len()));
    };
    if let Some(expected) = expected_primary
        && expected != primary
    {
        return Err(format!("the primary is {primary}, expected {expected}"));
    }
    for (addr, r) in &reports {
        if addr != primary && (r.role != "slave" || r.following.as_deref() != Some(primary) || !r.link_up) {
            return Err(format!("{addr} does not replicate from {primary}: {r:?}"));
        }
    }
    let views = access.sentinel_views();
    if views.iter().any(|v| v.as_deref() != Some(primary.as_str())) {
        return Err(format!("Sentinels name {views:?}, the primary is {primary}"));
    }
    Ok(primary.clone())
}

/// Waits until `consistent` holds (Sentinel reconfigures replicas asynchronously).
pub fn wait_consistent(
    access: &GroupAccess,
    nodes: &[String],
    expected_primary: Option<&str>,
    limit: Duration,
) -> String {
    try_wait_consistent(access, nodes, expected_primary, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// `wait_consistent`, with what was wrong at the end as the error.
pub fn try_wait_consistent(
    access: &GroupAccess,
    nodes: &[String],
    expected_primary: Option<&str>,
    limit: Duration,
) -> Result<String, String> {
    let start = Instant::now();
    loop {
        match consistent(access, nodes, expected_primary) {
            Ok(primary) => return Ok(primary),
            Err(e) if start.elapsed() > limit => {
                return Err(format!("the group is not consistent after {limit:?}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// The last lines of every node's and Sentinel's log under `data_dir`, to tell why a group
/// went wrong.
pub fn log_tails(data_dir: &std::path::Path, lines: usize) -> String {
    let mut out = String::new();
    let Ok(services) = std::fs::read_dir(data_dir.join("services")) else {
        return out;
    };
    for service in services.flatten() {
        for node in std::fs::read_dir(service.path()).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(node.path().join("valkey.log")) else {
                continue;
            };
            let all: Vec<&str> = text.lines().collect();
            out += &format!(
                "--- {}/{}\n{}\n",
                service.file_name().to_string_lossy(),
                node.file_name().to_string_lossy(),
                all[all.len().saturating_sub(lines)..].join("\n")
            );
        }
    }
    out
}
