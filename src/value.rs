//! `PyValue`: the Python values a job payload, a return value or `meta` can carry.
//!
//! Pickle and JSON payloads both decode into this one type; the few classes RQ payloads commonly
//! carry (datetime, date, time, timedelta, Decimal, UUID) have their own variants. Also here:
//! Python's `repr()` ([`PyValue::repr`], for descriptions and tracebacks) and Python's `json`
//! module rules ([`PyValue::to_json_string`], [`PyValue::from_json_str`]).
//!
//! Outside [`crate::rq`] so that jobs and their adapters take and return Python values without
//! depending on the wire module; it depends on nothing else in the crate. Turning bytes into a
//! `PyValue` (pickle, zlib, the payload shape) stays in `rq/` (`codec`, `pickle`).

use num_bigint::BigInt;

/// A Python value, as far as a payload can carry one.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    None,
    Bool(bool),
    /// An int that fits in i64.
    Int(i64),
    /// An int outside i64 (pickled with LONG1/LONG4).
    BigInt(BigInt),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    ByteArray(Vec<u8>),
    Tuple(Vec<PyValue>),
    List(Vec<PyValue>),
    /// Insertion-ordered, as Python dicts are. Keys may be any hashable value.
    Dict(Vec<(PyValue, PyValue)>),
    Set(Vec<PyValue>),
    FrozenSet(Vec<PyValue>),
    /// `datetime.datetime`; `utc_offset_seconds` is `Some` for aware values.
    DateTime(PyDateTime),
    /// `datetime.date`.
    Date {
        year: i32,
        month: u32,
        day: u32,
    },
    /// `datetime.time` (naive).
    Time {
        hour: u32,
        minute: u32,
        second: u32,
        microsecond: u32,
    },
    /// `datetime.timedelta`, normalised as Python stores it.
    TimeDelta {
        days: i64,
        seconds: i64,
        microseconds: i64,
    },
    /// `decimal.Decimal`, kept as its exact string form (e.g. `12.50`).
    Decimal(String),
    /// `uuid.UUID`.
    Uuid(uuid::Uuid),
}

/// `datetime.datetime` fields; `utc_offset_seconds` is `None` for naive values.
#[derive(Debug, Clone, PartialEq)]
pub struct PyDateTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub microsecond: u32,
    pub utc_offset_seconds: Option<i32>,
}

impl PyValue {
    /// The Python type name, as Python's error messages print it.
    pub fn type_name(&self) -> &'static str {
        match self {
            PyValue::None => "NoneType",
            PyValue::Bool(_) => "bool",
            PyValue::Int(_) | PyValue::BigInt(_) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::ByteArray(_) => "bytearray",
            PyValue::Tuple(_) => "tuple",
            PyValue::List(_) => "list",
            PyValue::Dict(_) => "dict",
            PyValue::Set(_) => "set",
            PyValue::FrozenSet(_) => "frozenset",
            PyValue::DateTime(_) => "datetime",
            PyValue::Date { .. } => "date",
            PyValue::Time { .. } => "time",
            PyValue::TimeDelta { .. } => "timedelta",
            PyValue::Decimal(_) => "Decimal",
            PyValue::Uuid(_) => "UUID",
        }
    }

    /// The str, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PyValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The int as i64, if this is an int (not a bool) that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            PyValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// `value is None`.
    pub fn is_none(&self) -> bool {
        matches!(self, PyValue::None)
    }

    /// A Python int from a count or length (exact: past `i64::MAX` it is a [`PyValue::BigInt`]).
    pub fn count(n: usize) -> PyValue {
        i64::try_from(n).map_or_else(|_| PyValue::BigInt(BigInt::from(n)), PyValue::Int)
    }

    /// A Python int from an unsigned number (exact: past `i64::MAX` it is a [`PyValue::BigInt`]).
    pub fn from_u64(n: u64) -> PyValue {
        i64::try_from(n).map_or_else(|_| PyValue::BigInt(BigInt::from(n)), PyValue::Int)
    }

    /// A dict with string keys, the shape of kwargs, `meta` and most return values.
    pub fn str_dict<K: Into<String>>(entries: impl IntoIterator<Item = (K, PyValue)>) -> PyValue {
        PyValue::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (PyValue::Str(k.into()), v))
                .collect(),
        )
    }
}

