//! `--dns-listen`: an authoritative DNS server for the `--zone`s, answering from the
//! simulator's own Alidns records, so a client can look a DNS proof up the way the CA does.
//! UDP and TCP on the same address; TXT, CNAME, A and AAAA from the records; SOA and NS at
//! each zone's apex (`ns.<zone>`, synthesized); NXDOMAIN or NODATA with the SOA otherwise;
//! REFUSED outside the zones. hickory-proto parses and builds the messages; nothing else of a
//! DNS server (no recursion, no zone transfer, no EDNS options) is offered.
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::Sim;

const TTL: u32 = 60;

/// Binds UDP and TCP on `addr` (UDP first: with port 0, TCP takes the port UDP got).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

/// Serves until the task running it is aborted (both loops run in that task).
pub(crate) async fn serve(udp: UdpSocket, tcp: TcpListener, sim: Arc<Sim>) {
    tokio::join!(serve_udp(udp, &sim), serve_tcp(tcp, &sim));
}

async fn serve_udp(udp: UdpSocket, sim: &Arc<Sim>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(mut out) = answer(sim, &buf[..n]).await {
            if out.len() > 512 {
                out = truncated(&buf[..n]).unwrap_or_default();
            }
            let _ = udp.send_to(&out, peer).await;
        }
    }
}

