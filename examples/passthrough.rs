//! The baseline of the load benchmark: a reverse proxy that does nothing but forward,
//! with the same server and pooled client as portcullis (hyper 1.x, hyper-util).
//!
//! ```sh
//! cargo run --release --example passthrough -- 127.0.0.1:8081 http://127.0.0.1:3000
//! PER_CORE=2 cargo run --release --example passthrough -- ...   # thread per core
//! ```
//!
//! With `PER_CORE=N` it runs N threads, each with a current-thread runtime accepting from
//! the one listening socket and its own client: the thread-per-core layout of
//! portcullis's `server.runtime = "per-core"`, for a like-for-like baseline.

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

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: std::net::SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8081".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let upstream: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:3000".into())
        .parse()
        .map_err(std::io::Error::other)?;
    let per_core: usize = std::env::var("PER_CORE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if per_core == 0 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let listener = rt.block_on(async { TcpListener::bind(listen).await })?;
        return rt.block_on(proxy(listener, upstream));
    }
    let socket = std::net::TcpListener::bind(listen)?;
    socket.set_nonblocking(true)?;
    let threads: Vec<_> = (0..per_core)
        .map(|_| {
            let upstream = upstream.clone();
            let socket = socket.try_clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move { proxy(TcpListener::from_std(socket?)?, upstream).await })
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

async fn proxy(listener: TcpListener, upstream: Uri) -> std::io::Result<()> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_max_idle_per_host(1024)
        .build(http);
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
