//! Operator subcommands over the API: `package`, `orders`, `order show|cancel|delete|revoke`.
//!
//! Each prints a human table (or `--json`) and maps failures to one line on stderr and a
//! distinct exit code ([`super::report`]). The AccessKey secret is never printed.

use std::process::ExitCode;

use cas_api::credentials::Credentials;
use cas_api::model::{
    CertificateState, Challenge, ListOrders, OrderId, OrderSummary, DEFAULT_PRODUCT,
};
use cas_api::Client;
use cas_api::{ClientOptions, SignatureVersion};
use cas_certd::config::CredentialsSettings;

use super::exit;
use super::report::{self, Failure};

/// Connection options shared by the API subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// CAS (and Alidns) endpoint URL, replacing the config's; http:// only for loopback.
    #[arg(long, env = "CAS_CERTD_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<url::Url>,
    /// Signature version, replacing the config's.
    #[arg(long, value_enum, value_name = "VERSION")]
    pub signature: Option<SigArg>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SigArg {
    V1,
    V3,
}

/// Exits 5 (quota) when a product has no certificates left or was never bought.
#[derive(Debug, clap::Args)]
pub struct PackageArgs {
    #[arg(long, value_name = "CODE", help = format!(
        "Product code (default: the products named in the config, else {DEFAULT_PRODUCT})"
    ))]
    pub product: Vec<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, clap::Args)]
