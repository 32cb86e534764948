//! Opt-in from the cluster's side: a PerconaXtraDBCluster annotated for Backstop, or
//! matching a label selector, is managed with the defaults here (and its annotations'
//! overrides) without a `clusters[]` entry. Where both speak, `clusters[]` wins.

use std::collections::BTreeMap;

use kube::core::{Expression, Selector};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::FailoverPolicy;

/// Which clusters opt in themselves, and the policy they get.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OptInConfig {
    /// Manage clusters annotated `backstop.percona.com/managed: "true"`. Default `false`:
    /// turning it on is the platform team's decision, the annotation the cluster owner's.
    pub annotation: bool,
    /// Manage clusters whose labels match this selector (a cluster annotated
    /// `backstop.percona.com/managed: "false"` stays out). Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelectorConfig>,
    /// The failover policy of a cluster that opted in; its annotations override it key by
    /// key (`backstop.percona.com/failover`, `.../strategy`, `.../storage`). Secret names
    /// are looked up in each cluster's namespace.
    pub defaults: FailoverPolicy,
}

impl OptInConfig {
    /// Whether any cluster may opt in.
    pub fn enabled(&self) -> bool {
        self.annotation || self.label_selector.is_some()
    }

    /// The label selector, as kube-rs evaluates it (`None` when none is set or it is
    /// invalid, which validation reports).
    pub fn selector(&self) -> Option<Selector> {
        self.label_selector.as_ref()?.to_selector().ok()
    }
}

/// A Kubernetes label selector: every `match_labels` entry and every requirement must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LabelSelectorConfig {
    /// Labels that must have exactly these values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirement>,
}

/// One set-based requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequirement {
    /// The label.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: LabelOperator,
    /// The values (`In` and `NotIn` need at least one; the others none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The operator of a label requirement, spelt as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LabelOperator {
    /// The label has one of the values.
    In,
    /// The label is absent or has none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl LabelSelectorConfig {
    /// The selector, or what is wrong with it (`(path, problem)` under the selector).
    ///
    /// # Errors
    ///
    /// Each requirement whose values do not fit its operator.
    pub fn to_selector(&self) -> Result<Selector, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut expressions: Vec<Expression> = self
            .match_labels
            .iter()
            .map(|(k, v)| Expression::Equal(k.clone(), v.clone()))
            .collect();
        for (i, r) in self.match_expressions.iter().enumerate() {
            let values = r.values.iter().cloned().collect();
            let takes_values = matches!(r.operator, LabelOperator::In | LabelOperator::NotIn);
            if takes_values == r.values.is_empty() {
                problems.push((
                    format!("match_expressions[{i}].values"),
                    if takes_values {
                        format!("{:?} needs at least one value", r.operator)
                    } else {
                        format!("{:?} takes no values", r.operator)
                    },
                ));
            }
            if r.key.is_empty() {
                problems.push((
                    format!("match_expressions[{i}].key"),
                    "must not be empty".into(),
                ));
            }
            expressions.push(match r.operator {
                LabelOperator::In => Expression::In(r.key.clone(), values),
                LabelOperator::NotIn => Expression::NotIn(r.key.clone(), values),
                LabelOperator::Exists => Expression::Exists(r.key.clone()),
                LabelOperator::DoesNotExist => Expression::DoesNotExist(r.key.clone()),
            });
        }
        if expressions.is_empty() {
            problems.push((
                String::new(),
                "selects every cluster: give match_labels or match_expressions".into(),
            ));
        }
        if problems.is_empty() {
            Ok(expressions.into_iter().collect())
        } else {
            Err(problems)
        }
    }
}
