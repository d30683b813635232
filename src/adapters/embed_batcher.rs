//! One embeddings request for several jobs: texts submitted by concurrently running jobs are packed
//! into shared requests of up to `EMBEDDING_BATCH_SIZE` inputs.
//!
//! Per-job batching alone costs at least one request per document, so a platform ingesting many
//! small documents sends many small requests (and meets the provider's requests-per-minute limit
//! long before its tokens-per-minute limit). Here every waiting job's texts go into one FIFO queue;
//! whichever waiting thread finds no one collecting becomes the collector, waits until a batch is
//! full, or nobody else can add to it soon (every registered [`Participant`] is waiting and no
//! request is out), or the oldest text has waited `max_wait`, then sends that batch itself (other
//! threads may meanwhile collect and send the next one). Each job gets back exactly its own
//! vectors, in order. A lone job is never delayed: it is the only participant, so it is "everyone".
//!
//! Failure stays per job where it can: a request that fails for a reason tied to its inputs (400,
//! 413, 422) is re-sent job by job, so only the job whose text is refused fails. Transport errors
//! and 429/5xx after retries fail every job in the request, as they would have failed each alone.
//! A job that is asked to stop withdraws its texts that are not yet sent and returns at once; a
//! request already sent for it is completed for the others and its vectors dropped. Retries of a
//! shared request stop waiting only when every job in it has been asked to stop.
//!
//! No domain knowledge: texts in, vectors out; budgets stay with the caller.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::embeddings::{Embedded, EmbeddingsClient, EmbeddingsError};

/// Whether the submitting job has been asked to stop.
pub type StopFn = Arc<dyn Fn() -> bool + Send + Sync>;

/// Shares requests between the jobs of one process. Cheap to clone.
#[derive(Clone)]
pub struct EmbedBatcher {
    inner: Arc<Inner>,
}

struct Inner {
    client: EmbeddingsClient,
    batch_size: usize,
    max_wait: Duration,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Submissions with texts not yet taken into a request, oldest first.
    queue: VecDeque<u64>,
    subs: HashMap<u64, Submission>,
    next_id: u64,
    /// Someone is forming the next request.
    collecting: bool,
    /// Registered participants (jobs that will submit soon or are submitting).
    active: usize,
    /// Threads inside [`EmbedBatcher::embed`].
    waiting: usize,
    /// Requests sent and not yet answered.
    in_flight: usize,
}

struct Submission {
    texts: Vec<String>,
    /// First text not yet taken into a request.
    next: usize,
    results: Vec<Option<Vec<f32>>>,
    filled: usize,
    /// Pieces of this submission in requests not yet answered.
    in_flight: usize,
    error: Option<EmbeddingsError>,
    requests: u32,
    total_tokens: Option<u64>,
    arrived: Instant,
    stop: StopFn,
}

/// A slice of one submission inside a request.
struct Piece {
    id: u64,
    start: usize,
    end: usize,
}

/// Registration of a job that will submit texts; while it lives, collectors may wait for it.
pub struct Participant {
    inner: Arc<Inner>,
}

