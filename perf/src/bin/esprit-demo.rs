//! esprit-demo: a gateway and a client data plane on 127.0.0.1.
fn main() {
    eprintln!("esprit-demo: not yet wired up");
    std::process::exit(2);
}
