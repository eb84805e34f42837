//! Private files for the local runtime: directories 0700, files 0600, written atomically, and
//! errors that say when the disk holding data_dir is full.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::runtime::RuntimeError;

/// What to do when a write failed because the disk is full.
fn disk_full_hint(error: &std::io::Error) -> &'static str {
    if error.raw_os_error() == Some(nix::libc::ENOSPC) {
        "; the disk that holds data_dir is full: free space on it, then apply again"
    } else {
        ""
    }
}

/// An I/O error on `path`, as the runtime reports it.
pub fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.display().to_string();
    move |source| RuntimeError::Io {
        action,
        path,
        hint: disk_full_hint(&source),
        source,
    }
}

/// Creates a directory (and parents) readable only by the owner.
pub fn create_private_dir(path: &Path) -> Result<(), RuntimeError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_error("cannot create directory", path))
}

/// Writes a file readable only by the owner, atomically (temporary file, then rename). On a
/// failure (a full disk) the old file stays as it was and no temporary file is left.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("tmp");
    write_new_file(&tmp, contents)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("cannot write", path)(e)
    })
}

/// Writes `path` from scratch (truncating it), synced, mode 0600; removed again on failure.
fn write_new_file(path: &Path, contents: &[u8]) -> Result<(), RuntimeError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("cannot write", path))?;
    let written = file
        .write_all(contents)
        .and_then(|_| file.sync_all())
        .map_err(io_error("cannot write", path));
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// Creates `path` with `contents` only if nothing is there: the contents are written to a
/// temporary file first and hard-linked into place, which fails when the name exists, so a
/// reader never sees a half-written file. False when `path` existed.
pub fn create_exclusive(path: &Path, contents: &[u8]) -> Result<bool, RuntimeError> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    write_new_file(&tmp, contents)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_error("cannot write", path)(e)),
    }
}

/// Removes a file; one that is not there is not an error.
pub fn remove_if_present(path: &Path) -> Result<(), RuntimeError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("cannot remove", path)(e)),
    }
}

/// Removes a directory tree; one that is not there is not an error.
pub fn remove_dir_if_present(path: &Path) -> Result<(), RuntimeError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("cannot remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_create_never_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slot-0");
        assert!(create_exclusive(&path, b"a").unwrap());
        assert!(!create_exclusive(&path, b"b").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"a");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
