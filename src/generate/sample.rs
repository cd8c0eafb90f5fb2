//! Choosing the next token from logits: greedy, or temperature + top-k sampling with a seed.

use crate::logits::softmax;

/// How to pick tokens.
#[derive(Clone, Debug)]
pub struct SamplingOptions {
    /// 0 for greedy (argmax); otherwise logits are divided by it before the softmax.
    pub temperature: f32,
    /// Sample among the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Seed of the random generator.
    pub seed: u64,
}

/// A seeded sampler (SplitMix64: deterministic for a given seed on every machine).
pub struct Sampler {
    options: SamplingOptions,
    state: u64,
}

impl Sampler {
    /// A sampler with its own random state.
    pub fn new(options: SamplingOptions) -> Self {
        let state = options.seed;
        Self { options, state }
    }

    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Picks a token id from one row of logits.
    pub fn pick(&mut self, logits: &[f32]) -> Result<u32, String> {
        if logits.is_empty() {
            return Err("the model returned empty logits".into());
        }
        let argmax = |row: &[f32]| {
            row.iter().enumerate().fold(0, |best, (i, v)| if *v > row[best] { i } else { best })
        };
        if self.options.temperature <= 0.0 {
            return Ok(argmax(logits) as u32);
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if self.options.top_k > 0 {
            order.truncate(self.options.top_k);
        }
        let scaled: Vec<f32> = order.iter().map(|&i| logits[i] / self.options.temperature).collect();
        let probs = softmax(&scaled);
        let mut u = self.next_unit();
        for (&i, &p) in order.iter().zip(&probs) {
            u -= p as f64;
            if u <= 0.0 {
                return Ok(i as u32);
            }
        }
        Ok(order[order.len() - 1] as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax() {
        let mut s = Sampler::new(SamplingOptions { temperature: 0.0, top_k: 0, seed: 1 });
        assert_eq!(s.pick(&[0.1, 3.0, -1.0, 2.9]).unwrap(), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_sampling_is_seeded() {
        let logits = [0.5, 0.4, 0.3, 0.2, 0.1];
        let mut s = Sampler::new(SamplingOptions { temperature: 1.0, top_k: 1, seed: 7 });
        assert!((0..20).all(|_| s.pick(&logits).unwrap() == 0));
        let draw = |seed| {
            let mut s = Sampler::new(SamplingOptions { temperature: 1.0, top_k: 0, seed });
            (0..50).map(|_| s.pick(&logits).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        let d = draw(3);
        assert!(d.iter().any(|&t| t != d[0]), "flat logits must not always give one token");
    }
}
