//! AWS adapters of the ports. AWS SDK types stay inside this crate.

mod error;
mod kms;
mod sdk;
mod secrets;
mod sqs;

pub mod dynamo;

pub use dynamo::DynamoStore;
pub use kms::KmsKeySource;
pub use sdk::{load_sdk_config, sdk_config_loader};
pub use secrets::SecretsManagerSecrets;
pub use sqs::SqsQueue;
