//! The design card's harness: faults across real container hosts (issue 20). The compose
//! `cluster` profile (three token-service replicas, PostgreSQL and Envoy, each its own
//! container and address, replicas on a database network with PostgreSQL and a control
//! network with Envoy) takes real faults: `docker kill` of a replica under load, `docker
//! network disconnect` of a replica from PostgreSQL and of PostgreSQL from everyone, a
//! revocation while a replica is partitioned, `docker restart` of Envoy. Each test measures
//! what the fault cost (errors seen, tokens lost, time to recover), prints it (`measured:`
//! lines), and asserts the outcome a user is promised: nothing acknowledged lost, fail closed
//! (503, never a wrong 200), recovery without a restart.
//!
//! They run only against a running stack: `make test-docker-faults` brings the profile up,
//! runs them one at a time (`--ignored --test-threads 1`), and takes it down (`docker compose
//! down -v`) whatever happened. Every fault is undone by a guard if its test fails, and every
//! test starts by waiting for a healthy cluster, so each stands alone.

mod cluster;
mod docker;
mod load;

use cluster::{
    cluster, fresh_connections, serial, Cluster, ENVOY, POSTGRES, REPLICAS, REVOCATION_BOUND,
};
use e2e::stack::wait_until;
use load::Load;
use std::time::{Duration, Instant};

/// How long a cluster may take to be healthy again between faults (a restarted container
/// starts, passes its health checks and is back in Envoy's rotation).
const HEALTHY: Duration = Duration::from_secs(60);

/// What the filter answers when it cannot get an answer from the token-service: closed.
const FAIL_CLOSED: u16 = 503;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Every token `acknowledged` is stored (read through a replica's admin API, round robin over
/// `replicas`) and works through Envoy; the ones that do not.
fn lost_tokens(c: &Cluster, acknowledged: &[(Instant, String)], replicas: &[usize]) -> Vec<String> {
    let client = fresh_connections(Duration::from_secs(5));
    acknowledged
        .iter()
        .enumerate()
        .filter_map(|(i, (_, token))| {
            let replica = replicas[i % replicas.len()];
            let stored = c.stored(replica, token);
            let works = c.use_token(&client, Some(token)) == 200;
            (!stored || !works).then(|| format!("token {i}: stored {stored}, works {works}"))
        })
        .collect()
}

#[test]
#[ignore = "needs the compose cluster profile: make test-docker-faults"]
fn a_killed_replica_container_loses_no_acknowledged_token_and_the_survivors_serve() {
    let _serial = serial();
    let c = cluster();
    c.wait_healthy(HEALTHY);
    let victim = c.container(REPLICAS[1]);
    let survivors = [0, 2];

    let load = Load::start(c, 3);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || load.acknowledged_after(started)
            >= 20),
        "the load got no tokens through Envoy"
    );
    let issued_before: Vec<f64> = survivors.iter().map(|&r| c.issued_by(r)).collect();
    let killed_at = Instant::now();
    let mut stopped = victim.kill();
    // The survivors serve: 30 tokens since the kill, and 3 s without an error.
    let settled = wait_until(Duration::from_secs(40), || {
        load.acknowledged_after(killed_at) >= 30
            && load.quiet_for(killed_at) >= Duration::from_secs(3)
    });
    let outcome = load.stop();
    let issued_after: Vec<f64> = survivors.iter().map(|&r| c.issued_by(r)).collect();
    let errors = outcome.errors();
    let recovery = outcome.recovery(killed_at);
    let lost = lost_tokens(c, &outcome.acknowledged, &survivors);
    println!(
        "measured: docker kill of {} under load (3 clients): {} answers, {} tokens acknowledged \
         ({} after the kill), {} errors, the last {} ms after the kill, {} tokens lost; tokens \
         issued by replicas 1 and 3 during the fault: {:?} -> {:?}; errors: {:?}",
        REPLICAS[1],
        outcome.seen.len(),
        outcome.acknowledged.len(),
        outcome
            .acknowledged
            .iter()
            .filter(|(at, _)| *at > killed_at)
            .count(),
        errors.len(),
        ms(recovery),
        lost.len(),
        issued_before,
        issued_after,
        outcome.error_summary(killed_at)
    );
    assert!(
        settled,
        "the survivors did not serve 3 s without an error within 40 s of the kill"
    );
    assert!(
        errors
            .iter()
            .all(|e| e.at > killed_at && e.status == FAIL_CLOSED),
        "every error must be a 503 (fail closed) caused by the kill: {:?}",
        outcome.error_summary(killed_at)
    );
    assert!(
        recovery < Duration::from_secs(5),
        "errors went on for {recovery:?}"
    );
    assert!(
        issued_before.iter().zip(&issued_after).all(|(b, a)| a > b),
        "both survivors must issue tokens while replica 2 is down: {issued_before:?} -> {issued_after:?}"
    );
    assert!(lost.is_empty(), "acknowledged tokens lost: {lost:?}");

    // Back: the same container starts again, catches up and rejoins Envoy's rotation.
    let restarted = Instant::now();
    stopped.start();
    assert!(
        wait_until(HEALTHY, || c.replica_status(1) == 200),
        "{} did not answer /status 200 within {HEALTHY:?} of its start",
        REPLICAS[1]
    );
    let answering = restarted.elapsed();
    c.wait_healthy(HEALTHY);
    let rejoined = restarted.elapsed();
    let unknown_there = c
        .unknown_at(1, outcome.acknowledged.iter().map(|(_, token)| token))
        .len();
    println!(
        "measured: {} started again: /status 200 after {} ms, serving through Envoy after {} ms; \
         {unknown_there} of the {} acknowledged tokens unknown to it",
        REPLICAS[1],
        ms(answering),
        ms(rejoined),
        outcome.acknowledged.len()
    );
    assert_eq!(
        unknown_there, 0,
        "the restarted replica does not know every token"
    );
}

