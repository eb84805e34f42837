//! data_dir on a disk that fills up: a create fails with an error that says so and leaves
//! nothing behind, what already runs keeps running, and once space is freed the same apply
//! succeeds. The disk is a small tmpfs the test mounts (the test runs as root, as CI does).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Terraform, flatten};

/// A 1 MiB tmpfs, unmounted (and its mount point removed) when dropped.
struct TinyDisk {
    root: tempfile::TempDir,
}

impl TinyDisk {
    fn mount() -> TinyDisk {
        let root = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
            .arg(root.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TinyDisk { root }
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    fn filler(&self) -> PathBuf {
        self.root.path().join("filler")
    }

    /// Writes zeros until the disk is full.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.filler()).unwrap();
        let block = [0u8; 4096];
        while file.write_all(&block).is_ok() {}
    }

    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.root.path()).output();
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

const PRIMARY: &str = r#"
resource "valkey_service" "primary" {
  name   = "primary"
  plan   = "startup-4"
  region = "local-1"
}
"#;

const REPLICA: &str = r#"
resource "valkey_read_replica" "far" {
  name            = "far"
  primary_service = valkey_service.primary.name
  plan            = "startup-4"
  region          = "local-2"
}
"#;

#[test]
fn a_full_disk_fails_a_create_cleanly_and_the_apply_succeeds_once_space_is_freed() {
    let disk = TinyDisk::mount();
    let tf = Terraform::with_data_dir(&disk.data_dir(), PRIMARY);

    // A service on a full disk.
    disk.fill();
    let text = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(
        text.contains("the disk that holds data_dir is full") && text.contains("with valkey_service.primary"),
        "{text}"
    );
    assert!(
        entries(&disk.data_dir().join("services")).is_empty(),
        "a failed create left files"
    );
    assert!(tf.live_node_pids().is_empty(), "a failed create left a node running");

    disk.free();
    tf.apply();
    assert!(!tf.plan_has_changes().0);

    // A replica of a running primary on a full disk: the primary is untouched.
    tf.write_config(&format!("{PRIMARY}{REPLICA}"));
    disk.fill();
    let text = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(
        text.contains("the disk that holds data_dir is full") && text.contains("with valkey_read_replica.far"),
        "{text}"
    );
    assert_eq!(entries(&disk.data_dir().join("services")), ["primary"]);
    assert!(
        entries(&disk.data_dir().join("services/primary/replicas")).is_empty(),
        "a failed create left the replica counted"
    );
    assert_eq!(tf.live_node_pids().len(), 1, "only the primary's node runs");
    let (_, plan) = tf.plan_has_changes();
    assert!(
        flatten(&plan).contains("Plan: 1 to add, 0 to change, 0 to destroy"),
        "only the replica is left to make:\n{plan}"
    );

    disk.free();
    tf.apply();
    assert!(!tf.plan_has_changes().0);
    assert_eq!(
        tf.state_attributes("valkey_read_replica.far")["replication_status"],
        "up"
    );

    // An update that rewrites the primary's config: the old file stays whole, the node keeps
    // running, and the change is still planned.
    let config_file = disk.data_dir().join("services/primary/node-0/valkey.conf");
    let config_before = std::fs::read_to_string(&config_file).unwrap();
    let lru = PRIMARY.replace(
        "region = \"local-1\"\n",
        "region = \"local-1\"\n  valkey_user_config {\n    maxmemory_policy = \"allkeys-lru\"\n  }\n",
    );
    tf.write_config(&format!("{lru}{REPLICA}"));
    let running = tf.live_node_pids();
    disk.fill();
    let text = tf.fails(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    assert!(text.contains("the disk that holds data_dir is full"), "{text}");
    assert_eq!(std::fs::read_to_string(&config_file).unwrap(), config_before);
    assert!(
        !entries(config_file.parent().unwrap())
            .iter()
            .any(|f| f.ends_with(".tmp")),
        "a failed write left a temporary file"
    );
    assert_eq!(tf.live_node_pids(), running, "every node and Sentinel keeps running");
    assert!(tf.plan_has_changes().0, "the change is still to be made");

    disk.free();
    tf.apply();
    assert!(!tf.plan_has_changes().0);
    assert!(
        std::fs::read_to_string(&config_file)
            .unwrap()
            .contains("maxmemory-policy allkeys-lru")
    );

    // A destroy on a full disk: nodes exit without a final save, so nothing waits on the disk.
    disk.fill();
    let started = std::time::Instant::now();
    tf.ok(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
    eprintln!("destroy on a full disk took {:?}", started.elapsed());
    assert!(tf.live_node_pids().is_empty());
    assert!(entries(&disk.data_dir().join("services")).is_empty());
}
