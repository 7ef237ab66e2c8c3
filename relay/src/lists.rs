//! List maintenance run from the command line: importing subscribers and
//! pruning inactive ones. The API's side of lists is in the routes.

use anyhow::Context as _;

use list_hygiene::subscriber::Change;

use crate::domain::Stream;
use crate::store::{Store, SubscriberRecord, now_ms};
use crate::suppression::{Target, TargetKind};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The addresses and domains a mailing list must leave out: global and
/// marketing suppressions in force, with the reason of each.
#[derive(Debug, Default)]
pub struct MarketingSuppressions(std::collections::HashMap<Target, String>);

impl MarketingSuppressions {
    /// Why `a` must be left out, if it must.
    pub fn reason(&self, a: &list_hygiene::address::Address) -> Option<String> {
        self.0
            .get(&Target::Address(a.key()))
            .or_else(|| self.0.get(&Target::Domain(a.domain().to_string())))
            .cloned()
    }
}

/// Reads [`MarketingSuppressions`] from the store.
///
/// # Errors
/// Store errors.
pub async fn marketing_suppressions(store: &Store) -> anyhow::Result<MarketingSuppressions> {
    let mut suppressed = std::collections::HashMap::new();
    let now = now_ms();
    let mut offset = 0;
    loop {
        let page = store.list_suppressions(None, None, 1000, offset).await?;
        for s in &page {
            if s.scope.covers(Stream::Marketing) && s.expires_at.is_none_or(|t| t > now) {
                let target = match s.kind {
                    TargetKind::Address => Target::Address(s.value.clone()),
                    TargetKind::Domain => Target::Domain(s.value.clone()),
                };
                suppressed.insert(target, format!("{} ({})", s.reason, s.scope));
            }
        }
        if page.len() < 1000 {
            return Ok(MarketingSuppressions(suppressed));
        }
        offset += 1000;
    }
}

/// What `list prune` found or did.
pub struct Pruning {
    /// Inactive subscribers, as they were before any change.
    pub subscribers: Vec<SubscriberRecord>,
    /// Whether they were changed (`--apply`).
    pub applied: bool,
}

/// Inactive subscribers of `list` (see [`Store::inactive_subscribers`]).
///
/// With `reengage`, those not yet sent a last-chance campaign, marked as
/// sent one when `apply`. Otherwise those to prune — leaving out anyone
/// sent a last-chance campaign within `grace_days`, who still has time to
/// respond — set to `pruned` when `apply`.
///
/// # Errors
/// No such list, or store errors.
pub async fn prune(
    store: &Store,
    list: &str,
    inactive_days: u32,
    grace_days: u32,
    reengage: bool,
    apply: bool,
) -> anyhow::Result<Pruning> {
    store
        .get_list(list)
        .await?
        .with_context(|| format!("no list {list:?}"))?;
    let now = now_ms();
    let cutoff = now - i64::from(inactive_days) * DAY_MS;
    let grace = now - i64::from(grace_days) * DAY_MS;
    let inactive = store.inactive_subscribers(list, cutoff).await?;
    let subscribers: Vec<SubscriberRecord> = if reengage {
        inactive
            .into_iter()
            .filter(|s| s.reengaged_at.is_none())
            .collect()
    } else {
        inactive
            .into_iter()
            .filter(|s| s.reengaged_at.is_none_or(|t| t < grace))
            .collect()
    };
    if apply {
        if reengage {
            let addresses: Vec<String> = subscribers.iter().map(|s| s.address.clone()).collect();
            store.mark_reengaged(list, &addresses, now).await?;
        } else {
            let reason = format!("no open or click in {inactive_days} days");
            for s in &subscribers {
                store
                    .change_status(
                        Some(list),
                        &s.address,
                        Change::Prune,
                        "prune",
                        Some(&reason),
                    )
                    .await?;
            }
        }
    }
    Ok(Pruning {
        subscribers,
        applied: apply,
    })
}
