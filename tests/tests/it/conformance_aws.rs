//! The AWS backends (DynamoDB store, SQS queue, KMS key source) against the same
//! conformance suites, through a real moto server started per test.

mod store {
    kpi_tests::all_store_cases!(store_conformance, kpi_tests::fixtures::dynamo_store);
}

mod queue {
    kpi_tests::all_queue_cases!(kpi_tests::fixtures::sqs_queue);
}

mod vault {
    use kpi_core::ports::CredentialContext;
    use kpi_core::{IntegrationId, WorkspaceId};
    use kpi_tests::conformance::vault;
    use kpi_tests::fixtures;
    use kpi_tests::moto::MotoServer;
    use kpi_vault::{CacheSettings, KeySource};

    #[tokio::test]
    async fn round_trip() {
        let moto = MotoServer::start();
        vault::round_trip(&fixtures::kms_vault_on(&moto, CacheSettings::default()).await).await;
    }

    #[tokio::test]
    async fn bound_to_its_context() {
        let moto = MotoServer::start();
        vault::bound_to_its_context(&fixtures::kms_vault_on(&moto, CacheSettings::default()).await)
            .await;
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let moto = MotoServer::start();
        vault::tampering_is_detected(
            &fixtures::kms_vault_on(&moto, CacheSettings::default()).await,
        )
        .await;
    }

    #[tokio::test]
    async fn store_holds_no_plaintext() {
        let moto = MotoServer::start();
        let store = fixtures::dynamo_store_on(&moto).await;
        let v = fixtures::kms_vault_on(&moto, CacheSettings::default()).await;
        vault::store_holds_no_plaintext(&store, &v, || async {
            fixtures::dump_table(&moto, &store).await
        })
        .await;
    }

    /// KMS itself (not only our associated data) refuses a data key under another
    /// encryption context.
    #[tokio::test]
    async fn kms_enforces_the_encryption_context() {
        let moto = MotoServer::start();
        let config = moto.sdk_config().await;
        let key_id = fixtures::create_kms_key(&config).await;
        let kms = kpi_aws::KmsKeySource::new(&config, key_id);
        let ctx = |ws: &str| CredentialContext {
            workspace: WorkspaceId::parse(ws).unwrap(),
            integration: IntegrationId::new_random(),
            provider: kpi_providers::ga4::ID,
        };
        let owner = ctx("owner");
        let key = kms.generate_data_key(&owner).await.unwrap();
        let back = kms.decrypt_data_key(&owner, &key.wrapped).await.unwrap();
        assert_eq!(*back, *key.plaintext);
        let err = kms
            .decrypt_data_key(&ctx("thief"), &key.wrapped)
            .await
            .unwrap_err();
        assert!(err.message().contains("KMS refused"), "{err:?}");
    }
}
