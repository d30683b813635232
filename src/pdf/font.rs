//! Fonts as the text extractor sees them: how a shown string splits into codes, the Unicode text
//! of each code (ToUnicode first, then `/Encoding` + `/Differences`, the font program's built-in
//! encoding, predefined CJK CMaps, the TrueType `cmap` table) and each code's advance width.
//!
//! Owns simple (Type1/TrueType/MMType1), Type3 and Type0 (CID) fonts; knows nothing of layout.

use std::collections::HashMap;

use lopdf::{Dictionary, Document, Object};

use super::cmap::{CMap, utf16_to_string};
use super::encoding::{BaseEncoding, glyph_to_unicode, numeric_name_code};
use super::tables;
use super::util::{Budget, deref, dict_of, name_of, num_of, stream_bytes};
use crate::num::{f32_to_i64, f32_to_u32};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Simple,
    Type3,
    Composite,
}

/// How a Type0 font's codes are split and, lacking ToUnicode, turned into text.
#[derive(Debug, Clone)]
enum CodeMap {
    /// Two-byte codes, CID = code (Identity-H/V).
    Identity,
    /// Codes are UTF-16BE (Uni*-UCS2-*, Uni*-UTF16-*).
    Utf16,
    /// Codes are bytes of a legacy multi-byte charset (Shift-JIS, EUC, GBK, Big5).
    Legacy(&'static encoding_rs::Encoding),
    /// ISO-2022-JP style two-byte JIS X 0208 codes (the `H`/`V` CMaps): EUC-JP minus 0x80.
    Jis,
    /// An embedded CMap stream.
    Embedded(Box<CMap>),
}

/// One decoded code of a shown string.
pub struct Glyph<'a> {
    /// Unicode text (may be empty when the font gives no way to know it).
    pub text: &'a str,
    /// Advance in text space units for a font size of 1 (before Tc/Tw/Tz).
    pub width: f32,
    /// Single-byte code 32: word spacing (Tw) applies.
    pub is_space_code: bool,
}

/// A font prepared for decoding strings.
#[derive(Debug)]
pub struct Font {
    kind: Kind,
    /// Simple and Type3 fonts: text per code.
    simple: Vec<String>,
    /// Simple and Type3 fonts: width per code (text space, size 1).
    widths: Vec<f32>,
    default_width: f32,
    to_unicode: Option<CMap>,
    code_map: CodeMap,
    /// Composite fonts: (first CID, last CID, width), sorted.
    cid_widths: Vec<(u32, u32, f32)>,
    /// Composite fonts: CID (= glyph id for Identity CIDToGIDMap) → text from the TrueType cmap.
    gid_text: HashMap<u32, String>,
    /// Composite fonts: CID → Unicode of the font's Adobe character collection, if known.
    collection: Option<&'static [u8]>,
    pub vertical: bool,
    /// Em size per unit font size (1 except for Type3 fonts, whose glyph space is their own).
    pub size_scale: f32,
}

impl Font {
    /// A font to use when a `Tf` names nothing usable: Latin-1-ish text, 0.5 em widths.
    pub fn fallback() -> Font {
        let simple = (0..=u8::MAX)
            .map(|c| {
                BaseEncoding::WinAnsi
                    .char_for(c)
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            })
            .collect();
        Font {
            kind: Kind::Simple,
            simple,
            widths: vec![0.5; 256],
            default_width: 0.5,
            to_unicode: None,
            code_map: CodeMap::Identity,
            cid_widths: Vec::new(),
            gid_text: HashMap::new(),
            collection: None,
            vertical: false,
            size_scale: 1.0,
        }
    }

    /// Build a font from its dictionary. Never fails: missing parts fall back to defaults.
    pub fn load(doc: &Document, dict: &Dictionary, budget: &mut Budget) -> Font {
        let subtype = dict
            .get(b"Subtype")
            .ok()
            .and_then(|o| name_of(doc, o))
            .unwrap_or(b"Type1");
        let to_unicode = dict
            .get(b"ToUnicode")
            .ok()
            .and_then(|o| stream_bytes(doc, o, budget))
            .map(|d| CMap::parse(&d))
            .filter(|c| c.has_unicode());
        if subtype == b"Type0" {
            Self::load_composite(doc, dict, to_unicode, budget)
        } else {
            Self::load_simple(doc, dict, subtype == b"Type3", to_unicode, budget)
        }
    }