// ------------------------------------------------------------------------------------------------
// repr()

impl PyValue {
    /// Python's `repr()` of the value, e.g. `{'a': (1,), 'b': datetime.date(2024, 1, 2)}`.
    pub fn repr(&self) -> String {
        let mut out = String::new();
        self.write_repr(&mut out);
        out
    }

    fn write_repr(&self, out: &mut String) {
        fn seq(out: &mut String, items: &[PyValue], open: &str, close: &str) {
            out.push_str(open);
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                v.write_repr(out);
            }
            out.push_str(close);
        }
        match self {
            PyValue::None => out.push_str("None"),
            PyValue::Bool(true) => out.push_str("True"),
            PyValue::Bool(false) => out.push_str("False"),
            PyValue::Int(i) => out.push_str(&i.to_string()),
            PyValue::BigInt(n) => out.push_str(&n.to_string()),
            PyValue::Float(f) => out.push_str(&float_repr(*f)),
            PyValue::Str(s) => str_repr_into(out, s),
            PyValue::Bytes(b) => bytes_repr_into(out, b),
            PyValue::ByteArray(b) => {
                out.push_str("bytearray(");
                bytes_repr_into(out, b);
                out.push(')');
            }
            PyValue::Tuple(items) if items.len() == 1 => seq(out, items, "(", ",)"),
            PyValue::Tuple(items) => seq(out, items, "(", ")"),
            PyValue::List(items) => seq(out, items, "[", "]"),
            PyValue::Dict(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    k.write_repr(out);
                    out.push_str(": ");
                    v.write_repr(out);
                }
                out.push('}');
            }
            PyValue::Set(items) if items.is_empty() => out.push_str("set()"),
            PyValue::Set(items) => seq(out, items, "{", "}"),
            PyValue::FrozenSet(items) if items.is_empty() => out.push_str("frozenset()"),
            PyValue::FrozenSet(items) => seq(out, items, "frozenset({", "})"),
            PyValue::DateTime(dt) => {
                let mut fields = vec![
                    i64::from(dt.year),
                    i64::from(dt.month),
                    i64::from(dt.day),
                    i64::from(dt.hour),
                    i64::from(dt.minute),
                    i64::from(dt.second),
                    i64::from(dt.microsecond),
                ];
                for _ in 0..2 {
                    if fields.last() == Some(&0) {
                        fields.pop();
                    }
                }
                out.push_str("datetime.datetime(");
                out.push_str(
                    &fields
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                );
                if let Some(off) = dt.utc_offset_seconds {
                    out.push_str(", tzinfo=");
                    out.push_str(&timezone_repr(off));
                }
                out.push(')');
            }
            PyValue::Date { year, month, day } => {
                out.push_str(&format!("datetime.date({year}, {month}, {day})"))
            }
            PyValue::Time {
                hour,
                minute,
                second,
                microsecond,
            } => {
                out.push_str(&format!("datetime.time({hour}, {minute}"));
                if *microsecond != 0 {
                    out.push_str(&format!(", {second}, {microsecond}"));
                } else if *second != 0 {
                    out.push_str(&format!(", {second}"));
                }
                out.push(')');
            }
            PyValue::TimeDelta {
                days,
                seconds,
                microseconds,
            } => {
                out.push_str(&timedelta_repr(*days, *seconds, *microseconds));
            }
            PyValue::Decimal(s) => {
                out.push_str("Decimal(");
                str_repr_into(out, s);
                out.push(')');
            }
            PyValue::Uuid(u) => out.push_str(&format!("UUID('{}')", u.hyphenated())),
        }
    }
}

fn timedelta_repr(days: i64, seconds: i64, microseconds: i64) -> String {
    let mut parts = Vec::new();
    if days != 0 {
        parts.push(format!("days={days}"));
    }
    if seconds != 0 {
        parts.push(format!("seconds={seconds}"));
    }
    if microseconds != 0 {
        parts.push(format!("microseconds={microseconds}"));
    }
    if parts.is_empty() {
        parts.push("0".to_string());
    }
    format!("datetime.timedelta({})", parts.join(", "))
}

