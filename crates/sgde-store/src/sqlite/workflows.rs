//! [`WorkflowRepo`] on SQLite.
//!
//! Single statements on the writer connection, except creating a workflow with its first
//! version, which runs both inserts in one `BEGIN IMMEDIATE` transaction so that either both
//! rows exist afterwards or neither does, as on Postgres. The live-name rule is the partial
//! unique index `workflows_name_live_key`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::SqliteStore;
use super::versions::create_version_in;
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::workflows::WorkflowRow;
use crate::versions::{NewVersion, Version};
use crate::workflows::{NewWorkflow, Workflow, WorkflowRepo};

async fn insert_workflow<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    new: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<Workflow> {
    let row: WorkflowRow = sqlx::query_as(
        "INSERT INTO workflows (id, name, description, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         RETURNING id, name, description, latest_version, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(&new.name)
    .bind(&new.description)
    .bind(now)
    .fetch_one(executor)
    .await?;
    Ok(row.into())
}

#[async_trait]
impl WorkflowRepo for SqliteStore {
    async fn create_workflow(&self, new: &NewWorkflow) -> Result<Workflow> {
        insert_workflow(&self.writer, new, super::now()).await
    }

    async fn create_workflow_with_version(
        &self,
        new: &NewWorkflow,
        version: &NewVersion,
    ) -> Result<(Workflow, Version)> {
        let mut tx = self.begin().await?;
        // One timestamp for the whole transaction, as Postgres' now() gives.
        let now = super::now();
        let mut workflow = insert_workflow(&mut *tx, new, now).await?;
        let (version, _) = create_version_in(&mut tx, workflow.id, version, now).await?;
        tx.commit().await?;
        workflow.latest_version = Some(version.number);
        Ok((workflow, version))
    }

    async fn get_workflow(&self, name: &str) -> Result<Workflow> {
        let row: WorkflowRow = sqlx::query_as(
            "SELECT id, name, description, latest_version, created_at, updated_at
             FROM workflows WHERE name = $1 AND deleted_at IS NULL",
        )
        .bind(name)
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::not_found("workflow"))?;
        Ok(row.into())
    }

    async fn get_workflow_by_id(&self, id: Uuid) -> Result<Workflow> {
        let row: WorkflowRow = sqlx::query_as(
            "SELECT id, name, description, latest_version, created_at, updated_at
             FROM workflows WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id)
        .fetch_one(&self.reader)
        .await
        .map_err(StoreError::not_found("workflow"))?;
        Ok(row.into())
    }

    async fn list_workflows(&self, page: &PageRequest) -> Result<Page<Workflow>> {
        let after = page::decode_text(CursorKind::Workflows, page.cursor.as_deref())?;
        let rows: Vec<WorkflowRow> = sqlx::query_as(
            "SELECT id, name, description, latest_version, created_at, updated_at
             FROM workflows
             WHERE deleted_at IS NULL AND ($1 IS NULL OR name > $1)
             ORDER BY name
             LIMIT $2",
        )
        .bind(after)
        .bind(page.fetch())
        .fetch_all(&self.reader)
        .await?;
        let rows = rows.into_iter().map(Workflow::from).collect();
        Ok(Page::from_rows(rows, page, |w| page::encode_text(CursorKind::Workflows, &w.name)))
    }

    async fn delete_workflow(&self, name: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE workflows SET deleted_at = $2, updated_at = $2 WHERE name = $1 AND deleted_at IS NULL",
        )
        .bind(name)
        .bind(super::now())
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "workflow" });
        }
        Ok(())
    }
}
