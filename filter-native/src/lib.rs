//! The oauth2 filter as an Envoy **dynamic module** (a native shared object, ABI `v0.2.0`,
//! Envoy 1.40): the same [`Flow`] as the wasm build, with the same JSON configuration, behind
//! the same [`oauth2_filter::flow::Host`] seam, implemented here over Envoy's C callbacks
//! ([`abi`], [`host`]). No decision is made in this crate.
//!
//! How it runs in Envoy:
//! - **Configuration** (main thread): the JSON is parsed exactly as the wasm build parses it;
//!   counters are defined; a timer thread commits an event to the configuration's scheduler
//!   every poll interval, and the main thread then polls the token-service for every service
//!   (one HTTP callout each) and publishes the answers in the [`feed`].
//! - **Workers**: each worker thread keeps one [`Worker`] per configuration (thread-local,
//!   `Rc<RefCell<_>>` as the flow expects); before any hook runs the flow, the worker applies
//!   every published answer it has not seen (settings, revocations, cache epoch).
//! - **Shared cache**: real process-wide shared memory ([`shared`]), bounded.
//! - **Never a panic across the FFI boundary**: every entry point runs under `catch_unwind`;
//!   a request whose hook panicked is answered 503 and never continued (the crate refuses to
//!   build with `panic = "abort"`, which would take Envoy down instead).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
// The `envoy_dynamic_module_on_*` hooks take Envoy's raw pointers: Envoy is their only caller
// and the ABI is what guarantees those pointers (each use says which guarantee it relies on).
// They cannot be `unsafe fn` and keep the exported C signature the ABI names.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[cfg(panic = "abort")]
compile_error!(
    "oauth2-filter-native must be built with panic = \"unwind\": a panic is caught at the FFI \
     boundary and answered 503; aborting would take Envoy down"
);

mod abi;
pub mod feed;
mod host;
pub mod shared;

use abi::{
    ConfigEnvoyPtr, ConfigModulePtr, EnvoyBuffer, FilterEnvoyPtr, FilterModulePtr, HttpHeader,
    ModuleBuffer,
};
use feed::Feed;
use host::Envoy;
use oauth2_filter::cache;
use oauth2_filter::config::{FilterConfig, Mode};
use oauth2_filter::decision;
use oauth2_filter::flow::{worker, Action, CallAnswer, Flow, Level, Worker};
use oauth2_filter::metrics::{self, Metric};
use oauth2_filter::poll_retry::PollRetries;
use oauth2_filter::state::StatePoll;
use shared::SharedData;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The ABI this module is built against (Envoy 1.40). Envoy compares it with its own.
pub const ABI_VERSION: &str = "v0.2.0";
const ABI_VERSION_C: &[u8] = b"v0.2.0\0";
const FIRST_POLL_DELAY: Duration = Duration::from_millis(20);
/// The scheduler event of the poll timer's rounds, and of the retry of a failed poll.
const ROUND_EVENT: u64 = 0;
const RETRY_EVENT: u64 = 1;
const UNAVAILABLE: &str = "The authorization service is unavailable";

/// Shared data of the whole process (every worker, every configuration of this module),
/// as proxy-wasm shares it across the VMs of one `vm_id`.
pub fn shared_data() -> &'static SharedData {
    static DATA: OnceLock<SharedData> = OnceLock::new();
    DATA.get_or_init(SharedData::new)
}

/// One filter configuration (one `http_filters` entry), shared by every worker.
pub struct Config {
    id: u64,
    filter_config: FilterConfig,
    pub feed: Feed,
    /// Envoy's id of each counter, in `metrics::ALL` order.
    counter_ids: Vec<Option<usize>>,
    /// Counts from the main thread's poller, added to Envoy's stats by the next request.
    main_counts: Vec<AtomicU64>,
    poller: Mutex<Poller>,
}

#[derive(Default)]
struct Poller {
    /// Callout id → the service whose state it asks for, and when it was asked.
    in_flight: HashMap<u64, (String, Instant)>,
    /// The configuration's scheduler (an Envoy pointer, kept as an address so `Config` is
    /// `Sync`; only the main thread and the timer use it, and the timer stops before it goes).
    scheduler: usize,
    timer: Option<Timer>,
    /// Failed polls asked again at once, within a budget per round.
    retries: PollRetries,
    /// Services whose failed poll is to be asked again by the next [`RETRY_EVENT`].
    retry_due: Vec<String>,
}

