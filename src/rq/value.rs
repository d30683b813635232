//! `PyValue`: the Python values a job payload, a return value or `meta` can carry.
//!
//! Pickle and JSON payloads both decode into this one type, so handlers see typed values whatever
//! the serializer. Only data types exist here: decoding never constructs or runs Python code, and
//! the few classes RQ payloads commonly carry (datetime, date, time, timedelta, Decimal, UUID) are
//! whitelisted into their own variants instead of being dropped.

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
    Date { year: i32, month: u32, day: u32 },
    /// `datetime.time` (naive).
    Time { hour: u32, minute: u32, second: u32, microsecond: u32 },
    /// `datetime.timedelta`, normalised as Python stores it.
    TimeDelta { days: i64, seconds: i64, microseconds: i64 },
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

    /// A dict with string keys, the shape of kwargs, `meta` and most return values.
    pub fn str_dict<K: Into<String>>(entries: impl IntoIterator<Item = (K, PyValue)>) -> PyValue {
        PyValue::Dict(entries.into_iter().map(|(k, v)| (PyValue::Str(k.into()), v)).collect())
    }
}
