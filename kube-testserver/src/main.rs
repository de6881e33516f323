//! `nimbus-kube-testserver [--listen ADDR] [--fail-image TEXT]`: the test-only API server on
//! its own, for clients in other processes (kubectl, the Python client, nimbus).

use std::net::SocketAddr;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 6443));
    let mut options = nimbus_kube_testserver::server::Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(value)) => match value.parse() {
                Ok(address) => listen = address,
                Err(e) => {
                    eprintln!("--listen {value}: {e}");
                    std::process::exit(2);
                }
            },
            ("--fail-image", Some(value)) => options.failing_image = Some(value),
            _ => {
                eprintln!("usage: nimbus-kube-testserver [--listen ADDR] [--fail-image TEXT]");
                std::process::exit(2);
            }
        }
    }
    match nimbus_kube_testserver::server::serve(listen, options).await {
        Ok(running) => {
            println!("listening on {}", running.address);
            let _ = tokio::signal::ctrl_c().await;
        }
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    }
}
