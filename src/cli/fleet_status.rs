//! `status` in fleet mode (feature `fleet`, issue 12 items 4 and 5): what etcd says of every
//! configured certificate, read by this command itself on any host — the owner, the phase of
//! its record, the published set's version and each host's live version, and which live hosts
//! have not acknowledged a published FILE proof. Read-only, and without the fleet key: records
//! are read with their keys sealed. etcd not answering is one line (`available: false`), never
//! an error of the command: this host's own rows are shown all the same.
use std::collections::BTreeMap;
use std::time::Duration;

use cas_api::model::OrderId;
use cas_certd::config::{Config, FleetSettings};
use cas_certd::fleet::fanout::{fleet_view, proof_status};
use cas_certd::fleet::{live_nodes, owner_of, record_status, Fleet, FleetError};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::status::columns;

/// How many certificates are read from etcd at once (each is a handful of small reads).
const CONCURRENCY: usize = 16;
/// How long the whole fleet view may take. etcd away costs the client's retry budget (10 s);
/// a member that never answers is given up on here.
const FLEET_TIMEOUT: Duration = Duration::from_secs(20);

/// The fleet as etcd shows it; `--json`'s `fleet` object (field names documented in
/// docs/FLEET.md, "status").
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetStatus {
    /// This host's node name.
    pub node: String,
    /// Whether etcd answered. When not, `error` says why and the lists are empty.
    pub available: bool,
    pub error: Option<String>,
    /// The live nodes (their lease-bound `nodes/<node>` key exists), sorted.
    pub nodes: Vec<String>,
    /// One per certificate configured on this host, in configuration order.
    pub certificates: Vec<FleetCert>,
}

/// One certificate in etcd.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetCert {
    pub name: String,
    /// The node holding the certificate's owner key; `None`: nobody owns it now.
    pub owner: Option<String>,
    /// The phase of the record in etcd (`idle`, `ordered`, ..., `deployed`); `None`: no record.
    pub state: Option<String>,
    pub order_id: Option<OrderId>,
    pub not_after: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// The version of the published issued set; `None`: none published.
    pub published: Option<i64>,
    /// Every live node, and every node that still reports a version without being live.
    pub hosts: Vec<HostVersion>,
    /// The FILE proof published for the open order; `None`: none.
    pub proof: Option<ProofAcks>,
}

/// What one node has live for a certificate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostVersion {
    pub node: String,
    /// The set version it reports live; `None`: it reported none.
    pub version: Option<i64>,
    /// The node is not live (a host that left, or died, after reporting `version`).
    pub left: bool,
}

/// Which live nodes wrote the published proof.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProofAcks {
    pub order_id: u64,
    pub acked: Vec<String>,
    /// Live nodes that have not acknowledged this order's proof.
    pub missing: Vec<String>,
}

/// Reads the fleet; etcd away (or too slow) gives `available: false` with the reason.
pub async fn gather(cfg: &Config, s: &FleetSettings) -> FleetStatus {
    let down = |error: String| FleetStatus {
        node: s.node.clone(),
        available: false,
        // One line, whatever the client's error holds.
        error: Some(error.split_whitespace().collect::<Vec<_>>().join(" ")),
        nodes: Vec::new(),
        certificates: Vec::new(),
    };
    let at = s.etcd.join(", ");
    match tokio::time::timeout(FLEET_TIMEOUT, read(cfg, s)).await {
        Ok(Ok(v)) => v,
        Ok(Err(FleetError::Etcd(etcd_client::Error::GRpcStatus(st)))) => {
            let cause = innermost(&st).map(|r| format!(": {r}")).unwrap_or_default();
            down(format!("etcd at {at}: {}{cause}", st.message()))
        }
        Ok(Err(e)) => down(e.to_string()),
        Err(_) => down(format!(
            "etcd at {at} did not answer within {}s",
            FLEET_TIMEOUT.as_secs()
        )),
    }
}

/// The innermost cause under `e`: under a gRPC status, the transport's own error
/// (`Connection refused (os error 111)`; the status's text holds a debug dump of the chain).
fn innermost<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    let mut root = None;
    let mut next = e.source();
    while let Some(e) = next {
        root = Some(e);
        next = e.source();
    }
    root
}

