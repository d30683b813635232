//! Just enough of the CFF (Type1C) font format to read a simple font's built-in encoding: the Top
//! DICT's charset and Encoding, giving a glyph name per code. Used for embedded FontFile3 fonts
//! that come with neither ToUnicode nor `/Encoding` (common in Ghostscript output).
//!
//! Every read is bounds-checked; malformed data yields `None`.

use super::tables::CFF_STANDARD_STRINGS;
use crate::num::f64_to_usize;

struct Index<'a> {
    /// Item byte ranges within `data`.
    items: Vec<(usize, usize)>,
    data: &'a [u8],
    /// Offset just past the INDEX.
    end: usize,
}

fn u8_at(d: &[u8], i: usize) -> Option<usize> {
    d.get(i).map(|b| *b as usize)
}

fn u16_at(d: &[u8], i: usize) -> Option<usize> {
    Some(u8_at(d, i)? << 8 | u8_at(d, i + 1)?)
}

fn offset_at(d: &[u8], i: usize, size: usize) -> Option<usize> {
    let mut v = 0usize;
    for k in 0..size {
        v = v << 8 | u8_at(d, i + k)?;
    }
    Some(v)
}

fn read_index(d: &[u8], at: usize) -> Option<Index<'_>> {
    let count = u16_at(d, at)?;
    if count == 0 {
        return Some(Index {
            items: Vec::new(),
            data: d,
            end: at + 2,
        });
    }
    let off_size = u8_at(d, at + 2)?;
    if !(1..=4).contains(&off_size) {
        return None;
    }
    let offs_at = at + 3;
    let data_base = offs_at + (count + 1) * off_size - 1;
    let mut items = Vec::with_capacity(count.min(70_000));
    let mut prev = offset_at(d, offs_at, off_size)?;
    for i in 1..=count {
        let o = offset_at(d, offs_at + i * off_size, off_size)?;
        if o < prev || data_base + o > d.len() {
            return None;
        }
        items.push((data_base + prev, data_base + o));
        prev = o;
    }
    Some(Index {
        items,
        data: d,
        end: data_base + prev,
    })
}

impl<'a> Index<'a> {
    fn get(&self, i: usize) -> Option<&'a [u8]> {
        let (a, b) = *self.items.get(i)?;
        self.data.get(a..b)
    }
}

/// Top DICT entries we need: operator → last operand (integers only).
fn parse_dict(d: &[u8]) -> Vec<(u16, f64)> {
    let mut out = Vec::new();
    let mut operands: Vec<f64> = Vec::new();
    let mut i = 0;
    while i < d.len() {
        let b0 = d[i];
        match b0 {
            0..=21 => {
                let op = if b0 == 12 {
                    i += 1;
                    1200 + d.get(i).copied().unwrap_or(0) as u16
                } else {
                    b0 as u16
                };
                out.push((op, operands.first().copied().unwrap_or(0.0)));
                operands.clear();
                i += 1;
            }
            28 => {
                let v = (d.get(i + 1).copied().unwrap_or(0) as i16) << 8
                    | d.get(i + 2).copied().unwrap_or(0) as i16;
                operands.push(v as f64);
                i += 3;
            }
            29 => {
                let mut v = 0i32;
                for k in 1..=4 {
                    v = v << 8 | d.get(i + k).copied().unwrap_or(0) as i32;
                }
                operands.push(v as f64);
                i += 5;
            }
            30 => {
                // Real number: skip nibbles up to the 0xf terminator (value unused here).
                i += 1;
                while i < d.len() {
                    let b = d[i];
                    i += 1;
                    if b & 0x0f == 0x0f || b >> 4 == 0x0f {
                        break;
                    }
                }
                operands.push(0.0);
            }
            32..=246 => {
                operands.push(b0 as f64 - 139.0);
                i += 1;
            }
            247..=250 => {
                let b1 = d.get(i + 1).copied().unwrap_or(0) as f64;
                operands.push((b0 as f64 - 247.0) * 256.0 + b1 + 108.0);
                i += 2;
            }
            251..=254 => {
                let b1 = d.get(i + 1).copied().unwrap_or(0) as f64;
                operands.push(-(b0 as f64 - 251.0) * 256.0 - b1 - 108.0);
                i += 2;
            }
            _ => i += 1,
        }
        if operands.len() > 48 {
            operands.clear();
        }
    }
    out
}

