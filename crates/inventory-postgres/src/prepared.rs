//! Raw SQL statements kept prepared on their connection.
//!
//! diesel marks every `sql_query` unsafe to cache, since its text may be built at run time. Each
//! one is then prepared anew, and diesel-async prepares under the connection's statement-cache
//! lock: a pipeline of such statements waits for one prepare's round trip after another before
//! the first runs. The save's, the relay's and the load's raw statements are fixed text, one per
//! call site, so keeping them is safe; [`Prepared`] says so, and they are prepared once per
//! connection (keyed by their text).

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};

/// A statement of fixed text (and bind types), kept prepared on each connection that runs it.
pub(crate) struct Prepared<Q>(pub(crate) Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

/// No static id: the cache keys the statement by its text and bind types.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