async fn serve_tcp(tcp: TcpListener, sim: &Arc<Sim>) {
    loop {
        let Ok((mut s, _)) = tcp.accept().await else {
            continue;
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            // RFC 1035 4.2.2: each message is preceded by its length.
            let mut len = [0u8; 2];
            while s.read_exact(&mut len).await.is_ok() {
                let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
                if s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let Some(out) = answer(&sim, &buf).await else {
                    return;
                };
                let Ok(n) = u16::try_from(out.len()) else {
                    return;
                };
                let mut framed = n.to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if s.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// An empty answer with TC set: the client asks again over TCP.
fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut m = reply(&q);
    m.set_truncated(true);
    m.to_vec().ok()
}

fn reply(q: &Message) -> Message {
    let mut m = Message::new();
    m.set_id(q.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_authoritative(true)
        .set_recursion_desired(q.recursion_desired())
        .set_recursion_available(false);
    m.add_queries(q.queries().iter().cloned());
    m
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(format!("{s}.")).ok()
}

fn soa(zone: &str) -> Option<Record> {
    let rdata = SOA::new(
        name(&format!("ns.{zone}"))?,
        name(&format!("hostmaster.{zone}"))?,
        1,
        3600,
        600,
        86400,
        TTL,
    );
    Some(Record::from_rdata(name(zone)?, TTL, RData::SOA(rdata)))
}

/// The answer to one message (`None`: not a query worth answering).
async fn answer(sim: &Sim, bytes: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(bytes).ok()?;
    if q.message_type() != MessageType::Query {
        return None;
    }
    let mut m = reply(&q);
    let Some(query) = q.queries().first() else {
        m.set_response_code(ResponseCode::FormErr);
        return m.to_vec().ok();
    };
    let qname = query
        .name()
        .to_ascii()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let qtype = query.query_type();
    // The longest zone holding the name.
    let zone = sim
        .opts
        .zones
        .iter()
        .map(|z| z.to_ascii_lowercase())
        .filter(|z| qname == *z || qname.ends_with(&format!(".{z}")))
        .max_by_key(String::len);
    let Some(zone) = zone else {
        m.set_response_code(ResponseCode::Refused);
        m.set_authoritative(false);
        return m.to_vec().ok();
    };
    let records: Vec<_> = {
        let st = sim.state.lock().await;
        st.records
            .iter()
            .filter(|r| r.zone.eq_ignore_ascii_case(&zone) && r.fqdn().eq_ignore_ascii_case(&qname))
            .cloned()
            .collect()
    };
    let owner = query.name().clone();
    let mut answers = Vec::new();
    if qname == zone {
        match qtype {
            RecordType::SOA => answers.extend(soa(&zone)),
            RecordType::NS => answers.extend(
                name(&format!("ns.{zone}"))
                    .map(|ns| Record::from_rdata(owner.clone(), TTL, RData::NS(NS(ns)))),
            ),
            _ => {}
        }
    }
    for r in &records {
        let rdata = match (r.rtype.as_str(), qtype) {
            ("TXT", RecordType::TXT) => {
                // One TXT string holds at most 255 bytes: longer values are split.
                let parts = r
                    .value
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                Some(RData::TXT(TXT::new(parts)))
            }
            ("CNAME", RecordType::CNAME) => name(&r.value).map(|n| RData::CNAME(CNAME(n))),
            ("A", RecordType::A) => r.value.parse().ok().map(|ip| RData::A(A(ip))),
            ("AAAA", RecordType::AAAA) => r.value.parse().ok().map(|ip| RData::AAAA(AAAA(ip))),
            _ => None,
        };
        if let Some(rdata) = rdata {
            answers.push(Record::from_rdata(
                owner.clone(),
                r.ttl.clamp(1, 86400) as u32,
                rdata,
            ));
        }
    }
    if answers.is_empty() {
        // NODATA when the name exists (a record of another type, or the apex), else NXDOMAIN.
        if records.is_empty() && qname != zone {
            m.set_response_code(ResponseCode::NXDomain);
        }
        m.add_name_servers(soa(&zone));
    } else {
        m.add_answers(answers);
    }
    m.to_vec().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;
    use crate::state::{Record as SimRecord, State};
    use crate::{auth, ca, faults, SimOptions};

    fn sim(dir: &std::path::Path) -> Sim {
        let mut st = State::default();
        st.records.push(SimRecord {
            id: "1".into(),
            zone: "example.com".into(),
            rr: "_dnsauth.www".into(),
            rtype: "TXT".into(),
            value: "v".repeat(300),
            ttl: 600,
        });
        Sim {
            verifier: std::sync::Mutex::new(auth::Verifier::new(&[])),
            faults: std::sync::Mutex::new(faults::Faults::new(Default::default())),
            balancer: crate::validate::Balancer::new(0),
            held: std::sync::Mutex::default(),
            state: tokio::sync::Mutex::new(st),
            state_path: dir.join("state.json"),
            ca: ca::Ca::open(&dir.join("ca")).unwrap(),
            opts: SimOptions {
                zones: vec!["example.com".into()],
                ..Default::default()
            },
        }
    }

    async fn ask(sim: &Sim, name: &str, t: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        Message::from_vec(&answer(sim, &q.to_vec().unwrap()).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn answers_from_the_records_of_its_zones_only() {
        let dir = tempfile::tempdir().unwrap();
        let sim = sim(dir.path());
        let m = ask(&sim, "_DNSAUTH.www.example.com.", RecordType::TXT).await;
        assert_eq!((m.id(), m.response_code()), (7, ResponseCode::NoError));
        assert!(m.authoritative());
        let RData::TXT(txt) = m.answers()[0].data() else {
            panic!("{m:?}")
        };
        // Split into strings of at most 255 bytes, which join back to the value.
        assert_eq!(txt.txt_data().len(), 2);
        assert_eq!(txt.txt_data().concat(), "v".repeat(300).into_bytes());

        let m = ask(&sim, "_dnsauth.www.example.com.", RecordType::A).await;
        assert_eq!(m.response_code(), ResponseCode::NoError, "NODATA");
        assert!(m.answers().is_empty() && !m.name_servers().is_empty());
        let m = ask(&sim, "_dnsauth.example.com.", RecordType::TXT).await;
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = ask(&sim, "example.com.", RecordType::NS).await;
        assert_eq!(m.answers().len(), 1);
        let m = ask(&sim, "example.com.", RecordType::SOA).await;
        assert_eq!(m.answers().len(), 1);
        let m = ask(&sim, "www.example.org.", RecordType::TXT).await;
        assert_eq!(m.response_code(), ResponseCode::Refused);
    }
}
