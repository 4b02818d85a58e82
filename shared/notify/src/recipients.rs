//! Who gets a workspace's notices: its `notifications` setting, a list of
//! addresses a user keeps (removing oneself is opting out), minus the
//! addresses suppressed after a hard bounce or a complaint.

use kpi_core::email::{MailStream, is_address, stream_suppression_key};
use kpi_core::ports::Store;
use kpi_core::ports::store::normalize_address;
use kpi_core::{Error, Result, WorkspaceScope};
use serde::{Deserialize, Serialize};

/// The workspace setting that holds [`NotificationSettings`].
pub const SETTING: &str = "notifications";
/// Most addresses one workspace may list.
pub const MAX_RECIPIENTS: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// Who gets failure notices, recovery notices and reconnect reminders.
    pub recipients: Vec<String>,
}

impl NotificationSettings {
    /// Checks and normalises a list a user sent: valid addresses, at most
    /// [`MAX_RECIPIENTS`], lower-cased, each once (first order kept).
    pub fn checked(self) -> Result<Self> {
        if self.recipients.len() > MAX_RECIPIENTS {
            return Err(Error::validation(
                "recipients",
                format!("at most {MAX_RECIPIENTS} addresses"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(self.recipients.len());
        for (i, raw) in self.recipients.iter().enumerate() {
            let address = normalize_address(raw);
            if !is_address(&address) {
                return Err(Error::validation(
                    format!("recipients[{i}]"),
                    "must be an email address such as owner@example.com",
                ));
            }
            if !out.contains(&address) {
                out.push(address);
            }
        }
        Ok(Self { recipients: out })
    }

    /// The workspace's settings (none set: an empty list).
    pub async fn load(store: &dyn Store, scope: &WorkspaceScope) -> Result<Self> {
        match store.get_workspace_setting(scope, SETTING).await? {
            Some(v) => serde_json::from_value(v).map_err(|e| {
                Error::internal("stored notification settings are unreadable").with_source(e)
            }),
            None => Ok(Self::default()),
        }
    }

    pub async fn save(&self, store: &dyn Store, scope: &WorkspaceScope) -> Result<()> {
        let value = serde_json::to_value(self).map_err(|e| {
            Error::internal("notification settings did not serialize").with_source(e)
        })?;
        store.put_workspace_setting(scope, SETTING, &value).await
    }
}

/// The addresses of `list` that are not suppressed in the workspace, nor
/// (for an email of a list, `stream`) unsubscribed from that kind of email.
pub async fn deliverable(
    store: &dyn Store,
    scope: &WorkspaceScope,
    list: &[String],
    stream: Option<MailStream>,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(list.len());
    for address in list {
        if store.is_suppressed(scope, address).await? {
            tracing::info!("a suppressed address is skipped");
            continue;
        }
        if let Some(stream) = stream
            && store
                .is_suppressed(scope, &stream_suppression_key(address, stream))
                .await?
        {
            tracing::info!(
                stream = stream.as_str(),
                "an unsubscribed address is skipped"
            );
            continue;
        }
        out.push(address.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_and_normalised() {
        let s = NotificationSettings {
            recipients: vec![
                "Owner@Example.com".into(),
                "owner@example.com ".into(),
                "b@c.io".into(),
            ],
        }
        .checked()
        .unwrap();
        assert_eq!(s.recipients, vec!["owner@example.com", "b@c.io"]);
        let err = NotificationSettings {
            recipients: vec!["ok@example.com".into(), "not an address".into()],
        }
        .checked()
        .unwrap_err();
        assert!(
            err.to_string().contains("recipients[1]")
                || format!("{err:?}").contains("recipients[1]")
        );
        let many = NotificationSettings {
            recipients: (0..51).map(|i| format!("u{i}@example.com")).collect(),
        };
        assert!(many.checked().is_err());
    }
}
