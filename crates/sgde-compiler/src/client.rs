//! The model client each workflow run of a compile sees.
//!
//! Three jobs, all about making a compile reproducible and bounded:
//! - **Stable, distinct sample indices.** The runtime numbers consensus samples from zero in
//!   every run, so k runs of the same example would send identical requests (and share one
//!   cache entry). Each run gets a salt from (seed, split, example, sample) and every request's
//!   `sample_index` is mixed with it. The salt does *not* include the iteration: evaluating the
//!   same spec twice gives the same samples (common random numbers make candidate comparisons
//!   fairer, and re-evaluating on resume is a pure cache replay).
//! - **The student role.** Workflows name their model `student`; during a compile that means the
//!   requested student endpoint. Any other model name is refused: a compiled workflow must run on
//!   the student alone.
//! - **Admission** through the [`Gate`] (budget, deadline, cancellation).

use std::sync::Arc;

use async_trait::async_trait;
use sgde_llm::{ChatRequest, ChatResponse, ModelClient, ModelError};

use crate::gate::{Gate, refused};
use crate::usage::ModelRole;

/// The role name workflows use for the student.
pub const STUDENT_ROLE: &str = "student";

/// SplitMix64 over the parts: a cheap, well-mixed, platform-independent hash.
pub(crate) fn mix(parts: &[u64]) -> u64 {
    let mut state: u64 = 0x5347_4465_2d63_6f6d; // "SGDe-com"
    for part in parts {
        state = state.wrapping_add(*part).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        state = z ^ (z >> 31);
    }
    state
}

/// A 31-bit sample index from a hash (kept below `i32::MAX` so that servers that read the seed
/// as a signed integer do not choke).
pub(crate) fn sample_index(hash: u64) -> u32 {
    ((hash >> 33) & 0x7FFF_FFFF) as u32
}

/// The client of one workflow run; see the module docs.
pub(crate) struct StudentClient {
    pub(crate) inner: Arc<dyn ModelClient>,
    pub(crate) gate: Arc<Gate>,
    pub(crate) student: Arc<str>,
    pub(crate) salt: u64,
}

#[async_trait]
impl ModelClient for StudentClient {
    async fn complete(&self, mut request: ChatRequest) -> Result<ChatResponse, ModelError> {
        if request.endpoint == STUDENT_ROLE {
            request.endpoint = self.student.to_string();
        } else if request.endpoint != *self.student {
            return Err(ModelError::Config {
                endpoint: request.endpoint,
                message: "during a compile every llm node runs on the student".into(),
            });
        }
        request.sample_index = sample_index(mix(&[self.salt, u64::from(request.sample_index)]));
        let ticket = self.gate.admit(ModelRole::Student).map_err(|why| refused(&request.endpoint, &why))?;
        let result = self.inner.complete(request).await;
        ticket.settle(result.as_ref());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_is_order_sensitive_and_stable() {
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_eq!(mix(&[7, 0, 3]), mix(&[7, 0, 3]));
        assert!(sample_index(u64::MAX) <= 0x7FFF_FFFF);
    }
}
