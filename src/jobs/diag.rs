//! Built-in diagnostic jobs (`rq_worker.diag.*`), used by the tests, the benchmark and operators'
//! canaries. `python-fixtures/rq_worker/diag.py` holds the same functions in Python, so a Python
//! `rq worker` can run exactly the jobs this worker runs (differential tests).

use std::time::{Duration, Instant};

use crate::jobs::{Args, JobContext, JobError, Registry};
use crate::rq::value::PyValue;

/// Register every `rq_worker.diag.*` function.
pub fn register(registry: &mut Registry) {
    registry.register("rq_worker.diag.noop", noop);
    registry.register("rq_worker.diag.add", add);
    registry.register("rq_worker.diag.echo", echo);
    registry.register("rq_worker.diag.sleep", sleep);
    registry.register("rq_worker.diag.fail", fail);
}

/// `noop()` → None.
fn noop(_ctx: &JobContext<'_>, args: Args) -> Result<PyValue, JobError> {
    args.finish()?;
    Ok(PyValue::None)
}

/// `add(a, b)` → a + b, int when both are ints (overflow falls back to float, as a diagnostic may).
fn add(_ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let a: PyValue = args.required(0, "a")?;
    let b: PyValue = args.required(1, "b")?;
    args.finish()?;
    let num = |name: &str, v: &PyValue| match v {
        PyValue::Int(i) => Ok(*i as f64),
        PyValue::Float(f) => Ok(*f),
        PyValue::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        other => Err(JobError::BadArguments {
            func_name: "rq_worker.diag.add".into(),
            problem: format!(
                "argument '{name}' must be int or float, not {}",
                other.type_name()
            ),
        }),
    };
    let int_of = |v: &PyValue| match v {
        PyValue::Int(i) => Some(*i),
        PyValue::Bool(b) => Some(*b as i64),
        _ => None,
    };
    if let (Some(x), Some(y)) = (int_of(&a), int_of(&b)) {
        if let Some(sum) = x.checked_add(y) {
            return Ok(PyValue::Int(sum));
        }
        return Ok(PyValue::BigInt(
            num_bigint::BigInt::from(x) + num_bigint::BigInt::from(y),
        ));
    }
    Ok(PyValue::Float(num("a", &a)? + num("b", &b)?))
}

/// `echo(*args, **kwargs)` → `[list(args), kwargs]`.
fn echo(_ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let positional = args.rest_positional();
    let keywords = args.rest_keywords();
    Ok(PyValue::List(vec![
        PyValue::List(positional),
        PyValue::str_dict(keywords),
    ]))
}

/// `sleep(seconds)` → seconds; stops early when cancelled (timeout, stop-job, cold shutdown).
fn sleep(ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let seconds: PyValue = args.required(0, "seconds")?;
    args.finish()?;
    let secs = match seconds {
        PyValue::Int(i) => i as f64,
        PyValue::Float(f) => f,
        ref other => {
            return Err(JobError::BadArguments {
                func_name: "rq_worker.diag.sleep".into(),
                problem: format!(
                    "argument 'seconds' must be int or float, not {}",
                    other.type_name()
                ),
            });
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(JobError::failed(
            "ValueError",
            "sleep length must be non-negative",
        ));
    }
    let end = Instant::now() + Duration::from_secs_f64(secs.min(1e9));
    loop {
        ctx.cancel.check()?;
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
    Ok(seconds)
}

/// `fail(message, cause=None)` → raises `RuntimeError(message)`, chained to `cause` when given
/// (Python: `raise RuntimeError(message) from RuntimeError(cause)`), to show an error chain.
fn fail(_ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let message: String = args
        .optional(0, "message")?
        .unwrap_or_else(|| "diag.fail".to_string());
    let cause: Option<PyValue> = args.optional(1, "cause")?;
    args.finish()?;
    match cause {
        None | Some(PyValue::None) => Err(JobError::failed("RuntimeError", message)),
        Some(PyValue::Str(cause)) => Err(JobError::with_source(
            "RuntimeError",
            message,
            std::io::Error::other(cause),
        )),
        Some(other) => Err(JobError::BadArguments {
            func_name: "rq_worker.diag.fail".into(),
            problem: format!("argument 'cause' must be str, not {}", other.type_name()),
        }),
    }
}
