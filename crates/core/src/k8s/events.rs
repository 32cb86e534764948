//! Kubernetes Events (core/v1) on the objects Backstop observes or changes: the audit trail
//! `kubectl describe` shows next to the object.

use k8s_openapi::api::core::v1::{Event, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something happened as intended.
    Normal,
    /// Something failed or was refused.
    Warning,
}

/// One Event to emit.
#[derive(Debug, Clone)]
pub struct EventSpec<'a> {
    /// Normal or Warning.
    pub type_: EventType,
    /// A short CamelCase reason (`FailedOver`, `FailoverRefused`).
    pub reason: &'a str,
    /// What Backstop did (`Failover`, `Revert`, `ObserveBackup`).
    pub action: &'a str,
    /// The human-readable message.
    pub message: String,
}

/// Emits `event` about `object`.
///
/// # Errors
///
/// The API error when the Event cannot be created.
pub async fn emit<K>(
    client: &kube::Client,
    object: &K,
    event: EventSpec<'_>,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    emit_about(client, reference(object), event).await
}

/// The reference Events use for `object`.
pub fn reference<K>(object: &K) -> ObjectReference
where
    K: Resource<DynamicType = ()>,
{
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(object.name_any()),
        namespace: object.namespace(),
        uid: object.uid(),
        resource_version: object.resource_version(),
        ..ObjectReference::default()
    }
}

/// Emits `event` about the object `involved`.
///
/// # Errors
///
/// The API error when the Event cannot be created.
pub async fn emit_about(
    client: &kube::Client,
    involved: ObjectReference,
    event: EventSpec<'_>,
) -> Result<(), kube::Error> {
    let ns = involved.namespace.clone().unwrap_or_default();
    let name = involved.name.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let body = Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        involved_object: involved,
        reason: Some(event.reason.to_owned()),
        type_: Some(
            match event.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .to_owned(),
        ),
        // The API server caps messages at 1 KiB for events.k8s.io; keep core Events as short.
        message: Some(truncate(&event.message, 1024)),
        reporting_component: Some("backstop".into()),
        // Required by the API server on every Event with an eventTime; also outside a pod.
        reporting_instance: Some(crate::k8s::identity::instance().to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        action: Some(event.action.to_owned()),
        count: Some(1),
        ..Event::default()
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    events.create(&PostParams::default(), &body).await?;
    Ok(())
}

fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn truncates_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = super::truncate(&s, 1023);
        assert!(t.len() <= 1023);
        assert!(s.starts_with(&t));
        assert_eq!(super::truncate("short", 1024), "short");
    }
}
