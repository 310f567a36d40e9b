//! Crash points for the reliability suite (cargo feature `failpoints`; without it every
//! [`hit`] compiles to nothing). `CAS_CERTD_FAILPOINT=NAME` aborts the process, as a power cut
//! would, the first time the point `NAME` is reached; `NAME:N` aborts at its N-th hit (with
//! one certificate, `after_key_ready:2` is the start of the first renewal). Each point sits
//! right after a step the lifecycle made durable (or right after an external effect that is
//! not yet recorded, or inside the deploy's symlink swap), so a restart must carry on from
//! exactly that state.

/// Every crash point, in lifecycle order. The failpoint test walks this list, so a point added
/// here without a test case fails that test.
pub const NAMES: &[&str] = &[
    // A key (and CSR) is stored: KeyReady.
    "after_key_ready",
    // The intent to create is stored; the create is not yet sent.
    "after_intent",
    // CAS accepted the create; its OrderId is not yet stored.
    "after_create",
    // The OrderId is stored: Ordered.
    "after_ordered",
    // After a crash in Intent: the listed order was adopted and stored.
    "after_adopted",
    // After a crash in Intent: no order was found, KeyReady stored again.
    "after_no_order_found",
    // The challenge is published (file written, TXT record added); Presented not yet stored.
    "after_publish",
    // The challenge is published and Presented stored.
    "after_presented",
    // A poll result (still domain_verify, or process) is stored with the next poll time.
    "after_poll",
    // The create's outcome is unknown (no answer); Intent stored with the retry time.
    "after_create_unknown",
    // An attempt failed (e.g. the CA refused: order deleted, quota back); Failed stored.
    "after_failed",
    // Inside the install: a temporary symlink exists, not yet renamed over its link (hit 1 is
    // `live` of the first set).
    "mid_swap",
    // The issued set is installed on disk (live swapped); Deployed is not yet stored.
    "after_install",
    // Deployed is stored (hook pending).
    "after_deployed",
    // The reload hook ran; hook_pending cleared and stored.
    "after_hook",
];

/// Aborts here when `CAS_CERTD_FAILPOINT` names this point (and hit count).
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u32)>> = OnceLock::new();
    static HITS: AtomicU32 = AtomicU32::new(0);
    debug_assert!(NAMES.contains(&name), "failpoint {name} missing from NAMES");
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("CAS_CERTD_FAILPOINT").ok()?;
        Some(match v.split_once(':') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((want, nth)) = target {
        // Only one point is armed per process, so one counter is enough.
        if want == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("failpoint {name}:{nth}: aborting");
            std::process::abort();
        }
    }
}

/// Without the feature: nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