    /// A simple font (Type1, TrueType, MMType1) or, with `type3`, a Type3 font: one-byte codes,
    /// each with its text (see `SimpleEncoding`) and its advance width (see `simple_widths`).
    fn load_simple(
        doc: &Document,
        dict: &Dictionary,
        type3: bool,
        to_unicode: Option<CMap>,
        budget: &mut Budget,
    ) -> Font {
        let base_name = base_font_name(doc, dict);
        let descriptor = dict
            .get(b"FontDescriptor")
            .ok()
            .and_then(|o| dict_of(doc, o));
        let encoding = SimpleEncoding::read(doc, dict, descriptor, &base_name, type3, budget);
        let simple = encoding.code_texts(type3);
        let scale = if type3 { type3_scale(doc, dict) } else { 0.001 };
        let missing = descriptor
            .and_then(|d| d.get(b"MissingWidth").ok())
            .and_then(|o| num_of(doc, o))
            .unwrap_or(0.0)
            * scale;
        let widths = simple_widths(doc, dict, &base_name, &simple, scale, missing);
        let avg_width = average_width(&widths);
        // Type3 glyph space is arbitrary: take twice the average advance as the em.
        let size_scale = if type3 {
            (avg_width * 2.0).clamp(0.05, 20.0)
        } else {
            1.0
        };
        Font {
            kind: if type3 { Kind::Type3 } else { Kind::Simple },
            simple,
            widths,
            default_width: if missing > 0.0 { missing } else { avg_width },
            to_unicode,
            code_map: CodeMap::Identity,
            cid_widths: Vec::new(),
            gid_text: HashMap::new(),
            collection: None,
            vertical: false,
            size_scale,
        }
    }

    fn load_composite(
        doc: &Document,
        dict: &Dictionary,
        to_unicode: Option<CMap>,
        budget: &mut Budget,
    ) -> Font {
        let mut vertical = false;
        let enc_obj = dict.get(b"Encoding").ok();
        let code_map = match enc_obj.map(|o| deref(doc, o)) {
            Some(Object::Name(n)) => {
                let name = String::from_utf8_lossy(n);
                vertical = name.ends_with("-V") || name == "V";
                predefined_cmap(&name)
            }
            Some(Object::Stream(_)) => {
                let data = enc_obj
                    .and_then(|o| stream_bytes(doc, o, budget))
                    .unwrap_or_default();
                let cm = CMap::parse(&data);
                vertical = cm.vertical;
                match cm.usecmap.as_deref() {
                    Some(u) if cm.codespaces.is_empty() => predefined_cmap(u),
                    _ => CodeMap::Embedded(Box::new(cm)),
                }
            }
            _ => CodeMap::Identity,
        };
        let descendant = dict
            .get(b"DescendantFonts")
            .ok()
            .and_then(|o| match deref(doc, o) {
                Object::Array(a) => a.first().and_then(|f| dict_of(doc, f)),
                Object::Dictionary(d) => Some(d),
                _ => None,
            });
        let mut cid_widths = Vec::new();
        let mut dw = 1.0f32;
        let mut gid_text = HashMap::new();
        let mut collection = None;
        if let Some(d) = descendant {
            let ordering = d
                .get(b"CIDSystemInfo")
                .ok()
                .and_then(|o| dict_of(doc, o))
                .and_then(|i| i.get(b"Ordering").ok())
                .map(|o| deref(doc, o));
            if let Some(Object::String(o, _)) = ordering {
                collection = collection_table(o);
            }
            if let Some(v) = d.get(b"DW").ok().and_then(|o| num_of(doc, o)) {
                dw = v / 1000.0;
            }
            if let Some(Object::Array(w)) = d.get(b"W").ok().map(|o| deref(doc, o)) {
                let mut i = 0;
                while i < w.len() && cid_widths.len() < 100_000 {
                    let Some(first) = num_of(doc, &w[i]) else {
                        break;
                    };
                    let first = f32_to_u32(first);
                    match w.get(i + 1).map(|o| deref(doc, o)) {
                        Some(Object::Array(list)) => {
                            for (k, v) in list.iter().enumerate() {
                                if let Some(v) = num_of(doc, v) {
                                    let c =
                                        first.saturating_add(u32::try_from(k).unwrap_or(u32::MAX));
                                    cid_widths.push((c, c, v / 1000.0));
                                }
                            }
                            i += 2;
                        }
                        Some(o) => {
                            let last = f32_to_u32(num_of(doc, o).unwrap_or(first as f32));
                            let v = w
                                .get(i + 2)
                                .and_then(|x| num_of(doc, x))
                                .unwrap_or(dw * 1000.0);
                            if last >= first {
                                cid_widths.push((first, last, v / 1000.0));
                            }
                            i += 3;
                        }
                        None => break,
                    }
                }
            }
            let needs_program = to_unicode.is_none()
                && collection.is_none()
                && matches!(code_map, CodeMap::Identity | CodeMap::Embedded(_))
                && d.get(b"Subtype").ok().and_then(|o| name_of(doc, o)) == Some(b"CIDFontType2");
            if needs_program {
                let identity_gid = matches!(
                    d.get(b"CIDToGIDMap").ok().map(|o| deref(doc, o)),
                    None | Some(Object::Name(_))
                );
                if identity_gid
                    && let Some(ff) = d
                        .get(b"FontDescriptor")
                        .ok()
                        .and_then(|o| dict_of(doc, o))
                        .and_then(|fd| fd.get(b"FontFile2").ok())
                    && let Some(data) = stream_bytes(doc, ff, budget)
                {
                    gid_text = truetype_gid_to_unicode(&data);
                }
            }
        }
        cid_widths.sort_by_key(|w| w.0);
        let _avg_width = if cid_widths.is_empty() {
            dw
        } else {
            (cid_widths
                .iter()
                .map(|w| w.2)
                .filter(|w| *w > 0.0)
                .sum::<f32>()
                / cid_widths.len() as f32)
                .clamp(0.05, 2.0)
        };
        Font {
            kind: Kind::Composite,
            simple: Vec::new(),
            widths: Vec::new(),
            default_width: dw,
            to_unicode,
            code_map,
            cid_widths,
            gid_text,
            collection,
            vertical,
            size_scale: 1.0,
        }
    }