impl Poller {
    /// Whether a poll of `service` is in flight. One that outlived its timeout by far never
    /// got its answer: it is forgotten (and the service polled again), so a lost callout
    /// cannot freeze a service's settings and revocations.
    fn polling(&mut self, service: &str, config: &FilterConfig) -> bool {
        let timeout = match &config.mode {
            Mode::TokenService { endpoint, .. } => Duration::from_millis(endpoint.timeout_ms),
            Mode::Introspection(_) => Duration::ZERO,
        };
        let lost_after = timeout.saturating_add(Duration::from_secs(5));
        let before = self.in_flight.len();
        self.in_flight
            .retain(|_, (_, asked)| asked.elapsed() <= lost_after);
        if self.in_flight.len() != before {
            host::log(
                Level::Warn,
                "a state poll got no answer in time; polling again",
            );
        }
        self.in_flight.values().any(|(s, _)| s == service)
    }
}

impl Config {
    fn count(&self, metric: Metric) {
        if let Some(count) = self.main_counts.get(metric as usize) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poller(&self) -> std::sync::MutexGuard<'_, Poller> {
        self.poller
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Commits a scheduler event every poll interval until stopped.
struct Timer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl Timer {
    fn start(scheduler: usize, interval: Duration) -> std::io::Result<Timer> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = stop.clone();
        let handle = std::thread::Builder::new()
            .name("oauth2-poll-timer".into())
            .spawn(move || {
                let (lock, wake) = &*signal;
                let mut delay = FIRST_POLL_DELAY;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    stopped = match wake.wait_timeout(stopped, delay) {
                        Ok((guard, _)) => guard,
                        Err(poisoned) => poisoned.into_inner().0,
                    };
                    if *stopped {
                        return;
                    }
                    delay = interval;
                    // SAFETY: the scheduler lives until `stop` joined this thread; Envoy lets
                    // any thread commit to it (the event runs on the main thread).
                    unsafe {
                        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
                            scheduler as abi::SchedulerPtr,
                            ROUND_EVENT,
                        );
                    }
                }
            })?;
        Ok(Timer { stop, handle })
    }

    fn stop(self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        let _ = self.handle.join();
    }
}

/// What one thread keeps for one configuration.
pub struct ThreadState {
    config_id: u64,
    config: Weak<Config>,
    worker: Rc<RefCell<Worker>>,
    /// The feed generation this worker has applied.
    applied: Cell<u64>,
    /// Services this thread has seen a route name (registered with the poller once).
    known: RefCell<HashSet<String>>,
}

impl ThreadState {
    /// Whether this thread meets `service` for the first time (bounded like the worker).
    pub fn first_meeting(&self, service: &str) -> bool {
        let mut known = self.known.borrow_mut();
        if known.contains(service) || known.len() >= oauth2_filter::flow::worker::MAX_SERVICES {
            return false;
        }
        known.insert(service.to_string())
    }
}

thread_local! {
    static THREADS: RefCell<Vec<Rc<ThreadState>>> = const { RefCell::new(Vec::new()) };
}

/// This thread's state for `config`, made on first use (dropping states of configurations
/// that are gone).
fn thread_state(config: &Arc<Config>) -> Rc<ThreadState> {
    THREADS.with(|threads| {
        let mut threads = threads.borrow_mut();
        if let Some(state) = threads.iter().find(|t| t.config_id == config.id) {
            return state.clone();
        }
        threads.retain(|t| t.config.strong_count() > 0);
        let state = Rc::new(ThreadState {
            config_id: config.id,
            config: Arc::downgrade(config),
            worker: Rc::new(RefCell::new(Worker::new(config.filter_config.clone()))),
            applied: Cell::new(0),
            known: RefCell::new(HashSet::new()),
        });
        threads.push(state.clone());
        state
    })
}

