//! The Kubernetes API simulator, driven by the unmodified kube-rs client: each test checks one
//! semantic of the real API server.

use std::time::Duration;

use backstop_sandbox::crds::install_pxc_crds;
use backstop_sandbox::kube::faults::{ApiFault, FaultRule};
use backstop_sandbox::kube::{KubeSim, SimOptions};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

async fn sim() -> (KubeSim, kube::Client) {
    sim_with(SimOptions::default()).await
}

async fn sim_with(options: SimOptions) -> (KubeSim, kube::Client) {
    let sim = KubeSim::start(options).await.unwrap();
    let client = sim.admin_client().await.unwrap();
    (sim, client)
}

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A plain HTTPS client trusting the simulator's CA (for what kube-rs hides: raw headers).
fn https(sim: &KubeSim) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem().as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn cm(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).unwrap()
}

fn pxc_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("pxc.percona.com", "v1", "PerconaXtraDBCluster"),
        "perconaxtradbclusters",
    )
}

fn pxc(name: &str, spec: serde_json::Value) -> DynamicObject {
    let mut o = DynamicObject::new(name, &pxc_resource());
    o.data = json!({"spec": spec});
    o
}

#[tokio::test]
async fn create_get_update_delete_with_server_metadata() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({"k": "v"})))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let mut got = api.get("a").await.unwrap();
    assert_eq!(got.data.as_ref().unwrap()["k"], "v");
    got.data.as_mut().unwrap().insert("k".into(), "w".into());
    let updated = api
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1, "resourceVersion increases on every write");
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("a").await.unwrap_err()).code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn create_conflicts_and_generate_name() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let e = api_error(
        api.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    let mut generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "cron-"}})).unwrap();
    generated = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = generated.metadata.name.unwrap();
    assert!(name.starts_with("cron-") && name.len() == 10, "{name}");

    let missing: Api<ConfigMap> = Api::namespaced(client, "nowhere");
    let e = api_error(
        missing
            .create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    assert!(
        e.message.contains("namespaces \"nowhere\" not found"),
        "{}",
        e.message
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn stale_update_is_a_409_conflict() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("a", json!({"n": "1"})))
        .await
        .unwrap();
    let mut fresh = first.clone();
    fresh.data = Some([("n".to_owned(), "2".to_owned())].into());
    api.replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();

    let mut stale = first;
    stale.data = Some([("n".to_owned(), "3".to_owned())].into());
    let e = api_error(
        api.replace("a", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        api.get("a").await.unwrap().data.unwrap()["n"],
        "2",
        "the newer write is kept"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn merge_patch_null_deletes_and_resource_version_is_a_precondition() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(
            &PostParams::default(),
            &cm("a", json!({"keep": "1", "drop": "2"})),
        )
        .await
        .unwrap();
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"drop": null, "new": "3"}})),
        )
        .await
        .unwrap();
    let data = patched.data.unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data["keep"], "1");
    assert_eq!(data["new"], "3");
    assert!(!data.contains_key("drop"));

    let stale_rv = created.metadata.resource_version.unwrap();
    let e = api_error(
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale_rv}, "data": {"x": "y"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    sim.shutdown().await;
}

