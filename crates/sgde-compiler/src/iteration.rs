//! One SGDe iteration: forward (if the best's traces are not at hand), critique, edit, apply
//! with one repair round, evaluate, accept or reject — and the record of all of it.
//!
//! An iteration ends in one of four ways (see [`IterationOutcome`]): accepted, rejected (the
//! candidate was worse, unchanged, a repeat, or its edits could not be applied even after the
//! repair round), failed (a teacher step produced nothing usable) or interrupted (budget,
//! deadline, cancellation — the compile then stops). Only accepted candidates replace the best;
//! nothing a rejected candidate did survives except its line in the rejected-edit log.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sgde_llm::Message;
use sgde_runtime::PreparedWorkflow;
use sgde_workflow::{EditOp, WorkflowSpec, apply};
use tokio::time::Instant;

use crate::checkpoint::Candidate;
use crate::compiler::{LoopState, Session};
use crate::condense::{critiques_view, per_example, rejected_view, runs_view, score, variance_table};
use crate::edits::{allowed_description, calls_per_run, check_candidate, is_allowed, kinds_of};
use crate::evaluate::{Evaluation, ScoreSummary, Split};
use crate::gate::Interrupt;
use crate::outcome::StopReason;
use crate::prompts::{CRITIQUE_USER, EDIT_USER, REPAIR_USER, fill, prompts};
use crate::record::{
    CritiqueReply, EditAttempt, EditReply, IterationOutcome, IterationRecord, PhaseDurations, ProposedEdit,
    RejectedEdit, StepFailure, TeacherStep,
};
use crate::usage::ModelRole;

/// Scores closer than this are a tie.
const TIE: f64 = 1e-9;

/// How an iteration ends: with an outcome, or with an outcome and a reason to stop the compile.
enum End {
    Outcome(IterationOutcome),
    Stop(IterationOutcome, StopReason, String),
}

impl End {
    fn interrupted(halt: Interrupt) -> Self {
        End::Stop(IterationOutcome::Interrupted { reason: halt.to_string() }, halt.reason(), halt.to_string())
    }

    fn rejected(reason: impl Into<String>) -> Self {
        End::Outcome(IterationOutcome::Rejected { reason: reason.into() })
    }
}

/// Why an edit list produced no candidate.
enum Unusable {
    /// Every op needed a kind that is not allowed.
    Disallowed,
    /// Applying failed or the result is not runnable; the message is for the teacher.
    Invalid(String),
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn best_eval(state: &LoopState) -> Result<&Evaluation, End> {
    state.best_eval.as_ref().ok_or_else(|| {
        End::Outcome(IterationOutcome::Failed { reason: "the best candidate has no evaluation".into() })
    })
}

impl Session {
    /// Runs iteration `state.iteration` and updates the state; returns its record and, if the
    /// compile must stop, why.
    pub(crate) async fn iterate(
        &self,
        state: &mut LoopState,
    ) -> (IterationRecord, Option<(StopReason, String)>) {
        let started = Instant::now();
        let usage_before = self.gate.usage();
        self.gate.clear_refusal();
        let mut record = IterationRecord {
            iteration: state.iteration,
            best_score_before: state.best.train.score,
            node_variance: Default::default(),
            diagnosis: None,
            critiques: Vec::new(),
            attempts: Vec::new(),
            candidate_hash: None,
            candidate: None,
            outcome: IterationOutcome::Failed { reason: String::new() },
            failures: Vec::new(),
            usage: Default::default(),
            durations: PhaseDurations::default(),
        };
        let end = self.steps(state, &mut record).await;
        let (outcome, stop) = match end {
            End::Outcome(outcome) => (outcome, None),
            End::Stop(outcome, reason, detail) => (outcome, Some((reason, detail))),
        };
        match &outcome {
            IterationOutcome::Accepted { .. } => (state.stale, state.failed) = (0, 0),
            IterationOutcome::Rejected { reason } => {
                (state.stale, state.failed) = (state.stale + 1, 0);
                state.rejected.push(RejectedEdit {
                    iteration: state.iteration,
                    summaries: record
                        .attempts
                        .last()
                        .map_or_else(Vec::new, |a| a.edits.iter().map(|e| e.summary.clone()).collect()),
                    reason: reason.clone(),
                    candidate_hash: record.candidate_hash.clone(),
                });
            }
            IterationOutcome::Failed { .. } => {
                (state.stale, state.failed) = (state.stale + 1, state.failed + 1)
            }
            IterationOutcome::Interrupted { .. } => {}
        }
        record.outcome = outcome;
        record.usage = self.gate.usage().since(&usage_before);
        record.durations.total_ms = ms(started.elapsed());
        (record, stop)
    }

