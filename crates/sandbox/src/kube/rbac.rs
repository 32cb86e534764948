//! RBAC authorization from the Roles, ClusterRoles and bindings stored in the simulator, as
//! the real RBAC authorizer evaluates them ("Using RBAC Authorization" in the Kubernetes docs):
//! a request is allowed when some binding that names the user (directly, through a group, or
//! as a ServiceAccount) grants a rule matching its API group, resource (`pods/log` for
//! subresources), verb and, for single-object verbs, name. Nothing is denied explicitly;
//! the absence of a grant is the denial.

use serde_json::Value;

use super::store::Store;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name; ServiceAccounts are `system:serviceaccount:NS:NAME`.
    pub name: String,
    /// Groups; `system:masters` bypasses authorization as on a real cluster.
    pub groups: Vec<String>,
}

impl User {
    /// Whether the user skips RBAC.
    pub fn is_superuser(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// What a request wants to do.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    /// The RBAC verb: get, list, watch, create, update, patch, delete.
    pub verb: &'a str,
    /// API group.
    pub group: &'a str,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace, if any.
    pub namespace: Option<&'a str>,
    /// Object name, for single-object verbs.
    pub name: Option<&'a str>,
}

/// Whether `user` may do `attrs`, given the RBAC objects in `store`.
pub fn allowed(store: &Store, user: &User, attrs: &Attributes<'_>) -> bool {
    if user.is_superuser() {
        return true;
    }
    let role = |resource: &str, namespace: &str, name: &str| {
        store.get(&super::store::ObjectKey {
            resource: format!("rbac.authorization.k8s.io/{resource}"),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    };
    let (cluster_bindings, _) = store.list("rbac.authorization.k8s.io/clusterrolebindings", None);
    for binding in cluster_bindings.iter().filter(|b| binds(b, user, "")) {
        if let Some(name) = binding.pointer("/roleRef/name").and_then(Value::as_str)
            && let Some(cr) = role("clusterroles", "", name)
            && grants(&cr, attrs)
        {
            return true;
        }
    }
    let Some(ns) = attrs.namespace else {
        return false;
    };
    let (bindings, _) = store.list("rbac.authorization.k8s.io/rolebindings", Some(ns));
    for binding in bindings.iter().filter(|b| binds(b, user, ns)) {
        let kind = binding.pointer("/roleRef/kind").and_then(Value::as_str);
        let Some(name) = binding.pointer("/roleRef/name").and_then(Value::as_str) else {
            continue;
        };
        let granted_by = match kind {
            Some("ClusterRole") => role("clusterroles", "", name),
            _ => role("roles", ns, name),
        };
        if granted_by.is_some_and(|r| grants(&r, attrs)) {
            return true;
        }
    }
    false
}

fn binds(binding: &Value, user: &User, binding_ns: &str) -> bool {
    let subjects = binding.get("subjects").and_then(Value::as_array);
    subjects.into_iter().flatten().any(|s| {
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        match s.get("kind").and_then(Value::as_str) {
            Some("User") => user.name == name,
            Some("Group") => user.groups.iter().any(|g| g == name),
            Some("ServiceAccount") => {
                let ns = s
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(binding_ns);
                user.name == format!("system:serviceaccount:{ns}:{name}")
            }
            _ => false,
        }
    })
}

fn grants(role: &Value, attrs: &Attributes<'_>) -> bool {
    let rules = role.get("rules").and_then(Value::as_array);
    rules.into_iter().flatten().any(|rule| {
        let list = |field: &str| -> Vec<&str> {
            rule.get(field)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let has = |field: &str, want: &str| list(field).iter().any(|v| *v == "*" || *v == want);
        let names = list("resourceNames");
        // A create has no name to check, and neither has a list or watch unless its field
        // selector names one object (the caller puts that name in the attributes).
        let name_ok = names.is_empty() || attrs.name.is_some_and(|n| names.contains(&n));
        has("apiGroups", attrs.group)
            && has("resources", &attrs.resource)
            && has("verbs", attrs.verb)
            && name_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::store::{ObjectKey, set_rv};
    use serde_json::json;

    fn put(store: &Store, resource: &str, ns: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        store
            .create(
                ObjectKey {
                    resource: format!("rbac.authorization.k8s.io/{resource}"),
                    namespace: ns.into(),
                    name,
                },
                object,
                set_rv,
            )
            .unwrap();
    }

    #[test]
    fn role_binding_grants_only_its_namespace_and_names() {
        let store = Store::new(10);
        put(
            &store,
            "roles",
            "db",
            json!({"metadata": {"name": "r"}, "rules": [
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s3-creds"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            ]}),
        );
        put(
            &store,
            "rolebindings",
            "db",
            json!({"metadata": {"name": "b"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "backstop", "namespace": "ops"}]}),
        );
        let sa = User {
            name: "system:serviceaccount:ops:backstop".into(),
            groups: vec![],
        };
        let ask = |verb, resource: &str, ns, name| {
            allowed(
                &store,
                &sa,
                &Attributes {
                    verb,
                    group: "",
                    resource: resource.into(),
                    namespace: Some(ns),
                    name,
                },
            )
        };
        assert!(ask("get", "secrets", "db", Some("s3-creds")));
        assert!(!ask("get", "secrets", "db", Some("other")));
        assert!(!ask("list", "secrets", "db", None));
        assert!(!ask("get", "secrets", "web", Some("s3-creds")));
        assert!(ask("get", "pods/log", "db", Some("p")));
        assert!(!ask("get", "pods", "db", Some("p")));
    }
}