impl Drop for Participant {
    fn drop(&mut self) {
        let mut st = self.inner.lock();
        st.active = st.active.saturating_sub(1);
        drop(st);
        self.inner.changed.notify_all();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EmbedBatcher {
    /// `batch_size` inputs at most per request; `max_wait` bounds how long texts wait for company.
    pub fn new(client: EmbeddingsClient, batch_size: usize, max_wait: Duration) -> Self {
        EmbedBatcher {
            inner: Arc::new(Inner {
                client,
                batch_size: batch_size.max(1),
                max_wait,
                state: Mutex::new(State::default()),
                changed: Condvar::new(),
            }),
        }
    }

    pub fn client(&self) -> &EmbeddingsClient {
        &self.inner.client
    }

    /// Register a job that is about to submit texts (hold it for the job's whole run).
    pub fn participant(&self) -> Participant {
        self.inner.lock().active += 1;
        Participant {
            inner: self.inner.clone(),
        }
    }

    /// Vectors for `texts`, in order. `requests` counts the requests (retries included) that
    /// carried any of these texts, shared ones included; `total_tokens` sums the usage reported
    /// by requests that carried only these texts (shared requests report a total for everyone).
    pub fn embed(&self, texts: Vec<String>, stop: StopFn) -> Result<Embedded, EmbeddingsError> {
        if texts.is_empty() {
            return Ok(Embedded {
                vectors: Vec::new(),
                total_tokens: None,
                requests: 0,
            });
        }
        let inner = &self.inner;
        let mut st = inner.lock();
        let id = st.next_id;
        st.next_id += 1;
        let n = texts.len();
        st.subs.insert(
            id,
            Submission {
                texts,
                next: 0,
                results: vec![None; n],
                filled: 0,
                in_flight: 0,
                error: None,
                requests: 0,
                total_tokens: None,
                arrived: Instant::now(),
                stop: stop.clone(),
            },
        );
        st.queue.push_back(id);
        st.waiting += 1;
        inner.changed.notify_all();

        let outcome = loop {
            if let Some(done) = take_if_done(&mut st, id) {
                break done;
            }
            if stop() {
                withdraw(&mut st, id);
                break Err(EmbeddingsError::Cancelled);
            }
            if !st.collecting && !st.queue.is_empty() {
                st = self.collect_and_send(st, &stop);
                continue;
            }
            st = inner
                .changed
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        st.waiting -= 1;
        drop(st);
        inner.changed.notify_all();
        outcome
    }

    /// Become the collector: wait for a full batch (or everyone, or the deadline), take it, send
    /// it without the lock, and record the answer. Returns with the lock held again.
    /// A collector whose own job is asked to stop hands the role back and returns.
    fn collect_and_send<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        own_stop: &StopFn,
    ) -> MutexGuard<'a, State> {
        let inner = &*self.inner;
        st.collecting = true;
        loop {
            if own_stop() {
                st.collecting = false;
                inner.changed.notify_all();
                return st;
            }
            prune_queue(&mut st);
            let Some(&front) = st.queue.front() else {
                break;
            };
            let untaken: usize = st
                .queue
                .iter()
                .filter_map(|id| st.subs.get(id))
                .map(|s| s.texts.len() - s.next)
                .sum();
            let deadline = st
                .subs
                .get(&front)
                .map(|s| s.arrived + inner.max_wait)
                .unwrap_or_else(Instant::now);
            let now = Instant::now();
            // A partial batch goes when nobody else can add to it soon: every job is waiting here
            // and no request is out (its jobs would write their rows and come back with more).
            let stalled = st.waiting >= st.active && st.in_flight == 0;
            if untaken >= inner.batch_size || stalled || now >= deadline {
                break;
            }
            let wait = (deadline - now).min(Duration::from_millis(50));
            st = inner
                .changed
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        // Take up to batch_size texts, oldest submissions first.
        let mut pieces = Vec::new();
        let mut inputs = Vec::new();
        while inputs.len() < inner.batch_size {
            let Some(&id) = st.queue.front() else { break };
            let Some(sub) = st
                .subs
                .get_mut(&id)
                .filter(|s| s.error.is_none() && s.next < s.texts.len())
            else {
                st.queue.pop_front();
                continue;
            };
            let room = inner.batch_size - inputs.len();
            let start = sub.next;
            let end = sub.texts.len().min(start + room);
            inputs.extend(sub.texts[start..end].iter().cloned());
            sub.next = end;
            sub.in_flight += 1;
            pieces.push(Piece { id, start, end });
            if end == sub.texts.len() {
                st.queue.pop_front();
            }
        }
        st.collecting = false;
        inner.changed.notify_all();
        if pieces.is_empty() {
            return st;
        }
        st.in_flight += 1;
        let stops: Vec<StopFn> = pieces
            .iter()
            .filter_map(|p| st.subs.get(&p.id).map(|s| s.stop.clone()))
            .collect();
        drop(st);

        // Should this thread panic while the request is out, the guard answers every piece with
        // an error, so the other jobs in the request never wait for an answer that cannot come.
        let mut guard = SendGuard {
            inner,
            pieces: &pieces,
            armed: true,
        };
        let all_stopped = move || !stops.is_empty() && stops.iter().all(|s| s());
        let result = inner.client.embed(&inputs, &all_stopped);
        let per_input_refusal = matches!(
            &result,
            Err(EmbeddingsError::Status {
                status: 400 | 413 | 422,
                ..
            })
        );
        if pieces.len() > 1 && per_input_refusal {
            // Find out whose text was refused: one request per job.
            let mut answers = Vec::with_capacity(pieces.len());
            let mut offset = 0;
            for p in &pieces {
                let len = p.end - p.start;
                let own = &inputs[offset..offset + len];
                offset += len;
                answers.push(inner.client.embed(own, &all_stopped));
            }
            guard.armed = false;
            let mut st = inner.lock();
            st.in_flight -= 1;
            for (p, answer) in pieces.iter().zip(answers) {
                // The shared attempt counts for everyone in it.
                if let Some(sub) = st.subs.get_mut(&p.id) {
                    sub.requests += 1;
                }
                record(&mut st, p, answer, 0, true);
            }
            inner.changed.notify_all();
            return st;
        }

        guard.armed = false;
        let mut st = inner.lock();
        st.in_flight -= 1;
        match result {
            Ok(embedded) => {
                let alone = pieces.len() == 1;
                let requests = embedded.requests;
                let tokens = embedded.total_tokens;
                let mut vectors = embedded.vectors.into_iter();
                for p in &pieces {
                    let own: Vec<Vec<f32>> = vectors.by_ref().take(p.end - p.start).collect();
                    let answer = Ok(Embedded {
                        vectors: own,
                        total_tokens: if alone { tokens } else { None },
                        requests,
                    });
                    record(&mut st, p, answer, 0, alone);
                }
            }
            Err(e) => {
                for p in &pieces {
                    record(&mut st, p, Err(e.clone()), 1, false);
                }
            }
        }
        inner.changed.notify_all();
        st
    }
}

/// Answers a request's pieces with an error if the thread sending it unwinds (see
/// `collect_and_send`); disarmed once the answer is in hand.
struct SendGuard<'a> {
    inner: &'a Inner,
    pieces: &'a [Piece],
    armed: bool,
}

impl Drop for SendGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut st = self.inner.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
        let abandoned = EmbeddingsError::Connection {
            message:
                "the shared embeddings request was abandoned: the job thread sending it panicked"
                    .into(),
        };
        for p in self.pieces {
            record(&mut st, p, Err(abandoned.clone()), 1, false);
        }
        drop(st);
        self.inner.changed.notify_all();
    }
}

