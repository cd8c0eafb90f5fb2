//! A text for perplexity: tokenized with the model's `tokenizer.json`, cut into windows.

use std::path::Path;

use tokenizers::Tokenizer;

/// A tokenized text file.
pub struct TokenizedText {
    /// The token ids of the whole file, without special tokens (no BOS/EOS added).
    pub ids: Vec<i64>,
    /// The file's size in bytes (the measured byte range is `0..bytes`).
    pub bytes: usize,
}

/// Reads `text` (UTF-8) and tokenizes all of it with the tokenizer in `tokenizer_json`.
pub fn tokenize(text: &Path, tokenizer_json: &Path) -> Result<TokenizedText, String> {
    let content = std::fs::read_to_string(text)
        .map_err(|e| format!("cannot read text {}: {e}", text.display()))?;
    let mut tokenizer = Tokenizer::from_file(tokenizer_json)
        .map_err(|e| format!("cannot load tokenizer {}: {e}", tokenizer_json.display()))?;
    // The whole text: a truncation or padding the file configures (sentence encoders ship
    // `max_length` 128) would silently cut it; windows are cut afterwards.
    tokenizer
        .with_truncation(None)
        .map_err(|e| format!("cannot turn off truncation of {}: {e}", tokenizer_json.display()))?;
    tokenizer.with_padding(None);
    let encoding = tokenizer
        .encode(content.as_str(), false)
        .map_err(|e| format!("cannot tokenize {}: {e}", text.display()))?;
    let ids = encoding.get_ids().iter().map(|&id| id as i64).collect();
    Ok(TokenizedText { ids, bytes: content.len() })
}

/// Non-overlapping windows of `window` tokens; a shorter last window is kept when it has at
/// least two tokens (one next-token prediction).
pub fn windows(ids: &[i64], window: usize) -> Vec<&[i64]> {
    ids.chunks(window.max(2)).filter(|w| w.len() >= 2).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_do_not_overlap_and_keep_a_useful_tail() {
        let ids: Vec<i64> = (0..10).collect();
        let w = windows(&ids, 4);
        assert_eq!(w, vec![&ids[0..4], &ids[4..8], &ids[8..10]]);
        let w = windows(&ids[..9], 4);
        assert_eq!(w.len(), 2, "a 1-token tail predicts nothing");
        assert!(windows(&ids[..1], 4).is_empty());
    }

    #[test]
    fn tokenizes_with_a_word_level_tokenizer() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tokenizer.json");
        std::fs::write(&tok, word_level_tokenizer(&["the", "cat", "sat", "[UNK]"])).unwrap();
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "the cat sat the dog").unwrap();
        let t = tokenize(&text, &tok).unwrap();
        assert_eq!(t.ids, vec![0, 1, 2, 0, 3]);
        assert_eq!(t.bytes, 19);
    }

    #[test]
    fn unreadable_inputs_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("t.txt");
        std::fs::write(&text, "x").unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        for (t, k, needle) in [
            (dir.path().join("missing.txt"), bad.clone(), "cannot read text"),
            (text.clone(), bad, "cannot load tokenizer"),
            (text, dir.path().join("none.json"), "cannot load tokenizer"),
        ] {
            let err = tokenize(&t, &k).err().unwrap();
            assert!(err.contains(needle) && !err.contains('\n'), "{err}");
        }
    }

    /// A minimal `tokenizer.json`: whitespace pre-tokenizer and a word-level vocabulary.
    pub fn word_level_tokenizer(words: &[&str]) -> String {
        let vocab: Vec<String> =
            words.iter().enumerate().map(|(i, w)| format!("\"{w}\": {i}")).collect();
        format!(
            r#"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
              "normalizer": null, "pre_tokenizer": {{"type": "Whitespace"}},
              "post_processor": null, "decoder": null,
              "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "[UNK]"}}}}"#,
            vocab.join(", ")
        )
    }
}
