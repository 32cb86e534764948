//! Label and field selectors, parsed and matched as the API server does (the selector syntax
//! of the Kubernetes "Labels and Selectors" documentation: `=`, `==`, `!=`, `in`, `notin`,
//! `key`, `!key`, comma meaning AND). Field selectors support the fields every resource
//! supports (`metadata.name`, `metadata.namespace`) plus the `involvedObject.*` fields of
//! Events; any other field is refused with 400, as the real server refuses unsupported ones.

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self(requirements))
    }

    /// Whether it selects everything (no requirement).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two requirements).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            valid_key(key.trim())?,
            valid_value(value.trim())?,
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            valid_key(key.trim())?,
            valid_value(value.trim())?,
        ));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim();
        let (op, set) = if let Some(set) = rest.strip_prefix("notin") {
            ("notin", set)
        } else if let Some(set) = rest.strip_prefix("in") {
            ("in", set)
        } else {
            return Err(format!("unable to parse requirement: {part:?}"));
        };
        let set = set
            .trim()
            .strip_prefix('(')
            .and_then(|s| s.strip_suffix(')'))
            .ok_or_else(|| {
                // The real parser names the token it found where '(' belongs.
                let found = set.split_whitespace().next().unwrap_or_default();
                format!("unable to parse requirement: found '{found}' expected: '('")
            })?;
        let values = set
            .split(',')
            .map(|v| valid_value(v.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        let key = valid_key(key)?;
        return Ok(if op == "in" {
            Requirement::In(key, values)
        } else {
            Requirement::NotIn(key, values)
        });
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let name = key.rsplit('/').next().unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && key.matches('/').count() <= 1;
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn valid_value(value: &str) -> Result<String, String> {
    let ok = value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A parsed field selector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` parameter for a resource of `kind`.
    pub fn parse(text: &str, kind: &str) -> Result<Self, String> {
        let mut terms = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: {part:?}; expected FIELD=VALUE"));
            };
            let field = field.trim();
            let supported = matches!(field, "metadata.name" | "metadata.namespace")
                || (kind == "Event" && field.starts_with("involvedObject."));
            if !supported {
                return Err(format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                ));
            }
            terms.push((field.to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self(terms))
    }

    /// Whether it selects everything (no term).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The one name it selects, when a term requires `metadata.name` to equal it. The API
    /// server authorises a list or watch with such a selector under that name, so RBAC
    /// `resourceNames` can allow it.
    pub fn exact_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, equal, _)| *equal && field == "metadata.name")
            .map(|(_, _, value)| value.as_str())
    }

    /// Whether `object` satisfies every term.
    pub fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = object
                .pointer(&pointer)
                .and_then(Value::as_str)
                .unwrap_or_default();
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labelled(labels: Value) -> Value {
        json!({"metadata": {"name": "x", "namespace": "ns", "labels": labels}})
    }

    #[test]
    fn every_operator_matches_as_documented() {
        let o = labelled(json!({"app": "pxc", "tier": "db"}));
        let cases = [
            ("app=pxc", true),
            ("app==pxc", true),
            ("app!=pxc", false),
            ("app!=other", true),
            ("missing!=x", true),
            ("app in (pxc,mysql)", true),
            ("app in (mysql)", false),
            ("app notin (mysql)", true),
            ("missing notin (x)", true),
            ("tier notin (db)", false),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=pxc,tier=db", true),
            ("app=pxc,tier in (web, cache)", false),
            ("", true),
        ];
        for (selector, expected) in cases {
            let s = LabelSelector::parse(selector).unwrap();
            assert_eq!(s.matches(&o), expected, "{selector}");
        }
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for bad in ["app in pxc", "app in (a", "a b c", "bad key=x", "k=v v"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_an_equality_on_the_name_selects_one_name() {
        let name = |text: &str| {
            FieldSelector::parse(text, "Secret")
                .unwrap()
                .exact_name()
                .map(str::to_owned)
        };
        assert_eq!(name("metadata.name=s3"), Some("s3".to_owned()));
        assert_eq!(
            name("metadata.namespace=a,metadata.name==s3"),
            Some("s3".to_owned())
        );
        assert_eq!(name("metadata.name!=s3"), None);
        assert_eq!(name("metadata.namespace=a"), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn field_selectors_support_name_and_namespace_only() {
        let o = labelled(json!({}));
        assert!(
            FieldSelector::parse("metadata.name=x", "Pod")
                .unwrap()
                .matches(&o)
        );
        assert!(
            !FieldSelector::parse("metadata.namespace!=ns", "Pod")
                .unwrap()
                .matches(&o)
        );
        assert!(FieldSelector::parse("spec.nodeName=a", "Pod").is_err());
        assert!(FieldSelector::parse("involvedObject.name=a", "Event").is_ok());
    }
}
