//! The CAS pass of the rebuild: before a certificate that lost its record (or never had one:
//! a first start) is ordered, the account's orders are listed once, every page
//! ([`list_all`]: a few calls for the whole configuration, not one per certificate), and
//! matched locally by domains (the same set, in any order) and product ([`judge`]):
//!
//! - an order under review, or issued and not yet due for renewal, whose key CAS made
//!   (`key = "cas"`) is adopted: the record goes to `Phase::Ordered` and the lifecycle goes on
//!   from there (describe, proof, check, install);
//! - an order under review (or paid and not applied) whose key was ours is useless: the key
//!   was lost with the store. It is cancelled and deleted (quota back) by the lifecycle's
//!   `start`, before its one new order (`orders_to_clean`);
//! - a failed order (CHECKED_FAIL) is deleted too (quota back);
//! - an issued order whose key was ours, or one already inside its renewal window, is not
//!   adopted and is reported: nothing to adopt or refund;
//! - only then does the normal path order.
//!
//! Matching and the record it makes are pure ([`judge`], [`apply`]); the daemon runs the pass.
use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use crate::config::{Certificate, KeyKind};
use crate::lifecycle::ports::Ca;
use crate::lifecycle::schedule;
use crate::store::{CertRecord, PendingKey, Phase};
use cas_api::model::{ListOrders, OrderId, OrderSummary};
use cas_api::ApiError;

/// Orders asked for per page.
pub const PAGE_SIZE: u32 = 100;
/// A bound no real account reaches (a server that keeps answering full pages).
const MAX_PAGES: u32 = 10_000;

/// Every order of the account, page by page; `calls` counts the requests made.
pub async fn list_all<C: Ca>(ca: &C, calls: &mut u32) -> Result<Vec<OrderSummary>, ApiError> {
    let mut all: Vec<OrderSummary> = Vec::new();
    let mut seen = HashSet::new();
    for page in 1..=MAX_PAGES {
        let q = ListOrders {
            current_page: page,
            show_size: PAGE_SIZE,
            ..Default::default()
        };
        *calls += 1;
        let got = ca.list(&q).await?;
        let n = got.len();
        let before = all.len();
        all.extend(got.into_iter().filter(|o| seen.insert(o.order_id)));
        // The last page is short; a page with nothing new means the server ignores paging.
        if n < PAGE_SIZE as usize || all.len() == before {
            break;
        }
    }
    Ok(all)
}

/// The listed orders by each domain a row names, so matching 10 000 certificates is not a
/// scan of every order for each of them.
#[derive(Debug, Default)]
pub struct Listed {
    orders: Vec<OrderSummary>,
    by_domain: std::collections::HashMap<String, Vec<usize>>,
}

impl Listed {
    pub fn new(orders: Vec<OrderSummary>) -> Listed {
        let mut by_domain: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (i, o) in orders.iter().enumerate() {
            for d in o.domain.as_deref().unwrap_or_default().split(',') {
                let d = d.trim().to_ascii_lowercase();
                if !d.is_empty() {
                    by_domain.entry(d).or_default().push(i);
                }
            }
        }
        Listed { orders, by_domain }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// The orders that name one of `cert`'s domains (what [`judge`] needs to see).
    pub fn for_cert(&self, cert: &Certificate) -> Vec<OrderSummary> {
        let mut idx: Vec<usize> = cert
            .domains
            .iter()
            .filter_map(|d| self.by_domain.get(&d.to_ascii_lowercase()))
            .flatten()
            .copied()
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .filter_map(|i| self.orders.get(i).cloned())
            .collect()
    }
}

/// Where a listed order stands, for the rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Under review (domain_verify / process): cancel and delete gives the quota back.
    Review,
    /// Paid, not applied (or cancelled back to pending): delete gives the quota back.
    Paid,
    /// Issued (ISSUED, WILLEXPIRED).
    Issued,
    /// Verification failed: useless to anyone, and delete gives the quota back.
    Failed,
    /// Failed, expired, revoked, or a status we do not know: left alone.
    Over,
}

fn stage(o: &OrderSummary) -> Stage {
    match o.status.as_deref().map(str::to_ascii_uppercase).as_deref() {
        Some("CHECKING") => Stage::Review,
        Some("PAYED") => Stage::Paid,
        Some("ISSUED" | "WILLEXPIRED") => Stage::Issued,
        Some("CHECKED_FAIL") => Stage::Failed,
        _ => Stage::Over,
    }
}

/// Whether the listed order is for the certificate's domains (the same set, in any order). A
/// package order's row names its first domain and how many there are; a row that names them
/// all is compared as a set. A row that says neither matches only a one-domain certificate.
fn same_domains(o: &OrderSummary, cert: &Certificate) -> bool {
    let want: BTreeSet<String> = cert
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let listed: Vec<String> = o
        .domain
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .collect();
    match listed.as_slice() {
        [] => false,
        [one] => {
            want.contains(one)
                && o.domain_count.unwrap_or(1) == i64::try_from(want.len()).unwrap_or(-1)
        }
        many => many.iter().cloned().collect::<BTreeSet<_>>() == want,
    }
}

