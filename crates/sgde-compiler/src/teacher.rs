//! Calls to the teacher: one JSON reply per step, validated, with one bounded repair round.
//!
//! A teacher reply must be JSON matching the step's schema and then deserialise into the typed
//! reply. The HTTP client may already have repaired a schema violation (it does for requests
//! with `json_schema`), but the [`ModelClient`] trait does not promise that, so the reply is
//! checked again here; a reply that still fails gets one repair round — the conversation plus a
//! message quoting the problem — and after that the step fails. Timeouts and endpoint errors fail
//! the step at once. A failed step is recorded in the iteration, never raised.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use sgde_llm::structured::{SchemaCheck, repair_messages};
use sgde_llm::{ChatRequest, Decoding, Message, ModelClient, ModelError};

use crate::client::{mix, sample_index};
use crate::gate::{Gate, refused};
use crate::record::{FailureKind, StepFailure, TeacherStep};
use crate::usage::ModelRole;

/// A successful step: the typed reply and the conversation that produced it (the repair of an
/// edit list continues it).
pub(crate) struct Reply<T> {
    pub(crate) value: T,
    pub(crate) conversation: Vec<Message>,
    /// A parse or schema problem that the repair round fixed.
    pub(crate) repaired: Option<StepFailure>,
}

/// The teacher as the loop uses it.
pub(crate) struct Teacher {
    pub(crate) models: Arc<dyn ModelClient>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) endpoint: String,
    pub(crate) seed: u64,
    pub(crate) timeout: Duration,
    pub(crate) max_tokens: Option<u32>,
}

impl Teacher {
    /// Sends `messages` for `step` of `iteration` and returns the typed reply.
    pub(crate) async fn ask<T: DeserializeOwned>(
        &self,
        step: TeacherStep,
        iteration: u32,
        messages: Vec<Message>,
        schema: &Value,
        check: &SchemaCheck,
    ) -> Result<Reply<T>, StepFailure> {
        let text = self.call(step, iteration, 0, &messages, schema).await?;
        let problem = match parse::<T>(&text, check) {
            Ok(value) => {
                let mut conversation = messages;
                conversation.push(Message::assistant(text));
                return Ok(Reply { value, conversation, repaired: None });
            }
            Err(problem) => problem,
        };
        let repair = repair_messages(&messages, &text, &problem);
        let second = self.call(step, iteration, 1, &repair, schema).await?;
        match parse::<T>(&second, check) {
            Ok(value) => {
                let mut conversation = repair;
                conversation.push(Message::assistant(second));
                let repaired =
                    StepFailure { step, kind: FailureKind::InvalidReply, message: problem, recovered: true };
                Ok(Reply { value, conversation, repaired: Some(repaired) })
            }
            Err(again) => Err(StepFailure {
                step,
                kind: FailureKind::InvalidReply,
                message: format!("{again} (after a repair round; the first reply had: {problem})"),
                recovered: false,
            }),
        }
    }

    async fn call(
        &self,
        step: TeacherStep,
        iteration: u32,
        attempt: u64,
        messages: &[Message],
        schema: &Value,
    ) -> Result<String, StepFailure> {
        let fail = |kind, message: String| StepFailure { step, kind, message, recovered: false };
        let request = ChatRequest {
            endpoint: self.endpoint.clone(),
            messages: messages.to_vec(),
            decoding: Decoding { max_tokens: self.max_tokens, ..Decoding::default() },
            // A function of the compile's seed and the position in it, so that a resumed job asks
            // exactly what it asked before (and the response cache answers).
            sample_index: sample_index(mix(&[self.seed, u64::from(iteration), step as u64, attempt])),
            json_schema: Some(schema.clone()),
        };
        let ticket = self
            .gate
            .admit(ModelRole::Teacher)
            .map_err(|why| fail(FailureKind::Model, refused(&self.endpoint, &why).to_string()))?;
        match tokio::time::timeout(self.timeout, self.models.complete(request)).await {
            Ok(Ok(response)) => {
                ticket.settle(Ok(&response));
                Ok(response.text)
            }
            Ok(Err(e)) => {
                ticket.settle(Err(&e));
                let kind = match e {
                    ModelError::Schema { .. } | ModelError::BadReply { .. } => FailureKind::InvalidReply,
                    ModelError::Timeout { .. } => FailureKind::Timeout,
                    _ => FailureKind::Model,
                };
                Err(fail(kind, e.to_string()))
            }
            // The ticket is dropped unsettled: an abandoned call counts as a failed one.
            Err(_) => Err(fail(
                FailureKind::Timeout,
                format!("no reply from `{}` within {} ms", self.endpoint, self.timeout.as_millis()),
            )),
        }
    }
}

/// The JSON in `text`, validated and deserialised; the error is worded for the teacher.
fn parse<T: DeserializeOwned>(text: &str, check: &SchemaCheck) -> Result<T, String> {
    let value = check.check(text)?;
    serde_json::from_value(value).map_err(|e| format!("the JSON does not have the required shape: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::prompts::prompts;
    use crate::record::{CritiqueReply, EditReply};

    #[test]
    fn replies_parse_from_prose_and_fences() {
        let check = &prompts().critique_check;
        let reply: CritiqueReply =
            parse("Here:\n```json\n{\"critiques\": [{\"node\": \"a\", \"critique\": \"b\"}]}\n```", check)
                .unwrap();
        assert_eq!(reply.critiques[0].node, "a");
        assert!(
            parse::<CritiqueReply>("{\"critiques\": [{\"node\": \"solve\", \"critique\": \"The arith", check)
                .is_err()
        );
        let edits =
            json!({"edits": [{"op": "set_prompt", "node": "a", "prompt": "p", "extra": 1}]}).to_string();
        let err = parse::<EditReply>(&edits, &prompts().edit_check).unwrap_err();
        assert!(!err.is_empty());
    }
}
