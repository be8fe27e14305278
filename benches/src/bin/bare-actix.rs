//! The redirect baseline: a minimal actix-web server that answers every
//! `GET /{code}` with a fixed 302. It is the framework's ceiling on this
//! machine; Snowlink's redirect throughput is reported as a fraction of it.

use actix_web::{web, App, HttpResponse, HttpServer};

async fn redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "https://example.com/"))
        .finish()
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| App::new().route("/{code}", web::get().to(redirect)))
            .backlog(4096)
            .bind(&addr)?
            .run()
            .await
    })
}