    fn cid_width(&self, cid: u32) -> f32 {
        let i = self.cid_widths.partition_point(|w| w.0 <= cid);
        if i > 0 {
            let (lo, hi, w) = self.cid_widths[i - 1];
            if cid >= lo && cid <= hi {
                return w;
            }
        }
        self.default_width
    }

    /// Whether this is a Type3 font.
    pub fn is_type3(&self) -> bool {
        self.kind == Kind::Type3
    }

    /// Decode a shown string, calling `f` once per code.
    pub fn decode(&self, bytes: &[u8], mut f: impl FnMut(Glyph<'_>)) {
        let mut buf = String::new();
        match self.kind {
            Kind::Simple | Kind::Type3 => {
                for &b in bytes {
                    let tu = self.to_unicode.as_ref().and_then(|t| {
                        t.lookup_unicode(1, b as u32)
                            .or_else(|| t.lookup_unicode(2, b as u32))
                    });
                    let text: &str = match &tu {
                        Some(s) => s,
                        None => self
                            .simple
                            .get(b as usize)
                            .map(|s| s.as_str())
                            .unwrap_or(""),
                    };
                    let width = self
                        .widths
                        .get(b as usize)
                        .copied()
                        .unwrap_or(self.default_width);
                    f(Glyph {
                        text,
                        width,
                        is_space_code: b == 32,
                    });
                }
            }
            Kind::Composite => {
                let mut i = 0;
                while i < bytes.len() {
                    let rest = &bytes[i..];
                    let (n, code) = match &self.code_map {
                        CodeMap::Identity => {
                            if let Some(tu) = self
                                .to_unicode
                                .as_ref()
                                .filter(|t| !t.codespaces.is_empty())
                            {
                                let (n, c) = tu.next_code(rest, 2);
                                if n == 2 { (n, c) } else { two_bytes(rest) }
                            } else {
                                two_bytes(rest)
                            }
                        }
                        CodeMap::Utf16 => {
                            let (n, c) = two_bytes(rest);
                            if (0xD800..0xDC00).contains(&c) && rest.len() >= 4 {
                                (4, (c << 16) | u16::from_be_bytes([rest[2], rest[3]]) as u32)
                            } else {
                                (n, c)
                            }
                        }
                        CodeMap::Jis => two_bytes(rest),
                        CodeMap::Legacy(_) => {
                            if rest[0] < 0x80
                                || (rest[0] >= 0xA1 && rest[0] <= 0xDF && is_sjis(&self.code_map))
                            {
                                (1, rest[0] as u32)
                            } else {
                                two_bytes(rest)
                            }
                        }
                        CodeMap::Embedded(cm) => cm.next_code(rest, 2),
                    };
                    let n = n.max(1);
                    // At most 4 (a codespace's length), so this never saturates.
                    let code_len = u8::try_from(n).unwrap_or(u8::MAX);
                    let raw = &rest[..n.min(rest.len())];
                    i += n;
                    let cid = match &self.code_map {
                        CodeMap::Identity => code,
                        CodeMap::Embedded(cm) => cm.lookup_cid(code_len, code).unwrap_or(code),
                        _ => code,
                    };
                    buf.clear();
                    if let Some(s) = self
                        .to_unicode
                        .as_ref()
                        .and_then(|t| t.lookup_unicode(code_len, code))
                    {
                        buf.push_str(&s);
                    } else {
                        match &self.code_map {
                            CodeMap::Utf16 => buf.push_str(&utf16_to_string(raw)),
                            CodeMap::Legacy(enc) => {
                                let (s, _, _) = enc.decode(raw);
                                buf.push_str(&s);
                            }
                            CodeMap::Jis => {
                                let euc: Vec<u8> = raw.iter().map(|b| b | 0x80).collect();
                                let (s, _, _) = encoding_rs::EUC_JP.decode(&euc);
                                buf.push_str(&s);
                            }
                            _ => {
                                if let Some(c) =
                                    self.collection.and_then(|t| collection_char(t, cid))
                                {
                                    buf.push(c);
                                } else if let Some(s) = self.gid_text.get(&cid) {
                                    buf.push_str(s);
                                }
                            }
                        }
                    }
                    let width = if matches!(self.code_map, CodeMap::Identity | CodeMap::Embedded(_))
                    {
                        self.cid_width(cid)
                    } else {
                        self.default_width
                    };
                    f(Glyph {
                        text: &buf,
                        width,
                        is_space_code: n == 1 && code == 32,
                    });
                }
            }
        }
    }
}

fn is_sjis(m: &CodeMap) -> bool {
    matches!(m, CodeMap::Legacy(e) if *e == encoding_rs::SHIFT_JIS)
}

fn two_bytes(rest: &[u8]) -> (usize, u32) {
    if rest.len() >= 2 {
        (2, u16::from_be_bytes([rest[0], rest[1]]) as u32)
    } else {
        (1, rest[0] as u32)
    }
}

static GB1: &[u8] = include_bytes!("generated/cid2uni/GB1.cid2uni");
static JAPAN1: &[u8] = include_bytes!("generated/cid2uni/Japan1.cid2uni");
static CNS1: &[u8] = include_bytes!("generated/cid2uni/CNS1.cid2uni");
static KOREA1: &[u8] = include_bytes!("generated/cid2uni/Korea1.cid2uni");

/// CID → Unicode table of an Adobe character collection (written by scripts/gen/pdf_cid2uni.py).
fn collection_table(ordering: &[u8]) -> Option<&'static [u8]> {
    match ordering {
        b"GB1" => Some(GB1),
        b"Japan1" => Some(JAPAN1),
        b"CNS1" => Some(CNS1),
        b"Korea1" | b"KR" => Some(KOREA1),
        _ => None,
    }
}

