//! The KPI metric names of the contract, with their provider and unit.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::provider::Provider;

/// What a KPI value measures, which decides how it is summed over a range.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Currency,
    /// A ratio in `[0, 1]` (rates) or a multiple (ROAS); never summed.
    Ratio,
    Seconds,
}

macro_rules! metrics {
    ($($variant:ident => $name:literal, $provider:ident, $unit:ident;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric { $($variant,)* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[$(Metric::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Metric::$variant => $name,)* }
            }
            pub fn provider(self) -> Provider {
                match self { $(Metric::$variant => Provider::$provider,)* }
            }
            pub fn unit(self) -> Unit {
                match self { $(Metric::$variant => Unit::$unit,)* }
            }
        }
    };
}

metrics! {
    Ga4Sessions => "ga4.sessions", Ga4, Count;
    Ga4TotalUsers => "ga4.total_users", Ga4, Count;
    Ga4NewUsers => "ga4.new_users", Ga4, Count;
    Ga4ActiveUsers => "ga4.active_users", Ga4, Count;
    Ga4ScreenPageViews => "ga4.screen_page_views", Ga4, Count;
    Ga4EngagementRate => "ga4.engagement_rate", Ga4, Ratio;
    Ga4BounceRate => "ga4.bounce_rate", Ga4, Ratio;
    Ga4AvgSessionDurationSeconds => "ga4.avg_session_duration_seconds", Ga4, Seconds;
    Ga4KeyEvents => "ga4.key_events", Ga4, Count;
    Ga4TotalRevenue => "ga4.total_revenue", Ga4, Currency;
    MetaSpend => "meta.spend", MetaAds, Currency;
    MetaImpressions => "meta.impressions", MetaAds, Count;
    MetaClicks => "meta.clicks", MetaAds, Count;
    MetaReach => "meta.reach", MetaAds, Count;
    MetaCtr => "meta.ctr", MetaAds, Ratio;
    MetaCpc => "meta.cpc", MetaAds, Currency;
    MetaCpm => "meta.cpm", MetaAds, Currency;
    MetaPurchases => "meta.purchases", MetaAds, Count;
    MetaPurchaseValue => "meta.purchase_value", MetaAds, Currency;
    MetaRoas => "meta.roas", MetaAds, Ratio;
    ResendSent => "resend.sent", Resend, Count;
    ResendDelivered => "resend.delivered", Resend, Count;
    ResendBounced => "resend.bounced", Resend, Count;
    ResendComplained => "resend.complained", Resend, Count;
    ResendDeliveryRate => "resend.delivery_rate", Resend, Ratio;
}

impl Metric {
    pub fn for_provider(provider: Provider) -> impl Iterator<Item = Metric> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |m| m.provider() == provider)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL
            .iter()
            .copied()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| Error::validation("metric", format!("unknown metric: {s:.64}")))
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Metric {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_name_round_trips_and_has_its_provider_prefix() {
        assert_eq!(Metric::ALL.len(), 25);
        for m in Metric::ALL {
            assert_eq!(m.as_str().parse::<Metric>().unwrap(), *m);
            let prefix = match m.provider() {
                Provider::Ga4 => "ga4.",
                Provider::MetaAds => "meta.",
                Provider::Resend => "resend.",
            };
            assert!(m.as_str().starts_with(prefix));
        }
        assert_eq!(Metric::for_provider(Provider::MetaAds).count(), 10);
        assert!("ga4.conversions".parse::<Metric>().is_err());
    }
}
