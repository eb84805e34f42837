//! Processes on the machine running the provider, from /proc: whether one still runs the
//! program it ran. Runtimes use it for their own processes, and to tell that the provider
//! process holding a create lease on this machine is gone.

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
pub fn is_live(pid: u32, prefix: &str) -> bool {
    comm_and_state(pid).is_some_and(|(comm, state)| comm.starts_with(prefix) && state != 'Z' && state != 'X')
}

/// Whether `pid` is alive and runs the program `name`: its command name starts with it, or it
/// is a dynamic loader (`ld-linux...`) whose command line runs a file of that name, as when
/// a valkey-server built for a newer glibc runs through its own root's loader.
pub fn is_live_program(pid: u32, name: &str) -> bool {
    if is_live(pid, name) {
        return true;
    }
    if !is_live(pid, "ld-linux") {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline
        .split(|b| *b == 0)
        .filter_map(|arg| std::str::from_utf8(arg).ok())
        // valkey-server retitles itself in place ("/path/valkey-server 127.0.0.1:7000").
        .filter_map(|arg| arg.split_whitespace().next())
        .any(|program| program.rsplit('/').next() == Some(name))
}

/// Whether `pid` is a live provider process (the one that wrote a record may still be at
/// work). A killed provider lingers as a zombie until it is reaped: that counts as gone.
pub fn is_live_provider(pid: u32) -> bool {
    is_live(pid, "terraform-provi")
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
    fn a_program_run_through_its_dynamic_loader_is_found_by_its_command_line() {
        let loader = "/lib64/ld-linux-x86-64.so.2";
        let mut child = std::process::Command::new(loader)
            .args(["/bin/sleep", "5"])
            .spawn()
            .unwrap();
        let pid = child.id();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!is_live(pid, "sleep"), "its command name is the loader's");
        assert!(is_live_program(pid, "sleep"));
        assert!(!is_live_program(pid, "valkey-server"));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_live_program(pid, "sleep"));
    }
}
