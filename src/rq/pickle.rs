//! Python pickle (protocols 2–5) to and from [`PyValue`], without running code (rq-wire.md §11).
//!
//! [`loads`] is a bounded stack machine: classes resolve only against a small whitelist (datetime,
//! decimal, uuid, set/frozenset/bytearray/bytes, `_codecs.encode`), anything else is an error that
//! names the class, and every read, the memo, nesting and output size are capped. [`dumps`] writes
//! protocol 4 without memo or frames, which every Python that RQ supports reads back.
//!
//! Why not the `serde-pickle` crate: RQ payloads routinely carry `datetime`, `date`, `time`,
//! `timedelta`, `Decimal` and `UUID` arguments, which are pickled as class references with
//! constructor arguments (`GLOBAL`/`REDUCE`, `NEWOBJ`); serde-pickle refuses every class, so those
//! jobs could not run. It also has no caps on memo size, nesting or output, which a decoder of
//! bytes anyone can put in Redis needs. Here the classes are a short whitelist mapped to
//! [`PyValue`] variants, and every other class is refused by name without running anything.

use std::collections::HashMap;

use num_bigint::BigInt;

use crate::value::{PyDateTime, PyValue};

/// Deepest container nesting accepted (Python's own recursion limit is about 1000).
pub const MAX_DEPTH: usize = 200;
/// Most values (scalars and containers) one decoded result may hold.
pub const MAX_ITEMS: usize = 4_000_000;
/// Most str/bytes bytes one decoded result may hold (shared memo references count every time).
pub const MAX_OUTPUT_BYTES: usize = 256 << 20;
/// Most memo entries.
pub const MAX_MEMO: usize = 1 << 22;
/// Longest int accepted, in bytes of two's complement (Python itself refuses to print ints
/// longer than 4300 digits).
pub const MAX_INT_BYTES: usize = 64 << 10;

/// Why a pickle could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("pickle data was truncated")]
    Truncated,
    #[error("unsupported pickle protocol: {0}")]
    UnsupportedProtocol(u8),
    #[error("invalid load key, '\\x{0:02x}'")]
    InvalidOpcode(u8),
    #[error("unsupported pickle opcode {0}")]
    UnsupportedOpcode(&'static str),
    #[error(
        "unsupported class {module}.{name}: only plain data, datetime, decimal and uuid values can be decoded"
    )]
    UnsupportedGlobal { module: String, name: String },
    #[error("unpickling stack underflow")]
    StackUnderflow,
    #[error("could not find mark")]
    MarkNotFound,
    #[error("memo value not found at index {0}")]
    MemoMissing(u64),
    #[error("pickle too large: {0} limit exceeded")]
    LimitExceeded(&'static str),
    #[error("invalid pickle data: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, PickleError>;

fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(PickleError::Invalid(msg.into()))
}

/// A whitelisted class or function that REDUCE/NEWOBJ may call.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    DateTime,
    Date,
    Time,
    TimeDelta,
    TimeZone,
    Decimal,
    Uuid,
    Set,
    FrozenSet,
    ByteArray,
    Bytes,
    CodecsEncode,
    /// `builtins.object`, only meaningful as the base argument of `_reconstructor`.
    Object,
    /// `copyreg._reconstructor(cls, object, None)`, how protocols 0 and 1 create a `uuid.UUID`.
    Reconstructor,
}

impl Global {
    fn qualname(self) -> &'static str {
        match self {
            Global::DateTime => "datetime.datetime",
            Global::Date => "datetime.date",
            Global::Time => "datetime.time",
            Global::TimeDelta => "datetime.timedelta",
            Global::TimeZone => "datetime.timezone",
            Global::Decimal => "decimal.Decimal",
            Global::Uuid => "uuid.UUID",
            Global::Set => "builtins.set",
            Global::FrozenSet => "builtins.frozenset",
            Global::ByteArray => "builtins.bytearray",
            Global::Bytes => "builtins.bytes",
            Global::CodecsEncode => "_codecs.encode",
            Global::Object => "builtins.object",
            Global::Reconstructor => "copyreg._reconstructor",
        }
    }
}

/// What the decoder may meet as a global: a callable, or a ready value (`datetime.timezone.utc`).
enum Resolved {
    Callable(Global),
    Tz(i32),
}

fn resolve_global(module: &str, name: &str) -> Result<Resolved> {
    use Global::*;
    let g = match (module, name) {
        ("datetime", "datetime") => DateTime,
        ("datetime", "date") => Date,
        ("datetime", "time") => Time,
        ("datetime", "timedelta") => TimeDelta,
        ("datetime", "timezone") => TimeZone,
        ("datetime", "timezone.utc") => return Ok(Resolved::Tz(0)),
        ("decimal", "Decimal") => Decimal,
        ("uuid", "UUID") => Uuid,
        ("builtins" | "__builtin__", "set") => Set,
        ("builtins" | "__builtin__", "frozenset") => FrozenSet,
        ("builtins" | "__builtin__", "bytearray") => ByteArray,
        ("builtins" | "__builtin__", "bytes") => Bytes,
        ("_codecs", "encode") => CodecsEncode,
        ("builtins" | "__builtin__", "object") => Object,
        ("copyreg" | "copy_reg", "_reconstructor") => Reconstructor,
        _ => {
            return Err(PickleError::UnsupportedGlobal {
                module: module.to_string(),
                name: name.to_string(),
            });
        }
    };
    Ok(Resolved::Callable(g))
}

/// One object under construction. Containers refer to other nodes by index, so memo references
/// share mutations the way Python objects do.
enum Node {
    Val(PyValue),
    Tuple(Vec<usize>),
    List(Vec<usize>),
    Dict(Vec<(usize, usize)>),
    Set(Vec<usize>),
    FrozenSet(Vec<usize>),
    Global(Global),
    /// A `datetime.timezone` with this UTC offset.
    Tz(i32),
    /// `uuid.UUID.__new__` result waiting for its BUILD state.
    PendingUuid,
    /// Already moved into the result.
    Taken,
}

struct Budget {
    items: usize,
    bytes: usize,
}

impl Budget {
    fn new() -> Self {
        Budget { items: 0, bytes: 0 }
    }

    fn charge(&mut self, items: usize, bytes: usize) -> Result<()> {
        self.items = self.items.saturating_add(items);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.items > MAX_ITEMS {
            return Err(PickleError::LimitExceeded("item count"));
        }
        if self.bytes > MAX_OUTPUT_BYTES {
            return Err(PickleError::LimitExceeded("output size"));
        }
        Ok(())
    }
}

struct Unpickler<'a> {
    data: &'a [u8],
    pos: usize,
    nodes: Vec<Node>,
    stack: Vec<usize>,
    marks: Vec<usize>,
    memo: Memo,
    /// Per node: whether it may be referenced more than once (memo fetch, DUP, shared children),
    /// so the result must copy it rather than move it out.
    shared: Vec<bool>,
}

/// The memo: dense keys (MEMOIZE, and PUT/BINPUT as Python writes them) in a vector, anything
/// else in a map.
#[derive(Default)]
struct Memo {
    dense: Vec<usize>,
    sparse: HashMap<u64, usize>,
    count: usize,
}

/// Marks an unused slot of [`Memo::dense`].
const EMPTY_SLOT: usize = usize::MAX;

impl Memo {
    fn len(&self) -> usize {
        self.count
    }

    fn get(&self, key: u64) -> Option<usize> {
        let dense = usize::try_from(key)
            .ok()
            .and_then(|k| self.dense.get(k))
            .copied();
        match dense {
            Some(EMPTY_SLOT) => None,
            Some(id) => Some(id),
            None => self.sparse.get(&key).copied(),
        }
    }

    fn insert(&mut self, key: u64, id: usize) -> Result<()> {
        let k = usize::try_from(key).unwrap_or(usize::MAX);
        if let Some(slot) = self.dense.get_mut(k) {
            if *slot == EMPTY_SLOT {
                self.count += 1;
            }
            *slot = id;
            return Ok(());
        }
        let new = !self.sparse.contains_key(&key);
        if new && self.count >= MAX_MEMO {
            return Err(PickleError::LimitExceeded("memo size"));
        }
        if k < self.dense.len() + 1024 && self.sparse.is_empty() {
            self.dense.resize(k, EMPTY_SLOT);
            self.dense.push(id);
        } else {
            self.sparse.insert(key, id);
        }
        if new {
            self.count += 1;
        }
        Ok(())
    }
}

