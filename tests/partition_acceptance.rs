//! A replica whose primary is cut off: refresh shows replication_status "down", and "up" again
//! once the link heals, with no change planned either way. The region link is a TCP proxy the
//! test controls, between the replica and a primary given by primary_uri.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::Terraform;

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

fn eventually(tf: &Terraform, want: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if status(tf) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("replication_status never became {want:?}");
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
