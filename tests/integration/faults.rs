//! Reliability suite, parts 2, 3, 4 and 8 of issue 6, at daemon level (real `cas-certd run`
//! against the real simulator): a bad day at the API, disk faults, misbehaving reload hooks,
//! clock skew and half-written configs on SIGHUP.
//!
//! `CAS_CERTD_LONG_FAULTS=1` makes the API test the long variant (2 s latency on every call,
//! more certificates); the default is the CI variant (2 s latency on a fraction of the calls).
#![allow(clippy::unwrap_used)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::bin;
use crate::support::world::*;

/// The daemon's JSON log lines (non-JSON lines, e.g. a panic message, are kept as strings).
fn log_lines(w: &World, log: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(w.p(log))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::String(l.into())))
        .collect()
}

fn events<'a>(lines: &'a [serde_json::Value], event: &str) -> Vec<&'a serde_json::Value> {
    lines.iter().filter(|l| l["event"] == event).collect()
}

fn log_has(w: &World, log: &str, needle: &str) -> bool {
    std::fs::read_to_string(w.p(log)).is_ok_and(|s| s.contains(needle))
}

/// The config World writes, with `[cas]` extras and another reload hook line.
fn config_with(w: &World, certs: &str, cas_extra: &str, reload: Option<&str>) -> PathBuf {
    let path = w.config(certs);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text = text.replacen("[cas]\n", &format!("[cas]\n{cas_extra}\n"), 1);
    if let Some(r) = reload {
        let start = text.find("reload = ").unwrap();
        let end = start + text[start..].find('\n').unwrap();
        text.replace_range(start..end, r);
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn alidns_cert(name: &str, domain: &str) -> String {
    format!(
        "[[certificate]]\nname = \"{name}\"\ndomains = [\"{domain}\"]\nvalidation = {{ method = \"alidns\", zone = \"example.test\" }}\n"
    )
}

fn calls(w: &World) -> Vec<serde_json::Value> {
    w.ledger()["calls"].as_array().unwrap().clone()
}

fn renew_force(cfg: &Path, name: &str) {
    let out = Command::new(bin())
        .arg("--config")
        .arg(cfg)
        .args(["renew", "--force", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "renew --force {name}: {out:?}");
}

fn hook_runs(w: &World) -> usize {
    std::fs::read_to_string(w.p("hook.log"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// The bytes of the live set, read through the stable paths.
fn live_bytes(w: &World, name: &str) -> Vec<Vec<u8>> {
    ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        .iter()
        .map(|f| std::fs::read(w.live(name, f)).unwrap())
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose (it runs nothing; only its parent has not reaped it).
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

// ---------------------------------------------------------------------------------------------
// Part 2: a bad day at the API.

#[test]
fn bad_day_at_the_api_every_certificate_deploys_with_one_paid_order_and_bounded_noise() {
    let long = std::env::var("CAS_CERTD_LONG_FAULTS").is_ok_and(|v| v == "1");
    // CI: 2 s latency on 15 % of calls (on every call the run takes minutes; the long variant
    // does that). Everything else at full strength.
    let latency_rate = if long { "1" } else { "0.15" };
    let w = World::new(&[
        "--seed",
        "6",
        "--fail-rate",
        "0.3",
        "--qps-default",
        "2",
        "--latency",
        "2s",
        "--latency-rate",
        latency_rate,
        "--reset-rate",
        "0.05",
        "--garbage-rate",
        "0.05",
        "--lose-rate",
        "0.1",
    ]);
    let mut names: Vec<(String, String)> = vec![
        ("f1".into(), "f1.example.test".into()),
        ("f2".into(), "f2.example.test".into()),
        ("f3".into(), "f3.example.test".into()),
        ("d1".into(), "d1.example.test".into()),
    ];
    if long {
        for i in 4..8 {
            names.push((format!("f{i}"), format!("f{i}.example.test")));
        }
        names.push(("d2".into(), "*.d2.example.test".into()));
    }
    let certs: String = names
        .iter()
        .map(|(n, d)| {
            if n.starts_with('d') {
                alidns_cert(n, d)
            } else {
                w.file_cert(n, &format!("\"{d}\""))
            }
        })
        .collect();
    // A retry budget sized for a 45 % failure rate per attempt (the default 4 gives up on
    // ~4 % of calls, which then wait a minute for the next step).
    let cfg = config_with(&w, &certs, "max_attempts = 10", None);
    let t0 = Instant::now();
    let mut d = w.daemon(&cfg, "daemon.log");
    // FILE certificates share one webroot, so one waits while another's proof holds the path,
    // and a throttled poll waits the API retry backoff (a minute): on a loaded CI machine that
    // chain took more than 80 s once (2 of 4 deployed), 35 s on an idle one.
    let limit = Duration::from_secs(if long { 900 } else { 180 });
    wait_for("every certificate deployed", limit, || {
        names.iter().all(|(n, _)| w.live(n, "cert.pem").exists())
    });
    let took = t0.elapsed();
    // Let hooks and late retries settle, then look at the books.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        d.0.try_wait().unwrap().is_none(),
        "the daemon exited under faults"
    );
    for (n, _) in &names {
        assert_key_matches_and_private(&w, n);
    }
    let text = std::fs::read_to_string(w.p("daemon.log")).unwrap();
    assert!(!text.contains("panicked"), "a panic in the daemon log");

    let calls = calls(&w);
    let faulted = calls.iter().filter(|c| c["code"] != "OK").count();
    let mut by_code: HashMap<String, usize> = HashMap::new();
    for c in &calls {
        *by_code
            .entry(c["code"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let lost_creates = calls
        .iter()
        .filter(|c| {
            c["code"] == "fault:lost" && c["action"].as_str().unwrap().starts_with("Create")
        })
        .count();
    let lines = log_lines(&w, "daemon.log");
    let adopted = events(&lines, "cert.order_adopted").len();
    let loud: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR" || l.is_string())
        // The proof self-check's warnings (the test domains do not resolve) are about proofs,
        // once per order and reason, not about the API's faults.
        .filter(|l| l["event"] != "cert.proof_unreachable")
        .collect();
    eprintln!(
        "bad day: {} certificates deployed in {took:?}; {} calls ({faulted} faulted): {by_code:?}; \
         {lost_creates} creates performed but unanswered, {adopted} orders adopted; \
         {} WARN/ERROR lines",
        names.len(),
        calls.len(),
        loud.len()
    );

    // Exactly one paid create per certificate: a create whose answer was lost is adopted.
    for (n, dom) in &names {
        assert_eq!(w.orders_for(dom), 1, "{n}: orders in the simulator's books");
    }
    assert!(
        adopted >= lost_creates,
        "{lost_creates} lost creates, {adopted} adoptions"
    );

    // Retries are bounded. A clean issuance takes about 8 calls (create, polls, DNS add and
    // delete); each attempt fails with p ≈ 0.45 here and Throttling adds some. 60 calls per
    // certificate is ~4x what the faults explain; a retry loop blows far past it.
    let bound = 60 * names.len();
    assert!(
        calls.len() <= bound,
        "{} calls for {} certificates (bound {bound})",
        calls.len(),
        names.len()
    );

    // One log line per incident, not a flood: warnings and errors at most one per faulted
    // call (plus a few), and no identical line repeated within a second.
    assert!(
        loud.len() <= faulted + 5,
        "{} WARN/ERROR lines for {faulted} faulted calls",
        loud.len()
    );
    let mut same: HashMap<String, usize> = HashMap::new();
    for l in &loud {
        let mut k = (*l).clone();
        let second = k["timestamp"]
            .as_str()
            .unwrap_or("")
            .get(..19)
            .unwrap_or("")
            .to_string();
        if let Some(m) = k.as_object_mut() {
            m.remove("timestamp");
        }
        *same.entry(format!("{second} {k}")).or_default() += 1;
    }
    let worst = same.iter().max_by_key(|(_, n)| **n);
    if let Some((line, n)) = worst {
        assert!(*n <= 2, "the same line {n} times in one second: {line}");
    }
    drop(d);
}

/// Every create is performed and its answer lost: each must be found with
/// ListUserCertificateOrder and adopted, never paid for twice.
#[test]
fn creates_whose_answer_is_lost_are_adopted_not_repeated() {
    let w = World::new(&[
        "--lose-rate",
        "1",
        "--lose-only",
        "CreateCertificateForPackageRequest",
    ]);
    let certs = format!(
        "{}{}",
        w.file_cert("l1", "\"l1.example.test\""),
        alidns_cert("l2", "l2.example.test")
    );
    let cfg = w.config(&certs);
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("both deployed", Duration::from_secs(60), || {
        w.live("l1", "cert.pem").exists() && w.live("l2", "cert.pem").exists()
    });
    let calls = calls(&w);
    let creates: Vec<_> = calls
        .iter()
        .filter(|c| c["action"] == "CreateCertificateForPackageRequest")
        .collect();
    assert_eq!(creates.len(), 2, "one create per certificate: {creates:?}");
    assert!(creates.iter().all(|c| c["code"] == "fault:lost"));
    assert_eq!(w.orders_for("l1.example.test"), 1);
    assert_eq!(w.orders_for("l2.example.test"), 1);
    let lines = log_lines(&w, "daemon.log");
    assert_eq!(events(&lines, "cert.order_adopted").len(), 2);
    assert_key_matches_and_private(&w, "l1");
    assert_key_matches_and_private(&w, "l2");
    drop(d);
}

// ---------------------------------------------------------------------------------------------
// Part 8: clock skew, and SIGHUP with a half-written config.

#[test]
fn clock_skew_is_one_clear_event_with_backoff_and_clears_when_the_clock_is_right() {
    // The simulator's clock runs 20 minutes ahead: our timestamps are outside its window.
    let mut w = World::new(&["--clock-offset", "20m"]);
    let certs = format!(
        "{}{}",
        w.file_cert("s1", "\"s1.example.test\""),
        w.file_cert("s2", "\"s2.example.test\"")
    );
    let cfg = w.config(&certs);
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("the skew reported", Duration::from_secs(20), || {
        log_has(&w, "daemon.log", "api.clock_skew")
    });
    // Watch for a while: no busy loop. Each certificate tries once (and the client re-signs
    // once), then backs off for a minute.
    std::thread::sleep(Duration::from_secs(8));
    let rejected = calls(&w)
        .iter()
        .filter(|c| c["code"] == "InvalidTimeStamp.Expired")
        .count();
    assert!(
        (2..=4).contains(&rejected),
        "{rejected} calls rejected for the timestamp within ~10 s (2 certificates × 2 expected)"
    );
    let lines = log_lines(&w, "daemon.log");
    let skew: Vec<_> = events(&lines, "api.clock_skew")
        .into_iter()
        .filter(|l| l["level"] == "ERROR")
        .collect();
    assert_eq!(skew.len(), 1, "one event per incident: {skew:?}");
    let e = skew[0];
    let secs = e["skew_secs"].as_i64().unwrap();
    assert!((1190..=1210).contains(&secs), "skew_secs {secs}: {e}");
    assert!(e["server_time"].as_str().unwrap().ends_with('Z'), "{e}");
    assert!(e["local_time"].as_str().unwrap().ends_with('Z'), "{e}");
    // README's troubleshooting query keeps working.
    assert!(log_has(&w, "daemon.log", "clock is probably skewed"));
    assert_eq!(w.orders_for("s1.example.test"), 0);

    // The clock is fixed (simulator restarted without the offset; same books).
    let fixed = Instant::now();
    w.restart_sim(&[]);
    wait_for("deployed after the fix", Duration::from_secs(100), || {
        w.live("s1", "cert.pem").exists() && w.live("s2", "cert.pem").exists()
    });
    eprintln!(
        "clock skew: {rejected} rejected calls; deployed {:?} after the clock was fixed",
        fixed.elapsed()
    );
    assert_eq!(w.orders_for("s1.example.test"), 1);
    assert_eq!(w.orders_for("s2.example.test"), 1);
    drop(d);
}

#[test]
fn sighup_with_a_half_written_config_keeps_the_old_one_and_says_where() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("a", "\"a.example.test\""));
    let old = w.p("config.old.toml");
    std::fs::copy(&cfg, &old).unwrap();
    let d = w.daemon(&cfg, "daemon.log");
    let pid = d.0.id().to_string();
    wait_for("a deployed", Duration::from_secs(40), || {
        w.live("a", "cert.pem").exists()
    });
    // The editor saved half of a second table: cut inside b's domains array.
    let full = std::fs::read_to_string(w.config(&format!(
        "{}{}",
        w.file_cert("a", "\"a.example.test\""),
        w.file_cert("b", "\"b.example.test\"")
    )))
    .unwrap();
    let cut = full.find("\"b.example").unwrap() + 5;
    std::fs::write(&cfg, &full[..cut]).unwrap();
    let line = full[..cut].lines().count();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("config.reload_failed", Duration::from_secs(10), || {
        log_has(&w, "daemon.log", "config.reload_failed")
    });
    let lines = log_lines(&w, "daemon.log");
    let failed = events(&lines, "config.reload_failed");
    assert_eq!(failed.len(), 1);
    let why = failed[0]["errors"].as_str().unwrap();
    assert!(
        why.contains(&format!("{line}:")) || why.contains(&format!("line {line}")),
        "the reason names line {line}: {why}"
    );
    // The old configuration runs on: a is still managed, b was never ordered. (`status`
    // reads the config for the socket path, so it gets an intact copy; the daemon answers.)
    std::thread::sleep(Duration::from_secs(3));
    let st = status_json(&old);
    assert_eq!(st.as_array().unwrap().len(), 1, "{st}");
    assert_eq!(st[0]["name"], "a");
    assert_eq!(w.orders_for("b.example.test"), 0);
    // The finished file is taken at the next SIGHUP.
    std::fs::write(&cfg, &full).unwrap();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for("b deployed", Duration::from_secs(40), || {
        w.live("b", "cert.pem").exists()
    });
    drop(d);
}

// ---------------------------------------------------------------------------------------------
// Part 3: disk faults.

/// A mount made for a test, undone on drop (also when the test fails).
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn mount(args: &[&str], at: &Path) -> Result<Mounted, String> {
    let out = Command::new("mount").args(args).arg(at).output();
    match out {
        Ok(o) if o.status.success() => Ok(Mounted(at.to_path_buf())),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn skipped(test: &str, why: &str) {
    eprintln!("\n==== SKIPPED {test} (cannot mount: {why}) ====\n");
}

/// What a failed write must leave: the same bytes, a matching pair, no hook run, a clear
/// error naming the path, no new order.
fn assert_old_set_kept(w: &World, name: &str, before: &[Vec<u8>], runs: usize, reason: &str) {
    wait_for("cert.deploy_failed", Duration::from_secs(30), || {
        log_has(w, "daemon.log", "cert.deploy_failed")
    });
    let lines = log_lines(w, "daemon.log");
    let failed = events(&lines, "cert.deploy_failed");
    let err = failed[0]["error"].as_str().unwrap();
    let live_dir = w.p("live").display().to_string();
    assert!(
        err.contains(reason) && err.contains(&live_dir),
        "the error names the path and says {reason:?}: {err}"
    );
    // Keep failing for a few retries: nothing may change meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(live_bytes(w, name), before, "the live set changed");
    assert_key_matches_and_private(w, name);
    assert_eq!(hook_runs(w), runs, "a reload hook ran after a failed write");
    let failed = events(&log_lines(w, "daemon.log"), "cert.deploy_failed").len();
    assert!(
        (1..=5).contains(&failed),
        "{failed} deploy_failed lines in ~5 s (retries back off from poll_min)"
    );
}

fn assert_recovers(w: &World, name: &str, domain: &str, before: &[Vec<u8>], runs: usize) {
    let t = Instant::now();
    wait_for(
        "redeployed after the fault",
        Duration::from_secs(20),
        || hook_runs(w) > runs,
    );
    eprintln!("recovered {:?} after the fault was cleared", t.elapsed());
    assert_ne!(live_bytes(w, name), before, "the new set is live");
    assert_key_matches_and_private(w, name);
    // The issued order was kept across the failure: initial + forced renewal, no third.
    assert_eq!(w.orders_for(domain), 2);
}

#[test]
fn read_only_output_dir_keeps_the_old_set_runs_no_hook_and_recovers_when_writable() {
    let w = World::new(&[]);
    let cfg = w.config(&w.file_cert("ro", "\"ro.example.test\""));
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("first deployment", Duration::from_secs(40), || {
        hook_runs(&w) == 1
    });
    let before = live_bytes(&w, "ro");
    let live = w.p("live");
    let bind = match mount(&["--bind", live.to_str().unwrap()], &live) {
        Ok(m) => m,
        Err(e) => return skipped("read_only_output_dir", &e),
    };
    // Same mount, now read-only: `bind` undoes both.
    match mount(&["-o", "remount,bind,ro"], &live) {
        Ok(m) => std::mem::forget(m),
        Err(e) => return skipped("read_only_output_dir", &e),
    }
    renew_force(&cfg, "ro");
    assert_old_set_kept(&w, "ro", &before, 1, "Read-only file system");
    drop(bind);
    assert_recovers(&w, "ro", "ro.example.test", &before, 1);
    drop(d);
}

#[test]
fn full_disk_keeps_the_old_set_runs_no_hook_and_recovers_when_space_returns() {
    let w = World::new(&[]);
    let live = w.p("live");
    std::fs::create_dir_all(&live).unwrap();
    // mode=0755: a fresh tmpfs is 1777, and an output_dir others can write is refused.
    let _tmpfs = match mount(
        &["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"],
        &live,
    ) {
        Ok(m) => m,
        Err(e) => return skipped("full_disk", &e),
    };
    let cfg = w.config(&w.file_cert("full", "\"full.example.test\""));
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("first deployment", Duration::from_secs(40), || {
        hook_runs(&w) == 1
    });
    let before = live_bytes(&w, "full");
    // Fill the file system to the last block.
    let filler = live.join("filler");
    let out = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No space left"),
        "{out:?}"
    );
    renew_force(&cfg, "full");
    assert_old_set_kept(&w, "full", &before, 1, "No space left on device");
    std::fs::remove_file(&filler).unwrap();
    assert_recovers(&w, "full", "full.example.test", &before, 1);
    drop(d);
}

// ---------------------------------------------------------------------------------------------
// Part 4: reload hooks at daemon level.

#[test]
fn a_hanging_hook_is_killed_with_its_process_group_at_the_timeout() {
    let w = World::new(&[]);
    let gc = w.p("grandchild.pid");
    let reload = format!(
        "reload = {{ argv = [\"sh\", \"-c\", \"sleep 600 & echo $! > {}; sleep 600\"], timeout = \"2s\" }}",
        gc.display()
    );
    let cfg = config_with(
        &w,
        &w.file_cert("h", "\"h.example.test\""),
        "",
        Some(&reload),
    );
    let mut d = w.daemon(&cfg, "daemon.log");
    wait_for("the hook started", Duration::from_secs(40), || {
        std::fs::read_to_string(&gc).is_ok_and(|s| s.ends_with('\n'))
    });
    let t_start = Instant::now();
    let grandchild: u32 = std::fs::read_to_string(&gc)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        alive(grandchild),
        "the grandchild runs while the hook hangs"
    );
    wait_for("hook.failed", Duration::from_secs(10), || {
        log_has(&w, "daemon.log", "hook.failed")
    });
    let killed_after = t_start.elapsed();
    assert!(
        killed_after < Duration::from_secs(4),
        "killed {killed_after:?} after start, timeout 2 s"
    );
    wait_for("the grandchild gone", Duration::from_secs(3), || {
        !alive(grandchild)
    });
    let lines = log_lines(&w, "daemon.log");
    let f = events(&lines, "hook.failed");
    let err = f[0]["error"].as_str().unwrap();
    assert!(err.contains("timed out after 2s"), "{err}");
    assert_eq!(f[0]["attempt"], 1);
    assert_eq!(f[0]["retry_in_secs"], 10);
    // The daemon runs on and answers.
    assert!(d.0.try_wait().unwrap().is_none(), "the daemon exited");
    let st = status_json(&cfg);
    assert_eq!(st[0]["state"], "deployed", "{st}");
    drop(d);
}

#[test]
fn a_failing_hook_is_retried_with_growing_gaps_and_says_so() {
    let w = World::new(&[]);
    let attempts = w.p("attempts.log");
    let reload = format!(
        "reload = [\"sh\", \"-c\", \"date +%s.%N >> {}; echo nginx: config broken >&2; exit 1\"]",
        attempts.display()
    );
    let cfg = config_with(
        &w,
        &w.file_cert("r", "\"r.example.test\""),
        "",
        Some(&reload),
    );
    let d = w.daemon(&cfg, "daemon.log");
    let times = || -> Vec<f64> {
        std::fs::read_to_string(&attempts)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    wait_for("first attempt", Duration::from_secs(40), || {
        !times().is_empty()
    });
    // Attempts at 0, +10 s, +30 s (then +70 s).
    wait_for("three attempts", Duration::from_secs(45), || {
        times().len() >= 3
    });
    std::thread::sleep(Duration::from_secs(3));
    let t = times();
    eprintln!(
        "hook attempts at {:?}",
        t.iter().map(|x| x - t[0]).collect::<Vec<_>>()
    );
    assert_eq!(t.len(), 3, "no extra attempts: {t:?}");
    let (g1, g2) = (t[1] - t[0], t[2] - t[1]);
    assert!((9.5..14.0).contains(&g1), "first gap {g1}");
    assert!((19.5..25.0).contains(&g2), "second gap {g2} (doubles)");
    let lines = log_lines(&w, "daemon.log");
    let failed = events(&lines, "hook.failed");
    assert_eq!(failed.len(), 3);
    for (i, f) in failed.iter().enumerate() {
        assert_eq!(f["level"], "ERROR");
        assert_eq!(f["attempt"], i as u64 + 1);
        assert_eq!(f["retry_in_secs"], 10 << i);
        assert!(
            f["error"].as_str().unwrap().contains("config broken"),
            "{f}"
        );
    }
    drop(d);
}

#[test]
fn a_hook_printing_megabytes_is_capped_in_memory_and_in_the_log() {
    let w = World::new(&[]);
    // 100 MB of output, then a last line.
    let reload = "reload = [\"sh\", \"-c\", \"head -c 100000000 /dev/zero | tr '\\\\000' x; echo; echo THE-END\"]";
    let cfg = config_with(
        &w,
        &w.file_cert("m", "\"m.example.test\""),
        "",
        Some(reload),
    );
    let d = w.daemon(&cfg, "daemon.log");
    wait_for("hook.ok", Duration::from_secs(60), || {
        log_has(&w, "daemon.log", "hook.ok")
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.0.id())).unwrap();
    let hwm_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap();
    let log_size = std::fs::metadata(w.p("daemon.log")).unwrap().len();
    eprintln!("after a 100 MB hook: daemon peak RSS {hwm_kb} kB, log {log_size} bytes");
    assert!(
        hwm_kb < 64 * 1024,
        "peak RSS {hwm_kb} kB: the output was buffered"
    );
    assert!(log_size < 1 << 20, "log is {log_size} bytes");
    let lines = log_lines(&w, "daemon.log");
    let ok = events(&lines, "hook.ok");
    assert_eq!(ok[0]["truncated"], true, "{}", ok[0]["truncated"]);
    let out = ok[0]["output"].as_str().unwrap();
    assert!(
        out.len() <= 8 * 1024,
        "{} bytes of output in one log line",
        out.len()
    );
    assert!(out.ends_with("THE-END"), "the tail is kept");
    drop(d);
}
