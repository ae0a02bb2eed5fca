//! Where task logs live and how they are written and read: every driver writes
//! `<log_dir>/<task>.<stream>.<N>` files through [`RotatingLog`], and the
//! agent's `edge alloc logs` endpoint reads them back with [`read_logs`] and
//! [`read_logs_from`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// `stdout` or `stderr`.
pub fn log_path(log_dir: &Path, task: &str, stream: &str, n: u32) -> PathBuf {
    log_dir.join(format!("{task}.{stream}.{n}"))
}

/// The indices and paths of a stream's log files, oldest (lowest N) first.
fn indexed_files(log_dir: &Path, task: &str, stream: &str) -> io::Result<Vec<(u32, PathBuf)>> {
    let prefix = format!("{task}.{stream}.");
    let entries = match fs::read_dir(log_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name
            .strip_prefix(&prefix)
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        files.push((n, entry.path()));
    }
    files.sort_by_key(|(n, _)| *n);
    Ok(files)
}

/// The current log files of one stream, oldest first.
pub fn log_files(log_dir: &Path, task: &str, stream: &str) -> io::Result<Vec<PathBuf>> {
    Ok(indexed_files(log_dir, task, stream)?
        .into_iter()
        .map(|(_, p)| p)
        .collect())
}

/// Opens a log file that rotation may have deleted since it was listed.
fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Everything one stream still holds, oldest first; with `offset_from_end`,
/// only its last that many bytes.
pub fn read_logs(
    log_dir: &Path,
    task: &str,
    stream: &str,
    offset_from_end: Option<u64>,
) -> io::Result<Vec<u8>> {
    let files = indexed_files(log_dir, task, stream)?;
    let mut want = offset_from_end.unwrap_or(u64::MAX);
    // Walk newest first to find how much of each file the tail needs, then
    // emit the chunks in reading order.
    let mut chunks = Vec::new();
    for (_, path) in files.iter().rev() {
        if want == 0 {
            break;
        }
        let Some(mut file) = open_existing(path)? else {
            continue;
        };
        let len = file.metadata()?.len();
        let take = len.min(want);
        file.seek(SeekFrom::Start(len - take))?;
        let mut buf = Vec::new();
        file.take(take).read_to_end(&mut buf)?;
        want -= buf.len() as u64;
        chunks.push(buf);
    }
    chunks.reverse();
    Ok(chunks.concat())
}

/// A position in a stream, for following it: file index and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogCursor {
    pub index: u32,
    pub offset: u64,
}

/// The position just past the last byte written so far, to follow a stream
/// from now on.
pub fn log_end(log_dir: &Path, task: &str, stream: &str) -> io::Result<LogCursor> {
    let files = indexed_files(log_dir, task, stream)?;
    let Some((index, path)) = files.last() else {
        return Ok(LogCursor::default());
    };
    let offset = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    Ok(LogCursor {
        index: *index,
        offset,
    })
}

/// Reads at most `limit` bytes written at or after `cursor` and returns the
/// cursor to continue from. When rotation deleted the file the cursor points
/// into, reading resumes at the start of the oldest file still there.
pub fn read_logs_from(
    log_dir: &Path,
    task: &str,
    stream: &str,
    cursor: LogCursor,
    limit: usize,
) -> io::Result<(Vec<u8>, LogCursor)> {
    let files = indexed_files(log_dir, task, stream)?;
    let mut out = Vec::new();
    let mut pos = cursor;
    for (index, path) in files.into_iter().filter(|(n, _)| *n >= cursor.index) {
        if out.len() >= limit {
            break;
        }
        if index != pos.index {
            pos = LogCursor { index, offset: 0 };
        }
        let Some(mut file) = open_existing(&path)? else {
            continue;
        };
        file.seek(SeekFrom::Start(pos.offset))?;
        let room = (limit - out.len()) as u64;
        let read = file.take(room).read_to_end(&mut out)?;
        pos.offset += read as u64;
    }
    Ok((out, pos))
}

