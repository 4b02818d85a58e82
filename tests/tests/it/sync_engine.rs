//! The sync engine's behaviours on both backend pairs.

mod local {
    kpi_tests::all_sync_cases!(kpi_tests::fixtures::local_engine);
}

mod aws {
    kpi_tests::all_sync_cases!(kpi_tests::fixtures::aws_engine);
}
