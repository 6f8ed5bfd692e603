//! A logical call: from a prepared [`Sample`] to validated text and its usage.
//!
//! - **Format fallback.** A structured request is first sent in the endpoint's current mode; if
//!   the server refuses the `response_format` the same call is sent again at once in the next
//!   weaker mode, and on success the endpoint remembers the weaker mode. Only a *success* after a
//!   refusal steps the endpoint down, so an outage does not; a transient 500 on `json_schema`
//!   that happens to be followed by a success does, which costs nothing in correctness (every
//!   mode validates locally) — only the server-side enforcement is lost until restart.
//! - **Validation and repair.** See [`crate::structured`]: one repair round, then
//!   [`ModelError::Schema`] naming the validator's problem.
//! - **Usage.** From the reply's `usage`, else estimated (~4 chars per token) and flagged; an
//!   `n`-choice reply's usage is split evenly over its choices so that totals add up.

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::Value;

use super::transport::{Reply, SendError};
use super::{Inner, Sample};
use crate::config::StructuredOutput;
use crate::model::{Decoding, Message, ModelError, Usage};
use crate::structured;
use crate::usage::{estimate_prompt_tokens, estimate_tokens};
use crate::wire::{ChatCompletionRequest, JsonSchemaFormat, ResponseFormat};

impl Inner {
    /// One sample, one choice.
    pub(crate) async fn call_one(&self, sample: &Sample) -> Result<(String, Usage), ModelError> {
        let (reply, mode) = self.first_pass(sample, None).await?;
        let mut parts = self.usage_of(&reply, &sample.messages, 1);
        let usage = parts.pop().unwrap_or_default();
        let text = reply.texts.into_iter().next().unwrap_or_else(|| Err("the reply has no choices".into()));
        self.finish(sample, text, mode, usage).await
    }

