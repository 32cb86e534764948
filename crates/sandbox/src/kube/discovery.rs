//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`, `/version`), the
//! unaggregated v1 forms that kubectl and kube-rs fall back to when aggregated discovery is not
//! offered.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::resources::{Registry, ResourceType};

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0-backstop-sandbox",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

/// `/apis`.
pub fn groups(registry: &Registry) -> Value {
    let mut by_group: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in registry.all().iter().filter(|t| !t.group.is_empty()) {
        let versions = by_group.entry(t.group.clone()).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    let groups: Vec<Value> = by_group
        .into_iter()
        .map(|(group, versions)| group_document(&group, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/GROUP`.
pub fn group(registry: &Registry, group: &str) -> Option<Value> {
    let mut versions: Vec<String> = Vec::new();
    for t in registry.all().iter().filter(|t| t.group == group) {
        if !versions.contains(&t.version) {
            versions.push(t.version.clone());
        }
    }
    if versions.is_empty() {
        return None;
    }
    let mut doc = group_document(group, &versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn group_document(group: &str, versions: &[String]) -> Value {
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv),
    })
}

/// `/api/v1` or `/apis/GROUP/VERSION`.
pub fn resources(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<_> = registry
        .all()
        .into_iter()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in &types {
        resources.push(resource_entry(t, &t.plural, true));
        if t.status_subresource {
            resources.push(resource_entry(t, &format!("{}/status", t.plural), false));
        }
        if t.log_subresource {
            let mut log = resource_entry(t, &format!("{}/log", t.plural), false);
            log["verbs"] = json!(["get"]);
            resources.push(log);
        }
    }
    let group_version = types[0].api_version();
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

fn resource_entry(t: &ResourceType, name: &str, main: bool) -> Value {
    let verbs: Vec<&str> = if main {
        vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
    } else {
        vec!["get", "patch", "update"]
    };
    let mut entry = json!({
        "name": name,
        "singularName": if main { t.singular.as_str() } else { "" },
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": verbs,
    });
    if main && !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if main && t.custom {
        entry["categories"] = json!(["all"]);
    }
    entry
}
