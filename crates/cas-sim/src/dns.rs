//! Alidns 2015-01-09 actions over the simulator's own records, in the zones given by `--zone`.
use serde_json::{json, Value};

use super::reject::Reject;
use super::server::Params;
use super::state::Record;
use super::Sim;

type Answer = Result<(Value, Option<u64>), Reject>;

/// Record types Alidns accepts (AddDomainRecord's `Type`).
const RECORD_TYPES: &[&str] = &[
    "A",
    "NS",
    "MX",
    "TXT",
    "CNAME",
    "SRV",
    "AAAA",
    "CAA",
    "REDIRECT_URL",
    "FORWARD_URL",
];

fn get<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, Reject> {
    get(p, name).ok_or_else(|| Reject::missing(name))
}

fn no_zone() -> Reject {
    Reject::new(
        400,
        "InvalidDomainName.NoExist",
        "The specified domain name does not exist. Refresh the page and try again.",
    )
}

fn zone(sim: &Sim, name: &str) -> Result<String, Reject> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    sim.opts
        .zones
        .iter()
        .find(|z| z.eq_ignore_ascii_case(&n))
        .map(|z| z.to_ascii_lowercase())
        .ok_or_else(no_zone)
}

pub(crate) async fn dispatch(sim: &Sim, action: &str, p: &Params) -> Answer {
    match action {
        "AddDomainRecord" => add(sim, p).await,
        "DeleteDomainRecord" => delete(sim, p).await,
        "DescribeDomainRecords" => describe(sim, p).await,
        "DescribeSubDomainRecords" => describe_sub(sim, p).await,
        "GetMainDomainName" => main_domain(sim, p),
        "" => Err(Reject::missing("Action")),
        _ => Err(Reject::new(
            404,
            "InvalidAction.NotFound",
            format!("Specified api is not found, please check your url and method: {action}"),
        )),
    }
}

fn record_json(r: &Record) -> Value {
    json!({"RecordId": r.id, "RR": r.rr, "Type": r.rtype, "Value": r.value, "TTL": r.ttl,
           "DomainName": r.zone, "Line": "default", "Status": "ENABLE", "Locked": false, "Weight": 1})
}

async fn add(sim: &Sim, p: &Params) -> Answer {
    let zone = zone(sim, req(p, "DomainName")?)?;
    let rr = req(p, "RR")?.to_ascii_lowercase();
    let rtype = req(p, "Type")?.to_ascii_uppercase();
    if !RECORD_TYPES.contains(&rtype.as_str()) {
        return Err(Reject::invalid(
            "Type",
            &format!("{rtype:?}: one of {}", RECORD_TYPES.join(", ")),
        ));
    }
    let value = req(p, "Value")?.to_string();
    let ttl = Reject::int_param(get(p, "TTL"), "TTL", 600, 600, 86_400)? as i64;
    let mut st = sim.state.lock().await;
    if st
        .records
        .iter()
        .any(|r| r.zone == zone && r.rr == rr && r.rtype == rtype && r.value == value)
    {
        return Err(Reject::new(
            400,
            "DomainRecordDuplicate",
            "The DNS record already exists.",
        ));
    }
    st.next_record += 1;
    let id = (100_000_000_000_000_000u64 + st.next_record).to_string();
    st.records.push(Record {
        id: id.clone(),
        zone,
        rr,
        rtype,
        value,
        ttl,
    });
    sim.persist(&st)
        .map_err(|e| Reject::new(500, "InternalError", format!("simulator state: {e}")))?;
    Ok((json!({"RecordId": id}), None))
}

async fn delete(sim: &Sim, p: &Params) -> Answer {
    let id = req(p, "RecordId")?;
    let mut st = sim.state.lock().await;
    let before = st.records.len();
    st.records.retain(|r| r.id != id);
    if st.records.len() == before {
        return Err(Reject::new(
            400,
            "DomainRecordNotBelongToUser",
            "The DNS record does not exist or does not belong to you.",
        ));
    }
    sim.persist(&st)
        .map_err(|e| Reject::new(500, "InternalError", format!("simulator state: {e}")))?;
    Ok((json!({"RecordId": id}), None))
}

