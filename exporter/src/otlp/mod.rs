//! OTLP export: a bounded queue of encoded requests, one sender thread with
//! its own single-threaded tokio runtime, retries with backoff, and a bounded
//! shutdown that accounts for every span.
//!
//! Accounting: every span handed to [`OtlpExporter::submit`] ends up in
//! exactly one of the [`ExportReport`] counters `delivered`, `rejected`
//! (the receiver's partial success said so), `failed` (a permanent error such
//! as HTTP 400 or gRPC `INVALID_ARGUMENT`), `dropped` (queue full under
//! [`QueuePolicy::DropWhenFull`]) or `undelivered` (still queued or in
//! retry when the shutdown deadline passed).
//!
//! Retries: gRPC `UNAVAILABLE`, `RESOURCE_EXHAUSTED` and the other transient
//! codes, HTTP 429/502/503/504, and connection errors and timeouts are
//! retried without limit until delivered or until the shutdown deadline, with
//! exponential backoff (250 ms doubling to 5 s, ±20 % jitter) or the delay
//! the receiver asked for (`Retry-After`, gRPC `RetryInfo`). Up to
//! [`ExportOptions::concurrency`] requests are in flight at once, so a
//! distant receiver's round-trip time does not bound the rate; requests may
//! therefore complete out of order.

pub mod config;
pub mod signal;
pub mod transport;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::registry::{DurationHistogram, REQUEST_DURATION_BOUNDS_US};
use tokio::sync::{Semaphore, mpsc, watch};

pub use config::{Compression, ConfigError, OtlpConfig, OtlpFlags, Protocol};
pub use signal::Signal;
pub use transport::SharedHeaders;
use transport::Transport;

/// What to do when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    /// Wait for room: the producer (and, through it, the capture reader)
    /// slows down. Nothing is dropped. For capture files.
    Block,
    /// Drop the new request and count its spans. For live capture, where
    /// waiting would lose packets instead.
    DropWhenFull,
}

/// Exporter settings besides the endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    /// Queued requests at most (each of up to one batch of spans).
    pub queue_requests: usize,
    /// Full-queue policy.
    pub policy: QueuePolicy,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// Where every submitted span ended up, plus request counts: the
/// registry's export accounting, which every signal shares.
pub type ExportReport = engine::registry::ExportCounts;

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    delivered: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    undelivered: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    queued: AtomicU64,
    failing: AtomicBool,
    durations: [AtomicU64; REQUEST_DURATION_BOUNDS_US.len() + 1],
    durations_sum_us: AtomicU64,
}

impl Counters {
    /// Counts a request that took `took` and whether it succeeded.
    fn request_ended(&self, took: Duration, ok: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        Counters::add(&self.requests, 1);
        Counters::add(&self.durations[DurationHistogram::bucket(us)], 1);
        Counters::add(&self.durations_sum_us, us);
        self.failing.store(!ok, Ordering::Relaxed);
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn report(&self) -> ExportReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ExportReport {
            submitted: get(&self.submitted),
            delivered: get(&self.delivered),
            rejected: get(&self.rejected),
            failed: get(&self.failed),
            dropped: get(&self.dropped),
            undelivered: get(&self.undelivered),
            requests: get(&self.requests),
            retries: get(&self.retries),
            queued: get(&self.queued),
            failing: self.failing.load(Ordering::Relaxed),
            durations: DurationHistogram {
                counts: std::array::from_fn(|i| get(&self.durations[i])),
                sum_us: get(&self.durations_sum_us),
            },
        }
    }
}

/// A sink for the exporter's status lines (outages, recoveries, rejections).
/// Called from the sender thread, at most once per 10 s for repeated
/// failures.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

struct Job {
    body: Bytes,
    spans: u64,
}

/// Sets the shutdown deadline from anywhere (e.g. a signal handler thread):
/// from then on the exporter gives up on what it cannot deliver in time.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(Arc<watch::Sender<Option<Instant>>>);

impl ShutdownHandle {
    /// Gives queued and retried requests until `timeout` from now; an
    /// earlier deadline already set stays.
    pub fn begin(&self, timeout: Duration) {
        let at = Instant::now() + timeout;
        self.0.send_if_modified(|d| match d {
            Some(old) if *old <= at => false,
            _ => {
                *d = Some(at);
                true
            }
        });
    }
}

/// Reads an exporter's counters from any thread (for progress lines).
#[derive(Debug, Clone)]
pub struct ExportStatus(Arc<Counters>);