/// Glyph names per code from a CFF font's built-in encoding, or `None` when it uses the
/// standard encoding, is CID-keyed or cannot be read.
pub fn builtin_encoding(d: &[u8]) -> Option<Vec<Option<String>>> {
    let hdr_size = u8_at(d, 2)?;
    let names = read_index(d, hdr_size)?;
    let top = read_index(d, names.end)?;
    let strings = read_index(d, top.end)?;
    let dict = parse_dict(top.get(0)?);
    let get = |op: u16| dict.iter().rev().find(|(o, _)| *o == op).map(|(_, v)| *v);
    if get(1230).is_some() {
        return None; // ROS: CID-keyed
    }
    let enc_off = f64_to_usize(get(16).unwrap_or(0.0));
    if enc_off <= 1 {
        return None; // Standard or Expert encoding
    }
    let charset_off = f64_to_usize(get(15).unwrap_or(0.0));
    let cs_off = f64_to_usize(get(17)?);
    let n_glyphs = read_index(d, cs_off)?.items.len();
    let sid_name = |sid: usize| -> Option<String> {
        if sid < CFF_STANDARD_STRINGS.len() {
            Some(CFF_STANDARD_STRINGS[sid].to_string())
        } else {
            strings
                .get(sid - CFF_STANDARD_STRINGS.len())
                .map(|b| String::from_utf8_lossy(b).into_owned())
        }
    };
    // charset: GID → SID.
    let mut gid_sid = vec![0usize; n_glyphs.min(70_000)];
    if charset_off > 2 {
        let fmt = u8_at(d, charset_off)?;
        let mut at = charset_off + 1;
        let mut gid = 1;
        while gid < gid_sid.len() {
            match fmt {
                0 => {
                    gid_sid[gid] = u16_at(d, at)?;
                    at += 2;
                    gid += 1;
                }
                1 | 2 => {
                    let first = u16_at(d, at)?;
                    let n_left = if fmt == 1 {
                        u8_at(d, at + 2)?
                    } else {
                        u16_at(d, at + 2)?
                    };
                    at += if fmt == 1 { 3 } else { 4 };
                    for k in 0..=n_left {
                        if gid >= gid_sid.len() {
                            break;
                        }
                        gid_sid[gid] = first + k;
                        gid += 1;
                    }
                }
                _ => return None,
            }
        }
    } else {
        // ISOAdobe charset: SID = GID.
        for (g, s) in gid_sid.iter_mut().enumerate() {
            *s = g;
        }
    }
    let mut out: Vec<Option<String>> = vec![None; 256];
    let fmt = u8_at(d, enc_off)?;
    let mut at = enc_off + 1;
    match fmt & 0x7f {
        0 => {
            let n = u8_at(d, at)?;
            at += 1;
            for gid in 1..=n {
                let code = u8_at(d, at)?;
                at += 1;
                if let Some(&sid) = gid_sid.get(gid) {
                    out[code] = sid_name(sid);
                }
            }
        }
        1 => {
            let n = u8_at(d, at)?;
            at += 1;
            let mut gid = 1;
            for _ in 0..n {
                let first = u8_at(d, at)?;
                let n_left = u8_at(d, at + 1)?;
                at += 2;
                for k in 0..=n_left {
                    let code = first + k;
                    if code < 256
                        && let Some(&sid) = gid_sid.get(gid)
                    {
                        out[code] = sid_name(sid);
                    }
                    gid += 1;
                }
            }
        }
        _ => return None,
    }
    if fmt & 0x80 != 0 {
        let n = u8_at(d, at)?;
        at += 1;
        for _ in 0..n {
            let code = u8_at(d, at)?;
            let sid = u16_at(d, at + 1)?;
            at += 3;
            out[code] = sid_name(sid);
        }
    }
    Some(out)
}
