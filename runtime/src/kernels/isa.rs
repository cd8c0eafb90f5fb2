//! The instruction set the kernels dispatch to: what the CPU has, capped by the environment
//! variable `RBE_CPU` (`portable`, `avx2` or `avx512`), so every kernel path can be run and
//! tested on a host that has a higher one. Read once per process.
//!
//! The levels: `avx2` is AVX2 with FMA (and F16C); `avx512` adds AVX-512 F and BW. VNNI is a
//! further feature of the `avx512` level, used where the CPU has it.

use std::sync::OnceLock;

/// An instruction-set level, ordered from the least to the most capable.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust loops (whatever the compiler makes of them for the baseline target).
    Portable,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F + BW on top of the AVX2 level.
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// The spelling used by `RBE_CPU` and in benchmark headers.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a level's name (as `RBE_CPU` spells it).
    pub fn parse(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name.trim().to_ascii_lowercase())
    }

    /// The highest level this CPU supports.
    pub fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            if avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// `self` lowered to the highest level this CPU supports (detected once): the level a
    /// kernel asked to run at `self` may safely use.
    pub fn supported(self) -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        self.min(*DETECTED.get_or_init(Isa::detected))
    }

    /// The level the kernels use: the detected one, lowered to `RBE_CPU` when that names a
    /// lower one. An unknown `RBE_CPU` value is reported once on stderr and ignored.
    pub fn current() -> Isa {
        static CURRENT: OnceLock<Isa> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let detected = Isa::detected();
            match std::env::var("RBE_CPU") {
                Ok(cap) => match Isa::parse(&cap) {
                    Some(cap) => detected.min(cap),
                    None => {
                        eprintln!("warning: RBE_CPU={cap:?} is not one of portable, avx2, avx512; using {}", detected.name());
                        detected
                    }
                },
                Err(_) => detected,
            }
        })
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// True when the AVX2/FMA kernels may run.
pub fn avx2() -> bool {
    Isa::current() >= Isa::Avx2
}

/// True when the AVX-512 kernels may run.
pub fn avx512() -> bool {
    Isa::current() >= Isa::Avx512
}

/// True when the AVX-512 VNNI integer kernels may run.
pub fn avx512_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    if avx512() {
        return is_x86_feature_detected!("avx512vnni");
    }
    false
}

/// Defines `fn $name(isa: Isa, args..)` that runs `$body(args..)` compiled for `isa` (lowered
/// to what the CPU supports, [`Isa::supported`]): the same Rust loops, vectorized 16 lanes wide
/// with AVX-512, 8 lanes at the AVX2 level, baseline x86-64 (SSE2) at the portable one. (FMA is
/// enabled too, but Rust contracts `a * b + c` only where the body calls `mul_add`.)
/// `$body` must be `#[inline(always)]` and call only inlined code, or it loses the features.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$meta])*
        $vis fn $name(isa: $crate::kernels::isa::Isa, $($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match isa.supported() {
                    // SAFETY: `supported` never exceeds what the CPU has.
                    $crate::kernels::isa::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::kernels::isa::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::kernels::isa::Isa::Portable => {}
                }
            }
            #[cfg(not(target_arch = "x86_64"))]
            let _ = isa;
            $body($($arg),*)
        }
    };
}
pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_ordered_and_round_trip_their_names() {
        assert!(Isa::Portable < Isa::Avx2 && Isa::Avx2 < Isa::Avx512);
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse(" AVX2 "), Some(Isa::Avx2));
        assert_eq!(Isa::parse("sse"), None);
    }

    #[test]
    fn the_current_level_never_exceeds_the_cpu() {
        assert!(Isa::current() <= Isa::detected());
        assert_eq!(Isa::Avx512.supported(), Isa::detected());
        assert_eq!(Isa::Portable.supported(), Isa::Portable);
        assert_eq!(avx2(), Isa::current() >= Isa::Avx2);
        assert!(!avx512_vnni() || avx512());
    }
}
