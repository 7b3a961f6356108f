//! HTTP adapter: the REST API over the domain's use cases, with JWT roles,
//! problem+json errors, request ids, health and Prometheus metrics.

pub mod auth;
pub mod body;
mod handlers;
pub mod jwks;
pub mod locks;
pub mod openapi;
mod ops;
pub mod problem;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use inventory_domain::{Clock, InventoryRepository, InventoryService};

pub use auth::{AuthConfig, Principal};
pub use handlers::{MAX_CHECK_IDS, StockView};
pub use jwks::{Jwks, JwksSource};
pub use openapi::{API, Kind, Param, Route};
pub use ops::{Readiness, RenderMetrics};
pub use problem::ApiError;

/// What the handlers share.
pub struct ApiState<R, C> {
    /// The use cases.
    pub service: InventoryService<R, C>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Dependencies checked by `/health/ready`.
    pub readiness: Arc<dyn Readiness>,
    /// Renders `/metrics`.
    pub metrics: RenderMetrics,
    /// Serialises this instance's writes per product.
    pub writes: Arc<locks::ProductLocks>,
}

/// Registers every route of [`openapi::API`], in its order, and nothing else.
pub fn routes<R: InventoryRepository + 'static, C: Clock + 'static>(cfg: &mut web::ServiceConfig) {
    for route in openapi::API {
        let handler = match (route.method, route.path) {
            ("POST", "/api/inventory/add") => web::post().to(handlers::add_stock::<R, C>),
            ("POST", "/api/inventory/audit") => web::post().to(handlers::audit_stock::<R, C>),
            ("POST", "/api/inventory/audits") => web::post().to(handlers::count_stock::<R, C>),
            ("POST", "/api/inventory/check") => web::post().to(handlers::check_availability::<R, C>),
            ("GET", "/api/inventory") => web::get().to(handlers::list_stock::<R, C>),
            ("GET", "/api/inventory/export") => web::get().to(handlers::export_stock::<R, C>),
            ("PUT", "/api/inventory/{productId}/thresholds") => web::put().to(handlers::set_thresholds::<R, C>),
            ("GET", "/api/inventory/{productId}/adjustments") => web::get().to(handlers::adjustments::<R, C>),
            ("GET", "/api/inventory/{productId}") => web::get().to(handlers::get_stock::<R, C>),
            ("GET", "/health/live") => web::get().to(ops::live),
            ("GET", "/health/ready") => web::get().to(ops::ready::<R, C>),
            ("GET", "/metrics") => web::get().to(ops::metrics::<R, C>),
            ("GET", "/api-docs/openapi.json") => web::get().to(ops::openapi),
            (method, path) => panic!("the API table lists {method} {path}, which has no handler"),
        };
        let allow = route.method;
        let not_allowed = web::to(move || ops::method_not_allowed(allow));
        cfg.service(web::resource(route.path).route(handler).default_service(not_allowed));
    }
}

/// Builds the server on a bound listener, and on an operations listener for
/// `/metrics` and health when one is given (then `/metrics` is served there
/// only); signals are the caller's to handle.
pub fn server<R: InventoryRepository + 'static, C: Clock + 'static>(
    state: ApiState<R, C>,
    listener: TcpListener,
    ops: Option<TcpListener>,
    workers: usize,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let ops_addr = ops.as_ref().map(TcpListener::local_addr).transpose()?;
    let split = web::Data::new(ops::OpsListener(ops_addr));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(split.clone())
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| problem::ApiError::field("query", e.to_string()).into()),
            )
            .app_data(
                web::PathConfig::default().error_handler(|e, _| problem::ApiError::field("path", e.to_string()).into()),
            )
            .wrap(from_fn(ops::split_listeners))
            .wrap(from_fn(ops::observe))
            .configure(routes::<R, C>)
            .default_service(web::to(ops::not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?;
    let server = match ops {
        Some(ops) => server.listen(ops)?,
        None => server,
    };
    Ok(server.run())
}