    async fn steps(&self, state: &mut LoopState, record: &mut IterationRecord) -> End {
        match self.step_chain(state, record).await {
            Ok(end) | Err(end) => end,
        }
    }

    /// The phases in order; `Err` ends the iteration early. A phase's time is recorded whether
    /// it succeeded or ended the iteration: a slow failing teacher is what the durations are
    /// there to show.
    async fn step_chain(&self, state: &mut LoopState, record: &mut IterationRecord) -> Result<End, End> {
        self.forward(state, record).await?;
        self.critique(state, record).await?;
        let phase = Instant::now();
        let proposed = self.propose(state, record).await;
        record.durations.edit_ms = ms(phase.elapsed());
        let candidate = proposed?;
        let hash = self.screen(state, record, &candidate)?;
        let phase = Instant::now();
        let evaluated = self.evaluate(&candidate).await;
        record.durations.evaluate_ms = ms(phase.elapsed());
        let eval = evaluated?;
        record.candidate = Some(eval.summary.clone());
        Ok(match decide(&state.best.train, &eval.summary) {
            Ok(reason) => {
                let train = eval.summary.clone();
                state.best =
                    Candidate { spec: candidate, content_hash: hash, train, iteration: state.iteration };
                state.best_eval = Some(eval);
                End::Outcome(IterationOutcome::Accepted { reason })
            }
            Err(reason) => End::rejected(reason),
        })
    }

    /// Makes sure the best candidate's traces are at hand (after a resume they are replayed,
    /// from the response cache).
    async fn forward(&self, state: &mut LoopState, record: &mut IterationRecord) -> Result<(), End> {
        let phase = Instant::now();
        if state.best_eval.is_none() {
            let spec = state.best.spec.clone();
            let evaluated = self.evaluate(&spec).await;
            record.durations.forward_ms = ms(phase.elapsed());
            state.best_eval = Some(evaluated?);
        }
        record.node_variance = state.best_eval.as_ref().map(|e| e.nodes.clone()).unwrap_or_default();
        Ok(())
    }

    /// The backward pass: the teacher's critiques of the best candidate.
    async fn critique(&self, state: &LoopState, record: &mut IterationRecord) -> Result<(), End> {
        let phase = Instant::now();
        let eval = best_eval(state)?;
        let p = prompts();
        let messages = vec![
            Message::system(p.critique_system.as_str()),
            Message::user(self.critique_prompt(state, eval)),
        ];
        let ask = self.teacher.ask::<CritiqueReply>(
            TeacherStep::Critique,
            state.iteration,
            messages,
            &p.critique_schema,
            &p.critique_check,
        );
        let reply = self.teacher_step(ask, record).await;
        record.durations.critique_ms = ms(phase.elapsed());
        let critique = reply?.value;
        record.diagnosis = critique.diagnosis;
        record.critiques = critique.critiques;
        Ok(())
    }

    /// The update: the teacher's edits, applied to the best; one repair round if they cannot be.
    async fn propose(&self, state: &LoopState, record: &mut IterationRecord) -> Result<WorkflowSpec, End> {
        let eval = best_eval(state)?;
        let p = prompts();
        let messages = vec![
            Message::system(p.edit_system.as_str()),
            Message::user(self.edit_prompt(state, eval, record)),
        ];
        let ask = self.teacher.ask::<EditReply>(
            TeacherStep::Edit,
            state.iteration,
            messages,
            &p.edit_schema,
            &p.edit_check,
        );
        let reply = self.teacher_step(ask, record).await?;
        let error = match self.try_edits(&state.best.spec, reply.value, record) {
            Ok(spec) => return Ok(spec),
            Err(Unusable::Disallowed) => {
                return Err(End::rejected("none of the edits is of an allowed kind"));
            }
            Err(Unusable::Invalid(error)) => error,
        };
        let mut conversation = reply.conversation;
        conversation.push(Message::user(fill(REPAIR_USER, &[("error", &error)])));
        let ask = self.teacher.ask::<EditReply>(
            TeacherStep::Repair,
            state.iteration,
            conversation,
            &p.edit_schema,
            &p.edit_check,
        );
        let repaired = match self.teacher_step(ask, record).await {
            Ok(reply) => reply.value,
            Err(End::Outcome(IterationOutcome::Failed { reason })) => {
                return Err(End::rejected(format!("the edits could not be applied ({error}); {reason}")));
            }
            Err(end) => return Err(end),
        };
        self.try_edits(&state.best.spec, repaired, record).map_err(|unusable| match unusable {
            Unusable::Disallowed => End::rejected("none of the repaired edits is of an allowed kind"),
            Unusable::Invalid(error) => {
                End::rejected(format!("the edits could not be applied, even after a repair round: {error}"))
            }
        })
    }

