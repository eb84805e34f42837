//! A replica whose primary is cut off: refresh shows replication_status "down", and "up" again
//! once the link heals, with no change planned either way. Two kinds of cut: a TCP proxy the
//! test controls that drops connections (the replica sees the link close), and a network
//! namespace whose packets are silently dropped both ways (the replica only hears nothing, and
//! notices after its repl_timeout).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Terraform, ip};

/// Forwards connections to `target` until `cut` is set; while cut, drops every open
/// connection and refuses new ones.
struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
}

impl Link {
    fn start(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let (cut, open) = (cut.clone(), open.clone());
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    if cut.load(Ordering::SeqCst) {
                        continue; // dropped at once
                    }
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        continue;
                    };
                    open.lock()
                        .unwrap()
                        .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                    for (mut from, mut to) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 16384];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(Shutdown::Both);
                        });
                    }
                }
            });
        }
        {
            let (cut, open) = (cut.clone(), open.clone());
            std::thread::spawn(move || {
                loop {
                    if cut.load(Ordering::SeqCst) {
                        for s in open.lock().unwrap().drain(..) {
                            let _ = s.shutdown(Shutdown::Both);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
        }
        Link { port, cut }
    }
}

fn status(tf: &Terraform) -> String {
    tf.ok(&["apply", "-refresh-only", "-auto-approve", "-input=false", "-no-color"]);
    tf.state_attributes("valkey_read_replica.far")["replication_status"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Refreshes until replication_status is `want`; returns how long that took.
fn eventually(tf: &Terraform, want: &str) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if status(tf) == want {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("replication_status never became {want:?}");
}

/// A network namespace joined to this one by a veth pair: a far host for the test's primary.
/// Deleted, with its veth pair, when dropped.
struct FarHost {
    name: String,
    near_if: String,
    far_if: String,
    near_addr: String,
    far_addr: String,
}

impl FarHost {
    fn create() -> FarHost {
        let id = std::process::id();
        let subnet = id % 250 + 1;
        let host = FarHost {
            name: format!("vk-part-{id}"),
            near_if: format!("vkh{}", id % 1_000_000),
            far_if: format!("vkn{}", id % 1_000_000),
            near_addr: format!("10.201.{subnet}.1"),
            far_addr: format!("10.201.{subnet}.2"),
        };
        ip(&["netns", "add", &host.name]);
        ip(&[
            "link",
            "add",
            &host.near_if,
            "type",
            "veth",
            "peer",
            "name",
            &host.far_if,
        ]);
        ip(&["link", "set", &host.far_if, "netns", &host.name]);
        ip(&["addr", "add", &format!("{}/30", host.near_addr), "dev", &host.near_if]);
        ip(&["link", "set", &host.near_if, "up"]);
        host.inside(&["addr", "add", &format!("{}/30", host.far_addr), "dev", &host.far_if]);
        host.inside(&["link", "set", &host.far_if, "up"]);
        host
    }

    fn inside(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Drops every packet both ways without a trace: each side sends to a hardware address
    /// nobody has, so neither a reset nor an unreachable error comes back.
    fn partition(&self) {
        ip(&[
            "neigh",
            "replace",
            &self.far_addr,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            &self.near_if,
            "nud",
            "permanent",
        ]);
        self.inside(&[
            "neigh",
            "replace",
            &self.near_addr,
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            &self.far_if,
            "nud",
            "permanent",
        ]);
    }

    fn heal(&self) {
        ip(&["neigh", "del", &self.far_addr, "dev", &self.near_if]);
        self.inside(&["neigh", "del", &self.near_addr, "dev", &self.far_if]);
    }
}

impl Drop for FarHost {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
        let _ = Command::new("ip").args(["link", "del", &self.near_if]).output();
    }
}

#[test]
fn a_cut_off_primary_shows_as_down_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let _primary = support::start_server(
        support::valkey_server().to_str().unwrap(),
        port,
        "pw",
        dir.path(),
        &["--repl-diskless-sync-delay", "0"],
    );
    let link = Link::start(port);
    let tf = Terraform::new(&format!(
        r#"
resource "valkey_read_replica" "far" {{
  name        = "far"
  primary_uri = "valkey://default:pw@127.0.0.1:{}"
  plan        = "startup-4"
  region      = "local-5"
}}
"#,
        link.port
    ));
    tf.apply();
    assert_eq!(status(&tf), "up");

    link.cut.store(true, Ordering::SeqCst);
    eventually(&tf, "down");
    let (changes, plan) = tf.plan_has_changes();
    assert!(
        !changes,
        "a link that is down is reported, not planned as a change:\n{plan}"
    );

    link.cut.store(false, Ordering::SeqCst);
    eventually(&tf, "up");
    assert!(!tf.plan_has_changes().0);
}

#[test]
fn a_silently_dropping_partition_shows_as_down_after_repl_timeout_and_recovers() {
    let far = FarHost::create();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let launcher = ["ip", "netns", "exec", far.name.as_str()];
    let _primary = support::start_server_in(
        &launcher,
        &far.far_addr,
        support::valkey_server().to_str().unwrap(),
        port,
        "pw",
        dir.path(),
        &["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"],
    );
    let tf = Terraform::new("");
    tf.write_config_with_provider(
        &format!("  regions = {{ \"far-away\" = \"{}\" }}\n", far.near_addr),
        &format!(
            r#"
resource "valkey_read_replica" "far" {{
  name        = "far"
  primary_uri = "valkey://default:pw@{}:{port}"
  plan        = "startup-4"
  region      = "far-away"
  valkey_user_config {{
    repl_timeout = 5
  }}
}}
"#,
            far.far_addr
        ),
    );
    tf.apply();
    assert_eq!(status(&tf), "up");

    far.partition();
    let noticed = eventually(&tf, "down");
    let refresh = Instant::now();
    let (changes, plan) = tf.plan_has_changes();
    eprintln!(
        "silent partition: replication_status down after {:.1} s (repl_timeout 5 s); a plan during it took {:.1} s",
        noticed.as_secs_f64(),
        refresh.elapsed().as_secs_f64()
    );
    assert!(
        !changes,
        "a link that is down is reported, not planned as a change:\n{plan}"
    );

    far.heal();
    let recovered = eventually(&tf, "up");
    eprintln!("healed: replication_status up after {:.1} s", recovered.as_secs_f64());
    assert!(!tf.plan_has_changes().0);
}