fn timezone_repr(offset_seconds: i32) -> String {
    if offset_seconds == 0 {
        return "datetime.timezone.utc".to_string();
    }
    let off = i64::from(offset_seconds);
    format!(
        "datetime.timezone({})",
        timedelta_repr(off.div_euclid(86_400), off.rem_euclid(86_400), 0)
    )
}

/// Python's `repr(float)`: the shortest string that round-trips, in fixed notation for
/// exponents -5 < e < 16 and scientific (`1e+16`, `1.5e-07`) otherwise; `inf`, `-inf`, `nan`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Rust's `{:e}` gives the shortest round-trip digit count, e.g. `-1.2345e-5`, but not always
    // the closest of the shortest strings; correctly rounding to that many digits (exact mode)
    // gives the one Python's dtoa picks.
    let shortest = format!("{f:e}");
    let n_digits = shortest
        .split_once('e')
        .map_or(1, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count());
    let s = format!("{f:.prec$e}", prec = n_digits.saturating_sub(1));
    let (mant, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mant) = match mant.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let digits = match digits.trim_end_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    let decpt = exp + 1;
    // At most 17 significant digits; the counts below are small and, where used, not negative.
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    let count = |k: i32| usize::try_from(k).unwrap_or(0);
    let body = if -4 < decpt && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{}", "0".repeat(count(-decpt)), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat(count(decpt - n)))
        } else {
            let (a, b) = digits.split_at(count(decpt));
            format!("{a}.{b}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let e = decpt - 1;
        format!(
            "{first}{frac}e{}{:02}",
            if e < 0 { '-' } else { '+' },
            e.unsigned_abs()
        )
    };
    format!("{sign}{body}")
}

/// Python's `str.isprintable()` for one character, approximated without Unicode tables: the
/// control, format, separator, private-use and surrogate ranges plus the large unassigned planes.
fn is_printable(c: char) -> bool {
    let u = u32::from(c);
    if u < 0x20 || (0x7f..=0xa0).contains(&u) || u == 0xad {
        return false;
    }
    if u < 0x300 {
        return true;
    }
    !matches!(u,
        0x0600..=0x0605 | 0x061c | 0x06dd | 0x070f | 0x0890..=0x0891 | 0x08e2 | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000
        | 0xd800..=0xf8ff | 0xfdd0..=0xfdef | 0xfeff | 0xfff0..=0xfffb | 0xfffe..=0xffff
        | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0x2fffe..=0x2ffff | 0x323b0..=0xdffff | 0xe0000..=0xe00ff | 0xe01f0..=0x10ffff)
}

fn push_hex_escape(out: &mut String, u: u32) {
    if u <= 0xff {
        out.push_str(&format!("\\x{u:02x}"));
    } else if u <= 0xffff {
        out.push_str(&format!("\\u{u:04x}"));
    } else {
        out.push_str(&format!("\\U{u:08x}"));
    }
}

fn str_repr_into(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if is_printable(c) => out.push(c),
            c => push_hex_escape(out, u32::from(c)),
        }
    }
    out.push(quote);
}

fn bytes_repr_into(out: &mut String, b: &[u8]) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push(char::from(quote));
}

// ------------------------------------------------------------------------------------------------
// JSON, as Python's json module writes and reads it

