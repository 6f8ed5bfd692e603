//! Token counts the fake server reports: about four characters per token, plus OpenAI's chat
//! framing (a few tokens per message and per reply), so that `usage` looks like a real server's.

use crate::call::CallMessage;

/// Prompt tokens of a conversation.
pub fn prompt_tokens(messages: &[CallMessage]) -> u64 {
    messages.iter().map(|m| text_tokens(&m.content) + 4).sum::<u64>() + 3
}

/// Completion tokens of one reply (at least one: the end-of-text token).
pub fn completion_tokens(text: &str) -> u64 {
    text_tokens(text).max(1)
}

fn text_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}
