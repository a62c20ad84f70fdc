//! The glue's own logic, with the Envoy callbacks stubbed (they answer "nothing": no headers,
//! no metadata, every call accepted with a zeroed result). The FFI paths themselves are covered
//! by the end-to-end suite run against the module (`OAUTH2_FILTER_BUILD=native`).

use super::*;

const INTROSPECTION: &[u8] = br#"{"introspection": {"cluster": "idp", "path": "/introspect",
    "client_id": "gw", "client_secret": "s"}}"#;

fn config(json: &[u8]) -> ConfigModulePtr {
    envoy_dynamic_module_on_http_filter_config_new(
        std::ptr::null_mut(),
        EnvoyBuffer::null(),
        EnvoyBuffer {
            ptr: json.as_ptr().cast(),
            length: json.len(),
        },
    )
}

#[test]
fn reports_the_pinned_abi_version() {
    let version = envoy_dynamic_module_on_program_init();
    // SAFETY: a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(version) };
    assert_eq!(version.to_str().unwrap(), ABI_VERSION);
    assert_eq!(ABI_VERSION, "v0.2.0");
}

#[test]
fn a_bad_configuration_is_refused() {
    assert!(config(b"").is_null());
    assert!(config(b"{not json").is_null());
    assert!(config(br#"{"service": "s"}"#).is_null());
    // Token-service mode needs the scheduler, which the stubs do not give: refused, not
    // half-made.
    assert!(config(br#"{"service": "s", "token_service": {"cluster": "ts"}}"#).is_null());
}

#[test]
fn a_request_without_a_token_is_stopped_never_continued() {
    let config = config(INTROSPECTION);
    assert!(!config.is_null());
    let filter = envoy_dynamic_module_on_http_filter_new(config, std::ptr::null_mut());
    assert!(!filter.is_null());
    let status =
        envoy_dynamic_module_on_http_filter_request_headers(std::ptr::null_mut(), filter, true);
    assert_eq!(status, abi::HEADERS_STOP_ITERATION);
    // SAFETY: the filter just made.
    let f = unsafe { &*filter.cast::<Filter>() };
    assert!(f.flow.borrow().is_replied(), "answered 401 locally");
    // Later hooks never continue it.
    let body = envoy_dynamic_module_on_http_filter_request_body(std::ptr::null_mut(), filter, true);
    assert_eq!(body, abi::BODY_STOP_ITERATION_AND_BUFFER);
    let trailers =
        envoy_dynamic_module_on_http_filter_request_trailers(std::ptr::null_mut(), filter);
    assert_eq!(trailers, abi::TRAILERS_STOP_ITERATION);
    envoy_dynamic_module_on_http_filter_stream_complete(std::ptr::null_mut(), filter);
    envoy_dynamic_module_on_http_filter_destroy(filter);
    envoy_dynamic_module_on_http_filter_config_destroy(config);
}

#[test]
fn a_panicking_hook_stops_the_request_for_good() {
    let config = config(INTROSPECTION);
    let filter = envoy_dynamic_module_on_http_filter_new(config, std::ptr::null_mut());
    let status = with_flow(
        std::ptr::null_mut(),
        filter,
        false,
        abi::HEADERS_STOP_ITERATION,
        |_, _| panic!("injected"),
    );
    assert_eq!(status, abi::HEADERS_STOP_ITERATION);
    // SAFETY: the filter just made.
    assert!(unsafe { &*filter.cast::<Filter>() }.failed.get());
    // Nothing runs for it any more, whatever a later hook would have answered.
    let status = with_flow(std::ptr::null_mut(), filter, false, 7, |_, _| {
        abi::HEADERS_CONTINUE
    });
    assert_eq!(status, 7);
    envoy_dynamic_module_on_http_filter_destroy(filter);
    envoy_dynamic_module_on_http_filter_config_destroy(config);
}

#[test]
fn null_pointers_never_continue() {
    assert_eq!(
        envoy_dynamic_module_on_http_filter_request_headers(
            std::ptr::null_mut(),
            std::ptr::null(),
            false
        ),
        abi::HEADERS_STOP_ITERATION
    );
    assert!(
        envoy_dynamic_module_on_http_filter_new(std::ptr::null(), std::ptr::null_mut()).is_null()
    );
    envoy_dynamic_module_on_http_filter_destroy(std::ptr::null());
    envoy_dynamic_module_on_http_filter_config_destroy(std::ptr::null());
}

#[test]
fn failed_callouts_read_as_an_outage() {
    // SAFETY: null arrays with zero lengths.
    let answer = unsafe { call_answer(1, std::ptr::null(), 0, std::ptr::null(), 0) };
    assert_eq!(answer.status(), Some("503"));
    let headers = [
        HttpHeader::of(":status", "200"),
        HttpHeader::of("content-type", "application/json"),
    ];
    let body = b"{\"a\":1}";
    let chunks = [
        EnvoyBuffer {
            ptr: body.as_ptr().cast(),
            length: 3,
        },
        EnvoyBuffer {
            ptr: body[3..].as_ptr().cast(),
            length: body.len() - 3,
        },
    ];
    // SAFETY: arrays of the given lengths, alive for the call.
    let answer = unsafe { call_answer(0, headers.as_ptr(), 2, chunks.as_ptr(), 2) };
    assert_eq!(answer.status(), Some("200"));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.body, body);
}

#[test]
fn one_worker_per_thread_and_configuration() {
    let config = config(INTROSPECTION);
    // SAFETY: the configuration just made.
    let arc = unsafe { config_arc(config) }.unwrap();
    let a = thread_state(&arc);
    let b = thread_state(&arc);
    assert!(Rc::ptr_eq(&a.worker, &b.worker));
    let other = std::thread::spawn({
        let arc = arc.clone();
        move || Rc::as_ptr(&thread_state(&arc).worker) as usize
    })
    .join()
    .unwrap();
    assert_ne!(other, Rc::as_ptr(&a.worker) as usize);
    assert!(a.first_meeting("svc"));
    assert!(!a.first_meeting("svc"));
    drop((a, b, arc));
    envoy_dynamic_module_on_http_filter_config_destroy(config);
}

/// A token-service configuration as `config_new` makes it, minus the scheduler (no Envoy).
fn polling_config(service: &str) -> Arc<Config> {
    polling_config_on(service, "ts")
}

/// A configuration of `service` on the token-service behind `cluster`.
fn polling_config_on(service: &str, cluster: &str) -> Arc<Config> {
    static NEXT: AtomicU64 = AtomicU64::new(1_000_000);
    let json =
        format!(r#"{{"service": "{service}", "token_service": {{"cluster": "{cluster}"}}}}"#);
    let feed = Feed::default();
    feed.register(service);
    Arc::new(Config {
        id: NEXT.fetch_add(1, Ordering::Relaxed),
        filter_config: FilterConfig::parse(json.as_bytes()).unwrap(),
        feed,
        counter_ids: Vec::new(),
        main_counts: metrics::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
        poller: Mutex::new(Poller::default()),
    })
}

/// A host for a worker's hooks outside any request (no Envoy filter behind it).
fn detached<'a>(config: &'a Arc<Config>, thread: &'a Rc<ThreadState>) -> Envoy<'a> {
    Envoy {
        filter: std::ptr::null_mut(),
        config,
        thread,
        in_body_hook: false,
    }
}

fn state(seq: i64, reset: bool, revoked: &[String]) -> StatePoll {
    let json = format!(
        r#"{{"seq":{seq},"reset":{reset},"revoked":{},"service":{{"id":"svc","name":"s"}},
        "plugin":{{"id":"p","auth_header_name":"authorization","hide_credentials":false,
        "realm":"service","global_credentials":false,"anonymous":null,"anonymous_error":null}}}}"#,
        serde_json_array(revoked)
    );
    StatePoll::parse(json.as_bytes()).unwrap()
}

fn serde_json_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(","))
}

