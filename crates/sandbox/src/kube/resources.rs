//! The resource types the simulator serves: built-in kinds, plus custom resources registered
//! from CustomResourceDefinitions at run time, as the real API server does. Discovery, routing,
//! patch rules and validation all read this one table.

use std::sync::{Arc, PoisonError, RwLock};

use serde_json::Value;

/// One served resource type at one group/version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Version, e.g. `v1`.
    pub version: String,
    /// Plural resource name used in paths.
    pub plural: String,
    /// Singular name (discovery).
    pub singular: String,
    /// Kind of single objects.
    pub kind: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names (discovery; `kubectl get pxc`).
    pub short_names: Vec<String>,
    /// Whether a `status` subresource exists (spec and status are then written separately).
    pub status_subresource: bool,
    /// Whether the `log` subresource exists (pods).
    pub log_subresource: bool,
    /// Defined by a CRD: strategic merge patch is refused and `generation` follows spec.
    pub custom: bool,
    /// The structural `openAPIV3Schema` of a custom resource version.
    pub schema: Option<Arc<Value>>,
    /// `additionalPrinterColumns` of a custom resource version (kubectl's table columns).
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The key under which objects are stored: one per group and plural, shared by versions.
    pub fn storage_key(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// `plural` or `plural.group`, as messages name the resource.
    pub fn qualified(&self) -> String {
        super::status::qualified(&self.group, &self.plural)
    }
}

/// The live table of served resource types.
#[derive(Debug, Default)]
pub struct Registry {
    types: RwLock<Vec<Arc<ResourceType>>>,
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    b("", "v1", "pods", "Pod", true, &["po"], true),
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
        true,
    ),
    b("", "v1", "secrets", "Secret", true, &[], false),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    // Served for the conformance suite's 410 (a kind the real server's watch cache skips).
    b("", "v1", "podtemplates", "PodTemplate", true, &[], false),
    b("", "v1", "events", "Event", true, &["ev"], false),
    b(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    b("", "v1", "services", "Service", true, &["svc"], true),
    b("batch", "v1", "jobs", "Job", true, &[], true),
    b(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    b(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        &["ev"],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
        true,
    ),
];

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        status,
    }
}

impl Registry {
    /// A registry of the built-in kinds.
    pub fn with_builtins() -> Self {
        let types = BUILTINS
            .iter()
            .map(|t| {
                Arc::new(ResourceType {
                    group: t.group.to_owned(),
                    version: t.version.to_owned(),
                    plural: t.plural.to_owned(),
                    singular: t.kind.to_lowercase(),
                    kind: t.kind.to_owned(),
                    namespaced: t.namespaced,
                    short_names: t.short.iter().map(|s| (*s).to_owned()).collect(),
                    status_subresource: t.status,
                    log_subresource: t.plural == "pods" && t.group.is_empty(),
                    custom: false,
                    schema: None,
                    printer_columns: Vec::new(),
                })
            })
            .collect();
        Self {
            types: RwLock::new(types),
        }
    }

    /// The type served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.read()
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
    }

    /// Every served type.
    pub fn all(&self) -> Vec<Arc<ResourceType>> {
        self.read().clone()
    }

    /// Serves the versions a CRD declares (replacing any earlier registration of its group and
    /// plural). Returns an error message for a CRD that cannot be served.
    pub fn register_crd(&self, crd: &Value) -> Result<(), String> {
        let spec = crd.get("spec").ok_or("spec: missing")?;
        let text = |v: Option<&Value>, field: &str| -> Result<String, String> {
            v.and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("{field}: missing"))
        };
        let group = text(spec.get("group"), "spec.group")?;
        let names = spec.get("names").ok_or("spec.names: missing")?;
        let plural = text(names.get("plural"), "spec.names.plural")?;
        let kind = text(names.get("kind"), "spec.names.kind")?;
        let singular = names
            .get("singular")
            .and_then(Value::as_str)
            .map_or_else(|| kind.to_lowercase(), str::to_owned);
        let short_names: Vec<String> = names
            .get("shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or("spec.versions: missing")?;

        let mut new_types = Vec::new();
        for v in versions {
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let version = text(v.get("name"), "spec.versions[].name")?;
            let schema = v.pointer("/schema/openAPIV3Schema").cloned().map(Arc::new);
            new_types.push(Arc::new(ResourceType {
                group: group.clone(),
                version,
                plural: plural.clone(),
                singular: singular.clone(),
                kind: kind.clone(),
                namespaced,
                short_names: short_names.clone(),
                status_subresource: v.pointer("/subresources/status").is_some(),
                log_subresource: false,
                custom: true,
                schema,
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            }));
        }
        let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
        types.retain(|t| !(t.group == group && t.plural == plural));
        types.extend(new_types);
        Ok(())
    }

    /// Stops serving the custom resource a CRD defined.
    pub fn unregister_crd(&self, crd: &Value) {
        let group = crd.pointer("/spec/group").and_then(Value::as_str);
        let plural = crd.pointer("/spec/names/plural").and_then(Value::as_str);
        if let (Some(group), Some(plural)) = (group, plural) {
            self.types
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|t| !(t.custom && t.group == group && t.plural == plural));
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ResourceType>>> {
        // Writers replace whole entries; a panic mid-write cannot leave a torn table.
        self.types.read().unwrap_or_else(PoisonError::into_inner)
    }
}