async fn read(cfg: &Config, s: &FleetSettings) -> Result<FleetStatus, FleetError> {
    let fleet = Fleet::connect(s).await?;
    let nodes = live_nodes(&fleet).await?;
    let names: Vec<String> = cfg.certificates.iter().map(|c| c.name.clone()).collect();
    let mut certificates = Vec::with_capacity(names.len());
    for chunk in names.chunks(CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for (i, name) in chunk.iter().enumerate() {
            let (fleet, name, nodes) = (fleet.clone(), name.clone(), nodes.clone());
            tasks.spawn(async move { (i, certificate(&fleet, &name, &nodes).await) });
        }
        let mut got: Vec<Option<FleetCert>> = vec![None; chunk.len()];
        while let Some(done) = tasks.join_next().await {
            let (i, c) = done.map_err(|e| FleetError::Unexpected {
                cert: String::new(),
                what: format!("a status read failed: {e}"),
            })?;
            if let Some(slot) = got.get_mut(i) {
                *slot = Some(c?);
            }
        }
        certificates.extend(got.into_iter().flatten());
    }
    Ok(FleetStatus {
        node: s.node.clone(),
        available: true,
        error: None,
        nodes,
        certificates,
    })
}

async fn certificate(fleet: &Fleet, name: &str, nodes: &[String]) -> Result<FleetCert, FleetError> {
    let owner = owner_of(fleet, name).await?.map(|(node, _)| node);
    let row = record_status(fleet, name).await?;
    let view = fleet_view(fleet, name).await?;
    let proof = proof_status(fleet, name, nodes).await?;
    Ok(FleetCert {
        name: name.to_string(),
        owner,
        state: row.as_ref().map(|r| r.state.clone()),
        order_id: row.as_ref().and_then(|r| r.order_id),
        not_after: row.as_ref().and_then(|r| r.not_after),
        last_error: row.and_then(|r| r.last_error),
        published: view.published,
        hosts: hosts(nodes, &view.live),
        proof: proof.map(|p| ProofAcks {
            order_id: p.order_id,
            acked: p.acked,
            missing: p.missing,
        }),
    })
}

/// Every live node with the version it reports (if any), and every node reporting one that is
/// not live, marked as having left; sorted by node.
fn hosts(nodes: &[String], live: &[(String, i64)]) -> Vec<HostVersion> {
    let mut all: BTreeMap<&str, HostVersion> = nodes
        .iter()
        .map(|n| {
            (
                n.as_str(),
                HostVersion {
                    node: n.clone(),
                    version: None,
                    left: false,
                },
            )
        })
        .collect();
    for (node, version) in live {
        all.entry(node.as_str())
            .or_insert_with(|| HostVersion {
                node: node.clone(),
                version: None,
                left: true,
            })
            .version = Some(*version);
    }
    all.into_values().collect()
}

/// The fleet table printed under this host's rows.
pub fn table(f: &FleetStatus) -> String {
    if !f.available {
        return format!(
            "FLEET (node {}): etcd not answering ({}); only this host's rows are shown\n",
            f.node,
            shown(f.error.as_deref().unwrap_or("no reason given"))
        );
    }
    let dash = || "-".to_string();
    let mut lines = vec![[
        "NAME".to_string(),
        "OWNER".into(),
        "STATE".into(),
        "ORDER".into(),
        "SET".into(),
        "LIVE (node=version)".into(),
        "PROOF".into(),
    ]];
    for c in &f.certificates {
        let live: Vec<String> = c
            .hosts
            .iter()
            .map(|h| {
                let v = h.version.map_or_else(dash, |v| v.to_string());
                let left = if h.left { " (left)" } else { "" };
                format!("{}={v}{left}", h.node)
            })
            .collect();
        let proof = c.proof.as_ref().map_or_else(dash, |p| {
            if p.missing.is_empty() {
                format!("order {}: acked by every live node", p.order_id)
            } else {
                format!("order {}: not acked by {}", p.order_id, p.missing.join(","))
            }
        });
        lines.push([
            c.name.clone(),
            c.owner.clone().unwrap_or_else(dash),
            c.state.clone().unwrap_or_else(dash),
            c.order_id.map_or_else(dash, |o| o.to_string()),
            c.published.map_or_else(dash, |v| v.to_string()),
            if live.is_empty() {
                dash()
            } else {
                live.join(" ")
            },
            proof,
        ]);
    }
    let lines: Vec<[String; 7]> = lines.into_iter().map(|l| l.map(|c| shown(&c))).collect();
    format!(
        "FLEET (node {}; live nodes: {})\n{}",
        f.node,
        if f.nodes.is_empty() {
            "none".to_string()
        } else {
            shown(&f.nodes.join(", "))
        },
        columns(&lines)
    )
}

