//! [`WorkflowRepo`] on Postgres.

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use super::versions::create_version_in;
use crate::error::{Result, StoreError};
use crate::page::{self, CursorKind, Page, PageRequest};
use crate::rows::workflows::WorkflowRow;
use crate::versions::{NewVersion, Version};
use crate::workflows::{NewWorkflow, Workflow, WorkflowRepo};

async fn insert_workflow<'e>(executor: impl sqlx::PgExecutor<'e>, new: &NewWorkflow) -> Result<Workflow> {
    let row: WorkflowRow = sqlx::query_as(
        "INSERT INTO workflows (id, name, description) VALUES ($1, $2, $3)
         RETURNING id, name, description, latest_version, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .bind(&new.name)
    .bind(&new.description)
    .fetch_one(executor)
    .await?;
    Ok(row.into())
}

#[async_trait]
impl WorkflowRepo for PgStore {
    async fn create_workflow(&self, new: &NewWorkflow) -> Result<Workflow> {
        insert_workflow(&self.pool, new).await
    }

    async fn create_workflow_with_version(
        &self,
        new: &NewWorkflow,
        version: &NewVersion,
    ) -> Result<(Workflow, Version)> {
        let mut tx = self.pool.begin().await?;
        let mut workflow = insert_workflow(&mut *tx, new).await?;
        let (version, _) = create_version_in(&mut tx, workflow.id, version).await?;
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
        .fetch_one(&self.pool)
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
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::not_found("workflow"))?;
        Ok(row.into())
    }

    async fn list_workflows(&self, page: &PageRequest) -> Result<Page<Workflow>> {
        let after = page::decode_text(CursorKind::Workflows, page.cursor.as_deref())?;
        let rows: Vec<WorkflowRow> = sqlx::query_as(
            "SELECT id, name, description, latest_version, created_at, updated_at
             FROM workflows
             WHERE deleted_at IS NULL AND ($1::text IS NULL OR name > $1)
             ORDER BY name
             LIMIT $2",
        )
        .bind(after)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let rows = rows.into_iter().map(Workflow::from).collect();
        Ok(Page::from_rows(rows, page, |w| page::encode_text(CursorKind::Workflows, &w.name)))
    }

    async fn delete_workflow(&self, name: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE workflows SET deleted_at = now(), updated_at = now() WHERE name = $1 AND deleted_at IS NULL",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "workflow" });
        }
        Ok(())
    }
}
