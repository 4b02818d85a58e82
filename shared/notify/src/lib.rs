//! Emails to people: the messages (templates rendered from typed data), who
//! receives them (the workspace's notification list, minus suppressed
//! addresses), which Resend account sends them (the workspace's own, else the
//! platform's), and the sync engine's notices by email.

pub mod alerts;
pub mod consent;
pub mod messages;
pub mod notifier;
pub mod outbox;
pub mod recipients;
pub mod reports;
pub mod schedule;
pub mod unsubscribe;

pub use alerts::AlertEvaluator;
pub use messages::{Message, Rendered};
pub use notifier::EmailNotifier;
pub use outbox::{Delivery, Outbox, PlatformSender};
pub use recipients::NotificationSettings;