/// `s` with every control character shown as `?`: names and errors come from etcd, and the
/// table goes to a terminal (no escape sequence of theirs reaches it; `--json` escapes them).
fn shown(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cert(name: &str) -> FleetCert {
        FleetCert {
            name: name.into(),
            owner: None,
            state: None,
            order_id: None,
            not_after: None,
            last_error: None,
            published: None,
            hosts: Vec::new(),
            proof: None,
        }
    }

    /// A live node without a report, a live one with, and one that left but still reports.
    #[test]
    fn hosts_lists_live_nodes_and_marks_those_that_left() {
        let nodes = vec!["web-1".to_string(), "web-2".to_string()];
        let live = vec![("web-2".to_string(), 3), ("web-9".to_string(), 2)];
        let h = hosts(&nodes, &live);
        let got: Vec<(&str, Option<i64>, bool)> = h
            .iter()
            .map(|h| (h.node.as_str(), h.version, h.left))
            .collect();
        assert_eq!(
            got,
            [
                ("web-1", None, false),
                ("web-2", Some(3), false),
                ("web-9", Some(2), true)
            ]
        );
    }

    #[test]
    fn the_table_shows_owner_state_versions_and_missing_acknowledgements() {
        let mut c0 = cert("c0");
        c0.owner = Some("web-2".into());
        c0.state = Some("deployed".into());
        c0.order_id = Some(OrderId(42));
        c0.published = Some(2);
        c0.hosts = hosts(
            &["web-1".into(), "web-2".into()],
            &[("web-1".into(), 2), ("web-3".into(), 1)],
        );
        let mut c1 = cert("c1");
        // A name from etcd never writes an escape sequence to the terminal.
        c1.owner = Some("web-\u{1b}[2J1".into());
        c1.state = Some("presented".into());
        c1.proof = Some(ProofAcks {
            order_id: 7,
            acked: vec!["web-1".into()],
            missing: vec!["web-2".into()],
        });
        let f = FleetStatus {
            node: "web-1".into(),
            available: true,
            error: None,
            nodes: vec!["web-1".into(), "web-2".into()],
            certificates: vec![c0, c1, cert("c2")],
        };
        let t = table(&f);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert_eq!(lines[0], "FLEET (node web-1; live nodes: web-1, web-2)");
        assert!(
            lines[1].starts_with("NAME") && lines[1].contains("OWNER"),
            "{t}"
        );
        let cells = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[2]),
            [
                "c0", "web-2", "deployed", "42", "2", "web-1=2", "web-2=-", "web-3=1", "(left)",
                "-"
            ]
        );
        assert!(
            lines[3].contains("presented") && lines[3].ends_with("order 7: not acked by web-2"),
            "{t}"
        );
        assert!(
            lines[3].contains(" web-?[2J1 ") && !t.contains('\u{1b}'),
            "{t}"
        );
        assert_eq!(cells(lines[4]), ["c2", "-", "-", "-", "-", "-", "-"]);
        // Columns line up: every row's owner starts where the header's does.
        let at = lines[1].find("OWNER").unwrap();
        assert!(lines[2..].iter().all(|l| &l[at..at + 1] != " "), "{t}");
    }

    #[test]
    fn etcd_away_is_one_line_naming_the_node_and_the_reason() {
        let f = FleetStatus {
            node: "web-1".into(),
            available: false,
            error: Some("etcd: connection refused".into()),
            nodes: Vec::new(),
            certificates: Vec::new(),
        };
        let t = table(&f);
        assert_eq!(t.lines().count(), 1);
        assert!(
            t.contains("web-1") && t.contains("connection refused"),
            "{t}"
        );
    }

    /// `--json`'s field names are an interface (docs/FLEET.md): renaming one fails here.
    #[test]
    fn the_json_field_names_are_stable() {
        let mut c = cert("c0");
        c.hosts = hosts(&["web-1".into()], &[("web-1".into(), 1)]);
        c.proof = Some(ProofAcks {
            order_id: 7,
            acked: vec![],
            missing: vec!["web-1".into()],
        });
        let f = FleetStatus {
            node: "web-1".into(),
            available: true,
            error: None,
            nodes: vec!["web-1".into()],
            certificates: vec![c],
        };
        let v = serde_json::to_value(&f).unwrap();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            ["available", "certificates", "error", "node", "nodes"]
        );
        let c = &v["certificates"][0];
        assert_eq!(
            keys(c),
            [
                "hosts",
                "last_error",
                "name",
                "not_after",
                "order_id",
                "owner",
                "proof",
                "published",
                "state"
            ]
        );
        assert_eq!(keys(&c["hosts"][0]), ["left", "node", "version"]);
        assert_eq!(keys(&c["proof"]), ["acked", "missing", "order_id"]);
    }
}
