//! HTTP adapter: the REST API over the domain's use cases, with JWT roles,
//! problem+json errors, request ids, health and Prometheus metrics.

pub mod auth;
pub mod body;
mod handlers;
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
}

/// Every route, for the app and for the OpenAPI check.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/inventory/{productId}"),
    ("GET", "/api/inventory/{productId}/adjustments"),
    ("POST", "/api/inventory/add"),
    ("POST", "/api/inventory/audit"),
    ("POST", "/api/inventory/check"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
];

/// Registers the routes.
pub fn routes<R: InventoryRepository + 'static, C: Clock + 'static>(cfg: &mut web::ServiceConfig) {
    let not_allowed = || web::to(ops::method_not_allowed);
    cfg.service(
        web::resource("/api/inventory/add")
            .route(web::post().to(handlers::add_stock::<R, C>))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/api/inventory/audit")
            .route(web::post().to(handlers::audit_stock::<R, C>))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/api/inventory/check")
            .route(web::post().to(handlers::check_availability::<R, C>))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/api/inventory/{productId}/adjustments")
            .route(web::get().to(handlers::adjustments::<R, C>))
            .default_service(not_allowed()),
    )
    .service(
        web::resource("/api/inventory/{productId}")
            .route(web::get().to(handlers::get_stock::<R, C>))
            .default_service(not_allowed()),
    )
    .service(web::resource("/health/live").route(web::get().to(ops::live)))
    .service(web::resource("/health/ready").route(web::get().to(ops::ready::<R, C>)))
    .service(web::resource("/metrics").route(web::get().to(ops::metrics::<R, C>)));
}

/// Builds the server on a bound listener; signals are the caller's to handle.
pub fn server<R: InventoryRepository + 'static, C: Clock + 'static>(
    state: ApiState<R, C>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<Server> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| problem::ApiError::field("query", e.to_string()).into()),
            )
            .app_data(
                web::PathConfig::default().error_handler(|e, _| problem::ApiError::field("path", e.to_string()).into()),
            )
            .wrap(from_fn(ops::observe))
            .configure(routes::<R, C>)
            .default_service(web::to(ops::not_found))
    })
    .workers(workers)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}
