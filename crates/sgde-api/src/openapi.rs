//! The OpenAPI 3.1 document: generated from the handlers' annotations, plus the security scheme
//! and the shared schemas. `sgde openapi` prints it; `openapi/openapi.json` is its committed copy.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::problem::{FieldError, Problem};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sgde",
        description = "Compile agent workflows with a teacher model and serve them to a small student model. \
            Errors are RFC 9457 problem+json documents with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(Problem, FieldError, sgde_workflow::WorkflowSpec, sgde_workflow::NodeMap)),
    modifiers(&Security),
    tags(
        (name = "endpoints", description = "Model endpoints workflows call by name"),
        (name = "workflows", description = "Workflows"),
        (name = "versions", description = "Immutable, content-addressed versions"),
        (name = "labels", description = "Movable names for versions"),
        (name = "execute", description = "Synchronous execution"),
        (name = "runs", description = "Asynchronous runs on the durable queue"),
        (name = "executions", description = "The execution log"),
        (name = "keys", description = "API keys"),
        (name = "system", description = "Health, readiness, metrics, schemas"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sgde API key")
                    .description(Some("`Authorization: Bearer <API key>`"))
                    .build(),
            ),
        );
    }
}
