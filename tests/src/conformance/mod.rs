//! Conformance suites: one set of behaviours, run against every backend of a port.
//! Each case is a plain async function over the port; the test files generate
//! one `#[tokio::test]` per case and backend with the macros below.

pub mod queue;
pub mod store;
pub mod sync;
pub mod vault;

/// Generates one test per store case for a backend made by `$make` (an async fn
/// returning `(store, guard)`).
#[macro_export]
macro_rules! store_conformance {
    ($make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $make().await;
                $crate::conformance::store::$case(&store).await;
            }
        )*
    };
}

#[macro_export]
macro_rules! queue_conformance {
    ($make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (queue, _guard) = $make().await;
                $crate::conformance::queue::$case(&queue).await;
            }
        )*
    };
}
