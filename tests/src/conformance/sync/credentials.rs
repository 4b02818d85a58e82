//! Credentials in a sync: token refreshes shared and kept, the user's changes standing, expiry.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::job::SyncMessage;
use kpi_core::ports::CredentialContext;
use kpi_core::{IntegrationStatus, JobStatus};
use kpi_sync::Worker;
use kpi_sync::mock::Outcome;
use secrecy::SecretString;

use super::Engine;

pub async fn a_rotated_refresh_token_outlives_a_write_made_during_the_refresh(e: &Engine) {
    use secrecy::ExposeSecret as _;
    let scope = Engine::scope("ws-rotate");
    // Its token is within the refresh margin: the sync refreshes first.
    let i = e
        .integration("ws-rotate", chrono::Duration::minutes(1))
        .await;
    e.adapter.hold_next_refresh.store(true, Ordering::SeqCst);
    let refreshes = e.adapter.refresh_calls.load(Ordering::SeqCst);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    // While the provider answers the refresh (rotating the refresh token),
    // something else writes the integration (a rename): its version moves.
    let meddle = async {
        e.adapter.entered.notified().await;
        let mut renamed = e.store.get_integration(&scope, i.id).await.unwrap();
        renamed.display_name = "Renamed meanwhile".into();
        e.store.update_integration(&scope, &renamed).await.unwrap();
        e.adapter.release.notify_one();
    };
    tokio::join!(
        e.drain(std::slice::from_ref(&job), Duration::from_secs(30)),
        meddle
    );
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    assert_eq!(
        e.adapter.refresh_calls.load(Ordering::SeqCst) - refreshes,
        1,
        "the rotated token was kept, not refreshed again with the old one"
    );
    let stored = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(
        stored.display_name, "Renamed meanwhile",
        "both writes stand"
    );
    let credentials = e
        .vault
        .open(
            &CredentialContext::of(&stored),
            stored.credentials.as_ref().unwrap(),
        )
        .await
        .unwrap();
    let ConnectionCredentials::OAuth(tokens) = credentials else {
        panic!("OAuth credentials")
    };
    assert!(
        tokens
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().starts_with("mock-refresh-")),
        "the rotated refresh token is the stored one"
    );
}

pub async fn ten_workers_share_one_token_refresh(e: &Engine) {
    let workers: Vec<_> = (0..10)
        .map(|k| Arc::new(e.worker(&format!("worker-{k}"))))
        .collect();
    one_refresh_for(e, workers).await;
}

/// Ten records of one Lambda batch: one worker, one refresh all the same.
pub async fn one_worker_refreshes_once_for_a_batch(e: &Engine) {
    let worker = Arc::new(e.worker("batch-worker"));
    one_refresh_for(e, (0..10).map(|_| worker.clone()).collect()).await;
}

async fn one_refresh_for(e: &Engine, workers: Vec<Arc<Worker>>) {
    let i = e
        .integration("ws-refresh", chrono::Duration::minutes(1))
        .await;
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(e.job(&i).await);
    }
    let messages: Vec<_> = jobs
        .iter()
        .map(|j| kpi_core::ports::queue::ReceivedMessage {
            message_id: j.id.to_string(),
            body: serde_json::to_string(&SyncMessage::for_job(j)).unwrap(),
            receipt: kpi_core::ports::queue::ReceiptHandle(j.id.to_string()),
            receive_count: 1,
        })
        .collect();
    let outcomes =
        futures::future::join_all(workers.iter().zip(&messages).map(|(w, m)| w.handle(m))).await;
    assert!(
        outcomes.iter().all(|d| *d == kpi_sync::Disposition::Done),
        "{outcomes:?}"
    );
    assert_eq!(
        e.adapter.refresh_calls.load(Ordering::SeqCst),
        1,
        "one refresh for ten attempts"
    );
    let tokens = e.adapter.tokens_used.lock().unwrap().clone();
    assert_eq!(tokens.len(), 10);
    assert!(tokens.iter().all(|t| t == "mock-access-1"), "{tokens:?}");
    // The refreshed token was stored, and the refresh token kept.
    let (access, refresh) = e.stored_tokens("ws-refresh", &i).await;
    assert_eq!(access, "mock-access-1");
    assert_eq!(refresh.as_deref(), Some("initial-refresh"));
}

pub async fn credentials_an_adapter_renewed_are_kept(e: &Engine) {
    let i = e.integration("ws-renew", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::SuccessWithNewToken]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let (access, refresh) = e.stored_tokens("ws-renew", &i).await;
    assert_eq!(access, "mock-access-1", "the renewed token was stored");
    assert_eq!(
        refresh.as_deref(),
        Some("initial-refresh"),
        "and the refresh token kept"
    );
}

