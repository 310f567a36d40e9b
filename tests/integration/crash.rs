//! Crash at any instant (issue 6, part 1). Two tests against the real `cas-certd run` and
//! `cas-certd simulate` (books in a data dir, so they outlive every daemon):
//!
//! - `crash_after_every_persisted_step` (feature `failpoints`): for every crash point of
//!   `cas_certd::failpoint::NAMES`, in the first issuance and in the renewal, the daemon
//!   aborts right there, is restarted without the failpoint, and must end with the renewed
//!   certificate deployed, one paid order per issuance, and no temporary file left.
//! - `sigkill_at_random_instants_...`: the daemon is SIGKILLed at random instants while
//!   certificates go through issuance and renewal; a reader thread checks every few
//!   milliseconds that the key and certificate behind the stable paths match.
//!   `CAS_CERTD_CRASH_KILLS=200` makes it the long run (20 certificates).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::world::*;

/// The public key bits in a PEM private key (None when it does not parse).
fn key_public(pem: &[u8]) -> Option<Vec<u8>> {
    let kp = rcgen::KeyPair::from_pem(std::str::from_utf8(pem).ok()?).ok()?;
    Some(kp.public_key_raw().to_vec())
}

/// The public key bits and notAfter (unix seconds) of the first certificate in a PEM text.
fn cert_public(pem: &[u8]) -> Option<(Vec<u8>, i64)> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let c = p.parse_x509().ok()?;
    Some((
        c.public_key().subject_public_key.data.to_vec(),
        c.validity().not_after.timestamp(),
    ))
}

/// Does the deployed pair behind `<live>/<name>/` match, and is the certificate valid for
/// more than a day (the renewed one, not the short first one)?
fn deployed_long_lived_and_matching(w: &World, name: &str) -> Result<(), String> {
    let key = std::fs::read(w.live(name, "privkey.pem")).map_err(|e| format!("key: {e}"))?;
    let cert = std::fs::read(w.live(name, "cert.pem")).map_err(|e| format!("cert: {e}"))?;
    let kp = key_public(&key).ok_or("key does not parse")?;
    let (cp, not_after) = cert_public(&cert).ok_or("certificate does not parse")?;
    if kp != cp {
        return Err("key does not match certificate".into());
    }
    let left = not_after - chrono::Utc::now().timestamp();
    if left < 86_400 {
        return Err(format!(
            "certificate expires in {left}s: not the renewed one"
        ));
    }
    Ok(())
}

/// Leftover temporaries under `root` (symlinks not followed): the deploy code's `.tmp-*`,
/// the snapshot's `.status.json.tmp`, anything else named like a temporary.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_ascii_lowercase();
            if n.starts_with(".tmp") || n.ends_with(".tmp") || n.contains(".tmp-") {
                out.push(e.path());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
    }
    out
}

#[cfg(feature = "failpoints")]
fn wait_exit(p: &mut Proc, timeout: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            return Some(s);
        }
        if t0.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Failpoints: one deterministic crash per persisted step.

#[cfg(feature = "failpoints")]
mod failpoints {
    use super::*;
    use crate::support::bin;

    /// Waits until the daemon has written its first status snapshot (so it handles SIGTERM).
    fn wait_running(w: &World, d: &Proc) {
        let pid = format!("\"daemon_pid\": {}", d.0.id());
        wait_for(
            "the daemon's first snapshot",
            Duration::from_secs(20),
            || std::fs::read_to_string(w.p("state/status.json")).is_ok_and(|s| s.contains(&pid)),
        );
    }

    /// What the simulator does during the run that crashes.
    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Sim {
        Normal,
        /// The create is made (and charged) but its answer is lost: its outcome is unknown to
        /// the daemon. (Every call failing would stop the start-up's CAS pass, and nothing
        /// would be ordered at all.)
        LoseCreate,
        /// The CA refuses the domain (verify_fail), so the attempt fails and the order is deleted.
        Reject,
    }