#[tokio::test]
async fn json_patch_applies_and_a_failed_test_is_422() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a", json!({"phase": "idle"})))
        .await
        .unwrap();
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/phase", "value": "idle"},
        {"op": "replace", "path": "/data/phase", "value": "failing-over"},
    ]))
    .unwrap();
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Json::<()>(ok))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["phase"], "failing-over");

    let failing: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/phase", "value": "idle"},
        {"op": "replace", "path": "/data/phase", "value": "twice"},
    ]))
    .unwrap();
    let e = api_error(
        api.patch("a", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert_eq!(
        api.get("a").await.unwrap().data.unwrap()["phase"],
        "failing-over"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn strategic_merge_patch_is_refused_for_custom_resources_only() {
    let (sim, client) = sim().await;
    install_pxc_crds(&client).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .unwrap();

    let clusters: Api<DynamicObject> = Api::namespaced_with(client, "default", &pxc_resource());
    clusters
        .create(
            &PostParams::default(),
            &pxc("c1", json!({"crVersion": "1.20.0"})),
        )
        .await
        .unwrap();
    let e = api_error(
        clusters
            .patch(
                "c1",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"pause": true}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    sim.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let mut o = cm("held", json!({}));
    o.metadata.finalizers = Some(vec!["percona.com/delete-backup".into()]);
    api.create(&PostParams::default(), &o).await.unwrap();

    api.delete("held", &DeleteParams::default()).await.unwrap();
    let still = api.get("held").await.unwrap();
    assert!(still.metadata.deletion_timestamp.is_some());

    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_error(api.get("held").await.unwrap_err()).code, 404);
    sim.shutdown().await;
}

#[tokio::test]
async fn status_subresource_separates_spec_and_status_and_generation_tracks_spec() {
    let (sim, client) = sim().await;
    install_pxc_crds(&client).await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &pxc_resource());
    let mut obj = pxc("c1", json!({"pause": false}));
    obj.data["status"] = json!({"state": "ignored-on-create"});
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status is ignored on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let after_status = api
        .patch_status(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"state": "ready"}, "spec": {"pause": true}})),
        )
        .await
        .unwrap();
    assert_eq!(after_status.data["status"]["state"], "ready");
    assert_eq!(
        after_status.data["spec"]["pause"], false,
        "status writes do not change spec"
    );
    assert_eq!(
        after_status.metadata.generation,
        Some(1),
        "status writes keep generation"
    );

    let after_spec = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"pause": true}, "status": {"state": "hacked"}})),
        )
        .await
        .unwrap();
    assert_eq!(after_spec.data["spec"]["pause"], true);
    assert_eq!(
        after_spec.data["status"]["state"], "ready",
        "spec writes do not change status"
    );
    assert_eq!(after_spec.metadata.generation, Some(2));

    let labelled = api
        .patch(
            "c1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes keep generation"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn custom_resources_are_pruned_and_validated_against_the_schema() {
    let (sim, client) = sim().await;
    install_pxc_crds(&client).await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &pxc_resource());
    let spec = json!({
        "notAField": 1,
        "backup": {
            "storages": {"fs": {"type": "filesystem", "volume": {"persistentVolumeClaim": {
                "claimName": "runbook-pvc", "storageClassName": "gp3"}}}},
        },
    });
    let created = api
        .create(&PostParams::default(), &pxc("c1", spec))
        .await
        .unwrap();
    let pvc = &created.data["spec"]["backup"]["storages"]["fs"]["volume"]["persistentVolumeClaim"];
    assert_eq!(
        pvc,
        &json!({"storageClassName": "gp3"}),
        "claimName is pruned, as on a real server"
    );
    assert!(created.data["spec"].get("notAField").is_none());

    let bad = json!({"backup": {"schedule": [{"name": "daily", "schedule": "0 0 * * *", "storageName": "s3",
        "retention": {"type": "weekly", "count": -1, "deleteFromStorage": true}}]}});
    let e = api_error(
        api.create(&PostParams::default(), &pxc("c2", bad))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.contains("spec.backup.schedule.retention.type"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.backup.schedule.retention.count"),
        "{}",
        e.message
    );

    let wrong_type = json!({"backup": {"pitr": {"enabled": "yes"}}});
    let e = api_error(
        api.create(&PostParams::default(), &pxc("c3", wrong_type))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message.contains("spec.backup.pitr.enabled"),
        "{}",
        e.message
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for (name, labels) in [
        (
            "a",
            json!({"percona.com/cluster": "c1", "percona.com/backup-type": "cron"}),
        ),
        (
            "b",
            json!({"percona.com/cluster": "c2", "percona.com/backup-type": "cron"}),
        ),
        ("c", json!({"percona.com/cluster": "c1"})),
    ] {
        let o: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap();
        api.create(&PostParams::default(), &o).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|o| o.metadata.name.unwrap())
            .collect()
    };
    let cases = [
        ("percona.com/cluster=c1", vec!["a", "c"]),
        ("percona.com/cluster==c2", vec!["b"]),
        ("percona.com/cluster!=c1", vec!["b"]),
        ("percona.com/cluster in (c2,c3)", vec!["b"]),
        ("percona.com/cluster notin (c2)", vec!["a", "c"]),
        ("percona.com/backup-type", vec!["a", "b"]),
        ("!percona.com/backup-type", vec!["c"]),
        (
            "percona.com/cluster=c1,percona.com/backup-type=cron",
            vec!["a"],
        ),
    ];
    for (selector, expected) in cases {
        let got = names(
            api.list(&ListParams::default().labels(selector))
                .await
                .unwrap(),
        );
        assert_eq!(got, expected, "{selector}");
    }
    let by_name = names(
        api.list(&ListParams::default().fields("metadata.name=b"))
            .await
            .unwrap(),
    );
    assert_eq!(by_name, ["b"]);
    let e = api_error(
        api.list(&ListParams::default().fields("data.x=y"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    sim.shutdown().await;
}

#[tokio::test]
async fn limit_and_continue_page_through_a_list() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("cm-{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = api.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|o| o.metadata.name.unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(seen, ["cm-0", "cm-1", "cm-2", "cm-3", "cm-4"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_delivers_changes_and_resumes_from_a_resource_version() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let first = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();

    // Resuming after the first create replays exactly what happened since.
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut events = Vec::new();
    while events.len() < 2 {
        let event = tokio::time::timeout(DEADLINE, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        events.push(match event {
            WatchEvent::Added(o) => format!("ADDED {}", o.metadata.name.unwrap()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.metadata.name.unwrap()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(events, ["ADDED b", "DELETED a"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_with_a_selector_sees_objects_enter_and_leave() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let params = WatchParams::default().labels("watched=yes");
    let mut stream = api.watch(&params, &rv).await.unwrap().boxed();
    for value in [json!("yes"), json!("no")] {
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"watched": value}}})),
        )
        .await
        .unwrap();
    }
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        match tokio::time::timeout(DEADLINE, stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            _ => {}
        }
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410_gone() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let created = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    sim.compact();
    let old = created.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn bookmarks_arrive_when_allowed_and_the_resource_moved_on() {
    // As the real server's watch cache: a bookmark carries the latest resourceVersion of the
    // resource, and comes only once that is past what the watcher was sent (here, a change in
    // a namespace this watch does not see).
    let (sim, client) = sim_with(SimOptions {
        bookmark_interval: Duration::from_millis(20),
        ..SimOptions::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = sim.resource_version().to_string();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), stream.try_next())
            .await
            .is_err(),
        "nothing moved: no bookmark"
    );
    let elsewhere: Api<ConfigMap> = Api::namespaced(client, "kube-system");
    let other = elsewhere
        .create(&PostParams::default(), &cm("elsewhere", json!({})))
        .await
        .unwrap();
    match tokio::time::timeout(DEADLINE, stream.try_next())
        .await
        .unwrap()
        .unwrap()
    {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(
                Some(b.metadata.resource_version),
                other.metadata.resource_version
            );
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn the_runtime_watcher_survives_dropped_watches_and_410() {
    use kube::runtime::watcher::{self, Event};
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();

    let next_applied = async |events: &mut futures::stream::BoxStream<
        '_,
        Result<Event<ConfigMap>, watcher::Error>,
    >| loop {
        match tokio::time::timeout(DEADLINE, events.next()).await.unwrap() {
            Some(Ok(Event::Apply(o) | Event::InitApply(o))) => return o.metadata.name.unwrap(),
            Some(_) => {}
            None => panic!("watcher ended"),
        }
    };
    assert_eq!(next_applied(&mut events).await, "before");

    sim.close_watches();
    sim.compact();
    api.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    // After the dropped watch (and the 410 its resume gets), the watcher re-lists and
    // still reports the object created meanwhile.
    loop {
        if next_applied(&mut events).await == "after" {
            break;
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401() {
    let (sim, _) = sim().await;
    let stranger = sim.client_for("not-a-token").await.unwrap();
    let e = api_error(
        Api::<Namespace>::all(stranger)
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));

    let anonymous = https(&sim)
        .get(format!("{}/api/v1/namespaces", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    sim.shutdown().await;
}

#[tokio::test]
async fn rbac_allows_exactly_what_roles_grant() {
    let (sim, admin) = sim().await;
    let token = sim.service_account_token("ops", "backstop");
    let sa = sim.client_for(&token).await.unwrap();
    let sa_cms: Api<ConfigMap> = Api::namespaced(sa.clone(), "default");
    let e = api_error(sa_cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert!(
        e.message.contains("system:serviceaccount:ops:backstop"),
        "{}",
        e.message
    );

    let roles: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "Role"),
            "roles",
        ),
    );
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "read-cms"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
    }))
    .unwrap();
    roles.create(&PostParams::default(), &role).await.unwrap();
    let bindings: Api<DynamicObject> = Api::namespaced_with(
        admin,
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", "RoleBinding"),
            "rolebindings",
        ),
    );
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "backstop-read-cms"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-cms"},
        "subjects": [{"kind": "ServiceAccount", "name": "backstop", "namespace": "ops"}],
    }))
    .unwrap();
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();

    sa_cms.list(&ListParams::default()).await.unwrap();
    let e = api_error(
        sa_cms
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403, "list was granted, create was not");
    let other_ns: Api<ConfigMap> = Api::namespaced(sa, "kube-system");
    assert_eq!(
        api_error(other_ns.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn resource_names_allow_a_list_or_watch_that_selects_that_name() {
    let (sim, admin) = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    for name in ["allowed", "other"] {
        cms.create(&PostParams::default(), &cm(name, json!({})))
            .await
            .unwrap();
    }
    let rbac = |kind: &str, plural: &str| {
        Api::<DynamicObject>::namespaced_with(
            admin.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("rbac.authorization.k8s.io", "v1", kind),
                plural,
            ),
        )
    };
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "one-cm"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["list", "watch"], "resourceNames": ["allowed"]}],
    }))
    .unwrap();
    rbac("Role", "roles")
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "one-cm"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "one-cm"},
        "subjects": [{"kind": "ServiceAccount", "name": "backstop", "namespace": "ops"}],
    }))
    .unwrap();
    rbac("RoleBinding", "rolebindings")
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let sa = sim
        .client_for(&sim.service_account_token("ops", "backstop"))
        .await
        .unwrap();
    let sa_cms: Api<ConfigMap> = Api::namespaced(sa, "default");

    let named = ListParams::default().fields("metadata.name=allowed");
    let listed = sa_cms.list(&named).await.unwrap();
    let names: Vec<_> = listed
        .items
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(names, ["allowed"]);
    let mut events = sa_cms
        .watch(
            &WatchParams::default().fields("metadata.name=allowed"),
            listed.metadata.resource_version.as_deref().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "allowed",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(DEADLINE, events.try_next()).await {
        Ok(Ok(Some(WatchEvent::Modified(c)))) => {
            assert_eq!(c.metadata.name.as_deref(), Some("allowed"));
        }
        other => panic!("expected the change of the allowed object, got {other:?}"),
    }

    for refused in [
        ListParams::default(),
        ListParams::default().fields("metadata.name=other"),
        ListParams::default().fields("metadata.name!=other"),
    ] {
        let e = api_error(sa_cms.list(&refused).await.unwrap_err());
        assert_eq!(e.code, 403, "{:?}", refused.field_selector);
    }
    match sa_cms
        .watch(&WatchParams::default().fields("metadata.name=other"), "0")
        .await
    {
        Err(e) => assert_eq!(api_error(e).code, 403),
        Ok(_) => panic!("a watch of another name was allowed"),
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn injected_faults_reach_the_client_then_clear() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    sim.faults().inject(FaultRule {
        verb: Some("get".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::InternalError,
    });
    assert_eq!(api_error(api.get("a").await.unwrap_err()).code, 500);
    api.get("a").await.unwrap();

    sim.faults().inject(FaultRule {
        verb: Some("patch".into()),
        resource: None,
        remaining: 1,
        fault: ApiFault::Conflict,
    });
    let e = api_error(
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);

    sim.faults().inject(FaultRule {
        verb: Some("list".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::TooManyRequests(7),
    });
    let raw = https(&sim)
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps",
            sim.url()
        ))
        .bearer_auth(sim.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 429);
    assert_eq!(raw.headers()["retry-after"], "7");

    sim.faults().inject(FaultRule {
        verb: Some("get".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::Hang,
    });
    let hung = tokio::time::timeout(Duration::from_millis(200), api.get("a")).await;
    assert!(hung.is_err(), "a hanging request never answers");
    api.get("a").await.unwrap();
    sim.shutdown().await;
}

/// A write can commit and still fail at the client, as when the API server's request timeout
/// fires after etcd committed: the change is there, the answer is an error (or never comes).
/// Every change also reaches the audit feed, however the watches fare.
#[tokio::test]
async fn writes_can_commit_and_then_fail() {
    let (sim, client) = sim().await;
    let mut feed = sim.changes();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    sim.faults().inject(FaultRule {
        verb: Some("create".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::AfterCommit(Box::new(ApiFault::InternalError)),
    });
    let e = api_error(
        api.create(&PostParams::default(), &cm("a", json!({"x": "1"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["x"], "1");
    assert_eq!(
        feed.try_recv().unwrap().key.name,
        "a",
        "the audit feed saw it"
    );

    // A 504 is what the real timeout answers; a raw request shows it.
    sim.faults().inject(FaultRule {
        verb: Some("patch".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::AfterCommit(Box::new(ApiFault::Timeout)),
    });
    let raw = https(&sim)
        .patch(format!(
            "{}/api/v1/namespaces/default/configmaps/a",
            sim.url()
        ))
        .bearer_auth(sim.admin_token())
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"data":{"x":"2"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 504);
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["x"], "2");

    sim.faults().inject(FaultRule {
        verb: Some("patch".into()),
        resource: Some("configmaps".into()),
        remaining: 1,
        fault: ApiFault::AfterCommit(Box::new(ApiFault::Hang)),
    });
    let lost = tokio::time::timeout(
        Duration::from_millis(300),
        api.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "3"}})),
        ),
    )
    .await;
    assert!(lost.is_err(), "the answer never comes");
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["x"], "3");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_api_verifier_sees_what_the_client_sent() {
    let (sim, client) = sim().await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "1"}})),
    )
    .await
    .unwrap();
    let patch = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.path, "/api/v1/namespaces/default/configmaps/a");
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, Some(json!({"data": {"x": "1"}})));
    sim.shutdown().await;
}

