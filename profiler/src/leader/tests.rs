use super::*;
use crate::fake_api::{self, status};
use serde_json::{Value, json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/snug-system/leases";

fn elector(client: Client, identity: &str) -> LeaderElector {
    LeaderElector::new(
        client,
        LeaseConfig::new("snug-profiler", "snug-system", identity),
    )
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn lease(holder: &str, renewed: i64, transitions: i32) -> Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "snug-profiler", "namespace": "snug-system", "resourceVersion": "7"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": at(0).to_string(), "renewTime": at(renewed).to_string(),
                 "leaseTransitions": transitions}})
}

#[tokio::test]
async fn creates_the_lease_when_there_is_none() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            404,
            status(404, "NotFound"),
        )
        .await;
        api.expect("POST", LEASES, 201, lease("a", 0, 0)).await
    });
    let role = elector(client, "a")
        .try_acquire_or_renew(at(0))
        .await
        .unwrap();
    let created = server.await.unwrap();
    assert_eq!(role, Role::Leader);
    assert_eq!(created.body["spec"]["holderIdentity"], "a");
    assert_eq!(created.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(created.body["spec"]["leaseTransitions"], 0);
}

#[tokio::test]
async fn stands_by_while_another_holder_renews() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 10, 0),
        )
        .await;
    });
    let role = elector(client, "b")
        .try_acquire_or_renew(at(20))
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(role, Role::Standby(Some("a".into())));
}

#[tokio::test]
async fn takes_over_an_expired_lease_with_its_resource_version() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 10, 3),
        )
        .await;
        api.expect(
            "PUT",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("b", 26, 4),
        )
        .await
    });
    let role = elector(client, "b")
        .try_acquire_or_renew(at(26))
        .await
        .unwrap();
    let put = server.await.unwrap();
    assert_eq!(role, Role::Leader);
    assert_eq!(
        put.body["metadata"]["resourceVersion"], "7",
        "optimistic concurrency"
    );
    assert_eq!(put.body["spec"]["holderIdentity"], "b");
    assert_eq!(put.body["spec"]["leaseTransitions"], 4);
    assert_eq!(put.body["spec"]["renewTime"], json!(MicroTime(at(26))));
}

#[tokio::test]
async fn renewal_keeps_acquire_time_and_transitions() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 10, 2),
        )
        .await;
        api.expect(
            "PUT",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 15, 2),
        )
        .await
    });
    let role = elector(client, "a")
        .try_acquire_or_renew(at(15))
        .await
        .unwrap();
    let put = server.await.unwrap();
    assert_eq!(role, Role::Leader);
    assert_eq!(put.body["spec"]["leaseTransitions"], 2);
    assert_eq!(put.body["spec"]["acquireTime"], json!(MicroTime(at(0))));
    assert_eq!(put.body["spec"]["renewTime"], json!(MicroTime(at(15))));
}

#[tokio::test]
async fn losing_the_race_for_a_lease_means_standby() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 0, 0),
        )
        .await;
        api.expect(
            "PUT",
            &format!("{LEASES}/snug-profiler"),
            409,
            status(409, "Conflict"),
        )
        .await;
    });
    let role = elector(client, "b")
        .try_acquire_or_renew(at(60))
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(role, Role::Standby(Some("a".into())));
}

#[tokio::test]
async fn release_clears_the_holder_so_a_standby_need_not_wait() {
    let (client, mut api) = fake_api::client();
    let server = tokio::spawn(async move {
        api.expect(
            "GET",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("a", 10, 0),
        )
        .await;
        api.expect(
            "PUT",
            &format!("{LEASES}/snug-profiler"),
            200,
            lease("", 10, 0),
        )
        .await
    });
    elector(client, "a").release().await.unwrap();
    let put = server.await.unwrap();
    assert!(
        put.body["spec"]
            .get("holderIdentity")
            .is_none_or(Value::is_null),
        "{}",
        put.body
    );
}

#[test]
fn expiry_counts_from_the_last_renewal() {
    let spec: LeaseSpec = serde_json::from_value(lease("a", 10, 0)["spec"].clone()).unwrap();
    assert!(!expired(&spec, at(25)));
    assert!(expired(&spec, at(26)));
    assert!(expired(&LeaseSpec::default(), at(0)));
}

/// An in-memory Lease endpoint with the API server's optimistic concurrency: a write whose
/// resourceVersion is not the current one gets 409.
fn lease_server() -> Client {
    use std::sync::{Arc, Mutex};
    let state: Arc<Mutex<Option<(u64, Value)>>> = Arc::default();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let state = state.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = http_body_util::BodyExt::collect(body)
                .await
                .unwrap()
                .to_bytes();
            let mut state = state.lock().unwrap();
            let (code, answer) = match (parts.method.as_str(), state.as_mut()) {
                ("GET", Some((_, lease))) => (200, lease.clone()),
                ("GET", None) => (404, status(404, "NotFound")),
                ("POST", Some(_)) => (409, status(409, "AlreadyExists")),
                ("POST" | "PUT", current) => {
                    let mut lease: Value = serde_json::from_slice(&body).unwrap();
                    let sent = lease["metadata"]["resourceVersion"]
                        .as_str()
                        .map(str::to_owned);
                    let version = current.as_ref().map_or(0, |(v, _)| *v);
                    if parts.method == "PUT" && sent != Some(version.to_string()) {
                        (409, status(409, "Conflict"))
                    } else {
                        lease["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                        *state = Some((version + 1, lease.clone()));
                        (200, lease)
                    }
                }
                _ => (405, status(405, "MethodNotAllowed")),
            };
            let response = http::Response::builder()
                .status(code)
                .body(kube::client::Body::from(
                    serde_json::to_vec(&answer).unwrap(),
                ))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    Client::new(service, "default")
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leader_stops_renewing() {
    let client = lease_server();
    let (a, b) = (elector(client.clone(), "a"), elector(client, "b"));
    assert_eq!(a.try_acquire_or_renew(at(0)).await.unwrap(), Role::Leader);
    assert_eq!(
        b.try_acquire_or_renew(at(1)).await.unwrap(),
        Role::Standby(Some("a".into()))
    );
    assert_eq!(a.try_acquire_or_renew(at(5)).await.unwrap(), Role::Leader);
    assert_eq!(
        b.try_acquire_or_renew(at(19)).await.unwrap(),
        Role::Standby(Some("a".into()))
    );
    // a stops renewing at 5; its claim lapses at 20.
    assert_eq!(b.try_acquire_or_renew(at(21)).await.unwrap(), Role::Leader);
    assert_eq!(
        a.try_acquire_or_renew(at(22)).await.unwrap(),
        Role::Standby(Some("b".into()))
    );
    // Both race for a lapsed lease: exactly one wins.
    let (ra, rb) = tokio::join!(
        a.try_acquire_or_renew(at(60)),
        b.try_acquire_or_renew(at(60))
    );
    let leaders = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|r| **r == Role::Leader)
        .count();
    assert_eq!(leaders, 1);
}