fn page(p: &Params, hits: Vec<&Record>) -> Result<Value, Reject> {
    let num = Reject::int_param(get(p, "PageNumber"), "PageNumber", 1, 1, usize::MAX)?;
    let size = Reject::int_param(get(p, "PageSize"), "PageSize", 20, 1, 500)?;
    let total = hits.len();
    let recs: Vec<Value> = hits
        .into_iter()
        .skip((num - 1) * size)
        .take(size)
        .map(record_json)
        .collect();
    Ok(
        json!({"TotalCount": total, "PageNumber": num, "PageSize": size, "DomainRecords": {"Record": recs}}),
    )
}

async fn describe(sim: &Sim, p: &Params) -> Answer {
    let zone = zone(sim, req(p, "DomainName")?)?;
    let rrk = get(p, "RRKeyWord").map(str::to_ascii_lowercase);
    let tk = get(p, "TypeKeyWord").map(str::to_ascii_uppercase);
    let vk = get(p, "ValueKeyWord").map(str::to_ascii_lowercase);
    let ty = get(p, "Type").map(str::to_ascii_uppercase);
    // KeyWord alone is a LIKE search over RR and value (the SDK model's SearchMode default).
    let kw = get(p, "KeyWord").map(str::to_ascii_lowercase);
    let st = sim.state.lock().await;
    let hits: Vec<&Record> = st
        .records
        .iter()
        .filter(|r| r.zone == zone)
        .filter(|r| rrk.as_deref().is_none_or(|k| r.rr.contains(k)))
        .filter(|r| tk.as_deref().is_none_or(|k| r.rtype == k))
        .filter(|r| ty.as_deref().is_none_or(|k| r.rtype == k))
        .filter(|r| {
            vk.as_deref()
                .is_none_or(|k| r.value.to_ascii_lowercase().contains(k))
        })
        .filter(|r| {
            kw.as_deref()
                .is_none_or(|k| r.rr.contains(k) || r.value.to_ascii_lowercase().contains(k))
        })
        .collect();
    Ok((page(p, hits)?, None))
}

async fn describe_sub(sim: &Sim, p: &Params) -> Answer {
    let sub = req(p, "SubDomain")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let tk = get(p, "Type").map(str::to_ascii_uppercase);
    if !sim.opts.zones.iter().any(|z| {
        let z = z.to_ascii_lowercase();
        sub == z || sub.ends_with(&format!(".{z}"))
    }) {
        return Err(no_zone());
    }
    let st = sim.state.lock().await;
    let hits: Vec<&Record> = st
        .records
        .iter()
        .filter(|r| r.fqdn() == sub)
        .filter(|r| tk.as_deref().is_none_or(|k| r.rtype == k))
        .collect();
    Ok((page(p, hits)?, None))
}

/// Splits a name into zone and RR: the longest `--zone` suffix, else the last two labels.
fn main_domain(sim: &Sim, p: &Params) -> Answer {
    let input = req(p, "InputString")?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let zone = sim
        .opts
        .zones
        .iter()
        .map(|z| z.to_ascii_lowercase())
        .filter(|z| input == *z || input.ends_with(&format!(".{z}")))
        .max_by_key(String::len)
        .unwrap_or_else(|| {
            let labels: Vec<&str> = input.rsplitn(3, '.').collect();
            labels
                .iter()
                .take(2)
                .rev()
                .copied()
                .collect::<Vec<_>>()
                .join(".")
        });
    let rr = if input == zone {
        "@".to_string()
    } else {
        input[..input.len().saturating_sub(zone.len() + 1)].to_string()
    };
    let level = input.split('.').count();
    Ok((
        json!({"DomainName": zone, "RR": rr, "DomainLevel": level}),
        None,
    ))
}