#[tokio::test]
async fn secret_string_data_is_stored_as_base64_data_on_create_and_patch() {
    use k8s_openapi::api::core::v1::Secret;
    let (sim, client) = sim().await;
    let api: Api<Secret> = Api::namespaced(client, "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "s3"},
        "data": {"AWS_REGION": "dXMtd2VzdC0y"},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKID"},
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret).await.unwrap();
    let stored = api.get("s3").await.unwrap();
    assert!(stored.string_data.is_none());
    let data = stored.data.unwrap();
    assert_eq!(data["AWS_ACCESS_KEY_ID"].0, b"AKID");
    assert_eq!(data["AWS_REGION"].0, b"us-west-2");

    // A merge patch may carry stringData too (`kubectl patch` with stringData, a key
    // rotation): folded into data the same way, its keys winning, and never stored.
    api.patch(
        "s3",
        &PatchParams::default(),
        &Patch::Merge(json!({"stringData": {"AWS_ACCESS_KEY_ID": "ROTATED", "AWS_NEW": "n"}})),
    )
    .await
    .unwrap();
    let patched = api.get("s3").await.unwrap();
    assert!(patched.string_data.is_none());
    let data = patched.data.unwrap();
    assert_eq!(data["AWS_ACCESS_KEY_ID"].0, b"ROTATED");
    assert_eq!(data["AWS_NEW"].0, b"n");
    assert_eq!(data["AWS_REGION"].0, b"us-west-2");
    sim.shutdown().await;
}

