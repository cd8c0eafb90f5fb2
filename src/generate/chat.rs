//! A conversation with an instruct model: each user turn is added to the history, the whole
//! conversation is rendered with the model's chat template and the assistant's reply generated.

use rbe_runtime::Session;
use tokenizers::Tokenizer;

use super::{generate, GenerateOptions, GenerationStats};
use crate::chat::{ChatTemplate, Message};

/// A conversation so far.
pub struct Conversation<'a> {
    template: &'a ChatTemplate,
    /// The turns so far, the assistant's replies included.
    pub history: Vec<Message>,
}

impl<'a> Conversation<'a> {
    /// A new conversation, opened by `system` when given.
    pub fn new(template: &'a ChatTemplate, system: Option<&str>) -> Self {
        Conversation { template, history: system.map(|s| Message::new("system", s)).into_iter().collect() }
    }

    /// Adds the user's turn, generates the assistant's reply (streamed through `emit`) and adds
    /// it to the history.
    pub fn reply(
        &mut self,
        session: &Session,
        tokenizer: &Tokenizer,
        user: &str,
        options: &GenerateOptions,
        emit: &mut dyn FnMut(&str),
    ) -> Result<GenerationStats, String> {
        self.history.push(Message::new("user", user));
        let prompt = self.template.render(&self.history, true)?;
        let (ids, stats) = generate(session, tokenizer, &prompt, options, emit)?;
        let text = tokenizer.decode(&ids, true).map_err(|e| format!("cannot decode: {e}"))?;
        self.history.push(Message::new("assistant", text.trim()));
        Ok(stats)
    }
}