    #[derive(Clone, Copy)]
    struct Case {
        /// Crash points hit one per run, in order (`name` or `name:N`).
        chain: &'static [&'static str],
        /// Crash in the renewal: the first certificate is deployed by a clean run first.
        renewal: bool,
        /// Alidns TXT validation instead of a webroot file.
        dns: bool,
        sim: Sim,
        /// Orders the simulator must hold for the domain right after the first crash.
        orders_after_crash: Option<usize>,
        /// An event some daemon log must contain.
        expect_event: Option<&'static str>,
        /// Lose the store here: after the last crash, the whole state dir is deleted before
        /// the restart (issue 13). The rebuild (deployed sets, then CAS's orders) must still
        /// end deployed with no second paid order.
        lose: bool,
        /// The first certificate is long-lived (no renewal follows): one paid order in all, so
        /// an order bought again instead of adopting the first is seen (a short first one would
        /// hide it behind its renewal).
        one_cert: bool,
    }

    const fn case(chain: &'static [&'static str], renewal: bool) -> Case {
        Case {
            chain,
            renewal,
            dns: false,
            sim: Sim::Normal,
            orders_after_crash: None,
            expect_event: None,
            lose: false,
            one_cert: false,
        }
    }

    fn cases() -> Vec<Case> {
        let mut v = vec![
            case(&["after_key_ready"], false),
            Case {
                // Intent flushed, create not sent: nothing to adopt, exactly one create follows.
                orders_after_crash: Some(0),
                ..case(&["after_intent"], false)
            },
            Case {
                // CAS made the order, its id was not stored: the restart must adopt it.
                orders_after_crash: Some(1),
                expect_event: Some("cert.order_adopted"),
                ..case(&["after_create"], false)
            },
            case(&["after_ordered"], false),
            case(&["after_create", "after_adopted"], false),
            Case {
                orders_after_crash: Some(0),
                ..case(&["after_intent", "after_no_order_found"], false)
            },
            case(&["after_publish"], false),
            Case {
                // The TXT record was added but not recorded: adding it again is refused as a
                // duplicate, which must not fail the attempt (and cost a new order).
                dns: true,
                ..case(&["after_publish"], false)
            },
            case(&["after_presented"], false),
            Case {
                dns: true,
                ..case(&["after_presented"], false)
            },
            case(&["after_poll"], false),
            Case {
                sim: Sim::LoseCreate,
                orders_after_crash: Some(1),
                ..case(&["after_create_unknown"], false)
            },
            Case {
                sim: Sim::Reject,
                ..case(&["after_failed"], false)
            },
            // Killed between a temporary link and its rename: the link must not stay behind.
            case(&["mid_swap"], false),
            case(&["after_install"], false),
            case(&["after_deployed"], false),
            case(&["after_hook"], false),
        ];
        // The same steps again in the renewal (a create by the renewal: free products order anew).
        for chain in [
            &["after_key_ready"][..],
            &["after_intent"],
            &["after_create"],
            &["after_ordered"],
            &["after_create", "after_adopted"],
            &["after_intent", "after_no_order_found"],
            &["after_publish"],
            &["after_presented"],
            &["after_poll"],
            &["mid_swap"],
            &["after_install"],
            &["after_deployed"],
            &["after_hook"],
        ] {
            v.push(Case {
                dns: chain == ["after_publish"],
                // The adoption's own event is logged after its failpoint, so only a lone
                // after_create crash is sure to log it.
                expect_event: (chain == ["after_create"]).then_some("cert.order_adopted"),
                ..case(chain, true)
            });
        }
        // Every case again, losing the store after its crash. Killed mid_swap in the
        // issuance, the issued set sits in a version `live` does not name: with one long-lived
        // certificate, buying it again shows as a second order.
        let lost: Vec<Case> = v
            .iter()
            .map(|c| Case {
                lose: true,
                // A lost record cannot say whether the adoption event is logged.
                expect_event: None,
                one_cert: !c.renewal && c.chain == ["mid_swap"],
                ..*c
            })
            .collect();
        v.extend(lost);
        v
    }

    /// The first certificate lives this long. The simulator backdates notBefore by a minute and
    /// renew_before is 1/3, so the renewal is due 8–13 s after the first issuance (jitter).
    const FP_FIRST_LIFETIME: &str = "50s";

    fn run_case(c: &Case) -> Result<String, String> {
        let base: &[&str] = if c.one_cert {
            &[]
        } else {
            &["--first-cert-lifetime", FP_FIRST_LIFETIME]
        };
        let domain = "fp.example.test";
        let first_args: Vec<&str> = match c.sim {
            Sim::Normal => base.to_vec(),
            Sim::LoseCreate => [
                base,
                &[
                    "--lose-rate",
                    "1",
                    "--lose-only",
                    "CreateCertificateForPackageRequest",
                ],
            ]
            .concat(),
            Sim::Reject => [base, &["--reject", domain]].concat(),
        };
        let mut w = World::new(if c.renewal { base } else { &first_args[..] });
        let cfg = w.config(&if c.dns {
            format!(
                "[[certificate]]\nname = \"fp\"\ndomains = [\"{domain}\"]\nvalidation = {{ method = \"alidns\" }}\n"
            )
        } else {
            w.file_cert("fp", &format!("\"{domain}\""))
        });
        if c.renewal {
            let mut d = w.daemon(&cfg, "first.log");
            wait_running(&w, &d);
            wait_for("first deployment and hook", Duration::from_secs(40), || {
                std::fs::read_to_string(w.p("hook.log")).is_ok_and(|s| s.lines().count() == 1)
            });
            sigterm_and_wait(&mut d);
            if c.sim != Sim::Normal {
                w.restart_sim(&first_args);
            }
        }
        for (i, fp) in c.chain.iter().enumerate() {
            let log = w.p(&format!("crash{i}.log"));
            let mut d = w.daemon_env(
                &cfg,
                &format!("crash{i}.log"),
                &[("CAS_CERTD_FAILPOINT", fp)],
            );
            let Some(status) = wait_exit(&mut d, Duration::from_secs(45)) else {
                return Err(format!(
                    "failpoint {fp} never reached in 45 s:\n{}",
                    log_tail(&log)
                ));
            };
            use std::os::unix::process::ExitStatusExt;
            let (name, nth) = fp.split_once(':').unwrap_or((fp, "1"));
            let said = format!("failpoint {name}:{nth}: aborting");
            if status.signal() != Some(libc::SIGABRT) || !log_tail(&log).contains(&said) {
                return Err(format!(
                    "run {i} ended with {status:?}, not at {fp}:\n{}",
                    log_tail(&log)
                ));
            }
            if i == 0 {
                if let Some(n) = c.orders_after_crash {
                    let issued_before = usize::from(c.renewal);
                    let got = w.orders(domain).len();
                    if got != n + issued_before {
                        return Err(format!(
                            "{got} orders right after the crash at {fp}, expected {}",
                            n + issued_before
                        ));
                    }
                }
                if c.sim != Sim::Normal {
                    w.restart_sim(base);
                }
                if c.sim == Sim::Reject {
                    // The retry would wait out the failure backoff (a minute): ask for it now,
                    // the way an operator would (no daemon runs, so `renew` marks the store).
                    let out = Command::new(bin())
                        .arg("--config")
                        .arg(&cfg)
                        .args(["renew", "fp"])
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        return Err(format!("renew: {out:?}"));
                    }
                }
            }
        }
        if c.lose {
            std::fs::remove_dir_all(w.p("state")).map_err(|e| format!("lose the store: {e}"))?;
        }
        let mut d = w.daemon(&cfg, "final.log");
        wait_running(&w, &d);
        let t0 = Instant::now();
        // With the store lost, whether the last deployment's hook ran is unknown: an adopted
        // live set is not reloaded again. A set adopted from a swap cut short was never live:
        // its hook must run.
        let hooks = if c.one_cert || (c.lose && c.chain != ["mid_swap"]) {
            1
        } else {
            2
        };
        let settled = || {
            deployed_long_lived_and_matching(&w, "fp").is_ok()
                && std::fs::read_to_string(w.p("hook.log"))
                    .is_ok_and(|s| s.lines().count() >= hooks)
        };
        while !settled() {
            if t0.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "not settled 60 s after the restart ({:?}):\n{}",
                    deployed_long_lived_and_matching(&w, "fp"),
                    log_tail(&w.p("final.log"))
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let status = sigterm_and_wait(&mut d);
        if !status.success() {
            return Err(format!("final daemon exited with {status:?}"));
        }
        // One paid order for the first certificate, one for the renewal; a refused attempt's
        // order is deleted (quota back).
        let got = w.orders(domain);
        let issued = got.iter().filter(|(_, s)| s == "certificate").count();
        let deleted = got.iter().filter(|(_, s)| s == "deleted").count();
        if c.lose {
            // The rebuild may have cancelled and deleted orders whose key was lost (quota
            // back); what is not deleted is paid for, and must be exactly the issued ones.
            let want = if c.one_cert { 1 } else { 2 };
            if issued != want || got.len() != want + deleted {
                return Err(format!(
                    "orders {got:?}: want {want} issued, the rest deleted (quota back)"
                ));
            }
        } else {
            let want_deleted = usize::from(c.sim == Sim::Reject);
            if issued != 2 || deleted != want_deleted || got.len() != 2 + want_deleted {
                return Err(format!(
                    "orders {got:?}: want 2 issued and {want_deleted} deleted, nothing else"
                ));
            }
        }
        assert_key_matches_and_private(&w, "fp");
        let tmp = [temp_files(&w.p("live")), temp_files(&w.p("state"))].concat();
        if !tmp.is_empty() {
            return Err(format!("temporary files left: {tmp:?}"));
        }
        if let Some(ev) = c.expect_event {
            let all: String = std::fs::read_dir(w.dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            if !all.contains(ev) {
                return Err(format!("no {ev} event in any log"));
            }
        }
        Ok(format!("{} orders, {issued} issued", got.len()))
    }

    /// Every crash point, in the first issuance and in the renewal: after the crash and a restart
    /// without the failpoint, the renewed certificate is deployed with its key, each issuance was
    /// paid once, and no temporary file is left. The cases run concurrently, one World each.
    #[test]
    fn crash_after_every_persisted_step_then_restart_completes_paying_once() {
        let mut cases = cases();
        for name in cas_certd::failpoint::NAMES {
            assert!(
                cases
                    .iter()
                    .any(|c| c.chain.iter().any(|f| f.split(':').next() == Some(name))),
                "failpoint {name} has no test case"
            );
        }
        let label = |c: &Case| {
            format!(
                "{}{}{}{}",
                if c.lose { "lose the store after " } else { "" },
                if c.renewal { "renewal " } else { "issuance " },
                if c.dns { "(alidns) " } else { "" },
                c.chain.join(" then ")
            )
        };
        // For debugging one case: CAS_CERTD_FAILPOINT_CASE=<part of its label>.
        if let Ok(only) = std::env::var("CAS_CERTD_FAILPOINT_CASE") {
            cases.retain(|c| label(c).contains(&only));
            eprintln!("only the {} cases matching {only:?}", cases.len());
        }
        let t0 = Instant::now();
        let handles: Vec<_> = cases
            .into_iter()
            .map(|c| (label(&c), std::thread::spawn(move || run_case(&c))))
            .collect();
        let mut failures = Vec::new();
        for (label, h) in handles {
            match h.join() {
                Ok(Ok(summary)) => eprintln!("ok   {label}: {summary}"),
                Ok(Err(e)) => failures.push(format!("FAIL {label}: {e}")),
                Err(p) => failures.push(format!(
                    "FAIL {label}: panicked: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            }
        }
        eprintln!("failpoint cases took {:.1}s", t0.elapsed().as_secs_f64());
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// SIGKILL at random instants, with a reader watching the live sets.

#[derive(Default, Debug)]
struct ReaderFigures {
    /// Pairs read whole and compared.
    reads: u64,
    /// Pairs whose `live` link changed between the key read and the certificate read (a
    /// swap in between: a reader going through two paths cannot expect one set then).
    straddled: u64,
    /// Pairs with a file missing (before the first deployment).
    absent: u64,
    mismatches: u64,
    first_mismatches: Vec<String>,
}

/// Reads `<name>/privkey.pem` and `<name>/cert.pem` of every certificate every ~5 ms until
/// `stop`, comparing the public keys in-process.
fn reader(out: PathBuf, names: Vec<String>, stop: Arc<AtomicBool>) -> ReaderFigures {
    let mut f = ReaderFigures::default();
    // Verdicts by content, so an unchanged pair is not parsed again every 5 ms.
    let mut seen: HashMap<(Vec<u8>, Vec<u8>), bool> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        for n in &names {
            let dir = out.join(n);
            let before = std::fs::read_link(dir.join("live")).ok();
            let key = std::fs::read(dir.join("privkey.pem"));
            let cert = std::fs::read(dir.join("cert.pem"));
            let after = std::fs::read_link(dir.join("live")).ok();
            let (Ok(key), Ok(cert)) = (key, cert) else {
                f.absent += 1;
                continue;
            };
            if before != after {
                f.straddled += 1;
                continue;
            }
            f.reads += 1;
            let ok = *seen.entry((key.clone(), cert.clone())).or_insert_with(|| {
                matches!((key_public(&key), cert_public(&cert)), (Some(k), Some((c, _))) if k == c)
            });
            if !ok {
                f.mismatches += 1;
                if f.first_mismatches.len() < 5 {
                    f.first_mismatches.push(format!(
                        "{n}: live -> {before:?}; key {} bytes, cert {} bytes",
                        key.len(),
                        cert.len()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f
}

/// On a failure, copies the world (logs, books, state, live sets) to
/// `$TMPDIR/cas-certd-crash-<seed>` before the temp dir goes: a random run is hard to replay.
struct KeepOnFailure(PathBuf, u64);
impl Drop for KeepOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let to = std::env::temp_dir().join(format!("cas-certd-crash-{}", self.1));
            let ok = Command::new("cp")
                .arg("-a")
                .arg(&self.0)
                .arg(&to)
                .status()
                .is_ok_and(|s| s.success());
            eprintln!("world kept in {} ({ok})", to.display());
        }
    }
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// The daemon is SIGKILLed 50–1500 ms after each start while the certificates (FILE and
/// Alidns, joining the config a few at a time) are issued and renewed once. Afterwards: one
/// paid order per issuance and renewal, everything deployed, no temporary file, and the
/// reader never saw a key that did not match its certificate. Short by default;
/// `CAS_CERTD_CRASH_KILLS=200` is the long run (20 certificates unless
/// `CAS_CERTD_CRASH_CERTS` says otherwise; `CAS_CERTD_CRASH_SEED` replays a run).
#[test]
fn sigkill_at_random_instants_pays_once_and_readers_never_see_a_mismatched_pair() {
    use rand::{Rng, SeedableRng};
    let kills = env_num("CAS_CERTD_CRASH_KILLS").unwrap_or(20);
    let ncerts = env_num("CAS_CERTD_CRASH_CERTS").unwrap_or(if kills >= 200 { 20 } else { 5 });
    let seed = env_num("CAS_CERTD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    eprintln!("random kills: kills={kills} certificates={ncerts} seed={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Long enough that renewals fall inside the kill window of the long run.
    let lifetime = format!("{}s", (kills / 5).max(12));
    let w = World::new(&["--first-cert-lifetime", &lifetime]);
    let _keep = KeepOnFailure(w.dir.path().to_path_buf(), seed);
    let names: Vec<String> = (0..ncerts).map(|i| format!("c{i:02}")).collect();
    let domain = |i: usize| format!("c{i:02}.example.test");
    let block = |i: usize| {
        if i % 2 == 0 {
            w.file_cert(&names[i], &format!("\"{}\"", domain(i)))
        } else {
            format!(
                "[[certificate]]\nname = \"{}\"\ndomains = [\"{}\"]\nvalidation = {{ method = \"alidns\" }}\n",
                names[i],
                domain(i)
            )
        }
    };
    // Certificate i joins at restart `joins_at(i)`: all within the first half of the kills.
    let joins_at = |i: usize| i as u64 * kills / 2 / ncerts.max(1);
    let config_for = |restart: u64| {
        let certs: String = (0..ncerts as usize)
            .filter(|&i| joins_at(i) <= restart)
            .map(block)
            .collect();
        w.config(&certs)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reader_thread = {
        let (out, names, stop) = (w.p("live"), names.clone(), stop.clone());
        std::thread::spawn(move || reader(out, names, stop))
    };

    let t0 = Instant::now();
    let mut done_kills = 0u64;
    for restart in 0..kills {
        let cfg = config_for(restart);
        let mut d = w.daemon(&cfg, "daemon.log");
        std::thread::sleep(Duration::from_millis(rng.random_range(50..=1500)));
        if let Some(s) = d.0.try_wait().unwrap() {
            panic!(
                "the daemon exited by itself ({s:?}) after {done_kills} kills:\n{}",
                log_tail(&w.p("daemon.log"))
            );
        }
        d.0.kill().unwrap();
        d.0.wait().unwrap();
        done_kills += 1;
    }
    let kill_secs = t0.elapsed().as_secs_f64();

    // Let it finish: every certificate renewed (two issued orders) and deployed long-lived.
    let cfg = config_for(u64::MAX);
    let mut d = w.daemon(&cfg, "daemon.log");
    let settle = Duration::from_secs(60 + 6 * ncerts);
    let t1 = Instant::now();
    loop {
        let ledger = w.ledger();
        let issued = |dom: &str| {
            ledger["orders"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["domains"][0] == dom && o["state"] == "certificate")
                .count()
        };
        let pending: Vec<&String> = names
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                issued(&domain(*i)) < 2 || deployed_long_lived_and_matching(&w, n).is_err()
            })
            .map(|(_, n)| n)
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            t1.elapsed() < settle,
            "not all renewed {settle:?} after the last kill: {pending:?}\n{}",
            log_tail(&w.p("daemon.log"))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // A moment for the batch's reload hook, then a clean stop.
    std::thread::sleep(Duration::from_secs(2));
    let status = sigterm_and_wait(&mut d);
    stop.store(true, Ordering::SeqCst);
    let figures = reader_thread.join().unwrap();
    let wall = t0.elapsed().as_secs_f64();

    let ledger = w.ledger();
    let all_orders = ledger["orders"].as_array().unwrap();
    let creates = ledger["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["code"] == "OK"
                && c["action"].as_str().is_some_and(|a| {
                    a.starts_with("CreateCertificate") || a.starts_with("RenewCertificate")
                })
        })
        .count();
    let adopted = std::fs::read_to_string(w.p("daemon.log"))
        .unwrap()
        .matches("cert.order_adopted")
        .count();
    eprintln!(
        "random kills: kills={done_kills} certificates={ncerts} orders={} creates={creates} \
         renewals={} adopted={adopted} reads={} straddled={} absent={} mismatches={} \
         kill_phase={kill_secs:.1}s wall={wall:.1}s seed={seed}",
        all_orders.len(),
        all_orders.len().saturating_sub(ncerts as usize),
        figures.reads,
        figures.straddled,
        figures.absent,
        figures.mismatches,
    );

    assert!(status.success(), "final daemon: {status:?}");
    assert_eq!(done_kills, kills);
    assert_eq!(
        figures.mismatches, 0,
        "the reader saw mismatched pairs: {:?}",
        figures.first_mismatches
    );
    assert!(figures.reads > 0, "the reader never read a pair");
    for (i, n) in names.iter().enumerate() {
        let got = w.orders(&domain(i));
        assert!(
            got.len() == 2 && got.iter().all(|(_, s)| s == "certificate"),
            "{n}: orders {got:?}: want exactly one for the first certificate and one for the renewal"
        );
        deployed_long_lived_and_matching(&w, n).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_key_matches_and_private(&w, n);
    }
    assert_eq!(
        all_orders.len(),
        2 * ncerts as usize,
        "orders for other domains"
    );
    assert_eq!(creates, 2 * ncerts as usize, "successful create calls");
    let tmp = [temp_files(&w.p("live")), temp_files(&w.p("state"))].concat();
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
}
