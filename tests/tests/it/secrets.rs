//! Application secrets: one Secrets Manager JSON secret (through moto), cached.

use std::collections::HashMap;
use std::time::Duration;

use kpi_aws::SecretsManagerSecrets;
use kpi_core::ports::AppSecrets;
use kpi_tests::moto::{MotoServer, unique_name};
use secrecy::ExposeSecret;

async fn put_secret(client: &aws_sdk_secretsmanager::Client, id: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn reads_the_json_secret_and_caches_it() {
    let moto = MotoServer::start();
    let config = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let name = unique_name("kpi-app");
    client
        .create_secret()
        .name(&name)
        .secret_string(
            r#"{"GOOGLE_CLIENT_SECRET":"gcs-1","RESEND_WEBHOOK_SECRET":"whsec_abc","EMPTY":""}"#,
        )
        .send()
        .await
        .unwrap();

    let secrets = SecretsManagerSecrets::new(&config, &name, Duration::from_millis(300));
    let v = secrets.get("GOOGLE_CLIENT_SECRET").await.unwrap().unwrap();
    assert_eq!(v.expose_secret(), "gcs-1");
    assert!(secrets.get("EMPTY").await.unwrap().is_none());
    assert!(secrets.get("MISSING").await.unwrap().is_none());

    // A rotation is seen once the cache entry is older than its TTL, not before.
    put_secret(&client, &name, r#"{"GOOGLE_CLIENT_SECRET":"gcs-2"}"#).await;
    let cached = secrets.get("GOOGLE_CLIENT_SECRET").await.unwrap().unwrap();
    assert_eq!(cached.expose_secret(), "gcs-1");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let fresh = secrets.get("GOOGLE_CLIENT_SECRET").await.unwrap().unwrap();
    assert_eq!(fresh.expose_secret(), "gcs-2");
}

/// The stack's generated link-key secret is read with the application
/// secret: its value applies unless the application secret sets its own.
#[tokio::test]
async fn the_generated_link_key_is_read_with_the_secret_which_wins() {
    let moto = MotoServer::start();
    let config = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let (app, link) = (unique_name("kpi-app"), unique_name("kpi-link"));
    for (name, value) in [
        (&app, r#"{"GOOGLE_CLIENT_SECRET":"gcs-1"}"#),
        (
            &link,
            r#"{"KPI_LINK_KEY":"generated-by-the-stack-0123456789abcdef"}"#,
        ),
    ] {
        client
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    let secrets = SecretsManagerSecrets::new(&config, &app, Duration::from_millis(300))
        .with_defaults_from(&link);
    let key = secrets.get("KPI_LINK_KEY").await.unwrap().unwrap();
    assert_eq!(
        key.expose_secret(),
        "generated-by-the-stack-0123456789abcdef"
    );
    let google = secrets.get("GOOGLE_CLIENT_SECRET").await.unwrap().unwrap();
    assert_eq!(google.expose_secret(), "gcs-1");

    put_secret(
        &client,
        &app,
        r#"{"KPI_LINK_KEY":"the-operators-own-key-0123456789abcdef"}"#,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let key = secrets.get("KPI_LINK_KEY").await.unwrap().unwrap();
    assert_eq!(
        key.expose_secret(),
        "the-operators-own-key-0123456789abcdef"
    );
}

#[tokio::test]
async fn a_malformed_or_missing_secret_is_a_configuration_error() {
    let moto = MotoServer::start();
    let config = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let name = unique_name("kpi-bad");
    client
        .create_secret()
        .name(&name)
        .secret_string("not json")
        .send()
        .await
        .unwrap();
    let err = SecretsManagerSecrets::new(&config, &name, Duration::from_secs(60))
        .get("X")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "configuration");

    let err = SecretsManagerSecrets::new(&config, "kpi-does-not-exist", Duration::from_secs(60))
        .get("X")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "configuration", "{}", err.log_chain());
}

/// A function's environment on `stack`, with identity configured as a
/// deployment sets it.
fn function_env(stack: &kpi_tests::stack::Stack) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = stack.env.iter().cloned().collect();
    for (k, v) in [
        (
            "KPI_AUTH_JWKS_URL",
            "https://auth.example.com/.well-known/jwks.json",
        ),
        ("KPI_AUTH_ISSUER", "https://auth.example.com/"),
        ("KPI_AUTH_AUDIENCE", "kpi"),
    ] {
        env.insert(k.into(), v.into());
    }
    env
}

/// Nothing is configured at start-up: the secret is read with the first
/// event that needs it, or once an event that needed none was answered
/// (`begin`), and that read is the one the next event's state comes from.
#[tokio::test]
async fn the_secret_is_read_when_first_needed_not_at_start_up() {
    let moto = MotoServer::start();
    let stack = kpi_tests::stack::Stack::create(&moto, &serde_json::json!({})).await;
    let wire = kpi_tests::aws_calls::AwsCalls::start(moto.endpoint()).await;
    let sdk = kpi_tests::moto::sdk_config_at(&wire.url).await;
    let env = function_env(&stack);
    // One read of each secret the function names.
    let secrets = [
        kpi_lambda::SECRET_ID_VARIABLE,
        kpi_lambda::LINK_KEY_SECRET_VARIABLE,
    ]
    .iter()
    .filter(|v| env.contains_key(**v))
    .count();
    let live = kpi_lambda::Live::from_env(&sdk, env, Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        wire.count("secretsmanager:GetSecretValue"),
        0,
        "{:?}",
        wire.counts()
    );

    live.begin();
    live.begin();
    let mut read = 0;
    for _ in 0..100 {
        read = wire.count("secretsmanager:GetSecretValue");
        if read > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        read > 0,
        "begin starts the configuration: {:?}",
        wire.counts()
    );
    live.state().await.unwrap();
    live.state().await.unwrap();
    assert_eq!(
        wire.count("secretsmanager:GetSecretValue"),
        secrets,
        "the events use what begin read: {:?}",
        wire.counts()
    );
}

#[tokio::test]
async fn a_function_follows_the_secret_without_a_restart() {
    let moto = MotoServer::start();
    // The template creates the secret as `{}`: every function starts, and a
    // provider without its credentials is only "not available".
    let stack = kpi_tests::stack::Stack::create(&moto, &serde_json::json!({})).await;
    let env = function_env(&stack);
    let secret_id = env[kpi_lambda::SECRET_ID_VARIABLE].clone();
    let client = aws_sdk_secretsmanager::Client::new(&stack.sdk);
    let ttl = Duration::from_millis(500);
    let live = kpi_lambda::Live::from_env(&stack.sdk, env, ttl);
    let (state, generation) = live.state_and_generation().await.unwrap();
    let missing = state
        .registry
        .adapter(kpi_providers::ga4::ID)
        .err()
        .unwrap();
    assert!(missing.is_config(), "{}", missing.log_chain());
    assert!(missing.message().contains("GOOGLE_CLIENT_ID"));
    assert!(state.registry.adapter(kpi_providers::resend::ID).is_ok());

    // The operator configures Google later: the warm function sees it within
    // the TTL, not before, with no restart.
    put_secret(
        &client,
        &secret_id,
        r#"{"GOOGLE_CLIENT_ID":"1234-abc.apps.googleusercontent.com","GOOGLE_CLIENT_SECRET":"gcs-live"}"#,
    )
    .await;
    let (state, same) = live.state_and_generation().await.unwrap();
    assert_eq!(same, generation, "the cached copy is used within the TTL");
    assert!(state.registry.adapter(kpi_providers::ga4::ID).is_err());
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let (state, newer) = live.state_and_generation().await.unwrap();
    assert!(newer > generation, "configured again");
    state
        .registry
        .adapter(kpi_providers::ga4::ID)
        .expect("Google is available once the secret has its app");

    // Values a function refuses (a development setting) leave the working
    // configuration in place.
    put_secret(
        &client,
        &secret_id,
        r#"{"GOOGLE_CLIENT_ID":"1234-abc.apps.googleusercontent.com","GOOGLE_CLIENT_SECRET":"gcs-live","KPI_AUTH_DEV_SECRET":"dev"}"#,
    )
    .await;
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let (state, kept) = live.state_and_generation().await.unwrap();
    assert_eq!(kept, newer);
    assert!(!state.auth.has_dev_secret(), "no dev tokens in a function");
    assert!(state.registry.adapter(kpi_providers::ga4::ID).is_ok());

    // Secrets Manager failing: the last copy stays in use.
    client
        .delete_secret()
        .secret_id(&secret_id)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let state = live.state().await.unwrap();
    assert!(state.registry.adapter(kpi_providers::ga4::ID).is_ok());
}

#[tokio::test]
async fn a_function_refuses_development_settings_before_serving() {
    let moto = MotoServer::start();
    let stack = kpi_tests::stack::Stack::create(&moto, &serde_json::json!({})).await;
    for (name, value) in [
        ("KPI_ENV", "development"),
        ("KPI_AUTH_DEV_SECRET", "dev-secret"),
        (
            "KPI_AUTH_JWKS_URL",
            "http://auth.example.com/.well-known/jwks.json",
        ),
    ] {
        let mut env = function_env(&stack);
        env.insert(name.into(), value.into());
        // Start-up goes on without waiting for the configuration; its
        // refusal is what the first event gets, never a state.
        let live = kpi_lambda::Live::from_env(&stack.sdk, env, Duration::from_secs(60));
        let err = live
            .state()
            .await
            .err()
            .unwrap_or_else(|| panic!("{name}={value} was accepted"));
        // Tried again with the next event, and refused again.
        assert!(live.state().await.is_err(), "{name}: refused once only");
        assert!(err.is_config(), "{name}: {}", err.log_chain());
        assert!(
            err.log_chain().contains(name),
            "{name}: {}",
            err.log_chain()
        );
        assert!(!err.log_chain().contains("dev-secret"));
    }
}

/// A sync message whose job is gone or ended needs neither the secret nor a
/// provider. While no configuration is ready (here never: the secret cannot
/// be read), the worker and the dead-letter handler answer such a batch with
/// the store alone; a batch with one job still to run waits for the
/// configuration, as does one the store cannot answer.
#[tokio::test]
async fn a_batch_of_gone_or_ended_jobs_is_answered_without_the_secret() {
    use kpi_core::ids::{IntegrationId, JobId, WorkspaceId};
    use kpi_core::job::{JobTrigger, SyncJob, SyncMessage};
    use kpi_core::ports::store::JobStore;
    use kpi_core::{JobStatus, WorkspaceScope};
    use kpi_lambda::settled_before_configuration;
    use kpi_sync::settled::Consumer;

    let moto = MotoServer::start();
    let stack = kpi_tests::stack::Stack::create(&moto, &serde_json::json!({})).await;
    let mut env = function_env(&stack);
    env.insert("KPI_SECRET_ID".into(), "kpi-does-not-exist".into());
    let live = kpi_lambda::Live::from_env(&stack.sdk, env, Duration::from_secs(60));

    let workspace = WorkspaceId::parse("ws-early").unwrap();
    let scope = WorkspaceScope::for_system(workspace.clone(), "test");
    // A job stored and moved through `path`; not stored without one.
    let job_in = |path: Option<&'static [JobStatus]>| {
        let (stack, scope, workspace) = (&stack, &scope, workspace.clone());
        async move {
            let mut job = SyncJob::new(
                JobId::new_time_ordered(),
                workspace,
                IntegrationId::new_random(),
                kpi_providers::ga4::ID,
                JobTrigger::Schedule,
                None,
                chrono::Utc::now(),
            );
            if let Some(path) = path {
                assert!(stack.store.create_job(scope, &job).await.unwrap());
                job = stack.store.get_job(scope, job.id).await.unwrap();
                for status in path {
                    job.transition(*status, chrono::Utc::now()).unwrap();
                    job = stack.store.update_job(scope, &job).await.unwrap();
                }
            }
            serde_json::to_string(&SyncMessage::for_job(&job)).unwrap()
        }
    };
    let batch = |bodies: &[&String]| -> aws_lambda_events::sqs::SqsEvent {
        let records: Vec<serde_json::Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| serde_json::json!({"messageId": format!("m{i}"), "body": body}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    };
    let gone = job_in(None).await;
    let dead = job_in(Some(&[JobStatus::Dead])).await;
    let queued = job_in(Some(&[])).await;
    let failed = job_in(Some(&[JobStatus::Running, JobStatus::Failed])).await;

    for consumer in [Consumer::Worker, Consumer::DeadLetters] {
        assert!(
            settled_before_configuration(&live, consumer, &batch(&[&gone, &dead])).await,
            "{consumer:?}"
        );
        assert!(
            !settled_before_configuration(&live, consumer, &batch(&[&gone, &queued])).await,
            "{consumer:?}: a job to run"
        );
        let unreadable = "not json".to_owned();
        assert!(
            settled_before_configuration(&live, consumer, &batch(&[&gone, &unreadable])).await,
            "{consumer:?}: an unreadable message is dropped either way"
        );
        assert!(
            !settled_before_configuration(&live, consumer, &batch(&[&unreadable, &queued])).await,
            "{consumer:?}: a job to run"
        );
    }
    // A failed job has nothing left for its worker, but its dead letter
    // still ends it dead, with its notice.
    assert!(settled_before_configuration(&live, Consumer::Worker, &batch(&[&failed])).await);
    assert!(!settled_before_configuration(&live, Consumer::DeadLetters, &batch(&[&failed])).await);
    // The configuration itself is still refused: nothing else was served.
    assert!(live.state().await.is_err());
}

/// A scheduler tick with nothing to do needs neither the secret nor the
/// queues: no integration due, no queued job to send again, no report due.
/// While no configuration is ready (here never: the secret cannot be read),
/// such a tick is answered with the store alone; anything to do, and it
/// waits for the configuration.
#[tokio::test]
async fn an_idle_tick_is_answered_without_the_secret() {
    use chrono::{Duration as Span, Utc};
    use kpi_core::ids::{JobId, WorkspaceId};
    use kpi_core::job::{JobTrigger, SyncJob};
    use kpi_core::ports::store::{IntegrationStore, JobStore, ReportStore};
    use kpi_core::{IntegrationStatus, JobStatus, WorkspaceScope};
    use kpi_lambda::idle_before_configuration;
    use kpi_tests::conformance::store::integration;

    let moto = MotoServer::start();
    let stack = kpi_tests::stack::Stack::create(&moto, &serde_json::json!({})).await;
    let mut env = function_env(&stack);
    env.insert("KPI_SECRET_ID".into(), "kpi-does-not-exist".into());
    let live = kpi_lambda::Live::from_env(&stack.sdk, env, Duration::from_secs(60));
    let scope = WorkspaceScope::for_system(WorkspaceId::parse("ws-idle").unwrap(), "test");
    assert!(idle_before_configuration(&live).await, "an empty store");

    // A job queued moments ago may still be on its way: it only waits.
    let waiting = integration("ws-idle", kpi_providers::ga4::ID);
    let job = |at| {
        SyncJob::new(
            JobId::new_time_ordered(),
            waiting.workspace.clone(),
            waiting.id,
            waiting.provider,
            JobTrigger::Schedule,
            None,
            at,
        )
    };
    assert!(
        stack
            .store
            .create_job(&scope, &job(Utc::now()))
            .await
            .unwrap()
    );
    assert!(idle_before_configuration(&live).await, "a job on its way");

    // One never sent, an hour ago: the tick sends it again.
    let unsent = job(Utc::now() - Span::hours(1));
    assert!(stack.store.create_job(&scope, &unsent).await.unwrap());
    assert!(
        !idle_before_configuration(&live).await,
        "a job to send again"
    );
    let mut ended = stack.store.get_job(&scope, unsent.id).await.unwrap();
    ended.transition(JobStatus::Dead, Utc::now()).unwrap();
    stack.store.update_job(&scope, &ended).await.unwrap();
    assert!(idle_before_configuration(&live).await, "a job ended");

    // A report due.
    stack
        .store
        .schedule_report(&scope, Some(Utc::now() - Span::minutes(1)))
        .await
        .unwrap();
    assert!(!idle_before_configuration(&live).await, "a report due");
    stack.store.schedule_report(&scope, None).await.unwrap();
    assert!(idle_before_configuration(&live).await);

    // An integration due.
    let mut due = integration("ws-idle", kpi_providers::resend::ID);
    due.transition(IntegrationStatus::Connected, Utc::now())
        .unwrap();
    due.next_sync_at = Some(Utc::now() - Span::minutes(1));
    stack.store.create_integration(&scope, &due).await.unwrap();
    assert!(
        !idle_before_configuration(&live).await,
        "an integration due"
    );

    // The configuration itself is still refused: nothing else was served.
    assert!(live.state().await.is_err());
}
