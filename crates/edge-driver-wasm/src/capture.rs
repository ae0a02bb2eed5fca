//! http mode's WASI `fd_write`: stdout goes straight from guest memory into
//! the response buffer and stderr into the task's log.
//!
//! wasmtime-wasi routes every write through its preview 2 stream machinery
//! (descriptor table set up on first use, a shared pipe behind a mutex),
//! about 0.9 µs of a 7 µs request on the bench host. A handler has no
//! preopened directories, so fds 1 and 2 are the only ones it can write to.

use crate::guest::{ERRNO_BADF, ERRNO_FAULT, ERRNO_SUCCESS, addr, memory, read_u32, write_u32};
use crate::runtime::Host;
use crate::stdio::LogStream;
use wasmtime::{Caller, Linker};

/// A handler writing more than this to stdout traps.
pub(crate) const MAX_OUTPUT: usize = 64 << 20;

/// Where one request's writes go.
pub(crate) struct Capture {
    pub stdout: Vec<u8>,
    pub stderr: LogStream,
}

/// The error a handler writing past [`MAX_OUTPUT`] is stopped with.
#[derive(Debug, thiserror::Error)]
#[error("the handler wrote more than {} MiB to stdout", MAX_OUTPUT >> 20)]
pub(crate) struct OutputTooLarge;

/// Replaces wasmtime-wasi's `fd_write` with one writing to [`Host::capture`].
/// Call after adding WASI to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "fd_write",
        |mut caller: Caller<'_, Host>,
         fd: i32,
         iovs: i32,
         iovs_len: i32,
         written_at: i32|
         -> wasmtime::Result<i32> {
            let Some(memory) = memory(&mut caller) else {
                return Ok(ERRNO_FAULT);
            };
            let (data, host) = memory.data_and_store_mut(&mut caller);
            let Some(capture) = host.capture.as_mut() else {
                return Ok(ERRNO_BADF);
            };
            let Some(written) = (match fd {
                1 => write(data, iovs, iovs_len, |b| {
                    if capture.stdout.len() + b.len() > MAX_OUTPUT {
                        return Err(OutputTooLarge);
                    }
                    capture.stdout.extend_from_slice(b);
                    Ok(())
                })?,
                2 => write(data, iovs, iovs_len, |b| {
                    // A full disk must not fail the request: the log is
                    // best effort, as for the other drivers.
                    let _ = capture.stderr.write_bytes(b);
                    Ok(())
                })?,
                _ => return Ok(ERRNO_BADF),
            }) else {
                return Ok(ERRNO_FAULT);
            };
            Ok(match write_u32(data, addr(written_at), written) {
                Some(()) => ERRNO_SUCCESS,
                None => ERRNO_FAULT,
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Hands each of the `iovs_len` buffers described at `iovs` to `sink` and
/// returns the bytes written, or `None` when one lies outside memory.
fn write(
    data: &[u8],
    iovs: i32,
    iovs_len: i32,
    mut sink: impl FnMut(&[u8]) -> Result<(), OutputTooLarge>,
) -> Result<Option<u32>, OutputTooLarge> {
    let mut written = 0u32;
    for i in 0..addr(iovs_len) {
        let Some(at) = addr(iovs).checked_add(i * 8) else {
            return Ok(None);
        };
        let (Some(ptr), Some(len)) = (read_u32(data, at), read_u32(data, at + 4)) else {
            return Ok(None);
        };
        let (ptr, len) = (ptr as usize, len as usize);
        let Some(buf) = ptr.checked_add(len).and_then(|end| data.get(ptr..end)) else {
            return Ok(None);
        };
        sink(buf)?;
        written = written.saturating_add(len as u32);
    }
    Ok(Some(written))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(mem: &mut [u8], at: usize, ptr: u32, len: u32) {
        mem[at..at + 4].copy_from_slice(&ptr.to_le_bytes());
        mem[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
    }

    #[test]
    fn gathers_every_buffer_in_order() {
        let mut mem = vec![0u8; 64];
        mem[32..35].copy_from_slice(b"abc");
        mem[40..42].copy_from_slice(b"de");
        iov(&mut mem, 0, 32, 3);
        iov(&mut mem, 8, 40, 2);
        let mut out = Vec::new();
        let n = write(&mem, 0, 2, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, Some(5));
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn a_buffer_outside_memory_is_a_fault() {
        let mut mem = vec![0u8; 64];
        iov(&mut mem, 0, 60, 8);
        assert_eq!(write(&mem, 0, 1, |_| Ok(())).unwrap(), None);
        assert_eq!(write(&mem, 60, 1, |_| Ok(())).unwrap(), None);
        assert_eq!(write(&mem, -8, 1, |_| Ok(())).unwrap(), None);
    }
}