fn active() -> oauth2_filter::state::Verdict {
    oauth2_filter::state::Verdict::Active(
        oauth2_filter::state::Identity {
            consumer_id: Some("c".into()),
            consumer_custom_id: None,
            consumer_username: Some("clark".into()),
            credential_identifier: Some("app".into()),
            authenticated_userid: None,
            authenticated_scope: None,
            expires_at: None,
            identity_jwt: None,
        }
        .into(),
    )
}

#[test]
fn a_published_revocation_is_applied_before_the_next_decision() {
    use oauth2_filter::cache;
    let service = "native-revocation";
    let config = polling_config(service);
    let thread = thread_state(&config);
    let host = detached(&config, &thread);
    publish(&config, service, state(1, true, &[]));
    catch_up(&host);
    assert_eq!(thread.applied.get(), 1);

    let token = cache::digest("a-token-about-to-be-revoked");
    let key = thread.worker.borrow().cache_key(service, &token);
    thread.worker.borrow_mut().remember(&host, key, &active());
    assert!(thread.worker.borrow_mut().cached(&host, &key).is_some());

    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    publish(&config, service, state(2, false, &[hex]));
    assert!(
        thread.worker.borrow_mut().cached(&host, &key).is_some(),
        "published, not yet applied"
    );
    // What every hook does first: the worker is current before the flow runs.
    catch_up(&host);
    assert_eq!(thread.applied.get(), 2);
    assert_eq!(
        thread.worker.borrow_mut().cached(&host, &key),
        None,
        "revoked: gone from the worker's copy and from shared data"
    );
}

