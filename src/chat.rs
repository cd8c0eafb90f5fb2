//! Chat templates: the Jinja template an instruct model's tokenizer config carries, rendered as
//! transformers' `apply_chat_template` renders it (trimmed blocks, Python string methods,
//! `raise_exception`), with `minijinja`.

use std::path::Path;

use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use serde_json::Value;

/// One turn of a conversation.
#[derive(Clone, Debug, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// What was said.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: &str) -> Self {
        Message { role: role.to_string(), content: content.to_string() }
    }
}

/// A model's chat template and the special tokens it may refer to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    /// The Jinja source.
    pub source: String,
    /// `bos_token` of the tokenizer config ("" when none).
    pub bos_token: String,
    /// `eos_token` of the tokenizer config ("" when none).
    pub eos_token: String,
}

/// The template in `tokenizer_config.json`'s `chat_template`: a string, or a list of named
/// templates (the one named `default`, else the first).
fn from_tokenizer_config(config: &Value) -> Option<String> {
    match config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .or_else(|| named.first())
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

impl ChatTemplate {
    /// A template with the given special tokens.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Self {
        ChatTemplate { source: source.to_string(), bos_token: bos_token.to_string(), eos_token: eos_token.to_string() }
    }

    /// The template of a model directory: `chat_template.jinja`, else `chat_template.json`,
    /// else the tokenizer config's (`None` when there is none).
    pub fn from_dir(dir: &Path, tokenizer_config: Option<&Value>) -> Result<Option<Self>, String> {
        let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", dir.join(name).display())),
        };
        let from_json = match read("chat_template.json")? {
            Some(text) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| format!("chat_template.json: {e}"))?;
                from_tokenizer_config(&v)
            }
            None => None,
        };
        let source = read("chat_template.jinja")?.or(from_json).or_else(|| tokenizer_config.and_then(from_tokenizer_config));
        let token = |key: &str| crate::model_dir::token_text(tokenizer_config.and_then(|c| c.get(key))).unwrap_or_default();
        Ok(source.map(|s| ChatTemplate::new(&s, &token("bos_token"), &token("eos_token"))))
    }

    /// The conversation as the model's prompt text, ending with the assistant's turn opened
    /// when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, String> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(|e| e.to_string())?);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
        });
        let template = env.template_from_str(&self.source).map_err(|e| format!("the chat template does not parse: {e}"))?;
        let context = minijinja::context! {
            messages => minijinja::Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        template.render(context).map_err(|e| format!("the chat template failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-Instruct's template (ChatML with a default system prompt).
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn chatml_renders_as_transformers_does() {
        let t = ChatTemplate::new(CHATML, "", "<|im_end|>");
        let text = t.render(&[Message::new("user", "Hi")], true).unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = t.render(&[Message::new("system", "Be brief."), Message::new("user", "Hi")], false).unwrap();
        assert_eq!(with_system, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    }

    #[test]
    fn trims_blocks_uses_python_methods_and_tokens() {
        let source = "{{ bos_token }}{% for m in messages %}\n  {% if m.role == 'user' %}\n[INST] {{ m.content.strip() }} [/INST]\n  {% endif %}\n{% endfor %}";
        let text = ChatTemplate::new(source, "<s>", "</s>").render(&[Message::new("user", "  hello ")], false).unwrap();
        assert_eq!(text, "<s>[INST] hello [/INST]\n");
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors() {
        let strict = ChatTemplate::new("{% if messages[0].role != 'user' %}{{ raise_exception('user first') }}{% endif %}", "", "");
        let err = strict.render(&[Message::new("assistant", "x")], false).unwrap_err();
        assert!(err.contains("user first"), "{err}");
        let err = ChatTemplate::new("{% for %}", "", "").render(&[], false).unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn named_templates_pick_default() {
        let config = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        assert_eq!(from_tokenizer_config(&config).as_deref(), Some("D"));
        assert_eq!(from_tokenizer_config(&serde_json::json!({"chat_template": "S"})).as_deref(), Some("S"));
        assert_eq!(from_tokenizer_config(&serde_json::json!({})), None);
    }
}
