//! A split brain on the local cloud, through real Terraform: the primary's region address is
//! cut off from every other address of this machine (nftables drops its packets) except the
//! one a client writes from, so the client keeps its connection while the Sentinels promote a
//! read replica. With the group's write bound the cut-off primary stops acknowledging writes
//! within `min_replicas_max_lag` seconds; without it, it acknowledges writes for the whole cut
//! and every one is lost when the cut heals. (tests/docker_standby_acceptance.rs makes the same
//! cut between Docker hosts.)

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::Terraform;
use support::group::{Ack, GroupAccess, missing, now_ms, wait_consistent};

/// The primary's region: an address of its own, so that cutting it off touches no other test.
const CUT_ADDRESS: &str = "127.0.77.1";
/// Where the pinned client writes from: the one address the cut spares.
const CLIENT_ADDRESS: &str = "127.0.0.77";

fn group(bound: &str) -> String {
    format!(
        r#"
resource "valkey_service" "main" {{
  name   = "main"
  plan   = "startup-4"
  region = "cut"
  failover {{
    down_after_ms = 2000
{bound}  }}
}}

resource "valkey_read_replica" "r" {{
  count             = 2
  name              = "r${{count.index}}"
  primary_service   = valkey_service.main.name
  plan              = "startup-4"
  region            = "local-${{count.index + 2}}"
  failover_priority = 10 + count.index
}}
"#
    )
}

fn provider() -> String {
    format!("  regions = {{ \"cut\" = \"{CUT_ADDRESS}\" }}\n")
}

/// How long after a cut a write acknowledged by the cut-off primary may still be lost: its
/// `min_replicas_max_lag` (2 s) and up to 2 s more, since Valkey counts a replica's lag in whole
/// seconds since its last acknowledgement (sent once a second, so up to a second before the
/// cut) and recounts its good replicas once a second (measured: 2.3 to 3.1 s).
const BOUND_SPAN_S: f64 = 4.0;

/// Drops every packet to or from the cut address that is not to or from the client's, until
/// dropped itself.
struct Cut {
    table: String,
}

impl Cut {
    fn start() -> Cut {
        let table = format!("vk_split_{}", std::process::id());
        let rules = format!(
            "table ip {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n    \
             ip daddr {CUT_ADDRESS} ip saddr != {CLIENT_ADDRESS} drop\n    \
             ip saddr {CUT_ADDRESS} ip daddr != {CLIENT_ADDRESS} drop\n  }}\n}}\n"
        );
        let mut nft = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft (Debian's nftables) runs as root");
        nft.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(nft.wait().unwrap().success(), "nft refused the rules:\n{rules}");
        Cut { table }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .status();
    }
}

/// A client pinned to one node, from CLIENT_ADDRESS, speaking RESP over one connection as a
/// connection pool does.
struct PinnedClient {
    reader: BufReader<TcpStream>,
}

impl PinnedClient {
    fn connect(addr: &str, password: &str) -> std::io::Result<PinnedClient> {
        let target: std::net::SocketAddr = addr.parse().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let stream = runtime.block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(format!("{CLIENT_ADDRESS}:0").parse().unwrap())?;
            tokio::time::timeout(Duration::from_secs(1), socket.connect(target))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
        })?;
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut client = PinnedClient {
            reader: BufReader::new(stream),
        };
        let auth = client.command(&["AUTH", password])?;
        if auth != "+OK" {
            return Err(std::io::Error::other(auth));
        }
        Ok(client)
    }

    /// Sends a command; returns the reply's first line (`+OK`, `-NOREPLICAS ...`).
    fn command(&mut self, args: &[&str]) -> std::io::Result<String> {
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request += &format!("${}\r\n{a}\r\n", a.len());
        }
        self.reader.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_string())
    }
}

