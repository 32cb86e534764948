//! The operator's retention: backups past a schedule's `keep` are deleted, their data with
//! them (unless the backup says to keep it), and deleted backups' finalizers are released.

use super::*;

impl SimOperator {
    pub(super) async fn apply_retention(
        &self,
        cluster: &PerconaXtraDBCluster,
        report: &mut StepReport,
    ) -> Result<(), OperatorError> {
        let ns = cluster.namespace().unwrap_or_default();
        let name = cluster.name_any();
        let api: Api<PerconaXtraDBClusterBackup> = Api::namespaced(self.client.clone(), &ns);
        let schedules = cluster.schedules().to_vec();
        for schedule in schedules {
            let Some(count) = schedule
                .retention_count()
                .and_then(|c| usize::try_from(c).ok())
            else {
                continue;
            };
            if count == 0 {
                continue;
            }
            let selector = format!(
                "{}={}",
                labels::BACKUP_ANCESTOR,
                ancestor(&ns, &name, &schedule.name)
            );
            let mut kept: Vec<PerconaXtraDBClusterBackup> = api
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .into_iter()
                .filter(|b| b.metadata.deletion_timestamp.is_none())
                .filter(|b| {
                    b.status.as_ref().and_then(|s| s.state.as_deref()) == Some(state::SUCCEEDED)
                })
                .collect();
            kept.sort_by_key(|b| {
                (
                    b.status
                        .as_ref()
                        .and_then(|s| s.completed.clone())
                        .unwrap_or_default(),
                    b.name_any(),
                )
            });
            let excess = kept.len().saturating_sub(count);
            for old in kept.into_iter().take(excess) {
                api.delete(&old.name_any(), &Default::default()).await?;
                report.retired.push(old.name_any());
            }
        }
        Ok(())
    }

    pub(super) async fn purge_deleted(&self, report: &mut StepReport) -> Result<(), OperatorError> {
        let all: Api<PerconaXtraDBClusterBackup> = Api::all(self.client.clone());
        for backup in all.list(&ListParams::default()).await?.items {
            let holds = backup
                .finalizers()
                .iter()
                .any(|f| f == pxc::DELETE_BACKUP_FINALIZER);
            if backup.metadata.deletion_timestamp.is_none() || !holds {
                continue;
            }
            let ns = backup.namespace().unwrap_or_default();
            if !self.delete_data(&ns, &backup).await? {
                // The data could not be removed (S3 down): keep the finalizer and retry later,
                // as the operator does.
                continue;
            }
            let remaining: Vec<String> = backup
                .finalizers()
                .iter()
                .filter(|f| *f != pxc::DELETE_BACKUP_FINALIZER)
                .cloned()
                .collect();
            super::lifecycle::set_finalizers(&self.client, &backup, remaining).await?;
            report.purged.push(backup.name_any());
        }
        Ok(())
    }

    /// The keys in a storage's `credentialsSecret`, as the backup Job reads them.
    pub(super) async fn credentials(
        &self,
        ns: &str,
        s3: &pxc::S3Storage,
    ) -> Result<Option<s3client::StaticCredentials>, OperatorError> {
        let Some(name) = &s3.credentials_secret else {
            return Ok(None);
        };
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        Ok(secrets
            .get_opt(name)
            .await?
            .as_ref()
            .and_then(s3client::credentials_from_secret))
    }

    /// Removes a backup's objects from its S3 storage; `false` when S3 refused.
    pub(super) async fn delete_data(
        &self,
        ns: &str,
        backup: &PerconaXtraDBClusterBackup,
    ) -> Result<bool, OperatorError> {
        let status = backup.status.clone().unwrap_or_default();
        let (Some(s3), Some(destination)) = (status.s3, status.destination) else {
            return Ok(true);
        };
        let Some(prefix) = destination
            .strip_prefix("s3://")
            .and_then(|rest| rest.split_once('/'))
            .map(|(_, key)| format!("{key}/"))
        else {
            return Ok(true);
        };
        let Some(credentials) = self.credentials(ns, &s3).await? else {
            return Ok(false);
        };
        let client = s3client::client(
            &Endpoint::of_storage(&s3),
            &credentials,
            self.options.s3_timeouts,
        );
        let listed = client
            .list_objects_v2()
            .bucket(s3.bucket_name())
            .prefix(&prefix)
            .send()
            .await;
        let Ok(listed) = listed else {
            return Ok(false);
        };
        for object in listed.contents() {
            if let Some(key) = object.key()
                && client
                    .delete_object()
                    .bucket(s3.bucket_name())
                    .key(key)
                    .send()
                    .await
                    .is_err()
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
