use clap::Parser;

fn main() {
    let _cli = rq_worker::config::Cli::parse();
}
