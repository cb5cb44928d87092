//! Output layout and atomic output files.
//!
//! A [`Layout`] is the output file as a list of chunks: literal bytes, ranges copied from a
//! template file, and placeholders for tensor payloads. [`AtomicOutput`] writes the skeleton to
//! a temporary file next to the destination, lets worker threads fill payloads at their offsets
//! (`pwrite`), and renames the file into place on [`AtomicOutput::commit`]. Dropping it without
//! committing deletes the temporary file, so an error never leaves a partial output behind.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::merge::error::{MergeError, Result};

/// One piece of an output file.
#[derive(Debug, Clone)]
pub enum Chunk {
    /// Literal bytes.
    Bytes(Vec<u8>),
    /// `len` bytes copied from the template at `offset`.
    Copy {
        /// Offset in the template.
        offset: usize,
        /// Length.
        len: usize,
    },
    /// Placeholder for payload `id` of `len` bytes.
    Payload {
        /// Payload id (tensor index in the plan).
        id: usize,
        /// Length in bytes.
        len: u64,
    },
}

/// An output file as a sequence of chunks.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The chunks in file order.
    pub chunks: Vec<Chunk>,
    /// Total length in bytes.
    pub len: u64,
}

impl Layout {
    /// Append literal bytes.
    pub fn push_bytes(&mut self, b: Vec<u8>) {
        self.len += b.len() as u64;
        self.chunks.push(Chunk::Bytes(b));
    }

    /// Append a template range.
    pub fn push_copy(&mut self, offset: usize, len: usize) {
        self.len += len as u64;
        if let Some(Chunk::Copy { offset: o, len: l }) = self.chunks.last_mut() {
            if *o + *l == offset {
                *l += len;
                return;
            }
        }
        self.chunks.push(Chunk::Copy { offset, len });
    }

    /// Append a payload placeholder.
    pub fn push_payload(&mut self, id: usize, len: u64) {
        self.len += len;
        self.chunks.push(Chunk::Payload { id, len });
    }

    /// Append another layout.
    pub fn extend(&mut self, other: Layout) {
        self.len += other.len;
        self.chunks.extend(other.chunks);
    }

    /// Absolute offset and length of every payload.
    pub fn payload_offsets(&self) -> HashMap<usize, (u64, u64)> {
        let mut pos = 0u64;
        let mut map = HashMap::new();
        for c in &self.chunks {
            match c {
                Chunk::Bytes(b) => pos += b.len() as u64,
                Chunk::Copy { len, .. } => pos += *len as u64,
                Chunk::Payload { id, len } => {
                    map.insert(*id, (pos, *len));
                    pos += len;
                }
            }
        }
        map
    }
}

/// An output file being written through a temporary file.
#[derive(Debug)]
pub struct AtomicOutput {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    offsets: HashMap<usize, (u64, u64)>,
    committed: bool,
}

fn out_err(path: &Path, e: std::io::Error) -> MergeError {
    MergeError::Output {
        path: path.to_path_buf(),
        source: e,
    }
}

impl AtomicOutput {
    /// Create the temporary file and write the skeleton (everything but the payloads).
    pub fn create(path: &Path, layout: &Layout, template: Option<&[u8]>) -> Result<AtomicOutput> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let fname = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "merged".into());
        let tmp = dir.join(format!(".{fname}.tmp-{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| out_err(path, e))?;
        let out = AtomicOutput {
            path: path.to_path_buf(),
            tmp,
            file: Some(file),
            offsets: layout.payload_offsets(),
            committed: false,
        };
        {
            let f = out.file.as_ref().unwrap();
            f.set_len(layout.len).map_err(|e| out_err(path, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            let mut pos = 0u64;
            for c in &layout.chunks {
                match c {
                    Chunk::Bytes(b) => {
                        w.write_all(b).map_err(|e| out_err(path, e))?;
                        pos += b.len() as u64;
                    }
                    Chunk::Copy { offset, len } => {
                        let t = template.expect("layout copies from a template");
                        w.write_all(&t[*offset..*offset + *len]).map_err(|e| out_err(path, e))?;
                        pos += *len as u64;
                    }
                    Chunk::Payload { len, .. } => {
                        pos += len;
                        w.seek(SeekFrom::Start(pos)).map_err(|e| out_err(path, e))?;
                    }
                }
            }
            w.flush().map_err(|e| out_err(path, e))?;
        }
        Ok(out)
    }

    /// Final destination.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the layout has a slot for payload `id`.
    pub fn has_payload(&self, id: usize) -> bool {
        self.offsets.contains_key(&id)
    }

    /// Write payload `id` (thread-safe: positional write).
    pub fn write_payload(&self, id: usize, bytes: &[u8]) -> Result<()> {
        let Some(&(off, len)) = self.offsets.get(&id) else {
            return Ok(());
        };
        if bytes.len() as u64 != len {
            return Err(out_err(
                &self.path,
                std::io::Error::other(format!("payload {id} is {} bytes, layout expects {len}", bytes.len())),
            ));
        }
        self.file
            .as_ref()
            .unwrap()
            .write_all_at(bytes, off)
            .map_err(|e| out_err(&self.path, e))
    }

    /// Flush to disk and atomically move the file into place.
    pub fn commit(mut self) -> Result<()> {
        let f = self.file.take().unwrap();
        f.sync_all().map_err(|e| out_err(&self.path, e))?;
        drop(f);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| out_err(&self.path, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if !self.committed {
            self.file.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