    /// The samples at `indices`, in that order, from one `n`-choice request where possible.
    pub(crate) async fn call_many(
        &self,
        samples: &[Sample],
        indices: &[usize],
    ) -> Vec<Result<(String, Usage), ModelError>> {
        let Some(&first) = indices.first() else { return Vec::new() };
        if indices.len() == 1 {
            return vec![self.call_one(&samples[first]).await];
        }
        let wanted = u32::try_from(indices.len()).unwrap_or(u32::MAX);
        let (reply, mode) = match self.first_pass(&samples[first], Some(wanted)).await {
            Ok(pass) => pass,
            Err(e) => return indices.iter().map(|_| Err(e.clone())).collect(),
        };
        let got = reply.texts.len().min(indices.len());
        if got < indices.len() {
            self.n_honoured.store(false, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(endpoint = %self.config.name, asked = indices.len(), got, "endpoint ignores `n`; using parallel calls from now on");
        }
        let usages = self.usage_of(&reply, &samples[first].messages, reply.texts.len());
        let from_choices = reply
            .texts
            .into_iter()
            .zip(usages)
            .zip(indices)
            .take(got)
            .map(|((text, usage), &i)| self.finish(&samples[i], text, mode, usage));
        let from_calls = indices[got..].iter().map(|&i| self.call_one(&samples[i]));
        let (mut out, rest) = futures::future::join(
            futures::future::join_all(from_choices),
            futures::future::join_all(from_calls),
        )
        .await;
        out.extend(rest);
        out
    }

    /// Sends the sample (asking for `n` choices when given), stepping down the structured mode
    /// when the server refuses it. Returns the reply and the mode that worked.
    async fn first_pass(
        &self,
        sample: &Sample,
        n: Option<u32>,
    ) -> Result<(Reply, Option<StructuredOutput>), ModelError> {
        if let Some(schema) = &sample.schema {
            // An invalid schema is the caller's bug: fail before paying for a call.
            self.schema_check(schema)?;
        }
        let mut mode = sample.schema.as_ref().map(|_| self.current_mode());
        let mut stepped_down = false;
        loop {
            let messages = self.messages_for(sample, &sample.messages, mode);
            let result =
                self.send_messages(&messages, &sample.decoding, sample.schema.as_ref(), n, mode).await;
            match result {
                Ok(reply) => {
                    if let (true, Some(m)) = (stepped_down, mode) {
                        self.step_down_to(m);
                    }
                    return Ok((reply, mode));
                }
                Err(SendError::FormatRejected { status, message }) => {
                    match mode.and_then(StructuredOutput::weaker) {
                        Some(weaker) => {
                            tracing::debug!(endpoint = %self.config.name, status, %message, ?weaker, "response_format refused; trying a weaker mode");
                            mode = Some(weaker);
                            stepped_down = true;
                        }
                        None => {
                            return Err(ModelError::Rejected {
                                endpoint: self.config.name.clone(),
                                status,
                                message,
                            });
                        }
                    }
                }
                Err(SendError::Model(e)) => return Err(e),
            }
        }
    }

    /// Turns one choice into the final text: plain text as is; structured text validated, with
    /// one repair round.
    async fn finish(
        &self,
        sample: &Sample,
        text: Result<String, String>,
        mode: Option<StructuredOutput>,
        mut usage: Usage,
    ) -> Result<(String, Usage), ModelError> {
        let text = text.map_err(|m| self.bad_reply(m))?;
        let Some(schema) = sample.schema.as_ref() else { return Ok((text, usage)) };
        let check = self.schema_check(schema)?;
        let problem = match check.check(&text) {
            Ok(value) => return Ok((value.to_string(), usage)),
            Err(problem) => problem,
        };
        tracing::debug!(endpoint = %self.config.name, %problem, "structured reply invalid; one repair round");
        let base = self.messages_for(sample, &sample.messages, mode);
        let conversation = structured::repair_messages(&base, &text, &problem);
        let reply = self
            .send_messages(&conversation, &sample.decoding, Some(schema), None, mode)
            .await
            .map_err(|e| match e {
                SendError::Model(e) => e,
                SendError::FormatRejected { status, message } => {
                    ModelError::Rejected { endpoint: self.config.name.clone(), status, message }
                }
            })?;
        if let Some(repair_usage) = self.usage_of(&reply, &conversation, 1).pop() {
            usage.add(&repair_usage);
        }
        let second = reply.texts.into_iter().next().unwrap_or_else(|| Err("the reply has no choices".into()));
        let second = second.map_err(|m| self.bad_reply(m))?;
        match check.check(&second) {
            Ok(value) => Ok((value.to_string(), usage)),
            Err(again) => Err(ModelError::Schema {
                endpoint: self.config.name.clone(),
                message: format!("{again} (after one repair round; the first reply had: {problem})"),
            }),
        }
    }

    /// The messages actually sent: modes the server does not enforce carry the schema in the
    /// system prompt.
    fn messages_for<'a>(
        &self,
        sample: &Sample,
        messages: &'a [Message],
        mode: Option<StructuredOutput>,
    ) -> Cow<'a, [Message]> {
        match (sample.schema.as_ref(), mode) {
            (Some(schema), Some(StructuredOutput::JsonObject | StructuredOutput::None)) => {
                Cow::Owned(structured::with_instruction(messages, schema))
            }
            _ => Cow::Borrowed(messages),
        }
    }

    async fn send_messages(
        &self,
        messages: &[Message],
        decoding: &Decoding,
        schema: Option<&Value>,
        n: Option<u32>,
        mode: Option<StructuredOutput>,
    ) -> Result<Reply, SendError> {
        let response_format = match (schema, mode) {
            (Some(schema), Some(StructuredOutput::JsonSchema)) => {
                Some(ResponseFormat::JsonSchema { json_schema: JsonSchemaFormat { name: "reply", schema } })
            }
            (Some(schema), Some(StructuredOutput::JsonObject)) => Some(ResponseFormat::JsonObject { schema }),
            _ => None,
        };
        let format = response_format.as_ref().and(mode);
        let body = ChatCompletionRequest {
            model: &self.config.model,
            messages,
            temperature: decoding.temperature,
            top_p: decoding.top_p,
            max_tokens: decoding.max_tokens,
            seed: decoding.seed,
            stop: &decoding.stop,
            n,
            response_format,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| SendError::Model(self.config.invalid(format!("cannot encode the request: {e}"))))?;
        let estimated = estimate_prompt_tokens(messages)
            + u64::from(decoding.max_tokens.unwrap_or(0)) * u64::from(n.unwrap_or(1));
        self.send(Bytes::from(body), estimated, format).await
    }

    /// Usage of a reply, split into `parts` equal shares (remainders to the first), each priced.
    fn usage_of(&self, reply: &Reply, messages: &[Message], parts: usize) -> Vec<Usage> {
        let completion_estimate =
            || reply.texts.iter().map(|t| t.as_deref().map_or(0, estimate_tokens)).sum();
        let estimated = reply.prompt_tokens.is_none() || reply.completion_tokens.is_none();
        let prompt = reply.prompt_tokens.unwrap_or_else(|| estimate_prompt_tokens(messages));
        let completion = reply.completion_tokens.unwrap_or_else(completion_estimate);
        let total = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            estimated,
            cost_usd: self.config.prices.cost(prompt, completion),
        };
        self.meter.record_usage(&self.config.name, &total);
        let parts = parts.max(1) as u64;
        (0..parts)
            .map(|i| {
                let share = |n: u64| n / parts + if i == 0 { n % parts } else { 0 };
                let (p, c) = (share(prompt), share(completion));
                Usage {
                    prompt_tokens: p,
                    completion_tokens: c,
                    estimated,
                    cost_usd: self.config.prices.cost(p, c),
                }
            })
            .collect()
    }
}