#[test]
fn a_worker_that_missed_answers_drops_its_own_cache_copy() {
    use oauth2_filter::cache;
    let service = "native-missed";
    let config = polling_config(service);
    let thread = thread_state(&config);
    let host = detached(&config, &thread);
    publish(&config, service, state(1, true, &[]));
    catch_up(&host);
    let key = thread
        .worker
        .borrow()
        .cache_key(service, &cache::digest("t"));
    thread.worker.borrow_mut().remember(&host, key, &active());
    assert_eq!(thread.worker.borrow().local.len(), 1);
    for seq in 2..400 {
        publish(&config, service, state(seq, false, &[]));
    }
    catch_up(&host);
    assert_eq!(thread.worker.borrow().local.len(), 0);
    assert_eq!(thread.applied.get(), config.feed.latest());
}

/// Issue 18: a worker that slept through more answers than the feed keeps used to clear only
/// its own copy, and the shared cache kept serving the revoked token until `max_ttl_s`.
#[test]
fn a_revocation_reaches_the_shared_cache_while_every_worker_sleeps() {
    use oauth2_filter::cache;
    let service = "native-idle-revocation";
    let config = polling_config(service);
    let thread = thread_state(&config);
    let host = detached(&config, &thread);
    publish(&config, service, state(1, true, &[]));
    catch_up(&host);
    let token = cache::digest("cached-then-revoked-while-idle");
    let key = thread.worker.borrow().cache_key(service, &token);
    thread.worker.borrow_mut().remember(&host, key, &active());
    let hex: String = token.iter().map(|b| format!("{b:02x}")).collect();
    // The revocation, then more answers than the feed keeps, while no worker runs a hook.
    publish(&config, service, state(2, false, &[hex]));
    let slot = cache::slot_key(
        &cache::slot_prefix(&config.filter_config.namespace),
        &key,
        config.filter_config.cache.slots,
    );
    let in_shared = || {
        shared_data()
            .get(&slot)
            .0
            .and_then(|bytes| cache::Entry::decode(&bytes))
            .is_some_and(|entry| entry.digest == key)
    };
    assert!(
        !in_shared(),
        "evicted when published, before any worker applied it"
    );
    for seq in 3..600 {
        publish(&config, service, state(seq, false, &[]));
    }
    // The worker wakes far behind: neither its own copy nor shared data answers.
    catch_up(&host);
    assert_eq!(thread.worker.borrow_mut().cached(&host, &key), None);
    // Nor does any other worker's view of shared data.
    let elsewhere = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let thread = thread_state(&config);
                let host = detached(&config, &thread);
                catch_up(&host);
                let found = thread.worker.borrow_mut().cached(&host, &key).is_some();
                found
            })
            .join()
            .unwrap_or(true)
    });
    assert!(!elsewhere);
}

/// Issue 18: two configurations in one process (two listeners, or staging and production
/// token-services with the same service name) never answer from each other's cache.
#[test]
fn two_configurations_never_share_a_cached_verdict() {
    use oauth2_filter::cache;
    let service = "same-name-two-token-services";
    let staging = polling_config_on(service, "staging");
    let production = polling_config_on(service, "production");
    let token = cache::digest("a-staging-token");
    let on_staging = thread_state(&staging);
    let staging_host = detached(&staging, &on_staging);
    publish(&staging, service, state(1, true, &[]));
    catch_up(&staging_host);
    let key = on_staging.worker.borrow().cache_key(service, &token);
    on_staging
        .worker
        .borrow_mut()
        .remember(&staging_host, key, &active());
    assert!(on_staging
        .worker
        .borrow_mut()
        .cached(&staging_host, &key)
        .is_some());

    let on_production = thread_state(&production);
    let production_host = detached(&production, &on_production);
    publish(&production, service, state(1, true, &[]));
    catch_up(&production_host);
    let production_key = on_production.worker.borrow().cache_key(service, &token);
    assert_ne!(production_key, key);
    for key in [production_key, key] {
        assert_eq!(
            on_production
                .worker
                .borrow_mut()
                .cached(&production_host, &key),
            None,
            "production answers only from its own namespace"
        );
    }
    // A reset of production's feed moves only production's epoch.
    let staging_epoch = on_staging.worker.borrow().epoch;
    publish(&production, service, state(2, true, &[]));
    publish(&staging, service, state(2, false, &[]));
    catch_up(&staging_host);
    assert_eq!(on_staging.worker.borrow().epoch, staging_epoch);
    assert!(on_staging
        .worker
        .borrow_mut()
        .cached(&staging_host, &key)
        .is_some());
}

#[test]
fn a_poll_that_never_got_its_answer_is_forgotten() {
    let config = polling_config("native-lost-poll");
    let mut poller = Poller::default();
    let now = Instant::now();
    let long_ago = now.checked_sub(Duration::from_secs(30)).unwrap_or(now);
    poller.in_flight.insert(1, ("a".into(), now));
    poller.in_flight.insert(2, ("b".into(), long_ago));
    assert!(poller.polling("a", &config.filter_config));
    if long_ago < now {
        assert!(
            !poller.polling("b", &config.filter_config),
            "lost: polled again"
        );
        assert_eq!(poller.in_flight.len(), 1);
    }
}

