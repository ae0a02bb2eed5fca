//! What edge's own WASI preview 1 host functions share: errno values and
//! bounds-checked access to the calling module's linear memory.

use crate::runtime::Host;
use wasmtime::{Caller, Extern, Memory};

pub(crate) const ERRNO_SUCCESS: i32 = 0;
pub(crate) const ERRNO_BADF: i32 = 8;
pub(crate) const ERRNO_FAULT: i32 = 21;
pub(crate) const ERRNO_OVERFLOW: i32 = 61;

/// The caller's exported `memory`, which every WASI command has.
pub(crate) fn memory(caller: &mut Caller<'_, Host>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// A guest pointer (an i32 reinterpreted as unsigned) as an index into memory.
pub(crate) fn addr(ptr: i32) -> usize {
    ptr as u32 as usize
}

/// The little-endian u32 at `at`, or `None` outside memory.
pub(crate) fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Stores `value` little-endian at `at`; `None` outside memory.
pub(crate) fn write_u32(data: &mut [u8], at: usize, value: u32) -> Option<()> {
    data.get_mut(at..at.checked_add(4)?)?
        .copy_from_slice(&value.to_le_bytes());
    Some(())
}
