//! The sandbox's PXC CRDs must agree with the operator's real CRD on every field path they
//! type: same type, same enum, same minimum, same required fields, same int-or-string. The
//! real CRD is read from `../shared/fixtures/pxc/crd.yaml` (kept outside the repository).

use serde_json::Value;

fn real_crds() -> Vec<Value> {
    let text = crate::common::fixtures::text("pxc/crd.yaml");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn ours() -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(backstop_sandbox::crds::PXC_CRDS_YAML)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn v1_schema(crd: &Value) -> &Value {
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .expect("a v1 version")
}

/// Walks our schema; every node must match the real one at the same path.
fn compare(
    ours: &Value,
    real: &Value,
    path: &str,
    checked: &mut usize,
    problems: &mut Vec<String>,
) {
    *checked += 1;
    for key in [
        "type",
        "enum",
        "minimum",
        "maximum",
        "x-kubernetes-int-or-string",
        "format",
    ] {
        if let Some(mine) = ours.get(key)
            && real.get(key) != Some(mine)
        {
            problems.push(format!(
                "{path}: {key} is {mine} here, {:?} in the operator's CRD",
                real.get(key)
            ));
        }
    }
    let mut mine_required: Vec<&Value> = ours
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let mut real_required: Vec<&Value> = real
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    mine_required.sort_by_key(|v| v.to_string());
    real_required.sort_by_key(|v| v.to_string());
    if mine_required != real_required && ours.get("properties").is_some() {
        problems.push(format!(
            "{path}: required {mine_required:?} here, {real_required:?} there"
        ));
    }
    if let Some(props) = ours.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            match real.pointer(&format!("/properties/{name}")) {
                Some(real_sub) => {
                    compare(sub, real_sub, &format!("{path}.{name}"), checked, problems)
                }
                None => problems.push(format!("{path}.{name}: not in the operator's CRD")),
            }
        }
    }
    if let Some(items) = ours.get("items") {
        match real.get("items") {
            Some(real_items) => compare(items, real_items, &format!("{path}[]"), checked, problems),
            None => problems.push(format!("{path}[]: items not in the operator's CRD")),
        }
    }
    if let Some(additional) = ours.get("additionalProperties").filter(|a| a.is_object()) {
        match real.get("additionalProperties") {
            Some(real_additional) => compare(
                additional,
                real_additional,
                &format!("{path}.*"),
                checked,
                problems,
            ),
            None => problems.push(format!(
                "{path}.*: additionalProperties not in the operator's CRD"
            )),
        }
    }
}

#[test]
fn sandbox_crds_agree_with_the_operators_crd_on_every_typed_path() {
    let real = real_crds();
    let mut checked = 0;
    let mut problems = Vec::new();
    for crd in ours() {
        let name = crd["metadata"]["name"].as_str().unwrap();
        let real_crd = real
            .iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not in the operator's CRDs"));
        assert_eq!(
            crd["spec"]["names"], real_crd["spec"]["names"],
            "{name}: names"
        );
        assert_eq!(
            crd["spec"]["scope"], real_crd["spec"]["scope"],
            "{name}: scope"
        );
        compare(
            v1_schema(&crd),
            v1_schema(real_crd),
            name,
            &mut checked,
            &mut problems,
        );
    }
    assert!(
        problems.is_empty(),
        "{} disagreements:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(checked > 100, "only {checked} schema nodes compared");
}

#[test]
fn the_comparison_catches_a_wrong_type() {
    let real = real_crds();
    let mut crd = ours().remove(0);
    let pointer = "/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/backup/properties/pitr/properties/enabled/type";
    *crd.pointer_mut(pointer).unwrap() = Value::from("string");
    let real_crd = real
        .iter()
        .find(|c| c["metadata"]["name"] == crd["metadata"]["name"])
        .unwrap();
    let mut checked = 0;
    let mut problems = Vec::new();
    compare(
        v1_schema(&crd),
        v1_schema(real_crd),
        "pxc",
        &mut checked,
        &mut problems,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("pitr.enabled"));
}

#[test]
fn the_simulator_serves_the_operators_real_crd_and_its_example_cluster() {
    // The simulator registers any CRD; with the real one, the operator's own example CR loads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
        let sim = backstop_sandbox::kube::KubeSim::start(Default::default()).await.unwrap();
        let client = sim.admin_client().await.unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in real_crds() {
            let crd: CustomResourceDefinition = serde_json::from_value(crd).unwrap();
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let text = crate::common::fixtures::text("pxc/cr.yaml");
        let mut cr: Value = serde_yaml_ng::from_str(&text).unwrap();
        cr["metadata"]["namespace"] = "default".into();
        let rt = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("pxc.percona.com", "v1", "PerconaXtraDBCluster"),
            "perconaxtradbclusters",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &rt);
        let obj: DynamicObject = serde_json::from_value(cr.clone()).unwrap();
        let created = api.create(&PostParams::default(), &obj).await.unwrap();
        assert_eq!(
            created.data["spec"]["backup"]["storages"]["s3-us-west"]["s3"]["region"],
            cr["spec"]["backup"]["storages"]["s3-us-west"]["s3"]["region"]
        );
        sim.shutdown().await;
    });
}