/// Decode one pickle into a [`PyValue`]. Never runs code and never panics; classes outside the
/// whitelist give [`PickleError::UnsupportedGlobal`].
pub fn loads(bytes: &[u8]) -> std::result::Result<PyValue, PickleError> {
    let mut u = Unpickler {
        data: bytes,
        pos: 0,
        nodes: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Memo::default(),
        shared: Vec::new(),
    };
    let top = u.run()?;
    u.take_value(top, 0, &mut Budget::new())
}

impl<'a> Unpickler<'a> {
    // ---- input ----

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take_array::<1>()?[0])
    }

    fn u32_len(&mut self) -> Result<usize> {
        let n = u32::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| PickleError::Truncated)
    }

    fn u64_len(&mut self) -> Result<usize> {
        let n = u64::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| PickleError::Truncated)
    }

    fn i32_len(&mut self) -> Result<usize> {
        let n = i32::from_le_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| PickleError::Invalid("negative byte count".into()))
    }

    /// A text line (protocol 0 style argument), without its `\n`.
    fn line(&mut self) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).ok_or(PickleError::Truncated)?;
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated)?;
        let s = self.take(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn line_str(&mut self) -> Result<&'a str> {
        let l = self.line()?;
        std::str::from_utf8(l).map_err(|_| PickleError::Invalid("line is not UTF-8".into()))
    }

    // ---- stack ----

    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn new_node(&mut self, n: Node) -> Result<usize> {
        if self.nodes.len() >= MAX_ITEMS {
            return Err(PickleError::LimitExceeded("item count"));
        }
        self.nodes.push(n);
        self.shared.push(false);
        Ok(self.nodes.len() - 1)
    }

    fn push_id(&mut self, id: usize) -> Result<()> {
        if self.stack.len() >= MAX_ITEMS {
            return Err(PickleError::LimitExceeded("stack size"));
        }
        self.stack.push(id);
        Ok(())
    }

    fn push(&mut self, n: Node) -> Result<()> {
        let id = self.new_node(n)?;
        self.push_id(id)
    }

    fn push_val(&mut self, v: PyValue) -> Result<()> {
        self.push(Node::Val(v))
    }

    fn pop(&mut self) -> Result<usize> {
        if self.stack.len() <= self.fence() {
            return Err(PickleError::StackUnderflow);
        }
        self.stack.pop().ok_or(PickleError::StackUnderflow)
    }

    fn top(&self) -> Result<usize> {
        if self.stack.len() <= self.fence() {
            return Err(PickleError::StackUnderflow);
        }
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::StackUnderflow)
    }

    fn pop_mark(&mut self) -> Result<Vec<usize>> {
        let base = self.marks.pop().ok_or(PickleError::MarkNotFound)?;
        if base > self.stack.len() {
            return Err(PickleError::MarkNotFound);
        }
        Ok(self.stack.split_off(base))
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(key, top)
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let id = self.memo.get(key).ok_or(PickleError::MemoMissing(key))?;
        self.mark_shared(id);
        self.push_id(id)
    }

    fn node(&self, id: usize) -> Result<&Node> {
        self.nodes
            .get(id)
            .ok_or_else(|| PickleError::Invalid("dangling reference".into()))
    }

    fn node_mut(&mut self, id: usize) -> Result<&mut Node> {
        self.nodes
            .get_mut(id)
            .ok_or_else(|| PickleError::Invalid("dangling reference".into()))
    }

    fn str_of(&self, id: usize) -> Result<String> {
        match self.node(id)? {
            Node::Val(PyValue::Str(s)) => Ok(s.clone()),
            _ => invalid("STACK_GLOBAL needs str module and name"),
        }
    }

    // ---- the machine ----

    fn run(&mut self) -> Result<usize> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(PickleError::UnsupportedProtocol(v));
                    }
                }
                0x95 => {
                    let n = self.u64_len()?;
                    if n > self.data.len().saturating_sub(self.pos) {
                        return Err(PickleError::Truncated);
                    }
                }
                b'.' => return self.pop(),
                b'(' => {
                    if self.marks.len() >= MAX_ITEMS {
                        return Err(PickleError::LimitExceeded("mark count"));
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    if self.marks.last() == Some(&self.stack.len()) {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let t = self.top()?;
                    self.mark_shared(t);
                    self.push_id(t)?;
                }
                0x94 => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                b'q' => {
                    let k = self.u8()?;
                    self.memo_put(u64::from(k))?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_put(u64::from(k))?;
                }
                b'p' => {
                    let k = parse_memo_key(self.line()?)?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()?;
                    self.memo_get(u64::from(k))?;
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.take_array()?);
                    self.memo_get(u64::from(k))?;
                }
                b'g' => {
                    let k = parse_memo_key(self.line()?)?;
                    self.memo_get(k)?;
                }
                b'N' => self.push_val(PyValue::None)?,
                0x88 => self.push_val(PyValue::Bool(true))?,
                0x89 => self.push_val(PyValue::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.push_val(PyValue::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.push_val(int_from_le(b))?;
                }
                0x8b => {
                    let n = self.i32_len()?;
                    if n > MAX_INT_BYTES {
                        return Err(PickleError::LimitExceeded("int size"));
                    }
                    let b = self.take(n)?;
                    self.push_val(int_from_le(b))?;
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l {
                        b"00" => PyValue::Bool(false),
                        b"01" => PyValue::Bool(true),
                        _ => parse_decimal_int(l)?,
                    };
                    self.push_val(v)?;
                }
                b'L' => {
                    let l = self.line()?;
                    let l = l.strip_suffix(b"L").unwrap_or(l);
                    let v = parse_decimal_int(l)?;
                    self.push_val(v)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.push_val(PyValue::Float(v))?;
                }
                b'F' => {
                    let l = self.line_str()?;
                    let v: f64 = l
                        .trim()
                        .parse()
                        .map_err(|_| PickleError::Invalid(format!("bad float {l:?}")))?;
                    self.push_val(PyValue::Float(v))?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    self.unicode(n)?;
                }
                b'X' => {
                    let n = self.u32_len()?;
                    self.unicode(n)?;
                }
                0x8d => {
                    let n = self.u64_len()?;
                    self.unicode(n)?;
                }
                b'V' => {
                    let l = self.line()?;
                    let s = raw_unicode_escape_decode(l)?;
                    self.push_val(PyValue::Str(s))?;
                }
                b'C' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::Bytes(b))?;
                }
                b'B' => {
                    let n = self.u32_len()?;
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::Bytes(b))?;
                }
                0x8e => {
                    let n = self.u64_len()?;
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::Bytes(b))?;
                }
                0x96 => {
                    let n = self.u64_len()?;
                    let b = self.take(n)?.to_vec();
                    self.push_val(PyValue::ByteArray(b))?;
                }
                b'U' => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.push_val(py2_str(b))?;
                }
                b'T' => {
                    let n = self.i32_len()?;
                    let b = self.take(n)?;
                    self.push_val(py2_str(b))?;
                }
                b'S' => {
                    let l = self.line()?;
                    let b = string_escape_decode(l)?;
                    self.push_val(py2_str(&b))?;
                }
                b')' => self.push(Node::Tuple(Vec::new()))?,
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    let mut items = vec![0; n];
                    for slot in items.iter_mut().rev() {
                        *slot = self.pop()?;
                    }
                    self.push(Node::Tuple(items))?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Node::Tuple(items))?;
                }
                b']' => self.push(Node::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Node::List(items))?;
                }
                b'a' => {
                    let v = self.pop()?;
                    let t = self.top()?;
                    match self.node_mut(t)? {
                        Node::List(l) => l.push(v),
                        _ => return invalid("APPEND to a non-list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    match self.node_mut(t)? {
                        Node::List(l) => l.extend(items),
                        _ => return invalid("APPENDS to a non-list"),
                    }
                }
                b'}' => self.push(Node::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs_of(&items)?;
                    self.push(Node::Dict(pairs))?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let t = self.top()?;
                    self.dict_insert(t, vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs_of(&items)?;
                    let t = self.top()?;
                    self.dict_insert(t, pairs)?;
                }
                0x8f => self.push(Node::Set(Vec::new()))?,
                0x90 => {
                    let items = self.pop_mark()?;
                    let t = self.top()?;
                    match self.node_mut(t)? {
                        Node::Set(s) => s.extend(items),
                        _ => return invalid("ADDITEMS to a non-set"),
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Node::FrozenSet(items))?;
                }
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.push_global(module, name)?;
                }
                0x93 => {
                    let name_id = self.pop()?;
                    let module_id = self.pop()?;
                    let name = self.str_of(name_id)?;
                    let module = self.str_of(module_id)?;
                    self.push_global(&module, &name)?;
                }
                b'i' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    return Err(PickleError::UnsupportedGlobal {
                        module: module.into(),
                        name: name.into(),
                    });
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let node = self.call(callable, args, false)?;
                    self.push(node)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let node = self.call(cls, args, true)?;
                    self.push(node)?;
                }
                0x92 => {
                    let kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    match self.node(kwargs)? {
                        Node::Dict(d) if d.is_empty() => {}
                        _ => return invalid("NEWOBJ_EX with keyword arguments"),
                    }
                    let node = self.call(cls, args, true)?;
                    self.push(node)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.top()?;
                    self.build(obj, state)?;
                }
                b'o' => return Err(PickleError::UnsupportedOpcode("OBJ")),
                b'P' | b'Q' => return Err(PickleError::UnsupportedOpcode("PERSID")),
                0x82..=0x84 => return Err(PickleError::UnsupportedOpcode("EXT")),
                0x97 | 0x98 => return Err(PickleError::UnsupportedOpcode("out-of-band buffer")),
                other => return Err(PickleError::InvalidOpcode(other)),
            }
        }
    }

    fn unicode(&mut self, n: usize) -> Result<()> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| PickleError::Invalid("str is not valid UTF-8".into()))?;
        self.push_val(PyValue::Str(s.to_string()))
    }

    fn dict_insert(&mut self, dict: usize, pairs: Vec<(usize, usize)>) -> Result<()> {
        match self.node_mut(dict)? {
            Node::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            _ => invalid("SETITEM on a non-dict"),
        }
    }

    fn push_global(&mut self, module: &str, name: &str) -> Result<()> {
        match resolve_global(module, name)? {
            Resolved::Callable(g) => self.push(Node::Global(g)),
            Resolved::Tz(off) => self.push(Node::Tz(off)),
        }
    }

    /// A small value used as a constructor argument.
    fn arg(&self, id: usize) -> Result<PyValue> {
        self.materialize(id, 0, &mut Budget::new())
    }

    fn tz_arg(&self, id: Option<&usize>) -> Result<Option<i32>> {
        let Some(&id) = id else { return Ok(None) };
        match self.node(id)? {
            Node::Tz(off) => Ok(Some(*off)),
            Node::Val(PyValue::None) => Ok(None),
            _ => invalid("unsupported tzinfo (only datetime.timezone)"),
        }
    }

    /// Elements of an iterable argument, as node ids (for set/frozenset).
    fn iterable_ids(&mut self, id: usize) -> Result<Vec<usize>> {
        let ids = match self.node(id)? {
            Node::List(v) | Node::Tuple(v) | Node::Set(v) | Node::FrozenSet(v) => v.clone(),
            _ => return invalid("set() argument must be a list, tuple or set"),
        };
        // The elements now belong to two containers.
        for &i in &ids {
            self.mark_shared(i);
        }
        Ok(ids)
    }

    fn mark_shared(&mut self, id: usize) {
        if let Some(flag) = self.shared.get_mut(id) {
            *flag = true;
        }
    }

    /// Like [`Unpickler::materialize`], but moves nodes that nothing else references out of the
    /// graph instead of copying them (the common case, and most of the cost for large payloads).
    fn take_value(&mut self, id: usize, depth: usize, budget: &mut Budget) -> Result<PyValue> {
        if self.shared.get(id).copied().unwrap_or(true) {
            return self.materialize(id, depth, budget);
        }
        if depth > MAX_DEPTH {
            return Err(PickleError::LimitExceeded(
                "nesting depth (or a recursive structure)",
            ));
        }
        budget.charge(1, 0)?;
        let node = std::mem::replace(self.node_mut(id)?, Node::Taken);
        let mut many = |ids: Vec<usize>, budget: &mut Budget| -> Result<Vec<PyValue>> {
            ids.into_iter()
                .map(|i| self.take_value(i, depth + 1, budget))
                .collect()
        };
        Ok(match node {
            Node::Val(v) => {
                budget.charge(0, leaf_bytes(&v))?;
                v
            }
            Node::Tuple(ids) => PyValue::Tuple(many(ids, budget)?),
            Node::List(ids) => PyValue::List(many(ids, budget)?),
            Node::Set(ids) => PyValue::Set(hashable_all(many(ids, budget)?)?),
            Node::FrozenSet(ids) => PyValue::FrozenSet(hashable_all(many(ids, budget)?)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.take_value(k, depth + 1, budget)?;
                    check_hashable(&k)?;
                    let v = self.take_value(v, depth + 1, budget)?;
                    out.push((k, v));
                }
                PyValue::Dict(out)
            }
            other => {
                // Put it back so the error path reads it like materialize does.
                *self.node_mut(id)? = other;
                return self.materialize(id, depth, budget);
            }
        })
    }

    /// REDUCE / NEWOBJ on a whitelisted global.
    fn call(&mut self, callable: usize, args: usize, newobj: bool) -> Result<Node> {
        let g = match self.node(callable)? {
            Node::Global(g) => *g,
            _ => return invalid("REDUCE on something that is not a whitelisted class"),
        };
        let a: Vec<usize> = match self.node(args)? {
            Node::Tuple(ids) => ids.clone(),
            _ => return invalid(format!("{} arguments must be a tuple", g.qualname())),
        };
        let bad = |what: &str| {
            PickleError::Invalid(format!("bad arguments for {}: {what}", g.qualname()))
        };
        match g {
            Global::Uuid if newobj && a.is_empty() => Ok(Node::PendingUuid),
            Global::Reconstructor => match a.as_slice() {
                [cls, base, state] => {
                    let cls_ok = matches!(self.node(*cls)?, Node::Global(Global::Uuid));
                    let base_ok = matches!(self.node(*base)?, Node::Global(Global::Object));
                    let state_ok = matches!(self.node(*state)?, Node::Val(PyValue::None));
                    if cls_ok && base_ok && state_ok {
                        Ok(Node::PendingUuid)
                    } else {
                        Err(bad("only uuid.UUID can be reconstructed"))
                    }
                }
                _ => Err(bad("expected (cls, base, state)")),
            },
            Global::Object => Err(bad("object instances carry no data")),
            Global::Uuid => match a.as_slice() {
                [s] => match self.arg(*s)? {
                    PyValue::Str(s) => {
                        let u = uuid::Uuid::parse_str(s.trim())
                            .map_err(|_| bad("not a UUID string"))?;
                        Ok(Node::Val(PyValue::Uuid(u)))
                    }
                    _ => Err(bad("expected a str")),
                },
                _ => Err(bad("expected one argument")),
            },
            Global::DateTime | Global::Time | Global::Date => {
                let first = a.first().map(|id| self.arg(*id)).transpose()?;
                let packed = match &first {
                    Some(PyValue::Bytes(b)) => Some(b.clone()),
                    Some(PyValue::Str(s)) => {
                        Some(latin1_encode(s).ok_or_else(|| bad("state is not latin-1"))?)
                    }
                    _ => None,
                };
                let v = match packed {
                    Some(state) => {
                        if a.len() > 2 {
                            return Err(bad("too many arguments"));
                        }
                        let tz = self.tz_arg(a.get(1))?;
                        unpack_temporal(g, &state, tz)?
                    }
                    None => {
                        let max = match g {
                            Global::Date => 3,
                            Global::Time => 4,
                            _ => 7,
                        };
                        let mut ints = Vec::new();
                        let mut tz = None;
                        for (i, id) in a.iter().enumerate() {
                            if i == max {
                                tz = self.tz_arg(Some(id))?;
                                if i + 1 != a.len() {
                                    return Err(bad("too many arguments"));
                                }
                                break;
                            }
                            match self.arg(*id)? {
                                PyValue::Int(n) => ints.push(n),
                                _ => return Err(bad("expected ints")),
                            }
                        }
                        temporal_from_ints(g, &ints, tz)?
                    }
                };
                Ok(Node::Val(v))
            }
            Global::TimeDelta => {
                if a.len() > 3 {
                    return Err(bad("too many arguments"));
                }
                let mut parts = [0i64; 3];
                for (slot, id) in parts.iter_mut().zip(&a) {
                    match self.arg(*id)? {
                        PyValue::Int(n) => *slot = n,
                        _ => return Err(bad("expected ints")),
                    }
                }
                let v = normalize_timedelta(parts[0], parts[1], parts[2])
                    .ok_or_else(|| bad("out of range"))?;
                Ok(Node::Val(v))
            }
            Global::TimeZone => {
                let (off, name) = match a.as_slice() {
                    [o] => (self.arg(*o)?, None),
                    [o, n] => (self.arg(*o)?, Some(self.arg(*n)?)),
                    _ => return Err(bad("expected an offset")),
                };
                if !matches!(name, None | Some(PyValue::Str(_))) {
                    return Err(bad("name must be a str"));
                }
                match off {
                    PyValue::TimeDelta {
                        days,
                        seconds,
                        microseconds: 0,
                    } => match i32::try_from(days * 86_400 + seconds) {
                        Ok(total) if total.abs() < 86_400 => Ok(Node::Tz(total)),
                        _ => Err(bad("offset must be strictly within a day")),
                    },
                    PyValue::TimeDelta { .. } => {
                        Err(bad("sub-second UTC offsets are not supported"))
                    }
                    _ => Err(bad("offset must be a timedelta")),
                }
            }
            Global::Decimal => match a.as_slice() {
                [] => Ok(Node::Val(PyValue::Decimal("0".into()))),
                [x] => match self.arg(*x)? {
                    PyValue::Str(s) => {
                        let t = s.trim();
                        let ok = !t.is_empty()
                            && t.len() <= 10_000
                            && t.bytes().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.' | b'_')
                            });
                        if !ok {
                            return Err(bad("not a decimal string"));
                        }
                        Ok(Node::Val(PyValue::Decimal(t.to_string())))
                    }
                    PyValue::Int(n) => Ok(Node::Val(PyValue::Decimal(n.to_string()))),
                    PyValue::BigInt(n) => Ok(Node::Val(PyValue::Decimal(n.to_string()))),
                    _ => Err(bad("expected a str")),
                },
                _ => Err(bad("expected one argument")),
            },
            Global::Set | Global::FrozenSet => {
                let items = match a.as_slice() {
                    [] => Vec::new(),
                    [x] => self.iterable_ids(*x)?,
                    _ => return Err(bad("expected one argument")),
                };
                Ok(if g == Global::Set {
                    Node::Set(items)
                } else {
                    Node::FrozenSet(items)
                })
            }
            Global::ByteArray | Global::Bytes | Global::CodecsEncode => {
                let vals = a
                    .iter()
                    .map(|id| self.arg(*id))
                    .collect::<Result<Vec<_>>>()?;
                let bytes = match vals.as_slice() {
                    [] if g != Global::CodecsEncode => Vec::new(),
                    [PyValue::Bytes(b)] | [PyValue::ByteArray(b)] if g != Global::CodecsEncode => {
                        b.clone()
                    }
                    [PyValue::Str(s)] if g == Global::CodecsEncode => s.as_bytes().to_vec(),
                    [PyValue::Str(s), PyValue::Str(enc)] => {
                        encode_str(s, enc).ok_or_else(|| bad("unsupported encoding"))?
                    }
                    [PyValue::List(items)] if g != Global::CodecsEncode => items
                        .iter()
                        .map(|v| match v {
                            PyValue::Int(n) => u8::try_from(*n).ok(),
                            _ => None,
                        })
                        .collect::<Option<Vec<u8>>>()
                        .ok_or_else(|| bad("bytes must be in range(0, 256)"))?,
                    _ => return Err(bad("unsupported arguments")),
                };
                Ok(Node::Val(if g == Global::ByteArray {
                    PyValue::ByteArray(bytes)
                } else {
                    PyValue::Bytes(bytes)
                }))
            }
        }
    }

    fn build(&mut self, obj: usize, state: usize) -> Result<()> {
        match self.node(obj)? {
            Node::PendingUuid => {}
            Node::Global(g) => return invalid(format!("BUILD on {}", g.qualname())),
            _ => return invalid("BUILD is only supported for uuid.UUID"),
        }
        let mut st = self.arg(state)?;
        if let PyValue::Tuple(mut t) = st {
            // (state, slotstate): UUID uses __slots__, so the dict may come second.
            st = match (t.len(), t.pop(), t.pop()) {
                (2, Some(slots @ PyValue::Dict(_)), Some(PyValue::None)) => slots,
                (2, Some(PyValue::None), Some(d @ PyValue::Dict(_))) => d,
                _ => return invalid("unsupported uuid.UUID state"),
            };
        }
        let PyValue::Dict(entries) = st else {
            return invalid("uuid.UUID state must be a dict");
        };
        let mut int = None;
        for (k, v) in entries {
            match (k, v) {
                (PyValue::Str(k), PyValue::Int(n)) if k == "int" => int = u128::try_from(n).ok(),
                (PyValue::Str(k), PyValue::BigInt(n)) if k == "int" => {
                    int = u128::try_from(&n).ok()
                }
                (PyValue::Str(k), _) if k == "is_safe" => {}
                _ => return invalid("unsupported uuid.UUID state"),
            }
        }
        let n = int
            .ok_or_else(|| PickleError::Invalid("uuid.UUID state lacks a 128-bit 'int'".into()))?;
        *self.node_mut(obj)? = Node::Val(PyValue::Uuid(uuid::Uuid::from_u128(n)));
        Ok(())
    }

    /// Turn the node graph below `id` into an owned value, within the nesting and size limits.
    fn materialize(&self, id: usize, depth: usize, budget: &mut Budget) -> Result<PyValue> {
        if depth > MAX_DEPTH {
            return Err(PickleError::LimitExceeded(
                "nesting depth (or a recursive structure)",
            ));
        }
        budget.charge(1, 0)?;
        let many = |ids: &[usize], budget: &mut Budget| -> Result<Vec<PyValue>> {
            ids.iter()
                .map(|i| self.materialize(*i, depth + 1, budget))
                .collect()
        };
        Ok(match self.node(id)? {
            Node::Val(v) => {
                budget.charge(0, leaf_bytes(v))?;
                v.clone()
            }
            Node::Tuple(ids) => PyValue::Tuple(many(ids, budget)?),
            Node::List(ids) => PyValue::List(many(ids, budget)?),
            Node::Set(ids) => PyValue::Set(hashable_all(many(ids, budget)?)?),
            Node::FrozenSet(ids) => PyValue::FrozenSet(hashable_all(many(ids, budget)?)?),
            Node::Dict(pairs) => {
                let mut out = Vec::with_capacity(pairs.len());
                for (k, v) in pairs {
                    let k = self.materialize(*k, depth + 1, budget)?;
                    check_hashable(&k)?;
                    let v = self.materialize(*v, depth + 1, budget)?;
                    out.push((k, v));
                }
                PyValue::Dict(out)
            }
            Node::Global(g) => {
                let (module, name) = g
                    .qualname()
                    .split_once('.')
                    .unwrap_or(("builtins", g.qualname()));
                return invalid(format!(
                    "the class {module}.{name} itself cannot be a value"
                ));
            }
            Node::Tz(_) => return invalid("a datetime.timezone cannot be a value on its own"),
            Node::PendingUuid => return invalid("uuid.UUID without state"),
            Node::Taken => return invalid("object referenced twice without the memo"),
        })
    }
}

