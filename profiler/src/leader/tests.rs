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