impl ExportStatus {
    /// Spans waiting in the queue or in retry.
    pub fn queued_spans(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }

    /// The counters so far.
    pub fn report(&self) -> ExportReport {
        self.0.report()
    }
}

impl engine::registry::ExportGauge for ExportStatus {
    fn counts(&self) -> engine::registry::ExportCounts {
        self.report()
    }
}

/// Sends encoded requests to an OTLP receiver from a background thread.
pub struct OtlpExporter {
    tx: Option<mpsc::Sender<Job>>,
    headers: SharedHeaders,
    protocol: Protocol,
    policy: QueuePolicy,
    counters: Arc<Counters>,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("policy", &self.policy)
            .field("report", &self.counters.report())
            .finish()
    }
}

impl OtlpExporter {
    /// Starts the sender thread. Nothing is connected yet: a receiver that is
    /// down is retried like one that goes away later.
    ///
    /// # Errors
    /// The client cannot be built from `config` (TLS material), or the thread
    /// or runtime cannot start.
    pub fn start(config: &OtlpConfig, options: ExportOptions, log: Log) -> Result<Self, String> {
        let headers = SharedHeaders::new(config.protocol, config.headers.clone())?;
        let thread_headers = headers.clone();
        let protocol = config.protocol;
        let (tx, rx) = mpsc::channel::<Job>(options.queue_requests.max(1));
        let (deadline_tx, deadline_rx) = watch::channel(None);
        let counters = Arc::new(Counters::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let config = config.clone();
        let thread_counters = Arc::clone(&counters);
        let thread = thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("starting the export runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let transport = match Transport::new(&config, thread_headers) {
                        Ok(t) => t,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    let sender = Sender {
                        transport,
                        counters: thread_counters,
                        deadline: deadline_rx,
                        log,
                        target: config.target(),
                        items: config.signal.items(),
                        state: Mutex::new(SenderState {
                            outage: None,
                            jitter: jitter_seed(),
                        }),
                    };
                    sender.run(rx, options.concurrency.max(1)).await;
                });
            })
            .map_err(|e| format!("starting the export thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => return Err("the export thread stopped while starting".into()),
        }
        Ok(OtlpExporter {
            tx: Some(tx),
            headers,
            protocol,
            policy: options.policy,
            counters,
            shutdown: ShutdownHandle(Arc::new(deadline_tx)),
            thread: Some(thread),
        })
    }

    /// A handle that replaces the request headers from another thread
    /// ([`SharedHeaders::set`] with this protocol).
    pub fn headers_handle(&self) -> (SharedHeaders, Protocol) {
        (self.headers.clone(), self.protocol)
    }

    /// A handle that starts the bounded shutdown from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Queues one encoded request of `spans` spans. Under
    /// [`QueuePolicy::Block`] this waits while the queue is full; under
    /// [`QueuePolicy::DropWhenFull`] it drops and counts the spans instead.
    pub fn submit(&self, body: Vec<u8>, spans: u64) {
        Counters::add(&self.counters.submitted, spans);
        let Some(tx) = &self.tx else {
            Counters::add(&self.counters.undelivered, spans);
            return;
        };
        Counters::add(&self.counters.queued, spans);
        let job = Job {
            body: Bytes::from(body),
            spans,
        };
        let result = match self.policy {
            QueuePolicy::Block => tx.blocking_send(job).map_err(|e| (e.0, false)),
            QueuePolicy::DropWhenFull => tx.try_send(job).map_err(|e| match e {
                mpsc::error::TrySendError::Full(j) => (j, true),
                mpsc::error::TrySendError::Closed(j) => (j, false),
            }),
        };
        if let Err((job, full)) = result {
            self.counters.queued.fetch_sub(job.spans, Ordering::Relaxed);
            let counter = if full {
                &self.counters.dropped
            } else {
                &self.counters.undelivered
            };
            Counters::add(counter, job.spans);
        }
    }

    /// A handle to read the counters from another thread.
    pub fn status(&self) -> ExportStatus {
        ExportStatus(Arc::clone(&self.counters))
    }

    /// Delivers what is queued, giving up at `timeout` from now (or at an
    /// earlier deadline set through a [`ShutdownHandle`]), and returns the
    /// final counts.
    pub fn finish(mut self, timeout: Duration) -> ExportReport {
        self.shutdown.begin(timeout);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counters.report()
    }
}

