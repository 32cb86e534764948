//! The simulator's HTTP front: authenticates a request, resolves its path to a resource,
//! checks RBAC, and hands it to the verbs in [`super::api`]; records it for the tests.

use super::*;

pub(super) async fn handle(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.record(&method, &uri, &headers, &body);
    match serve(&sim, &method, &uri, &query, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = authenticate(sim, headers)?;
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();

    // Discovery is open to every authenticated user (the system:discovery ClusterRole).
    let discovery = match segments.as_slice() {
        ["version"] => Some(discovery::version()),
        ["api"] => Some(discovery::core_versions()),
        ["apis"] => Some(discovery::groups(&sim.registry)),
        ["api", "v1"] => discovery::resources(&sim.registry, "", "v1"),
        ["apis", group] => discovery::group(&sim.registry, group),
        ["apis", group, version] => discovery::resources(&sim.registry, group, version),
        _ => None,
    };
    if let Some(doc) = discovery {
        if *method != Method::GET {
            return Err(ApiError::method_not_allowed(method.as_str()));
        }
        return Ok(axum::Json(doc).into_response());
    }

    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route(uri.path())),
    };
    let target = resolve(&sim.registry, group, version, rest)
        .ok_or_else(|| ApiError::no_route(uri.path()))?;

    let watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), &target.name) {
        ("GET", None) if watch => "watch",
        ("GET", None) => "list",
        ("GET", Some(_)) => "get",
        ("POST", None) => "create",
        ("PUT", Some(_)) => "update",
        ("PATCH", Some(_)) => "patch",
        ("DELETE", Some(_)) => "delete",
        _ => return Err(ApiError::method_not_allowed(method.as_str())),
    };
    let resource = match &target.sub {
        Some(sub) => format!("{}/{sub}", target.rt.plural),
        None => target.rt.plural.clone(),
    };
    // A list or watch selecting one name is authorised under that name, as the API server
    // does, so a Role's resourceNames can allow it. A selector that does not parse names
    // nothing here; the request fails on it later.
    let selected = matches!(verb, "list" | "watch")
        .then(|| query.get("fieldSelector"))
        .flatten()
        .and_then(|text| FieldSelector::parse(text, &target.rt.kind).ok());
    let attrs = Attributes {
        verb,
        group,
        resource: resource.clone(),
        namespace: target.namespace.as_deref(),
        name: target
            .name
            .as_deref()
            .or_else(|| selected.as_ref().and_then(FieldSelector::exact_name)),
    };
    if !rbac::allowed(&sim.store, &user, &attrs) {
        sim.record_denial(&user, &attrs);
        return Err(ApiError::forbidden(
            &user.name,
            verb,
            group,
            &resource,
            target.name.as_deref(),
            target.namespace.as_deref(),
        ));
    }
    match sim
        .faults
        .check(verb, &resource, target.name.as_deref().unwrap_or_default())
    {
        Some(Injected::Fail(e)) => Err(e),
        Some(Injected::Hang) => std::future::pending().await,
        Some(Injected::FailAfter(e)) => {
            // The request takes effect; only its answer is replaced.
            let _ = carry_out(sim, method, uri, query, headers, body, target, verb).await;
            Err(e)
        }
        Some(Injected::HangAfter) => {
            let _ = carry_out(sim, method, uri, query, headers, body, target, verb).await;
            std::future::pending().await
        }
        None => carry_out(sim, method, uri, query, headers, body, target, verb).await,
    }
}

