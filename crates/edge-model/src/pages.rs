//! Gives back the pages of the edge binary that only start-up touched, and
//! keeps the heap pages inference reuses on every run.
//!
//! `edge model serve` is the whole edge binary: parsing the command line and
//! loading the model fault in megabytes of code and read-only data (the
//! kernel maps up to 16 neighbouring pages per fault) that serving never
//! uses again, and they count in the task's RSS. Mappings of the binary that
//! are not writable and hold no anonymous (copied-on-write) pages are exact
//! copies of the file, so dropping them is safe: whatever is used again is
//! read back from the page cache on the next access.

use std::path::Path;

/// Drops the clean, file-backed mappings of the running executable from
/// this process; returns how many bytes of RSS that freed.
pub fn release_startup_pages() -> u64 {
    let (Ok(exe), Ok(smaps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/smaps"),
    ) else {
        return 0;
    };
    candidates(&smaps, &exe)
        .into_iter()
        .map(|(start, end, rss)| {
            // SAFETY: the range is a whole mapping of the executable file with
            // no private (anonymous) pages: MADV_DONTNEED only unmaps clean
            // file pages, which the next access faults back in unchanged.
            let rc = unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED)
            };
            if rc == 0 { rss } else { 0 }
        })
        .sum()
}

/// Keeps freed blocks of up to 32 MiB in the heap for the next run. tract
/// allocates every intermediate tensor afresh on each run (for a conv net on
/// a 224x224 image, several of a few MB); glibc maps blocks that large with
/// mmap and unmaps them on free, so every run faulted in fresh zeroed pages:
/// 1.2 million page faults in 12 s of runs, two rows 3.4 ms a row instead
/// of 1.2 ms. Above 64 MiB of free space at the top of a heap, glibc still
/// gives memory back. Without glibc this does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocation thresholds; both values
    // are within the ranges it accepts, and a refusal leaves the defaults.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// `(start, end, rss_bytes)` of each read-only mapping of `exe` without
/// anonymous pages, from the text of `/proc/self/smaps`.
fn candidates(smaps: &str, exe: &Path) -> Vec<(usize, usize, u64)> {
    let exe = exe.to_string_lossy();
    let mut out = Vec::new();
    let mut current: Option<(usize, usize, bool)> = None;
    let mut rss = 0;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3).unwrap_or("");
            current = Some((start, end, !perms.contains('w') && path == exe));
            rss = 0;
            continue;
        }
        let kb = || {
            fields
                .clone()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match first {
            "Rss:" => rss = kb() * 1024,
            "Anonymous:" => {
                if let Some((start, end, true)) = current.take()
                    && kb() == 0
                {
                    out.push((start, end, rss));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_clean_read_only_mappings_of_the_binary_only() {
        let smaps = "\
1000-3000 r--p 00000000 08:01 7 /bin/edge
Rss:                   8 kB
Anonymous:             0 kB
3000-5000 r-xp 00002000 08:01 7 /bin/edge
Rss:                   4 kB
Anonymous:             0 kB
5000-6000 r--p 00004000 08:01 7 /bin/edge
Rss:                   4 kB
Anonymous:             4 kB
6000-7000 rw-p 00005000 08:01 7 /bin/edge
Rss:                   4 kB
Anonymous:             0 kB
7000-8000 r-xp 00000000 08:01 9 /lib/libc.so.6
Rss:                   4 kB
Anonymous:             0 kB
";
        assert_eq!(
            candidates(smaps, Path::new("/bin/edge")),
            [(0x1000, 0x3000, 8192), (0x3000, 0x5000, 4096)]
        );
    }

    #[test]
    fn releasing_pages_keeps_the_process_working() {
        assert!(
            release_startup_pages() > 0,
            "the test binary has clean pages"
        );
        // Code and constants fault back in: a model still loads and runs.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/model/fixtures/iris.onnx");
        let m = crate::Model::load(&path, "iris").unwrap();
        assert_eq!(m.inputs[0].shape, [-1, 4]);
    }
}
