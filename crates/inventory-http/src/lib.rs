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
pub mod routes;
pub mod schemas;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use inventory_domain::StockUseCases;

pub use auth::{AuthConfig, Principal};
pub use handlers::MAX_CHECK_IDS;
pub use jwks::{Jwks, JwksSource};
pub use ops::{Readiness, RenderMetrics};
pub use problem::ApiError;
pub use routes::{API, Handler, Kind, Param, Role, Route};
pub use schemas::StockView;

/// What the handlers share.
pub struct ApiState {
    /// The use cases.
    pub service: Arc<dyn StockUseCases>,
    /// Token verification.
    pub auth: AuthConfig,
    /// Dependencies checked by `/health/ready`.
    pub readiness: Arc<dyn Readiness>,
    /// Renders `/metrics`.
    pub metrics: RenderMetrics,
    /// Serialises this instance's writes per product.
    pub writes: Arc<locks::ProductLocks>,
}

/// Registers every route of [`routes::API`], in its order, and nothing else.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use routes::Handler;
    for route in routes::API {
        let to = match route.handler {
            Handler::AddStock => web::to(handlers::add_stock),
            Handler::AuditStock => web::to(handlers::audit_stock),
            Handler::CountStock => web::to(handlers::count_stock),
            Handler::CheckAvailability => web::to(handlers::check_availability),
            Handler::ListStock => web::to(handlers::list_stock),
            Handler::ExportStock => web::to(handlers::export_stock),
            Handler::SetThresholds => web::to(handlers::set_thresholds),
            Handler::Adjustments => web::to(handlers::adjustments),
            Handler::GetStock => web::to(handlers::get_stock),
            Handler::Live => web::to(ops::live),
            Handler::Ready => web::to(ops::ready),
            Handler::Metrics => web::to(ops::metrics),
            Handler::OpenApi => web::to(ops::openapi),
        };
        let method = actix_web::http::Method::from_bytes(route.method.as_bytes())
            .unwrap_or_else(|_| panic!("the API table lists the method {}", route.method));
        let allow = route.method;
        let not_allowed = web::to(move || ops::method_not_allowed(allow));
        cfg.service(
            web::resource(route.path)
                .route(to.method(method))
                .default_service(not_allowed),
        );
    }
}

/// How the server handles connections.
#[derive(Debug, Clone, Copy)]
pub struct ServerTuning {
    /// Worker threads.
    pub workers: usize,
    /// How long an idle connection is kept open for the next request; zero closes each connection
    /// after its response. Longer than a load balancer's idle timeout, so the balancer, not the
    /// service, closes an idle connection: otherwise it may send a request on one the service is
    /// closing, and answer 502.
    pub keep_alive: Duration,
}

/// Builds the server on a bound listener, and on an operations listener for
/// `/metrics` and health when one is given (then `/metrics` is served there
/// only); signals are the caller's to handle. A graceful stop closes idle
/// connections at once, whatever the keep-alive.
pub fn server(
    state: ApiState,
    listener: TcpListener,
    ops: Option<TcpListener>,
    tuning: ServerTuning,
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
            .configure(routes)
            .default_service(web::to(ops::not_found))
    })
    .workers(tuning.workers)
    .keep_alive(if tuning.keep_alive.is_zero() {
        KeepAlive::Disabled
    } else {
        KeepAlive::Timeout(tuning.keep_alive)
    })
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?;
    let server = match ops {
        Some(ops) => server.listen(ops)?,
        None => server,
    };
    Ok(server.run())
}