/// A size-capped, rotating writer for one stream of one task. It appends to
/// the newest existing file (so a restarted writer never truncates what is
/// there), moves to N+1 once a file holds `max_bytes`, and deletes the oldest
/// files so that at most `max_files` remain.
#[derive(Debug)]
pub struct RotatingLog {
    log_dir: PathBuf,
    task: String,
    stream: String,
    max_bytes: u64,
    max_files: u32,
    index: u32,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Caps below 1 are raised to 1.
    pub fn open(
        log_dir: &Path,
        task: &str,
        stream: &str,
        max_bytes: u64,
        max_files: u32,
    ) -> io::Result<RotatingLog> {
        fs::create_dir_all(log_dir)?;
        let max_bytes = max_bytes.max(1);
        let max_files = max_files.max(1);
        let index = match indexed_files(log_dir, task, stream)?.last() {
            Some((n, path)) if fs::metadata(path)?.len() >= max_bytes => n.saturating_add(1),
            Some((n, _)) => *n,
            None => 0,
        };
        let file = open_append(&log_path(log_dir, task, stream, index))?;
        let size = file.metadata()?.len();
        let log = RotatingLog {
            log_dir: log_dir.to_path_buf(),
            task: task.to_string(),
            stream: stream.to_string(),
            max_bytes,
            max_files,
            index,
            file,
            size,
        };
        log.prune()?;
        Ok(log)
    }

    /// The file being written now.
    pub fn current_path(&self) -> PathBuf {
        log_path(&self.log_dir, &self.task, &self.stream, self.index)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.index = self.index.saturating_add(1);
        self.file = open_append(&self.current_path())?;
        self.size = self.file.metadata()?.len();
        self.prune()
    }

    fn prune(&self) -> io::Result<()> {
        let files = indexed_files(&self.log_dir, &self.task, &self.stream)?;
        let excess = files.len().saturating_sub(self.max_files as usize);
        for (_, path) in files.into_iter().take(excess) {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Write for RotatingLog {
    /// Writes at most what fits in the current file, so no file ever exceeds
    /// `max_bytes`; `write_all` carries the rest into the next file.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.size >= self.max_bytes {
            self.rotate()?;
        }
        let room = (self.max_bytes - self.size).min(buf.len() as u64) as usize;
        let written = self.file.write(&buf[..room])?;
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    fn sizes(dir: &Path) -> Vec<u64> {
        log_files(dir, "web", "stdout")
            .unwrap()
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .collect()
    }

    #[test]
    fn writes_first_file_and_reads_it_back() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 100, 3).unwrap();
        log.write_all(b"hello\n").unwrap();
        assert_eq!(log.current_path(), log_path(dir.path(), "web", "stdout", 0));
        assert_eq!(
            read_logs(dir.path(), "web", "stdout", None).unwrap(),
            b"hello\n"
        );
        assert!(
            read_logs(dir.path(), "web", "stderr", None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn rotates_at_max_bytes_and_keeps_max_files() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 10, 3).unwrap();
        let data: Vec<u8> = (0..55u8).map(|i| b'a' + i % 26).collect();
        log.write_all(&data).unwrap();
        let files = log_files(dir.path(), "web", "stdout").unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["web.stdout.3", "web.stdout.4", "web.stdout.5"]);
        assert_eq!(sizes(dir.path()), [10, 10, 5]);
        assert_eq!(
            read_logs(dir.path(), "web", "stdout", None).unwrap(),
            &data[30..]
        );
    }

