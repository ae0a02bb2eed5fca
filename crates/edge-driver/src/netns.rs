//! Making sockets inside an allocation's network namespace: a socket
//! belongs to the namespace it was created in for its whole life, so an
//! in-process driver (wasm) creates its listeners on a short-lived thread
//! that entered the namespace, and the rest of the agent stays on the host.

use crate::DriverError;
use std::path::Path;

/// Runs `f` on a thread that joined the network namespace at `netns` (a
/// `/run/netns/...` path) and returns what it returned.
pub fn within<T, F>(netns: &Path, f: F) -> Result<T, DriverError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let file = std::fs::File::open(netns).map_err(|e| {
        DriverError::io(format!("opening network namespace {}", netns.display()), e)
    })?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
                DriverError::io(
                    format!("entering network namespace {}", netns.display()),
                    e.into(),
                )
            })?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(DriverError::Other(format!(
                "the thread working in network namespace {} panicked",
                netns.display()
            )))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let err = within(Path::new("/run/netns/edge-no-such-alloc"), || ()).unwrap_err();
        assert!(
            err.to_string().contains("/run/netns/edge-no-such-alloc"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_namespace_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let err = within(f.path(), || ()).unwrap_err();
        assert!(
            err.to_string().contains("entering network namespace"),
            "{err}"
        );
    }
}
