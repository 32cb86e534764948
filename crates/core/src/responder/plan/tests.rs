use super::*;
use crate::config::{BufferPolicy, SecondaryTarget};

fn backup() -> Value {
    json!({
        "allowParallel": true,
        "storages": {
            "s3-us-west": {"type": "s3", "s3": {"bucket": "pxc/c1", "region": "us-west-2",
                "credentialsSecret": "creds", "endpointUrl": "https://a"},
                "nodeSelector": {"a": "b"}},
            "fs": {"type": "filesystem", "volume": {"emptyDir": {}}},
        },
        "schedule": [
            {"name": "daily", "schedule": "0 0 * * *", "storageName": "s3-us-west", "keep": 3},
            {"name": "local", "schedule": "0 1 * * *", "storageName": "fs"},
        ],
        "pitr": {"enabled": true, "storageName": "s3-us-west", "timeBetweenUploads": 60},
    })
}

fn policy(strategy: Strategy) -> FailoverPolicy {
    FailoverPolicy {
        strategy,
        storage: None,
        secondary: Some(SecondaryTarget {
            storage_name: "dr".into(),
            bucket: "pxc-dr/c1".into(),
            region: "us-east-1".into(),
            endpoint_url: None,
            credentials_secret: "dr-creds".into(),
            force_path_style: true,
            verify_tls: true,
            ca_bundle: None,
        }),
        secondaries: vec![SecondaryTarget {
            storage_name: "dr2".into(),
            bucket: "pxc-dr2/c1".into(),
            region: "eu-west-1".into(),
            endpoint_url: Some("https://minio.example".into()),
            credentials_secret: "dr2-creds".into(),
            force_path_style: true,
            verify_tls: true,
            ca_bundle: None,
        }],
        buffer: Some(BufferPolicy {
            storage_name: "buf".into(),
            storage_class_name: Some("gp3".into()),
            size: "10Gi".into(),
            access_modes: vec!["ReadWriteOnce".into()],
        }),
        pitr_on_buffer: PitrOnBuffer::Disable,
    }
}

fn round_trip(strategy: Strategy, kind: Destination) -> (Value, FailoverPlan) {
    let original = backup();
    let plan = plan_failover(&original, &policy(strategy), kind).unwrap();
    let mut failed = original.clone();
    apply(&mut failed, &plan.changes);
    assert_ne!(failed, original);
    let journal = journal(&plan);
    let revert = plan_revert(&failed, &journal);
    assert!(revert.kept.is_empty());
    let mut back = failed.clone();
    apply_revert(&mut back, &revert);
    assert_eq!(back, original, "the revert restores every field exactly");
    (failed, plan)
}

fn journal(plan: &FailoverPlan) -> Journal {
    let mut j = super::super::journal::test_journal(
        super::super::journal::Phase::FailedOver,
        plan.changes.clone(),
    );
    j.strategy = plan.strategy.into();
    j.target_kind = plan.target_kind;
    j.target_storage = plan.target_storage.clone();
    j.target_secondary = plan.secondary.clone();
    j.protected = plan.protected.clone();
    j
}

/// Down the list and back up, in any order: each move's changes are exactly those of a
/// failover straight to its target, and the revert after any of them restores the original.
#[test]
fn moves_between_targets_are_failovers_of_the_original_and_revert_exactly() {
    use Destination::{Buffer, Secondary};
    for strategy in [Strategy::Repoint, Strategy::InPlace] {
        let original = backup();
        let p = policy(strategy);
        assert_eq!(
            Destination::all(&p),
            [Secondary(0), Secondary(1), Buffer],
            "best first, the buffer last"
        );
        let first = plan_failover(&original, &p, Secondary(0)).unwrap();
        let mut spec = original.clone();
        apply(&mut spec, &first.changes);
        let mut run = journal(&first);
        assert_eq!(current_destination(&run, &p), Some(Secondary(0)));
        for to in [Secondary(1), Buffer, Secondary(1), Secondary(0), Buffer] {
            let (moved, plan) = plan_move(&spec, &run, &p, to).unwrap();
            let direct = plan_failover(&original, &p, to).unwrap();
            assert_eq!(plan.changes, direct.changes, "{strategy:?} {to:?}");
            assert_eq!(plan.destination, to);
            let mut expected = original.clone();
            apply(&mut expected, &direct.changes);
            assert_eq!(moved, expected, "{strategy:?} {to:?}");
            spec = moved;
            run = journal(&plan);
            assert_eq!(current_destination(&run, &p), Some(to), "{strategy:?}");
            let mut back = spec.clone();
            apply_revert(&mut back, &plan_revert(&spec, &run));
            assert_eq!(back, original, "{strategy:?} {to:?}: the revert is exact");
        }
        // In place the entry keeps the primary's name and holds the second secondary.
        let (on_second, _) = plan_move(&spec, &run, &p, Secondary(1)).unwrap();
        let entry = if strategy == Strategy::InPlace {
            &on_second["storages"]["s3-us-west"]
        } else {
            &on_second["storages"]["dr2"]
        };
        assert_eq!(entry["s3"]["bucket"], "pxc-dr2/c1", "{strategy:?}");
        assert_eq!(entry["s3"]["endpointUrl"], "https://minio.example");
    }
}

