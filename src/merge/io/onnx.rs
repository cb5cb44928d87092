//! ONNX: read initializers of the main graph; write the template graph back with merged
//! initializer payloads and updated `metadata_props`, leaving every other byte untouched.
//!
//! Field numbers used (onnx.proto): `ModelProto.graph = 7`, `ModelProto.metadata_props = 14`;
//! `GraphProto.initializer = 5`; `TensorProto.dims = 1`, `data_type = 2`, `segment = 3`,
//! `float_data = 4`, `int32_data = 5`, `string_data = 6`, `int64_data = 7`, `name = 8`,
//! `raw_data = 9`, `double_data = 10`, `uint64_data = 11`, `external_data = 13`,
//! `data_location = 14`; `StringStringEntryProto.key = 1`, `value = 2`.

use std::collections::HashMap;

use super::checkpoint::{Directory, Payload, Segments, TensorEntry};
use super::layout::Layout;
use super::proto::{fields, read_varint, write_len_header, Field, WireType};
use crate::merge::dtype::DType;

const PAYLOAD_FIELDS: [u32; 7] = [4, 5, 6, 7, 9, 10, 11];

fn graph_field(buf: &[u8]) -> Result<Field, String> {
    let top = fields(buf).map_err(|e| format!("not a valid ONNX model (or truncated): {e}"))?;
    top.into_iter()
        .find(|f| f.number == 7 && f.wire == WireType::Len)
        .ok_or_else(|| "not a valid ONNX model: no graph (ModelProto field 7)".to_string())
}

fn str_of(buf: &[u8], f: &Field) -> String {
    String::from_utf8_lossy(&buf[f.value_start..f.end]).into_owned()
}

/// Parse one TensorProto located at `[base, base + msg.len())` of the file.
fn parse_tensor(file: &[u8], base: usize, msg: &[u8]) -> Result<TensorEntry, String> {
    let mut name = String::new();
    let mut dims: Vec<usize> = Vec::new();
    let mut dtype_code = 0u64;
    let mut raw: Option<(usize, usize)> = None;
    let mut typed: Option<(u32, Segments)> = None;
    let mut external = false;
    for f in fields(msg)? {
        match f.number {
            1 => match f.wire {
                WireType::Varint => dims.push(f.varint as usize),
                WireType::Len => {
                    let mut p = f.value_start;
                    while p < f.end {
                        let (v, np) = read_varint(msg, p)?;
                        dims.push(v as usize);
                        p = np;
                    }
                }
                _ => return Err("bad dims encoding".into()),
            },
            2 => dtype_code = f.varint,
            3 => return Err("segmented initializers are not supported".into()),
            8 => name = str_of(msg, &f),
            9 => raw = Some((base + f.value_start, f.end - f.value_start)),
            13 => external = true,
            14 => external |= f.varint == 1,
            n if PAYLOAD_FIELDS.contains(&n) => {
                let seg = (base + f.value_start, base + f.end, f.wire);
                match &mut typed {
                    Some((num, segs)) if *num == n => segs.push(seg),
                    Some(_) => return Err("initializer mixes several data fields".into()),
                    None => typed = Some((n, vec![seg])),
                }
            }
            _ => {}
        }
    }
    let _ = file;
    if external {
        return Err(format!(
            "initializer `{name}` uses external data, which is not supported: save the model with all weights inside the .onnx file (onnx.save_model(m, path, save_as_external_data=False))"
        ));
    }
    let payload = match (raw, typed) {
        (Some((offset, len)), _) => Payload::Raw { offset, len },
        (None, Some((field, segments))) => Payload::Typed { field, segments },
        (None, None) => Payload::Raw { offset: base, len: 0 },
    };
    let dtype = DType::from_onnx(dtype_code);
    let t = TensorEntry {
        name,
        dtype,
        shape: dims,
        payload,
    };
    if let (Payload::Raw { len, .. }, Some(sz)) = (&t.payload, dtype.size()) {
        if *len != t.numel() * sz {
            return Err(format!(
                "initializer `{}`: raw_data holds {len} bytes but shape {:?} of {dtype} needs {}",
                t.name,
                t.shape,
                t.numel() * sz
            ));
        }
    }
    Ok(t)
}