#[test]
#[ignore = "needs the compose cluster profile: make test-docker-faults"]
fn a_replica_cut_from_postgresql_fails_closed_and_envoy_steers_around_it() {
    let _serial = serial();
    let c = cluster();
    c.wait_healthy(HEALTHY);
    let victim = c.container(REPLICAS[1]);
    let db = c.networks_shared_with_postgres(&victim);
    let started_at = victim.started_at();

    let load = Load::start(c, 2);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || load.acknowledged_after(started)
            >= 10),
        "the load got no tokens through Envoy"
    );
    let cut_at = Instant::now();
    let mut cut = victim.disconnect(&db);

    // Its own endpoints fail closed: 503, never a 200 it cannot stand behind.
    let mut statuses = Vec::new();
    let closed = wait_until(Duration::from_secs(30), || {
        let status = c.replica_gateway_status(1);
        statuses.push(status);
        status == FAIL_CLOSED
    });
    let closed_after = cut_at.elapsed();
    let probed = Instant::now();
    let (token_status, token_body) = c.replica_token_request(1);
    let (check_status, _) = c.replica_check(1, "a-token-never-issued");
    let (admin_status, _) = c.admin(1, reqwest::Method::GET, "/consumers", None);
    let probes_took = probed.elapsed();
    // Envoy steers around it: 30 tokens since the cut, and 3 s without an error.
    let settled = wait_until(Duration::from_secs(40), || {
        load.acknowledged_after(cut_at) >= 30 && load.quiet_for(cut_at) >= Duration::from_secs(3)
    });
    let unknown: Vec<u16> = (0..16)
        .map(|i| c.use_token(&c.http, Some(&format!("never-issued-{i}"))))
        .collect();
    let outcome = load.stop();
    let errors = outcome.errors();
    let steered = outcome.recovery(cut_at);
    let lost = lost_tokens(c, &outcome.acknowledged, &[0, 2]);
    println!(
        "measured: {} cut from PostgreSQL ({db:?}): its /status answered {statuses:?} (503 after \
         {} ms), a token request {token_status}, a check of an unknown token {check_status}, the \
         admin API {admin_status} (the three in {} ms); through Envoy {} answers, {} errors, the last {} ms after the \
         cut, {} tokens lost, unknown tokens {unknown:?}; errors: {:?}",
        REPLICAS[1],
        ms(closed_after),
        ms(probes_took),
        outcome.seen.len(),
        errors.len(),
        ms(steered),
        lost.len(),
        outcome.error_summary(cut_at)
    );
    assert!(
        closed,
        "the cut replica never answered /status 503: {statuses:?}"
    );
    assert!(
        !statuses.contains(&200),
        "the cut replica answered /status 200: {statuses:?}"
    );
    assert_eq!(
        token_status, FAIL_CLOSED,
        "a token request at the cut replica: {token_body}"
    );
    assert_eq!(
        check_status, FAIL_CLOSED,
        "a check of an unknown token at the cut replica"
    );
    assert_eq!(admin_status, FAIL_CLOSED, "the cut replica's admin API");
    assert!(
        settled,
        "Envoy did not steer around the cut replica within 40 s"
    );
    assert!(
        errors.iter().all(|e| e.status == FAIL_CLOSED),
        "every error through Envoy must be a 503: {:?}",
        outcome.error_summary(cut_at)
    );
    assert!(
        steered < Duration::from_secs(5),
        "errors went on for {steered:?}"
    );
    assert!(
        unknown.iter().all(|s| *s == 401),
        "unknown tokens through Envoy: {unknown:?}"
    );
    assert!(lost.is_empty(), "acknowledged tokens lost: {lost:?}");

    // Reconnected: the same process serves again, without a restart.
    let back_at = Instant::now();
    cut.restore();
    assert!(
        wait_until(HEALTHY, || c.replica_gateway_status(1) == 200),
        "the replica did not recover within {HEALTHY:?} of its reconnection"
    );
    let recovered = back_at.elapsed();
    c.wait_healthy(HEALTHY);
    println!(
        "measured: {} reconnected to PostgreSQL: /status 200 after {} ms, back in Envoy's \
         rotation after {} ms, no restart",
        REPLICAS[1],
        ms(recovered),
        ms(back_at.elapsed())
    );
    assert_eq!(victim.started_at(), started_at, "the replica was restarted");
}