/// Journals from before ordered secondaries name no secondary: repointed, the storage entry
/// says which; in place, it was the only (first) secondary. A secondary since removed from
/// the policy has no rank.
#[test]
fn the_current_destination_of_older_journals() {
    let mut p = policy(Strategy::Repoint);
    let mut j =
        super::super::journal::test_journal(super::super::journal::Phase::FailedOver, vec![]);
    j.target_storage = "dr2".into();
    assert_eq!(current_destination(&j, &p), Some(Destination::Secondary(1)));
    j.target_storage = "gone".into();
    assert_eq!(current_destination(&j, &p), None);
    j.strategy = "in-place".into();
    j.target_storage = "s3-us-west".into();
    assert_eq!(current_destination(&j, &p), Some(Destination::Secondary(0)));
    j.target_secondary = Some("dr2".into());
    assert_eq!(current_destination(&j, &p), Some(Destination::Secondary(1)));
    j.target_kind = TargetKind::Buffer;
    assert_eq!(current_destination(&j, &p), Some(Destination::Buffer));
    p.secondaries.clear();
    assert_eq!(
        plan_failover(&backup(), &p, Destination::Secondary(1)),
        Err(PlanError::NoSuchSecondary(1))
    );
}

#[test]
fn repoint_moves_schedules_and_pitr_only() {
    let (failed, plan) = round_trip(Strategy::Repoint, Destination::Secondary(0));
    assert_eq!(plan.protected, vec!["s3-us-west"]);
    assert_eq!(failed["schedule"][0]["storageName"], "dr");
    assert_eq!(failed["schedule"][1]["storageName"], "fs");
    assert_eq!(failed["pitr"]["storageName"], "dr");
    assert_eq!(failed["storages"]["dr"]["s3"]["bucket"], "pxc-dr/c1");
    assert_eq!(
        failed["storages"]["s3-us-west"],
        backup()["storages"]["s3-us-west"]
    );
    assert_eq!(plan.verify.as_ref(), Some(&failed["storages"]["dr"]));
}

#[test]
fn in_place_rewrites_the_storage_and_keeps_pod_settings() {
    let (failed, plan) = round_trip(Strategy::InPlace, Destination::Secondary(0));
    let s = &failed["storages"]["s3-us-west"];
    assert_eq!(s["s3"]["bucket"], "pxc-dr/c1");
    assert_eq!(s["s3"]["region"], "us-east-1");
    assert_eq!(s["s3"]["credentialsSecret"], "dr-creds");
    assert!(s["s3"].get("endpointUrl").is_none());
    assert_eq!(s["nodeSelector"]["a"], "b");
    assert_eq!(failed["schedule"][0]["storageName"], "s3-us-west");
    assert_eq!(plan.target_storage, "s3-us-west");
}

/// The primary's `caBundle` is about the primary's endpoint: in place, the secondary's
/// own bundle replaces it, or none is left; repointed, the new entry carries the
/// secondary's. The revert restores the primary's exactly either way.
#[test]
fn the_secondary_is_trusted_by_its_own_ca_bundle() {
    let mut original = backup();
    original["storages"]["s3-us-west"]["s3"]["caBundle"] =
        json!({"name": "primary-ca", "key": "ca.crt"});
    let with_ca = |strategy| {
        let mut policy = policy(strategy);
        if let Some(secondary) = policy.secondary.as_mut() {
            secondary.ca_bundle = Some(crate::config::CaBundleSecret {
                namespace: None,
                name: "dr-ca".into(),
                key: "bundle.pem".into(),
            });
        }
        policy
    };
    let cases = [
        (
            with_ca(Strategy::InPlace),
            "s3-us-west",
            Some(json!({"name": "dr-ca", "key": "bundle.pem"})),
        ),
        (policy(Strategy::InPlace), "s3-us-west", None),
        (
            with_ca(Strategy::Repoint),
            "dr",
            Some(json!({"name": "dr-ca", "key": "bundle.pem"})),
        ),
        (policy(Strategy::Repoint), "dr", None),
    ];
    for (policy, storage, ca) in cases {
        let plan = plan_failover(&original, &policy, Destination::Secondary(0)).unwrap();
        let mut failed = original.clone();
        apply(&mut failed, &plan.changes);
        assert_eq!(
            failed["storages"][storage]["s3"].get("caBundle"),
            ca.as_ref(),
            "{:?} {storage}",
            policy.strategy
        );
        assert_eq!(plan.verify.as_ref(), Some(&failed["storages"][storage]));
        let mut back = failed.clone();
        apply_revert(&mut back, &plan_revert(&failed, &journal(&plan)));
        assert_eq!(back, original);
    }
}

