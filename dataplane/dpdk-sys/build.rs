//! Finds DPDK with pkg-config (>= 22.11, what Debian 12 ships), compiles the
//! C shim with DPDK's own flags, and generates bindings for an allowlist.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/shim.c");
    println!("cargo:rerun-if-changed=src/shim.h");
    println!("cargo:rerun-if-changed=src/wrapper.h");
    println!("cargo::rustc-check-cfg=cfg(dpdk_missing)");
    // Without DPDK the crate builds empty (with a warning), so that
    // `cargo test --workspace` works on hosts without it; the dataplane's
    // `dpdk` feature asks for `required`, which stops with what to install.
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) if env::var_os("CARGO_FEATURE_REQUIRED").is_some() => {
            // A failed build script runs again on the next build, so the
            // build after installing DPDK finds it (a success with the
            // empty crate would be kept).
            panic!(
                "the dpdk feature needs DPDK >= 22.11, and pkg-config did not find it ({e}). \
                 On Debian 12: apt-get install libdpdk-dev libclang-dev pkg-config"
            );
        }
        Err(e) => {
            println!(
                "cargo::warning=DPDK >= 22.11 not found ({e}); dpdk-sys is empty. \
                 On Debian 12: apt-get install libdpdk-dev libclang-dev pkg-config"
            );
            println!("cargo:rustc-cfg=dpdk_missing");
            return;
        }
    };
    // rte_eth_from_rings lives in the net_ring driver library.
    println!("cargo:rustc-link-lib=rte_net_ring");

    // DPDK's cflags carry `-include rte_config.h` and `-march`: both the
    // shim and bindgen must see the headers the way DPDK was built.
    let out = Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("run pkg-config");
    let cflags: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();

    let mut cc = cc::Build::new();
    cc.file("src/shim.c").warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("esprit_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("src/wrapper.h")
        .clang_args(&cflags)
        .clang_args(lib.include_paths.iter().map(|p| format!("-I{}", p.display())))
        .allowlist_function("esprit_.*")
        .allowlist_function("rte_eal_init|rte_eal_cleanup|rte_strerror|rte_socket_id")
        .allowlist_function("rte_pktmbuf_pool_create|rte_mempool_free|rte_mempool_in_use_count|rte_pktmbuf_free_bulk|rte_thread_register|rte_dev_probe")
        .allowlist_function("rte_eth_dev_count_avail|rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_stop|rte_eth_dev_close|rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_macaddr_get|rte_eth_promiscuous_enable")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE|RTE_PKTMBUF_HEADROOM|RTE_MAX_ETHPORTS")
        .allowlist_var("SOCKET_ID_ANY")
        // Only pointers to these cross the boundary; their layout stays in C.
        .opaque_type("rte_mbuf|rte_mempool")
        .blocklist_type("rte_eth_conf|rte_eth_dev_info")
        .layout_tests(false)
        .derive_default(true)
        .generate()
        .expect("bindgen over DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("write bindings");
}
