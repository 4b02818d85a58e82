//! Application secrets: one Secrets Manager JSON secret (through moto), cached.

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