/// A worker that applies the first (resetting) answer long after another worker cached
/// tokens under it keeps their entries: the poller moved the epoch once, for all.
#[test]
fn a_worker_catching_up_late_keeps_what_the_others_cached() {
    use oauth2_filter::cache;
    let service = "native-late-worker";
    let config = polling_config(service);
    let key = cache::scoped(
        &config.filter_config.namespace,
        service,
        &cache::digest("cached-by-the-early-worker"),
    );
    // Each worker is a thread of its own (its state is thread-local), as in Envoy.
    let on_a_worker = |f: &(dyn Fn(&Envoy<'_>) -> bool + Sync)| {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let thread = thread_state(&config);
                    let host = detached(&config, &thread);
                    catch_up(&host);
                    f(&host)
                })
                .join()
                .unwrap_or(false)
        })
    };
    publish(&config, service, state(1, true, &[]));
    let remembered = on_a_worker(&|host| {
        host.thread
            .worker
            .borrow_mut()
            .remember(host, key, &active());
        host.thread.worker.borrow_mut().cached(host, &key).is_some()
    });
    assert!(remembered);
    publish(&config, service, state(1, false, &[]));
    let found_late =
        on_a_worker(&|host| host.thread.worker.borrow_mut().cached(host, &key).is_some());
    assert!(
        found_late,
        "a worker applying the reset late finds the early one's entry"
    );
    // A settings change (the plugin removed) still drops everything.
    let unprotected =
        br#"{"seq":2,"reset":false,"revoked":[],"service":{"id":"svc","name":"s"},"plugin":null}"#;
    publish(&config, service, StatePoll::parse(unprotected).unwrap());
    let found_after =
        on_a_worker(&|host| host.thread.worker.borrow_mut().cached(host, &key).is_some());
    assert!(!found_after);
}

/// A state answer distrusting `digests` (hex) until `exp` (contract §4).
fn distrusting(seq: i64, digests: &[String], exp: u64) -> StatePoll {
    let list: Vec<String> = digests
        .iter()
        .map(|d| format!(r#"{{"digest":"{d}","exp":{exp}}}"#))
        .collect();
    let json = format!(
        r#"{{"seq":{seq},"reset":false,"revoked":{},"service":{{"id":"svc","name":"s"}},
        "plugin":{{"id":"p","auth_header_name":"authorization","hide_credentials":false,
        "realm":"service","global_credentials":false,"anonymous":null,"anonymous_error":null}},
        "distrusted":[{}]}}"#,
        serde_json_array(digests),
        list.join(",")
    );
    StatePoll::parse(json.as_bytes()).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Issue 21: a JWT distrusted by an answer published while a worker slept must not be verified
/// locally by that worker when it wakes, even when the feed has dropped that answer.
#[test]
fn a_distrusted_jwt_reaches_a_worker_that_slept_through_the_answer() {
    use oauth2_filter::cache;
    let service = "native-distrust-idle";
    let config = polling_config(service);
    let thread = thread_state(&config);
    let host = detached(&config, &thread);
    publish(&config, service, state(1, true, &[]));
    catch_up(&host);
    let jwt = cache::digest("a.jwt.revoked-while-this-worker-slept");
    let hex: String = jwt.iter().map(|b| format!("{b:02x}")).collect();
    let exp = unix_now() + 3600;
    publish(&config, service, distrusting(2, &[hex], exp));
    for seq in 3..400 {
        publish(&config, service, state(seq, false, &[]));
    }
    catch_up(&host);
    assert!(
        thread.worker.borrow().distrusts(service, &jwt, unix_now()),
        "distrusted after waking"
    );
    let other = cache::digest("another.jwt.never-distrusted");
    assert!(!thread
        .worker
        .borrow()
        .distrusts(service, &other, unix_now()));
}

/// The keys and distrust list of a published answer reach an awake worker too.
#[test]
fn published_distrust_reaches_every_worker_that_applies_the_feed() {
    use oauth2_filter::cache;
    let service = "native-distrust-awake";
    let config = polling_config(service);
    let thread = thread_state(&config);
    let host = detached(&config, &thread);
    publish(&config, service, state(1, true, &[]));
    catch_up(&host);
    let jwt = cache::digest("x.y.z");
    let hex: String = jwt.iter().map(|b| format!("{b:02x}")).collect();
    publish(&config, service, distrusting(2, &[hex], unix_now() + 60));
    catch_up(&host);
    assert!(thread.worker.borrow().distrusts(service, &jwt, unix_now()));
}