fn collection_char(table: &[u8], cid: u32) -> Option<char> {
    let i = cid as usize * 3;
    let b = table.get(i..i + 3)?;
    let v = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
    if v == 0 { None } else { char::from_u32(v) }
}

fn predefined_cmap(name: &str) -> CodeMap {
    if name.starts_with("Identity") {
        return CodeMap::Identity;
    }
    if name == "H" || name == "V" {
        return CodeMap::Jis;
    }
    if name.contains("UCS2") || name.contains("UTF16") {
        return CodeMap::Utf16;
    }
    let enc = if name.contains("RKSJ") {
        Some(encoding_rs::SHIFT_JIS)
    } else if name.starts_with("GB") {
        Some(encoding_rs::GBK)
    } else if name.starts_with("B5")
        || name.starts_with("ETen")
        || name.starts_with("HKscs")
        || name.starts_with("CNS")
    {
        Some(encoding_rs::BIG5)
    } else if name.starts_with("KSC") {
        Some(encoding_rs::EUC_KR)
    } else if name.starts_with("EUC") || name.starts_with("83pv") || name.starts_with("Ext") {
        Some(encoding_rs::EUC_JP)
    } else {
        None
    };
    match enc {
        Some(e) => CodeMap::Legacy(e),
        None => CodeMap::Identity,
    }
}

