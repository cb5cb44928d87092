//! A minimal protobuf wire-format walker: enough to find fields, copy them byte-for-byte and
//! emit new length-delimited fields. Nothing is decoded into lossy structs.

/// Protobuf wire types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// 0: varint.
    Varint,
    /// 1: 64-bit.
    I64,
    /// 2: length-delimited.
    Len,
    /// 5: 32-bit.
    I32,
}

/// One field occurrence inside a message buffer.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Field number.
    pub number: u32,
    /// Wire type.
    pub wire: WireType,
    /// Offset of the tag (start of the whole field), relative to the walked buffer.
    pub start: usize,
    /// Offset of the value (after tag, and after the length for `Len`).
    pub value_start: usize,
    /// End of the field (exclusive).
    pub end: usize,
    /// Varint value, or the length for `Len`.
    pub varint: u64,
}

/// Read a varint at `pos`; returns (value, new position).
pub fn read_varint(buf: &[u8], mut pos: usize) -> Result<(u64, usize), String> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(pos).ok_or("truncated varint")?;
        pos += 1;
        if shift >= 64 {
            return Err("varint too long".into());
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok((v, pos));
        }
        shift += 7;
    }
}

/// Append a varint.
pub fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Size of a varint in bytes.
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Append the tag of a length-delimited field and its length.
pub fn write_len_header(out: &mut Vec<u8>, number: u32, len: u64) {
    write_varint(out, ((number as u64) << 3) | 2);
    write_varint(out, len);
}

/// Walk every top-level field of a message buffer.
pub fn fields(buf: &[u8]) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let (tag, p) = read_varint(buf, pos)?;
        pos = p;
        let number = (tag >> 3) as u32;
        if number == 0 {
            return Err(format!("invalid field number 0 at byte {start}"));
        }
        let (wire, value_start, end, varint) = match tag & 7 {
            0 => {
                let (v, p) = read_varint(buf, pos)?;
                (WireType::Varint, pos, p, v)
            }
            1 => (WireType::I64, pos, pos + 8, 0),
            2 => {
                let (len, p) = read_varint(buf, pos)?;
                let end = p.checked_add(len as usize).ok_or("length overflow")?;
                (WireType::Len, p, end, len)
            }
            5 => (WireType::I32, pos, pos + 4, 0),
            w => return Err(format!("unsupported wire type {w} at byte {start}")),
        };
        if end > buf.len() {
            return Err(format!(
                "field {number} at byte {start} runs past the end of its message ({end} > {}); the file is truncated or not protobuf",
                buf.len()
            ));
        }
        out.push(Field {
            number,
            wire,
            start,
            value_start,
            end,
            varint,
        });
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            write_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            assert_eq!(read_varint(&b, 0).unwrap(), (v, b.len()));
        }
    }

    #[test]
    fn walks_fields_and_rejects_truncation() {
        let mut m = Vec::new();
        write_varint(&mut m, 1 << 3); // field 1, varint
        write_varint(&mut m, 8);
        write_len_header(&mut m, 7, 3);
        m.extend_from_slice(b"abc");
        let f = fields(&m).unwrap();
        assert_eq!((f[0].number, f[0].varint), (1, 8));
        assert_eq!((f[1].number, &m[f[1].value_start..f[1].end]), (7, &b"abc"[..]));
        assert!(fields(&m[..m.len() - 1]).unwrap_err().contains("truncated"));
    }
}