fn leaf_bytes(v: &PyValue) -> usize {
    match v {
        PyValue::Str(s) | PyValue::Decimal(s) => s.len(),
        PyValue::Bytes(b) | PyValue::ByteArray(b) => b.len(),
        _ => 0,
    }
}

fn pairs_of(items: &[usize]) -> Result<Vec<(usize, usize)>> {
    if !items.len().is_multiple_of(2) {
        return invalid("odd number of items for a dict");
    }
    Ok(items.chunks_exact(2).map(|c| (c[0], c[1])).collect())
}

fn check_hashable(v: &PyValue) -> Result<()> {
    match v {
        PyValue::List(_) | PyValue::Dict(_) | PyValue::Set(_) | PyValue::ByteArray(_) => {
            invalid(format!("unhashable type: '{}'", v.type_name()))
        }
        PyValue::Tuple(items) => items.iter().try_for_each(check_hashable),
        _ => Ok(()),
    }
}

fn hashable_all(items: Vec<PyValue>) -> Result<Vec<PyValue>> {
    items.iter().try_for_each(check_hashable)?;
    Ok(items)
}

fn parse_memo_key(line: &[u8]) -> Result<u64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| PickleError::Invalid("bad memo key".into()))
}

/// Little-endian two's complement, as LONG1/LONG4 carry it.
fn int_from_le(b: &[u8]) -> PyValue {
    if b.len() <= 8 {
        let mut buf = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            [0xffu8; 8]
        } else {
            [0u8; 8]
        };
        buf[..b.len()].copy_from_slice(b);
        return PyValue::Int(i64::from_le_bytes(buf));
    }
    normalize_int(BigInt::from_signed_bytes_le(b))
}

