//! API errors as the real API server sends them: a `Status` object whose `reason` and `code`
//! clients branch on (kube-rs's `ErrorResponse`, kubectl's messages). Messages follow the
//! server's wording so that what a user sees in the sandbox matches production.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error, rendered as a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// The machine-readable `reason` (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// The human-readable message.
    pub message: String,
    /// `details`, when the reason has any.
    pub details: Option<Value>,
    /// `Retry-After` seconds for 429.
    pub retry_after: Option<u32>,
}

/// What a resource is called in messages: `pods`, or `perconaxtradbclusters.pxc.percona.com`.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, group: &str, plural: &str, name: &str) -> Self {
        self.details = Some(details(group, plural, Some(name)));
        self
    }

    /// 404 NotFound for a named object.
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 AlreadyExists on create.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(group, plural, name)
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, plural)
            ),
        )
        .with_details(group, plural, name)
    }

    /// 422 Invalid with a list of `(field, message)` causes.
    pub fn invalid(kind: &str, name: &str, causes: &[(String, String)]) -> Self {
        Self::invalid_in("", kind, name, causes)
    }

    /// 422 Invalid for an object of `kind` in API `group`: a custom resource's kind is
    /// qualified by its group in the message (`Widget.example.com "w" is invalid`), and the
    /// group is in the details, as the real server writes them.
    pub fn invalid_in(group: &str, kind: &str, name: &str, causes: &[(String, String)]) -> Self {
        // The message lists each distinct cause once (apimachinery's aggregate drops repeats;
        // the details keep them).
        let mut parts: Vec<String> = Vec::new();
        for (field, msg) in causes {
            let part = format!("{field}: {msg}");
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        // apimachinery's aggregate: one error as it is, several in brackets.
        let summary = match parts.as_slice() {
            [one] => one.clone(),
            _ => format!("[{}]", parts.join(", ")),
        };
        let qualified_kind = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified_kind} \"{name}\" is invalid: {summary}"),
        );
        let mut details = json!({
            "kind": kind,
            "causes": causes.iter().map(|(field, msg)| json!({
                "reason": cause_reason(msg), "message": msg, "field": field,
            })).collect::<Vec<_>>(),
        });
        // Go's omitempty: an empty name or group is left out.
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        e.details = Some(details);
        e
    }

    /// 422 for a patch that could not be applied (as the server reports JSON-patch failures).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 415 for a patch type the resource does not support: custom resources refuse a
    /// strategic merge patch naming the types they take.
    pub fn unsupported_patch(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types \
                 include: {accepted}"
            ),
        )
    }

    /// 415 for a content type no handler knows, worded as the real server's generic answer
    /// (with empty details).
    pub fn unsupported_media_type(_content_type: &str) -> Self {
        let mut e = Self::new(415, "UnsupportedMediaType", "415: Unsupported Media Type");
        e.details = Some(json!({}));
        e
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 Forbidden, worded as the RBAC authorizer words it: the object is named by its
    /// resource without the subresource (`pods "p"`), the rule by the full one (`pods/log`).
    pub fn forbidden(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Self {
        let base = resource.split('/').next().unwrap_or(resource);
        let what = match name {
            Some(n) => format!("{} \"{n}\"", qualified(group, base)),
            None => qualified(group, base),
        };
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" \
                 in API group \"{group}\"{scope}"
            ),
        );
        e.details = Some(details(group, base, name));
        e
    }

    /// 410 Expired: a watch or continue token older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 504 Timeout, as the API server's request timeout answers (injected faults).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// 500 InternalError (injected faults).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 429 TooManyRequests with `Retry-After`.
    pub fn too_many_requests(retry_after: u32) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        );
        e.retry_after = Some(retry_after);
        e.details = Some(json!({"retryAfterSeconds": retry_after}));
        e
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, axum::Json(self.to_status())).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The `reason` of a cause, from the start of its message as apimachinery's field errors
/// write them (`Required value`, `Unsupported value: ...`, `Invalid value: ...`).
fn cause_reason(message: &str) -> &'static str {
    if message.starts_with("Required value") {
        "FieldValueRequired"
    } else if message.starts_with("Unsupported value") {
        "FieldValueNotSupported"
    } else if message.starts_with("Forbidden") {
        "FieldValueForbidden"
    } else if message.starts_with("Too long") {
        "FieldValueTooLong"
    } else if message.starts_with("Duplicate value") {
        "FieldValueDuplicate"
    } else {
        "FieldValueInvalid"
    }
}

/// A Status's `details` for an object: `kind` is the resource's plural, as the server writes
/// it; an empty group and a missing name are left out (Go's omitempty).
fn details(group: &str, plural: &str, name: Option<&str>) -> Value {
    let mut details = json!({"kind": plural});
    if let Some(name) = name {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    details
}
