//! The payload codec: job `data` (zlib over a pickled or JSON 4-tuple), return values, `meta`,
//! and the base64/zlib wrappings of the results stream (rq-wire.md §1, §6, §10, §11).
//!
//! Decoding is bounded (decompressed size cap, pickle limits) and never runs code; encoding
//! writes what Python RQ 1.16, 2.x and 3.0 read back with their default or JSON serializer.

use std::io::{Read, Write};

use base64::Engine;
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::rq::pickle::{self, PickleError};
use crate::value::{JsonError, PyValue};

/// Largest decompressed job payload accepted.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 20;

/// The job serializer (`rq worker --serializer`): Python's default pickle or `JSONSerializer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Serializer {
    #[default]
    Pickle,
    Json,
}

impl Serializer {
    /// Parse an `rq worker --serializer` value: `pickle`/`default`/`json`, or RQ's dotted class
    /// paths (`rq.serializers.DefaultSerializer`, `rq.serializers.JSONSerializer`).
    pub fn from_name(name: &str) -> Option<Serializer> {
        match name.trim().to_ascii_lowercase().as_str() {
            "pickle"
            | "default"
            | "rq.serializers.defaultserializer"
            | "rq.serializers.pickleserializer" => Some(Serializer::Pickle),
            "json" | "rq.serializers.jsonserializer" => Some(Serializer::Json),
            _ => None,
        }
    }
}

/// A decoded job `data` field: `(func_name, instance, args, kwargs)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    pub func_name: String,
    /// The bound-method instance; `None` for plain functions (the only kind a native handler runs).
    pub instance: PyValue,
    pub args: Vec<PyValue>,
    pub kwargs: Vec<(String, PyValue)>,
}

/// How many characters of each argument's repr a job `description` keeps (then `...`).
pub const DESCRIPTION_ARG_CHARS: usize = 75;

impl Payload {
    /// A plain-function call with no instance.
    pub fn new(
        func_name: impl Into<String>,
        args: Vec<PyValue>,
        kwargs: Vec<(String, PyValue)>,
    ) -> Self {
        Payload {
            func_name: func_name.into(),
            instance: PyValue::None,
            args,
            kwargs,
        }
    }

    /// The job `description` RQ writes at enqueue: `func(arg, ..., key=value)`, every repr cut to
    /// 75 characters plus `...`, keyword arguments sorted.
    pub fn description(&self) -> String {
        fn cut(repr: String) -> String {
            match repr.char_indices().nth(DESCRIPTION_ARG_CHARS) {
                Some((i, _)) => format!("{}...", &repr[..i]),
                None => repr,
            }
        }
        let mut parts: Vec<String> = self.args.iter().map(|a| cut(a.repr())).collect();
        let mut kw: Vec<String> = self
            .kwargs
            .iter()
            .map(|(k, v)| format!("{k}={}", cut(v.repr())))
            .collect();
        kw.sort();
        parts.extend(kw);
        format!("{}({})", self.func_name, parts.join(", "))
    }
}

/// Why a payload or value could not be decoded or encoded.
///
/// Only what went wrong: the Python exception type and the traceback-shaped `exc_info` around this
/// message are chosen by `runtime/failure.rs` (the one place failure text is built;
/// `rq.exceptions.DeserializationError` for a payload that cannot be decoded), which the wire
/// module must not depend on. Nothing here reads a stored `exc_info` either, so the codec has no
/// text builder of its own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("payload larger than {MAX_PAYLOAD_BYTES} bytes after decompression")]
    TooLarge,
    #[error("{0}")]
    Pickle(#[from] PickleError),
    #[error("invalid json: {0}")]
    Json(String),
    #[error("{0}")]
    NotJsonSerializable(#[from] JsonError),
    #[error("bad job payload: {0}")]
    Shape(String),
}

/// zlib-compress (default level), as RQ does for `data` and the legacy `exc_info` field.
pub fn zlib_compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 2 + 16),
        Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

