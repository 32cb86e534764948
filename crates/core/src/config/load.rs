//! Loading a configuration file: YAML → JSON value → schema check → typed value → semantic
//! checks.
//!
//! serde stops at the first error, and a user fixing a config one error per run is a poor
//! experience, so the structural check runs the JSON Schema generated from the types through
//! the `jsonschema` validator, which reports every violation with its location. Only a value
//! that passes is deserialized, and then checked for what a schema cannot say (cross-field
//! rules, address syntax, duplicates).

use std::fmt;
use std::path::Path;
use std::sync::LazyLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::{Config, DURATION_PATTERN, validate};

/// One problem in a configuration file, located by its path (`clusters[2].failover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where: dotted keys and `[index]`es from the document root; empty for the root.
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl FieldError {
    /// A problem at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("not valid YAML: {0}")]
    Syntax(String),
    /// The YAML does not satisfy the schema or the semantic rules; every problem is listed.
    #[error("{}", display_all(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// Every problem found, for printing one per line.
    pub fn problems(&self) -> Vec<String> {
        match self {
            Self::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn display_all(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON Schema of the configuration file (draft 2020-12), with documentation.
pub fn json_schema() -> Value {
    SCHEMA.clone()
}

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<Config>();
    let mut value = schema.to_value();
    simplify(&mut value);
    value
});

/// Rewrites two schemars renderings whose validation errors would be unreadable:
/// - `Option<T>` becomes plain `T` (still not required). Otherwise every optional section is
///   an `anyOf [T, null]`, and an error inside it is reported as "not valid under any of the
///   schemas" at the section instead of at the field. An explicit `null` is then a type error.
/// - `oneOf` lists of documented constants (unit enums with doc comments) become a plain
///   `enum`, so a bad value is reported as "not one of [...]".
fn simplify(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let single = types.remove(0);
                    map.insert("type".to_owned(), single);
                }
            }
            let non_null = map
                .get("anyOf")
                .and_then(Value::as_array)
                .and_then(|variants| {
                    let rest: Vec<&Value> = variants
                        .iter()
                        .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
                        .collect();
                    (variants.len() == 2 && rest.len() == 1).then(|| rest[0].clone())
                });
            if let Some(Value::Object(inner)) = non_null {
                map.remove("anyOf");
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
            let consts = map
                .get("oneOf")
                .and_then(Value::as_array)
                .and_then(|variants| {
                    variants
                        .iter()
                        .map(|v| v.get("const").cloned())
                        .collect::<Option<Vec<_>>>()
                });
            if let Some(consts) = consts {
                map.remove("oneOf");
                map.insert("enum".to_owned(), Value::Array(consts));
            }
            map.values_mut().for_each(simplify);
        }
        Value::Array(items) => items.iter_mut().for_each(simplify),
        _ => {}
    }
}

static VALIDATOR: LazyLock<Result<jsonschema::Validator, String>> =
    LazyLock::new(|| jsonschema::validator_for(&SCHEMA).map_err(|e| e.to_string()));

/// Reads and validates the configuration file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text)
}

/// Parses and validates a configuration document.
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    let value: Value =
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    // An empty document means "all defaults".
    let value = if value.is_null() {
        Value::Object(Default::default())
    } else {
        value
    };

    let validator = VALIDATOR
        .as_ref()
        .map_err(|e| ConfigError::Invalid(vec![FieldError::new("", format!("schema: {e}"))]))?;
    let mut errors: Vec<FieldError> = validator.iter_errors(&value).flat_map(describe).collect();
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors.dedup();
        return Err(ConfigError::Invalid(errors));
    }

    let config: Config = serde_path_to_error::deserialize(&value).map_err(|e| {
        ConfigError::Invalid(vec![FieldError::new(
            e.path().to_string().trim_start_matches('.'),
            e.inner().to_string(),
        )])
    })?;

    let errors = validate::check(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// Turns a JSON Schema violation into the field errors a user reads.
/// Reads the failover policy of the cluster `namespace/name` that opted in (see
/// [`OptInConfig`](super::OptInConfig)): `policy` is the defaults with the annotations'
/// overrides, as JSON, checked by the same schema and rules as a `clusters[]` entry, in the
/// light of `config` (its watched namespaces). Every problem is reported, its path starting
/// at `failover`.
///
/// # Errors
///
/// Every problem found, when there is one.
pub fn load_opt_in_policy(
    config: &Config,
    namespace: &str,
    name: &str,
    policy: Value,
) -> Result<super::ManagedCluster, Vec<FieldError>> {
    const AT: &str = "clusters[0].";
    let value = serde_json::json!({
        "kubernetes": {"namespaces": config.kubernetes.namespaces},
        "clusters": [{"namespace": namespace, "name": name, "failover": policy}],
    });
    let ours = |errors: Vec<FieldError>| -> Vec<FieldError> {
        errors
            .into_iter()
            .filter_map(|e| {
                let path = e.path.strip_prefix(AT)?.to_owned();
                Some(FieldError { path, ..e })
            })
            .collect()
    };
    let validator = VALIDATOR
        .as_ref()
        .map_err(|e| vec![FieldError::new("", format!("schema: {e}"))])?;
    let mut errors = ours(validator.iter_errors(&value).flat_map(describe).collect());
    if !errors.is_empty() {
        errors.sort_by(|a, b| a.path.cmp(&b.path));
        errors.dedup();
        return Err(errors);
    }
    let parsed: Config = serde_path_to_error::deserialize(&value).map_err(|e| {
        vec![FieldError::new(
            e.path()
                .to_string()
                .trim_start_matches('.')
                .trim_start_matches(AT),
            e.inner().to_string(),
        )]
    })?;
    let errors = ours(validate::check(&parsed));
    let mut clusters = parsed.clusters;
    match (errors.is_empty(), clusters.pop()) {
        (true, Some(cluster)) => Ok(cluster),
        (true, None) => Err(vec![FieldError::new("failover", "no policy")]),
        (false, _) => Err(errors),
    }
}

fn describe(error: jsonschema::ValidationError<'_>) -> Vec<FieldError> {
    let path = dotted(error.instance_path());
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            vec![FieldError::new(join(&path, &name), "missing")]
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|key| FieldError::new(join(&path, key), "unknown key"))
            .collect(),
        ValidationErrorKind::Pattern { pattern } if pattern == DURATION_PATTERN => {
            vec![FieldError::new(
                path,
                format!(
                    "invalid duration {}: use a number and a unit, e.g. 30s, 5m, 1h 30m",
                    error.instance()
                ),
            )]
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match kind {
                TypeKind::Single(t) => t.to_string(),
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            vec![FieldError::new(
                path,
                format!("wrong type: expected {expected}, got {}", error.instance()),
            )]
        }
        _ => vec![FieldError::new(path, error.to_string())],
    }
}

fn dotted(location: &jsonschema::paths::Location) -> String {
    let mut out = String::new();
    for segment in location.iter() {
        match segment {
            LocationSegment::Property(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&name);
            }
            LocationSegment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
