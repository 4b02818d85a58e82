//! The embedded backends (SQLite store, in-process queue, local master key) against
//! the conformance suites.

mod store {
    kpi_tests::all_store_cases!(store_conformance, kpi_tests::fixtures::sqlite_store);
}

mod queue {
    kpi_tests::all_queue_cases!(kpi_tests::fixtures::local_queue);
}

mod vault {
    use kpi_tests::conformance::vault;
    use kpi_tests::fixtures;

    #[tokio::test]
    async fn round_trip() {
        vault::round_trip(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn bound_to_its_context() {
        vault::bound_to_its_context(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        vault::tampering_is_detected(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn store_holds_no_plaintext() {
        let (store, _guard) = fixtures::sqlite_store().await;
        let v = fixtures::local_vault();
        vault::store_holds_no_plaintext(&store, &v, || async {
            let mut rows = store.dump_table("integrations").await.unwrap();
            rows.extend(store.dump_table("oauth_states").await.unwrap());
            rows
        })
        .await;
    }
}
