//! The runtime a standalone sidecar runs on.
//!
//! A sidecar fronts one application instance, so by default it runs on one
//! thread: on loopback the data path is bound by the kernel's TCP work, and a
//! work-stealing pool only adds cross-thread wake-ups (measured in
//! bench/proxy: 12–14% more CPU per request with a worker per core).

/// Worker threads of `mesh connect proxy` unless `-workers` says otherwise.
pub const DEFAULT_WORKERS: usize = 1;

/// Builds the runtime for `workers` threads: 1 is a single-threaded runtime,
/// 0 one worker per core, N a pool of N workers.
pub fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match workers {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        0 => tokio::runtime::Runtime::new(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_worker_is_a_single_threaded_runtime() {
        let flavor = |n| runtime(n).unwrap().handle().runtime_flavor();
        assert_eq!(flavor(1), tokio::runtime::RuntimeFlavor::CurrentThread);
        assert_eq!(flavor(0), tokio::runtime::RuntimeFlavor::MultiThread);
        assert_eq!(flavor(3), tokio::runtime::RuntimeFlavor::MultiThread);
    }
}
