//! `rbe-runtime`: loads ONNX language-model graphs and RBE-compressed `.rbeonnx` containers,
//! and runs them on CPU.
//!
//! ```no_run
//! use rbe_runtime::{Session, Tensor};
//! let session = Session::load("model.onnx".as_ref())?;
//! let ids = Tensor::from_vec(&[1, 3], vec![464i64, 2068, 7586])?;
//! let outputs = session.run(vec![("input_ids".to_string(), ids)])?;
//! # Ok::<(), rbe_runtime::Error>(())
//! ```

pub mod container;
pub mod error;
pub mod graph;
pub mod kernels;
pub mod narrow;
pub mod onnx;
pub mod ops;
pub mod options;
pub mod rbe;
pub mod session;
pub mod tensor;

pub use error::{Error, Result};
pub use options::SessionOptions;
pub use session::Session;
pub use tensor::{Array, DType, Element, Tensor};
