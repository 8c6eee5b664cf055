//! One way to run a statement, whichever connection runs it: sqlx's (every
//! read, and PostgreSQL's writes) or the SQLite writer thread's own rusqlite
//! connection. The row code in `rows.rs` and the write transaction in
//! `writer.rs` are written once against [`Conn`] and [`Cols`].
//!
//! Statements use `$n` parameters, which both drivers bind by number.

use std::future::Future;
use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Result, StoreError};

/// One statement argument. NULLs carry their type: PostgreSQL wants to know
/// it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Arg<'a> {
    Int(Option<i64>),
    Real(f64),
    Text(Option<&'a str>),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Self {
        Arg::Text(Some(s))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(s: Option<&'a str>) -> Self {
        Arg::Text(s)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

/// `[Arg::from(a), Arg::from(b), …]`.
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$($crate::store::sql::conn::Arg::from($a)),*] };
}
pub(super) use args;

/// A result row's columns, by name.
pub(super) trait Cols {
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn real(&self, col: &str) -> Result<f64>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
}

impl Cols for AnyRow {
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }
    fn real(&self, col: &str) -> Result<f64> {
        Ok(self.try_get(col)?)
    }
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get(col)?)
    }
}

/// A connection inside a transaction the caller holds.
pub(super) trait Conn: Send {
    type Row: Cols + Send;
    /// Runs a statement; the rows it changed.
    fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> impl Future<Output = Result<u64>> + Send;
    fn fetch_all(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Vec<Self::Row>>> + Send;
    /// The first row, if any.
    fn fetch_optional(
        &mut self,
        sql: &str,
        args: &[Arg<'_>],
    ) -> impl Future<Output = Result<Option<Self::Row>>> + Send;
}

fn bind<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    args: &[Arg<'q>],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for a in args {
        q = match *a {
            Arg::Int(v) => q.bind(v),
            Arg::Real(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        };
    }
    q
}

impl Conn for sqlx::AnyConnection {
    type Row = AnyRow;

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<AnyRow>> {
        Ok(bind(sqlx::query(sql), args).fetch_all(&mut *self).await?)
    }

    async fn fetch_optional(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<AnyRow>> {
        Ok(bind(sqlx::query(sql), args)
            .fetch_optional(&mut *self)
            .await?)
    }
}

// ------------------------------------------------------------ rusqlite ----

/// The SQLite writer thread's connection. Its statements run where they
/// are called (the thread is the writer's own), so every future of this
/// [`Conn`] is ready on its first poll.
pub(super) struct Lite(pub(super) rusqlite::Connection);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// A row read by [`Lite`], owned.
pub(super) struct LiteRow {
    names: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl LiteRow {
    fn get(&self, col: &str) -> Result<&rusqlite::types::Value> {
        self.names
            .iter()
            .position(|n| n == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Unavailable(format!("no column {col}")))
    }
}

fn mismatch(col: &str, v: &rusqlite::types::Value) -> StoreError {
    StoreError::Unavailable(format!(
        "column {col} holds {:?}, not the type expected",
        v.data_type()
    ))
}

impl Cols for LiteRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?
            .ok_or_else(|| StoreError::Unavailable(format!("column {col} is NULL")))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self.get(col)? {
            rusqlite::types::Value::Integer(v) => Ok(Some(*v)),
            rusqlite::types::Value::Null => Ok(None),
            v => Err(mismatch(col, v)),
        }
    }
    fn real(&self, col: &str) -> Result<f64> {
        match self.get(col)? {
            rusqlite::types::Value::Real(v) => Ok(*v),
            // SQLite stores a REAL with no fraction as an integer.
            rusqlite::types::Value::Integer(v) => Ok(*v as f64),
            v => Err(mismatch(col, v)),
        }
    }
    fn text(&self, col: &str) -> Result<String> {
        self.opt_text(col)?
            .ok_or_else(|| StoreError::Unavailable(format!("column {col} is NULL")))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        match self.get(col)? {
            rusqlite::types::Value::Text(v) => Ok(Some(v.clone())),
            rusqlite::types::Value::Null => Ok(None),
            v => Err(mismatch(col, v)),
        }
    }
}

/// The names SQLite gives `$1`…`$16`.
const PARAMS: [&str; 16] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15",
    "$16",
];

impl Lite {
    /// A cached statement with `args` bound to `$1`, `$2`, … wherever each
    /// appears.
    fn prepare(&self, sql: &str, args: &[Arg<'_>]) -> Result<rusqlite::CachedStatement<'_>> {
        let mut st = self.0.prepare_cached(sql)?;
        for (name, a) in PARAMS.iter().zip(args) {
            let Some(i) = st.parameter_index(name)? else {
                continue;
            };
            match *a {
                Arg::Int(v) => st.raw_bind_parameter(i, v)?,
                Arg::Real(v) => st.raw_bind_parameter(i, v)?,
                Arg::Text(v) => st.raw_bind_parameter(i, v)?,
            }
        }
        if args.len() > PARAMS.len() {
            return Err(StoreError::Unavailable(format!(
                "a statement has {} arguments; at most {} are supported",
                args.len(),
                PARAMS.len()
            )));
        }
        Ok(st)
    }

    fn rows(&self, sql: &str, args: &[Arg<'_>], limit: usize) -> Result<Vec<LiteRow>> {
        let mut st = self.prepare(sql, args)?;
        let names: Arc<[String]> = st.column_names().into_iter().map(str::to_owned).collect();
        let n = names.len();
        let mut out = Vec::new();
        let mut rows = st.raw_query();
        while out.len() < limit {
            let Some(row) = rows.next()? else { break };
            let mut values = Vec::with_capacity(n);
            for i in 0..n {
                values.push(rusqlite::types::Value::from(row.get_ref(i)?));
            }
            out.push(LiteRow {
                names: Arc::clone(&names),
                values,
            });
        }
        Ok(out)
    }
}

impl Conn for Lite {
    type Row = LiteRow;

    async fn exec(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64> {
        let mut st = self.prepare(sql, args)?;
        // `raw_execute` refuses a statement that returns rows; step through
        // those instead.
        if st.column_count() == 0 {
            return Ok(st.raw_execute()? as u64);
        }
        let mut rows = st.raw_query();
        while rows.next()?.is_some() {}
        Ok(self.0.changes())
    }

    async fn fetch_all(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<LiteRow>> {
        self.rows(sql, args, usize::MAX)
    }

    async fn fetch_optional(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Option<LiteRow>> {
        Ok(self.rows(sql, args, 1)?.pop())
    }
}

/// The output of a future that never waits (a [`Lite`] one), polled once.
///
/// Errors: `Unavailable` if it did wait, which would be a bug in this module.
pub(super) fn now<F: Future>(f: F) -> Result<F::Output> {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(v) => Ok(v),
        std::task::Poll::Pending => Err(StoreError::Unavailable(
            "a SQLite statement waited on the writer thread".into(),
        )),
    }
}