/// Applies every published state answer this worker has not seen. Runs before the flow in
/// every hook, so no decision uses a worker older than the newest answer.
fn catch_up(host: &Envoy) {
    let thread = host.thread;
    if host.config.feed.latest() == thread.applied.get() {
        return;
    }
    let catchup = host.config.feed.since(thread.applied.get());
    // Never held across hooks; were it held, this panics and the request fails closed.
    let mut worker = thread.worker.borrow_mut();
    if catchup.missed {
        worker.local.clear();
        worker.forget_revocations();
    }
    for (service, poll, bumped) in catchup.polls {
        worker.apply_published_poll(host, &service, poll, bumped);
    }
    // JWTs distrusted in answers the worker never saw (issue 21).
    for (service, distrust) in catchup.distrust {
        worker.replace_distrust(&service, distrust);
    }
    thread.applied.set(catchup.latest);
}

/// One request.
struct Filter {
    config: Arc<Config>,
    thread: Rc<ThreadState>,
    /// Borrowed for the length of a hook; a hook re-entered meanwhile finds it borrowed and
    /// stops the request rather than alias it.
    flow: RefCell<Flow>,
    /// A hook panicked: the request was answered 503 and nothing more runs for it.
    failed: Cell<bool>,
}

/// Runs `f` under `catch_unwind`; a panic (or a panic while failing) gives `fallback`.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// Borrows a configuration Envoy hands back.
///
/// # Safety
/// `ptr` must come from [`envoy_dynamic_module_on_http_filter_config_new`] and not be destroyed.
unsafe fn config_arc(ptr: ConfigModulePtr) -> Option<Arc<Config>> {
    let ptr = ptr.cast::<Config>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller's contract: `ptr` came from `Arc::into_raw` and that count is alive.
    unsafe {
        Arc::increment_strong_count(ptr);
        Some(Arc::from_raw(ptr))
    }
}

/// Runs the flow for one hook of one request: catches panics (answering 503 and stopping
/// the request for good), catches up with published state first.
fn with_flow(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    in_body_hook: bool,
    stop: u32,
    f: impl FnOnce(&mut Flow, &Envoy) -> u32,
) -> u32 {
    // SAFETY: `module` is the pointer `on_http_filter_new` returned, alive until destroy.
    let Some(filter) = (unsafe { module.cast::<Filter>().as_ref() }) else {
        return stop;
    };
    if filter.failed.get() {
        return stop;
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let Ok(mut flow) = filter.flow.try_borrow_mut() else {
            return stop;
        };
        let host = Envoy {
            filter: envoy,
            config: &filter.config,
            thread: &filter.thread,
            in_body_hook,
        };
        catch_up(&host);
        f(&mut flow, &host)
    }));
    match outcome {
        Ok(status) => status,
        Err(_) => {
            fail_closed(filter, envoy);
            stop
        }
    }
}

/// After a panic: the request is answered 503 (unless it already was) and never continues.
fn fail_closed(filter: &Filter, envoy: FilterEnvoyPtr) {
    filter.failed.set(true);
    let replied = filter.flow.try_borrow().map_or(true, |f| f.is_replied());
    if replied {
        return;
    }
    guard((), || {
        host::log_critical("oauth2 filter: a hook panicked; the request is answered 503");
        let reply = decision::unavailable(UNAVAILABLE);
        let mut headers: Vec<HttpHeader> = reply
            .headers
            .iter()
            .map(|(n, v)| HttpHeader::of(n, v))
            .collect();
        // SAFETY: `envoy` is the live filter of the hook that panicked.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                envoy,
                reply.status,
                headers.as_mut_ptr(),
                headers.len(),
                ModuleBuffer::of(reply.body.as_bytes()),
                ModuleBuffer::of(b"oauth2_filter_panic"),
            );
        }
    });
}

/// A callout's answer as the flow reads it. A callout that failed outright (reset, answer
/// over the buffer limit) reads as Envoy's own 503, which the flow takes for an outage.
///
/// # Safety
/// The arrays must hold `headers_size` headers and `chunks_size` buffers, valid for the hook.
unsafe fn call_answer(
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) -> CallAnswer {
    if result != abi::CALLOUT_SUCCESS || headers.is_null() {
        return CallAnswer {
            headers: vec![(":status".into(), "503".into())],
            body: b"callout failed".to_vec(),
        };
    }
    // SAFETY: the caller's contract.
    unsafe {
        let headers = std::slice::from_raw_parts(headers, headers_size);
        let mut body = Vec::new();
        if !chunks.is_null() {
            for chunk in std::slice::from_raw_parts(chunks, chunks_size) {
                body.extend_from_slice(chunk.bytes());
            }
        }
        CallAnswer {
            headers: headers.iter().map(|h| h.decode()).collect(),
            body,
        }
    }
}

fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => abi::HEADERS_CONTINUE,
        Action::Pause => abi::HEADERS_STOP_ITERATION,
    }
}

// ------------------------------------------------------------------------------------------
// Entry points (`envoy_dynamic_module_on_*`). Each one is a panic barrier.
// ------------------------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard((), || {
        std::panic::set_hook(Box::new(|info| {
            host::log_critical(&format!("oauth2 filter panicked: {info}"));
        }));
    });
    ABI_VERSION_C.as_ptr().cast::<c_char>()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: ConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ConfigModulePtr {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy's buffer, valid during this hook.
        let bytes = unsafe { config.bytes() };
        match new_config(envoy, bytes) {
            Ok(config) => Arc::into_raw(config).cast(),
            Err(message) => {
                host::log(Level::Error, &message);
                std::ptr::null()
            }
        }
    })
}

fn new_config(envoy: ConfigEnvoyPtr, bytes: &[u8]) -> Result<Arc<Config>, String> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    if bytes.is_empty() {
        return Err("the oauth2 filter needs a configuration (see docs/configuration.md)".into());
    }
    let filter_config = FilterConfig::parse(bytes).map_err(|e| e.0)?;
    let counter_ids = metrics::ALL
        .iter()
        .map(|metric| {
            let mut id = 0usize;
            // SAFETY: `envoy` is the configuration being created; Envoy copies the name.
            let result = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    envoy,
                    ModuleBuffer::of(metric.name().as_bytes()),
                    std::ptr::null_mut(),
                    0,
                    &mut id,
                )
            };
            (result == abi::METRICS_SUCCESS).then_some(id)
        })
        .collect();
    let polls = matches!(filter_config.mode, Mode::TokenService { .. });
    let interval = Duration::from_millis(filter_config.poll_interval_ms.max(1));
    let feed = Feed::default();
    if let Some(service) = filter_config.service() {
        feed.register(service);
    }
    let config = Arc::new(Config {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        filter_config,
        feed,
        counter_ids,
        main_counts: metrics::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        poller: Mutex::new(Poller::default()),
    });
    if polls {
        // SAFETY: `envoy` is the configuration being created (main thread).
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
        if scheduler.is_null() {
            return Err("cannot create the oauth2 filter's poll scheduler".into());
        }
        let mut poller = config.poller();
        poller.scheduler = scheduler as usize;
        match Timer::start(scheduler as usize, interval) {
            Ok(timer) => poller.timer = Some(timer),
            Err(e) => {
                // SAFETY: made above, never committed.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                        scheduler,
                    )
                };
                poller.scheduler = 0;
                return Err(format!("cannot start the oauth2 filter's poll timer: {e}"));
            }
        }
    }
    Ok(config)
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: ConfigModulePtr) {
    guard((), || {
        let ptr = config.cast::<Config>();
        if ptr.is_null() {
            return;
        }
        // SAFETY: Envoy destroys a configuration once; this takes back `into_raw`'s count.
        let config = unsafe { Arc::from_raw(ptr) };
        let (timer, scheduler) = {
            let mut poller = config.poller();
            (poller.timer.take(), std::mem::take(&mut poller.scheduler))
        };
        if let Some(timer) = timer {
            timer.stop();
        }
        if scheduler != 0 {
            // SAFETY: the timer, its only other user, has stopped.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                    scheduler as abi::SchedulerPtr,
                )
            };
        }
    });
}

