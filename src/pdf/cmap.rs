//! CMap parsing: ToUnicode maps (bfchar, bfrange incl. the array form) and CID-keyed encoding
//! CMaps (cidchar, cidrange), with codespace ranges for splitting multi-byte strings into codes.
//!
//! Owns only the CMap text format and lookups; fonts decide which map applies to which code.

use std::collections::HashMap;

/// Upper bound on entries kept from one CMap, so a hostile map cannot exhaust memory.
const MAX_ENTRIES: usize = 200_000;

/// One codespace range: codes of `len` bytes whose bytes each lie within `lo[i]..=hi[i]`.
#[derive(Debug, Clone)]
pub struct Codespace {
    pub len: u8,
    lo: [u8; 4],
    hi: [u8; 4],
}

impl Codespace {
    fn matches(&self, bytes: &[u8]) -> bool {
        let n = self.len as usize;
        bytes.len() >= n && (0..n).all(|i| bytes[i] >= self.lo[i] && bytes[i] <= self.hi[i])
    }
}

#[derive(Debug, Clone)]
enum RangeDst {
    /// Destination string for `lo`; later codes increment its last UTF-16 unit.
    Incr(Vec<u16>),
    /// One destination per code.
    Array(Vec<String>),
    /// CID of `lo`; later codes increment it.
    Cid(u32),
}

#[derive(Debug, Clone)]
struct Range {
    len: u8,
    lo: u32,
    hi: u32,
    dst: RangeDst,
}

/// A parsed CMap: codespace ranges plus code → Unicode text and code → CID mappings.
#[derive(Debug, Clone, Default)]
pub struct CMap {
    pub codespaces: Vec<Codespace>,
    chars: HashMap<u64, String>,
    cids: HashMap<u64, u32>,
    ranges: Vec<Range>,
    /// Name given by `usecmap`, if any (resolved by the caller for predefined CMaps).
    pub usecmap: Option<String>,
    /// Vertical writing mode (`/WMode 1`).
    pub vertical: bool,
}

fn key(len: u8, code: u32) -> u64 {
    ((len as u64) << 32) | code as u64
}

/// A CID operand: negative ones are 0, ones past `u32::MAX` saturate (both invalid; the glyph
/// then maps to nothing rather than to a wrapped number).
fn cid_of(cid: i64) -> u32 {
    u32::try_from(cid.max(0)).unwrap_or(u32::MAX)
}

fn code_of(bytes: &[u8]) -> Option<(u8, u32)> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    let mut c = 0u32;
    for b in bytes {
        c = (c << 8) | *b as u32;
    }
    Some((u8::try_from(bytes.len()).ok()?, c))
}

/// Decode a ToUnicode destination (UTF-16BE; a lone byte is taken as a Latin-1 character).
pub fn utf16_to_string(bytes: &[u8]) -> String {
    if bytes.len() == 1 {
        return char::from(bytes[0]).to_string();
    }
    let units: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                c[0] as u16
            }
        })
        .collect();
    char::decode_utf16(units.iter().copied())
        .map(|r| r.unwrap_or('\u{FFFD}'))
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Hex(Vec<u8>),
    Str(Vec<u8>),
    Name(String),
    Num(i64),
    Open,
    Close,
    Kw(String),
}