/// A simple font's `/BaseFont` without its subset tag ("ABCDEF+"); empty when absent.
fn base_font_name(doc: &Document, dict: &Dictionary) -> String {
    let base_font = dict
        .get(b"BaseFont")
        .ok()
        .and_then(|o| name_of(doc, o))
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .unwrap_or_default();
    // Strip a subset tag like "ABCDEF+".
    match base_font.split_once('+') {
        Some((tag, rest)) if tag.len() == 6 => rest.to_string(),
        _ => base_font.clone(),
    }
}

/// How a simple font's one-byte codes name their characters: `/Encoding` (a base encoding and
/// `/Differences`), the font program's built-in encoding, the font's own (Symbol, Dingbats).
struct SimpleEncoding {
    /// The base encoding: the one `/Encoding` names, else the font's own (Symbol,
    /// ZapfDingbats, known by the font's name), else WinAnsi for TrueType and Standard for others.
    base: BaseEncoding,
    /// `/Encoding` named the base encoding.
    explicit_base: bool,
    /// The font is Symbol or (Zapf)Dingbats by name, and its own encoding is the base.
    own_base: bool,
    /// The descriptor flags the font symbolic and not nonsymbolic.
    symbolic: bool,
    /// Glyph names given by `/Differences`, by code.
    names: Vec<Option<String>>,
    /// The built-in encoding of an embedded Type1 or CFF program, read when `/Encoding` names
    /// no base encoding (and the font is neither Symbol, Dingbats nor Type3).
    builtin_names: Option<Vec<Option<String>>>,
}

impl SimpleEncoding {
    /// Read the encoding of the simple font `dict` (named `base_name`, subset tag stripped).
    fn read(
        doc: &Document,
        dict: &Dictionary,
        descriptor: Option<&Dictionary>,
        base_name: &str,
        type3: bool,
        budget: &mut Budget,
    ) -> SimpleEncoding {
        let flags = f32_to_i64(
            descriptor
                .and_then(|d| d.get(b"Flags").ok())
                .and_then(|o| num_of(doc, o))
                .unwrap_or(0.0),
        );
        let symbolic = flags & 4 != 0 && flags & 32 == 0;
        let subtype = dict
            .get(b"Subtype")
            .ok()
            .and_then(|o| name_of(doc, o))
            .unwrap_or(b"Type1");
        let own = own_encoding(base_name);
        let (named, names) = encoding_entry(doc, dict);
        let explicit_base = named.is_some();
        let base = named.or(own).unwrap_or(if subtype == b"TrueType" {
            BaseEncoding::WinAnsi
        } else {
            BaseEncoding::Standard
        });
        let builtin_names = if !explicit_base && own.is_none() && !type3 {
            embedded_encoding(doc, descriptor, budget)
        } else {
            None
        };
        SimpleEncoding {
            base,
            explicit_base,
            own_base: own.is_some(),
            symbolic,
            names,
            builtin_names,
        }
    }

    /// The text of each code: the `/Differences` glyph name's (or, in a font whose names are
    /// mostly unknown numbers like `/g65`, the number's), else the built-in encoding's glyph
    /// name's, else the base encoding's character. Type3 fonts keep codes whose
    /// `/Differences` name is unknown empty.
    fn code_texts(&self, type3: bool) -> Vec<String> {
        let mut simple = vec![String::new(); 256];
        let mut unknown_numeric = 0usize;
        let mut named = 0usize;
        for n in self.names.iter().flatten() {
            named += 1;
            if glyph_to_unicode(n).is_none() && numeric_name_code(n).is_some() {
                unknown_numeric += 1;
            }
        }
        let numeric_font = named > 0 && unknown_numeric * 2 > named;
        for code in 0..256usize {
            let mut text = None;
            if let Some(name) = &self.names[code] {
                text = glyph_to_unicode(name);
                if text.is_none() && numeric_font {
                    text = numeric_name_code(name)
                        .and_then(char::from_u32)
                        .filter(|c| !c.is_control())
                        .map(String::from);
                }
            } else if let Some(bn) = self.builtin_names.as_ref().and_then(|b| b[code].as_ref()) {
                text = glyph_to_unicode(bn);
            }
            if text.is_none() && (self.names[code].is_none() || !type3) {
                // Unknown or absent name: the base encoding's character (never drop the font).
                let fallback = if self.symbolic && !self.explicit_base && !self.own_base {
                    // Symbolic fonts without an encoding: codes are often plain Latin-1 (or
                    // F0xx-offset symbol codes mapped down to 8 bits).
                    BaseEncoding::WinAnsi
                } else {
                    self.base
                };
                text = u8::try_from(code)
                    .ok()
                    .and_then(|c| fallback.char_for(c))
                    .map(String::from);
            }
            simple[code] = text.unwrap_or_default();
        }
        simple
    }
}

