//! Ports: the traits the two deployments implement. AWS types and SQLite types
//! never cross them.

pub mod clock;
pub mod mailer;
pub mod provider;
pub mod queue;
pub mod secrets;
pub mod store;
pub mod vault;

pub use clock::{Clock, SystemClock};
pub use mailer::{Mailer, OutgoingEmail};
pub use provider::ProviderAdapter;
pub use queue::{Queue, QueueName};
pub use secrets::AppSecrets;
pub use store::Store;
pub use vault::{CredentialContext, CredentialVault};