fn tokenize(data: &[u8]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut i = 0;
    let n = data.len();
    while i < n {
        let c = data[i];
        match c {
            b'%' => {
                while i < n && data[i] != b'\n' && data[i] != b'\r' {
                    i += 1;
                }
            }
            b'<' if i + 1 < n && data[i + 1] == b'<' => i += 2,
            b'>' if i + 1 < n && data[i + 1] == b'>' => i += 2,
            b'<' => {
                i += 1;
                let mut digits = Vec::new();
                while i < n && data[i] != b'>' {
                    if data[i].is_ascii_hexdigit() {
                        digits.push(data[i]);
                    }
                    i += 1;
                }
                i += 1;
                if digits.len() % 2 == 1 {
                    digits.push(b'0');
                }
                let bytes = digits
                    .chunks(2)
                    .map(|p| {
                        let h = (p[0] as char).to_digit(16).unwrap_or(0);
                        let l = (p[1] as char).to_digit(16).unwrap_or(0);
                        u8::try_from(h * 16 + l).unwrap_or(0)
                    })
                    .collect();
                toks.push(Tok::Hex(bytes));
            }
            b'(' => {
                i += 1;
                let mut depth = 1;
                let mut s = Vec::new();
                while i < n {
                    let b = data[i];
                    if b == b'\\' && i + 1 < n {
                        i += 1;
                        let e = data[i];
                        match e {
                            b'n' => s.push(b'\n'),
                            b'r' => s.push(b'\r'),
                            b't' => s.push(b'\t'),
                            b'b' => s.push(8),
                            b'f' => s.push(12),
                            b'0'..=b'7' => {
                                let mut v = 0u32;
                                let mut k = 0;
                                while k < 3 && i < n && (b'0'..=b'7').contains(&data[i]) {
                                    v = v * 8 + (data[i] - b'0') as u32;
                                    i += 1;
                                    k += 1;
                                }
                                // A value past \377 keeps its low byte (PDF 7.3.4.2: high-order
                                // overflow is ignored).
                                s.push(v.to_le_bytes()[0]);
                                continue;
                            }
                            _ => s.push(e),
                        }
                    } else if b == b'(' {
                        depth += 1;
                        s.push(b);
                    } else if b == b')' {
                        depth -= 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                        s.push(b);
                    } else {
                        s.push(b);
                    }
                    i += 1;
                }
                toks.push(Tok::Str(s));
            }
            b'[' => {
                toks.push(Tok::Open);
                i += 1;
            }
            b']' => {
                toks.push(Tok::Close);
                i += 1;
            }
            b'/' => {
                i += 1;
                let st = i;
                while i < n && !is_delim(data[i]) {
                    i += 1;
                }
                toks.push(Tok::Name(
                    String::from_utf8_lossy(&data[st..i]).into_owned(),
                ));
            }
            _ if is_ws(c) => i += 1,
            b'{' | b'}' | b')' | b'>' => i += 1,
            _ => {
                let st = i;
                while i < n && !is_delim(data[i]) {
                    i += 1;
                }
                if i == st {
                    i += 1;
                    continue;
                }
                let word = &data[st..i];
                let s = String::from_utf8_lossy(word);
                match s.parse::<i64>() {
                    Ok(v) => toks.push(Tok::Num(v)),
                    Err(_) => toks.push(Tok::Kw(s.into_owned())),
                }
            }
        }
    }
    toks
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0 | 12)
}

fn is_delim(c: u8) -> bool {
    is_ws(c)
        || matches!(
            c,
            b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
        )
}

