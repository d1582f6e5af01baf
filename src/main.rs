//! The `bunq-ipsync` binary: a thin shell around [`bunq_ipsync::cli`].

fn main() {
    std::process::exit(bunq_ipsync::cli::main());
}