    /// Rejects a candidate that changes nothing or repeats a rejected one, and stops when the
    /// student calls left cannot pay for its evaluation; returns its content hash.
    fn screen(
        &self,
        state: &LoopState,
        record: &mut IterationRecord,
        candidate: &WorkflowSpec,
    ) -> Result<String, End> {
        let hash = candidate.content_hash();
        record.candidate_hash = Some(hash.clone());
        if hash == state.best.content_hash {
            return Err(End::rejected("the edits leave the workflow unchanged"));
        }
        if let Some(previous) =
            state.rejected.iter().find(|r| r.candidate_hash.as_deref() == Some(hash.as_str()))
        {
            return Err(End::rejected(format!(
                "identical to the candidate rejected in iteration {}",
                previous.iteration
            )));
        }
        let size = calls_per_run(candidate);
        let needed = self.runs(Split::Train) * size
            + self.runs(Split::Validation) * size.max(calls_per_run(&state.best.spec));
        if let Some(left) = self.gate.calls_left(ModelRole::Student).filter(|left| *left < needed) {
            let why = format!("student calls: the candidate needs {needed}, {left} are left");
            return Err(End::Stop(
                IterationOutcome::Interrupted { reason: why.clone() },
                StopReason::Budget,
                why,
            ));
        }
        Ok(hash)
    }

    /// Scores `spec` on the training examples, mapping interruptions and an unreachable
    /// student to the iteration's end.
    async fn evaluate(&self, spec: &WorkflowSpec) -> Result<Evaluation, End> {
        let work = self.evaluator.evaluate(spec, &self.request.train, Split::Train);
        match self.guarded(work).await {
            Err(halt) => Err(End::interrupted(halt)),
            Ok(_) if self.gate.refusal().is_some() => {
                Err(End::interrupted(self.gate.refusal().unwrap_or(Interrupt::Budget(String::new()))))
            }
            Ok(Err(e)) => Err(End::rejected(format!("the candidate cannot be run: {e}"))),
            Ok(Ok(eval)) if eval.model_unreachable() => {
                self.student_unreachable.store(true, Ordering::Relaxed);
                let why = format!("the student is unreachable: {}", eval.first_error().unwrap_or_default());
                Err(End::Stop(IterationOutcome::Failed { reason: why.clone() }, StopReason::Error, why))
            }
            Ok(Ok(eval)) => Ok(eval),
        }
    }

    /// Awaits a teacher step; a failure is recorded and ends the iteration (as interrupted if it
    /// was the budget that refused the call).
    async fn teacher_step<T>(
        &self,
        ask: impl Future<Output = Result<crate::teacher::Reply<T>, StepFailure>>,
        record: &mut IterationRecord,
    ) -> Result<crate::teacher::Reply<T>, End> {
        match self.guarded(ask).await {
            Err(halt) => Err(End::interrupted(halt)),
            Ok(Err(failure)) => {
                if let Some(refusal) = self.gate.refusal() {
                    return Err(End::interrupted(refusal));
                }
                let reason =
                    format!("the {:?} step failed: {}", failure.step, failure.message).to_lowercase();
                record.failures.push(failure);
                Err(End::Outcome(IterationOutcome::Failed { reason }))
            }
            Ok(Ok(reply)) => {
                if let Some(repaired) = &reply.repaired {
                    record.failures.push(repaired.clone());
                }
                Ok(reply)
            }
        }
    }

    /// Filters `reply` by the ablation flags, applies it to `best` and checks the result.
    fn try_edits(
        &self,
        best: &WorkflowSpec,
        reply: EditReply,
        record: &mut IterationRecord,
    ) -> Result<WorkflowSpec, Unusable> {
        let allowed = self.request.allowed;
        let edits: Vec<ProposedEdit> = reply
            .edits
            .into_iter()
            .map(|op| ProposedEdit {
                summary: op.summary(),
                kinds: kinds_of(&op),
                allowed: is_allowed(&op, &allowed),
                op,
            })
            .collect();
        let ops: Vec<EditOp> = edits.iter().filter(|e| e.allowed).map(|e| e.op.clone()).collect();
        let mut attempt = EditAttempt { edits, rationale: reply.rationale, error: None };
        if ops.is_empty() {
            attempt.error = Some("no edit of an allowed kind".into());
            record.attempts.push(attempt);
            return Err(Unusable::Disallowed);
        }
        let result = apply(best, &ops).map_err(|e| e.to_string()).and_then(|spec| {
            check_candidate(&spec, &self.request.student)?;
            PreparedWorkflow::new(spec.clone())
                .map_err(|e| format!("the edited workflow cannot be prepared: {e}"))?;
            Ok(spec)
        });
        if let Err(e) = &result {
            attempt.error = Some(e.clone());
        }
        record.attempts.push(attempt);
        result.map_err(Unusable::Invalid)
    }

