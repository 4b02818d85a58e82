//! A deployed stack's resources on moto (the table, the work queues, the key,
//! the secret) and the environment `template.yaml` gives its functions, for
//! running the real function binaries as Lambda would.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::SdkConfig;
use kpi_aws::DynamoStore;
use kpi_core::Provider;
use serde_json::Value;

use crate::moto::{MotoServer, unique_name};

pub struct Stack {
    pub sdk: SdkConfig,
    pub store: DynamoStore,
    /// Each provider's work queue URL.
    pub queues: HashMap<Provider, String>,
    pub key_id: String,
    /// The functions' environment.
    pub env: Vec<(String, String)>,
}

impl Stack {
    /// Creates the resources; `secret` is the application secret's JSON.
    pub async fn create(moto: &MotoServer, secret: &Value) -> Self {
        let sdk = moto.sdk_config().await;
        let store = crate::fixtures::dynamo_store_on(moto).await;
        // Long enough for a worker to finish before its message shows again.
        let queues = crate::fixtures::create_sqs_queues_visible(
            &sdk,
            crate::fixtures::MAX_RECEIVES,
            Duration::from_secs(120),
        )
        .await;
        let key_id = crate::fixtures::create_kms_key(&sdk).await;
        let secret_arn = aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(unique_name("kpi-app"))
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create the secret")
            .arn()
            .expect("secret ARN")
            .to_owned();
        let mut env: Vec<(String, String)> = moto
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        for (k, v) in [
            ("KPI_ENV", "production".to_owned()),
            ("KPI_PUBLIC_URL", "https://kpi.example.com".to_owned()),
            ("KPI_STORE", format!("dynamodb:{}", store.table_name())),
            ("KPI_QUEUE", "sqs".to_owned()),
            ("KPI_VAULT", format!("kms:{key_id}")),
            (kpi_lambda::SECRET_ID_VARIABLE, secret_arn),
            ("RUST_LOG", "info".to_owned()),
        ] {
            env.push((k.to_owned(), v));
        }
        for (provider, url) in &queues {
            env.push((
                format!("KPI_QUEUE_URL_{}", provider.as_str().to_uppercase()),
                url.clone(),
            ));
        }
        Self {
            sdk,
            store,
            queues,
            key_id,
            env,
        }
    }

    /// Sets (or replaces) one variable of the functions' environment.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.into()));
    }

    /// The ARN of `provider`'s work queue (what the event source names).
    pub async fn queue_arn(&self, provider: Provider) -> String {
        let attrs = aws_sdk_sqs::Client::new(&self.sdk)
            .get_queue_attributes()
            .queue_url(&self.queues[&provider])
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes");
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone()
    }
}
