//! The redirect baseline: a minimal actix-web server that answers every
//! `GET /{code}` with a fixed 302: the framework with nothing behind it on this
//! machine; Snowlink's redirect throughput is reported as a fraction of it.
//!
//!     bare-actix [ADDR] [route|default]
//!
//! `route` (the default) routes `/{code}` as an actix-web app usually does,
//! through a path pattern, which the router matches per request. `default`
//! answers from the app's default service, with no pattern to match, as
//! Snowlink serves its redirects: the stricter baseline.

use actix_web::{web, App, HttpResponse, HttpServer};

async fn redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header(("Location", "https://example.com/"))
        .finish()
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let by_default = match args.next().as_deref() {
        None | Some("route") => false,
        Some("default") => true,
        Some(other) => {
            eprintln!("bare-actix: unknown routing {other:?}; use route or default");
            std::process::exit(2);
        }
    };
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let app = App::new();
            if by_default {
                app.default_service(web::get().to(redirect))
            } else {
                app.route("/{code}", web::get().to(redirect))
            }
        })
        .backlog(4096)
        .bind(&addr)?
        .run()
        .await
    })
}