/// Why a value cannot be written as JSON, or JSON text cannot be read (Python's messages).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JsonError {
    #[error("Object of type {0} is not JSON serializable")]
    NotSerializable(&'static str),
    #[error("keys must be str, int, float, bool or None, not {0}")]
    BadKey(&'static str),
    #[error("{msg}: line {line} column {column} (char {pos})")]
    Parse {
        msg: &'static str,
        line: usize,
        column: usize,
        pos: usize,
    },
    #[error("json nesting deeper than {0}")]
    TooDeep(usize),
}

/// Deepest JSON nesting read or written.
pub const MAX_JSON_DEPTH: usize = 200;

impl PyValue {
    /// `json.dumps(value)` with Python's defaults (`", "`/`": "` separators, `ensure_ascii`,
    /// `NaN`/`Infinity`; tuples become lists; int/float/bool/None keys become strings).
    pub fn to_json_string(&self) -> Result<String, JsonError> {
        let mut out = String::new();
        self.write_json(&mut out, 0)?;
        Ok(out)
    }

    fn write_json(&self, out: &mut String, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_JSON_DEPTH {
            return Err(JsonError::TooDeep(MAX_JSON_DEPTH));
        }
        match self {
            PyValue::None => out.push_str("null"),
            PyValue::Bool(true) => out.push_str("true"),
            PyValue::Bool(false) => out.push_str("false"),
            PyValue::Int(i) => out.push_str(&i.to_string()),
            PyValue::BigInt(n) => out.push_str(&n.to_string()),
            PyValue::Float(f) => out.push_str(&json_float(*f)),
            PyValue::Str(s) => json_str_into(out, s),
            PyValue::Tuple(items) | PyValue::List(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_json(out, depth + 1)?;
                }
                out.push(']');
            }
            PyValue::Dict(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let key = match k {
                        PyValue::Str(s) => s.clone(),
                        PyValue::Int(n) => n.to_string(),
                        PyValue::BigInt(n) => n.to_string(),
                        PyValue::Float(f) => json_float(*f),
                        PyValue::Bool(b) => (if *b { "true" } else { "false" }).to_string(),
                        PyValue::None => "null".to_string(),
                        other => return Err(JsonError::BadKey(other.type_name())),
                    };
                    json_str_into(out, &key);
                    out.push_str(": ");
                    v.write_json(out, depth + 1)?;
                }
                out.push('}');
            }
            other => return Err(JsonError::NotSerializable(other.type_name())),
        }
        Ok(())
    }

    /// `json.loads(text)`: exact big ints, `NaN`/`Infinity`, insertion-ordered objects whose
    /// duplicate keys keep the last value, strict strings (no raw control characters).
    pub fn from_json_str(text: &str) -> Result<PyValue, JsonError> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            pos: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.pos != p.s.len() {
            return Err(p.err("Extra data"));
        }
        Ok(v)
    }
}

fn json_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        float_repr(f)
    }
}