/// The font's own encoding when its name says it is Symbol or (Zapf)Dingbats.
fn own_encoding(base_name: &str) -> Option<BaseEncoding> {
    let lower = base_name.to_ascii_lowercase();
    if lower.starts_with("symbol") {
        Some(BaseEncoding::Symbol)
    } else if lower.starts_with("zapfdingbats") || lower.starts_with("dingbats") {
        Some(BaseEncoding::ZapfDingbats)
    } else {
        None
    }
}

/// What the font's `/Encoding` says: the base encoding it names (itself, or as the
/// `/BaseEncoding` of a dictionary), if known, and the glyph names its `/Differences` give, by
/// code.
fn encoding_entry(
    doc: &Document,
    dict: &Dictionary,
) -> (Option<BaseEncoding>, Vec<Option<String>>) {
    let mut names: Vec<Option<String>> = vec![None; 256];
    let named = match dict.get(b"Encoding").ok().map(|o| deref(doc, o)) {
        Some(Object::Name(n)) => BaseEncoding::from_name(n),
        Some(Object::Dictionary(d)) => {
            if let Ok(diffs) = d.get(b"Differences")
                && let Object::Array(arr) = deref(doc, diffs)
            {
                apply_differences(doc, arr, &mut names);
            }
            d.get(b"BaseEncoding")
                .ok()
                .and_then(|o| name_of(doc, o))
                .and_then(BaseEncoding::from_name)
        }
        _ => None,
    };
    (named, names)
}

/// Set `names[code]` from a `/Differences` array: a number gives the code of the glyph name
/// that follows it, and each further name the next code.
fn apply_differences(doc: &Document, arr: &[Object], names: &mut [Option<String>]) {
    let mut code: i64 = 0;
    for item in arr {
        match deref(doc, item) {
            Object::Integer(i) => code = *i,
            Object::Real(r) => code = f32_to_i64(*r),
            Object::Name(n) => {
                if (0..256).contains(&code)
                    && let Ok(c) = usize::try_from(code)
                {
                    names[c] = Some(String::from_utf8_lossy(n).into_owned());
                }
                code = code.saturating_add(1);
            }
            _ => {}
        }
    }
}

/// The built-in encoding of the font program embedded in `descriptor`: a Type1 program's
/// (`/FontFile`) or else a CFF program's (`/FontFile3`).
fn embedded_encoding(
    doc: &Document,
    descriptor: Option<&Dictionary>,
    budget: &mut Budget,
) -> Option<Vec<Option<String>>> {
    if let Some(ff) = descriptor.and_then(|d| d.get(b"FontFile").ok()) {
        stream_bytes(doc, ff, budget).and_then(|d| type1_builtin_encoding(&d))
    } else if let Some(ff) = descriptor.and_then(|d| d.get(b"FontFile3").ok()) {
        stream_bytes(doc, ff, budget).and_then(|d| super::cff::builtin_encoding(&d))
    } else {
        None
    }
}

/// A Type3 font's glyph space unit in text space: the first entry of its `/FontMatrix`
/// (0.001, as for other fonts, when missing or unusable).
fn type3_scale(doc: &Document, dict: &Dictionary) -> f32 {
    dict.get(b"FontMatrix")
        .ok()
        .and_then(|o| match deref(doc, o) {
            Object::Array(a) => a.first().and_then(|x| num_of(doc, x)),
            _ => None,
        })
        .map(|v| v.abs())
        .filter(|v| v.is_finite() && *v > 0.0)
        .unwrap_or(0.001)
}

