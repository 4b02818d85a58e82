//! Coordination records: OAuth states, dedupe keys, leases and ephemeral records.

use chrono::{DateTime, Duration, Utc};
use kpi_core::WorkspaceId;
use kpi_core::ports::Store;
use kpi_core::ports::store::OAuthState;

use super::{now, scope};

fn oauth_state(ws: &str, key: &str, expires_at: DateTime<Utc>) -> OAuthState {
    OAuthState {
        key: key.into(),
        workspace: WorkspaceId::parse(ws).unwrap(),
        user: "user-1".into(),
        provider: kpi_providers::ga4::ID,
        integration: None,
        browser_binding: "binding-hash".into(),
        pkce_verifier: Some("verifier".into()),
        return_to: Some("/settings/integrations".into()),
        expires_at,
    }
}

pub async fn oauth_state_is_consumed_once<S: Store + 'static>(store: &S) {
    let ws = scope("ws-oauth");
    let t = now();
    let state = oauth_state("ws-oauth", "state-hash-1", t + Duration::minutes(10));
    store.put_oauth_state(&ws, &state).await.unwrap();
    assert!(
        store.put_oauth_state(&ws, &state).await.is_err(),
        "keys are unique"
    );
    // Looking leaves it in place.
    assert!(store.oauth_state_held("state-hash-1", t).await.unwrap());
    assert!(store.oauth_state_held("state-hash-1", t).await.unwrap());
    assert!(!store.oauth_state_held("never-issued", t).await.unwrap());
    let (c1, c2) = tokio::join!(
        store.consume_oauth_state("state-hash-1", t),
        store.consume_oauth_state("state-hash-1", t)
    );
    let winners: Vec<_> = [c1.unwrap(), c2.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one consumer wins");
    assert_eq!(winners[0], state);
    assert!(!store.oauth_state_held("state-hash-1", t).await.unwrap());
    assert!(
        store
            .consume_oauth_state("state-hash-1", t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .consume_oauth_state("never-issued", t)
            .await
            .unwrap()
            .is_none()
    );
    // A scope cannot store a state for another workspace.
    assert!(
        store
            .put_oauth_state(&scope("ws-x"), &oauth_state("ws-oauth", "k2", t))
            .await
            .is_err()
    );
}

pub async fn many_concurrent_consumers_one_winner<S: Store + 'static>(store: &S) {
    let ws = scope("ws-oauth");
    let t = now();
    store
        .put_oauth_state(
            &ws,
            &oauth_state("ws-oauth", "contended", t + Duration::minutes(10)),
        )
        .await
        .unwrap();
    let results =
        futures::future::join_all((0..8).map(|_| store.consume_oauth_state("contended", t))).await;
    assert_eq!(results.into_iter().filter_map(|r| r.unwrap()).count(), 1);
}

pub async fn expiry_is_honoured_before_deletion<S: Store>(store: &S) {
    let ws = scope("ws-exp");
    let t = now();
    store
        .put_oauth_state(
            &ws,
            &oauth_state("ws-exp", "old-state", t + Duration::minutes(10)),
        )
        .await
        .unwrap();
    // Eleven minutes later the record may still exist physically, but is expired.
    let later = t + Duration::minutes(11);
    assert!(store.oauth_state_held("old-state", t).await.unwrap());
    assert!(!store.oauth_state_held("old-state", later).await.unwrap());
    assert!(
        store
            .consume_oauth_state("old-state", later)
            .await
            .unwrap()
            .is_none()
    );

    let until = t + Duration::hours(24);
    assert!(store.first_seen("delivery-1", until, t).await.unwrap());
    assert!(
        !store
            .first_seen("delivery-1", until, t + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .first_seen(
                "delivery-1",
                until + Duration::hours(24),
                until + Duration::seconds(1)
            )
            .await
            .unwrap(),
        "an expired dedupe record counts as absent"
    );
    assert!(
        !store
            .first_seen("delivery-1", until, until + Duration::seconds(2))
            .await
            .unwrap()
    );
    // A first caller that could not act hands the key back.
    store.forget("delivery-1").await.unwrap();
    store.forget("delivery-1").await.unwrap();
    assert!(
        store
            .first_seen("delivery-1", until, until + Duration::seconds(3))
            .await
            .unwrap(),
        "forgotten: first again"
    );
}

pub async fn dedupe_has_one_first_under_concurrency<S: Store>(store: &S) {
    let t = now();
    let until = t + Duration::hours(1);
    let (a, b, c) = tokio::join!(
        store.first_seen("webhook-42", until, t),
        store.first_seen("webhook-42", until, t),
        store.first_seen("webhook-42", until, t)
    );
    let firsts = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|x| **x)
        .count();
    assert_eq!(firsts, 1);
}