fn same_product(o: &OrderSummary, cert: &Certificate) -> bool {
    // A row without a product cannot be told apart: never adopted, never cancelled.
    o.product_code
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case(&cert.product_code))
}

fn ms(t: Option<i64>) -> Option<DateTime<Utc>> {
    t.and_then(DateTime::from_timestamp_millis)
}

/// What the pass found for one certificate.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Finding {
    /// The order the lifecycle goes on with (CAS made its key).
    pub adopt: Option<Adopted>,
    /// Orders to cancel and delete (quota back) before anything is ordered, with why.
    pub clean: Vec<(OrderId, String)>,
    /// Matching orders that are not used and cannot be refunded, with why.
    pub refused: Vec<(OrderId, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopted {
    pub order_id: OrderId,
    /// Issued already (else under review).
    pub issued: bool,
}

/// Matches the account's `orders` to `cert` at `now`. `deployed`: the order and notAfter of a
/// set already adopted from the files (its own order, and older issued ones, are no news).
pub fn judge(
    cert: &Certificate,
    deployed: Option<(OrderId, DateTime<Utc>)>,
    orders: &[OrderSummary],
    now: DateTime<Utc>,
) -> Finding {
    let cas_key = cert.key == KeyKind::Cas;
    let mut f = Finding::default();
    // (notAfter, id) of usable issued orders; (bought, id) of orders under review.
    let mut issued: Vec<(DateTime<Utc>, OrderId)> = Vec::new();
    let mut review: Vec<(i64, OrderId)> = Vec::new();
    let matching = orders
        .iter()
        .filter(|o| Some(o.order_id) != deployed.map(|d| d.0))
        .filter(|o| same_product(o, cert) && same_domains(o, cert));
    for o in matching {
        let id = o.order_id;
        match stage(o) {
            Stage::Over => {}
            Stage::Failed => f
                .clean
                .push((id, "its verification failed: deleted (quota back)".into())),
            Stage::Paid => f
                .clean
                .push((id, "paid and not under review: deleted (quota back)".into())),
            Stage::Review if cas_key => review.push((o.buy_date.unwrap_or(0), id)),
            Stage::Review => f.clean.push((
                id,
                "under review for a key that was lost with the store (a CSR order): \
                 cancelled and deleted (quota back)"
                    .into(),
            )),
            Stage::Issued => {
                let (Some(start), Some(end)) = (ms(o.cert_start_time), ms(o.cert_end_time)) else {
                    f.refused
                        .push((id, "issued, but the list gives no validity".into()));
                    continue;
                };
                if deployed.is_some_and(|(_, na)| end <= na) {
                    continue; // older than what is deployed
                }
                // Without jitter: the latest the renewal would be due.
                let due = schedule::renew_at(start, end, cert.renew_before, 0.0).at;
                if due <= now {
                    f.refused.push((
                        id,
                        format!(
                            "issued, but {} at {end}: inside the renewal window, not worth adopting",
                            if end <= now { "expired" } else { "expires" }
                        ),
                    ));
                } else if !cas_key {
                    f.refused.push((
                        id,
                        "issued for a key that was lost with the store (a CSR order): \
                         nothing to adopt or refund"
                            .into(),
                    ));
                } else {
                    issued.push((end, id));
                }
            }
        }
    }
    // The issued certificate that lasts longest, else the newest order under review; other
    // orders under review would only hold quota.
    issued.sort();
    review.sort();
    if let Some((_, id)) = issued.pop() {
        f.adopt = Some(Adopted {
            order_id: id,
            issued: true,
        });
        for (_, other) in issued {
            f.refused.push((
                other,
                "issued, but another order of the same names lasts longer".into(),
            ));
        }
    } else if let Some((_, id)) = review.pop() {
        f.adopt = Some(Adopted {
            order_id: id,
            issued: false,
        });
    }
    for (_, id) in review {
        if f.adopt.is_some_and(|a| a.order_id != id) {
            f.clean.push((
                id,
                "another order of the same names is adopted: cancelled and deleted (quota back)"
                    .into(),
            ));
        }
    }
    f
}

/// The record after the pass: `rec` (the kept or file-adopted record, if any) with the
/// orders to clean queued and the adopted order in flight. `None` when there is nothing to
/// record (the normal path orders).
pub fn apply(
    rec: Option<CertRecord>,
    cert: &Certificate,
    f: &Finding,
    now: DateTime<Utc>,
) -> Option<CertRecord> {
    if f.adopt.is_none() && f.clean.is_empty() {
        return rec;
    }
    let mut r = rec.unwrap_or_else(|| CertRecord::new(&cert.name, cert.domains.clone()));
    for (id, _) in &f.clean {
        r.retire(*id);
        if !r.orders_to_clean.contains(id) {
            r.orders_to_clean.push(*id);
        }
    }
    if let Some(a) = f.adopt {
        r.domains = cert.domains.clone();
        r.phase = Phase::Ordered {
            order_id: a.order_id,
            created_at: now,
            // CAS made the key: it comes with the certificate.
            pending: PendingKey::default(),
        };
        r.next_due = now;
    }
    Some(r)
}