/// Decompress `data` like RQ: bytes that are not a zlib stream are taken as uncompressed.
/// Errors only when the decompressed size passes [`MAX_PAYLOAD_BYTES`].
pub fn zlib_decompress_or_raw(data: &[u8]) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    let limit = MAX_PAYLOAD_BYTES as u64 + 1;
    match ZlibDecoder::new(data).take(limit).read_to_end(&mut out) {
        Ok(_) if out.len() > MAX_PAYLOAD_BYTES => Err(CodecError::TooLarge),
        Ok(_) => Ok(out),
        Err(_) if data.len() > MAX_PAYLOAD_BYTES => Err(CodecError::TooLarge),
        Err(_) => Ok(data.to_vec()),
    }
}

/// Decode a job's `data` field into its call.
pub fn decode_payload(data: &[u8], ser: Serializer) -> Result<Payload, CodecError> {
    let raw = zlib_decompress_or_raw(data)?;
    let value = decode_value(&raw, ser)?;
    let items = match value {
        PyValue::Tuple(items) | PyValue::List(items) if items.len() == 4 => items,
        other => {
            return Err(CodecError::Shape(format!(
                "expected a 4-item (func_name, instance, args, kwargs) sequence, got {}",
                describe(&other)
            )));
        }
    };
    let mut it = items.into_iter();
    let (func, instance, args, kwargs) = match (it.next(), it.next(), it.next(), it.next()) {
        (Some(a), Some(b), Some(c), Some(d)) => (a, b, c, d),
        _ => return Err(CodecError::Shape("expected 4 items".into())),
    };
    let func_name = match func {
        PyValue::Str(s) => s,
        other => {
            return Err(CodecError::Shape(format!(
                "func_name must be a str, not {}",
                other.type_name()
            )));
        }
    };
    let args = match args {
        PyValue::Tuple(v) | PyValue::List(v) => v,
        PyValue::None => Vec::new(),
        other => {
            return Err(CodecError::Shape(format!(
                "args must be a tuple or list, not {}",
                other.type_name()
            )));
        }
    };
    let kwargs = match kwargs {
        PyValue::Dict(entries) => entries
            .into_iter()
            .map(|(k, v)| match k {
                PyValue::Str(k) => Ok((k, v)),
                other => Err(CodecError::Shape(format!(
                    "keywords must be strings, not {}",
                    other.type_name()
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        PyValue::None => Vec::new(),
        other => {
            return Err(CodecError::Shape(format!(
                "kwargs must be a dict, not {}",
                other.type_name()
            )));
        }
    };
    Ok(Payload {
        func_name,
        instance,
        args,
        kwargs,
    })
}

fn describe(v: &PyValue) -> String {
    match v {
        PyValue::Tuple(items) | PyValue::List(items) => {
            format!("{} of {} items", v.type_name(), items.len())
        }
        _ => v.type_name().to_string(),
    }
}

/// Encode a job's `data` field (zlib over the serialized 4-tuple), for enqueuing follow-up jobs.
/// Fails only with the JSON serializer, for values JSON cannot carry.
pub fn encode_payload(p: &Payload, ser: Serializer) -> Result<Vec<u8>, CodecError> {
    let kwargs = PyValue::Dict(
        p.kwargs
            .iter()
            .map(|(k, v)| (PyValue::Str(k.clone()), v.clone()))
            .collect(),
    );
    let tuple = PyValue::Tuple(vec![
        PyValue::Str(p.func_name.clone()),
        p.instance.clone(),
        PyValue::Tuple(p.args.clone()),
        kwargs,
    ]);
    Ok(zlib_compress(&try_encode_value(&tuple, ser)?))
}

/// Serialize a value (return value, `meta`), without compression.
pub fn try_encode_value(v: &PyValue, ser: Serializer) -> Result<Vec<u8>, CodecError> {
    match ser {
        Serializer::Pickle => Ok(pickle::dumps(v)),
        Serializer::Json => Ok(v.to_json_string()?.into_bytes()),
    }
}

/// RQ's stand-in for return values its serializer cannot write.
pub const UNSERIALIZABLE_RETURN_VALUE: &str = "Unserializable return value";

/// Serialize a value (return value, `meta`), without compression. A value the JSON serializer
/// cannot carry becomes the str `'Unserializable return value'`, as RQ stores it.
pub fn encode_value(v: &PyValue, ser: Serializer) -> Vec<u8> {
    try_encode_value(v, ser).unwrap_or_else(|_| {
        try_encode_value(&PyValue::Str(UNSERIALIZABLE_RETURN_VALUE.into()), ser).unwrap_or_default()
    })
}

/// Deserialize a value (a `meta` or legacy `result` field, a decoded `return_value`).
pub fn decode_value(bytes: &[u8], ser: Serializer) -> Result<PyValue, CodecError> {
    match ser {
        Serializer::Pickle => Ok(pickle::loads(bytes)?),
        Serializer::Json => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| CodecError::Json(format!("not UTF-8: {e}")))?;
            PyValue::from_json_str(text).map_err(|e| CodecError::Json(e.to_string()))
        }
    }
}

/// The results stream `exc_string` field: base64 (standard, padded) of zlib(UTF-8 text).
pub fn encode_exc_string(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(zlib_compress(text.as_bytes()))
}

/// Inverse of [`encode_exc_string`].
pub fn decode_exc_string(field: &str) -> Result<String, CodecError> {
    let z = base64::engine::general_purpose::STANDARD
        .decode(field.trim())
        .map_err(|e| CodecError::Shape(format!("bad base64: {e}")))?;
    let raw = zlib_decompress_or_raw(&z)?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// The results stream `return_value` field: base64 (standard, padded) of the serialized value.
pub fn encode_return_value(v: &PyValue, ser: Serializer) -> String {
    base64::engine::general_purpose::STANDARD.encode(encode_value(v, ser))
}

/// Inverse of [`encode_return_value`].
pub fn decode_return_value(field: &str, ser: Serializer) -> Result<PyValue, CodecError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(field.trim())
        .map_err(|e| CodecError::Shape(format!("bad base64: {e}")))?;
    decode_value(&raw, ser)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::value::PyDateTime;

    fn sample(name: &str) -> Vec<u8> {
        let text = match name {
            "01" => include_str!("testdata/01-string-funcname-str-arg.data.zlib.hex"),
            "02" => include_str!("testdata/02-small-ints.data.zlib.hex"),
            "03" => include_str!("testdata/03-scalars.data.zlib.hex"),
            "04" => include_str!("testdata/04-containers.data.zlib.hex"),
            "05" => include_str!("testdata/05-kwargs-only.data.zlib.hex"),
            "06" => include_str!("testdata/06-datetime-decimal-uuid.data.zlib.hex"),
            "07" => include_str!("testdata/07-bound-method-instance.data.zlib.hex"),
            "08" => include_str!("testdata/08-long-str-and-1500-item-list.data.zlib.hex"),
            "09" => include_str!("testdata/09-json-serializer.data.zlib.hex"),
            _ => unreachable!(),
        };
        hex::decode(text.trim()).expect("sample hex")
    }

    pub(crate) fn all_samples() -> Vec<Vec<u8>> {
        ["01", "02", "03", "04", "05", "06", "07", "08", "09"]
            .iter()
            .map(|n| sample(n))
            .collect()
    }

    fn as_tuple_repr(p: &Payload) -> String {
        let kwargs = PyValue::str_dict(p.kwargs.clone());
        PyValue::Tuple(vec![
            PyValue::Str(p.func_name.clone()),
            p.instance.clone(),
            PyValue::Tuple(p.args.clone()),
            kwargs,
        ])
        .repr()
    }

    /// The `# decoded ... = ` lines of the sample .txt files (Python's repr of the 4-tuple).
    #[test]
    fn samples_decode_to_python_repr() {
        let cases = [
            (
                "01",
                r#"('jobs.ingest_extract.run', None, ('doc-123',), {})"#,
            ),
            ("02", r#"('jobs.add', None, (2, 3), {})"#),
            (
                "03",
                r#"('jobs.echo', None, ('héllo', 42, -7, 300, 70000, 1099511627776, -9223372036854775808, 1180591620717411303424, 3.14, None, True, False, b'\x00\xffbytes', ''), {})"#,
            ),
            (
                "04",
                r#"('jobs.echo', None, ([1, 2, 3], {'a': 1, 'b': [True, None]}, (1, 'x'), (), [], {}, ('single',), {1, 2}), {})"#,
            ),
            (
                "05",
                r#"('jobs.echo', None, (), {'path': '/data/in.csv', 'retries': 3, 'opts': {'mode': 'fast', 'ratio': 0.5}})"#,
            ),
            (
                "06",
                r#"('jobs.echo', None, (datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc), datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), Decimal('12.50'), UUID('12345678-1234-5678-1234-567812345678'), datetime.timedelta(seconds=90)), {})"#,
            ),
        ];
        for (name, want) in cases {
            let p = decode_payload(&sample(name), Serializer::Pickle)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(as_tuple_repr(&p), want, "sample {name}");
        }
    }

    #[test]
    fn descriptions_match_rq() {
        let cases = [
            (
                "01",
                Serializer::Pickle,
                "jobs.ingest_extract.run('doc-123')",
            ),
            ("02", Serializer::Pickle, "jobs.add(2, 3)"),
            (
                "03",
                Serializer::Pickle,
                r"jobs.echo('héllo', 42, -7, 300, 70000, 1099511627776, -9223372036854775808, 1180591620717411303424, 3.14, None, True, False, b'\x00\xffbytes', '')",
            ),
            (
                "04",
                Serializer::Pickle,
                "jobs.echo([1, 2, 3], {'a': 1, 'b': [True, None]}, (1, 'x'), (), [], {}, ('single',), {1, 2})",
            ),
            (
                "05",
                Serializer::Pickle,
                "jobs.echo(opts={'mode': 'fast', 'ratio': 0.5}, path='/data/in.csv', retries=3)",
            ),
            (
                "06",
                Serializer::Pickle,
                "jobs.echo(datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc..., datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), Decimal('12.50'), UUID('12345678-1234-5678-1234-567812345678'), datetime.timedelta(seconds=90))",
            ),
            (
                "08",
                Serializer::Pickle,
                "jobs.echo('xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..., [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, ...)",
            ),
            ("09", Serializer::Json, "jobs.add(2, 3, z=None)"),
        ];
        for (name, ser, want) in cases {
            assert_eq!(
                decode_payload(&sample(name), ser).unwrap().description(),
                want,
                "sample {name}"
            );
        }
    }

    /// CPython reads our `data` field back with `pickle.loads(zlib.decompress(...))` and with
    /// `json.loads`, which is what RQ's `Job.fetch` does.
    #[test]
    fn cpython_reads_encoded_payloads() {
        let p = Payload::new(
            "jobs.ingest.run",
            vec![
                PyValue::Str("doc-é".into()),
                PyValue::BigInt(num_bigint::BigInt::from(2u8).pow(80u32)),
                PyValue::Float(0.1),
            ],
            vec![
                (
                    "when".into(),
                    PyValue::Date {
                        year: 2024,
                        month: 1,
                        day: 2,
                    },
                ),
                ("n".into(), PyValue::None),
            ],
        );
        let mut json_p = p.clone();
        json_p.kwargs.truncate(1);
        json_p.kwargs[0].1 = PyValue::List(vec![PyValue::Bool(true)]);
        let input = format!(
            "{}\n{}\n",
            hex::encode(encode_payload(&p, Serializer::Pickle).unwrap()),
            hex::encode(encode_payload(&json_p, Serializer::Json).unwrap())
        );
        let script = "import sys, zlib, pickle, json\nl = sys.stdin.read().split()\nprint(repr(pickle.loads(zlib.decompress(bytes.fromhex(l[0])))))\nprint(repr(json.loads(zlib.decompress(bytes.fromhex(l[1])))))\n";
        let Some(out) = crate::rq::pickle::python_tests::python(script, &input) else {
            return;
        };
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "('jobs.ingest.run', None, ('doc-é', 1208925819614629174706176, 0.1), {'when': datetime.date(2024, 1, 2), 'n': None})",
                "['jobs.ingest.run', None, ['doc-é', 1208925819614629174706176, 0.1], {'when': [True]}]",
            ]
        );
    }

    #[test]
    fn sample_02_small_ints() {
        let p = decode_payload(&sample("02"), Serializer::Pickle).unwrap();
        assert_eq!(
            p,
            Payload {
                func_name: "jobs.add".into(),
                instance: PyValue::None,
                args: vec![PyValue::Int(2), PyValue::Int(3)],
                kwargs: vec![]
            }
        );
    }

    #[test]
    fn sample_06_typed_values() {
        let p = decode_payload(&sample("06"), Serializer::Pickle).unwrap();
        let dt = |us, tz| {
            PyValue::DateTime(PyDateTime {
                year: 2024,
                month: 1,
                day: 2,
                hour: 3,
                minute: 4,
                second: 5,
                microsecond: us,
                utc_offset_seconds: tz,
            })
        };
        assert_eq!(
            p.args,
            vec![
                dt(678901, Some(0)),
                dt(0, None),
                PyValue::Date {
                    year: 2024,
                    month: 1,
                    day: 2
                },
                PyValue::Decimal("12.50".into()),
                PyValue::Uuid(
                    uuid::Uuid::parse_str("12345678-1234-5678-1234-567812345678").unwrap()
                ),
                PyValue::TimeDelta {
                    days: 0,
                    seconds: 90,
                    microseconds: 0
                },
            ]
        );
    }

    #[test]
    fn sample_07_names_the_class() {
        let err = decode_payload(&sample("07"), Serializer::Pickle).unwrap_err();
        assert_eq!(
            err,
            CodecError::Pickle(PickleError::UnsupportedGlobal {
                module: "jobs".into(),
                name: "Calc".into()
            })
        );
        assert!(err.to_string().contains("jobs.Calc"), "{err}");
    }

    #[test]
    fn sample_08_long_str_and_list() {
        let p = decode_payload(&sample("08"), Serializer::Pickle).unwrap();
        assert_eq!(p.func_name, "jobs.echo");
        assert_eq!(p.args.len(), 2);
        assert_eq!(p.args[0], PyValue::Str("x".repeat(300)));
        assert_eq!(
            p.args[1],
            PyValue::List((0..1500).map(PyValue::Int).collect())
        );
    }

    #[test]
    fn sample_09_json() {
        let p = decode_payload(&sample("09"), Serializer::Json).unwrap();
        assert_eq!(
            p,
            Payload {
                func_name: "jobs.add".into(),
                instance: PyValue::None,
                args: vec![PyValue::Int(2), PyValue::Int(3)],
                kwargs: vec![("z".into(), PyValue::None)],
            }
        );
        // The pickle decoder refuses JSON text with a readable error, not a panic.
        assert!(decode_payload(&sample("09"), Serializer::Pickle).is_err());
        let raw = zlib_decompress_or_raw(&sample("09")).unwrap();
        assert_eq!(
            encode_payload(&p, Serializer::Json).unwrap(),
            zlib_compress(&raw)
        );
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            r#"["jobs.add", null, [2, 3], {"z": null}]"#
        );
    }

    #[test]
    fn uncompressed_data_is_accepted() {
        let raw = zlib_decompress_or_raw(&sample("02")).unwrap();
        assert_eq!(
            decode_payload(&raw, Serializer::Pickle).unwrap().func_name,
            "jobs.add"
        );
    }

    #[test]
    fn decompression_bomb_is_refused() {
        let bomb = zlib_compress(&vec![0u8; MAX_PAYLOAD_BYTES + 10]);
        assert_eq!(
            decode_payload(&bomb, Serializer::Pickle).unwrap_err(),
            CodecError::TooLarge
        );
    }

    #[test]
    fn payload_shape_errors() {
        let enc = |v: PyValue| zlib_compress(&pickle::dumps(&v));
        let s = |x: &str| PyValue::Str(x.into());
        let bad = [
            PyValue::Int(1),
            PyValue::Tuple(vec![s("f"), PyValue::None, PyValue::Tuple(vec![])]),
            PyValue::Tuple(vec![
                PyValue::Int(1),
                PyValue::None,
                PyValue::Tuple(vec![]),
                PyValue::Dict(vec![]),
            ]),
            PyValue::Tuple(vec![
                s("f"),
                PyValue::None,
                PyValue::Int(3),
                PyValue::Dict(vec![]),
            ]),
            PyValue::Tuple(vec![
                s("f"),
                PyValue::None,
                PyValue::Tuple(vec![]),
                PyValue::Dict(vec![(PyValue::Int(1), PyValue::None)]),
            ]),
        ];
        for v in bad {
            let e = decode_payload(&enc(v.clone()), Serializer::Pickle).unwrap_err();
            assert!(matches!(e, CodecError::Shape(_)), "{v:?}: {e}");
        }
    }

    #[test]
    fn payload_round_trip_both_serializers() {
        let p = Payload {
            func_name: "jobs.ingest.run".into(),
            instance: PyValue::None,
            args: vec![
                PyValue::Str("doc-1".into()),
                PyValue::Int(7),
                PyValue::List(vec![PyValue::Float(0.5)]),
            ],
            kwargs: vec![
                ("force".into(), PyValue::Bool(true)),
                ("tags".into(), PyValue::str_dict([("a", PyValue::None)])),
            ],
        };
        for ser in [Serializer::Pickle, Serializer::Json] {
            let data = encode_payload(&p, ser).unwrap();
            assert_eq!(&data[..2], &[0x78, 0x9c]);
            let back = decode_payload(&data, ser).unwrap();
            assert_eq!(back, p, "{ser:?}");
        }
    }

    #[test]
    fn results_stream_fields() {
        // From 10-results-stream-entries.txt (rq 2.12).
        assert_eq!(
            encode_return_value(&PyValue::Int(5), Serializer::Pickle),
            "gAVLBS4=".replace("gAV", "gAR")
        );
        assert_eq!(
            decode_return_value("gAVLBS4=", Serializer::Pickle).unwrap(),
            PyValue::Int(5)
        );
        assert_eq!(
            decode_return_value("gAVLDC4=", Serializer::Pickle).unwrap(),
            PyValue::Int(12)
        );
        let r06 = "gAWV9gAAAAAAAAB9lCiMBGFyZ3OUKIwIZGF0ZXRpbWWUjAhkYXRldGltZZSTlEMKB+gBAgMEBQpb9ZRoAowIdGltZXpvbmWUk5RoAowJdGltZWRlbHRhlJOUSwBLAEsAh5RSlIWUUpSGlFKUaARDCgfoAQIDBAUAAACUhZRSlGgCjARkYXRllJOUQwQH6AEClIWUUpSMB2RlY2ltYWyUjAdEZWNpbWFslJOUjAUxMi41MJSFlFKUjAR1dWlklIwEVVVJRJSTlCmBlH2UjANpbnSUihB4VjQSeFY0EnhWNBJ4VjQSc2JoCUsAS1pLAIeUUpR0lIwGa3dhcmdzlH2UdS4=";
        let v = decode_return_value(r06, Serializer::Pickle).unwrap();
        assert_eq!(
            v.repr(),
            "{'args': (datetime.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=datetime.timezone.utc), datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), Decimal('12.50'), UUID('12345678-1234-5678-1234-567812345678'), datetime.timedelta(seconds=90)), 'kwargs': {}}"
        );
        let exc = "eJytksFugzAQRO98xSqXQESxSJqqitRj+wU5BxmzUIqx3bWdhH59HUhVlFNUdU4ea7TztPaeuMCSiw7iXlsHhAKVA8GlBMmtS3YRwFsrERaMtHaMPlEdmWxLZgb3rtUmy3NmW4cPJkzhDdoQYSdNHRIrucXMDIsUZKsQ8u12nUKrwCDVmvriQ5dhPIRW50kVRy49wguE6+waiZMxcKPDXH8CHCt+wTZPz3OwsdOirLOC0HrpAtRk8YzCO7wD63/AHtcT2E/xdV1zptorEa/GI6fGprCaTHe62BvQwx2K9oPBVyJNO+BVFSfQaAdcgVd4NigcVtDhEN64glDh+8uPWX4to2+dhrva";
        let text = decode_exc_string(exc).unwrap();
        assert!(
            text.ends_with("TypeError: add() got an unexpected keyword argument 'z'\n"),
            "{text:?}"
        );
        assert_eq!(decode_exc_string(&encode_exc_string(&text)).unwrap(), text);
        assert_eq!(
            encode_return_value(&PyValue::Int(5), Serializer::Json),
            "NQ=="
        );
    }

    #[test]
    fn json_unserializable_return_value() {
        let v = PyValue::Date {
            year: 2024,
            month: 1,
            day: 2,
        };
        assert!(try_encode_value(&v, Serializer::Json).is_err());
        assert_eq!(
            encode_value(&v, Serializer::Json),
            b"\"Unserializable return value\"".to_vec()
        );
        let p = Payload {
            func_name: "f".into(),
            instance: PyValue::None,
            args: vec![v],
            kwargs: vec![],
        };
        let e = encode_payload(&p, Serializer::Json).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Object of type date is not JSON serializable"
        );
        assert!(matches!(e, CodecError::NotJsonSerializable(_)), "{e:?}");
    }
}
