//! safetensors: header parsing and header writing.
//!
//! Layout: 8-byte little-endian header length `N`, `N` bytes of JSON
//! (`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {..}}`), then the data
//! block; offsets are relative to the data block.

use serde_json::{Map, Value};

use super::checkpoint::{Directory, Payload, TensorEntry};
use crate::merge::dtype::DType;

/// Parse the directory of a mapped safetensors file.
pub fn parse(buf: &[u8]) -> Result<Directory, String> {
    if buf.len() < 8 {
        return Err(format!(
            "truncated safetensors file: {} bytes, not even an 8-byte header length",
            buf.len()
        ));
    }
    let n = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
    if n > buf.len() - 8 {
        return Err(format!(
            "truncated safetensors file: header claims {n} bytes but only {} follow (re-export or re-copy the file)",
            buf.len() - 8
        ));
    }
    let header: Value =
        serde_json::from_slice(&buf[8..8 + n]).map_err(|e| format!("safetensors header is not valid JSON: {e}"))?;
    let obj = header.as_object().ok_or("safetensors header is not a JSON object")?;
    let data_start = 8 + n;
    let data_len = buf.len() - data_start;
    let mut tensors = Vec::new();
    let mut metadata = Vec::new();
    for (name, v) in obj {
        if name == "__metadata__" {
            if let Some(m) = v.as_object() {
                for (k, val) in m {
                    metadata.push((
                        k.clone(),
                        val.as_str().map(str::to_string).unwrap_or_else(|| val.to_string()),
                    ));
                }
            }
            continue;
        }
        let bad = |what: &str| format!("tensor `{name}`: {what} in the safetensors header");
        let dtype = DType::from_safetensors(
            v.get("dtype")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("missing dtype"))?,
        );
        let shape: Vec<usize> = v
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing shape"))?
            .iter()
            .map(|d| d.as_u64().map(|x| x as usize).ok_or_else(|| bad("bad shape")))
            .collect::<Result<_, _>>()?;
        let offs = v
            .get("data_offsets")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("missing data_offsets"))?;
        if offs.len() != 2 {
            return Err(bad("bad data_offsets"));
        }
        let b = offs[0].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize;
        let e = offs[1].as_u64().ok_or_else(|| bad("bad data_offsets"))? as usize;
        if e < b {
            return Err(bad("data_offsets end before begin"));
        }
        if e > data_len {
            return Err(format!(
                "truncated safetensors file: tensor `{name}` needs data up to byte {} but the file has {} (re-export or re-copy the file)",
                data_start + e,
                buf.len()
            ));
        }
        if let Some(sz) = dtype.size() {
            let need = shape.iter().product::<usize>() * sz;
            if need != e - b {
                return Err(bad(&format!(
                    "shape {shape:?} of {dtype} needs {need} bytes but data_offsets span {}",
                    e - b
                )));
            }
        }
        tensors.push(TensorEntry {
            name: name.clone(),
            dtype,
            shape,
            payload: Payload::Raw {
                offset: data_start + b,
                len: e - b,
            },
        });
    }
    tensors.sort_by_key(|t| match t.payload {
        Payload::Raw { offset, .. } => offset,
        _ => 0,
    });
    Ok((tensors, metadata))
}

/// Build a safetensors header (8-byte length + JSON, space-padded to a multiple of 8) for
/// tensors laid out contiguously in the given order. Returns the header bytes and each tensor's
/// offset relative to the start of the file.
pub fn build_header(
    tensors: &[(String, DType, Vec<usize>)],
    metadata: &[(String, String)],
) -> Result<(Vec<u8>, Vec<u64>), String> {
    let mut obj = Map::new();
    if !metadata.is_empty() {
        let mut m = Map::new();
        for (k, v) in metadata {
            m.insert(k.clone(), Value::String(v.clone()));
        }
        obj.insert("__metadata__".into(), Value::Object(m));
    }
    let mut rel = Vec::with_capacity(tensors.len());
    let mut off = 0u64;
    for (name, dt, shape) in tensors {
        let dname = dt
            .safetensors_name()
            .ok_or_else(|| format!("tensor `{name}` has dtype {dt}, which safetensors cannot store"))?;
        let len = shape.iter().product::<usize>() as u64 * dt.size().unwrap() as u64;
        let mut t = Map::new();
        t.insert("dtype".into(), Value::String(dname.into()));
        t.insert(
            "shape".into(),
            Value::Array(shape.iter().map(|d| Value::from(*d as u64)).collect()),
        );
        t.insert(
            "data_offsets".into(),
            Value::Array(vec![Value::from(off), Value::from(off + len)]),
        );
        obj.insert(name.clone(), Value::Object(t));
        rel.push(off);
        off += len;
    }
    let mut json = serde_json::to_vec(&Value::Object(obj)).map_err(|e| e.to_string())?;
    while (8 + json.len()) % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    let base = out.len() as u64;
    Ok((out, rel.into_iter().map(|r| r + base).collect()))
}