impl CMap {
    /// Parse CMap text. Never fails: unreadable parts are skipped.
    pub fn parse(data: &[u8]) -> CMap {
        let toks = tokenize(data);
        let mut cm = CMap::default();
        let mut entries = 0usize;
        let mut i = 0;
        let mut prev_name: Option<String> = None;
        while i < toks.len() {
            match &toks[i] {
                Tok::Name(n) => {
                    if n == "WMode"
                        && let Some(Tok::Num(v)) = toks.get(i + 1)
                    {
                        cm.vertical = *v == 1;
                    }
                    prev_name = Some(n.clone());
                    i += 1;
                }
                Tok::Kw(k) => {
                    let k = k.as_str();
                    i += 1;
                    match k {
                        "usecmap" => {
                            if let Some(n) = prev_name.take() {
                                cm.usecmap = Some(n);
                            }
                        }
                        "begincodespacerange" => {
                            while i + 1 < toks.len() {
                                match (&toks[i], &toks[i + 1]) {
                                    (Tok::Hex(lo), Tok::Hex(hi)) => {
                                        if lo.len() == hi.len() && !lo.is_empty() && lo.len() <= 4 {
                                            let mut l = [0u8; 4];
                                            let mut h = [0u8; 4];
                                            l[..lo.len()].copy_from_slice(lo);
                                            h[..hi.len()].copy_from_slice(hi);
                                            cm.codespaces.push(Codespace {
                                                len: u8::try_from(lo.len()).unwrap_or(4),
                                                lo: l,
                                                hi: h,
                                            });
                                        }
                                        i += 2;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        "beginbfchar" => {
                            while i + 1 < toks.len() && entries < MAX_ENTRIES {
                                let src = match &toks[i] {
                                    Tok::Hex(b) => b.clone(),
                                    _ => break,
                                };
                                let dst = match &toks[i + 1] {
                                    Tok::Hex(b) => utf16_to_string(b),
                                    Tok::Str(b) => utf16_to_string(b),
                                    Tok::Name(n) => crate::pdf::encoding::glyph_to_unicode(n)
                                        .unwrap_or_default(),
                                    _ => break,
                                };
                                if let Some((len, code)) = code_of(&src) {
                                    cm.chars.insert(key(len, code), dst);
                                    entries += 1;
                                }
                                i += 2;
                            }
                        }
                        "beginbfrange" => {
                            while i + 2 < toks.len() && entries < MAX_ENTRIES {
                                let (lo, hi) = match (&toks[i], &toks[i + 1]) {
                                    (Tok::Hex(a), Tok::Hex(b)) => (a.clone(), b.clone()),
                                    _ => break,
                                };
                                let (Some((len, lo)), Some((_, hi))) = (code_of(&lo), code_of(&hi))
                                else {
                                    break;
                                };
                                i += 2;
                                let dst = match &toks[i] {
                                    Tok::Hex(b) | Tok::Str(b) => {
                                        i += 1;
                                        let units: Vec<u16> = if b.len() == 1 {
                                            vec![b[0] as u16]
                                        } else {
                                            b.chunks(2)
                                                .map(|c| {
                                                    if c.len() == 2 {
                                                        u16::from_be_bytes([c[0], c[1]])
                                                    } else {
                                                        c[0] as u16
                                                    }
                                                })
                                                .collect()
                                        };
                                        RangeDst::Incr(units)
                                    }
                                    Tok::Open => {
                                        i += 1;
                                        let mut v = Vec::new();
                                        while i < toks.len() {
                                            match &toks[i] {
                                                Tok::Hex(b) | Tok::Str(b) => {
                                                    v.push(utf16_to_string(b))
                                                }
                                                Tok::Name(n) => v.push(
                                                    crate::pdf::encoding::glyph_to_unicode(n)
                                                        .unwrap_or_default(),
                                                ),
                                                Tok::Close => {
                                                    i += 1;
                                                    break;
                                                }
                                                _ => {}
                                            }
                                            i += 1;
                                        }
                                        RangeDst::Array(v)
                                    }
                                    _ => break,
                                };
                                if hi >= lo {
                                    cm.ranges.push(Range { len, lo, hi, dst });
                                    entries += 1;
                                }
                            }
                        }
                        "begincidchar" => {
                            while i + 1 < toks.len() && entries < MAX_ENTRIES {
                                match (&toks[i], &toks[i + 1]) {
                                    (Tok::Hex(src), Tok::Num(cid)) => {
                                        if let Some((len, code)) = code_of(src) {
                                            cm.cids.insert(key(len, code), cid_of(*cid));
                                            entries += 1;
                                        }
                                        i += 2;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        "begincidrange" => {
                            while i + 2 < toks.len() && entries < MAX_ENTRIES {
                                match (&toks[i], &toks[i + 1], &toks[i + 2]) {
                                    (Tok::Hex(a), Tok::Hex(b), Tok::Num(cid)) => {
                                        if let (Some((len, lo)), Some((_, hi))) =
                                            (code_of(a), code_of(b))
                                            && hi >= lo
                                        {
                                            cm.ranges.push(Range {
                                                len,
                                                lo,
                                                hi,
                                                dst: RangeDst::Cid(cid_of(*cid)),
                                            });
                                            entries += 1;
                                        }
                                        i += 3;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        _ => {}
                    }
                }
                _ => i += 1,
            }
        }
        cm.ranges.sort_by_key(|r| (r.len, r.lo));
        cm
    }

    /// Whether this map gives Unicode for anything.
    pub fn has_unicode(&self) -> bool {
        !self.chars.is_empty()
            || self
                .ranges
                .iter()
                .any(|r| !matches!(r.dst, RangeDst::Cid(_)))
    }

    fn find_range(&self, len: u8, code: u32) -> Option<&Range> {
        // Ranges are sorted by (len, lo); scan the candidates whose lo <= code.
        let end = self
            .ranges
            .partition_point(|r| (r.len, r.lo) <= (len, code));
        self.ranges[..end]
            .iter()
            .rev()
            .take_while(|r| r.len == len)
            .find(|r| code >= r.lo && code <= r.hi)
    }

    /// Unicode text for a code of `len` bytes.
    pub fn lookup_unicode(&self, len: u8, code: u32) -> Option<String> {
        if let Some(s) = self.chars.get(&key(len, code)) {
            return Some(s.clone());
        }
        let r = self.find_range(len, code)?;
        let off = code - r.lo;
        match &r.dst {
            RangeDst::Incr(units) => {
                let mut u = units.clone();
                let last = u.last_mut()?;
                // The offset goes into the last UTF-16 unit, wrapping there, as other readers do.
                let [o0, o1, _, _] = off.to_le_bytes();
                *last = last.wrapping_add(u16::from_le_bytes([o0, o1]));
                Some(
                    char::decode_utf16(u.iter().copied())
                        .map(|r| r.unwrap_or('\u{FFFD}'))
                        .collect(),
                )
            }
            RangeDst::Array(v) => v.get(off as usize).cloned(),
            RangeDst::Cid(_) => None,
        }
    }

    /// CID for a code of `len` bytes, from cidchar/cidrange.
    pub fn lookup_cid(&self, len: u8, code: u32) -> Option<u32> {
        if let Some(c) = self.cids.get(&key(len, code)) {
            return Some(*c);
        }
        let r = self.find_range(len, code)?;
        match r.dst {
            RangeDst::Cid(c) => Some(c.wrapping_add(code - r.lo)),
            _ => None,
        }
    }

    /// Split the next code off `bytes` using the codespace ranges: (byte length, code).
    /// Falls back to `default_len` bytes when no range matches.
    pub fn next_code(&self, bytes: &[u8], default_len: usize) -> (usize, u32) {
        for n in 1..=4usize {
            if self
                .codespaces
                .iter()
                .any(|c| c.len as usize == n && c.matches(bytes))
            {
                return (n, code_of(&bytes[..n]).map(|c| c.1).unwrap_or(0));
            }
        }
        // No full match: use the shortest codespace length that fits (or the default).
        let n = self
            .codespaces
            .iter()
            .map(|c| c.len as usize)
            .min()
            .unwrap_or(default_len)
            .clamp(1, 4)
            .min(bytes.len());
        (n, code_of(&bytes[..n]).map(|c| c.1).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bfchar_bfrange_and_arrays() {
        let src = b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap
            1 begincodespacerange <0000> <FFFF> endcodespacerange
            2 beginbfchar <0003> <0020> <0011> <00660069> endbfchar
            2 beginbfrange <0024> <0026> <0041> <0030> <0031> [<0078> <D835DC00>] endbfrange
            endcmap";
        let cm = CMap::parse(src);
        assert_eq!(cm.lookup_unicode(2, 3).as_deref(), Some(" "));
        assert_eq!(cm.lookup_unicode(2, 0x11).as_deref(), Some("fi"));
        assert_eq!(cm.lookup_unicode(2, 0x25).as_deref(), Some("B"));
        assert_eq!(cm.lookup_unicode(2, 0x26).as_deref(), Some("C"));
        assert_eq!(cm.lookup_unicode(2, 0x27), None);
        assert_eq!(cm.lookup_unicode(2, 0x30).as_deref(), Some("x"));
        assert_eq!(cm.lookup_unicode(2, 0x31).as_deref(), Some("\u{1D400}"));
        assert_eq!(cm.next_code(&[0, 0x24, 1], 1), (2, 0x24));
    }

    #[test]
    fn mixed_codespaces() {
        let src = b"begincodespacerange <00> <80> <8140> <9FFC> endcodespacerange
            1 begincidrange <8140> <817e> 633 endcidrange";
        let cm = CMap::parse(src);
        assert_eq!(cm.next_code(b"A\x81\x41", 1), (1, 0x41));
        assert_eq!(cm.next_code(b"\x81\x41", 1), (2, 0x8141));
        assert_eq!(cm.lookup_cid(2, 0x8141), Some(634));
    }
}
