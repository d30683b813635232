//! Simple-font encodings: the base encodings (WinAnsi, MacRoman, Standard, PDFDoc, Symbol,
//! ZapfDingbats) and glyph names to Unicode (Adobe Glyph List, `uniXXXX`, `uXXXX[XX]`, ligature
//! names like `f_f_i`, suffixes like `a.sc`, and numeric names like `g65`).
//!
//! Owns only name/code → Unicode data; fonts combine it with `/Differences` and ToUnicode.

use super::tables;

/// A simple font's base encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseEncoding {
    Standard,
    WinAnsi,
    MacRoman,
    PdfDoc,
    Symbol,
    ZapfDingbats,
}

impl BaseEncoding {
    pub fn from_name(name: &[u8]) -> Option<BaseEncoding> {
        match name {
            b"WinAnsiEncoding" => Some(BaseEncoding::WinAnsi),
            b"MacRomanEncoding" | b"MacExpertEncoding" => Some(BaseEncoding::MacRoman),
            b"StandardEncoding" => Some(BaseEncoding::Standard),
            b"PDFDocEncoding" => Some(BaseEncoding::PdfDoc),
            b"SymbolEncoding" => Some(BaseEncoding::Symbol),
            b"ZapfDingbatsEncoding" => Some(BaseEncoding::ZapfDingbats),
            _ => None,
        }
    }

    fn table(self) -> &'static [u16; 256] {
        match self {
            BaseEncoding::Standard => &tables::STANDARD,
            BaseEncoding::WinAnsi => &tables::WIN_ANSI,
            BaseEncoding::MacRoman => &tables::MAC_ROMAN,
            BaseEncoding::PdfDoc => &tables::PDF_DOC,
            BaseEncoding::Symbol => &tables::SYMBOL,
            BaseEncoding::ZapfDingbats => &tables::ZAPF_DINGBATS,
        }
    }

    /// The character for `code`, if the encoding defines one.
    pub fn char_for(self, code: u8) -> Option<char> {
        let v = self.table()[code as usize];
        if v == 0 {
            None
        } else {
            char::from_u32(v as u32)
        }
    }
}

/// Adobe Glyph List lookup only.
pub fn agl(name: &str) -> Option<&'static str> {
    tables::AGL
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| tables::AGL[i].1)
}

fn hex_scalar(s: &str) -> Option<char> {
    u32::from_str_radix(s, 16).ok().and_then(char::from_u32)
}

/// Unicode text for a glyph name, following the AGL specification's rules (components joined by
/// `_`, anything after the first `.` ignored, `uniXXXX...` and `uXXXX[XX]` forms), or `None`.
pub fn glyph_to_unicode(name: &str) -> Option<String> {
    if let Some(s) = agl(name) {
        return Some(s.to_string());
    }
    let base = name.split('.').next().unwrap_or(name);
    if base.is_empty() {
        return None;
    }
    if base != name
        && let Some(s) = agl(base)
    {
        return Some(s.to_string());
    }
    if base.contains('_') {
        let mut out = String::new();
        for part in base.split('_') {
            out.push_str(&component(part)?);
        }
        return Some(out);
    }
    component(base)
}

fn component(part: &str) -> Option<String> {
    if let Some(s) = agl(part) {
        return Some(s.to_string());
    }
    if let Some(hex) = part.strip_prefix("uni")
        && hex.len() >= 4
        && hex.len() % 4 == 0
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        let mut out = String::new();
        for i in (0..hex.len()).step_by(4) {
            let v = u32::from_str_radix(&hex[i..i + 4], 16).ok()?;
            if (0xD800..0xE000).contains(&v) {
                return None;
            }
            out.push(char::from_u32(v)?);
        }
        return Some(out);
    }
    if let Some(hex) = part.strip_prefix('u')
        && (4..=6).contains(&hex.len())
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return hex_scalar(hex).map(|c| c.to_string());
    }
    None
}

/// Numeric glyph names some producers use for unnamed glyphs (`g65`, `c65`, `G41`, `cid65`...):
/// the number they carry, taken as a character code. Only used when nothing else maps the code.
pub fn numeric_name_code(name: &str) -> Option<u32> {
    let digits_at = name.find(|c: char| c.is_ascii_digit())?;
    let (prefix, num) = name.split_at(digits_at);
    if prefix.len() > 3 || !prefix.chars().all(|c| c.is_ascii_alphabetic()) || num.len() < 2 {
        return None;
    }
    if num.bytes().all(|b| b.is_ascii_digit()) {
        return num.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(glyph_to_unicode("A").as_deref(), Some("A"));
        assert_eq!(glyph_to_unicode("fi").as_deref(), Some("\u{FB01}"));
        assert_eq!(glyph_to_unicode("f_f_i").as_deref(), Some("ffi"));
        assert_eq!(glyph_to_unicode("a.sc").as_deref(), Some("a"));
        assert_eq!(glyph_to_unicode("uni00410042").as_deref(), Some("AB"));
        assert_eq!(glyph_to_unicode("u1D400").as_deref(), Some("\u{1D400}"));
        assert_eq!(glyph_to_unicode("afii10017").as_deref(), Some("\u{0410}"));
        assert_eq!(glyph_to_unicode("nonsense_glyph"), None);
        assert_eq!(numeric_name_code("g65"), Some(65));
        assert_eq!(BaseEncoding::WinAnsi.char_for(0x93), Some('\u{201C}'));
        assert_eq!(BaseEncoding::Standard.char_for(0x27), Some('\u{2019}'));
        assert_eq!(BaseEncoding::Symbol.char_for(0x61), Some('\u{03B1}'));
    }
}
