//! Process bookkeeping for the local runtime: pid files, liveness, stopping by pid.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// The pid recorded in a pid file, if the file exists and holds one.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
}

/// The command name and state letter of a process, from /proc/PID/stat.
fn comm_and_state(pid: u32) -> Option<(String, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Format: "pid (comm) state ...": comm may contain spaces, so split at the last ')'.
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(').map(|(_, c)| c)?.to_string();
    let state = tail.trim_start().chars().next()?;
    Some((comm, state))
}

/// Whether `pid` is alive (not a zombie waiting to be reaped) and its command name starts
/// with `prefix`, which guards against a recycled pid belonging to something else.
fn is_live(pid: u32, prefix: &str) -> bool {
    comm_and_state(pid).is_some_and(|(comm, state)| comm.starts_with(prefix) && state != 'Z' && state != 'X')
}

/// Whether `pid` is a live valkey-server process.
pub fn is_live_valkey(pid: i32) -> bool {
    u32::try_from(pid).is_ok_and(|pid| is_live(pid, "valkey-server"))
}

/// Whether `pid` is a live provider process (the one that wrote a record may still be at
/// work). A killed provider lingers as a zombie until it is reaped: that counts as gone.
pub fn is_live_provider(pid: u32) -> bool {
    is_live(pid, "terraform-provi")
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
    fn a_zombie_provider_counts_as_gone() {
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Exited but not yet reaped: a zombie.
        assert_eq!(comm_and_state(pid).map(|(_, state)| state), Some('Z'));
        assert!(!is_live(pid, "true"));
        child.wait().unwrap();
        assert!(!is_live_provider(std::process::id()));
    }

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