/// `Int` when it fits in i64, else `BigInt`.
pub(crate) fn normalize_int(n: BigInt) -> PyValue {
    match i64::try_from(&n) {
        Ok(i) => PyValue::Int(i),
        Err(_) => PyValue::BigInt(n),
    }
}

fn parse_decimal_int(text: &[u8]) -> Result<PyValue> {
    let t = std::str::from_utf8(text)
        .map_err(|_| PickleError::Invalid("bad int".into()))?
        .trim();
    if t.len() > MAX_INT_BYTES * 3 {
        return Err(PickleError::LimitExceeded("int size"));
    }
    if let Ok(i) = t.parse::<i64>() {
        return Ok(PyValue::Int(i));
    }
    let digits = t.strip_prefix('+').unwrap_or(t);
    BigInt::parse_bytes(digits.as_bytes(), 10)
        .map(normalize_int)
        .ok_or_else(|| PickleError::Invalid(format!("bad int {t:?}")))
}

/// A Python 2 `str`: text when it is UTF-8, bytes otherwise.
fn py2_str(b: &[u8]) -> PyValue {
    match std::str::from_utf8(b) {
        Ok(s) => PyValue::Str(s.to_string()),
        Err(_) => PyValue::Bytes(b.to_vec()),
    }
}

fn latin1_encode(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

fn encode_str(s: &str, encoding: &str) -> Option<Vec<u8>> {
    match encoding.to_ascii_lowercase().replace('_', "-").as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => latin1_encode(s),
        "utf-8" | "utf8" => Some(s.as_bytes().to_vec()),
        "ascii" | "us-ascii" => s.is_ascii().then(|| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// Protocol 0 `UNICODE` argument: latin-1 text with `\uXXXX` / `\UXXXXXXXX` escapes.
fn raw_unicode_escape_decode(b: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(char::from(b[i]));
            i += 1;
            continue;
        }
        let run = b[i..].iter().take_while(|&&c| c == b'\\').count();
        let next = b.get(i + run).copied();
        let digits = match next {
            Some(b'u') => 4,
            Some(b'U') => 8,
            _ => 0,
        };
        if run % 2 == 1 && digits > 0 {
            out.extend(std::iter::repeat_n('\\', run - 1));
            let start = i + run + 1;
            let hex = b
                .get(start..start + digits)
                .ok_or_else(|| PickleError::Invalid("truncated \\u escape".into()))?;
            let code = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .ok_or_else(|| PickleError::Invalid("bad \\u escape".into()))?;
            out.push(code);
            i = start + digits;
        } else {
            out.extend(std::iter::repeat_n('\\', run));
            i += run;
        }
    }
    Ok(out)
}

/// Protocol 0 `STRING` argument: a quoted Python 2 literal with backslash escapes.
fn string_escape_decode(line: &[u8]) -> Result<Vec<u8>> {
    let inner = match line {
        [q @ (b'\'' | b'"'), mid @ .., last] if last == q => mid,
        _ => return invalid("the STRING opcode argument must be quoted"),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return invalid("trailing backslash in STRING");
        };
        i += 1;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'v' => out.push(11),
            b'x' => {
                let hex = inner
                    .get(i..i + 2)
                    .ok_or_else(|| PickleError::Invalid("bad \\x escape".into()))?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| PickleError::Invalid("bad \\x escape".into()))?;
                out.push(v);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

fn check_date(y: i64, m: i64, d: i64) -> Result<(i32, u32, u32)> {
    let (Ok(y), Ok(m)) = (i32::try_from(y), u32::try_from(m)) else {
        return invalid("date out of range");
    };
    if !(1..=9999).contains(&y) || !(1..=12).contains(&m) {
        return invalid("date out of range");
    }
    match u32::try_from(d) {
        Ok(d) if (1..=days_in_month(y, m)).contains(&d) => Ok((y, m, d)),
        _ => invalid("day is out of range for month"),
    }
}

fn check_time(h: i64, mi: i64, s: i64, us: i64) -> Result<(u32, u32, u32, u32)> {
    let in_range = |v: i64, end: u32| u32::try_from(v).ok().filter(|v| *v < end);
    match (
        in_range(h, 24),
        in_range(mi, 60),
        in_range(s, 60),
        in_range(us, 1_000_000),
    ) {
        (Some(h), Some(mi), Some(s), Some(us)) => Ok((h, mi, s, us)),
        _ => invalid("time out of range"),
    }
}

/// datetime/date/time from their packed pickle state (`__reduce__` form).
fn unpack_temporal(g: Global, s: &[u8], tz: Option<i32>) -> Result<PyValue> {
    let b = |i: usize| i64::from(s.get(i).copied().unwrap_or(0));
    match (g, s.len()) {
        (Global::DateTime, 10) => {
            // The month byte's high bit is `fold` (protocol 4+); it does not change the value.
            let (y, m, d) = check_date(b(0) * 256 + b(1), b(2) & 0x7f, b(3))?;
            let (hh, mi, ss, us) = check_time(b(4), b(5), b(6), (b(7) << 16) | (b(8) << 8) | b(9))?;
            Ok(PyValue::DateTime(PyDateTime {
                year: y,
                month: m,
                day: d,
                hour: hh,
                minute: mi,
                second: ss,
                microsecond: us,
                utc_offset_seconds: tz,
            }))
        }
        (Global::Date, 4) => {
            let (year, month, day) = check_date(b(0) * 256 + b(1), b(2), b(3))?;
            Ok(PyValue::Date { year, month, day })
        }
        (Global::Time, 6) => {
            if tz.is_some() {
                return invalid("timezone-aware datetime.time is not supported");
            }
            let (hour, minute, second, microsecond) =
                check_time(b(0) & 0x7f, b(1), b(2), (b(3) << 16) | (b(4) << 8) | b(5))?;
            Ok(PyValue::Time {
                hour,
                minute,
                second,
                microsecond,
            })
        }
        _ => invalid(format!("bad pickle state for {}", g.qualname())),
    }
}

/// datetime/date/time from constructor ints (`datetime(2024, 1, 2, ...)`).
fn temporal_from_ints(g: Global, v: &[i64], tz: Option<i32>) -> Result<PyValue> {
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    match g {
        Global::Date if v.len() == 3 => {
            let (year, month, day) = check_date(at(0), at(1), at(2))?;
            Ok(PyValue::Date { year, month, day })
        }
        Global::DateTime if v.len() >= 3 => {
            let (year, month, day) = check_date(at(0), at(1), at(2))?;
            let (hour, minute, second, microsecond) = check_time(at(3), at(4), at(5), at(6))?;
            Ok(PyValue::DateTime(PyDateTime {
                year,
                month,
                day,
                hour,
                minute,
                second,
                microsecond,
                utc_offset_seconds: tz,
            }))
        }
        Global::Time => {
            if tz.is_some() {
                return invalid("timezone-aware datetime.time is not supported");
            }
            let (hour, minute, second, microsecond) = check_time(at(0), at(1), at(2), at(3))?;
            Ok(PyValue::Time {
                hour,
                minute,
                second,
                microsecond,
            })
        }
        _ => invalid(format!("bad arguments for {}", g.qualname())),
    }
}

/// Python's timedelta normalisation: 0 <= seconds < 86400, 0 <= microseconds < 10**6.
pub(crate) fn normalize_timedelta(days: i64, seconds: i64, micros: i64) -> Option<PyValue> {
    let total =
        i128::from(days) * 86_400_000_000 + i128::from(seconds) * 1_000_000 + i128::from(micros);
    let d = total.div_euclid(86_400_000_000);
    let rem = total.rem_euclid(86_400_000_000);
    if d.abs() > 999_999_999 {
        return None;
    }
    Some(PyValue::TimeDelta {
        days: i64::try_from(d).ok()?,
        seconds: i64::try_from(rem / 1_000_000).ok()?,
        microseconds: i64::try_from(rem % 1_000_000).ok()?,
    })
}

// ------------------------------------------------------------------------------------------------
// Encoder

/// Encode a value as a protocol 4 pickle (no memo, no frames) that `pickle.loads` turns back into
/// the equivalent Python value.
pub fn dumps(value: &PyValue) -> Vec<u8> {
    let mut out = vec![0x80, 4];
    write_value(&mut out, value);
    out.push(b'.');
    out
}

/// A datetime's year as the two big-endian bytes of its packed state (years outside 0..=65535,
/// which no valid datetime has, are clamped; Python then refuses the value, as it would).
fn year_bytes(year: i32) -> [u8; 2] {
    u16::try_from(year.clamp(0, 0xffff))
        .unwrap_or_default()
        .to_be_bytes()
}

/// A month, day, hour, minute or second as one byte of a packed state; an out-of-range field
/// (only a hand-built `PyValue` can have one) saturates, and Python refuses the value.
fn field_byte(v: u32) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if let Ok(n) = u8::try_from(b.len()) {
        out.push(0x8c);
        out.push(n);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(b'X');
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(0x8d);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if let Ok(n) = u8::try_from(b.len()) {
        out.push(b'C');
        out.push(n);
    } else if let Ok(n) = u32::try_from(b.len()) {
        out.push(b'B');
        out.extend_from_slice(&n.to_le_bytes());
    } else {
        out.push(0x8e);
        out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    out.extend_from_slice(b);
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(v) = u8::try_from(i) {
        out.push(b'K');
        out.push(v);
    } else if let Ok(v) = u16::try_from(i) {
        out.push(b'M');
        out.extend_from_slice(&v.to_le_bytes());
    } else if let Ok(v) = i32::try_from(i) {
        out.push(b'J');
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        write_long(out, &BigInt::from(i));
    }
}

fn write_long(out: &mut Vec<u8>, n: &BigInt) {
    let b = n.to_signed_bytes_le();
    if let Ok(len) = u8::try_from(b.len()) {
        out.push(0x8a);
        out.push(len);
    } else {
        // LONG4's length is an i32: past it (a 2 GiB int, which no job makes) the length
        // saturates and Python refuses the pickle rather than reading a wrong number.
        out.push(0x8b);
        let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(&b);
}

fn write_global(out: &mut Vec<u8>, module: &str, name: &str) {
    write_str(out, module);
    write_str(out, name);
    out.push(0x93);
}

fn write_timedelta(out: &mut Vec<u8>, days: i64, seconds: i64, micros: i64) {
    write_global(out, "datetime", "timedelta");
    write_int(out, days);
    write_int(out, seconds);
    write_int(out, micros);
    out.extend_from_slice(&[0x87, b'R']);
}

/// Items in MARK ... `op` batches of 1000, as Python writes them.
fn write_batched(out: &mut Vec<u8>, items: &[PyValue], op: u8) {
    for chunk in items.chunks(1000) {
        out.push(b'(');
        for v in chunk {
            write_value(out, v);
        }
        out.push(op);
    }
}

fn write_value(out: &mut Vec<u8>, v: &PyValue) {
    match v {
        PyValue::None => out.push(b'N'),
        PyValue::Bool(true) => out.push(0x88),
        PyValue::Bool(false) => out.push(0x89),
        PyValue::Int(i) => write_int(out, *i),
        PyValue::BigInt(n) => write_long(out, n),
        PyValue::Float(f) => {
            out.push(b'G');
            out.extend_from_slice(&f.to_be_bytes());
        }
        PyValue::Str(s) => write_str(out, s),
        PyValue::Bytes(b) => write_bytes(out, b),
        PyValue::ByteArray(b) => {
            // BYTEARRAY8 is protocol 5 only; protocol 4 readers (Python 3.7) need the REDUCE form.
            write_global(out, "builtins", "bytearray");
            write_bytes(out, b);
            out.extend_from_slice(&[0x85, b'R']);
        }
        PyValue::Tuple(items) => match items.as_slice() {
            [] => out.push(b')'),
            [a] => {
                write_value(out, a);
                out.push(0x85);
            }
            [a, b] => {
                write_value(out, a);
                write_value(out, b);
                out.push(0x86);
            }
            [a, b, c] => {
                write_value(out, a);
                write_value(out, b);
                write_value(out, c);
                out.push(0x87);
            }
            _ => {
                out.push(b'(');
                for x in items {
                    write_value(out, x);
                }
                out.push(b't');
            }
        },
        PyValue::List(items) => {
            out.push(b']');
            write_batched(out, items, b'e');
        }
        PyValue::Dict(entries) => {
            out.push(b'}');
            for chunk in entries.chunks(1000) {
                out.push(b'(');
                for (k, x) in chunk {
                    write_value(out, k);
                    write_value(out, x);
                }
                out.push(b'u');
            }
        }
        PyValue::Set(items) => {
            out.push(0x8f);
            write_batched(out, items, 0x90);
        }
        PyValue::FrozenSet(items) => {
            out.push(b'(');
            for x in items {
                write_value(out, x);
            }
            out.push(0x91);
        }
        PyValue::DateTime(dt) => {
            write_global(out, "datetime", "datetime");
            let [y_hi, y_lo] = year_bytes(dt.year);
            let [_, us_hi, us_mid, us_lo] = dt.microsecond.to_be_bytes();
            let state = [
                y_hi,
                y_lo,
                field_byte(dt.month),
                field_byte(dt.day),
                field_byte(dt.hour),
                field_byte(dt.minute),
                field_byte(dt.second),
                us_hi,
                us_mid,
                us_lo,
            ];
            write_bytes(out, &state);
            match dt.utc_offset_seconds {
                None => out.push(0x85),
                Some(off) => {
                    write_global(out, "datetime", "timezone");
                    write_timedelta(
                        out,
                        i64::from(off).div_euclid(86_400),
                        i64::from(off).rem_euclid(86_400),
                        0,
                    );
                    out.extend_from_slice(&[0x85, b'R', 0x86]);
                }
            }
            out.push(b'R');
        }
        PyValue::Date { year, month, day } => {
            write_global(out, "datetime", "date");
            let [y_hi, y_lo] = year_bytes(*year);
            write_bytes(out, &[y_hi, y_lo, field_byte(*month), field_byte(*day)]);
            out.extend_from_slice(&[0x85, b'R']);
        }
        PyValue::Time {
            hour,
            minute,
            second,
            microsecond,
        } => {
            write_global(out, "datetime", "time");
            let [_, us_hi, us_mid, us_lo] = microsecond.to_be_bytes();
            write_bytes(
                out,
                &[
                    field_byte(*hour),
                    field_byte(*minute),
                    field_byte(*second),
                    us_hi,
                    us_mid,
                    us_lo,
                ],
            );
            out.extend_from_slice(&[0x85, b'R']);
        }
        PyValue::TimeDelta {
            days,
            seconds,
            microseconds,
        } => write_timedelta(out, *days, *seconds, *microseconds),
        PyValue::Decimal(s) => {
            write_global(out, "decimal", "Decimal");
            write_str(out, s);
            out.extend_from_slice(&[0x85, b'R']);
        }
        PyValue::Uuid(u) => {
            write_global(out, "uuid", "UUID");
            write_str(out, &u.simple().to_string());
            out.extend_from_slice(&[0x85, b'R']);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples_raw() -> Vec<Vec<u8>> {
        crate::rq::codec::tests::all_samples()
            .into_iter()
            .map(|z| crate::rq::codec::zlib_decompress_or_raw(&z).expect("sample"))
            .collect()
    }

    fn p(body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80, 4];
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn hostile_inputs_are_refused() {
        use PickleError::*;
        let deep: Vec<u8> = [&b"N"[..], &[0x85u8; 100_000][..], b"."].concat();
        assert!(matches!(loads(&p(&deep)), Err(LimitExceeded(_))));
        // A list that contains itself.
        assert!(matches!(loads(&p(b"]\x94h\x00a.")), Err(LimitExceeded(_))));
        // (x, x) doubled 60 times through the memo: 2**60 values if expanded.
        let mut dag = b"]\x94".to_vec();
        for i in 0..60u8 {
            dag.extend_from_slice(&[b'h', i, b'h', i, 0x86, 0x94]);
        }
        dag.push(b'.');
        assert!(matches!(loads(&p(&dag)), Err(LimitExceeded(_))));
        // Lengths larger than the input.
        assert_eq!(
            loads(&p(&[&[0x8d][..], &u64::MAX.to_le_bytes(), b"."].concat())),
            Err(Truncated)
        );
        assert_eq!(
            loads(&p(&[&[b'X'][..], &u32::MAX.to_le_bytes(), b"."].concat())),
            Err(Truncated)
        );
        assert_eq!(
            loads(&p(&[&[0x95][..], &u64::MAX.to_le_bytes(), b"N."].concat())),
            Err(Truncated)
        );
        assert!(matches!(
            loads(&p(&[&[0x8b][..], &i32::MAX.to_le_bytes()].concat())),
            Err(LimitExceeded(_))
        ));
        assert!(matches!(
            loads(&p(&[&[b'T'][..], &(-1i32).to_le_bytes()].concat())),
            Err(Invalid(_))
        ));
        assert_eq!(loads(b""), Err(Truncated));
        assert_eq!(loads(b"."), Err(StackUnderflow));
        assert_eq!(loads(&p(b"N")), Err(Truncated));
        assert_eq!(loads(&p(b"(.")), Err(StackUnderflow));
        assert_eq!(loads(&p(b"t.")), Err(MarkNotFound));
        assert_eq!(loads(&p(b"h\x05.")), Err(MemoMissing(5)));
        assert_eq!(loads(b"\x80\x06N."), Err(UnsupportedProtocol(6)));
        assert_eq!(loads(&p(b"\xff")), Err(InvalidOpcode(0xff)));
        assert_eq!(
            loads(&p(b"N\x97")),
            Err(UnsupportedOpcode("out-of-band buffer"))
        );
        assert!(matches!(loads(&p(b"K\x01K\x02\x93.")), Err(Invalid(_))));
        assert!(
            matches!(loads(&p(b"\x8f(]\x90.")), Err(Invalid(m)) if m.contains("unhashable type: 'list'"))
        );
        assert!(matches!(loads(&p(b"}(]K\x01u.")), Err(Invalid(m)) if m.contains("unhashable")));
        assert!(matches!(loads(&p(b"K\x01K\x02a.")), Err(Invalid(_))));
        // datetime with month 13; a bare class as a value; os.system is never resolved.
        let dt = b"\x8c\x08datetime\x8c\x08datetime\x93C\x0a\x07\xe8\x0d\x02\x03\x04\x05\x00\x00\x00\x85R.";
        assert!(matches!(loads(&p(dt)), Err(Invalid(_))));
        assert!(matches!(
            loads(&p(b"\x8c\x08datetime\x8c\x04date\x93.")),
            Err(Invalid(_))
        ));
        assert_eq!(
            loads(b"cos\nsystem\n(Vecho hi\ntR."),
            Err(UnsupportedGlobal {
                module: "os".into(),
                name: "system".into()
            })
        );
        assert_eq!(
            loads(b"cposix\nsystem\nq\x00."),
            Err(UnsupportedGlobal {
                module: "posix".into(),
                name: "system".into()
            })
        );
    }

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the generator slices bytes and indexes out of random words on purpose"
    )]
    fn random_inputs_never_panic() {
        // Deterministic xorshift; bytes biased towards real opcodes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const OPS: &[u8] = b"()]}NKJMGXCBtesu.h\x94\x85\x86\x87\x88\x89\x8a\x8c\x8f\x90\x91\x93Rb\x81\x95\x96012aqjrl";
        for _ in 0..30_000 {
            let len = (next() % 48) as usize;
            let mut v = vec![0x80, 4];
            for _ in 0..len {
                let r = next();
                v.push(if r % 3 == 0 {
                    (r >> 8) as u8
                } else {
                    OPS[((r >> 8) % OPS.len() as u64) as usize]
                });
            }
            let _ = loads(&v);
        }
    }

    #[test]
    fn text_opcodes_and_memo_variants() {
        assert_eq!(loads(b"I01\n."), Ok(PyValue::Bool(true)));
        assert_eq!(loads(b"I-12\n."), Ok(PyValue::Int(-12)));
        assert_eq!(
            loads(b"L123456789012345678901234567890L\n.").map(|v| v.repr()),
            Ok("123456789012345678901234567890".into())
        );
        assert_eq!(loads(b"F1.5\n."), Ok(PyValue::Float(1.5)));
        assert_eq!(
            loads(b"S'a\\x41\\n\\'b'\n."),
            Ok(PyValue::Str("aA\n'b".into()))
        );
        assert_eq!(
            loads(b"U\x02\xff\xfe."),
            Ok(PyValue::Bytes(vec![0xff, 0xfe]))
        );
        assert_eq!(
            loads(b"Vcaf\\u00e9 \\\\u0041\n."),
            Ok(PyValue::Str("caf\u{e9} \\\\u0041".into()))
        );
        assert_eq!(
            loads(b"(lp7\nI1\nag7\n.").map(|v| v.repr()),
            Ok("[1]".into())
        );
        assert_eq!(
            loads(b"(K\x01K\x02d.").map(|v| v.repr()),
            Ok("{1: 2}".into())
        );
        assert_eq!(
            loads(&p(b"K\x01r\xff\xff\xff\xff0j\xff\xff\xff\xff.")),
            Ok(PyValue::Int(1))
        );
        assert_eq!(
            loads(&p(b"(K\x01K\x021K\x03\x85.")).map(|v| v.repr()),
            Ok("(3,)".into())
        );
        assert_eq!(loads(&p(b"(0K\x03.")), Ok(PyValue::Int(3)));
        assert_eq!(
            loads(&p(b"K\x032\x86.")).map(|v| v.repr()),
            Ok("(3, 3)".into())
        );
        // Shared containers: DUP, and a memoized list that is also the argument of set().
        assert_eq!(
            loads(&p(b"]2K\x01a\x86.")).map(|v| v.repr()),
            Ok("([1], [1])".into())
        );
        assert_eq!(
            loads(b"\x80\x02]\x94(K\x01K\x02e0](c__builtin__\nset\nh\x00\x85Rh\x00e.")
                .map(|v| v.repr()),
            Ok("[{1, 2}, [1, 2]]".into())
        );
        assert_eq!(
            loads(&p(b"\x8c\x08datetime\x8c\x0ctimezone.utc\x93\x94\x8c\x08datetime\x8c\x08datetime\x93(M\xe8\x07K\x01K\x02K\x03K\x00K\x00K\x00h\x00t\x94R."))
                .map(|v| v.repr()),
            Ok("datetime.datetime(2024, 1, 2, 3, 0, tzinfo=datetime.timezone.utc)".into())
        );
    }

    /// Truncations and bit flips of every sample: any result is fine, a panic is not.
    #[test]
    fn mangled_samples_never_panic() {
        for raw in samples_raw() {
            for cut in 0..raw.len() {
                let _ = loads(&raw[..cut]);
            }
            let step = (raw.len() / 400).max(1);
            for i in (0..raw.len()).step_by(step) {
                for bit in 0..8 {
                    let mut m = raw.clone();
                    m[i] ^= 1 << bit;
                    let _ = loads(&m);
                }
                for b in [0x00, 0x28, 0x2e, 0x30, 0x94, 0x68, 0xff] {
                    let mut m = raw.clone();
                    m[i] = b;
                    let _ = loads(&m);
                }
            }
        }
    }
}

/// Differential tests against the real CPython `pickle` (python3 is on every dev and CI machine;
/// without it these tests print a note and pass).
#[cfg(test)]
pub(crate) mod python_tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// Python expressions covering every whitelisted type and the encoder's size thresholds.
    pub(crate) const EXPRS: &[&str] = &[
        "None",
        "True",
        "False",
        "0",
        "1",
        "-1",
        "255",
        "256",
        "65535",
        "65536",
        "2**31-1",
        "-2**31",
        "2**31",
        "-2**31-1",
        "2**63-1",
        "-2**63",
        "2**63",
        "-2**63-1",
        "2**64",
        "2**1000",
        "-(2**2100)",
        "0.0",
        "-0.0",
        "1.0",
        "3.14",
        "0.1+0.2",
        "1e16",
        "1e15",
        "123456789012345678.0",
        "2.5e+16",
        "1e-5",
        "0.0001",
        "1.5e-7",
        "1e300",
        "5e-324",
        "-1.7976931348623157e308",
        "float('inf')",
        "float('-inf')",
        "float('nan')",
        "''",
        "'abc'",
        "\"it's\"",
        "'say \"hi\"'",
        "'both \\' and \"'",
        "'héllo'",
        "'\\x00\\x1f\\x7f\\x80\\x9f\\xa0\\xad\\xff'",
        "'\\u2028\\u200b\\ufeff\\ue000'",
        "'日本語 😀 \\U0001f600'",
        "'tab\\tnl\\nret\\r back\\\\slash'",
        "'x'*300",
        "'y'*70000",
        "b''",
        "b'\\x00\\xff'",
        "b\"it's\"",
        "b'a\"b\\'c'",
        "bytes(range(256))",
        "b'z'*300",
        "bytearray(b'abc')",
        "bytearray()",
        "()",
        "(1,)",
        "(1, 2)",
        "(1, 2, 3)",
        "(1, 2, 3, 4)",
        "((), ((),), [()])",
        "[]",
        "[1]",
        "list(range(2500))",
        "[[[]], [[1, [2]]]]",
        "{}",
        "{'a': 1}",
        "{1: 'a', (1, 2): None, None: 0.5, 'x': [1], 2.5: b'', True: frozenset()}",
        "{str(i): i for i in range(1500)}",
        "set()",
        "{1, 2, 3}",
        "{'a', 'b', (1, 'c')}",
        "frozenset()",
        "frozenset({1, 'a'})",
        "[set(range(1200))]",
        "datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc)",
        "datetime.datetime(2024, 1, 2)",
        "datetime.datetime(2024, 1, 2, 3, 4)",
        "datetime.datetime(2024, 1, 2, 3, 4, 0, 7)",
        "datetime.datetime(1, 1, 1)",
        "datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)",
        "datetime.datetime(2024, 2, 29, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)))",
        "datetime.datetime(2024, 2, 29, 12, tzinfo=datetime.timezone(datetime.timedelta(hours=-8)))",
        "datetime.date(2024, 2, 29)",
        "datetime.date(1, 1, 1)",
        "datetime.time(0, 0)",
        "datetime.time(3, 4, 5)",
        "datetime.time(3, 4, 0, 6)",
        "datetime.time(23, 59, 59, 999999)",
        "datetime.timedelta(0)",
        "datetime.timedelta(seconds=90)",
        "datetime.timedelta(days=-1)",
        "datetime.timedelta(microseconds=-1)",
        "datetime.timedelta(days=3, seconds=4, microseconds=5)",
        "datetime.timedelta(days=999999999)",
        "decimal.Decimal('12.50')",
        "decimal.Decimal('-0')",
        "decimal.Decimal('1E+5')",
        "decimal.Decimal('NaN')",
        "decimal.Decimal('-Infinity')",
        "decimal.Decimal('-1.5e-7')",
        "uuid.UUID('12345678-1234-5678-1234-567812345678')",
        "uuid.UUID(int=0)",
        "uuid.UUID(int=2**128-1)",
        "(lambda x: [x, x, {'k': x}])([1, 'shared'])",
        "(lambda d: (d, d))(datetime.date(2020, 1, 1))",
        "{'args': ('a', 1, None), 'kwargs': {'when': datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)}}",
    ];

    const PRELUDE: &str = "import sys, pickle, datetime, decimal, uuid, binascii\n";

    /// Run python3 with `script`, feeding `input`; `None` when python3 is not available.
    pub(crate) fn python(script: &str, input: &str) -> Option<String> {
        let mut child = match Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("PYTHONHASHSEED", "0")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("python3 not available ({e}); skipping differential test");
                return None;
            }
        };
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_string();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("python3 output");
        writer.join().expect("writer").expect("write to python3");
        assert!(
            out.status.success(),
            "python3 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8(out.stdout).expect("utf-8 output"))
    }

    /// CPython pickles every expression with protocols 2 to 5; we decode each to the same repr.
    #[test]
    fn decodes_cpython_pickles_of_all_protocols() {
        let script = format!(
            "{PRELUDE}for line in sys.stdin:\n    v = eval(line)\n    print(repr(v))\n    for p in (0, 1, 2, 3, 4, 5):\n        print(binascii.hexlify(pickle.dumps(v, protocol=p)).decode())\n"
        );
        let Some(out) = python(&script, &(EXPRS.join("\n") + "\n")) else {
            return;
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), EXPRS.len() * 7);
        for (i, expr) in EXPRS.iter().enumerate() {
            let want = lines[i * 7];
            for (k, p) in (0..=5).enumerate() {
                let bytes = hex::decode(lines[i * 7 + 1 + k]).expect("hex");
                let got = loads(&bytes).unwrap_or_else(|e| panic!("{expr} protocol {p}: {e}"));
                assert_eq!(got.repr(), want, "{expr} protocol {p}");
            }
        }
    }

    /// What we pickle, CPython loads back to a value with the same repr (and the same pickle
    /// when CPython dumps it again and we decode that).
    #[test]
    fn cpython_loads_our_dumps() {
        let script = format!(
            "{PRELUDE}for line in sys.stdin:\n    print(repr(pickle.loads(binascii.unhexlify(line.strip()))))\n"
        );
        // First decode CPython's own pickles into our values, then hand our dumps back.
        let first = format!(
            "{PRELUDE}for line in sys.stdin:\n    print(binascii.hexlify(pickle.dumps(eval(line), protocol=5)).decode())\n"
        );
        let Some(out) = python(&first, &(EXPRS.join("\n") + "\n")) else {
            return;
        };
        let values: Vec<PyValue> = out
            .lines()
            .map(|l| loads(&hex::decode(l).expect("hex")).expect("decode"))
            .collect();
        let ours: Vec<String> = values.iter().map(|v| hex::encode(dumps(v))).collect();
        let Some(out) = python(&script, &(ours.join("\n") + "\n")) else {
            return;
        };
        let reprs: Vec<&str> = out.lines().collect();
        assert_eq!(reprs.len(), values.len());
        for ((v, r), expr) in values.iter().zip(&reprs).zip(EXPRS) {
            assert_eq!(*r, v.repr(), "{expr}");
        }
    }

    #[test]
    fn dumps_round_trips_through_loads() {
        let script = format!(
            "{PRELUDE}for line in sys.stdin:\n    print(binascii.hexlify(pickle.dumps(eval(line), protocol=5)).decode())\n"
        );
        let Some(out) = python(&script, &(EXPRS.join("\n") + "\n")) else {
            return;
        };
        for (l, expr) in out.lines().zip(EXPRS) {
            let v = loads(&hex::decode(l).expect("hex")).expect("decode");
            let back = loads(&dumps(&v)).unwrap_or_else(|e| panic!("{expr}: {e}"));
            // NaN != NaN, so compare reprs.
            assert_eq!(back.repr(), v.repr(), "{expr}");
        }
    }

    /// Truncated and mutated CPython pickles of every expression (protocols 2 and 5): any
    /// result is fine, a panic is not.
    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the generator slices bytes and indexes out of random words on purpose"
    )]
    fn mutated_cpython_pickles_never_panic() {
        let script = format!(
            "{PRELUDE}for line in sys.stdin:\n    for p in (2, 5):\n        print(binascii.hexlify(pickle.dumps(eval(line), protocol=p)).decode())\n"
        );
        let Some(out) = python(&script, &(EXPRS.join("\n") + "\n")) else {
            return;
        };
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for l in out.lines() {
            let raw = hex::decode(l).expect("hex");
            if raw.len() > 4096 {
                continue;
            }
            for cut in 0..raw.len() {
                let _ = loads(&raw[..cut]);
            }
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let mut m = raw.clone();
                let i = (x % m.len() as u64) as usize;
                m[i] = (x >> 32) as u8;
                if x & 1 == 0 {
                    let j = ((x >> 40) % m.len() as u64) as usize;
                    m[j] ^= 0x80;
                }
                let _ = loads(&m);
            }
        }
    }

    /// Classes outside the whitelist are refused by name, whatever the protocol.
    #[test]
    fn cpython_user_classes_are_named() {
        let script = format!(
            "{PRELUDE}import collections, fractions\nclass Calc:\n    def __init__(self):\n        self.k = 3\nfor p in range(6):\n    for v in (Calc(), [1, Calc()], collections.OrderedDict(a=1), fractions.Fraction(1, 3), complex(1, 2)):\n        print(binascii.hexlify(pickle.dumps(v, protocol=p)).decode())\n"
        );
        let Some(out) = python(&script, "") else {
            return;
        };
        let mut names = Vec::new();
        for l in out.lines() {
            match loads(&hex::decode(l).expect("hex")) {
                Err(PickleError::UnsupportedGlobal { module, name }) => {
                    names.push(format!("{module}.{name}"))
                }
                other => panic!("expected UnsupportedGlobal, got {other:?}"),
            }
        }
        let expected = [
            "__main__.Calc",
            "__main__.Calc",
            "collections.OrderedDict",
            "fractions.Fraction",
        ];
        for chunk in names.chunks(5) {
            assert_eq!(&chunk[..4], &expected);
            assert!(chunk[4].ends_with(".complex"), "{}", chunk[4]);
        }
        assert_eq!(names.len(), 30);
    }
}