#[test]
#[ignore = "needs the compose cluster profile: make test-docker-faults"]
fn postgresql_cut_from_everyone_fails_closed_keeps_cached_tokens_and_recovers_without_a_restart() {
    let _serial = serial();
    let c = cluster();
    c.wait_healthy(HEALTHY);
    let postgres = c.container(POSTGRES);
    let networks: Vec<String> = postgres.networks().into_keys().collect();
    let replicas = REPLICAS.map(|r| c.container(r));
    let started: Vec<String> = replicas.iter().map(|r| r.started_at()).collect();
    let cached = c.issue().expect("a token before the outage");
    assert!(
        c.works_everywhere(&cached),
        "the token was not cached by every Envoy worker"
    );
    let client = fresh_connections(Duration::from_secs(5));

    let cut_at = Instant::now();
    let mut cut = postgres.disconnect(&networks);
    // Until every replica says it cannot read its database (and 3 s at least): what the
    // filter knows keeps working, the rest fails closed.
    let (mut cached_statuses, mut unknown, mut issued) = (Vec::new(), Vec::new(), Vec::new());
    let mut closed: [Option<Duration>; 3] = [None; 3];
    let mut n = 0;
    let observed = wait_until(Duration::from_secs(60), || {
        cached_statuses.push(c.use_token(&client, Some(&cached)));
        n += 1;
        let sent = Instant::now();
        let (status, body) = c.use_token_answer(&client, Some(&format!("never-issued-{n}")));
        unknown.push((
            status,
            body.contains("temporarily_unavailable"),
            ms(sent.elapsed()),
        ));
        issued.push(c.request_token(&client).0);
        for (r, closed) in closed.iter_mut().enumerate() {
            if closed.is_none() && c.replica_gateway_status(r) == FAIL_CLOSED {
                *closed = Some(cut_at.elapsed());
            }
        }
        closed.iter().all(Option::is_some) && cut_at.elapsed() >= Duration::from_secs(3)
    });
    println!(
        "measured: PostgreSQL cut from every network ({networks:?}): /status 503 at the replicas \
         after {closed:?}; the cached token {cached_statuses:?}; unknown tokens (status, \
         temporarily_unavailable, ms) {unknown:?}; token requests {issued:?}"
    );
    assert!(
        observed,
        "not every replica answered /status 503 within 60 s: {closed:?}"
    );
    assert!(
        cached_statuses.iter().all(|s| *s == 200),
        "the cached token: {cached_statuses:?}"
    );
    assert!(
        unknown
            .iter()
            .all(|(status, why, _)| *status == FAIL_CLOSED && *why),
        "unknown tokens must be answered 503 temporarily_unavailable: {unknown:?}"
    );
    assert!(
        issued.iter().all(|s| *s == FAIL_CLOSED),
        "token requests: {issued:?}"
    );

    // Back: the same processes issue and check tokens again.
    let back_at = Instant::now();
    cut.restore();
    let mut fresh = None;
    let recovered = wait_until(HEALTHY, || {
        fresh = c.issue();
        fresh
            .as_deref()
            .is_some_and(|t| c.use_token(&client, Some(t)) == 200)
    });
    let issuing_after = back_at.elapsed();
    assert!(
        recovered,
        "no token was issued and used within {HEALTHY:?} of PostgreSQL's return"
    );
    c.wait_healthy(HEALTHY);
    let all_back = back_at.elapsed();
    let refused = wait_until(Duration::from_secs(10), || {
        c.use_token(&client, Some("never-issued-after")) == 401
    });
    println!(
        "measured: PostgreSQL reconnected: a token issued and used through Envoy after {} ms, \
         every replica serving after {} ms, no restart",
        ms(issuing_after),
        ms(all_back)
    );
    assert!(
        refused,
        "an unknown token is not refused (401) after the outage"
    );
    assert_eq!(c.use_token(&client, Some(&cached)), 200);
    let now: Vec<String> = replicas.iter().map(|r| r.started_at()).collect();
    assert_eq!(now, started, "a replica was restarted");
}

