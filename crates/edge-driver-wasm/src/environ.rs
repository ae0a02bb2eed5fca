//! A module's environment as one flat `K=V\0` buffer, served to the guest by
//! edge's own WASI `environ_get` and `environ_sizes_get`.
//!
//! wasmtime-wasi keeps the environment as owned `(String, String)` pairs: two
//! allocations per variable. A WAGI request carries twenty-odd variables, so
//! building them was a third of a request's cost (2.2 µs of 7 on the bench
//! host); one buffer copied from the task's prebuilt one is one allocation.

use crate::guest::{ERRNO_FAULT, ERRNO_OVERFLOW, ERRNO_SUCCESS, addr, memory, write_u32};
use crate::runtime::Host;
use std::fmt::{self, Write as _};
use wasmtime::{Caller, Linker};

/// Variables in WASI's wire form: each `KEY=VALUE` followed by a NUL.
#[derive(Clone, Default)]
pub(crate) struct Environ {
    buf: Vec<u8>,
    count: u32,
}

impl Environ {
    /// Room for `bytes` more without growing.
    pub(crate) fn with_base(base: &Environ, bytes: usize) -> Environ {
        let mut buf = Vec::with_capacity(base.buf.len() + bytes);
        buf.extend_from_slice(&base.buf);
        Environ {
            buf,
            count: base.count,
        }
    }

    /// Adds one variable. A NUL inside would end it early in the guest, so
    /// it is dropped (WASI strings cannot hold one).
    pub(crate) fn push(&mut self, key: &str, value: &str) {
        self.push_concat(key, &[value]);
    }

    /// Adds one variable whose value is `parts` joined.
    pub(crate) fn push_concat(&mut self, key: &str, parts: &[&str]) {
        self.put(key.as_bytes());
        self.buf.push(b'=');
        for part in parts {
            self.put(part.as_bytes());
        }
        self.buf.push(0);
        self.count += 1;
    }

    /// Adds a request header as CGI names it: `HTTP_` and the name in upper
    /// case with `_` for `-` (`user-agent` → `HTTP_USER_AGENT`).
    pub(crate) fn push_header(&mut self, name: &str, value: &[u8]) {
        let Ok(value) = std::str::from_utf8(value) else {
            let key = format!("HTTP_{}", name.to_ascii_uppercase().replace('-', "_"));
            return self.push(&key, &String::from_utf8_lossy(value));
        };
        self.buf.extend_from_slice(b"HTTP_");
        self.buf
            .extend(name.bytes().filter(|b| *b != 0).map(|b| match b {
                b'-' => b'_',
                b => b.to_ascii_uppercase(),
            }));
        self.buf.push(b'=');
        self.put(value.as_bytes());
        self.buf.push(0);
        self.count += 1;
    }

    fn put(&mut self, bytes: &[u8]) {
        put(&mut self.buf, bytes);
    }

    /// Adds one variable whose value is raw bytes (an HTTP header value),
    /// made valid UTF-8 because guests' standard libraries expect it.
    pub(crate) fn push_bytes(&mut self, key: &str, value: &[u8]) {
        match std::str::from_utf8(value) {
            Ok(s) => self.push(key, s),
            Err(_) => self.push(key, &String::from_utf8_lossy(value)),
        }
    }