#[tokio::test]
async fn rbac_rules_load_from_yaml_and_are_enforced() {
    let (sim, _) = sim().await;
    let created = sim
        .apply_yaml(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: pxc-reader}\n\
             rules:\n- apiGroups: [pxc.percona.com]\n  resources: [perconaxtradbclusters]\n  verbs: [get, list, watch]\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: backstop-pxc-reader}\n\
             roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pxc-reader}\n\
             subjects:\n- {kind: ServiceAccount, name: backstop, namespace: backstop}\n",
        )
        .unwrap();
    assert_eq!(
        created,
        [
            "ClusterRole/pxc-reader",
            "ClusterRoleBinding/backstop-pxc-reader"
        ]
    );
    install_pxc_crds(&sim.admin_client().await.unwrap())
        .await
        .unwrap();
    let sa = sim
        .client_for(&sim.service_account_token("backstop", "backstop"))
        .await
        .unwrap();
    let clusters: Api<DynamicObject> = Api::all_with(sa.clone(), &pxc_resource());
    clusters.list(&ListParams::default()).await.unwrap();
    let backups: Api<DynamicObject> = Api::all_with(
        sa,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("pxc.percona.com", "v1", "PerconaXtraDBClusterBackup"),
            "perconaxtradbclusterbackups",
        ),
    );
    assert_eq!(
        api_error(backups.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );
    assert!(
        sim.apply_yaml("apiVersion: v9\nkind: Nothing\nmetadata: {name: x}\n")
            .is_err()
    );
    sim.shutdown().await;
}