#[test]
#[ignore = "needs the compose cluster profile: make test-docker-faults"]
fn a_revocation_is_refused_within_the_bound_while_a_replica_is_partitioned_and_after_it_rejoins() {
    let _serial = serial();
    let c = cluster();
    c.wait_healthy(HEALTHY);
    let partitioned = 2;
    let victim = c.container(REPLICAS[partitioned]);
    let db = c.networks_shared_with_postgres(&victim);

    // Cached: every Envoy worker has checked it. Uncached: Envoy never saw it, the partitioned
    // replica's index holds it as active.
    let cached = c.issue().expect("a token");
    assert!(c.works_everywhere(&cached));
    let uncached = c.issue().expect("a token");
    assert!(
        wait_until(Duration::from_secs(5), || c
            .replica_check(partitioned, &uncached)
            .1
            == Some(true)),
        "the replica to partition does not know the token"
    );

    let mut cut = victim.disconnect(&db);
    assert!(
        wait_until(Duration::from_secs(30), || c
            .replica_gateway_status(partitioned)
            == FAIL_CLOSED),
        "the partitioned replica never answered /status 503"
    );
    // Envoy has steered around it: fresh tokens work everywhere.
    assert!(
        wait_until(HEALTHY, || c
            .issue()
            .is_some_and(|t| c.works_everywhere(&t))),
        "Envoy did not steer around the partitioned replica"
    );
    // The bound counts from the commit: the admin API acknowledges a revocation once
    // PostgreSQL has committed it (the call's own time is printed beside).
    let (mut took, mut calls, mut before) = (Vec::new(), Vec::new(), Vec::new());
    for (what, token) in [("cached", &cached), ("uncached", &uncached)] {
        let (revoked_at, call) = c.revoke(0, token);
        calls.push(ms(call));
        let (after, answers) = c.refused_for_good(token, revoked_at, Duration::from_secs(5));
        took.push((what, after));
        before.push((what, answers));
    }
    // Stale on its side of the partition: still active in its index (the test's premise).
    // But asked as the filter asks once it knows the revocation (with the feed position it
    // polled from a healthy replica), it cannot catch up and must fail closed: 503, never
    // "active", so nothing it says can put the token back into an Envoy's cache.
    let stale = c.replica_check(partitioned, &uncached);
    let position = c.feed_position(0).expect("replica 1's feed position");
    let stale_at_position = c.replica_check_at(partitioned, &uncached, Some(position));

    let rejoined_at = Instant::now();
    cut.restore();
    assert!(
        wait_until(HEALTHY, || c.replica_gateway_status(partitioned) == 200),
        "the partitioned replica did not recover"
    );
    let answering = rejoined_at.elapsed();
    // Caught up: its own answer says revoked, within the bound of its return.
    let caught_up = wait_until(Duration::from_secs(5), || {
        c.replica_check(partitioned, &uncached).1 == Some(false)
    });
    let caught_up_after = rejoined_at.elapsed();
    // Back in rotation (it answers Envoy's checks of fresh tokens again), the revoked tokens
    // stay refused on every request.
    let checks_before = c.checks_by(partitioned);
    let mut statuses = Vec::new();
    let in_rotation = wait_until(HEALTHY, || {
        for token in [&cached, &uncached] {
            statuses.push(c.use_token(&c.http, Some(token)));
        }
        if let Some(fresh) = c.issue() {
            c.use_token(&c.http, Some(&fresh));
        }
        c.checks_by(partitioned) >= checks_before + 5.0
    });
    println!(
        "measured: revoked through {} while {} was cut from PostgreSQL: refused for good through \
         Envoy after {took:?} of the acknowledged DELETE (which took {calls:?} \
         ms; bound {REVOCATION_BOUND:?}; the other answers before: {before:?}); the partitioned replica's own answer \
         meanwhile {stale:?}, asked at feed position {position} {stale_at_position:?}; rejoined: /status 200 after {} ms, revoked in its own answer \
         after {} ms, back in rotation with {} requests of the revoked tokens, answered {:?}",
        REPLICAS[0],
        REPLICAS[partitioned],
        ms(answering),
        ms(caught_up_after),
        statuses.len(),
        statuses.iter().collect::<std::collections::BTreeSet<_>>()
    );
    for (what, took) in &took {
        assert!(
            took.is_some_and(|t| t <= REVOCATION_BOUND),
            "the {what} token was refused for good after {took:?} (None: not within 5 s)"
        );
    }
    assert_eq!(
        stale_at_position,
        (FAIL_CLOSED, None),
        "the partitioned replica asked at the filter's feed position"
    );
    assert!(
        caught_up,
        "the rejoined replica still answers the revoked token active"
    );
    assert!(
        in_rotation,
        "the rejoined replica answered no checks within {HEALTHY:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401),
        "a revoked token through Envoy after the replica rejoined: {statuses:?}"
    );
    assert!(!c.stored(partitioned, &uncached) && !c.stored(partitioned, &cached));
}

