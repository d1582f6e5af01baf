//! The `bunq-ipsync` binary: a thin shell around [`bunq_ipsync::cli`].

fn main() {
    // Before anything reads the API key: a core dump must never hold it (see the function).
    if let Err(err) = bunq_ipsync::secret::forbid_core_dumps() {
        eprintln!(
            "warning: cannot mark the process non-dumpable ({err}); a core dump could contain \
             the API key, tokens and private key"
        );
    }
    std::process::exit(bunq_ipsync::cli::main());
}