pub struct OrdersArgs {
    /// Only orders in this state (PAYED, CHECKING, CHECKED_FAIL, ISSUED, WILLEXPIRED, EXPIRED, ...).
    #[arg(long, value_name = "S")]
    pub status: Option<String>,
    /// Match a domain or instance id.
    #[arg(long, value_name = "K")]
    pub keyword: Option<String>,
    /// Every page, not only the first.
    #[arg(long)]
    pub all: bool,
    /// Orders per page.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub page_size: u32,
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum OrderCommand {
    /// Show an order's state (DescribeCertificateState); never prints a private key.
    Show {
        id: OrderId,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Cancel an order that is not issued yet (CancelOrderRequest).
    Cancel {
        id: OrderId,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete an order, returning its quota where CAS allows (DeleteCertificateRequest).
    Delete {
        id: OrderId,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Revoke an issued certificate (CancelCertificateForPackageRequest).
    Revoke {
        id: OrderId,
        /// Confirm: revocation cannot be undone.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// What the subcommands need from the configuration.
struct Setup {
    api: ClientOptions,
    credentials: CredentialsSettings,
    products: Vec<String>,
}

/// Reads the config (when it exists) and applies the command-line overrides; on failure,
/// prints why and gives the exit code.
fn setup(cli: &super::Cli, api: &ApiArgs) -> Result<Setup, ExitCode> {
    let mut s = if cli.config.exists() {
        let c = cas_certd::config::load(&cli.config).map_err(|e| report::config(&e))?;
        let mut products: Vec<String> = c
            .certificates
            .iter()
            .map(|c| c.product_code.clone())
            .collect();
        products.sort();
        products.dedup();
        Setup {
            api: c.api,
            credentials: c.credentials,
            products,
        }
    } else {
        // No config file: the client's own defaults, as a config without [cas] gets.
        Setup {
            api: ClientOptions::default(),
            credentials: CredentialsSettings::default(),
            products: Vec::new(),
        }
    };
    if let Some(e) = &api.endpoint {
        // One endpoint serves both APIs in tests (the simulator tells them apart by Version).
        s.api.cas_endpoint = e.clone();
        s.api.alidns_endpoint = e.clone();
    }
    match api.signature {
        Some(SigArg::V1) => s.api.signature = SignatureVersion::V1,
        Some(SigArg::V3) => s.api.signature = SignatureVersion::V3,
        None => {}
    }
    Ok(s)
}

/// Builds the client, or prints why not and gives the exit code.
fn client(cli: &super::Cli, api: &ApiArgs) -> Result<(Client, Setup), ExitCode> {
    let s = setup(cli, api)?;
    let creds = Credentials::resolve(&s.credentials).map_err(|e| report::credentials(&e).exit())?;
    let c = Client::new(&s.api, creds).map_err(|e| report::api(&e, None).exit())?;
    Ok((c, s))
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as left-aligned columns.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = width[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub async fn package(cli: &super::Cli, a: &PackageArgs) -> anyhow::Result<ExitCode> {
    let (client, s) = match client(cli, &a.api) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let products = if !a.product.is_empty() {
        a.product.clone()
    } else if !s.products.is_empty() {
        s.products.clone()
    } else {
        vec![DEFAULT_PRODUCT.to_string()]
    };
    let mut states = Vec::new();
    for p in &products {
        match client.describe_package_state(p).await {
            Ok(st) => states.push(st),
            Err(e) => return Ok(report::api(&e, Some(p)).exit()),
        }
    }
    if a.api.json {
        print_json(&states)?;
    } else {
        let rows: Vec<Vec<String>> = states
            .iter()
            .map(|s| {
                vec![
                    s.product_code.clone(),
                    s.total_count.to_string(),
                    s.used_count.to_string(),
                    s.left().to_string(),
                    s.issued_count.to_string(),
                ]
            })
            .collect();
        table(&["PRODUCT", "TOTAL", "USED", "LEFT", "ISSUED"], &rows);
    }
    // Exhausted quota is worth a non-zero exit: scripts ask `package` before ordering.
    let mut code = exit::OK;
    for f in states.iter().filter_map(report::exhausted) {
        f.print();
        code = f.code;
    }
    Ok(ExitCode::from(code))
}

fn fmt_ms(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "-".into())
}

pub async fn orders(cli: &super::Cli, a: &OrdersArgs) -> anyhow::Result<ExitCode> {
    let (client, _) = match client(cli, &a.api) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let mut all: Vec<OrderSummary> = Vec::new();
    let mut total: u64;
    let mut page = 1u32;
    loop {
        let q = ListOrders {
            keyword: a.keyword.clone(),
            status: a.status.clone(),
            order_type: None,
            current_page: page,
            show_size: a.page_size,
        };
        let got = match client.list_user_certificate_order(&q).await {
            Ok(p) => p,
            Err(e) => return Ok(report::api(&e, None).exit()),
        };
        total = got.total_count;
        let n = got.orders.len();
        all.extend(got.orders);
        // Stop on the last page, on an empty page (a server whose count is off), or at a
        // page bound that no real account reaches.
        if !a.all || n == 0 || all.len() as u64 >= total || page >= 10_000 {
            break;
        }
        page += 1;
    }
    if a.api.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            total_count: u64,
            orders: &'a [OrderSummary],
        }
        print_json(&Out {
            total_count: total,
            orders: &all,
        })?;
    } else {
        let rows: Vec<Vec<String>> = all
            .iter()
            .map(|o| {
                let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                vec![
                    o.order_id.to_string(),
                    d(&o.status),
                    d(&o.domain),
                    d(&o.product_code),
                    fmt_ms(o.cert_end_time),
                ]
            })
            .collect();
        table(&["ORDER", "STATUS", "DOMAIN", "PRODUCT", "EXPIRES"], &rows);
        if !a.all && (all.len() as u64) < total {
            eprintln!(
                "cas-certd: showing {} of {total} orders; add --all for every page",
                all.len()
            );
        }
    }
    Ok(ExitCode::from(exit::OK))
}

/// `order show` output; the private key is only said to exist, never shown.
#[derive(serde::Serialize)]
struct ShowOut {
    order_id: OrderId,
    state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    challenge: Option<Challenge>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_id: Option<String>,
    private_key_held_by_cas: bool,
}

fn show_out(id: OrderId, st: CertificateState) -> ShowOut {
    let mut out = ShowOut {
        order_id: id,
        state: String::new(),
        challenge: None,
        certificate: None,
        cert_id: None,
        private_key_held_by_cas: false,
    };
    out.state = match st {
        CertificateState::DomainVerify(c) => {
            out.challenge = Some(c);
            "domain_verify".into()
        }
        CertificateState::Process => "process".into(),
        CertificateState::VerifyFail => "verify_fail".into(),
        CertificateState::Issued(c) => {
            out.certificate = Some(c.certificate);
            out.cert_id = c.cert_id;
            out.private_key_held_by_cas = c.private_key.is_some();
            "certificate".into()
        }
        CertificateState::Payed => "payed".into(),
        CertificateState::Unknow => "unknow".into(),
        CertificateState::Other(t) => t,
    };
    out
}

pub async fn order(cli: &super::Cli, a: &OrderCommand) -> anyhow::Result<ExitCode> {
    let api = match a {
        OrderCommand::Show { api, .. }
        | OrderCommand::Cancel { api, .. }
        | OrderCommand::Delete { api, .. }
        | OrderCommand::Revoke { api, .. } => api,
    };
    if let OrderCommand::Revoke { id, yes: false, .. } = a {
        return Ok(Failure::new(
            exit::USAGE,
            format!("revoking order {id} cannot be undone: add --yes to confirm"),
        )
        .exit());
    }
    let (client, _) = match client(cli, api) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let (id, verb, result) = match a {
        OrderCommand::Show { id, .. } => {
            return match client.describe_certificate_state(*id).await {
                Ok(st) => {
                    let out = show_out(*id, st);
                    if api.json {
                        print_json(&out)?;
                    } else {
                        print_show(&out);
                    }
                    Ok(ExitCode::from(exit::OK))
                }
                Err(e) => Ok(report::api(&e, None).exit()),
            };
        }
        OrderCommand::Cancel { id, .. } => (*id, "cancelled", client.cancel_order(*id).await),
        OrderCommand::Delete { id, .. } => (*id, "deleted", client.delete_certificate(*id).await),
        OrderCommand::Revoke { id, .. } => (*id, "revoked", client.revoke_certificate(*id).await),
    };
    match result {
        Ok(()) => {
            if api.json {
                print_json(&serde_json::json!({ "order_id": id, "result": verb }))?;
            } else {
                println!("order {id} {verb}");
            }
            Ok(ExitCode::from(exit::OK))
        }
        Err(e) => Ok(report::api(&e, None).exit()),
    }
}

fn print_show(o: &ShowOut) {
    println!("order:  {}", o.order_id);
    println!("state:  {}", o.state);
    match &o.challenge {
        Some(Challenge::Dns {
            record_domain,
            record_type,
            record_value,
        }) => println!("proof:  DNS {record_type} {record_domain} = {record_value}"),
        Some(Challenge::File {
            domain,
            uri,
            content,
        }) => println!("proof:  serve {content:?} at http://{domain}{uri}"),
        Some(Challenge::Unknown { validate_type }) => {
            println!("proof:  {validate_type} (details not given)")
        }
        None => {}
    }
    if let Some(id) = &o.cert_id {
        println!("cert:   {id}");
    }
    if let Some(pem) = &o.certificate {
        let n = pem.matches("-----BEGIN CERTIFICATE-----").count();
        println!("chain:  {n} certificate(s); --json for the PEM");
    }
    if o.private_key_held_by_cas {
        println!("key:    made by CAS (not shown)");
    }
}