#[test]
#[ignore = "needs the compose cluster profile: make test-docker-faults"]
fn an_envoy_restart_lets_nothing_through_while_it_comes_up_and_tokens_work_after() {
    let _serial = serial();
    let c = cluster();
    c.wait_healthy(HEALTHY);
    let envoy = c.container(ENVOY);
    let token = c.issue().expect("a token");
    assert!(c.works_everywhere(&token));

    // Probes all through the restart: without a token, with an unknown one, with the valid one.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let restarted_at = Instant::now();
    let (wrong, valid, back) = std::thread::scope(|scope| {
        let probes = scope.spawn(|| {
            let client = fresh_connections(Duration::from_secs(5));
            let (mut wrong, mut valid) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                let unknown = format!("never-issued-restart-{n}");
                for (what, probe) in [
                    ("no token", None),
                    ("unknown token", Some(unknown.as_str())),
                ] {
                    let status = c.use_token(&client, probe);
                    if status == 200 {
                        wrong.push(format!("{what}: 200 at +{} ms", ms(restarted_at.elapsed())));
                    }
                }
                valid.push((restarted_at.elapsed(), c.use_token(&client, Some(&token))));
            }
            (wrong, valid)
        });
        envoy.restart();
        let back =
            wait_until(HEALTHY, || c.works_everywhere(&token)).then(|| restarted_at.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Release);
        let (wrong, valid) = probes.join().expect("the probes");
        (wrong, valid, back)
    });
    let mut by_status = std::collections::BTreeMap::new();
    for (_, status) in &valid {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    let fresh = c.issue();
    println!(
        "measured: docker restart of {ENVOY}: the valid token works everywhere again after {back:?}; \
         its {} probes answered {by_status:?} (0: no connection); {} probes without a valid token \
         let through",
        valid.len(),
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "let through while Envoy came up: {wrong:?}"
    );
    assert!(
        back.is_some(),
        "the valid token did not work within {HEALTHY:?} of the restart"
    );
    assert!(
        valid.iter().all(|(_, s)| [0, 200, FAIL_CLOSED].contains(s)),
        "the valid token during the restart: {by_status:?}"
    );
    assert!(
        fresh.is_some_and(|t| c.works_everywhere(&t)),
        "a token issued after the restart does not work"
    );
}