/// An ongoing failure to deliver, for rate-limited status lines.
struct Outage {
    since: Instant,
    last_log: Instant,
    failures: u64,
}

const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const LOG_EVERY: Duration = Duration::from_secs(10);

/// State shared by the concurrent deliveries.
struct Sender {
    transport: Transport,
    counters: Arc<Counters>,
    deadline: watch::Receiver<Option<Instant>>,
    log: Log,
    target: String,
    /// What the signal's requests carry: `spans`, `data points`.
    items: &'static str,
    state: Mutex<SenderState>,
}

struct SenderState {
    outage: Option<Outage>,
    jitter: u64,
}

impl Sender {
    /// Delivers jobs with up to `concurrency` requests in flight, until the
    /// queue is closed and empty and every delivery has ended.
    async fn run(self, mut rx: mpsc::Receiver<Job>, concurrency: usize) {
        let this = Arc::new(self);
        let slots = Arc::new(Semaphore::new(concurrency));
        loop {
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                break;
            };
            let Some(job) = rx.recv().await else { break };
            let this = Arc::clone(&this);
            tokio::spawn(async move {
                let outcome = this.deliver(&job).await;
                this.counters.queued.fetch_sub(job.spans, Ordering::Relaxed);
                match outcome {
                    Outcome::Delivered => {}
                    Outcome::Failed => Counters::add(&this.counters.failed, job.spans),
                    Outcome::TimedOut => Counters::add(&this.counters.undelivered, job.spans),
                }
                drop(slot);
            });
        }
        // Wait for the deliveries still running.
        let _ = slots
            .acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX))
            .await;
    }

    fn deadline_passed(&self) -> bool {
        self.deadline.borrow().is_some_and(|d| Instant::now() >= d)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SenderState> {
        // A panic elsewhere cannot leave this state inconsistent: use it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn deliver(&self, job: &Job) -> Outcome {
        let mut transport = self.transport.clone();
        let mut backoff = BACKOFF_INITIAL;
        loop {
            if self.deadline_passed() {
                return Outcome::TimedOut;
            }
            let mut deadline = self.deadline.clone();
            let sent = Instant::now();
            let result = tokio::select! {
                r = transport.send(job.body.clone()) => r,
                () = wait_for_deadline(&mut deadline) => return Outcome::TimedOut,
            };
            self.counters.request_ended(sent.elapsed(), result.is_ok());
            match result {
                Ok(accepted) => {
                    let rejected = accepted.rejected.min(job.spans);
                    Counters::add(&self.counters.delivered, job.spans - rejected);
                    Counters::add(&self.counters.rejected, rejected);
                    if rejected > 0 {
                        (self.log)(&format!(
                            "OTLP export to {}: the receiver rejected {rejected} of {} {}: {}",
                            self.target, job.spans, self.items, accepted.message
                        ));
                    }
                    let ended = self.state().outage.take();
                    if let Some(o) = ended {
                        (self.log)(&format!(
                            "OTLP export to {}: delivering again after {:.1} s and {} failed attempts",
                            self.target,
                            o.since.elapsed().as_secs_f64(),
                            o.failures
                        ));
                    }
                    return Outcome::Delivered;
                }
                Err(f) if !f.retryable => {
                    (self.log)(&format!(
                        "OTLP export to {}: {} {} not delivered: {} (not retryable)",
                        self.target, job.spans, self.items, f.reason
                    ));
                    return Outcome::Failed;
                }
                Err(f) => {
                    let delay = f.retry_after.unwrap_or_else(|| self.jitter(backoff));
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    self.note_failure(&f.reason, delay);
                    Counters::add(&self.counters.retries, 1);
                    let mut deadline = self.deadline.clone();
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = wait_for_deadline(&mut deadline) => return Outcome::TimedOut,
                    }
                }
            }
        }
    }

    fn note_failure(&self, reason: &str, delay: Duration) {
        let now = Instant::now();
        let since = {
            let mut state = self.state();
            match &mut state.outage {
                None => {
                    state.outage = Some(Outage {
                        since: now,
                        last_log: now,
                        failures: 1,
                    });
                    Some(now)
                }
                Some(o) => {
                    o.failures += 1;
                    if now.duration_since(o.last_log) >= LOG_EVERY {
                        o.last_log = now;
                        Some(o.since)
                    } else {
                        None
                    }
                }
            }
        };
        if let Some(since) = since {
            (self.log)(&format!(
                "OTLP export to {}: {reason}; retrying in {:.1} s ({} {} waiting, failing for {:.0} s)",
                self.target,
                delay.as_secs_f64(),
                self.counters.queued.load(Ordering::Relaxed),
                self.items,
                since.elapsed().as_secs_f64(),
            ));
        }
    }

    /// `d` ± 20 %, from a xorshift generator (no need for good randomness:
    /// only to keep many agents from retrying in lockstep).
    fn jitter(&self, d: Duration) -> Duration {
        let mut state = self.state();
        let mut x = state.jitter;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.jitter = x;
        let factor = 0.8 + 0.4 * ((x >> 11) as f64 / (1u64 << 53) as f64);
        d.mul_f64(factor)
    }
}