pub async fn leases_are_exclusive_until_they_expire<S: Store>(store: &S) {
    let t = now();
    let name = "refresh:integration-1";
    assert!(
        store
            .try_acquire_lease(name, "worker-a", t + Duration::seconds(30), t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease(name, "worker-b", t + Duration::seconds(30), t)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_lease(name, "worker-a", t + Duration::seconds(60), t)
            .await
            .unwrap(),
        "the holder may extend"
    );
    store.release_lease(name, "worker-b").await.unwrap(); // not the holder: no effect
    assert!(
        !store
            .try_acquire_lease(name, "worker-b", t + Duration::seconds(90), t)
            .await
            .unwrap()
    );
    let later = t + Duration::seconds(61);
    assert!(
        store
            .try_acquire_lease(name, "worker-b", later + Duration::seconds(30), later)
            .await
            .unwrap(),
        "an expired lease can be taken"
    );
    store.release_lease(name, "worker-b").await.unwrap();
    assert!(
        store
            .try_acquire_lease(name, "worker-c", later + Duration::seconds(30), later)
            .await
            .unwrap()
    );
}

pub async fn ephemeral_records_expire_and_are_taken_once<S: Store>(store: &S) {
    let t = Utc::now();
    let body = serde_json::json!({"sub": "u-1", "csrf": "c"});
    store
        .put_ephemeral("session-a", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(
        store.get_ephemeral("session-a", t).await.unwrap(),
        Some(body.clone())
    );
    assert_eq!(
        store.get_ephemeral("session-a", t).await.unwrap(),
        Some(body.clone()),
        "a get leaves it"
    );
    assert_eq!(
        store
            .get_ephemeral("session-a", t + Duration::minutes(11))
            .await
            .unwrap(),
        None,
        "expired before it is deleted"
    );
    // Replaced whole.
    let newer = serde_json::json!({"sub": "u-1", "csrf": "d"});
    store
        .put_ephemeral("session-a", &newer, t + Duration::minutes(20))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_ephemeral("session-a", t + Duration::minutes(15))
            .await
            .unwrap(),
        Some(newer.clone())
    );
    store.delete_ephemeral("session-a").await.unwrap();
    store.delete_ephemeral("session-a").await.unwrap();
    assert_eq!(store.get_ephemeral("session-a", t).await.unwrap(), None);

    // Taken once, by one of many; an expired one by none.
    store
        .put_ephemeral("attempt-1", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    let takers =
        futures::future::join_all((0..6).map(|_| store.take_ephemeral("attempt-1", t))).await;
    let won: Vec<_> = takers
        .into_iter()
        .map(|r| r.unwrap())
        .filter(Option::is_some)
        .collect();
    assert_eq!(won, vec![Some(body.clone())]);
    assert_eq!(store.get_ephemeral("attempt-1", t).await.unwrap(), None);
    store
        .put_ephemeral("attempt-2", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(
        store
            .take_ephemeral("attempt-2", t + Duration::minutes(10))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.take_ephemeral("never-made", t).await.unwrap(), None);
}
