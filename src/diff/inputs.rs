//! The inputs both models run on: a folder of saved tensors, token windows of a text, or
//! seeded random token sequences.

use std::path::Path;

use rbe_runtime::graph::InputSpec;
use rbe_runtime::Tensor;

use crate::feeds;

/// One call of both models.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The named input tensors, in the order the model declares them.
    pub feeds: Vec<(String, Tensor)>,
    /// For a single token sequence: its ids, whose next-token NLL gives perplexity.
    pub tokens: Option<Vec<i64>>,
}

impl Batch {
    /// The feeds for one token sequence (batch 1, from position 0); companions such as the
    /// attention mask, position ids and an empty past are derived as `rbe-run` does.
    pub fn from_tokens(specs: &[InputSpec], ids: &[i64]) -> Result<Self, String> {
        Ok(Self { feeds: feeds::token_feeds(specs, ids, Vec::new())?, tokens: Some(ids.to_vec()) })
    }

    /// The saved tensors `dir/<input name>.npy`. Inputs without a file are derived from
    /// `input_ids.npy` when it holds a single sequence (shape `[1, n]`).
    pub fn from_dir(specs: &[InputSpec], dir: &Path) -> Result<Self, String> {
        let saved = read_npy_dir(dir)?;
        let missing: Vec<&InputSpec> =
            specs.iter().filter(|s| !saved.iter().any(|(n, _)| *n == s.name)).collect();
        if missing.is_empty() {
            for (name, _) in &saved {
                if !specs.iter().any(|s| &s.name == name) {
                    return Err(unknown_input(dir, name, specs));
                }
            }
            let mut feeds = Vec::with_capacity(specs.len());
            for spec in specs {
                if let Some(pos) = saved.iter().position(|(n, _)| *n == spec.name) {
                    feeds.push(saved[pos].clone());
                }
            }
            return Ok(Self { feeds, tokens: None });
        }
        let ids = saved
            .iter()
            .find(|(n, t)| n == "input_ids" && t.rank() == 2 && t.shape()[0] == 1)
            .and_then(|(_, t)| t.to_i64_vec().ok())
            .ok_or_else(|| {
                format!(
                    "{} has no {}.npy (inputs other than input_ids are derived only from a \
                     single-sequence input_ids.npy)",
                    dir.display(),
                    missing[0].name
                )
            })?;
        let feeds = feeds::token_feeds(specs, &ids, saved)?;
        Ok(Self { feeds, tokens: None })
    }

    /// The 0/1 attention mask over the last `seq` positions of each batch row, if the feeds
    /// have an `attention_mask` of shape `[batch, >= seq]`: padded positions are not compared.
    pub fn position_mask(&self, batch: usize, seq: usize) -> Option<Vec<bool>> {
        let (_, mask) = self.feeds.iter().find(|(n, _)| n == "attention_mask")?;
        let shape = mask.shape();
        if shape.len() != 2 || shape[0] != batch || shape[1] < seq {
            return None;
        }
        let values = mask.to_i64_vec().ok()?;
        let width = shape[1];
        Some(
            (0..batch)
                .flat_map(|b| (width - seq..width).map(move |j| b * width + j))
                .map(|i| values[i] != 0)
                .collect(),
        )
    }
}

fn unknown_input(dir: &Path, name: &str, specs: &[InputSpec]) -> String {
    let list: Vec<String> = specs.iter().map(|s| s.describe()).collect();
    format!("{}: unknown input '{name}'; the model takes: {}", dir.display(), list.join(", "))
}

/// Every `*.npy` file in `dir`, named by its stem, sorted by name.
pub fn read_npy_dir(dir: &Path) -> Result<Vec<(String, Tensor)>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("cannot read folder {}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "npy") {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(format!("{} holds no .npy files", dir.display()));
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            Ok((name, crate::npy::read(&p)?))
        })
        .collect()
}

/// `count` token sequences of `len` ids uniform in `[0, vocab)`, the same for the same seed.
pub fn random_sequences(count: usize, len: usize, vocab: usize, seed: u64) -> Vec<Vec<i64>> {
    let mut state = seed;
    let mut next = || {
        // SplitMix64: small, fast, and good enough to pick token ids.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| (0..len).map(|_| ((next() >> 11) % vocab.max(1) as u64) as i64).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_sequences_are_seeded_and_in_range() {
        let a = random_sequences(3, 50, 7, 42);
        assert_eq!(a, random_sequences(3, 50, 7, 42));
        assert_ne!(a, random_sequences(3, 50, 7, 43));
        assert_eq!((a.len(), a[0].len()), (3, 50));
        assert!(a.iter().flatten().all(|&t| (0..7).contains(&t)));
        assert_ne!(a[0], a[1]);
        // Every id shows up: the generator is not stuck.
        for id in 0..7 {
            assert!(a.iter().flatten().any(|&t| t == id));
        }
    }

    #[test]
    fn position_mask_takes_the_last_columns() {
        let mask = Tensor::from_vec(&[2, 3], vec![1i64, 1, 1, 0, 1, 1]).unwrap();
        let batch = Batch { feeds: vec![("attention_mask".into(), mask)], tokens: None };
        assert_eq!(batch.position_mask(2, 3), Some(vec![true, true, true, false, true, true]));
        // With a past of 1, the mask covers past + new tokens: the last 2 columns are ours.
        assert_eq!(batch.position_mask(2, 2), Some(vec![true, true, true, true]));
        assert_eq!(batch.position_mask(1, 3), None);
    }

    #[test]
    fn missing_folder_and_empty_folder_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_npy_dir(&dir.path().join("nope")).unwrap_err();
        assert!(err.contains("cannot read folder"), "{err}");
        let err = read_npy_dir(dir.path()).unwrap_err();
        assert!(err.contains("no .npy files"), "{err}");
    }
}
