//! The data directory's files are the user's own: the directory is made
//! 0700 (only its last component is ever created), the process's umask is
//! 077 so every file in it (queue, WAL, cache, logs, lock) is 0600, and the
//! log and the lock are opened without following a symlink.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Make files this process creates readable by its user only.
pub fn restrict_new_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Create `dir` if it is missing (its parent must exist: a missing plugin
/// folder is a mistake to report, not a tree to make), and make it private.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_dir() {
        let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent
            && !parent.is_dir()
        {
            return Err(format!(
                "the folder {} does not exist, so the data folder {} cannot be made there; check the plugin folder (or --data-dir / STASH_PLUGIN_DATA)",
                parent.display(),
                dir.display()
            ));
        }
        std::fs::create_dir(dir)
            .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
            .map_err(|e| format!("cannot create the data directory {}: {e}", dir.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let loose = std::fs::metadata(dir).map(|m| m.permissions().mode() & 0o077 != 0).unwrap_or(false);
        if loose {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot make the data directory {} private: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// `options` that refuse to open `path` through a symlink.
pub fn no_follow(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Open `path` for appending (created 0600), never through a symlink.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    no_follow(OpenOptions::new().create(true).append(true)).open(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_data_dir_is_private_and_only_its_last_component_is_made() {
        restrict_new_files();
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        private_dir(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        let err = private_dir(&root.path().join("missing-plugin").join("data")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert!(!root.path().join("missing-plugin").exists(), "no plugin folder tree is made");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&data).unwrap();
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700, "tightened");
    }

    #[test]
    fn logs_are_not_opened_through_a_symlink() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let link = root.path().join("drainer.log");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(open_append(&link).is_err());
        assert!(open_append(&root.path().join("plain.log")).is_ok());
    }
}
