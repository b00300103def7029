//! # hybridgrid-store
//!
//! Store backends: SQLite (embedded default) and PostgreSQL, via sqlx with embedded migrations.
