//! Built-in diagnostic jobs (`rq_worker.diag.*`), used by the tests, the benchmark and operators'
//! canaries. `python-fixtures/rq_worker/diag.py` holds the same functions in Python, so a Python
//! `rq worker` can run exactly the jobs this worker runs (differential tests).

use std::time::{Duration, Instant};

use crate::jobs::{Args, JobContext, JobError, Registry};
use crate::value::PyValue;

/// Register every `rq_worker.diag.*` function.
pub fn register(registry: &mut Registry) {
    registry.register("rq_worker.diag.noop", noop);
    registry.register("rq_worker.diag.add", add);
    registry.register("rq_worker.diag.echo", echo);
    registry.register("rq_worker.diag.sleep", sleep);
    registry.register("rq_worker.diag.fail", fail);
    registry.register("rq_worker.diag.tally", tally);
}

/// The file `tally` appends to; unset, `tally` refuses to run (a production worker never writes
/// files a payload names).
pub const TALLY_FILE_ENV: &str = "RQ_WORKER_DIAG_TALLY_FILE";

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
    let secs = seconds_of("rq_worker.diag.sleep", &seconds)?;
    nap(ctx, secs)?;
    Ok(seconds)
}

/// A sleep length given as int or float; negative or not finite is a `ValueError`.
fn seconds_of(func_name: &str, seconds: &PyValue) -> Result<f64, JobError> {
    let secs = match seconds {
        PyValue::Int(i) => *i as f64,
        PyValue::Float(f) => *f,
        other => {
            return Err(JobError::BadArguments {
                func_name: func_name.into(),
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
    Ok(secs)
}

/// Sleep `secs`, checking for cancellation every 20 ms.
fn nap(ctx: &JobContext<'_>, secs: f64) -> Result<(), JobError> {
    let end = Instant::now() + Duration::from_secs_f64(secs.min(1e9));
    loop {
        ctx.cancel.check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(20)));
    }
}

/// `tally(value, seconds=0, fail=None)` → value, for the chaos suite (`scripts/chaos.py`): records
/// each execution outside Redis by appending `start <job id> <pid> <parent pid>` to the file named
/// by [`TALLY_FILE_ENV`], sleeps `seconds`, appends `end <job id> ok` (or `... fail` and raises
/// `RuntimeError(fail)` when `fail` is given).
fn tally(ctx: &JobContext<'_>, mut args: Args) -> Result<PyValue, JobError> {
    let value: PyValue = args.required(0, "value")?;
    let seconds: Option<PyValue> = args.optional(1, "seconds")?;
    let fail: Option<String> = match args.optional::<PyValue>(2, "fail")? {
        None | Some(PyValue::None) => None,
        Some(PyValue::Str(s)) => Some(s),
        Some(other) => {
            return Err(JobError::BadArguments {
                func_name: "rq_worker.diag.tally".into(),
                problem: format!(
                    "argument 'fail' must be str or None, not {}",
                    other.type_name()
                ),
            });
        }
    };
    args.finish()?;
    let secs = match &seconds {
        Some(s) => seconds_of("rq_worker.diag.tally", s)?,
        None => 0.0,
    };
    let path = std::env::var_os(TALLY_FILE_ENV)
        .ok_or_else(|| JobError::failed("RuntimeError", format!("{TALLY_FILE_ENV} is not set")))?;
    let record = |line: String| -> Result<(), JobError> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| JobError::with_source("OSError", "cannot open the tally file", e))?;
        // One write of one short line: O_APPEND keeps concurrent writers' lines whole.
        f.write_all(line.as_bytes())
            .map_err(|e| JobError::with_source("OSError", "cannot write the tally file", e))
    };
    record(format!(
        "start {} {} {}\n",
        ctx.job_id,
        std::process::id(),
        std::os::unix::process::parent_id()
    ))?;
    nap(ctx, secs)?;
    match fail {
        Some(message) => {
            record(format!("end {} fail\n", ctx.job_id))?;
            Err(JobError::failed("RuntimeError", message))
        }
        None => {
            record(format!("end {} ok\n", ctx.job_id))?;
            Ok(value)
        }
    }
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
