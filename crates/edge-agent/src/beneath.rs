//! Writing into a task's directory without following links. A task may
//! replace anything in its own directory with a symlink to a host path;
//! the agent, as root, must then neither write a config, secret or
//! template through it nor mount a secrets tmpfs on it. Every component
//! is opened relative to the one before with `O_NOFOLLOW`, and files are
//! made with `O_EXCL` and renamed in place, so a link is refused, never
//! followed.

use nix::errno::Errno;
use nix::fcntl::{OFlag, open, openat, renameat};
use nix::sys::stat::{Mode, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Component, Path};

fn not_followed(what: &Path) -> io::Error {
    io::Error::other(format!(
        "{} is a link or not a directory: not followed",
        what.display()
    ))
}

/// Opens directory `rel` under `root` (which the agent owns), making the
/// missing ones (0755) and refusing any link on the way.
pub(crate) fn dir(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let mut fd = open(root, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    for c in rel.components() {
        let Component::Normal(name) = c else {
            return Err(io::Error::other(format!(
                "{} leaves its directory",
                rel.display()
            )));
        };
        fd = match openat(&fd, name, flags, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::ENOENT) => {
                mkdirat(&fd, name, Mode::from_bits_truncate(0o755))?;
                openat(&fd, name, flags, Mode::empty())?
            }
            Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(not_followed(&root.join(rel))),
            Err(e) => return Err(e.into()),
        };
    }
    Ok(fd)
}

/// Writes file `rel` under `root` with `mode`: a new file renamed over
/// the old one (or over a link, which is replaced, not followed).
pub(crate) fn write(root: &Path, rel: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(io::Error::other(format!("{} names no file", rel.display())));
    };
    let d = dir(root, parent)?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(".edge-tmp");
    let tmp = Path::new(&tmp);
    match unlinkat(&d, tmp, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    let flags =
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(&d, tmp, flags, Mode::from_bits_truncate(0o600))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes)?;
    // The creation mode went through the umask; this one does not.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.sync_all()?;
    renameat(&d, tmp, &d, name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_the_task_dir_are_refused_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        write(root.path(), Path::new("t/local/a.conf"), b"one", 0o640).unwrap();
        let written = root.path().join("t/local/a.conf");
        assert_eq!(std::fs::read(&written).unwrap(), b"one");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&written).unwrap().permissions().mode() & 0o777,
            0o640
        );

        // A directory swapped for a link to a host directory.
        std::fs::remove_dir_all(root.path().join("t/local")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.path().join("t/local")).unwrap();
        let err = write(root.path(), Path::new("t/local/a.conf"), b"two", 0o644).unwrap_err();
        assert!(err.to_string().contains("not followed"), "{err}");
        assert!(!host.path().join("a.conf").exists());

        // A file swapped for a link: the link is replaced, its target kept.
        std::fs::remove_file(root.path().join("t/local")).unwrap();
        std::fs::create_dir(root.path().join("t/local")).unwrap();
        let target = host.path().join("passwd");
        std::fs::write(&target, "host file").unwrap();
        std::os::unix::fs::symlink(&target, root.path().join("t/local/a.conf")).unwrap();
        write(root.path(), Path::new("t/local/a.conf"), b"three", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "host file");
        assert_eq!(
            std::fs::read(root.path().join("t/local/a.conf")).unwrap(),
            b"three"
        );

        assert!(dir(root.path(), Path::new("t/../..")).is_err());
    }
}