fn json_str_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            c => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn err(&self, msg: &'static str) -> JsonError {
        let before = &self.s[..self.pos.min(self.s.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        JsonError::Parse {
            msg,
            line,
            column: self.pos - col_start + 1,
            pos: self.pos,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos.min(self.s.len())..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<PyValue, JsonError> {
        if depth > MAX_JSON_DEPTH {
            return Err(JsonError::TooDeep(MAX_JSON_DEPTH));
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    return Ok(PyValue::List(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(PyValue::List(items));
                        }
                        _ => return Err(self.err("Expecting ',' delimiter")),
                    }
                }
            }
            Some(b'"') => Ok(PyValue::Str(self.string()?)),
            Some(b'n') if self.eat("null") => Ok(PyValue::None),
            Some(b't') if self.eat("true") => Ok(PyValue::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(PyValue::Bool(false)),
            Some(b'N') if self.eat("NaN") => Ok(PyValue::Float(f64::NAN)),
            Some(b'I') if self.eat("Infinity") => Ok(PyValue::Float(f64::INFINITY)),
            Some(b'-') if self.eat("-Infinity") => Ok(PyValue::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("Expecting value")),
        }
    }

    fn object(&mut self, depth: usize) -> Result<PyValue, JsonError> {
        self.pos += 1;
        let mut entries: Vec<(PyValue, PyValue)> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(PyValue::Dict(entries));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("Expecting property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("Expecting ':' delimiter"));
            }
            self.pos += 1;
            self.ws();
            let v = self.value(depth + 1)?;
            match index.get(&key) {
                Some(&i) => entries[i].1 = v,
                None => {
                    index.insert(key.clone(), entries.len());
                    entries.push((PyValue::Str(key), v));
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(PyValue::Dict(entries));
                }
                _ => return Err(self.err("Expecting ',' delimiter")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("Invalid \\uXXXX escape"))?;
        let v = std::str::from_utf8(h)
            .ok()
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err("Invalid \\uXXXX escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters at once.
            let run = self.s[self.pos..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let Some(run) = run else {
                self.pos = start;
                return Err(self.err("Unterminated string starting at"));
            };
            let chunk = std::str::from_utf8(&self.s[self.pos..self.pos + run])
                .map_err(|_| self.err("Invalid UTF-8"))?;
            out.push_str(chunk);
            self.pos += run;
            match self.s[self.pos] {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.err("Unterminated string starting at"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    return Err(self.err("Unpaired surrogate in string"));
                                }
                            } else {
                                hi
                            };
                            out.push(
                                char::from_u32(code)
                                    .ok_or_else(|| self.err("Unpaired surrogate in string"))?,
                            );
                        }
                        _ => {
                            self.pos -= 2;
                            return Err(self.err("Invalid \\escape"));
                        }
                    }
                }
                _ => return Err(self.err("Invalid control character at")),
            }
        }
    }

    fn number(&mut self) -> Result<PyValue, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - s
        };
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => {
                self.pos = start;
                return Err(self.err("Expecting value"));
            }
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') && matches!(self.s.get(self.pos + 1), Some(b'0'..=b'9')) {
            self.pos += 1;
            digits(self);
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let text = std::str::from_utf8(&self.s[start..self.pos])
            .map_err(|_| self.err("Expecting value"))?;
        if is_float {
            return text
                .parse::<f64>()
                .map(PyValue::Float)
                .map_err(|_| self.err("Expecting value"));
        }
        if let Ok(i) = text.parse::<i64>() {
            return Ok(PyValue::Int(i));
        }
        if text.len() > 4300 {
            return Err(self.err("Exceeds the limit (4300 digits) for integer string conversion"));
        }
        BigInt::parse_bytes(text.as_bytes(), 10)
            .map(PyValue::BigInt)
            .ok_or_else(|| self.err("Expecting value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Test-only: the differential tests borrow pickle's python3 runner and expressions.
    use crate::rq::pickle::python_tests::python;

    #[test]
    fn float_repr_matches_python_rules() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (2.75, "2.75"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1.5e-7, "1.5e-07"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (123456789.125, "123456789.125"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:e}");
        }
    }

    #[test]
    fn repr_of_containers_and_strings() {
        let s = |x: &str| PyValue::Str(x.into());
        assert_eq!(PyValue::Tuple(vec![s("single")]).repr(), "('single',)");
        assert_eq!(PyValue::Tuple(vec![]).repr(), "()");
        assert_eq!(PyValue::Set(vec![]).repr(), "set()");
        assert_eq!(
            PyValue::FrozenSet(vec![PyValue::Int(1)]).repr(),
            "frozenset({1})"
        );
        assert_eq!(s("it's").repr(), r#""it's""#);
        assert_eq!(s("it's \"x\"").repr(), r#"'it\'s "x"'"#);
        assert_eq!(
            s("a\u{0}\u{7f}\u{a0}é\u{2028}😀").repr(),
            r"'a\x00\x7f\xa0é\u2028😀'"
        );
        assert_eq!(
            PyValue::Bytes(b"\x00\xff'".to_vec()).repr(),
            r#"b"\x00\xff'""#
        );
        assert_eq!(
            PyValue::ByteArray(b"ab".to_vec()).repr(),
            "bytearray(b'ab')"
        );
        assert_eq!(
            PyValue::str_dict([("a", PyValue::None)]).repr(),
            "{'a': None}"
        );
        assert_eq!(
            PyValue::TimeDelta {
                days: -1,
                seconds: 86399,
                microseconds: 0
            }
            .repr(),
            "datetime.timedelta(days=-1, seconds=86399)"
        );
        let dt = PyDateTime {
            year: 2024,
            month: 1,
            day: 2,
            hour: 0,
            minute: 0,
            second: 0,
            microsecond: 0,
            utc_offset_seconds: Some(-3600),
        };
        assert_eq!(
            PyValue::DateTime(dt).repr(),
            "datetime.datetime(2024, 1, 2, 0, 0, tzinfo=datetime.timezone(datetime.timedelta(days=-1, seconds=82800)))"
        );
    }

    /// Random bit patterns: our float repr equals CPython's.
    #[test]
    fn float_repr_differential() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut floats = Vec::new();
        for i in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mix raw bit patterns with "human" decimals.
            floats.push(if i % 2 == 0 {
                f64::from_bits(x)
            } else {
                (x % 2_000_000) as f64 / 1000.0 - 1000.0
            });
        }
        let input: String = floats
            .iter()
            .map(|f| format!("{:016x}\n", f.to_bits()))
            .collect();
        let script = "import sys, struct\nfor l in sys.stdin:\n    print(repr(struct.unpack('>d', bytes.fromhex(l.strip()))[0]))\n";
        let Some(out) = python(script, &input) else {
            return;
        };
        for (f, want) in floats.iter().zip(out.lines()) {
            assert_eq!(float_repr(*f), want, "{:016x}", f.to_bits());
        }
    }

    /// Every JSON-able expression: `to_json_string` is byte-identical to `json.dumps`, and
    /// `from_json_str` reads `json.dumps` output to the repr `json.loads` gives.
    #[test]
    fn json_differential() {
        let exprs = crate::rq::pickle::python_tests::EXPRS;
        let script = "import sys, pickle, json, binascii, datetime, decimal, uuid\nfor line in sys.stdin:\n    v = eval(line)\n    try:\n        d = json.dumps(v)\n    except (TypeError, ValueError) as e:\n        print('ERR'); print(type(e).__name__ + ': ' + str(e)); print(binascii.hexlify(pickle.dumps(v)).decode()); continue\n    print(d); print(repr(json.loads(d))); print(binascii.hexlify(pickle.dumps(v)).decode())\n";
        let Some(out) = python(script, &(exprs.join("\n") + "\n")) else {
            return;
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), exprs.len() * 3);
        let mut ok = 0;
        for (i, expr) in exprs.iter().enumerate() {
            let (a, b, h) = (lines[i * 3], lines[i * 3 + 1], lines[i * 3 + 2]);
            let v = crate::rq::pickle::loads(&hex::decode(h).expect("hex")).expect("decode");
            if a == "ERR" {
                let e = v.to_json_string().expect_err(expr);
                assert_eq!(format!("TypeError: {e}"), b, "{expr}");
                continue;
            }
            assert_eq!(v.to_json_string().as_deref(), Ok(a), "{expr}");
            assert_eq!(
                PyValue::from_json_str(a).map(|v| v.repr()),
                Ok(b.to_string()),
                "{expr}"
            );
            ok += 1;
        }
        assert!(ok > 60, "{ok}");
    }

    #[test]
    fn json_parse_details() {
        let v = PyValue::from_json_str(r#" {"b": 1, "a": [1.5, -0, 1e2, 123456789012345678901234567890], "b": "x\u00e9\ud83d\ude00"} "#).unwrap();
        assert_eq!(
            v.repr(),
            "{'b': 'xé😀', 'a': [1.5, 0, 100.0, 123456789012345678901234567890]}"
        );
        assert_eq!(
            PyValue::from_json_str("[NaN, Infinity, -Infinity]")
                .unwrap()
                .repr(),
            "[nan, inf, -inf]"
        );
        for bad in [
            "",
            "[1,]",
            "{\"a\" 1}",
            "\"a\nb\"",
            "[1] x",
            "01",
            "\"\\x\"",
            "\"\\ud800\"",
            "{1: 2}",
            "tru",
        ] {
            assert!(PyValue::from_json_str(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(10_000);
        assert!(matches!(
            PyValue::from_json_str(&deep),
            Err(JsonError::TooDeep(_))
        ));
        assert_eq!(
            PyValue::from_json_str("[1, 2").unwrap_err().to_string(),
            "Expecting ',' delimiter: line 1 column 6 (char 5)"
        );
    }
}