/// Store one piece's answer in its submission (if the job is still waiting for it).
/// `extra_requests` is added on failure (the failed request is not in an `Embedded`).
fn record(
    st: &mut State,
    p: &Piece,
    answer: Result<Embedded, EmbeddingsError>,
    extra_requests: u32,
    own_tokens: bool,
) {
    let Some(sub) = st.subs.get_mut(&p.id) else {
        return;
    };
    sub.in_flight = sub.in_flight.saturating_sub(1);
    match answer {
        Ok(embedded) => {
            sub.requests += embedded.requests;
            if own_tokens && let Some(t) = embedded.total_tokens {
                sub.total_tokens = Some(sub.total_tokens.unwrap_or(0) + t);
            }
            for (slot, v) in sub.results[p.start..p.end].iter_mut().zip(embedded.vectors) {
                if slot.is_none() {
                    sub.filled += 1;
                }
                *slot = Some(v);
            }
        }
        Err(e) => {
            sub.requests += extra_requests;
            if sub.error.is_none() {
                sub.error = Some(e);
            }
        }
    }
}

/// The submission's outcome once every text has its vector or it has an error and nothing of it
/// is still in flight; removes it.
fn take_if_done(st: &mut State, id: u64) -> Option<Result<Embedded, EmbeddingsError>> {
    let sub = st.subs.get(&id)?;
    let complete = sub.filled == sub.texts.len();
    let failed = sub.error.is_some() && sub.in_flight == 0;
    if !complete && !failed {
        return None;
    }
    let sub = st.subs.remove(&id)?;
    st.queue.retain(|q| *q != id);
    if let Some(e) = sub.error {
        return Some(Err(e));
    }
    Some(Ok(Embedded {
        vectors: sub
            .results
            .into_iter()
            .map(|v| v.unwrap_or_default())
            .collect(),
        total_tokens: sub.total_tokens,
        requests: sub.requests,
    }))
}

/// Forget a submission whose job stopped; a request carrying part of it completes for the others.
fn withdraw(st: &mut State, id: u64) {
    st.subs.remove(&id);
    st.queue.retain(|q| *q != id);
}

/// Drop queue entries whose submission is gone, failed, or fully taken.
fn prune_queue(st: &mut State) {
    let State { queue, subs, .. } = st;
    queue.retain(|id| {
        subs.get(id)
            .is_some_and(|s| s.error.is_none() && s.next < s.texts.len())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::embeddings::EmbeddingsConfig;
    use crate::config::ingest::EmbeddingEncoding;

    #[test]
    fn a_sender_that_panics_never_leaves_the_others_waiting() {
        let client = EmbeddingsClient::new(EmbeddingsConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: None,
            model: "m".into(),
            encoding: EmbeddingEncoding::Float,
            timeout: Duration::from_secs(1),
            max_retries: 0,
            dim: 2,
        });
        let b = EmbedBatcher::new(client, 8, Duration::from_millis(10));
        // Another job's texts, taken into a request that the panicking thread is sending.
        let mut st = b.inner.lock();
        st.subs.insert(
            7,
            Submission {
                texts: vec!["a".into(), "b".into()],
                next: 2,
                results: vec![None, None],
                filled: 0,
                in_flight: 1,
                error: None,
                requests: 0,
                total_tokens: None,
                arrived: Instant::now(),
                stop: Arc::new(|| false),
            },
        );
        st.in_flight = 1;
        drop(st);
        let pieces = [Piece {
            id: 7,
            start: 0,
            end: 2,
        }];
        let sent = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = SendGuard {
                inner: &b.inner,
                pieces: &pieces,
                armed: true,
            };
            panic!("the sender panicked");
        }));
        assert!(sent.is_err());
        let mut st = b.inner.lock();
        assert_eq!(st.in_flight, 0);
        match take_if_done(&mut st, 7) {
            Some(Err(EmbeddingsError::Connection { message })) => {
                assert!(message.contains("panicked"), "{message}")
            }
            other => panic!("the other job got {other:?}"),
        }
    }
}
