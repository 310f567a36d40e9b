//! The command line of the simulator, shared by the `cas-sim` binary and `cas-certd simulate`:
//! one flag set ([`SimulateArgs`]) and one runner ([`run`]) that serves until SIGINT/SIGTERM.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cas_api::Secret;

use crate::faults::FaultOptions;
use crate::{hostile, SimError, SimOptions};

/// Why the simulator could not run.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value is out of range.
    #[error("{0}")]
    Usage(String),
    /// No key pair to accept.
    #[error("{0}")]
    Credentials(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch for SIGTERM: {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Sim(#[from] SimError),
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Run the CAS + Alidns simulator (a local stand-in for Alibaba Cloud, with a test CA).
///
/// Accepts the key pair in ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET (or
/// --credentials-file). Clients use http://ADDR for both CAS and Alidns (told apart by Version).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Credentials accepted: ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET, or --credentials-file.
Clients: endpoint http://ADDR:PORT for both CAS (Version 2020-04-07) and Alidns (2015-01-09);
signature v1 (HMAC-SHA1) and V3 (ACS3-HMAC-SHA256) are both verified.
Test CA root: DATA_DIR/ca/root.pem (trust it in curl/nginx/openssl). Books: DATA_DIR/state.json.
DUR values use humantime: 500ms, 2s, 10m, 90days.
Validation: FILE fetches http://DOMAIN/.well-known/pki-validation/fileauth.txt (via --resolve);
DNS needs a TXT record created with AddDomainRecord in a --zone.")]
pub struct SimulateArgs {
    /// Address to listen on (port 0 picks a free port; see --ready-file).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Directory for the books (state.json) and the test CA (ca/root.pem).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Once listening, write "ADDR:PORT\n" to this file.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// File with `access_key_id = ...` and `access_key_secret = ...` lines (INI style).
    #[arg(long)]
    pub credentials_file: Option<PathBuf>,
    /// Serve GET /_sim/ledger (every call and every order's state, JSON); 404 otherwise.
    #[arg(long)]
    pub admin: bool,
    /// Map a domain (or *.pattern) to ADDR:PORT for FILE validation fetches. Repeatable.
    /// Several addresses (`DOMAIN=A:P,B:Q`) are a load balancer: each fetch goes to one of
    /// them at random (seeded by --seed).
    #[arg(long, value_name = "DOMAIN=ADDR:PORT[,ADDR:PORT...]", value_parser = parse_resolve)]
    pub resolve: Vec<(String, Vec<SocketAddr>)>,
    /// An Alidns zone the account owns (records can be added in it). Repeatable.
    #[arg(long, value_name = "ZONE")]
    pub zone: Vec<String>,
    /// Validation of this domain (or *.pattern) always fails (verify_fail). Repeatable.
    #[arg(long, value_name = "DOMAIN")]
    pub reject: Vec<String>,
    /// Dwell between the proof being seen and CA review ("process"), e.g. 2s.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, default_value = "0s")]
    pub validation_delay: Duration,
    /// Dwell in "process" before the certificate is issued, e.g. 5s.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, default_value = "0s")]
    pub review_delay: Duration,
    /// Lifetime of issued certificates.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, default_value = "90days")]
    pub cert_lifetime: Duration,
    /// Lifetime of the first certificate issued for a domain set (short, to exercise renewal).
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub first_cert_lifetime: Option<Duration>,
    /// TotalCount of a product's quota (default 1000 for any product). Repeatable.
    #[arg(long, value_name = "PRODUCT=N", value_parser = parse_quota)]
    pub quota: Vec<(String, i64)>,
    /// Seed of the fault-injection random generator (same seed, same faults).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of calls answered 503 ServiceUnavailable (0..1), before the action runs.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Calls per second allowed for ACTION; more get Throttling.User. Repeatable.
    #[arg(long, value_name = "ACTION=N", value_parser = parse_qps)]
    pub qps: Vec<(String, u32)>,
    /// Calls per second allowed for actions without their own --qps.
    #[arg(long, value_name = "N")]
    pub qps_default: Option<u32>,
    /// Delay added before every answer, e.g. 200ms.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration)]
    pub latency: Option<Duration>,
    /// Fraction of calls that get --latency (default: every call).
    #[arg(long, value_name = "F")]
    pub latency_rate: Option<f64>,
    /// Fraction of calls that ARE performed (a create is charged) but whose answer is lost:
    /// the connection is closed before the answer.
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub lose_rate: f64,
    /// Limit --lose-rate to this action (e.g. CreateCertificateForPackageRequest). Repeatable.
    #[arg(long, value_name = "ACTION")]
    pub lose_only: Vec<String>,
    /// Run the server clock this far ahead of the host's ("-20m": behind), so requests signed
    /// with the host's time fail the timestamp check with InvalidTimeStamp.Expired.
    #[arg(long, value_name = "[-]DUR", value_parser = parse_offset, allow_hyphen_values = true)]
    pub clock_offset: Option<chrono::TimeDelta>,
    /// Hold every call of ACTION this long after it arrived, then run it and answer (a slow
    /// service, e.g. CreateCertificateForPackageRequest=5s). A held call is carried out even
    /// if its caller hangs up; the ledger's `held` counts the calls held now. Repeatable.
    #[arg(long, value_name = "ACTION=DUR", value_parser = parse_action_delay)]
    pub action_delay: Vec<(String, Duration)>,
    /// Fraction of calls whose connection is dropped without a complete answer (action not run).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub reset_rate: f64,
    /// Fraction of calls answered 200 with a truncated non-JSON body (action not run).
    #[arg(long, value_name = "F", default_value_t = 0.0)]
    pub garbage_rate: f64,
    /// Answer every OrderId as a JSON string (by default only where Alibaba's documented examples
    /// show a string).
    #[arg(long)]
    pub string_order_ids: bool,
    /// Play a CA gone bad for orders whose first domain matches (all orders without a
    /// pattern). MODE: uri-dotdot, uri-absolute, uri-percent, uri-nul (FILE challenge Uri),
    /// wrong-domain, wrong-key, expired (issued certificate), huge-body (100 MB
    /// DescribeCertificateState answer). Repeatable; the first matching rule wins.
    #[arg(long, value_name = "MODE[=DOMAIN_PATTERN]", value_parser = hostile::parse)]
    pub hostile: Vec<hostile::Rule>,
    /// Write the books at most this often (and at shutdown) instead of after every change;
    /// for benchmarks with thousands of orders. 0s (default): after every change.
    #[arg(long, value_name = "DUR", value_parser = humantime::parse_duration, default_value = "0s")]
    pub persist_interval: Duration,
    /// Also answer DNS queries (UDP and TCP) for the --zone records here, as the zones'
    /// authoritative server: TXT, CNAME, A, AAAA from the records, SOA and NS at the apex.
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_listen: Option<SocketAddr>,
}

fn parse_resolve(s: &str) -> Result<(String, Vec<SocketAddr>), String> {
    let (d, list) = s
        .split_once('=')
        .ok_or("expected DOMAIN=ADDR:PORT[,ADDR:PORT...]")?;
    let addrs = list
        .split(',')
        .map(|a| a.trim().parse().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<Vec<SocketAddr>, String>>()?;
    Ok((d.to_ascii_lowercase(), addrs))
}

fn parse_quota(s: &str) -> Result<(String, i64), String> {
    let (p, n) = s.split_once('=').ok_or("expected PRODUCT=N")?;
    Ok((p.to_string(), n.parse().map_err(|e| format!("{n}: {e}"))?))
}

fn parse_qps(s: &str) -> Result<(String, u32), String> {
    let (a, n) = s.split_once('=').ok_or("expected ACTION=N")?;
    Ok((a.to_string(), n.parse().map_err(|e| format!("{n}: {e}"))?))
}

fn parse_action_delay(s: &str) -> Result<(String, Duration), String> {
    let (a, d) = s.split_once('=').ok_or("expected ACTION=DUR")?;
    if a.is_empty() {
        return Err("expected ACTION=DUR".into());
    }
    let d = humantime::parse_duration(d).map_err(|e| format!("{d}: {e}"))?;
    Ok((a.to_string(), d))
}

fn parse_offset(s: &str) -> Result<chrono::TimeDelta, String> {
    let (neg, d) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let d = humantime::parse_duration(d).map_err(|e| format!("{s}: {e}"))?;
    let d = chrono::TimeDelta::from_std(d).map_err(|e| format!("{s}: {e}"))?;
    Ok(if neg { -d } else { d })
}

fn credentials(a: &SimulateArgs) -> Result<Vec<(String, Secret)>, CliError> {
    if let Some(path) = &a.credentials_file {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let (mut id, mut secret) = (None, None);
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "access_key_id" => id = Some(v.trim().to_string()),
                    "access_key_secret" => secret = Some(Secret::new(v.trim())),
                    _ => {}
                }
            }
        }
        match (id, secret) {
            (Some(i), Some(s)) => return Ok(vec![(i, s)]),
            _ => {
                return Err(CliError::Credentials(format!(
                    "{}: needs access_key_id and access_key_secret",
                    path.display()
                )))
            }
        }
    }
    match (
        std::env::var("ALIBABA_CLOUD_ACCESS_KEY_ID"),
        std::env::var("ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ) {
        (Ok(i), Ok(s)) if !i.is_empty() && !s.is_empty() => Ok(vec![(i, Secret::new(s))]),
        _ => Err(CliError::Credentials(
            "no credentials: set ALIBABA_CLOUD_ACCESS_KEY_ID/SECRET or --credentials-file".into(),
        )),
    }
}

/// Starts the simulator `a` describes, writes `--ready-file`, and serves until SIGINT or
/// SIGTERM; then writes the books and returns. `name` introduces the startup line on stderr.
pub async fn run(name: &str, a: &SimulateArgs) -> Result<(), CliError> {
    for (flag, f) in [
        ("--fail-rate", a.fail_rate),
        ("--reset-rate", a.reset_rate),
        ("--garbage-rate", a.garbage_rate),
        ("--lose-rate", a.lose_rate),
        ("--latency-rate", a.latency_rate.unwrap_or(1.0)),
    ] {
        if !(0.0..=1.0).contains(&f) {
            return Err(CliError::Usage(format!("{flag} must be between 0 and 1")));
        }
    }
    let opts = SimOptions {
        listen: Some(a.listen),
        data_dir: a.data_dir.clone(),
        credentials: credentials(a)?,
        // One entry per address: the entries of one name are its load-balanced pool.
        resolve: a
            .resolve
            .iter()
            .flat_map(|(d, addrs)| addrs.iter().map(move |a| (d.clone(), *a)))
            .collect(),
        zones: a.zone.iter().map(|z| z.to_ascii_lowercase()).collect(),
        admin: a.admin,
        reject: a.reject.clone(),
        validation_delay: a.validation_delay,
        review_delay: a.review_delay,
        cert_lifetime: Some(a.cert_lifetime),
        first_cert_lifetime: a.first_cert_lifetime,
        quota: a.quota.clone(),
        faults: FaultOptions {
            seed: a.seed,
            fail_rate: a.fail_rate,
            qps: a.qps.clone(),
            qps_default: a.qps_default,
            latency: a.latency,
            reset_rate: a.reset_rate,
            garbage_rate: a.garbage_rate,
            latency_rate: a.latency_rate,
            lose_rate: a.lose_rate,
            lose_only: a.lose_only.clone(),
            action_delay: a.action_delay.clone(),
        },
        clock_offset: a.clock_offset.unwrap_or_default(),
        string_order_ids: a.string_order_ids,
        hostile: a.hostile.clone(),
        persist_interval: a.persist_interval,
        dns_listen: a.dns_listen,
    };
    let handle = crate::start(opts).await?;
    eprintln!(
        "{name}: listening on http://{} (root CA {})",
        handle.addr,
        handle.root_pem.display()
    );
    if let Some(d) = handle.dns_addr {
        eprintln!("{name}: DNS for the zones on {d} (UDP and TCP)");
    }
    if let Some(rf) = &a.ready_file {
        let tmp = rf.with_extension("tmp");
        std::fs::write(&tmp, format!("{}\n", handle.addr)).map_err(io(&tmp))?;
        std::fs::rename(&tmp, rf).map_err(io(rf))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CliError::Signal)?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn action_delay_is_action_equals_duration() {
        assert_eq!(
            parse_action_delay("CreateCertificateForPackageRequest=5s").unwrap(),
            (
                "CreateCertificateForPackageRequest".to_string(),
                Duration::from_secs(5)
            )
        );
        assert!(parse_action_delay("5s").is_err());
        assert!(parse_action_delay("=5s").is_err());
        assert!(parse_action_delay("Create=soon").is_err());
    }
}
