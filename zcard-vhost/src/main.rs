//! zcard-vhost: the zcard DMA card as a vhost-user daemon (see the crate README).

use clap::Parser;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = zcard_vhost::backend::Args::parse();
    if let Err(e) = zcard_vhost::backend::run(args) {
        eprintln!("zcard-vhost: {e}");
        std::process::exit(1);
    }
}