    #[test]
    fn orders_by_number_not_by_name() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 1, 20).unwrap();
        log.write_all(b"abcdefghijkl").unwrap();
        assert_eq!(log_files(dir.path(), "web", "stdout").unwrap().len(), 12);
        assert_eq!(
            read_logs(dir.path(), "web", "stdout", None).unwrap(),
            b"abcdefghijkl"
        );
    }

    #[test]
    fn reopening_appends_and_never_truncates() {
        let dir = tempdir();
        {
            let mut log = RotatingLog::open(dir.path(), "web", "stdout", 10, 5).unwrap();
            log.write_all(b"0123456789abc").unwrap();
        }
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 10, 5).unwrap();
        assert_eq!(log.current_path(), log_path(dir.path(), "web", "stdout", 1));
        log.write_all(b"de").unwrap();
        assert_eq!(
            read_logs(dir.path(), "web", "stdout", None).unwrap(),
            b"0123456789abcde"
        );

        // A full newest file makes the next writer start a new one.
        drop(log);
        fs::write(log_path(dir.path(), "web", "stdout", 1), b"0123456789").unwrap();
        let log = RotatingLog::open(dir.path(), "web", "stdout", 10, 5).unwrap();
        assert_eq!(log.current_path(), log_path(dir.path(), "web", "stdout", 2));
    }

    #[test]
    fn reopening_with_a_smaller_cap_prunes() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 2, 10).unwrap();
        log.write_all(b"aabbccddee").unwrap();
        drop(log);
        RotatingLog::open(dir.path(), "web", "stdout", 2, 2).unwrap();
        assert_eq!(read_logs(dir.path(), "web", "stdout", None).unwrap(), b"ee");
    }

    #[test]
    fn reads_tails_across_files() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 4, 10).unwrap();
        log.write_all(b"0123456789").unwrap();
        let tail = |k| read_logs(dir.path(), "web", "stdout", Some(k)).unwrap();
        assert_eq!(tail(0), b"");
        assert_eq!(tail(1), b"9");
        assert_eq!(tail(2), b"89");
        assert_eq!(tail(3), b"789");
        assert_eq!(tail(7), b"3456789");
        assert_eq!(tail(100), b"0123456789");
    }

    #[test]
    fn follows_with_a_cursor_across_rotation() {
        let dir = tempdir();
        let mut log = RotatingLog::open(dir.path(), "web", "stdout", 4, 2).unwrap();
        let start = log_end(dir.path(), "web", "stdout").unwrap();
        log.write_all(b"abc").unwrap();
        let (got, cur) = read_logs_from(dir.path(), "web", "stdout", start, 1024).unwrap();
        assert_eq!(got, b"abc");
        let (got, cur) = read_logs_from(dir.path(), "web", "stdout", cur, 1024).unwrap();
        assert!(got.is_empty());
        log.write_all(b"defgh").unwrap();
        let (got, cur) = read_logs_from(dir.path(), "web", "stdout", cur, 3).unwrap();
        assert_eq!(got, b"def");
        let (got, cur) = read_logs_from(dir.path(), "web", "stdout", cur, 1024).unwrap();
        assert_eq!(got, b"gh");
        assert_eq!(cur, log_end(dir.path(), "web", "stdout").unwrap());

        // The reader fell behind past max_files: it resumes at the oldest file left.
        log.write_all(b"ijklmnopqr").unwrap();
        let (got, _) = read_logs_from(dir.path(), "web", "stdout", cur, 1024).unwrap();
        assert_eq!(got, b"mnopqr");
    }

    #[test]
    fn ignores_other_tasks_and_streams() {
        let dir = tempdir();
        let mut a = RotatingLog::open(dir.path(), "web", "stdout", 100, 2).unwrap();
        let mut b = RotatingLog::open(dir.path(), "web", "stderr", 100, 2).unwrap();
        let mut c = RotatingLog::open(dir.path(), "web.2", "stdout", 100, 2).unwrap();
        fs::write(dir.path().join("web.stdout.x"), b"junk").unwrap();
        a.write_all(b"a").unwrap();
        b.write_all(b"b").unwrap();
        c.write_all(b"c").unwrap();
        assert_eq!(read_logs(dir.path(), "web", "stdout", None).unwrap(), b"a");
        assert_eq!(read_logs(dir.path(), "web", "stderr", None).unwrap(), b"b");
        assert_eq!(
            read_logs(dir.path(), "web.2", "stdout", None).unwrap(),
            b"c"
        );
        assert!(log_files(dir.path(), "nope", "stdout").unwrap().is_empty());
        assert!(
            log_files(&dir.path().join("missing"), "web", "stdout")
                .unwrap()
                .is_empty()
        );
    }
}
