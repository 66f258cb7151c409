//! Workspace-level integration tests live in `tests/tests/`; this library is
//! empty and exists so the package has a target. It owns no runtime code.
