//! Backends ready for a test, each with a guard that tears it down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use kpi_aws::{DynamoStore, KmsKeySource, SqsQueue};
use kpi_core::Provider;
use kpi_local::{LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_vault::{CacheSettings, EnvelopeVault, LocalMasterKey};

use crate::moto::{MotoServer, remove_dir, temp_dir, unique_name};

/// Keeps a backend's external resources alive for the test's duration.
pub enum Guard {
    Moto(Arc<MotoServer>),
    Dir(PathBuf),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Dir(dir) = self {
            remove_dir(dir);
        }
    }
}

/// Queue timing used by the queue conformance suite on both backends.
pub const VISIBILITY: Duration = Duration::from_secs(1);
pub const MAX_RECEIVES: u32 = 2;

pub async fn sqlite_store() -> (SqliteStore, Guard) {
    let dir = temp_dir("kpi-sqlite");
    let store = SqliteStore::open(&dir.join("kpi.db")).expect("open sqlite");
    (store, Guard::Dir(dir))
}

pub async fn dynamo_store_on(moto: &MotoServer) -> DynamoStore {
    let config = moto.sdk_config().await;
    let store = DynamoStore::new(&config, unique_name("kpi"));
    store.create_table().await.expect("create table");
    store
}

/// Every item of the store's table as text, for tests that look at what it
/// holds (the store itself never scans).
pub async fn dump_table(moto: &MotoServer, store: &DynamoStore) -> Vec<String> {
    let client = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(store.table_name())
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("scan");
        out.extend(page.items().iter().map(|i| format!("{i:?}")));
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return out;
        }
    }
}

pub async fn dynamo_store() -> (DynamoStore, Guard) {
    let moto = Arc::new(MotoServer::start());
    let store = dynamo_store_on(&moto).await;
    (store, Guard::Moto(moto))
}

pub async fn local_queue() -> (LocalQueue, Guard) {
    let queue = LocalQueue::new(LocalQueueSettings {
        visibility_timeout: VISIBILITY,
        max_receives: MAX_RECEIVES,
    });
    (queue, Guard::Dir(temp_dir("kpi-queue")))
}

/// Creates a work queue and its DLQ per provider, as `template.yaml` does.
pub async fn create_sqs_queues(config: &SdkConfig) -> HashMap<Provider, String> {
    create_sqs_queues_with(config, MAX_RECEIVES).await
}

/// The same with another `maxReceiveCount`.
pub async fn create_sqs_queues_with(
    config: &SdkConfig,
    max_receives: u32,
) -> HashMap<Provider, String> {
    create_sqs_queues_visible(config, max_receives, VISIBILITY).await
}

/// The same with another visibility timeout.
pub async fn create_sqs_queues_visible(
    config: &SdkConfig,
    max_receives: u32,
    visibility: Duration,
) -> HashMap<Provider, String> {
    let client = aws_sdk_sqs::Client::new(config);
    let mut urls = HashMap::new();
    for provider in [
        kpi_providers::ga4::ID,
        kpi_providers::meta::ID,
        kpi_providers::resend::ID,
    ] {
        let dlq = client
            .create_queue()
            .queue_name(unique_name(&format!("{provider}-dlq")).replace('_', "-"))
            .send()
            .await
            .expect("create dlq");
        let dlq_url = dlq.queue_url().expect("dlq url");
        let attrs = client
            .get_queue_attributes()
            .queue_url(dlq_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("dlq attributes");
        let dlq_arn = attrs.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        let policy = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receives,
        });
        let work = client
            .create_queue()
            .queue_name(unique_name(provider.as_str()).replace('_', "-"))
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility.as_secs().to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, policy.to_string())
            .send()
            .await
            .expect("create work queue");
        urls.insert(provider, work.queue_url().expect("queue url").to_owned());
    }
    urls
}

pub async fn sqs_queue() -> (SqsQueue, Guard) {
    let moto = Arc::new(MotoServer::start());
    let config = moto.sdk_config().await;
    let urls = create_sqs_queues(&config).await;
    (SqsQueue::new(&config, urls), Guard::Moto(moto))
}

pub fn local_vault() -> EnvelopeVault<LocalMasterKey> {
    let dir = temp_dir("kpi-key");
    let key = LocalMasterKey::load_or_create(&dir.join("master.key")).expect("master key");
    remove_dir(&dir);
    EnvelopeVault::new(key, CacheSettings::default())
}

pub async fn create_kms_key(config: &SdkConfig) -> String {
    let client = aws_sdk_kms::Client::new(config);
    let key = client
        .create_key()
        .description("kpi credentials (test)")
        .send()
        .await
        .expect("create kms key");
    key.key_metadata()
        .expect("key metadata")
        .key_id()
        .to_owned()
}

pub async fn kms_vault_on(moto: &MotoServer, cache: CacheSettings) -> EnvelopeVault<KmsKeySource> {
    let config = moto.sdk_config().await;
    let key_id = create_kms_key(&config).await;
    EnvelopeVault::new(KmsKeySource::new(&config, key_id), cache)
}

/// The sync engine on SQLite, the in-process queue and the local key.
pub async fn local_engine() -> crate::conformance::sync::Engine {
    let (store, guard) = sqlite_store().await;
    let queue = LocalQueue::new(LocalQueueSettings {
        visibility_timeout: VISIBILITY,
        max_receives: crate::conformance::sync::ENGINE_MAX_RECEIVES,
    });
    crate::conformance::sync::Engine::new(
        Arc::new(store),
        Arc::new(queue),
        Arc::new(local_vault()),
        guard,
    )
}

/// The sync engine on DynamoDB, SQS (with a real redrive policy) and KMS, through moto.
pub async fn aws_engine() -> crate::conformance::sync::Engine {
    let moto = Arc::new(MotoServer::start());
    let config = moto.sdk_config().await;
    let store = dynamo_store_on(&moto).await;
    let urls = create_sqs_queues_with(&config, crate::conformance::sync::ENGINE_MAX_RECEIVES).await;
    let vault = kms_vault_on(&moto, CacheSettings::default()).await;
    let mut engine = crate::conformance::sync::Engine::new(
        Arc::new(store),
        Arc::new(SqsQueue::new(&config, urls)),
        Arc::new(vault),
        Guard::Moto(moto),
    );
    engine.concurrent_transactions = false;
    // The emulator answers each call in milliseconds of Python and scans the
    // table for each index query: a tenth of the embedded backlog keeps the
    // case to a minute; the queue is as many hours deep by the clock.
    engine.backlog = 200;
    engine
}
