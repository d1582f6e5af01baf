//! A loopback DNS server for DNS sources: the tests and `demo` point `sources.dns.nameservers`
//! at it and change its answers while the daemon runs, so "the home server's IP moved" can be
//! shown without the real network.
//!
//! It answers A queries from a table the test sets (`DnsServer::set`), over UDP and TCP on the
//! same port (a resolver may retry over TCP), and can answer NXDOMAIN, SERVFAIL, REFUSED, an
//! empty answer, or nothing at all (a timeout). Every query is counted per name.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// How the server answers a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsAnswer {
    /// These A records, each with this TTL in seconds.
    A {
        /// The addresses.
        addresses: Vec<Ipv4Addr>,
        /// TTL of every record.
        ttl: u32,
    },
    /// The name does not exist.
    NxDomain,
    /// The server failed.
    ServFail,
    /// The server refuses.
    Refused,
    /// The name exists but has no A record (NOERROR, empty answer).
    Empty,
    /// No answer at all: the client times out.
    Silent,
}

impl DnsAnswer {
    /// A records with a TTL.
    pub fn a(addresses: &[Ipv4Addr], ttl: u32) -> DnsAnswer {
        DnsAnswer::A {
            addresses: addresses.to_vec(),
            ttl,
        }
    }
}

#[derive(Debug, Default)]
struct Zone {
    answers: BTreeMap<String, DnsAnswer>,
    queries: BTreeMap<String, usize>,
}

/// A running loopback DNS server; stops when the last handle is dropped.
#[derive(Clone, Debug)]
pub struct DnsServer {
    address: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    _stop: Arc<StopOnDrop>,
}

#[derive(Debug)]
struct StopOnDrop(CancellationToken);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

impl DnsServer {
    /// Binds UDP and TCP on one free loopback port and serves on the current runtime. Names not
    /// set answer NXDOMAIN.
    pub async fn start() -> std::io::Result<DnsServer> {
        // A UDP port whose TCP twin is free too: try a few.
        let mut last_error = None;
        for _ in 0..16 {
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            let address = udp.local_addr()?;
            match TcpListener::bind(address).await {
                Ok(tcp) => return Ok(DnsServer::serve(udp, tcp, address)),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no free port pair")))
    }

    fn serve(udp: UdpSocket, tcp: TcpListener, address: SocketAddr) -> DnsServer {
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = CancellationToken::new();
        tokio::spawn(serve_udp(udp, Arc::clone(&zone), stop.clone()));
        tokio::spawn(serve_tcp(tcp, Arc::clone(&zone), stop.clone()));
        DnsServer {
            address,
            zone,
            _stop: Arc::new(StopOnDrop(stop)),
        }
    }

    /// Where to send queries (`sources.dns.nameservers: [this]`).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sets how `name` is answered from now on.
    pub fn set(&self, name: &str, answer: DnsAnswer) {
        lock(&self.zone).answers.insert(normal(name), answer);
    }

    /// How many queries for `name` arrived so far.
    pub fn queries(&self, name: &str) -> usize {
        lock(&self.zone)
            .queries
            .get(&normal(name))
            .copied()
            .unwrap_or(0)
    }
}

fn lock(zone: &Mutex<Zone>) -> std::sync::MutexGuard<'_, Zone> {
    zone.lock().unwrap_or_else(PoisonError::into_inner)
}

fn normal(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>, stop: CancellationToken) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = socket.recv_from(&mut buffer) => received,
        };
        let Ok((length, peer)) = received else {
            continue;
        };
        if let Some(reply) = answer(&buffer[..length], &zone) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let zone = Arc::clone(&zone);
        let stop = stop.clone();
        tokio::spawn(async move {
            // RFC 1035 4.2.2: each message is preceded by its two-byte length.
            let exchange = async {
                let length = stream.read_u16().await.ok()?;
                let mut query = vec![0u8; usize::from(length)];
                stream.read_exact(&mut query).await.ok()?;
                let reply = answer(&query, &zone)?;
                let length = u16::try_from(reply.len()).ok()?;
                stream.write_u16(length).await.ok()?;
                stream.write_all(&reply).await.ok()
            };
            tokio::select! {
                () = stop.cancelled() => {}
                _ = exchange => {}
            }
        });
    }
}

/// The reply to one query message; `None` to stay silent (or for a message that is not a query).
fn answer(query: &[u8], zone: &Mutex<Zone>) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let question = request.queries.first()?.clone();
    let name = normal(&question.name.to_ascii());
    let found = {
        let mut zone = lock(zone);
        *zone.queries.entry(name.clone()).or_insert(0) += 1;
        zone.answers
            .get(&name)
            .cloned()
            .unwrap_or(DnsAnswer::NxDomain)
    };
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_query(question.clone());
    match found {
        DnsAnswer::Silent => return None,
        DnsAnswer::NxDomain => reply.metadata.response_code = ResponseCode::NXDomain,
        DnsAnswer::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        DnsAnswer::Refused => reply.metadata.response_code = ResponseCode::Refused,
        DnsAnswer::Empty => {}
        DnsAnswer::A { addresses, ttl } => {
            if question.query_type == RecordType::A {
                for ip in addresses {
                    reply.add_answer(Record::from_rdata(
                        question.name.clone(),
                        ttl,
                        RData::A(A(ip)),
                    ));
                }
            }
        }
    }
    reply.to_vec().ok()
}