/// Parse the initializers of the main graph and the model's `metadata_props`.
pub fn parse(buf: &[u8]) -> Result<Directory, String> {
    let g = graph_field(buf)?;
    let graph = &buf[g.value_start..g.end];
    let mut tensors = Vec::new();
    for f in fields(graph).map_err(|e| format!("corrupt ONNX graph: {e}"))? {
        if f.number == 5 && f.wire == WireType::Len {
            let msg = &graph[f.value_start..f.end];
            let t = parse_tensor(buf, g.value_start + f.value_start, msg)
                .map_err(|e| format!("corrupt initializer: {e}"))?;
            tensors.push(t);
        }
    }
    if tensors.is_empty() {
        return Err("the ONNX graph has no initializers, so there are no weights to merge: export the model with its weights as initializers (the torch.onnx.export default), not as graph inputs or Constant nodes".into());
    }
    let mut metadata = Vec::new();
    for f in fields(buf)? {
        if f.number == 14 && f.wire == WireType::Len {
            let (mut k, mut v) = (String::new(), String::new());
            let msg = &buf[f.value_start..f.end];
            for e in fields(msg)? {
                match e.number {
                    1 => k = str_of(msg, &e),
                    2 => v = str_of(msg, &e),
                    _ => {}
                }
            }
            metadata.push((k, v));
        }
    }
    Ok((tensors, metadata))
}

/// Lay out the template model with the initializers named in `replace` rewritten as
/// `raw_data` payloads (`name → (payload id, byte length)`), the metadata entries whose keys
/// appear in `metadata` replaced, and the new entries appended. Returns the layout; its
/// `Copy` chunks refer to `template`.
pub fn template_layout(
    template: &[u8],
    replace: &HashMap<String, (usize, u64)>,
    metadata: &[(String, String)],
) -> Result<Layout, String> {
    let mut out = Layout::default();
    let top = fields(template).map_err(|e| format!("not a valid ONNX model: {e}"))?;
    for f in &top {
        if f.number == 7 && f.wire == WireType::Len {
            let graph = graph_layout(template, f, replace)?;
            let mut hdr = Vec::new();
            write_len_header(&mut hdr, 7, graph.len);
            out.push_bytes(hdr);
            out.extend(graph);
        } else if f.number == 14 && f.wire == WireType::Len {
            let msg = &template[f.value_start..f.end];
            let key = fields(msg)?
                .into_iter()
                .find(|e| e.number == 1)
                .map(|e| str_of(msg, &e));
            if key.is_some_and(|k| metadata.iter().any(|(mk, _)| *mk == k)) {
                continue;
            }
            out.push_copy(f.start, f.end - f.start);
        } else {
            out.push_copy(f.start, f.end - f.start);
        }
    }
    for (k, v) in metadata {
        let mut entry = Vec::new();
        write_len_header(&mut entry, 1, k.len() as u64);
        entry.extend_from_slice(k.as_bytes());
        write_len_header(&mut entry, 2, v.len() as u64);
        entry.extend_from_slice(v.as_bytes());
        let mut hdr = Vec::new();
        write_len_header(&mut hdr, 14, entry.len() as u64);
        hdr.extend_from_slice(&entry);
        out.push_bytes(hdr);
    }
    Ok(out)
}

fn graph_layout(buf: &[u8], g: &Field, replace: &HashMap<String, (usize, u64)>) -> Result<Layout, String> {
    let graph = &buf[g.value_start..g.end];
    let mut out = Layout::default();
    for f in fields(graph)? {
        let abs_start = g.value_start + f.start;
        if f.number == 5 && f.wire == WireType::Len {
            let msg = &graph[f.value_start..f.end];
            let tf = fields(msg)?;
            let name = tf
                .iter()
                .find(|e| e.number == 8)
                .map(|e| str_of(msg, e))
                .unwrap_or_default();
            if let Some(&(id, len)) = replace.get(&name) {
                let base = g.value_start + f.value_start;
                let mut t = Layout::default();
                let mut emitted = false;
                for e in &tf {
                    if PAYLOAD_FIELDS.contains(&e.number) {
                        if !emitted {
                            let mut hdr = Vec::new();
                            write_len_header(&mut hdr, 9, len);
                            t.push_bytes(hdr);
                            t.push_payload(id, len);
                            emitted = true;
                        }
                    } else {
                        t.push_copy(base + e.start, e.end - e.start);
                    }
                }
                if !emitted {
                    let mut hdr = Vec::new();
                    write_len_header(&mut hdr, 9, len);
                    t.push_bytes(hdr);
                    t.push_payload(id, len);
                }
                let mut hdr = Vec::new();
                write_len_header(&mut hdr, 5, t.len);
                out.push_bytes(hdr);
                out.extend(t);
                continue;
            }
        }
        out.push_copy(abs_start, f.end - f.start);
    }
    Ok(out)
}
