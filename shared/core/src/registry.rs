//! The provider registry: one adapter per provider, built once per process
//! from configuration and used by every part that needs a provider. Unknown
//! providers are a clear "not found"; known ones that this deployment has not
//! configured say which configuration they miss.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::metric::{Metric, MetricSpec};
use crate::ports::provider::{ProviderAdapter, ProviderDescriptor, WebhookSpec};
use crate::provider::Provider;

/// One provider as this deployment has it.
#[derive(Clone)]
pub struct Entry {
    pub descriptor: ProviderDescriptor,
    state: EntryState,
    /// Served by the built-in sandbox instead of the real provider.
    pub sandbox: bool,
}

#[derive(Clone)]
enum EntryState {
    Ready(Arc<dyn ProviderAdapter>),
    /// Known, but its configuration is missing: why, naming the variables.
    Unconfigured(String),
}

impl Entry {
    pub fn is_available(&self) -> bool {
        matches!(self.state, EntryState::Ready(_))
    }

    pub fn adapter(&self) -> Result<&Arc<dyn ProviderAdapter>> {
        match &self.state {
            EntryState::Ready(a) => Ok(a),
            EntryState::Unconfigured(why) => Err(Error::config(format!(
                "{} is not configured in this deployment: {why}",
                self.descriptor.display_name
            ))),
        }
    }
}

/// What a provider module hands the registry.
pub enum Plugin {
    Ready {
        adapter: Arc<dyn ProviderAdapter>,
        sandbox: bool,
    },
    Unconfigured {
        descriptor: &'static ProviderDescriptor,
        why: String,
    },
}

#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<Provider, Entry>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; a second one with the same id, or a metric another
    /// provider already declares, is refused.
    pub fn register(&mut self, plugin: Plugin) -> Result<()> {
        let entry = match plugin {
            Plugin::Ready { adapter, sandbox } => Entry {
                descriptor: adapter.descriptor().clone(),
                state: EntryState::Ready(adapter),
                sandbox,
            },
            Plugin::Unconfigured { descriptor, why } => Entry {
                descriptor: descriptor.clone(),
                state: EntryState::Unconfigured(why),
                sandbox: false,
            },
        };
        let id = entry.descriptor.id;
        if self.entries.contains_key(&id) {
            return Err(Error::internal(format!("provider {id} registered twice")));
        }
        for spec in entry.descriptor.metrics {
            if self.metric(spec.metric.as_str()).is_ok() {
                return Err(Error::internal(format!(
                    "metric {} declared by two providers",
                    spec.metric
                )));
            }
            // A ratio summed over days would be wrong; its parts must be the
            // provider's own metrics.
            let summed_rate = matches!(
                spec.unit,
                crate::metric::Unit::Ratio | crate::metric::Unit::Seconds
            ) && spec.aggregation == crate::metric::Aggregation::Sum;
            let foreign = spec
                .inputs()
                .into_iter()
                .find(|m| !entry.descriptor.metrics.iter().any(|own| own.metric == *m));
            if summed_rate || foreign.is_some() {
                return Err(Error::internal(format!(
                    "metric {} aggregates from {}",
                    spec.metric,
                    foreign.map_or("a sum of rates".to_owned(), |m| m.to_string())
                )));
            }
        }
        if !entry
            .descriptor
            .metrics
            .iter()
            .any(|m| m.metric.as_str() == entry.descriptor.headline_metric)
        {
            return Err(Error::internal(format!(
                "provider {id}: headline metric {} is not one of its metrics",
                entry.descriptor.headline_metric
            )));
        }
        if let Some(hook) = entry.descriptor.webhook {
            let taken = self
                .entries
                .values()
                .any(|e| e.descriptor.webhook.is_some_and(|w| w.path == hook.path));
            if taken
                || hook.path.is_empty()
                || !hook
                    .path
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(Error::internal(format!(
                    "provider {id}: webhook path {:?} is taken or not [a-z0-9_]",
                    hook.path
                )));
            }
        }
        self.entries.insert(id, entry);
        Ok(())
    }

    /// The provider whose webhooks arrive at `/v1/webhooks/{path}`; an
    /// unknown path is "not found".
    pub fn by_webhook_path(&self, path: &str) -> Result<(Provider, WebhookSpec)> {
        self.entries
            .values()
            .find_map(|e| {
                e.descriptor
                    .webhook
                    .filter(|w| w.path == path)
                    .map(|w| (e.descriptor.id, w))
            })
            .ok_or_else(|| Error::not_found(format!("no provider sends webhooks to {path:.40}")))
    }

    /// The first available provider whose adapter sends email, with its way
    /// of sending (a workspace's own sender, and the platform's).
    pub fn mailer(&self) -> Option<(Provider, Arc<dyn crate::ports::Mailer>)> {
        self.entries.values().find_map(|e| {
            let mailer = e.adapter().ok()?.mailer()?;
            Some((e.descriptor.id, mailer))
        })
    }

    /// Adds a ready adapter (tests and tools).
    pub fn with(mut self, adapter: Arc<dyn ProviderAdapter>) -> Result<Self> {
        self.register(Plugin::Ready {
            adapter,
            sandbox: false,
        })?;
        Ok(self)
    }

    /// Every known provider, ordered by id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        self.entries.keys().copied()
    }

    pub fn entry(&self, provider: Provider) -> Result<&Entry> {
        self.entries
            .get(&provider)
            .ok_or_else(|| Error::not_found(format!("unknown provider: {provider}")))
    }

    pub fn descriptor(&self, provider: Provider) -> Result<&ProviderDescriptor> {
        self.entry(provider).map(|e| &e.descriptor)
    }

    /// The provider's adapter: not found when unknown, a configuration error
    /// naming what is missing when this deployment has not configured it.
    pub fn adapter(&self, provider: Provider) -> Result<&Arc<dyn ProviderAdapter>> {
        self.entry(provider)?.adapter()
    }

    /// A provider id from user input: a 422 on `field` unless it is known.
    pub fn parse(&self, field: &str, raw: &str) -> Result<Provider> {
        raw.parse::<Provider>()
            .ok()
            .filter(|p| self.entries.contains_key(p))
            .ok_or_else(|| {
                let known: Vec<&str> = self.entries.keys().map(|p| p.as_str()).collect();
                Error::validation(
                    field,
                    format!("unknown provider: expected one of {}", known.join(", ")),
                )
            })
    }

    /// A metric name from user input, with its unit: a 422 unless some
    /// provider declares it.
    pub fn metric(&self, raw: &str) -> Result<MetricSpec> {
        let wanted: Metric = raw.parse()?;
        self.entries
            .values()
            .flat_map(|e| e.descriptor.metrics.iter())
            .find(|m| m.metric == wanted)
            .copied()
            .ok_or_else(|| {
                Error::validation(
                    "metric",
                    format!("unknown metric: {:.64}", raw.escape_debug()),
                )
            })
    }
}
