use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([10, 0, 0, last])
}

fn send(traffic: &PeerTraffic, received: u64, sent: u64) {
    traffic.received.fetch_add(received, Ordering::Relaxed);
    traffic.sent.fetch_add(sent, Ordering::Relaxed);
    traffic.requests.fetch_add(1, Ordering::Relaxed);
}

fn series(snapshot: &PeerSnapshot, last: u8) -> Option<Totals> {
    snapshot
        .named
        .iter()
        .find(|(p, _)| *p == ip(last))
        .map(|(_, t)| *t)
}

#[test]
fn keeps_the_biggest_peers_by_name_and_the_rest_as_other() {
    let table = PeerTable::new(2);
    let a = table.connect(ip(1));
    let b = table.connect(ip(2));
    let c = table.connect(ip(3));
    send(&a, 1000, 10);
    send(&b, 10, 5);
    send(&c, 500, 500);

    let snapshot = table.snapshot();
    assert_eq!(snapshot.named.len(), 2);
    assert_eq!(series(&snapshot, 1), Some(Totals([1000, 10, 1, 1])));
    assert_eq!(series(&snapshot, 3), Some(Totals([500, 500, 1, 1])));
    assert_eq!(snapshot.other, Totals([10, 5, 1, 1]));
}

#[test]
fn a_demoted_peer_never_makes_a_counter_go_down_and_nothing_is_counted_twice() {
    let table = PeerTable::new(1);
    let a = table.connect(ip(1));
    let b = table.connect(ip(2));
    send(&a, 100, 0);
    let first = table.snapshot();
    assert_eq!(series(&first, 1), Some(Totals([100, 0, 1, 1])));
    assert_eq!(first.other, Totals([0, 0, 0, 1]));

    // b overtakes a: a's new bytes go to `other`, a's series is no longer exposed.
    send(&b, 300, 0);
    send(&a, 7, 0);
    let second = table.snapshot();
    assert_eq!(series(&second, 1), None);
    // b's connection was settled into `other` at the first scrape, its bytes start its series.
    assert_eq!(series(&second, 2), Some(Totals([300, 0, 1, 0])));
    assert_eq!(second.other, Totals([7, 0, 1, 1]));

    // a overtakes b again: its series restarts from the traffic since the last scrape.
    send(&a, 1000, 0);
    let third = table.snapshot();
    assert_eq!(series(&third, 1), Some(Totals([1000, 0, 1, 0])));
    assert_eq!(series(&third, 2), None);
    assert_eq!(third.other, second.other, "other never goes down");

    // Every byte was added once: the increases of all exposed series sum to the traffic.
    let received = |t: Option<Totals>| t.map_or(0, |t| t.0[0]);
    let increases = received(series(&first, 1))
        + first.other.0[0]
        + received(series(&second, 2))
        + (second.other.0[0] - first.other.0[0])
        + received(series(&third, 1))
        + (third.other.0[0] - second.other.0[0]);
    let traffic = a.received.load(Ordering::Relaxed) + b.received.load(Ordering::Relaxed);
    assert_eq!(increases, traffic);
}

#[test]
fn settled_peers_without_series_or_connections_are_forgotten() {
    let table = PeerTable::new(1);
    let a = table.connect(ip(1));
    send(&a, 50, 50);
    for last in 2..10 {
        let small = table.connect(ip(last));
        send(&small, 1, 1);
    }
    let snapshot = table.snapshot();
    assert_eq!(snapshot.other, Totals([8, 8, 8, 8]));
    assert_eq!(table.lock().peers.len(), 1, "only the named peer is kept");
    // A forgotten peer that comes back starts afresh, and `other` keeps its past.
    let again = table.connect(ip(2));
    send(&again, 1, 0);
    assert_eq!(table.snapshot().other, Totals([9, 8, 9, 9]));
}

#[test]
fn exposition_uses_the_contract_names() {
    let mut registry = prometheus_client::registry::Registry::default();
    let table = Arc::new(PeerTable::new(4));
    registry.register_collector(Box::new(table.clone()));
    let a = table.connect(ip(1));
    send(&a, 3, 4);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("snug_peer_received_bytes_total{peer=\"10.0.0.1\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("snug_peer_sent_bytes_total{peer=\"10.0.0.1\"} 4\n"),
        "{text}"
    );
    assert!(
        text.contains("snug_peer_requests_total{peer=\"other\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("snug_peer_connections_total{peer=\"10.0.0.1\"} 1\n"),
        "{text}"
    );
}