/// The adapter renews the token while the user disconnects, or reconnects: the
/// user's action stands after the job.
pub async fn a_users_reconnect_or_disconnect_during_a_sync_stands(e: &Engine) {
    for action in ["disconnect", "reconnect"] {
        let ws = format!("ws-race-{action}");
        let i = e.integration(&ws, chrono::Duration::hours(1)).await;
        e.adapter.script(i.id, [Outcome::HeldThenNewToken]);
        let job = e.job(&i).await;
        let message = kpi_core::ports::queue::ReceivedMessage {
            message_id: job.id.to_string(),
            body: serde_json::to_string(&SyncMessage::for_job(&job)).unwrap(),
            receipt: kpi_core::ports::queue::ReceiptHandle(job.id.to_string()),
            receive_count: 1,
        };
        let worker = e.worker("race-worker");
        let run = tokio::spawn(async move { worker.handle(&message).await });
        e.adapter.entered.notified().await;
        let scope = Engine::scope(&ws);
        let now = Utc::now();
        let mut user = e.store.get_integration(&scope, i.id).await.unwrap();
        if action == "disconnect" {
            user.transition(IntegrationStatus::Disconnected, now)
                .unwrap();
        } else {
            let fresh = ConnectionCredentials::OAuth(OAuthTokens {
                access_token: SecretString::from("user-reconnected-access".to_owned()),
                refresh_token: Some(SecretString::from("user-reconnected-refresh".to_owned())),
                expires_at: Some(now + chrono::Duration::hours(1)),
                scopes: vec![],
            });
            user.credentials = Some(
                e.vault
                    .seal(&CredentialContext::of(&user), &fresh)
                    .await
                    .unwrap(),
            );
        }
        e.store.update_integration(&scope, &user).await.unwrap();
        e.adapter.release.notify_one();
        run.await.unwrap();
        let after = e.store.get_integration(&scope, i.id).await.unwrap();
        if action == "disconnect" {
            assert_eq!(after.status(), IntegrationStatus::Disconnected);
            assert!(
                after.credentials.is_none(),
                "erased credentials stay erased"
            );
        } else {
            assert_eq!(after.status(), IntegrationStatus::Connected);
            let (access, refresh) = e.stored_tokens(&ws, &i).await;
            assert_eq!(access, "user-reconnected-access", "the reconnect stands");
            assert_eq!(refresh.as_deref(), Some("user-reconnected-refresh"));
        }
    }
}

/// Credentials that cannot be refreshed (Meta's long-lived token): within a
/// week of expiry each successful sync keeps the integration connected and
/// one reconnect reminder goes out; once expired, the job needs a reconnect
/// and the provider is not called.
pub async fn expiring_credentials_remind_once_then_need_a_reconnect(e: &Engine) {
    let ws = "ws-expiry";
    let scope = Engine::scope(ws);
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let expires_at = Utc::now() + chrono::Duration::days(3);
    let mut stored = e.store.get_integration(&scope, i.id).await.unwrap();
    stored.credentials_expire_at = Some(expires_at);
    let stored = e.store.update_integration(&scope, &stored).await.unwrap();
    assert!(stored.expires_soon(Utc::now()));
    assert!(!stored.expires_soon(Utc::now() - chrono::Duration::days(5)));
    let reminders = || {
        e.notifier
            .reminders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    };
    for _ in 0..2 {
        let job = e.job(&i).await;
        e.send(std::slice::from_ref(&job)).await;
        e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
            .await;
        assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    }
    let sent = reminders();
    assert_eq!(sent.len(), 1, "one reminder per expiry: {sent:?}");
    assert_eq!(sent[0].integration, i.id);
    assert_eq!(sent[0].expires_at, expires_at);
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.reminded_for, Some(expires_at));
    assert_eq!(current.status(), IntegrationStatus::Connected);

    let mut expired = current;
    expired.credentials_expire_at = Some(Utc::now() - chrono::Duration::minutes(1));
    e.store.update_integration(&scope, &expired).await.unwrap();
    let calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    let ended = e.status(&job).await;
    assert_eq!(ended.status(), JobStatus::Dead);
    assert!(
        ended
            .last_error
            .as_ref()
            .unwrap()
            .message
            .contains("expired"),
        "{:?}",
        ended.last_error
    );
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        calls,
        "no provider call"
    );
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.status(), IntegrationStatus::NeedsReauth);
    assert_eq!(reminders().len(), 1);
}