/// The poll tick (main thread): asks for the state of every service with no poll in flight.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    event_id: u64,
) {
    guard((), || {
        // SAFETY: Envoy hands back the live configuration.
        let Some(config) = (unsafe { config_arc(config) }) else {
            return;
        };
        let state = thread_state(&config);
        let retrying =
            (event_id == RETRY_EVENT).then(|| std::mem::take(&mut config.poller().retry_due));
        for (service, since) in config.feed.services() {
            if retrying.as_ref().is_some_and(|due| !due.contains(&service)) {
                continue;
            }
            if config.poller().polling(&service, &config.filter_config) {
                continue;
            }
            if retrying.is_none() {
                config.poller().retries.new_round(&service);
            }
            let Some(call) = state.worker.borrow().state_call(&service, since) else {
                continue;
            };
            config.count(Metric::StatePolls);
            let mut headers = host::call_headers(&call);
            let mut id = 0u64;
            // SAFETY: `envoy` is the live configuration; Envoy copies every buffer.
            let result = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                    envoy,
                    &mut id,
                    ModuleBuffer::of(call.cluster.as_bytes()),
                    headers.as_mut_ptr(),
                    headers.len(),
                    ModuleBuffer::of(call.body.as_deref().unwrap_or_default()),
                    host::timeout_ms(&call),
                )
            };
            if result == abi::CALLOUT_INIT_SUCCESS {
                config
                    .poller()
                    .in_flight
                    .insert(id, (service, Instant::now()));
            } else {
                config.count(Metric::StatePollFailed);
                host::log(Level::Warn, "cannot reach the token-service cluster");
            }
        }
    });
}

/// Publishes a state answer for every worker. The shared cache is brought up to date here,
/// once, whatever the workers are doing: revoked tokens leave it, and the epoch moves when the
/// answer resets the feed or changes the settings. (A worker idle for longer than the feed
/// keeps answers only has its own copy to drop when it wakes: see [`catch_up`].)
fn publish(config: &Config, service: &str, poll: StatePoll) {
    let shared = shared_data();
    let filter_config = &config.filter_config;
    worker::evict_revoked_shared(
        filter_config,
        service,
        &poll.revoked,
        |key| shared.get(key),
        |key, value, cas| shared.set(key, value, cas),
    );
    config.feed.publish(service, poll, || {
        worker::bump_shared_epoch(
            &cache::epoch_key(&filter_config.namespace),
            |key| shared.get(key),
            |key, value, cas| shared.set(key, value, cas),
        );
    });
}

/// Schedules a failed poll of `service` to be asked again at once (on the main thread, like
/// every poll), when the round's budget allows.
fn retry_soon(config: &Config, service: String) {
    let scheduler = {
        let mut poller = config.poller();
        if poller.scheduler == 0 || !poller.retries.retry_after_failure(&service) {
            return;
        }
        if !poller.retry_due.contains(&service) {
            poller.retry_due.push(service);
        }
        poller.scheduler
    };
    // SAFETY: the scheduler lives until the configuration is destroyed, which cannot happen
    // during this hook of the same configuration.
    unsafe {
        abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
            scheduler as abi::SchedulerPtr,
            RETRY_EVENT,
        );
    }
}

