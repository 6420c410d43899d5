//! The baseline of the load benchmark: a reverse proxy that does nothing but forward,
//! with the same server and pooled client as portcullis (hyper 1.x, hyper-util).
//!
//! ```sh
//! cargo run --release --example passthrough -- 127.0.0.1:8081 http://127.0.0.1:3000
//! ```

use std::convert::Infallible;

use http::Uri;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Body = http_body_util::Either<Incoming, http_body_util::Empty<bytes::Bytes>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let upstream: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1024)
        .build(http);
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |mut req: Request<Incoming>| {
                let client = client.clone();
                let upstream = upstream.clone();
                async move {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "/".into());
                    let uri = format!("{}{}", upstream.to_string().trim_end_matches('/'), pq);
                    *req.uri_mut() = uri.parse().unwrap_or_default();
                    *req.version_mut() = http::Version::HTTP_11;
                    let resp = match client.request(req).await {
                        Ok(r) => r.map(Body::Left),
                        Err(_) => {
                            let mut r = Response::new(Body::Right(http_body_util::Empty::new()));
                            *r.status_mut() = StatusCode::BAD_GATEWAY;
                            r
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