    /// Adds one variable whose value is formatted in place.
    pub(crate) fn push_fmt(&mut self, key: &str, value: fmt::Arguments<'_>) {
        self.put(key.as_bytes());
        self.buf.push(b'=');
        let mut w = NulFree(&mut self.buf);
        // Writing into a Vec cannot fail.
        let _ = w.write_fmt(value);
        self.buf.push(0);
        self.count += 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// The variables as `(key, value)`, in order.
    #[cfg(test)]
    pub(crate) fn vars(&self) -> Vec<(String, String)> {
        self.entries()
            .map(|e| {
                let e = String::from_utf8_lossy(e);
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn entries(&self) -> impl Iterator<Item = &[u8]> {
        self.buf
            .split_inclusive(|b| *b == 0)
            .map(|e| &e[..e.len() - 1])
    }
}

struct NulFree<'a>(&'a mut Vec<u8>);

impl fmt::Write for NulFree<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put(self.0, s.as_bytes());
        Ok(())
    }
}

/// Appends `bytes` without any NUL in them.
fn put(buf: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.contains(&0) {
        buf.extend(bytes.iter().filter(|b| **b != 0));
    } else {
        buf.extend_from_slice(bytes);
    }
}

/// Replaces wasmtime-wasi's two environment functions with ones reading
/// [`Host::environ`]. Call after adding WASI to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_sizes_get",
        |mut caller: Caller<'_, Host>, count_at: i32, size_at: i32| -> i32 {
            let env = &caller.data().environ;
            let (Ok(count), Ok(size)) = (u32::try_from(env.len()), u32::try_from(env.buf.len()))
            else {
                return ERRNO_OVERFLOW;
            };
            let Some(memory) = memory(&mut caller) else {
                return ERRNO_FAULT;
            };
            let data = memory.data_mut(&mut caller);
            match write_u32(data, addr(count_at), count).and(write_u32(data, addr(size_at), size)) {
                Some(()) => ERRNO_SUCCESS,
                None => ERRNO_FAULT,
            }
        },
    )?;
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "environ_get",
        |mut caller: Caller<'_, Host>, pointers_at: i32, buf_at: i32| -> i32 {
            let Some(memory) = memory(&mut caller) else {
                return ERRNO_FAULT;
            };
            let (data, host) = memory.data_and_store_mut(&mut caller);
            match write_environ(data, &host.environ, pointers_at, buf_at) {
                Some(()) => ERRNO_SUCCESS,
                None => ERRNO_FAULT,
            }
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The buffer goes to `buf_at` as is; `pointers_at` gets one guest pointer
/// per variable, to where that variable starts.
fn write_environ(data: &mut [u8], env: &Environ, pointers_at: i32, buf_at: i32) -> Option<()> {
    let base = addr(buf_at);
    data.get_mut(base..base.checked_add(env.buf.len())?)?
        .copy_from_slice(&env.buf);
    let mut at = addr(pointers_at);
    let mut offset = 0usize;
    for entry in env.entries() {
        let pointer = u32::try_from(base + offset).ok()?;
        write_u32(data, at, pointer)?;
        at = at.checked_add(4)?;
        offset += entry.len() + 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_keep_order_and_lose_nuls() {
        let mut base = Environ::default();
        base.push("A", "1");
        let mut env = Environ::with_base(&base, 32);
        env.push_bytes("B", b"x\0y");
        env.push_bytes("D", b"\xff");
        env.push_fmt("C", format_args!("{}-{}", 2, 3));
        env.push_concat("E", &["a", "b"]);
        env.push_header("x-forwarded-for", b"10.0.0.1");
        env.push_header("x-bin", b"\xfe");
        assert_eq!(env.len(), 7);
        assert_eq!(
            env.vars(),
            [
                ("A", "1"),
                ("B", "xy"),
                ("D", "\u{fffd}"),
                ("C", "2-3"),
                ("E", "ab"),
                ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
                ("HTTP_X_BIN", "\u{fffd}"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
    }

    #[test]
    fn environ_is_laid_out_as_wasi_wants() {
        let mut env = Environ::default();
        env.push("A", "1");
        env.push("BB", "");
        let mut mem = vec![0u8; 64];
        write_environ(&mut mem, &env, 0, 16).unwrap();
        assert_eq!(&mem[0..4], &16u32.to_le_bytes());
        assert_eq!(&mem[4..8], &20u32.to_le_bytes());
        assert_eq!(&mem[16..24], b"A=1\0BB=\0");
    }

    #[test]
    fn out_of_bounds_writes_fail() {
        let mut env = Environ::default();
        env.push("A", "1");
        let mut mem = vec![0u8; 8];
        assert!(write_environ(&mut mem, &env, 0, 6).is_none());
        assert!(write_environ(&mut mem, &env, 6, 0).is_none());
        assert!(write_u32(&mut mem, addr(-1), 0).is_none());
    }
}
