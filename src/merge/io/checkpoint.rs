//! A memory-mapped checkpoint (safetensors file or ONNX model): tensor directory plus lazy,
//! per-tensor decoding. Reading a tensor touches only its own pages, and those pages are handed
//! back to the kernel right after decoding (`madvise(DONTNEED)`), so resident memory stays
//! bounded by the tensors being worked on, not by the checkpoint sizes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, UncheckedAdvice};

use super::proto::{read_varint, WireType};
use crate::merge::dtype::{decode_f32, DType};
use crate::merge::error::{MergeError, Result};

/// File format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// safetensors.
    Safetensors,
    /// ONNX model (initializers of the main graph).
    Onnx,
}

impl Format {
    /// Guess the format from the file extension.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref()
        {
            Some("safetensors") => Some(Format::Safetensors),
            Some("onnx") => Some(Format::Onnx),
            _ => None,
        }
    }
}

/// Where a tensor's payload lives in the mapped file.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Little-endian bytes `[offset, offset + len)` (safetensors data, ONNX `raw_data`).
    Raw {
        /// Absolute byte offset.
        offset: usize,
        /// Byte length.
        len: usize,
    },
    /// ONNX typed repeated field (`float_data`, `int32_data`, …): value byte ranges.
    Typed {
        /// TensorProto field number (4, 5, 6, 7, 10, 11).
        field: u32,
        /// `(start, end, wire type)` of each occurrence's value bytes (absolute).
        segments: Vec<(usize, usize, WireType)>,
    },
}

/// Value byte ranges `(start, end, wire type)` of a typed ONNX field.
pub type Segments = Vec<(usize, usize, WireType)>;

/// A parsed tensor directory plus the file's free-form metadata.
pub type Directory = (Vec<TensorEntry>, Vec<(String, String)>);

/// One tensor of a checkpoint.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Payload location.
    pub payload: Payload,
}

impl TensorEntry {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// An opened, memory-mapped checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Path it was opened from.
    pub path: PathBuf,
    /// Its format.
    pub format: Format,
    /// Tensors in file order.
    pub tensors: Vec<TensorEntry>,
    /// Free-form metadata (safetensors `__metadata__`, ONNX `metadata_props`).
    pub metadata: Vec<(String, String)>,
    index: HashMap<String, usize>,
    mmap: Mmap,
}