/// Serves an authenticated, authorized request for `target`.
#[allow(clippy::too_many_arguments)] // the parts of one request, as `serve` split them
async fn carry_out(
    sim: &Arc<Sim>,
    method: &Method,
    uri: &Uri,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
    target: Target,
    verb: &str,
) -> Result<Response, ApiError> {
    // Only JSON bodies are understood. A client sending protobuf (kubectl does for built-in
    // kinds) gets 415, and client-go then retries with JSON, as against a server without
    // protobuf support.
    if matches!(verb, "create" | "update") {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json");
        if !content_type.starts_with("application/json") {
            return Err(ApiError::unsupported_media_type(content_type));
        }
    }
    let dry_run = query.get("dryRun").is_some_and(|v| v == "All");
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let name = target.name.clone().unwrap_or_default();
    match verb {
        "get" if table::wants_table(accept) && target.sub.is_none() => {
            let object = api::get(sim, &target, &name)?;
            let rv = object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ok(axum::Json(table::table(
                &target.rt,
                &[object],
                &rv,
                jiff::Timestamp::now(),
            ))
            .into_response())
        }
        "list" if table::wants_table(accept) => {
            let list = api::list(sim, &target, &list_params(query, &target)?)?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            let rv = list["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default();
            Ok(
                axum::Json(table::table(&target.rt, &items, rv, jiff::Timestamp::now()))
                    .into_response(),
            )
        }
        "get" => match target.sub.as_deref() {
            None | Some("status") => Ok(axum::Json(api::get(sim, &target, &name)?).into_response()),
            Some("log") if target.rt.log_subresource => {
                let tail = query.get("tailLines").and_then(|t| t.parse().ok());
                let text = api::log(sim, &target, &name, tail)?;
                Ok(([(header::CONTENT_TYPE, "text/plain")], text).into_response())
            }
            Some(_) => Err(ApiError::no_route(uri.path())),
        },
        "list" => {
            Ok(axum::Json(api::list(sim, &target, &list_params(query, &target)?)?).into_response())
        }
        "watch" => {
            let params = watch::WatchParams {
                list: list_params(query, &target)?,
                resource_version: match query.get("resourceVersion").map(String::as_str) {
                    None | Some("") => None,
                    Some(v) => Some(v.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {v:?}"))
                    })?),
                },
                bookmarks: query
                    .get("allowWatchBookmarks")
                    .is_some_and(|v| v == "true"),
                send_initial_events: query.get("sendInitialEvents").is_some_and(|v| v == "true"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(Duration::from_secs),
            };
            let body = watch::start(sim, &target, params);
            Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
        }
        "create" => {
            let object = parse_json(&body)?;
            let created = api::create(sim, &target, object, dry_run)?;
            Ok((axum::http::StatusCode::CREATED, axum::Json(created)).into_response())
        }
        "update" => {
            let object = parse_json(&body)?;
            Ok(axum::Json(api::write(
                sim,
                &target,
                &name,
                Change::Replace(object),
                dry_run,
            )?)
            .into_response())
        }
        "patch" => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let patch = parse_json(&body)?;
            let change = Change::Patch {
                content_type,
                body: patch,
            };
            Ok(axum::Json(api::write(sim, &target, &name, change, dry_run)?).into_response())
        }
        "delete" => {
            let options = if body.is_empty() {
                None
            } else {
                Some(parse_json(&body)?)
            };
            let (code, object) = api::delete(sim, &target, &name, options.as_ref())?;
            let code = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
            Ok((code, axum::Json(object)).into_response())
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

fn authenticate(sim: &Sim, headers: &HeaderMap) -> Result<User, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    sim.lock_tokens()
        .get(token.trim())
        .cloned()
        .ok_or_else(ApiError::unauthorized)
}

/// Maps the path after `/api/v1` or `/apis/G/V` to a target. `namespaces/X/...` is a namespaced
/// path when the next segment is a namespaced resource of this group/version; otherwise it
/// addresses the Namespace `X` itself (and its subresources).
fn resolve(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let namespaced = |plural: &str| {
        registry
            .find(group, version, plural)
            .filter(|t| t.namespaced)
    };
    let target = |rt, namespace: Option<&str>, name: Option<&&str>, sub: Option<&&str>| Target {
        rt,
        namespace: namespace.map(str::to_owned),
        name: name.map(|n| (*n).to_owned()),
        sub: sub.map(|s| (*s).to_owned()),
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..]
            if namespaced(plural).is_some() && tail.len() <= 2 =>
        {
            Some(target(
                namespaced(plural)?,
                Some(ns),
                tail.first(),
                tail.get(1),
            ))
        }
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = registry.find(group, version, plural)?;
            // Namespaced resources may be listed/watched across namespaces, never addressed
            // by name without one.
            if rt.namespaced && !tail.is_empty() {
                return None;
            }
            Some(target(rt, None, tail.first(), tail.get(1)))
        }
        _ => None,
    }
}

fn list_params(query: &HashMap<String, String>, target: &Target) -> Result<ListParams, ApiError> {
    Ok(ListParams {
        labels: LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(
            query.get("fieldSelector").map_or("", String::as_str),
            &target.rt.kind,
        )
        .map_err(ApiError::bad_request)?,
        limit: query.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
        continue_token: query.get("continue").filter(|c| !c.is_empty()).cloned(),
    })
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}