enum Outcome {
    Delivered,
    Failed,
    TimedOut,
}

fn jitter_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64 ^ u64::from(std::process::id())) | 1
}

/// Resolves when a deadline is set and reached; never if none is set.
async fn wait_for_deadline(rx: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let current = *rx.borrow_and_update();
        match current {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => return,
                    changed = rx.changed() => {
                        if changed.is_err() {
                            tokio::time::sleep_until(at.into()).await;
                            return;
                        }
                    }
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// What a start-up connection attempt to the endpoint found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connection was accepted.
    Listening,
    /// The host is there but refused the connection: the collector is not
    /// (yet) running. Export keeps retrying.
    Refused,
}

/// Resolves the endpoint's host and opens (then closes) one TCP connection,
/// so that a configuration that cannot work fails at start-up instead of
/// retrying forever. For an `https://` endpoint it also says hello in TLS,
/// to catch a receiver that serves plain HTTP.
///
/// # Errors
/// The host name does not resolve, or the host is unreachable (no route,
/// connection timed out), or an `https://` receiver answers in plain HTTP:
/// one line naming the setting and the host.
pub fn probe(config: &OtlpConfig, timeout: Duration) -> Result<Probe, String> {
    use std::net::{TcpStream, ToSocketAddrs};
    let (host, port) = config.host_port();
    let what = format!("{} {}", config.url_setting, config.url);
    let addrs: Vec<_> = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{what}: cannot resolve host {host:?}: {e}"))?
        .collect();
    let mut refused = false;
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(stream) => {
                if config.url.scheme_str() == Some("https")
                    && let Some(plain) = answers_in_plain_http(stream, timeout)
                {
                    return Err(format!(
                        "{what}: the receiver answered a TLS hello in plain {plain}: it has no TLS \
                         (use http:// instead of https://, or give it TLS)"
                    ));
                }
                return Ok(Probe::Listening);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused = true,
            Err(e) => last = Some((addr, e)),
        }
    }
    if refused {
        return Ok(Probe::Refused);
    }
    match last {
        Some((addr, e)) => Err(format!("{what}: host unreachable ({addr}: {e})")),
        None => Err(format!("{what}: host {host:?} has no address")),
    }
}

/// Says hello in TLS on `stream` and reads the first bytes of the answer:
/// `Some("HTTP/1.1")` or `Some("HTTP/2")` if the receiver answered in plain
/// HTTP, `None` if it answered in TLS (a handshake or an alert) or in no
/// way recognised (closed, silent): only a sure sign fails the start.
fn answers_in_plain_http(
    mut stream: std::net::TcpStream,
    timeout: Duration,
) -> Option<&'static str> {
    use std::io::{Read, Write};
    // A TLS 1.2 ClientHello: two cipher suites, no extensions. Any TLS
    // server answers it with a handshake or an alert record.
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]);
    body.extend_from_slice(&[0, 0, 4, 0x13, 0x01, 0xc0, 0x2f, 1, 0, 0, 0]);
    let mut hello = vec![0x16, 3, 1];
    hello.extend_from_slice(&(body.len() as u16 + 4).to_be_bytes());
    hello.push(1);
    hello.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hello.extend_from_slice(&body);
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(&hello).ok()?;
    let mut answer = [0u8; 9];
    let mut got = 0;
    while got < answer.len() {
        match stream.read(&mut answer[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let answer = &answer[..got];
    if answer.starts_with(b"HTTP/") {
        Some("HTTP/1.1")
    } else if answer.len() == 9 && answer[3] == 4 && answer[4] & !1 == 0 {
        // An HTTP/2 SETTINGS frame (what a cleartext gRPC server sends
        // first).
        Some("HTTP/2")
    } else {
        None
    }
}