    fn critique_prompt(&self, state: &LoopState, eval: &Evaluation) -> String {
        let views = self.options.views();
        let s = &eval.summary;
        let examples = &self.request.train;
        fill(
            CRITIQUE_USER,
            &[
                ("task", self.request.task.trim()),
                ("spec", &pretty(&state.best.spec)),
                ("score", &score(s.score)),
                ("right", &s.right.to_string()),
                ("runs", &s.runs.to_string()),
                ("examples", &examples.len().to_string()),
                ("samples", &self.request.samples_per_example.to_string()),
                ("failed_runs", &s.failed_runs.to_string()),
                ("per_example", &per_example(&s.per_example)),
                ("variance", &variance_table(&eval.nodes)),
                ("failing", &runs_view(eval, &state.best.spec, examples, true, &views)),
                ("passing", &runs_view(eval, &state.best.spec, examples, false, &views)),
                ("rejected", &rejected_view(&state.rejected)),
                ("allowed", &allowed_description(&self.request.allowed)),
            ],
        )
    }

    fn edit_prompt(&self, state: &LoopState, eval: &Evaluation, record: &IterationRecord) -> String {
        let mut views = self.options.views();
        views.failing = views.failing.min(2);
        let s = &eval.summary;
        fill(
            EDIT_USER,
            &[
                ("task", self.request.task.trim()),
                ("spec", &pretty(&state.best.spec)),
                ("score", &score(s.score)),
                ("right", &s.right.to_string()),
                ("runs", &s.runs.to_string()),
                ("diagnosis", record.diagnosis.as_deref().unwrap_or("")),
                ("critiques", &critiques_view(&record.critiques, &state.best.spec)),
                ("variance", &variance_table(&eval.nodes)),
                ("failing", &runs_view(eval, &state.best.spec, &self.request.train, true, &views)),
                ("rejected", &rejected_view(&state.rejected)),
                ("allowed", &allowed_description(&self.request.allowed)),
            ],
        )
    }
}

fn pretty(spec: &WorkflowSpec) -> String {
    serde_json::to_string_pretty(spec).unwrap_or_else(|_| spec.canonical_json())
}

/// Accept only a strictly better training score; on a tie, only a cheaper candidate.
fn decide(best: &ScoreSummary, candidate: &ScoreSummary) -> Result<String, String> {
    let (b, c) = (best.score, candidate.score);
    let (bt, ct) = (best.mean_student_tokens, candidate.mean_student_tokens);
    if c > b + TIE {
        Ok(format!("training score {} > {}", score(c), score(b)))
    } else if (c - b).abs() <= TIE && ct < bt {
        Ok(format!(
            "training score tied at {} and cheaper: {ct:.0} < {bt:.0} student tokens per run",
            score(c)
        ))
    } else if (c - b).abs() <= TIE {
        Err(format!(
            "training score tied at {} and not cheaper ({ct:.0} ≥ {bt:.0} student tokens per run)",
            score(c)
        ))
    } else {
        Err(format!("training score {} is below the best {}", score(c), score(b)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(score: f64, tokens: f64) -> ScoreSummary {
        ScoreSummary {
            score,
            per_example: vec![score],
            right: 0,
            runs: 1,
            failed_runs: 0,
            stable: false,
            mean_student_tokens: tokens,
        }
    }

    #[test]
    fn only_strict_improvement_or_a_cheaper_tie_is_accepted() {
        assert!(decide(&summary(0.5, 100.0), &summary(0.6, 900.0)).is_ok());
        assert!(decide(&summary(0.5, 100.0), &summary(0.5, 90.0)).is_ok());
        assert!(decide(&summary(0.5, 100.0), &summary(0.5, 100.0)).is_err());
        assert!(decide(&summary(0.5, 100.0), &summary(0.4, 10.0)).unwrap_err().contains("below"));
    }
}