impl Checkpoint {
    /// Open and index a checkpoint (reads only headers / the protobuf skeleton).
    pub fn open(path: &Path) -> Result<Checkpoint> {
        let format = Format::from_path(path).ok_or_else(|| {
            MergeError::input(path, "unknown checkpoint format: expected a .safetensors or .onnx file")
        })?;
        let file = std::fs::File::open(path).map_err(|e| MergeError::input(path, format!("cannot open: {e}")))?;
        // SAFETY: the file is mapped read-only; we document that inputs must not be modified while
        // a merge runs (as every mmap-based loader does).
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| MergeError::input(path, format!("cannot map: {e}")))?;
        let (tensors, metadata) = match format {
            Format::Safetensors => super::safetensors::parse(&mmap).map_err(|m| MergeError::input(path, m))?,
            Format::Onnx => super::onnx::parse(&mmap).map_err(|m| MergeError::input(path, m))?,
        };
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(MergeError::input(path, format!("tensor `{}` appears twice", t.name)));
            }
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            format,
            tensors,
            metadata,
            index,
            mmap,
        })
    }

    /// Index of a tensor by name.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// The whole mapped file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    /// Give the pages of `[offset, offset+len)` back to the kernel (they stay in the page cache).
    fn release(&self, offset: usize, len: usize) {
        const PAGE: usize = 4096;
        let start = offset / PAGE * PAGE;
        let end = ((offset + len).div_ceil(PAGE) * PAGE).min(self.mmap.len());
        if end > start {
            // SAFETY: read-only private file mapping; dropped pages are re-read from the file on
            // the next access, so no data visible to us changes.
            let _ = unsafe {
                self.mmap
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// Map the pages of `[offset, offset+len)` in one call (`MADV_POPULATE_READ`, Linux ≥ 5.14)
    /// instead of taking one page fault per 4 KiB while decoding; ignored where unsupported.
    fn populate(&self, offset: usize, len: usize) {
        const PAGE: usize = 4096;
        let start = offset / PAGE * PAGE;
        let end = ((offset + len).div_ceil(PAGE) * PAGE).min(self.mmap.len());
        if end > start {
            let _ = self
                .mmap
                .advise_range(memmap2::Advice::PopulateRead, start, end - start);
        }
    }

    fn release_payload(&self, p: &Payload) {
        match p {
            Payload::Raw { offset, len } => self.release(*offset, *len),
            Payload::Typed { segments, .. } => {
                if let (Some(first), Some(last)) = (segments.first(), segments.last()) {
                    self.release(first.0, last.1 - first.0);
                }
            }
        }
    }

    /// Decode a float tensor to `f32`.
    pub fn read_f32(&self, idx: usize) -> Result<Vec<f32>> {
        let t = &self.tensors[idx];
        let out = match &t.payload {
            Payload::Raw { offset, len } => {
                self.populate(*offset, *len);
                decode_f32(t.dtype, &self.mmap[*offset..*offset + *len])
            }
            Payload::Typed { field, segments } => {
                let mut v = Vec::with_capacity(t.numel());
                match (field, t.dtype) {
                    (4, DType::F32) => {
                        for &(s, e, _) in segments {
                            v.extend(decode_f32(DType::F32, &self.mmap[s..e]));
                        }
                    }
                    (10, DType::F64) => {
                        for &(s, e, _) in segments {
                            v.extend(decode_f32(DType::F64, &self.mmap[s..e]));
                        }
                    }
                    (5, DType::F16) | (5, DType::BF16) => {
                        let ints = self.varints(segments).map_err(|m| MergeError::input(&self.path, m))?;
                        let bytes: Vec<u8> = ints.iter().flat_map(|x| (*x as u16).to_le_bytes()).collect();
                        v = decode_f32(t.dtype, &bytes);
                    }
                    _ => {
                        return Err(MergeError::input(
                            &self.path,
                            format!(
                                "tensor `{}`: unsupported ONNX encoding (field {field} for {})",
                                t.name, t.dtype
                            ),
                        ))
                    }
                }
                v
            }
        };
        self.release_payload(&t.payload);
        if out.len() != t.numel() {
            return Err(MergeError::input(
                &self.path,
                format!(
                    "tensor `{}` holds {} values but its shape {:?} needs {}",
                    t.name,
                    out.len(),
                    t.shape,
                    t.numel()
                ),
            ));
        }
        Ok(out)
    }

    fn varints(&self, segments: &[(usize, usize, WireType)]) -> std::result::Result<Vec<u64>, String> {
        let mut out = Vec::new();
        for &(s, e, w) in segments {
            if w == WireType::Varint {
                out.push(read_varint(&self.mmap, s)?.0);
            } else {
                let buf = &self.mmap[s..e];
                let mut p = 0;
                while p < buf.len() {
                    let (v, np) = read_varint(buf, p)?;
                    out.push(v);
                    p = np;
                }
            }
        }
        Ok(out)
    }

    /// Canonical little-endian bytes of a tensor (any dtype), used to compare non-float tensors
    /// across inputs and to write them out.
    pub fn canonical_bytes(&self, idx: usize) -> Result<Vec<u8>> {
        let t = &self.tensors[idx];
        let out = match &t.payload {
            Payload::Raw { offset, len } => {
                self.populate(*offset, *len);
                self.mmap[*offset..*offset + *len].to_vec()
            }
            Payload::Typed { field, segments } => match field {
                4 | 10 | 6 => segments
                    .iter()
                    .flat_map(|&(s, e, _)| self.mmap[s..e].iter().copied())
                    .collect(),
                5 | 7 | 11 => {
                    let ints = self.varints(segments).map_err(|m| MergeError::input(&self.path, m))?;
                    let size = t.dtype.size().unwrap_or(8);
                    ints.iter().flat_map(|x| x.to_le_bytes()[..size].to_vec()).collect()
                }
                _ => Vec::new(),
            },
        };
        self.release_payload(&t.payload);
        Ok(out)
    }
}