/// Each code's advance (em per unit font size): `/Widths` from `/FirstChar` (in glyph units,
/// times `scale`); else the standard 14 font metrics for the code's text (`simple`) when the
/// font is one of them by name; else `missing` (`/MissingWidth`) if set, 0.5 em for a
/// standard font and 0 otherwise.
fn simple_widths(
    doc: &Document,
    dict: &Dictionary,
    base_name: &str,
    simple: &[String],
    scale: f32,
    missing: f32,
) -> Vec<f32> {
    let mut widths = vec![f32::NAN; 256];
    let first = f32_to_i64(
        dict.get(b"FirstChar")
            .ok()
            .and_then(|o| num_of(doc, o))
            .unwrap_or(0.0),
    );
    if let Some(Object::Array(ws)) = dict.get(b"Widths").ok().map(|o| deref(doc, o)) {
        for (i, w) in ws.iter().enumerate() {
            let code = first.saturating_add(i64::try_from(i).unwrap_or(i64::MAX));
            if (0..256).contains(&code)
                && let Some(v) = num_of(doc, w)
            {
                widths[usize::try_from(code).unwrap_or(0)] = v * scale;
            }
        }
    }
    let core = core_widths(base_name);
    for code in 0..256usize {
        if widths[code].is_nan() {
            let w = match core {
                Some(CoreMetrics::Fixed(w)) => Some(w),
                Some(CoreMetrics::Table(t)) => simple[code].chars().next().and_then(|c| {
                    t.binary_search_by(|(k, _)| k.cmp(&c))
                        .ok()
                        .map(|i| t[i].1 as f32 / 1000.0)
                }),
                None => None,
            };
            widths[code] = w.unwrap_or(if missing > 0.0 {
                missing
            } else if core.is_some() {
                0.5
            } else {
                0.0
            });
        }
    }
    widths
}

/// The mean of the positive widths, within 0.05..2 em (0.5 when there are none).
fn average_width(widths: &[f32]) -> f32 {
    let nonzero: Vec<f32> = widths.iter().copied().filter(|w| *w > 0.0).collect();
    if nonzero.is_empty() {
        0.5
    } else {
        (nonzero.iter().sum::<f32>() / nonzero.len() as f32).clamp(0.05, 2.0)
    }
}