#[test]
fn buffer_uses_a_pvc_template_and_disables_pitr() {
    let (failed, plan) = round_trip(Strategy::Repoint, Destination::Buffer);
    let claim = &failed["storages"]["buf"]["volume"]["persistentVolumeClaim"];
    assert_eq!(claim["storageClassName"], "gp3");
    assert_eq!(claim["resources"]["requests"]["storage"], "10Gi");
    assert!(claim.get("claimName").is_none());
    assert_eq!(failed["schedule"][0]["storageName"], "buf");
    assert_eq!(failed["pitr"]["enabled"], false);
    assert_eq!(failed["pitr"]["storageName"], "s3-us-west");
    assert!(plan.verify.is_none());
    let mut keep = policy(Strategy::Repoint);
    keep.pitr_on_buffer = PitrOnBuffer::Keep;
    let plan = plan_failover(&backup(), &keep, Destination::Buffer).unwrap();
    assert!(plan.changes.iter().all(|c| c.field != Field::Pitr));
}

#[test]
fn a_human_edit_after_the_failover_is_kept() {
    let original = backup();
    let plan = plan_failover(
        &original,
        &policy(Strategy::Repoint),
        Destination::Secondary(0),
    )
    .unwrap();
    let mut failed = original.clone();
    apply(&mut failed, &plan.changes);
    failed["schedule"][0]["storageName"] = json!("fs");
    let revert = plan_revert(&failed, &journal(&plan));
    assert_eq!(revert.kept, vec![Field::ScheduleStorage("daily".into())]);
    let mut back = failed.clone();
    apply_revert(&mut back, &revert);
    assert_eq!(back["schedule"][0]["storageName"], "fs");
    assert_eq!(back["pitr"], original["pitr"]);
    assert!(back["storages"].get("dr").is_none());
}

#[test]
fn moving_to_the_buffer_is_the_buffer_failover_of_the_original_and_reverts_exactly() {
    for strategy in [Strategy::Repoint, Strategy::InPlace] {
        let original = backup();
        let p = policy(strategy);
        let secondary = plan_failover(&original, &p, Destination::Secondary(0)).unwrap();
        let mut on_secondary = original.clone();
        apply(&mut on_secondary, &secondary.changes);
        // A field the secondary failover did not touch, changed since: kept as it is.
        on_secondary["allowParallel"] = json!(false);

        let (moved, plan) =
            plan_move(&on_secondary, &journal(&secondary), &p, Destination::Buffer).unwrap();
        let direct = plan_failover(&original, &p, Destination::Buffer).unwrap();
        assert_eq!(plan.changes, direct.changes, "{strategy:?}");
        assert_eq!(plan.target_kind, TargetKind::Buffer);
        let mut expected = original.clone();
        apply(&mut expected, &direct.changes);
        expected["allowParallel"] = json!(false);
        assert_eq!(moved, expected, "{strategy:?}");
        // Nothing of the secondary is left (in-place: the primary entry is back).
        assert_eq!(
            moved["storages"]["s3-us-west"], original["storages"]["s3-us-west"],
            "{strategy:?}"
        );
        assert!(moved["storages"].get("dr").is_none(), "{strategy:?}");

        let mut back = moved.clone();
        apply_revert(&mut back, &plan_revert(&moved, &journal(&plan)));
        let mut want = original.clone();
        want["allowParallel"] = json!(false);
        assert_eq!(back, want, "{strategy:?}: the revert restores the original");
    }
}

#[test]
fn moving_to_the_buffer_refuses_edited_fields_and_a_missing_buffer() {
    let original = backup();
    let p = policy(Strategy::Repoint);
    let secondary = plan_failover(&original, &p, Destination::Secondary(0)).unwrap();
    let mut on_secondary = original.clone();
    apply(&mut on_secondary, &secondary.changes);
    let mut edited = on_secondary.clone();
    edited["schedule"][0]["storageName"] = json!("fs");
    assert!(matches!(
        plan_move(&edited, &journal(&secondary), &p, Destination::Buffer),
        Err(MoveError::EditedSince(fields)) if fields.contains("daily")
    ));
    let mut no_buffer = p.clone();
    no_buffer.buffer = None;
    assert_eq!(
        plan_move(
            &on_secondary,
            &journal(&secondary),
            &no_buffer,
            Destination::Buffer
        ),
        Err(MoveError::Plan(PlanError::NoTarget("buffer")))
    );
}

#[test]
fn refuses_what_cannot_be_planned() {
    let mut p = policy(Strategy::Repoint);
    p.storage = Some("fs-none".into());
    assert!(matches!(
        plan_failover(&backup(), &p, Destination::Secondary(0)),
        Err(PlanError::NothingProtected(_))
    ));
    let mut p = policy(Strategy::Repoint);
    p.secondary = None;
    p.secondaries.clear();
    assert_eq!(
        plan_failover(&backup(), &p, Destination::Secondary(0)),
        Err(PlanError::NoTarget("secondary"))
    );
    let mut p = policy(Strategy::Repoint);
    p.secondary.as_mut().unwrap().storage_name = "s3-us-west".into();
    assert!(matches!(
        plan_failover(&backup(), &p, Destination::Secondary(0)),
        Err(PlanError::TargetIsProtected(_))
    ));
    assert_eq!(
        plan_failover(&Value::Null, &p, Destination::Secondary(0)),
        Err(PlanError::NoBackupSpec)
    );
}