/// Writes `PREFIX:N` to the node at `addr` through a pinned client until stopped (or two
/// minutes); the acknowledged writes.
fn pinned_writer(addr: &str, password: &str, prefix: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<Ack>> {
    let (addr, password, prefix) = (addr.to_string(), password.to_string(), prefix.to_string());
    std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut client = None;
        let started = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(120) {
            if client.is_none() {
                client = PinnedClient::connect(&addr, &password).ok();
                if client.is_none() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            }
            let key = format!("{prefix}:{n}");
            match client.as_mut().unwrap().command(&["SET", &key, "1"]) {
                Ok(reply) if reply == "+OK" => acks.push(Ack { n, at_ms: now_ms() }),
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => client = None,
            }
            n += 1;
        }
        acks
    })
}

/// Cuts the primary's address off for 20 s while a pinned client writes to it, heals, waits
/// for the group to settle on the new primary, and returns (acknowledged during the cut, lost,
/// seconds after the cut of the last lost write).
fn split_brain(access: &GroupAccess, old: &str, members: &[String], prefix: &str) -> (usize, usize, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = pinned_writer(old, &access.password, prefix, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = now_ms();
    let cut = Cut::start();
    std::thread::sleep(Duration::from_secs(20));
    drop(cut);
    let new = loop {
        if let Some(p) = access.sentinel_primary()
            && p != old
        {
            break p;
        }
        assert!(now_ms() - cut_at < 80_000, "no failover happened during the cut");
        std::thread::sleep(Duration::from_millis(100));
    };
    wait_consistent(access, members, Some(&new), Duration::from_secs(60));
    stop.store(true, Ordering::SeqCst);
    let acks = writer.join().unwrap();
    let lost = missing(&mut access.node(&new).unwrap(), prefix, &acks);
    let during = acks
        .iter()
        .filter(|a| a.at_ms >= cut_at && a.at_ms <= cut_at + 20_000)
        .count();
    let last_lost = lost
        .iter()
        .map(|a| a.at_ms.saturating_sub(cut_at) as f64 / 1000.0)
        .fold(0.0, f64::max);
    (during, lost.len(), last_lost)
}

/// Applies the group with `bound` (lines of the failover block), cuts its primary off for
/// 20 s under a pinned client, and destroys it: (acknowledged during the cut, lost, seconds
/// after the cut of the last lost write).
fn cut_group(bound: &str, prefix: &str) -> (usize, usize, f64) {
    let tf = Terraform::new("");
    tf.apply_config_with_provider(&provider(), &group(bound));
    tf.refresh();
    let access = GroupAccess::of(&tf, "valkey_service.main");
    let main = tf.address("valkey_service.main");
    let members = vec![
        main.clone(),
        tf.address("valkey_read_replica.r[0]"),
        tf.address("valkey_read_replica.r[1]"),
    ];
    wait_consistent(&access, &members, Some(&main), Duration::from_secs(10));
    let outcome = split_brain(&access, &main, &members, prefix);
    // The old primary is back as a replica: apply has nothing to restart.
    let (changes, plan) = tf.plan_has_changes();
    assert!(!changes, "after the cut healed:\n{plan}");
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    outcome
}

#[test]
fn a_primary_cut_off_from_its_group_on_this_machine_stops_acknowledging_writes_within_the_bound() {
    let (during, lost, last_lost) = cut_group("", "bounded");
    eprintln!(
        "local, 20 s cut, default bound: {during} writes acknowledged during the cut, {lost} lost, the last lost \
         {last_lost:.1} s after the cut"
    );
    assert!(
        last_lost <= BOUND_SPAN_S,
        "a write acknowledged {last_lost:.1} s after the cut was lost, beyond the 2 s bound and Valkey's 2 s of rounding"
    );
    // The same cut with the bound off: the old primary acknowledges writes throughout, and
    // loses them all.
    let (during, lost, last_lost) = cut_group("    min_replicas_to_write = 0\n", "unbounded");
    eprintln!(
        "local, 20 s cut, bound off: {during} writes acknowledged during the cut, {lost} lost, the last lost \
         {last_lost:.1} s after the cut"
    );
    assert!(
        last_lost > 10.0,
        "without the bound the cut-off primary should have acknowledged (and lost) writes throughout the cut"
    );
}