/// A state answer (main thread): published for every worker.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: ConfigEnvoyPtr,
    config: ConfigModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    guard((), || {
        // SAFETY: Envoy hands back the live configuration.
        let Some(config) = (unsafe { config_arc(config) }) else {
            return;
        };
        let Some((service, _)) = config.poller().in_flight.remove(&callout_id) else {
            return;
        };
        // SAFETY: Envoy's arrays, valid during this hook.
        let answer = unsafe { call_answer(result, headers, headers_size, chunks, chunks_size) };
        let poll = (answer.status() == Some("200"))
            .then(|| StatePoll::parse(&answer.body))
            .flatten();
        match poll {
            Some(poll) => {
                config.poller().retries.succeeded(&service);
                publish(&config, &service, poll);
            }
            None => {
                config.count(Metric::StatePollFailed);
                host::log(
                    Level::Warn,
                    &format!("state poll for service '{service}' failed; keeping the last known settings"),
                );
                retry_soon(&config, service);
            }
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: ConfigModulePtr,
    _envoy: FilterEnvoyPtr,
) -> FilterModulePtr {
    // Null closes the stream: a request never runs without its filter.
    guard(std::ptr::null(), || {
        // SAFETY: Envoy hands back the live configuration.
        let Some(config) = (unsafe { config_arc(config) }) else {
            return std::ptr::null();
        };
        let thread = thread_state(&config);
        let filter = Filter {
            flow: RefCell::new(Flow::new(thread.worker.clone())),
            config,
            thread,
            failed: Cell::new(false),
        };
        Box::into_raw(Box::new(filter)).cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_flow(
        envoy,
        module,
        false,
        abi::HEADERS_STOP_ITERATION,
        |flow, host| headers_status(flow.on_request_headers(host, end_of_stream)),
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    end_of_stream: bool,
) -> u32 {
    with_flow(
        envoy,
        module,
        true,
        abi::BODY_STOP_ITERATION_AND_BUFFER,
        |flow, host| {
            match flow.on_request_body(host, host.body_size(), end_of_stream) {
                Action::Continue => abi::BODY_CONTINUE,
                // Envoy keeps the chunk (and every later one) until the request continues.
                Action::Pause => abi::BODY_STOP_ITERATION_AND_BUFFER,
            }
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) -> u32 {
    with_flow(
        envoy,
        module,
        false,
        abi::TRAILERS_STOP_ITERATION,
        |flow, host| match flow.on_request_trailers(host) {
            Action::Continue => abi::TRAILERS_CONTINUE,
            Action::Pause => abi::TRAILERS_STOP_ITERATION,
        },
    )
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
    callout_id: u64,
    result: u32,
    headers: *const HttpHeader,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) {
    with_flow(envoy, module, false, 0, |flow, host| {
        // SAFETY: Envoy's arrays, valid during this hook.
        let answer = unsafe { call_answer(result, headers, headers_size, chunks, chunks_size) };
        // An id the flow never dispatched (none above u32) matches no call: nothing happens.
        if let Ok(id) = u32::try_from(callout_id) {
            flow.on_call_answer(host, id, &answer);
        }
        0
    });
}

/// The request is over: this worker's counts go to Envoy's stats (with the poller's).
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterEnvoyPtr,
    module: FilterModulePtr,
) {
    guard((), || {
        // SAFETY: `module` is alive until destroy.
        let Some(filter) = (unsafe { module.cast::<Filter>().as_ref() }) else {
            return;
        };
        // Counted but not yet flushed stays in the worker for the next request.
        let Ok(mut worker) = filter.thread.worker.try_borrow_mut() else {
            return;
        };
        let mut counts = worker.counters.take();
        drop(worker);
        for (metric, count) in metrics::ALL.iter().zip(&filter.config.main_counts) {
            // A plain load first: every worker reads these on every request, and a write
            // (the swap) only when there is something to take keeps the line shared.
            if count.load(Ordering::Relaxed) > 0 {
                counts.push((*metric, count.swap(0, Ordering::Relaxed)));
            }
        }
        for (metric, count) in counts {
            if let Some(Some(id)) = filter.config.counter_ids.get(metric as usize) {
                // SAFETY: `envoy` is the live filter; no labels.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                        envoy,
                        *id,
                        std::ptr::null_mut(),
                        0,
                        count,
                    );
                }
            }
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: FilterModulePtr) {
    guard((), || {
        let ptr = module.cast_mut().cast::<Filter>();
        if !ptr.is_null() {
            // SAFETY: made by `Box::into_raw` in `on_http_filter_new`; destroyed once.
            drop(unsafe { Box::from_raw(ptr) });
        }
    });
}

// The hooks below do nothing for this filter. They never touch the filter object: Envoy may
// call them while one of our own hooks runs (a local reply passes through the encoder path).

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::HEADERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _end_of_stream: bool,
) -> u32 {
    abi::BODY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) -> u32 {
    abi::TRAILERS_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    abi::LOCAL_REPLY_CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _event_id: u64,
) {
}

/// Per-route configuration is not supported: routes name their service in metadata.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const std::ffi::c_void {
    guard((), || {
        host::log(
            Level::Error,
            "the oauth2 filter has no per-route configuration: name the route's service in its metadata (oauth2.service)",
        )
    });
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const std::ffi::c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
) {
}

// Streamed callouts (`start_http_stream`) are never started; Envoy resolves these hooks.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterEnvoyPtr,
    _module: FilterModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _envoy: ConfigEnvoyPtr,
    _config: ConfigModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[cfg(test)]
mod tests;
