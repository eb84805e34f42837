//! Where the `ssh` client keeps its control sockets for `ssh://` engines: a directory of this
//! provider process under the temp dir, removed when the process ends, instead of one more
//! directory in the user's `~/.local/state` per Terraform run. Directories of providers that
//! were killed are removed by the next one.

use std::path::PathBuf;

use crate::runtime::procfs::is_live_provider;

const PREFIX: &str = "terraform-provider-valkey-ssh-";

/// The directory; removed on drop.
pub struct SshStateDir(PathBuf);

impl SshStateDir {
    /// Makes the directory and points the ssh client at it (`XDG_STATE_HOME`). Call it before
    /// any other thread starts: it sets an environment variable of this process.
    pub fn claim() -> Option<SshStateDir> {
        let base = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&base) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(PREFIX))
                    .and_then(|p| p.parse().ok());
                if pid.is_some_and(|pid| !is_live_provider(pid)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("{PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        // SAFETY: main calls this before starting the async runtime or any other thread, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var("XDG_STATE_HOME", &dir) };
        Some(SshStateDir(dir))
    }
}

impl Drop for SshStateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
