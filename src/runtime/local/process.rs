//! Process bookkeeping for the local runtime: pid files, liveness, stopping by pid.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::runtime::procfs::is_live_program;

/// The pid recorded in a pid file, if the file exists and holds one.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// Whether `pid` is a live valkey-server process.
pub fn is_live_valkey(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(|pid| is_live_program(pid, "valkey-server"))
}

/// Stops a node that will run again: SIGTERM, on which valkey-server saves its data (when
/// persistence is on) and exits; SIGKILL after `grace`. True once it is gone.
pub async fn terminate(pid: i32, grace: Duration) -> bool {
    end(pid, Signal::SIGTERM, grace).await
}

/// Stops a node whose data is deleted next: SIGINT, on which the node exits without saving
/// (its config says `shutdown-on-sigint nosave`), so a delete neither writes the whole dataset
/// to throw it away nor hangs on a full disk; SIGKILL after `grace`. True once it is gone.
pub async fn discard(pid: i32, grace: Duration) -> bool {
    end(pid, Signal::SIGINT, grace).await
}

async fn end(pid: i32, signal: Signal, grace: Duration) -> bool {
    if !is_live_valkey(pid) {
        return true;
    }
    let _ = kill(Pid::from_raw(pid), signal);
    if wait_gone(pid, grace).await {
        return true;
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    wait_gone(pid, Duration::from_secs(5)).await
}

async fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !is_live_valkey(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    !is_live_valkey(pid)
}

/// The last `lines` lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_process_is_not_mistaken_for_valkey() {
        assert!(!is_live_valkey(std::process::id() as i32));
        assert!(!is_live_valkey(i32::MAX));
    }

    #[test]
    fn pid_files_with_garbage_read_as_no_pid() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.pid");
        std::fs::write(&f, "abc").unwrap();
        assert_eq!(read_pid(&f), None);
        std::fs::write(&f, "1234\n").unwrap();
        assert_eq!(read_pid(&f), Some(1234));
        assert_eq!(read_pid(&dir.path().join("missing")), None);
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("log");
        std::fs::write(&f, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&f, 2), "b\nc");
    }
}