#[derive(Clone, Copy)]
enum CoreMetrics {
    Fixed(f32),
    Table(&'static [(char, u16)]),
}

/// Metrics of the standard 14 fonts (and their common aliases), for fonts without `/Widths`.
fn core_widths(base: &str) -> Option<CoreMetrics> {
    let l = base.to_ascii_lowercase().replace([' ', '-', ','], "");
    let bold = l.contains("bold") || l.contains("black") || l.contains("heavy");
    let italic = l.contains("italic") || l.contains("oblique");
    if l.starts_with("courier") || l.contains("mono") {
        return Some(CoreMetrics::Fixed(0.6));
    }
    if l.starts_with("helvetica") || l.starts_with("arial") {
        return Some(CoreMetrics::Table(if bold {
            tables::WIDTHS_HELVETICA_BOLD
        } else {
            tables::WIDTHS_HELVETICA
        }));
    }
    if l.starts_with("times") {
        return Some(CoreMetrics::Table(match (bold, italic) {
            (false, false) => tables::WIDTHS_TIMES_ROMAN,
            (true, false) => tables::WIDTHS_TIMES_BOLD,
            (false, true) => tables::WIDTHS_TIMES_ITALIC,
            (true, true) => tables::WIDTHS_TIMES_BOLD_ITALIC,
        }));
    }
    if l.starts_with("symbol") || l.starts_with("zapfdingbats") {
        return Some(CoreMetrics::Fixed(0.6));
    }
    None
}

/// The built-in encoding of a Type1 font program (`/Encoding` in its clear-text part):
/// `dup <code> /<name> put` entries, or `None` for StandardEncoding / unreadable data.
fn type1_builtin_encoding(data: &[u8]) -> Option<Vec<Option<String>>> {
    let head_len = data.len().min(65536);
    let head = &data[..head_len];
    let start = find(head, b"/Encoding")?;
    let rest = &head[start + 9..];
    let after = String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned();
    if after.trim_start().starts_with("StandardEncoding") {
        return None;
    }
    let end = find(rest, b"readonly def")
        .or_else(|| find(rest, b"eexec"))
        .unwrap_or(rest.len());
    let text = String::from_utf8_lossy(&rest[..end]);
    let mut out = vec![None; 256];
    let toks: Vec<&str> = text.split_ascii_whitespace().collect();
    let mut any = false;
    for w in toks.windows(4) {
        if w[0] == "dup"
            && w[3] == "put"
            && let (Ok(code), Some(name)) = (w[1].parse::<usize>(), w[2].strip_prefix('/'))
            && code < 256
        {
            out[code] = Some(name.to_string());
            any = true;
        }
    }
    any.then_some(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn be16(d: &[u8], at: usize) -> Option<u16> {
    d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reverse of a TrueType font's Unicode `cmap` subtable (format 4 or 12): glyph id → text.
fn truetype_gid_to_unicode(d: &[u8]) -> HashMap<u32, String> {
    let mut out = HashMap::new();
    let Some(num_tables) = be16(d, 4) else {
        return out;
    };
    let mut cmap_off = None;
    for t in 0..num_tables as usize {
        let rec = 12 + t * 16;
        if d.get(rec..rec + 4) == Some(b"cmap") {
            cmap_off = be32(d, rec + 8).map(|v| v as usize);
        }
    }
    let Some(base) = cmap_off else { return out };
    let Some(n) = be16(d, base + 2) else {
        return out;
    };
    let mut best: Option<(u32, usize)> = None;
    for k in 0..n as usize {
        let rec = base + 4 + k * 8;
        let (Some(pid), Some(eid), Some(off)) = (be16(d, rec), be16(d, rec + 2), be32(d, rec + 4))
        else {
            break;
        };
        let score = match (pid, eid) {
            (3, 10) => 4,
            (0, 4) | (0, 6) => 3,
            (3, 1) => 2,
            (0, _) => 1,
            _ => 0,
        };
        if score > 0 && best.is_none_or(|b| score > b.0) {
            best = Some((score, base + off as usize));
        }
    }
    let Some((_, sub)) = best else { return out };
    let mut add = |gid: u32, cp: u32| {
        if gid != 0
            && out.len() < 70_000
            && let Some(c) = char::from_u32(cp)
        {
            out.entry(gid).or_insert_with(|| c.to_string());
        }
    };
    match be16(d, sub) {
        Some(4) => {
            let Some(segx2) = be16(d, sub + 6) else {
                return out;
            };
            let segs = segx2 as usize / 2;
            let ends = sub + 14;
            let starts = ends + segx2 as usize + 2;
            let deltas = starts + segx2 as usize;
            let ranges = deltas + segx2 as usize;
            for s in 0..segs {
                let (Some(end), Some(start), Some(delta), Some(ro)) = (
                    be16(d, ends + 2 * s),
                    be16(d, starts + 2 * s),
                    be16(d, deltas + 2 * s),
                    be16(d, ranges + 2 * s),
                ) else {
                    break;
                };
                if start > end || start == 0xFFFF {
                    continue;
                }
                for cp in start..=end {
                    let gid = if ro == 0 {
                        cp.wrapping_add(delta)
                    } else {
                        let at = ranges + 2 * s + ro as usize + 2 * (cp - start) as usize;
                        match be16(d, at) {
                            Some(0) | None => 0,
                            Some(g) => g.wrapping_add(delta),
                        }
                    };
                    add(gid as u32, cp as u32);
                }
            }
        }
        Some(12) => {
            let Some(groups) = be32(d, sub + 12) else {
                return out;
            };
            for g in 0..groups.min(10_000) as usize {
                let at = sub + 16 + g * 12;
                let (Some(start), Some(end), Some(gid0)) =
                    (be32(d, at), be32(d, at + 4), be32(d, at + 8))
                else {
                    break;
                };
                if end < start || end - start > 70_000 {
                    continue;
                }
                for cp in start..=end {
                    add(gid0.wrapping_add(cp - start), cp);
                }
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vertical_variants_map_to_vertical_forms() {
        // Adobe-GB1 CID 573 is the vertical comma, CID 574 the vertical ideographic full stop.
        assert_eq!(collection_char(GB1, 573), Some('\u{FE10}'));
        assert_eq!(collection_char(GB1, 574), Some('\u{FE12}'));
        // CID 576 (vertical colon) keeps the full-width colon: poppler's private-use code for it
        // is not taken.
        assert_eq!(collection_char(GB1, 576), Some('\u{FF1A}'));
    }

    #[test]
    fn type1_encoding_parse() {
        let prog = b"%!PS-AdobeFont-1.0\n/Encoding 256 array\n0 1 255 {1 index exch /.notdef put} for\ndup 11 /ff put\ndup 65 /A put\nreadonly def\ncurrentfile eexec";
        let enc = type1_builtin_encoding(prog).unwrap_or_default();
        assert_eq!(enc[11].as_deref(), Some("ff"));
        assert_eq!(enc[65].as_deref(), Some("A"));
    }
}
