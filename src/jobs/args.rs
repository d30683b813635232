//! Typed access to a job's positional and keyword arguments.
//!
//! A handler declares each parameter once (`args.required::<String>(0, "document_id")`), which
//! accepts it positionally or by keyword, like a Python signature; [`Args::finish`] rejects what
//! is left over. Every problem names the argument, so `exc_info` says what the enqueuer got wrong.

use crate::jobs::JobError;
use crate::value::PyValue;

/// The arguments of one call, consumed parameter by parameter.
#[derive(Debug, Clone)]
pub struct Args {
    func_name: String,
    positional: Vec<Option<PyValue>>,
    kwargs: Vec<(String, Option<PyValue>)>,
}

impl Args {
    pub fn new(func_name: &str, positional: Vec<PyValue>, kwargs: Vec<(String, PyValue)>) -> Self {
        Args {
            func_name: func_name.to_string(),
            positional: positional.into_iter().map(Some).collect(),
            kwargs: kwargs.into_iter().map(|(k, v)| (k, Some(v))).collect(),
        }
    }

    fn error(&self, problem: String) -> JobError {
        JobError::BadArguments {
            func_name: self.func_name.clone(),
            problem,
        }
    }

    /// Take the parameter at `position` or named `name`, if given. Giving it both ways is an error.
    pub fn optional<T: FromPy>(
        &mut self,
        position: usize,
        name: &str,
    ) -> Result<Option<T>, JobError> {
        let by_pos = self.positional.get_mut(position).and_then(Option::take);
        let by_name = self
            .kwargs
            .iter_mut()
            .find(|(k, v)| k == name && v.is_some())
            .and_then(|(_, v)| v.take());
        let value = match (by_pos, by_name) {
            (Some(_), Some(_)) => {
                return Err(self.error(format!("got multiple values for argument '{name}'")));
            }
            (Some(v), None) | (None, Some(v)) => v,
            (None, None) => return Ok(None),
        };
        T::from_py(value).map(Some).map_err(|found| {
            self.error(format!(
                "argument '{name}' must be {}, not {found}",
                T::EXPECTED
            ))
        })
    }

    /// Take a keyword-only parameter, if given.
    pub fn keyword<T: FromPy>(&mut self, name: &str) -> Result<Option<T>, JobError> {
        self.optional(usize::MAX, name)
    }

    /// Take a parameter that must be present.
    pub fn required<T: FromPy>(&mut self, position: usize, name: &str) -> Result<T, JobError> {
        match self.optional(position, name)? {
            Some(v) => Ok(v),
            None => Err(self.error(format!("missing required argument: '{name}'"))),
        }
    }

    /// Take every positional argument not consumed yet (`*args`).
    pub fn rest_positional(&mut self) -> Vec<PyValue> {
        self.positional
            .iter_mut()
            .filter_map(Option::take)
            .collect()
    }

    /// Take every keyword argument not consumed yet (`**kwargs`).
    pub fn rest_keywords(&mut self) -> Vec<(String, PyValue)> {
        self.kwargs
            .iter_mut()
            .filter_map(|(k, v)| v.take().map(|v| (k.clone(), v)))
            .collect()
    }

    /// Fail if any argument was not consumed.
    pub fn finish(self) -> Result<(), JobError> {
        let extra_pos = self.positional.iter().filter(|v| v.is_some()).count();
        if extra_pos > 0 {
            return Err(self.error(format!("got {extra_pos} unexpected positional argument(s)")));
        }
        if let Some((k, _)) = self.kwargs.iter().find(|(_, v)| v.is_some()) {
            return Err(self.error(format!("got an unexpected keyword argument '{k}'")));
        }
        Ok(())
    }
}

/// Conversion from a [`PyValue`] to a Rust parameter type.
pub trait FromPy: Sized {
    /// How the expected type reads in an error (`"str"`, `"int"`).
    const EXPECTED: &'static str;
    /// Convert, or return the Python type name of what was found.
    fn from_py(value: PyValue) -> Result<Self, String>;
}

impl FromPy for PyValue {
    const EXPECTED: &'static str = "any value";
    fn from_py(value: PyValue) -> Result<Self, String> {
        Ok(value)
    }
}

impl FromPy for String {
    const EXPECTED: &'static str = "str";
    fn from_py(value: PyValue) -> Result<Self, String> {
        match value {
            PyValue::Str(s) => Ok(s),
            other => Err(other.type_name().to_string()),
        }
    }
}

impl FromPy for i64 {
    const EXPECTED: &'static str = "int";
    fn from_py(value: PyValue) -> Result<Self, String> {
        match value {
            PyValue::Int(i) => Ok(i),
            other => Err(other.type_name().to_string()),
        }
    }
}

impl FromPy for f64 {
    const EXPECTED: &'static str = "int or float";
    fn from_py(value: PyValue) -> Result<Self, String> {
        match value {
            PyValue::Int(i) => Ok(i as f64),
            PyValue::Float(f) => Ok(f),
            other => Err(other.type_name().to_string()),
        }
    }
}

impl FromPy for bool {
    const EXPECTED: &'static str = "bool";
    fn from_py(value: PyValue) -> Result<Self, String> {
        match value {
            PyValue::Bool(b) => Ok(b),
            other => Err(other.type_name().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> PyValue {
        PyValue::Str(v.into())
    }

    #[test]
    fn positional_or_keyword() {
        let mut a = Args::new("f", vec![s("x")], vec![("b".into(), PyValue::Int(2))]);
        assert_eq!(a.required::<String>(0, "a").unwrap(), "x");
        assert_eq!(a.required::<i64>(1, "b").unwrap(), 2);
        a.finish().unwrap();
    }

    #[test]
    fn problems_name_the_argument() {
        let mut a = Args::new("f", vec![PyValue::Int(1)], vec![]);
        let e = a
            .required::<String>(0, "document_id")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'document_id' must be str, not int"), "{e}");
        let mut a = Args::new("f", vec![], vec![]);
        let e = a
            .required::<String>(0, "document_id")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing required argument: 'document_id'"),
            "{e}"
        );
        let a = Args::new("f", vec![], vec![("zzz".into(), PyValue::None)]);
        let e = a.finish().unwrap_err().to_string();
        assert!(e.contains("unexpected keyword argument 'zzz'"), "{e}");
        let mut a = Args::new("f", vec![s("x")], vec![("a".into(), s("y"))]);
        assert!(
            a.required::<String>(0, "a")
                .unwrap_err()
                .to_string()
                .contains("multiple values")
        );
    }
}
