//! Developer-task helpers shared by `cargo xtask` and the workspace tests in
//! `tests/`. The lists themselves live with the product: the published
//! schemas are `mex_cli::published_schemas`, the engines that get certified
//! are the ones `mex conformance` runs (`cargo xtask conformance` runs that
//! command). Owns no runtime code.
