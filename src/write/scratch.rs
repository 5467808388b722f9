//! Scratch space of a file being written: bytes kept in memory up to a limit, then moved to
//! a temporary file. A small day's spilled rows and its finished parquet file never touch
//! the disk before they are published (creating and deleting two temporary files per day
//! cost more than writing a 10-item day's file); a large day's go to the scratch folder, so
//! memory stays bounded whatever the day's size.

use bytes::Bytes;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use tempfile::NamedTempFile;

/// Bytes held in memory by one [`Scratch`] before they move to a temporary file: a day of a
/// few hundred items (a 10-item day's file is ~50 KB). Past it, a file and its write buffer
/// ([`FILE_BUFFER`]): at 2 MB, the two files of a bulk day (one per collection) each held up
/// to 2 MB here and then 1 MB of buffer, ~4 MB of a day of 40,000's peak (heaptrack).
pub const IN_MEMORY_LIMIT: usize = 512 << 10;

/// The write buffer of a temporary file (parquet writes a column chunk's pages and headers
/// in many small writes).
const FILE_BUFFER: usize = 256 << 10;

/// A temporary file in `tmp_dir` (the system's temporary folder if `None`).
pub fn temp_file(tmp_dir: &Option<PathBuf>) -> std::io::Result<NamedTempFile> {
    match tmp_dir {
        Some(d) => NamedTempFile::new_in(d),
        None => NamedTempFile::new(),
    }
}

/// Written bytes: in memory until they pass a limit, then in a temporary file.
#[derive(Debug)]
pub struct Scratch {
    tmp_dir: Option<PathBuf>,
    limit: usize,
    at: Place,
}

#[derive(Debug)]
enum Place {
    Memory(Vec<u8>),
    File {
        out: BufWriter<NamedTempFile>,
        len: u64,
    },
}

impl Scratch {
    /// Scratch space whose bytes move to a temporary file in `tmp_dir` once they pass
    /// [`IN_MEMORY_LIMIT`].
    pub fn new(tmp_dir: Option<PathBuf>) -> Scratch {
        Scratch::with_limit(tmp_dir, IN_MEMORY_LIMIT)
    }

    /// Like [`new`](Scratch::new), moving to a file past `limit` bytes.
    pub fn with_limit(tmp_dir: Option<PathBuf>, limit: usize) -> Scratch {
        Scratch {
            tmp_dir,
            limit,
            at: Place::Memory(Vec::new()),
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        match &self.at {
            Place::Memory(buf) => buf.len() as u64,
            Place::File { len, .. } => *len,
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Everything written, for reading back or publishing.
    pub fn finish(self) -> std::io::Result<Scratched> {
        match self.at {
            Place::Memory(buf) => Ok(Scratched::Memory(Bytes::from(buf))),
            Place::File { out, .. } => Ok(Scratched::File(
                out.into_inner().map_err(|e| e.into_error())?,
            )),
        }
    }
}

impl Write for Scratch {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match &mut self.at {
            Place::Memory(buf) if buf.len() + data.len() <= self.limit => {
                buf.extend_from_slice(data);
            }
            Place::Memory(buf) => {
                let mut out = BufWriter::with_capacity(FILE_BUFFER, temp_file(&self.tmp_dir)?);
                out.write_all(buf)?;
                out.write_all(data)?;
                let len = (buf.len() + data.len()) as u64;
                self.at = Place::File { out, len };
            }
            Place::File { out, len } => {
                out.write_all(data)?;
                *len += data.len() as u64;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.at {
            Place::Memory(_) => Ok(()),
            Place::File { out, .. } => out.flush(),
        }
    }
}

/// The finished content of a [`Scratch`].
#[derive(Debug)]
pub enum Scratched {
    /// Small enough to have stayed in memory.
    Memory(Bytes),
    /// In a temporary file, deleted when this is dropped.
    File(NamedTempFile),
}

impl Scratched {
    /// A reader of byte ranges.
    pub fn ranges(&self) -> std::io::Result<Ranges> {
        match self {
            Scratched::Memory(bytes) => Ok(Ranges::Memory(bytes.clone())),
            Scratched::File(file) => Ok(Ranges::File(file.reopen()?)),
        }
    }

    /// All the bytes (read from the file if they are in one).
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        match self {
            Scratched::Memory(bytes) => Ok(bytes.clone()),
            Scratched::File(file) => std::fs::read(file.path()).map(Bytes::from),
        }
    }
}

/// Reads byte ranges of [`Scratched`] content, one seek and one read each for a file.
#[derive(Debug)]
pub enum Ranges {
    /// Content in memory.
    Memory(Bytes),
    /// Content in a file.
    File(std::fs::File),
}

impl Ranges {
    /// Reads `len` bytes at `offset` into `buf` (replacing its content).
    pub fn read(&mut self, offset: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        match self {
            Ranges::Memory(bytes) => {
                let start = usize::try_from(offset).map_err(std::io::Error::other)?;
                let range = bytes
                    .get(start..start.saturating_add(len))
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
                buf.extend_from_slice(range);
                Ok(())
            }
            Ranges::File(file) => {
                file.seek(SeekFrom::Start(offset))?;
                buf.resize(len, 0);
                file.read_exact(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_all(scratch: &mut Scratch, parts: &[&[u8]]) {
        for p in parts {
            scratch.write_all(p).unwrap();
        }
    }

    #[test]
    fn small_content_stays_in_memory_and_reads_back_by_range() {
        let mut s = Scratch::with_limit(None, 16);
        write_all(&mut s, &[b"hello ", b"world"]);
        assert_eq!(s.len(), 11);
        let done = s.finish().unwrap();
        assert!(matches!(done, Scratched::Memory(_)));
        let mut buf = Vec::new();
        done.ranges().unwrap().read(6, 5, &mut buf).unwrap();
        assert_eq!(buf, b"world");
        assert_eq!(&done.to_bytes().unwrap()[..], b"hello world");
    }

    #[test]
    fn content_past_the_limit_moves_to_a_file_with_nothing_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Scratch::with_limit(Some(dir.path().to_path_buf()), 8);
        write_all(&mut s, &[b"0123", b"4567", b"89ab", b"cdef"]);
        assert_eq!(s.len(), 16);
        let done = s.finish().unwrap();
        let Scratched::File(file) = &done else {
            panic!("past the limit, the content is in a file");
        };
        assert!(file.path().starts_with(dir.path()));
        let mut ranges = done.ranges().unwrap();
        let mut buf = Vec::new();
        ranges.read(6, 4, &mut buf).unwrap();
        assert_eq!(buf, b"6789");
        ranges.read(0, 2, &mut buf).unwrap();
        assert_eq!(buf, b"01");
        assert_eq!(&done.to_bytes().unwrap()[..], b"0123456789abcdef");
    }

    #[test]
    fn a_range_past_the_end_is_an_error_not_a_short_read() {
        let mut s = Scratch::with_limit(None, 64);
        write_all(&mut s, &[b"abc"]);
        let done = s.finish().unwrap();
        let mut buf = Vec::new();
        let err = done.ranges().unwrap().read(2, 5, &mut buf).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
